//! A2A against an emulated 3-member cluster over real HTTPS: a context given
//! several members moves to a live one when its member stops (every member,
//! a replica too, serves A2A), comes back to a restarted one when another
//! stops, works when the first member given is dead, fails with a typed and
//! bounded error when every member is stopped; a credential watch (the A2A
//! event listener inside) reconnects to a live member and still sees a
//! rotation made afterwards, by its event.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use safeguard_emulator::{ClientCertMode, Emulator};
use safeguard_sdk::a2a::{A2aContext, A2aFailure, AccessRequestTypeKnown, BrokeredAccessRequest};
use safeguard_sdk::events::{ListenerState, ReconnectPolicy};
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{Error, ExposeSecret, Host, SafeguardClient, SecretString, Service};

const WAIT: Duration = Duration::from_secs(15);

async fn cluster() -> Emulator {
    common::emulator_with(|c| {
        c.cluster_members = 3;
        // As the appliance: the certificate is asked for after the handshake.
        c.client_cert_mode = ClientCertMode::PostHandshake;
        c.post_handshake_timeout = Duration::from_secs(3);
    })
    .await
}

/// A context of `hosts` (the first is tried first), trusting the emulator's CA.
fn context(emu: &Emulator, hosts: &[String]) -> A2aContext {
    let c = &emu.connection().spp.client_cert;
    A2aContext::builder(hosts[0].clone())
        .members(hosts[1..].iter().cloned())
        .pem_files(&c.cert, &c.key)
        .tls(TlsOptions::default().with_ca_pem(emu.ca_pem()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("context builds")
}

fn host(s: &str) -> Host {
    s.parse().unwrap()
}

fn password_key(emu: &Emulator) -> SecretString {
    SecretString::from(emu.connection().spp.a2a.password_api_key.clone())
}

fn expected_password(emu: &Emulator) -> String {
    emu.control()
        .account_password(emu.control().password_account_id())
        .expect("the seeded account has a password")
}

/// `count` retrievals, each checked against the account's password.
async fn retrieve(a2a: &A2aContext, emu: &Emulator, count: usize) {
    let key = password_key(emu);
    let expected = expected_password(emu);
    for i in 0..count {
        let got = a2a
            .retrieve_password(&key)
            .await
            .unwrap_or_else(|e| panic!("retrieval {i} failed: {e:?}"));
        assert_eq!(got.expose_secret(), expected, "retrieval {i}");
    }
}

/// Retrievals that run on their own until stopped: how many succeeded, and
/// every failure or wrong secret.
struct Background {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Background {
    fn start(a2a: &A2aContext, emu: &Emulator) -> Self {
        let (a2a, key, expected) = (a2a.clone(), password_key(emu), expected_password(emu));
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let (s, d) = (stop.clone(), done.clone());
        let task = tokio::spawn(async move {
            let mut problems = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match a2a.retrieve_password(&key).await {
                    Ok(p) if p.expose_secret() == expected => {}
                    Ok(_) => problems.push("a wrong password".to_owned()),
                    Err(e) => problems.push(format!("{e:?}")),
                }
                d.fetch_add(1, Ordering::Relaxed);
            }
            problems
        });
        Self { stop, done, task }
    }

    /// Lets at least `more` further retrievals finish.
    async fn run(&self, more: usize) {
        let target = self.done.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + WAIT;
        while self.done.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the retrievals stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let problems = self.task.await.unwrap();
        (self.done.load(Ordering::Relaxed), problems)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrievals_continue_while_members_stop_and_restart() {
    let emu = cluster().await;
    let members = emu.member_hosts();
    assert_eq!(members.len(), 3);
    let a2a = context(&emu, &members);
    assert_eq!(
        a2a.members(),
        members.iter().map(|m| host(m)).collect::<Vec<_>>()
    );
    retrieve(&a2a, &emu, 5).await;
    assert_eq!(a2a.current_member(), &host(&members[0]));

    // Member 0 (the primary) stops while retrievals run.
    let background = Background::start(&a2a, &emu);
    background.run(20).await;
    emu.stop_member(0).await.unwrap();
    background.run(50).await;
    let (done, problems) = background.finish().await;
    assert!(
        problems.is_empty(),
        "{} of {done}: {problems:?}",
        problems.len()
    );
    assert_ne!(a2a.current_member(), &host(&members[0]));
    retrieve(&a2a, &emu, 10).await;

    // The other calls move too: a private key, API key secrets, the
    // registrations (a certificate sign-in on a replica), a set (PUT) and a
    // brokered access request (POST: the dead member refused the connection).
    let ssh = SecretString::from(emu.connection().spp.a2a.ssh_key_api_key.clone());
    let key = a2a
        .retrieve_private_key(&ssh, Default::default())
        .await
        .unwrap();
    assert!(key.expose_secret().contains("PRIVATE KEY"));
    let registrations = a2a.retrievable_accounts().await.unwrap();
    assert!(registrations.iter().any(|r| !r.accounts.is_empty()));
    a2a.set_password(&password_key(&emu), &SecretString::from("Rotated-1"))
        .await
        .unwrap();
    assert_eq!(expected_password(&emu), "Rotated-1");
    retrieve(&a2a, &emu, 3).await;
    let request = BrokeredAccessRequest {
        for_user_name: Some(safeguard_emulator::PLAIN_USER.into()),
        asset_name: Some(safeguard_emulator::ASSET_NAME.into()),
        account_name: Some(safeguard_emulator::PASSWORD_ACCOUNT.into()),
        access_request_type: Some(AccessRequestTypeKnown::Password.into()),
        ..Default::default()
    };
    // A fresh context starts on the stopped member 0.
    let fresh = context(&emu, &members);
    let created = fresh
        .broker_access_request(emu.control().broker_api_key(), &request)
        .await
        .unwrap();
    assert!(created.id.is_some());
    assert_ne!(fresh.current_member(), &host(&members[0]));

    // Member 0 comes back and the member in use stops: the context moves
    // again, to a live member.
    emu.restart_member(0).unwrap();
    let in_use = a2a.current_member().clone();
    let index = members.iter().position(|m| host(m) == in_use).unwrap();
    let background = Background::start(&a2a, &emu);
    background.run(20).await;
    emu.stop_member(index).await.unwrap();
    background.run(50).await;
    let (done, problems) = background.finish().await;
    assert!(
        problems.is_empty(),
        "{} of {done}: {problems:?}",
        problems.len()
    );
    assert_ne!(a2a.current_member(), &in_use);
    retrieve(&a2a, &emu, 10).await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_first_member_is_passed_over() {
    let emu = cluster().await;
    let members = emu.member_hosts();
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let a2a = context(&emu, &[dead.clone(), members[1].clone()]);
    retrieve(&a2a, &emu, 5).await;
    assert_eq!(a2a.current_member(), &host(&members[1]));
    assert_eq!(a2a.host(), &host(&dead), "host() stays the first given");

    // A stopped member first, a live one second.
    emu.stop_member(2).await.unwrap();
    let a2a = context(&emu, &[members[2].clone(), members[0].clone()]);
    retrieve(&a2a, &emu, 5).await;
    assert_eq!(a2a.current_member(), &host(&members[0]));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_stopped_is_a_bounded_typed_error() {
    let emu = cluster().await;
    let members = emu.member_hosts();
    let a2a = context(&emu, &members);
    retrieve(&a2a, &emu, 2).await;
    for i in 0..members.len() {
        emu.stop_member(i).await.unwrap();
    }
    let started = Instant::now();
    let err = a2a.retrieve_password(password_key(&emu)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert_eq!(err.a2a_failure(), Some(A2aFailure::Transport), "{err:?}");
    match &err {
        Error::Transport(t) => {
            assert!(t.is_connect(), "{err:?}");
            let text = t.to_string();
            for m in &members {
                assert!(text.contains(m.as_str()), "{m} is named: {text}");
            }
        }
        other => panic!("not a transport error: {other:?}"),
    }
    // One member back: the context finds it.
    emu.restart_member(1).unwrap();
    retrieve(&a2a, &emu, 3).await;
    assert_eq!(a2a.current_member(), &host(&members[1]));
    emu.shutdown().await;
}

/// Rotates the watched account's password through the core API on the
/// primary, as an administrator (the emulator publishes the A2A event on
/// every member's hub, as they share one state).
async fn rotate(emu: &Emulator, admin: &SafeguardClient, password: &str) {
    let id = emu.control().password_account_id();
    admin
        .put(Service::Core, &format!("AssetAccounts/{id}/Password"))
        .json(password)
        .send()
        .await
        .expect("the password is set");
}

async fn until(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_watch_moves_to_a_live_member_and_sees_later_rotations() {
    let emu = cluster().await;
    let members = emu.member_hosts();
    assert_eq!(emu.primary(), 0);
    // The administrator writes on the primary, member 0; the watch starts
    // on the replica member 1.
    let admin = common::admin(&emu).await;
    let a2a = context(
        &emu,
        &[members[1].clone(), members[2].clone(), members[0].clone()],
    );
    // No safety pull: a rotation arrives by its event or not at all (the
    // watch also pulls after each reconnect, before the rotation below).
    let watch = a2a
        .credential_watch()
        .safety_interval(Duration::from_secs(3600))
        .reconnect_policy(ReconnectPolicy::new(
            Duration::from_millis(50),
            Duration::from_millis(500),
        ));
    let password = watch.password(password_key(&emu));
    watch.start().await.expect("the first pull");
    assert!(until(|| watch.listener_state() == ListenerState::Connected).await);
    assert_eq!(a2a.current_member(), &host(&members[1]));

    rotate(&emu, &admin, "Before-Stop-1").await;
    assert!(
        until(|| password
            .current()
            .is_some_and(|c| c.value.expose_secret() == "Before-Stop-1"))
        .await
    );

    // The watch's member stops: its listener reconnects to a live member
    // (the pull after the reconnect moves the context there too).
    emu.stop_member(1).await.unwrap();
    assert!(
        until(|| a2a.current_member() != &host(&members[1])
            && watch.listener_state() == ListenerState::Connected)
        .await,
        "the watch reconnected to a live member"
    );
    rotate(&emu, &admin, "After-Stop-2").await;
    assert!(
        until(|| password
            .current()
            .is_some_and(|c| c.value.expose_secret() == "After-Stop-2"))
        .await,
        "the rotation after the move arrived"
    );
    watch.stop().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_a2a_event_listener_moves_to_a_live_member() {
    let emu = cluster().await;
    let members = emu.member_hosts();
    let admin = common::admin(&emu).await;
    let a2a = context(&emu, &[members[2].clone(), members[0].clone()]);
    let listener = a2a
        .persistent_event_listener(&[password_key(&emu)])
        .with_reconnect_policy(ReconnectPolicy::new(
            Duration::from_millis(50),
            Duration::from_millis(500),
        ));
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    listener.on("AssetAccountPasswordUpdated", move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let connects = Arc::new(AtomicUsize::new(0));
    let counted = connects.clone();
    listener.on_state_change(move |change| {
        if change.state == ListenerState::Connected {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    listener.start().await.expect("the listener connects");
    assert!(until(|| connects.load(Ordering::Relaxed) == 1).await);
    rotate(&emu, &admin, "Event-1").await;
    assert!(until(|| seen.load(Ordering::Relaxed) >= 1).await);

    emu.stop_member(2).await.unwrap();
    assert!(
        until(|| connects.load(Ordering::Relaxed) == 2
            && listener.state() == ListenerState::Connected)
        .await,
        "the listener reconnected to member 0: {:?} {} {:?}",
        listener.state(),
        connects.load(Ordering::Relaxed),
        listener.last_error()
    );
    // Only the listener sent: its negotiate moved the context.
    assert_eq!(a2a.current_member(), &host(&members[0]));
    let before = seen.load(Ordering::Relaxed);
    rotate(&emu, &admin, "Event-2").await;
    assert!(
        until(|| seen.load(Ordering::Relaxed) > before).await,
        "the event of a rotation after the move arrived"
    );
    listener.stop().await;
    emu.shutdown().await;
}

/// What the SDK logs, kept for the test to read.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The log of this test binary: one global subscriber (a subscriber set for
/// one thread misses events whose call site another test's thread is
/// registering at the same moment); each test reads the lines naming its
/// own members (their ports are its own).
fn logs() -> &'static Capture {
    static LOGS: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter("safeguard_sdk=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        capture
    })
}

#[tokio::test]
async fn a_503_moves_a_retrieval_but_not_a_post_and_every_move_is_traced() {
    let capture = logs();

    let emu = cluster().await;
    let members = emu.member_hosts();
    let a2a = context(&emu, &members);
    retrieve(&a2a, &emu, 1).await;

    // Member 0 answers 503: the retrieval (GET) moves to member 1.
    emu.control().fail_next(1, 503);
    retrieve(&a2a, &emu, 1).await;
    assert_eq!(emu.control().pending_failures(), 0);
    assert_eq!(a2a.current_member(), &host(&members[1]));
    let logs = capture.text();
    let (m0, m1) = (&members[0], &members[1]);
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("503")
            && l.contains(&format!("from={m0}"))
            && l.contains(&format!("to={m1}"))),
        "{logs}"
    );
    assert!(
        logs.lines().any(|l| l.contains("INFO")
            && l.contains(&format!("from={m0}"))
            && l.contains(&format!("to={m1}"))),
        "{logs}"
    );

    // A 503 to a POST is the answer: it may have been acted on.
    emu.control().fail_next(1, 503);
    let request = BrokeredAccessRequest {
        for_user_name: Some(safeguard_emulator::PLAIN_USER.into()),
        asset_name: Some(safeguard_emulator::ASSET_NAME.into()),
        account_name: Some(safeguard_emulator::PASSWORD_ACCOUNT.into()),
        access_request_type: Some(AccessRequestTypeKnown::Password.into()),
        ..Default::default()
    };
    let err = a2a
        .broker_access_request(emu.control().broker_api_key(), &request)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503), "{err:?}");
    assert_eq!(a2a.current_member(), &host(&members[1]));

    // Every member answers 503: the last answer, once each, no hang.
    emu.control().fail_next(3, 503);
    let err = a2a.retrieve_password(password_key(&emu)).await.unwrap_err();
    assert_eq!(err.a2a_failure(), Some(A2aFailure::NotEnabled), "{err:?}");
    assert_eq!(emu.control().pending_failures(), 0, "each member once");
    assert_eq!(a2a.current_member(), &host(&members[1]), "a 503 is no home");
    retrieve(&a2a, &emu, 1).await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_context_takes_members_too() {
    let emu = cluster().await;
    let members = emu.member_hosts();
    emu.stop_member(0).await.unwrap();
    let c = emu.connection().spp.client_cert.clone();
    let ca = emu.ca_pem().to_owned();
    let (key, expected) = (password_key(&emu), expected_password(&emu));
    let hosts = members.clone();
    // Blocking calls refuse to run inside a runtime: on a thread of their own.
    let (got, current, listed) = tokio::task::spawn_blocking(move || {
        let a2a = safeguard_sdk::a2a::blocking::A2aContext::builder(hosts[0].clone())
            .members([hosts[1].clone()])
            .members([hosts[2].clone(), hosts[0].clone()])
            .pem_files(&c.cert, &c.key)
            .tls(TlsOptions::default().with_ca_pem(&ca).unwrap())
            .build()
            .unwrap();
        let got = a2a.retrieve_password(&key).unwrap();
        (got, a2a.current_member().clone(), a2a.members().to_vec())
    })
    .await
    .unwrap();
    assert_eq!(got.expose_secret(), expected);
    assert_eq!(current, host(&members[1]));
    assert_eq!(listed.len(), 3, "a member given twice is listed once");
    emu.shutdown().await;
}
