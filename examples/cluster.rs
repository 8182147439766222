//! A client of a Safeguard cluster: writes go to the primary, reads to the
//! nearest member, and a workload carries on while the primary stops and a
//! replica is promoted.
//!
//! With no arguments it starts an embedded 3-member cluster, runs 400 calls
//! (a quarter of them writes) on 4 tasks, stops the primary a quarter of the
//! way in, promotes member 1, and reports how the calls fared:
//!
//! ```sh
//! cargo run --example cluster
//! ```
//!
//! Against a real cluster, set `SAFEGUARD_HOSTS` (member addresses, comma
//! separated), `SAFEGUARD_USER`, `SAFEGUARD_PASSWORD`, and optionally
//! `SAFEGUARD_PROVIDER` and `SAFEGUARD_CA`: it then lists the members and
//! reads (it stops nothing and writes nothing).
//!
//! `RUST_LOG=safeguard_sdk::cluster=info` shows every move between members.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::cluster::{ClusterOptions, ReadRouting};
use safeguard_sdk::{SafeguardClient, Service};
use serde_json::{json, Value};

const CALLS: usize = 400;
const TASKS: usize = 4;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "safeguard_sdk::cluster=warn".into()),
        )
        .init();
    if let Ok(hosts) = std::env::var("SAFEGUARD_HOSTS") {
        return real_cluster(&hosts).await;
    }

    let emulator = safeguard_emulator::Emulator::start(safeguard_emulator::EmulatorConfig {
        cluster_members: 3,
        ..Default::default()
    })
    .await?;
    let hosts = emulator.member_hosts();
    println!("Started an embedded 3-member cluster: {}", hosts.join(", "));
    let admin = &emulator.connection().spp.admin;
    let client = SafeguardClient::builder(hosts[0].clone())
        .ca_pem(emulator.ca_pem())?
        .cluster(
            ClusterOptions::new()
                .members(hosts[1..].to_vec())
                .reads(ReadRouting::Nearest),
        )
        .auth(PkceAuth::new(
            "local",
            admin.user.clone(),
            admin.password.clone(),
        ))
        .build()?;
    client.login().await?;
    print_members(&client);

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (client, next, done) = (client.clone(), next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut writes = 0;
            while let Some(i) = Some(next.fetch_add(1, Ordering::SeqCst)).filter(|&i| i < CALLS) {
                if i % 4 == 0 {
                    client
                        .post(Service::Core, "Users")
                        .json(&json!({"Name": format!("cluster-example-{i}"),
                            "PrimaryAuthenticationProvider": {"Id": -1}}))
                        .send_json::<Value>()
                        .await?;
                    writes += 1;
                } else {
                    client.get(Service::Core, "Me").send_json::<Value>().await?;
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<_, safeguard_sdk::Error>(writes)
        }));
    }

    while done.load(Ordering::SeqCst) < CALLS / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "After {} calls: stopping the primary ({})",
        done.load(Ordering::SeqCst),
        hosts[0]
    );
    emulator.stop_member(0).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_primary = emulator.connection().spp.members[1].id.clone();
    println!("Promoting member 1 ({}), through the client", hosts[1]);
    client
        .post(
            Service::Core,
            &format!("Cluster/Members/{new_primary}/Promote"),
        )
        .send()
        .await?;

    let mut writes = 0;
    for task in tasks {
        writes += task.await??;
    }
    println!(
        "{} calls ({writes} writes) in {:.1} s, none lost, none repeated; \
         writes refused by replicas: {}",
        done.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
        emulator.control().replica_write_refusals()
    );
    let created: Vec<Value> = client
        .get(Service::Core, "Users")
        .query(&[("filter", "Name sw 'cluster-example-'")])?
        .send_json()
        .await?;
    assert_eq!(created.len(), writes, "every write was carried out once");
    print_members(&client);
    client.logout().await?;
    Ok(())
}

/// Lists what the client knows of the members.
fn print_members(client: &SafeguardClient) {
    for m in client.cluster_members() {
        println!(
            "  {:<22} {:<8} {:<10} {}",
            m.host.to_string(),
            format!("{:?}", m.role),
            if m.available { "available" } else { "down" },
            m.latency
                .map(|l| format!("{:.1} ms", l.as_secs_f64() * 1000.0))
                .unwrap_or_default()
        );
    }
}

/// Lists a real cluster's members and reads through the cluster client.
async fn real_cluster(hosts: &str) -> Result<(), Box<dyn std::error::Error>> {
    let hosts: Vec<&str> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let Some((first, rest)) = hosts.split_first() else {
        return Err("SAFEGUARD_HOSTS lists no member".into());
    };
    let provider = std::env::var("SAFEGUARD_PROVIDER").unwrap_or_else(|_| "local".into());
    let mut builder = SafeguardClient::builder(*first)
        .cluster(ClusterOptions::new().members(rest.iter().copied()))
        .auth(PkceAuth::new(
            provider,
            std::env::var("SAFEGUARD_USER")?,
            std::env::var("SAFEGUARD_PASSWORD")?,
        ));
    if let Ok(ca) = std::env::var("SAFEGUARD_CA") {
        builder = builder.ca_file(ca)?;
    }
    let client = builder.build()?;
    client.login().await?;
    print_members(&client);
    let me: Value = client.get(Service::Core, "Me").send_json().await?;
    println!("Signed in as {}", me["DisplayName"]);
    client.logout().await?;
    Ok(())
}
