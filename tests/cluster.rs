//! A cluster client against an emulated 3-member cluster over HTTPS:
//! writes go to the primary and never to a replica, reads and sign-in to a
//! member that serves, and a workload survives stopping the primary and
//! promoting a replica without losing or repeating a call.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use safeguard_emulator::Emulator;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::cluster::{ClusterOptions, MemberRole, ReadRouting};
use safeguard_sdk::{Error, SafeguardClient, Service};
use serde_json::{json, Value};

async fn cluster_of(n: usize) -> Emulator {
    emulator_with(|c| c.cluster_members = n).await
}

/// A client of every member of `emu`, signed in as the seeded admin.
async fn cluster_client(emu: &Emulator, options: ClusterOptions) -> SafeguardClient {
    let hosts = emu.member_hosts();
    let c = &emu.connection().spp.admin;
    let client = SafeguardClient::builder(hosts[0].clone())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .cluster(options.members(hosts[1..].to_vec()))
        .auth(PkceAuth::new("local", c.user.clone(), c.password.clone()))
        .build()
        .unwrap();
    client.login().await.expect("signs in on a member");
    client
}

fn primary_of(client: &SafeguardClient) -> Option<String> {
    client
        .cluster_members()
        .into_iter()
        .find(|m| m.role == MemberRole::Primary && m.available)
        .map(|m| m.host.to_string())
}

async fn create_user(client: &SafeguardClient, name: &str) -> Result<Value, Error> {
    client
        .post(Service::Core, "Users")
        .json(&json!({"Name": name, "PrimaryAuthenticationProvider": {"Id": -1}}))
        .send_json()
        .await
}

#[tokio::test]
async fn the_client_learns_the_members_and_their_roles() {
    let emu = cluster_of(3).await;
    let client = cluster_client(&emu, ClusterOptions::new()).await;
    let members = client.cluster_members();
    let hosts = emu.member_hosts();
    assert_eq!(members.len(), 3);
    let ids: Vec<String> = emu
        .connection()
        .spp
        .members
        .iter()
        .map(|m| m.id.clone())
        .collect();
    for (i, m) in members.iter().enumerate() {
        assert_eq!(m.host.to_string(), hosts[i]);
        assert_eq!(m.id.as_deref(), Some(ids[i].as_str()));
        assert!(m.available);
        assert!(m.latency.is_some());
        let role = if i == 0 {
            MemberRole::Primary
        } else {
            MemberRole::Replica
        };
        assert_eq!(m.role, role, "member {i}");
    }
    // A single-appliance client has no members.
    assert!(admin(&emu).await.cluster_members().is_empty());
}

#[tokio::test]
async fn writes_go_to_the_primary_even_when_the_builder_names_a_replica() {
    let emu = cluster_of(3).await;
    let hosts = emu.member_hosts();
    let c = &emu.connection().spp.admin;
    // The builder's host is a replica; the primary is found among the rest.
    let client = SafeguardClient::builder(hosts[2].clone())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .cluster(ClusterOptions::new().members([hosts[0].clone(), hosts[1].clone()]))
        .auth(PkceAuth::new("local", c.user.clone(), c.password.clone()))
        .build()
        .unwrap();
    for i in 0..5 {
        create_user(&client, &format!("w-{i}")).await.unwrap();
    }
    let me: Value = client.get(Service::Core, "Me").send_json().await.unwrap();
    assert_eq!(me["Name"], c.user);
    assert_eq!(emu.control().replica_write_refusals(), 0);
    assert_eq!(primary_of(&client).as_deref(), Some(hosts[0].as_str()));
}

#[tokio::test]
async fn a_promotion_made_elsewhere_is_followed_after_one_refusal() {
    let emu = cluster_of(3).await;
    let hosts = emu.member_hosts();
    let client = cluster_client(&emu, ClusterOptions::new()).await;
    create_user(&client, "before").await.unwrap();
    // Another administrator promotes member 2 behind the client's back:
    // the client's next write meets the old primary, now a replica (60418),
    // and goes on to the new primary once the failover's lock ends.
    let other = admin(&emu).await;
    let id = emu.connection().spp.members[2].id.clone();
    other
        .post(Service::Core, &format!("Cluster/Members/{id}/Promote"))
        .send()
        .await
        .unwrap();
    create_user(&client, "after").await.unwrap();
    assert_eq!(primary_of(&client).as_deref(), Some(hosts[2].as_str()));
    assert_eq!(emu.control().replica_write_refusals(), 1);
}

#[tokio::test]
async fn reads_and_sign_in_move_to_a_live_member() {
    let emu = cluster_of(3).await;
    let hosts = emu.member_hosts();
    let client = cluster_client(&emu, ClusterOptions::new().reads(ReadRouting::Primary)).await;
    emu.stop_member(0).await.unwrap();
    // The primary is gone: reads go on elsewhere, and so does a new sign-in.
    let me: Value = client.get(Service::Core, "Me").send_json().await.unwrap();
    assert!(me["Id"].is_number());
    client.refresh().await.unwrap();
    let users: Vec<Value> = client
        .get(Service::Core, "Users")
        .send_json()
        .await
        .unwrap();
    assert!(!users.is_empty());
    let members = client.cluster_members();
    assert!(!members[0].available);
    assert!(members[1].available && members[2].available);
    // No primary: a write waits for one, then says so.
    let short = {
        let c = &emu.connection().spp.admin;
        SafeguardClient::builder(hosts[1].clone())
            .ca_pem(emu.ca_pem())
            .unwrap()
            .cluster(
                ClusterOptions::new()
                    .members([hosts[0].clone(), hosts[2].clone()])
                    .failover_timeout(Duration::from_millis(600)),
            )
            .auth(PkceAuth::new("local", c.user.clone(), c.password.clone()))
            .build()
            .unwrap()
    };
    match create_user(&short, "nowhere").await {
        Err(Error::ClusterUnavailable { request, .. }) => {
            assert_eq!(request, "POST /service/core/v4/Users")
        }
        other => panic!("expected ClusterUnavailable, got {other:?}"),
    }
    assert_eq!(emu.control().replica_write_refusals(), 0);
}

#[tokio::test]
async fn a_locked_cluster_delays_writes_until_the_lock_ends() {
    let emu = cluster_of(3).await;
    let client = cluster_client(&emu, ClusterOptions::new()).await;
    emu.lock_cluster("Patch", Duration::from_millis(700));
    let started = std::time::Instant::now();
    create_user(&client, "after-the-lock").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    // A write the appliance refuses for another reason is not retried and
    // keeps its answer.
    match client
        .post(Service::Core, "Users")
        .json(&json!({"Name": 5}))
        .send_json::<Value>()
        .await
    {
        Err(Error::Api(e)) => {
            assert_eq!(e.status.as_u16(), 400);
            assert_eq!(e.code, Some(70000));
            assert_eq!(e.request, "POST /service/core/v4/Users");
        }
        other => panic!("expected the validation error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_appliance_service_stays_on_the_named_appliance() {
    let emu = cluster_of(2).await;
    let client = cluster_client(&emu, ClusterOptions::new()).await;
    emu.stop_member(0).await.unwrap();
    // Appliance operations are about one machine: not moved to another.
    let err = client
        .get(Service::Appliance, "SystemTime")
        .send()
        .await
        .expect_err("the named appliance is down");
    assert!(
        matches!(&err, Error::Transport(t) if t.is_connect()),
        "{err:?}"
    );
}

/// 1,000 mixed calls while the primary is stopped and a replica promoted:
/// every call succeeds once, no write reaches a replica, and the writes
/// end on the new primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_survives_losing_the_primary() {
    const CALLS: usize = 1_000;
    const WORKERS: usize = 8;
    let emu = Arc::new(cluster_of(3).await);
    let hosts = emu.member_hosts();
    let client = cluster_client(&emu, ClusterOptions::new()).await;
    // A2A retrievals on their own context of every member (first the
    // primary), from start to end; the secret checked each time.
    let a2a = {
        let c = &emu.connection().spp.client_cert;
        safeguard_sdk::a2a::A2aContext::builder(hosts[0].clone())
            .members(hosts[1..].to_vec())
            .pem_files(&c.cert, &c.key)
            .tls(
                safeguard_sdk::tls::TlsOptions::default()
                    .with_ca_pem(emu.ca_pem())
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let api_key =
        safeguard_sdk::SecretString::from(emu.connection().spp.a2a.password_api_key.clone());
    let secret = emu
        .control()
        .account_password(emu.control().password_account_id())
        .unwrap();
    let retrievals = Arc::new(AtomicUsize::new(0));
    let workload_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let retriever = {
        let (retrievals, over) = (retrievals.clone(), workload_over.clone());
        tokio::spawn(async move {
            while !over.load(Ordering::SeqCst) {
                let got = a2a
                    .retrieve_password(&api_key)
                    .await
                    .expect("an A2A retrieval failed");
                assert_eq!(safeguard_sdk::ExposeSecret::expose_secret(&got), secret);
                retrievals.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            a2a.current_member().to_string()
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, next, done) = (client.clone(), next.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let mut created = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= CALLS {
                    return created;
                }
                match i % 4 {
                    0 => {
                        let name = format!("load-{i}");
                        let user = create_user(&client, &name)
                            .await
                            .unwrap_or_else(|e| panic!("call {i}: create {name}: {e:?}"));
                        assert_eq!(user["Name"], name);
                        created.push(name);
                    }
                    1 => {
                        let me: Value = client
                            .get(Service::Core, "Me")
                            .send_json()
                            .await
                            .unwrap_or_else(|e| panic!("call {i}: Me: {e}"));
                        assert!(me["Id"].is_number());
                    }
                    2 => {
                        client
                            .get(Service::Core, "Users")
                            .query(&[("filter", "Name contains 'load-'"), ("limit", "5")])
                            .unwrap()
                            .send_json::<Vec<Value>>()
                            .await
                            .unwrap_or_else(|e| panic!("call {i}: list: {e}"));
                    }
                    _ => {
                        client
                            .get(Service::Notification, "Status")
                            .send_json::<Value>()
                            .await
                            .unwrap_or_else(|e| panic!("call {i}: status: {e}"));
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // A quarter of the way in, the primary stops; a moment later member 1
    // is promoted (through the client: a replica takes the promotion).
    while done.load(Ordering::SeqCst) < CALLS / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    emu.stop_member(0).await.unwrap();
    let retrieved_at_stop = retrievals.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = done.load(Ordering::SeqCst);
    assert!(
        retrievals.load(Ordering::SeqCst) > retrieved_at_stop,
        "A2A retrievals go on while there is no primary"
    );
    let id = emu.connection().spp.members[1].id.clone();
    client
        .post(Service::Core, &format!("Cluster/Members/{id}/Promote"))
        .send()
        .await
        .expect("a replica takes the promotion");
    let mut created = Vec::new();
    for w in workers {
        created.extend(w.await.expect("no call failed"));
    }
    workload_over.store(true, Ordering::SeqCst);
    let a2a_member = retriever.await.expect("no A2A retrieval failed");
    assert_ne!(a2a_member, hosts[0], "A2A moved off the stopped member");
    assert!(retrievals.load(Ordering::SeqCst) > retrieved_at_stop);
    assert_eq!(done.load(Ordering::SeqCst), CALLS);
    assert!(stopped_at < CALLS, "the workload ran across the failover");
    assert_eq!(created.len(), CALLS / 4);
    assert_eq!(
        emu.control().replica_write_refusals(),
        0,
        "a write reached a replica"
    );
    assert_eq!(primary_of(&client).as_deref(), Some(hosts[1].as_str()));
    // Each user exists exactly once.
    let users: Vec<Value> = client
        .get(Service::Core, "Users")
        .query(&[("filter", "Name contains 'load-'")])
        .unwrap()
        .send_json()
        .await
        .unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for u in &users {
        *seen
            .entry(u["Name"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), created.len(), "a call was lost");
    assert!(seen.values().all(|&n| n == 1), "a call was repeated");
    for name in &created {
        assert_eq!(seen.get(name), Some(&1), "{name}");
    }
    // The old primary comes back as a replica; the client sees it.
    emu.restart_member(0).unwrap();
    client.refresh_cluster().await;
    let members = client.cluster_members();
    assert_eq!(members[0].role, MemberRole::Replica);
    assert!(members[0].available);
}

/// The blocking client routes the same way.
#[test]
fn the_blocking_client_routes_and_fails_over() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = rt.block_on(cluster_of(2));
    let hosts = emu.member_hosts();
    let c = &emu.connection().spp.admin;
    let client = safeguard_sdk::blocking::SafeguardClient::builder(hosts[0].clone())
        .ca_pem(emu.ca_pem())
        .unwrap()
        // Reads to the primary while it answers, so that the read after the
        // stop meets the stopped member.
        .cluster(
            ClusterOptions::new()
                .members([hosts[1].clone()])
                .reads(ReadRouting::Primary),
        )
        .auth(PkceAuth::new("local", c.user.clone(), c.password.clone()))
        .build()
        .unwrap();
    client.login().unwrap();
    client.refresh_cluster().unwrap();
    assert_eq!(client.cluster_members().len(), 2);
    client
        .post(Service::Core, "Users")
        .json(&json!({"Name": "blocking", "PrimaryAuthenticationProvider": {"Id": -1}}))
        .send_json::<Value>()
        .unwrap();
    rt.block_on(emu.stop_member(0)).unwrap();
    let me: Value = client.get(Service::Core, "Me").send_json().unwrap();
    assert_eq!(me["Name"], c.user);
    assert!(!client.cluster_members()[0].available);
    assert_eq!(emu.control().replica_write_refusals(), 0);
}

/// The cluster events of this test binary: one global subscriber (a
/// subscriber set for one thread misses events whose call site another
/// test's thread is registering at the same moment); a test reads the
/// events naming its own members (their ports are its own).
#[derive(Clone, Default)]
struct Events(Arc<std::sync::Mutex<Vec<Fields>>>);
type Fields = std::collections::BTreeMap<String, String>;

struct Collect<'a>(&'a mut Fields);

impl tracing::field::Visit for Collect<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "safeguard_sdk::cluster" {
            let mut fields = Fields::new();
            event.record(&mut Collect(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }
}

impl Events {
    fn global() -> &'static Events {
        static EVENTS: std::sync::OnceLock<Events> = std::sync::OnceLock::new();
        EVENTS.get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let events = Events::default();
            tracing_subscriber::registry()
                .with(events.clone())
                .with(tracing_subscriber::filter::LevelFilter::DEBUG)
                .init();
            events
        })
    }

    /// The events so far that name one of `hosts` (as `member` or `from`),
    /// taken out.
    fn take(&self, hosts: &[String]) -> Vec<Fields> {
        let mut all = self.0.lock().unwrap();
        let (mine, others): (Vec<Fields>, Vec<Fields>) = all.drain(..).partition(|f| {
            ["member", "from"]
                .iter()
                .any(|k| f.get(*k).is_some_and(|v| hosts.contains(v)))
        });
        *all = others;
        mine
    }
}

/// Every routing decision is a `tracing` event of `safeguard_sdk::cluster`.
#[tokio::test]
async fn every_routing_decision_is_traced() {
    let events = Events::global();
    let emu = cluster_of(3).await;
    let hosts = emu.member_hosts();
    let client = cluster_client(&emu, ClusterOptions::new().reads(ReadRouting::Primary)).await;
    create_user(&client, "traced").await.unwrap();
    let taken = events.take(&hosts);
    let routed: Vec<&Fields> = taken
        .iter()
        .filter(|f| f.get("message").map(String::as_str) == Some("routed"))
        .collect();
    let write = routed
        .iter()
        .find(|f| f.get("route").map(String::as_str) == Some("write"))
        .unwrap_or_else(|| panic!("no routed write among {taken:#?}"));
    assert_eq!(write["member"], hosts[0]);
    assert_eq!(write["method"], "POST");
    assert_eq!(write["path"], "/service/core/v4/Users");

    emu.stop_member(0).await.unwrap();
    let _: Value = client.get(Service::Core, "Me").send_json().await.unwrap();
    let taken = events.take(&hosts);
    let said = |message: &str| {
        taken
            .iter()
            .find(|f| f.get("message").map(String::as_str) == Some(message))
            .unwrap_or_else(|| panic!("no {message:?} among {taken:#?}"))
            .clone()
    };
    assert_eq!(said("member unavailable")["member"], hosts[0]);
    let moved = said("moving to another member");
    assert_eq!(moved["from"], hosts[0]);
    assert_ne!(moved["to"], hosts[0]);
    let last = taken
        .iter()
        .rev()
        .find(|f| f.get("message").map(String::as_str) == Some("routed"))
        .unwrap();
    assert_eq!(last["route"], "read");
    assert_eq!(last["member"], moved["to"]);
}

/// A cluster client's event listener connects to a member that serves and,
/// when that member stops, to another, and receives the events that follow.
#[tokio::test]
async fn the_event_listener_moves_to_a_live_member() {
    use safeguard_sdk::events::{Event, ListenerState, ReconnectPolicy};
    let emu = cluster_of(3).await;
    let client = cluster_client(&emu, ClusterOptions::new().reads(ReadRouting::Primary)).await;
    let listener = client
        .persistent_event_listener()
        .with_reconnect_policy(ReconnectPolicy::new(
            Duration::from_millis(5),
            Duration::from_millis(50),
        ));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    listener.on("Tick", move |e: &Event| {
        s.lock().unwrap().push(e.body["N"].as_i64().unwrap_or(-1));
    });
    listener.start().await.unwrap();
    let wait = Duration::from_secs(10);
    assert!(
        listener
            .wait_for_state(ListenerState::Connected, wait)
            .await
    );
    // The primary serves the hub (reads go to the primary while it runs).
    assert_eq!(emu.control().websocket_count(), 1);
    emu.control().emit_event("Tick", json!({"N": 1}));
    let eventually = |n: usize| {
        let seen = seen.clone();
        async move {
            let deadline = std::time::Instant::now() + wait;
            while std::time::Instant::now() < deadline {
                if seen.lock().unwrap().len() >= n {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };
    assert!(eventually(1).await);

    emu.stop_member(0).await.unwrap();
    // It reconnects to a replica, which sends what happens from then on.
    let deadline = std::time::Instant::now() + wait;
    while !(listener.state() == ListenerState::Connected && emu.control().websocket_count() == 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "no reconnect: {:?}",
            listener.state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!client.cluster_members()[0].available);
    emu.control().emit_event("Tick", json!({"N": 2}));
    assert!(eventually(2).await, "{:?}", seen.lock().unwrap());
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    listener.stop().await;
}

/// The periodic check, in the background, learns of a promotion made
/// elsewhere before a write meets the old primary.
#[tokio::test]
async fn the_periodic_check_follows_a_promotion_made_elsewhere() {
    let emu = cluster_of(3).await;
    let hosts = emu.member_hosts();
    let client = cluster_client(
        &emu,
        ClusterOptions::new().refresh_every(Duration::from_millis(50)),
    )
    .await;
    create_user(&client, "before").await.unwrap();
    let other = admin(&emu).await;
    let id = emu.connection().spp.members[1].id.clone();
    other
        .post(Service::Core, &format!("Cluster/Members/{id}/Promote"))
        .send()
        .await
        .unwrap();
    // Reads start checks in the background; the client learns the new
    // primary without a write having to meet the old one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while primary_of(&client).as_deref() != Some(hosts[1].as_str()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            client.cluster_members()
        );
        let _: Value = client.get(Service::Core, "Me").send_json().await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    create_user(&client, "after").await.unwrap();
    assert_eq!(emu.control().replica_write_refusals(), 0);
}
