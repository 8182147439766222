//! Event delivery latency, emulator emit → handler, over TLS websockets on
//! loopback: p50/p99/max at a steady 1,000 events/s, then the sustainable
//! events per second with at most 512 events in flight.
//!
//! ```sh
//! cargo bench --bench events
//! ```
//!
//! `EVENTS_BENCH_SECONDS` sets the length of the steady phase (default 10).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use safeguard_emulator::{Emulator, EmulatorConfig};
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::events::{Event, ListenerState};
use safeguard_sdk::SafeguardClient;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::var("EVENTS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let emu = Emulator::start(EmulatorConfig::default()).await?;
    let admin = &emu.connection().spp.admin;
    let client = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())?
        .auth(PkceAuth::new(
            "local",
            admin.user.clone(),
            admin.password.clone(),
        ))
        .build()?;
    client.login().await?;

    let base = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::with_capacity(200_000)));
    let received = Arc::new(AtomicU64::new(0));
    let listener = client.persistent_event_listener();
    {
        let latencies = latencies.clone();
        let received = received.clone();
        listener.on("BenchEvent", move |e: &Event| {
            let now = base.elapsed();
            if let Some(sent) = e.body["SentNanos"].as_u64() {
                let lat = now.saturating_sub(Duration::from_nanos(sent));
                latencies.lock().unwrap().push(lat);
            }
            received.fetch_add(1, Ordering::Relaxed);
        });
    }
    listener.start().await?;
    if !listener
        .wait_for_state(ListenerState::Connected, Duration::from_secs(10))
        .await
    {
        return Err("listener did not connect".into());
    }
    // Wait for the hub to subscribe, then warm up.
    while emu.control().websocket_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let control = emu.control();
    for i in 0..1000u64 {
        control.emit_event(
            "BenchEvent",
            json!({"Seq": i, "SentNanos": base.elapsed().as_nanos() as u64}),
        );
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    latencies.lock().unwrap().clear();
    received.store(0, Ordering::SeqCst);

    // Phase 1: a steady 1,000 events/s.
    let total = seconds * 1000;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    for i in 0..total {
        tick.tick().await;
        control.emit_event(
            "BenchEvent",
            json!({"Seq": i, "SentNanos": base.elapsed().as_nanos() as u64}),
        );
    }
    let emit_time = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::SeqCst) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();
    println!(
        "steady: {} events emitted in {:.2?} ({:.0}/s), {} delivered",
        total,
        emit_time,
        total as f64 / emit_time.as_secs_f64(),
        lat.len()
    );
    println!(
        "latency emit→handler: p50 {:.3?}  p90 {:.3?}  p99 {:.3?}  p99.9 {:.3?}  max {:.3?}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.90),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        lat.last().copied().unwrap_or_default()
    );
    let p99_ok = percentile(&lat, 0.99) < Duration::from_millis(5);
    println!(
        "target p99 < 5 ms: {}",
        if p99_ok { "met" } else { "MISSED" }
    );

    // Phase 2: as fast as the pipeline sustains, at most 512 in flight (the
    // emulator's event channel holds 1,024).
    received.store(0, Ordering::SeqCst);
    latencies.lock().unwrap().clear();
    let burst = 50_000u64;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < burst {
        while sent - received.load(Ordering::Relaxed) >= 512 {
            tokio::task::yield_now().await;
        }
        control.emit_event(
            "BenchEvent",
            json!({"Seq": sent, "SentNanos": base.elapsed().as_nanos() as u64}),
        );
        sent += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.load(Ordering::SeqCst) < burst && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = start.elapsed();
    let got = received.load(Ordering::SeqCst);
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();
    println!(
        "throughput: {got}/{burst} events in {took:.2?} = {:.0} events/s (p50 {:.3?}, p99 {:.3?} with up to 512 queued)",
        got as f64 / took.as_secs_f64(),
        percentile(&lat, 0.50),
        percentile(&lat, 0.99)
    );
    listener.stop().await;
    Ok(())
}
