//! Event listeners against the emulator's SignalR hubs over real TLS websockets.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use safeguard_emulator::Emulator;
use safeguard_sdk::auth::TokenAuth;
use safeguard_sdk::events::{
    Event, EventsError, ListenerOptions, ListenerState, Missed, PersistentEventListener,
    ReconnectPolicy,
};
use safeguard_sdk::{Error, ExposeSecret, Service};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A reconnect policy fast enough for tests.
fn quick_policy() -> ReconnectPolicy {
    ReconnectPolicy::new(Duration::from_millis(5), Duration::from_millis(50))
}

/// Counts `Connected` reports of a listener.
fn count_connects(listener: &PersistentEventListener) -> Arc<AtomicUsize> {
    count_reports(listener, ListenerState::Connected)
}

/// Counts the reports of `state` (a watch channel keeps only the latest
/// state, so a transient one such as `Disconnected` under a 5 ms backoff is
/// counted from the callback instead).
fn count_reports(listener: &PersistentEventListener, state: ListenerState) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    listener.on_state_change(move |s| {
        if s.state == state {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    n
}

/// Emits `name` with `{"Seq": seq}` every 20 ms until `seen` holds `seq`
/// (an emit racing a hub's subscription may be missed, as on an appliance).
async fn emit_until_seen(emu: &Emulator, name: &str, seq: u64, seen: &Mutex<HashSet<u64>>) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        emu.control().emit_event(name, json!({ "Seq": seq }));
        if eventually(Duration::from_millis(20), || {
            seen.lock().unwrap().contains(&seq)
        })
        .await
        {
            return true;
        }
    }
    false
}

fn seq_collector(listener: &PersistentEventListener, name: &str) -> Arc<Mutex<HashSet<u64>>> {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let s = seen.clone();
    listener.on(name, move |e: &Event| {
        if let Some(n) = e.body["Seq"].as_u64() {
            s.lock().unwrap().insert(n);
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_events_reach_handlers_and_the_stream() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let listener = client.event_listener();
    let states = Arc::new(Mutex::new(Vec::new()));
    let s = states.clone();
    listener.on_state_change(move |c| s.lock().unwrap().push(c.state));

    // A panicking and a failing handler come first; the others still run.
    listener.on("UserCreated", |_: &Event| -> Result<(), String> {
        panic!("handler bug")
    });
    listener.on("usercreated", |_: &Event| -> Result<(), String> {
        Err("handler error".into())
    });
    let created = Arc::new(Mutex::new(Vec::new()));
    let c = created.clone();
    listener.on("USERCREATED", move |e: &Event| {
        c.lock().unwrap().push(e.clone());
    });
    let any = Arc::new(AtomicUsize::new(0));
    let a = any.clone();
    listener.on_any(move |_: &Event| {
        a.fetch_add(1, Ordering::SeqCst);
    });
    let mut stream = listener.events();

    assert_eq!(listener.state(), ListenerState::Idle);
    listener.start().await.expect("listener connects");
    assert_eq!(listener.state(), ListenerState::Connected);
    assert!(matches!(
        listener.start().await,
        Err(Error::Events(EventsError::AlreadyRunning))
    ));
    assert!(eventually(WAIT, || emu.control().websocket_count() == 1).await);

    let user: serde_json::Value = client
        .post(Service::Core, "Users")
        .json(&json!({"PrimaryAuthenticationProvider": {"Id": -1}, "Name": "EventsUser1"}))
        .send_json()
        .await
        .expect("user created");

    let event = tokio::time::timeout(WAIT, async {
        loop {
            let e = stream.next().await.expect("stream open");
            if e.is("UserCreated") {
                return e;
            }
        }
    })
    .await
    .expect("UserCreated on the stream");
    assert_eq!(event.name, "UserCreated");
    assert_eq!(event.body["UserId"], user["Id"]);
    assert_eq!(event.body["UserName"], "EventsUser1");
    assert_eq!(event.raw["Name"], "UserCreated");
    assert!(eventually(WAIT, || created.lock().unwrap().len() == 1).await);
    assert_eq!(created.lock().unwrap()[0], event);

    // Another name reaches only the catch-all.
    emu.control()
        .emit_event("AssetCreated", json!({"AssetId": 1}));
    assert!(eventually(WAIT, || any.load(Ordering::SeqCst) >= 2).await);
    assert_eq!(created.lock().unwrap().len(), 1);

    listener.stop().await;
    assert_eq!(listener.state(), ListenerState::Stopped);
    assert!(eventually(WAIT, || emu.control().websocket_count() == 0).await);
    assert_eq!(listener.closed().await.ok(), Some(()));
    assert_eq!(
        *states.lock().unwrap(),
        vec![
            ListenerState::Connecting,
            ListenerState::Connected,
            ListenerState::Stopped
        ]
    );
    // It can start again, with its handlers.
    listener.start().await.expect("restart");
    emu.control()
        .emit_event("UserCreated", json!({"UserId": 99}));
    assert!(eventually(WAIT, || created.lock().unwrap().len() == 2).await);
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_v0_and_v1() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    for v0 in [false, true] {
        emu.control().set_negotiate_v0(v0);
        let listener = client.event_listener();
        let mut stream = listener.events();
        listener
            .start()
            .await
            .unwrap_or_else(|e| panic!("v0={v0}: {e}"));
        assert!(eventually(WAIT, || emu.control().websocket_count() == 1).await);
        emu.control().emit_event("TestEvent", json!({"V0": v0}));
        let e = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("event")
            .expect("open");
        assert_eq!(e.body["V0"], v0);
        listener.stop().await;
        assert!(eventually(WAIT, || emu.control().websocket_count() == 0).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_listener_reports_the_drop() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let listener = client.event_listener();
    listener.start().await.expect("connects");
    emu.control().drop_websockets();
    let err = tokio::time::timeout(WAIT, listener.closed())
        .await
        .expect("ends")
        .unwrap_err();
    assert!(
        matches!(
            *err,
            Error::Events(EventsError::ConnectionLost) | Error::Events(EventsError::WebSocket(_))
        ),
        "{err}"
    );
    assert_eq!(listener.state(), ListenerState::Disconnected);
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_an_authentication_error() {
    let emu = common::emulator().await;
    let client = common::client(&emu, TokenAuth::new("not-a-token"));
    let listener = client.event_listener();
    match listener.start().await {
        Err(Error::Authentication(e)) => assert_eq!(e.status.as_u16(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    assert_eq!(listener.state(), ListenerState::Stopped);
    assert!(listener.last_error().is_some());
}

/// A server that accepts TCP connections and never says a word cannot hang
/// `start()`: the client's limits end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_and_says_nothing_cannot_hang_start() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let client = safeguard_sdk::SafeguardClient::builder(addr.to_string())
        .auth(TokenAuth::new("any"))
        .limits(
            safeguard_sdk::limits::Limits::default()
                .connect_timeout(Some(Duration::from_millis(300)))
                .answer_timeout(Some(Duration::from_millis(300))),
        )
        .build()
        .expect("client builds");
    let listener = client
        .event_listener()
        .with_options(ListenerOptions::default().connect_timeout(Duration::from_secs(600)));
    let result = tokio::time::timeout(Duration::from_secs(30), listener.start())
        .await
        .expect("start() ends");
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    assert_eq!(listener.state(), ListenerState::Stopped);
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_listener_survives_100_drops_in_a_row() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let listener = client
        .persistent_event_listener()
        .with_reconnect_policy(quick_policy());
    let connects = count_connects(&listener);
    let seen = seq_collector(&listener, "tick");
    let also = Arc::new(AtomicUsize::new(0));
    let a = also.clone();
    listener.on_any(move |_: &Event| {
        a.fetch_add(1, Ordering::SeqCst);
    });
    let handlers = listener.handler_count();
    // Every reconnect reports its gap: to the state callbacks, and in its
    // place in the stream.
    let gaps = Arc::new(Mutex::new(Vec::new()));
    let g = gaps.clone();
    listener.on_state_change(move |s| {
        if let Some(gap) = s.gap {
            assert_eq!(s.state, ListenerState::Connected);
            g.lock().unwrap().push(gap);
        }
    });
    let mut stream = listener.events();
    listener.start().await.expect("starts");
    let started = Instant::now();
    for i in 0..100u64 {
        assert!(
            eventually(WAIT, || connects.load(Ordering::SeqCst) == i as usize + 1).await,
            "connection {} never came",
            i + 1
        );
        assert!(
            emit_until_seen(&emu, "Tick", i, &seen).await,
            "event after reconnect {i} lost"
        );
        emu.control().drop_websockets();
    }
    assert!(eventually(WAIT, || connects.load(Ordering::SeqCst) == 101).await);
    assert!(emit_until_seen(&emu, "Tick", 100, &seen).await);
    assert!(
        listener
            .wait_for_state(ListenerState::Connected, WAIT)
            .await
    );
    assert_eq!(listener.handler_count(), handlers);
    assert_eq!(seen.lock().unwrap().len(), 101);
    assert!(also.load(Ordering::SeqCst) >= 101);
    eprintln!("100 drops and reconnects in {:?}", started.elapsed());
    let gaps = gaps.lock().unwrap().clone();
    assert_eq!(gaps.len(), 100, "one gap per reconnect");
    for pair in gaps.windows(2) {
        assert!(pair[0].since <= pair[0].until && pair[0].until <= pair[1].since);
    }
    // In the stream, gap `k` stands between the ticks of connection `k` and
    // those of connection `k + 1`.
    let (mut in_stream, mut last_seq) = (0u64, 0u64);
    while last_seq < 100 || in_stream < 100 {
        match tokio::time::timeout(WAIT, stream.recv()).await {
            Ok(Some(Ok(e))) => {
                let seq = e.body["Seq"].as_u64().expect("a tick");
                assert!(seq == in_stream, "tick {seq} after {in_stream} gaps");
                last_seq = seq;
            }
            Ok(Some(Err(Missed::Disconnected(gap)))) => {
                assert_eq!(gap, gaps[in_stream as usize]);
                assert_eq!(last_seq, in_stream, "the gap follows the ticks before it");
                in_stream += 1;
            }
            other => panic!("after {in_stream} gaps: {other:?}"),
        }
    }
    listener.stop().await;
    assert_eq!(listener.state(), ListenerState::Stopped);
    assert!(!listener.is_running().await);
    assert!(eventually(WAIT, || emu.control().websocket_count() == 0).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_while_disconnected_signs_in_again() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let listener = client
        .persistent_event_listener()
        .with_reconnect_policy(quick_policy());
    let connects = count_connects(&listener);
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let r = reasons.clone();
    listener.on_state_change(move |c| {
        if let Some(e) = &c.reason {
            r.lock().unwrap().push(e.status().map(|s| s.as_u16()));
        }
    });
    let seen = seq_collector(&listener, "Tick");
    listener.start().await.expect("starts");
    assert!(eventually(WAIT, || connects.load(Ordering::SeqCst) == 1).await);
    let signins = emu.control().signins("authorization_code");
    let old_token = client.user_token().await.expect("token");

    emu.control().expire_all_tokens();
    emu.control().drop_websockets();

    assert!(
        eventually(WAIT, || connects.load(Ordering::SeqCst) == 2).await,
        "reconnected"
    );
    assert_eq!(emu.control().signins("authorization_code"), signins + 1);
    assert!(
        reasons.lock().unwrap().contains(&Some(401)),
        "{:?}",
        reasons.lock().unwrap()
    );
    let new_token = client.user_token().await.expect("token");
    assert_ne!(old_token.expose_secret(), new_token.expose_secret());
    assert!(emit_until_seen(&emu, "Tick", 1, &seen).await);
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_cannot_be_refreshed_stops_the_listener() {
    let emu = common::emulator().await;
    let admin = common::admin(&emu).await;
    let token = admin.user_token().await.expect("token");
    let client = common::client(&emu, TokenAuth::new(token.expose_secret()));
    let listener = client
        .persistent_event_listener()
        .with_reconnect_policy(quick_policy());
    listener.start().await.expect("starts");
    assert!(
        listener
            .wait_for_state(ListenerState::Connected, WAIT)
            .await
    );
    emu.control().expire_all_tokens();
    emu.control().drop_websockets();
    assert!(listener.wait_for_state(ListenerState::Stopped, WAIT).await);
    let reason = listener.last_error().expect("a reason");
    assert!(matches!(*reason, Error::CannotRefresh { .. }), "{reason}");
    assert!(eventually(WAIT, || !futures::executor::block_on(listener.is_running())).await);
}

/// An async handler that awaits a slow operation gets every event, one at a
/// time in arrival order, while the connection stays alive: its keep-alive
/// timeout is far shorter than the handlers' total time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_async_handler_gets_every_event_in_order_without_stalling_the_connection() {
    let emu = common::emulator().await;
    emu.control().set_ping_interval(Duration::from_millis(50));
    let client = common::admin(&emu).await;
    let listener = client
        .persistent_event_listener()
        .with_reconnect_policy(quick_policy())
        .with_options(
            ListenerOptions::default()
                .keepalive(Duration::from_millis(50), Duration::from_millis(600)),
        );
    let connects = count_connects(&listener);
    let drops = count_reports(&listener, ListenerState::Disconnected);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let busy = Arc::new(AtomicUsize::new(0));
    let max_busy = Arc::new(AtomicUsize::new(0));
    let (s, b, m) = (seen.clone(), busy.clone(), max_busy.clone());
    listener.on_async("SlowWork", move |e: Event| {
        let (s, b, m) = (s.clone(), b.clone(), m.clone());
        async move {
            let n = b.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.lock().unwrap().push(e.body["Seq"].as_u64().unwrap());
            b.fetch_sub(1, Ordering::SeqCst);
            Ok::<(), String>(())
        }
    });
    listener.start().await.expect("starts");
    assert!(
        listener
            .wait_for_state(ListenerState::Connected, WAIT)
            .await
    );
    let started = Instant::now();
    for seq in 0..6u64 {
        emu.control().emit_event("SlowWork", json!({ "Seq": seq }));
    }
    assert!(
        eventually(WAIT, || seen.lock().unwrap().len() == 6).await,
        "{:?}",
        seen.lock().unwrap()
    );
    let took = started.elapsed();
    assert_eq!(*seen.lock().unwrap(), (0..6).collect::<Vec<u64>>());
    assert_eq!(max_busy.load(Ordering::SeqCst), 1, "one at a time");
    assert!(took >= Duration::from_millis(1700), "took {took:?}");
    // 1.8 s of handlers against a 600 ms keep-alive timeout: the connection
    // kept reading pings all along.
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "{:?}",
        listener.last_error()
    );
    assert_eq!(connects.load(Ordering::SeqCst), 1);
    assert_eq!(listener.state(), ListenerState::Connected);
    assert_eq!(listener.dropped_events(), 0);
    listener.stop().await;
}

/// The one-shot listener runs async handlers too, and its stream still gets
/// every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_listener_runs_async_handlers() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let listener = client.event_listener();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    listener.on_any_async(move |e: Event| {
        let s = s.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.lock().unwrap().push(e.name);
        }
    });
    let mut stream = listener.events();
    listener.start().await.expect("connects");
    emu.control().emit_event("First", json!({}));
    emu.control().emit_event("Second", json!({}));
    for name in ["First", "Second"] {
        let e = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("event")
            .expect("open");
        assert_eq!(e.name, name);
    }
    assert_eq!(*seen.lock().unwrap(), vec!["First", "Second"]);
    listener.stop().await;
}

/// A hub close with `allowReconnect: false` stops a persistent listener for
/// good with the hub's message; `true` or no `allowReconnect` reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_close_that_forbids_reconnecting_stops_the_listener() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let listener = client
        .persistent_event_listener()
        .with_reconnect_policy(quick_policy());
    let connects = count_connects(&listener);
    listener.start().await.expect("starts");
    assert!(eventually(WAIT, || connects.load(Ordering::SeqCst) == 1).await);
    // Allowed, then unstated: reconnects.
    emu.control().close_websockets("restarting", Some(true));
    assert!(
        eventually(WAIT, || connects.load(Ordering::SeqCst) == 2).await,
        "reconnects after allowReconnect: true"
    );
    emu.control().close_websockets("going away", None);
    assert!(
        eventually(WAIT, || connects.load(Ordering::SeqCst) == 3).await,
        "reconnects when allowReconnect is absent"
    );
    // Forbidden: stops with the hub's reason and does not come back.
    emu.control()
        .close_websockets("the appliance is in maintenance", Some(false));
    assert!(listener.wait_for_state(ListenerState::Stopped, WAIT).await);
    let reason = listener.last_error().expect("a reason");
    match &*reason {
        Error::Events(EventsError::ClosedByHub {
            error,
            allow_reconnect: false,
            ..
        }) => assert_eq!(error.as_deref(), Some("the appliance is in maintenance")),
        other => panic!("expected ClosedByHub, got {other}"),
    }
    assert!(eventually(WAIT, || !futures::executor::block_on(listener.is_running())).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connects.load(Ordering::SeqCst), 3, "no reconnect");
    assert_eq!(listener.state(), ListenerState::Stopped);
    assert!(eventually(WAIT, || emu.control().websocket_count() == 0).await);
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_client_stops_its_listener() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let listener = client
        .persistent_event_listener()
        .with_reconnect_policy(quick_policy());
    listener.start().await.expect("starts");
    assert!(
        listener
            .wait_for_state(ListenerState::Connected, WAIT)
            .await
    );
    let signins = emu.control().login_response_calls();
    client.logout().await.unwrap();
    emu.control().drop_websockets();
    assert!(listener.wait_for_state(ListenerState::Stopped, WAIT).await);
    let reason = listener.last_error().expect("a reason");
    assert!(matches!(*reason, Error::SignedOut), "{reason}");
    assert_eq!(
        emu.control().login_response_calls(),
        signins,
        "the listener did not sign the client in again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_hub_is_detected_with_short_keepalive() {
    let emu = common::emulator().await;
    emu.control().set_ping_interval(Duration::from_millis(50));
    let client = common::admin(&emu).await;
    let options =
        ListenerOptions::default().keepalive(Duration::from_millis(50), Duration::from_millis(800));

    // Healthy: pings both ways keep it alive well past the timeout.
    let listener = client.event_listener().with_options(options.clone());
    listener.start().await.expect("connects");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(listener.state(), ListenerState::Connected);

    // Silent: dead after the timeout.
    emu.control().set_silent(true);
    let silent_at = Instant::now();
    let err = tokio::time::timeout(WAIT, listener.closed())
        .await
        .expect("ends")
        .unwrap_err();
    let took = silent_at.elapsed();
    assert!(
        matches!(*err, Error::Events(EventsError::ServerTimeout(_))),
        "{err}"
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    listener.stop().await;

    // The persistent listener reconnects once the hub speaks again.
    let persistent = client
        .persistent_event_listener()
        .with_options(options)
        .with_reconnect_policy(quick_policy());
    let connects = count_connects(&persistent);
    let disconnects = count_reports(&persistent, ListenerState::Disconnected);
    emu.control().set_silent(false);
    persistent.start().await.expect("starts");
    assert!(eventually(WAIT, || connects.load(Ordering::SeqCst) == 1).await);
    emu.control().set_silent(true);
    assert!(eventually(WAIT, || disconnects.load(Ordering::SeqCst) >= 1).await);
    emu.control().set_silent(false);
    assert!(eventually(WAIT, || connects.load(Ordering::SeqCst) >= 2).await);
    persistent.stop().await;
}

/// The real defaults (client ping 15 s, 30 s of silence = dead): a hub that
/// goes silent is detected within 35 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_hub_is_detected_within_35_seconds_with_default_keepalive() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    let listener = client.event_listener();
    assert_eq!(listener.options().ping_interval, Duration::from_secs(15));
    assert_eq!(listener.options().server_timeout, Duration::from_secs(30));
    listener.start().await.expect("connects");
    emu.control().set_silent(true);
    let silent_at = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(40), listener.closed())
        .await
        .expect("detected within 40 s")
        .unwrap_err();
    let took = silent_at.elapsed();
    assert!(
        matches!(*err, Error::Events(EventsError::ServerTimeout(_))),
        "{err}"
    );
    assert!(took <= Duration::from_secs(35), "took {took:?}");
    assert!(took >= Duration::from_secs(25), "took {took:?}");
    eprintln!("dead connection detected after {took:?}");
}

/// After `stop` (and dropping the client) nothing of the listener runs on
/// its runtime.
#[test]
fn stop_leaves_no_task_running() {
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = emu_rt.block_on(common::emulator());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = common::admin(&emu).await;
        let persistent = client
            .persistent_event_listener()
            .with_reconnect_policy(quick_policy());
        persistent.on("Tick", |_: &Event| {});
        persistent.start().await.expect("starts");
        assert!(
            persistent
                .wait_for_state(ListenerState::Connected, WAIT)
                .await
        );
        let once = client.event_listener();
        once.start().await.expect("connects");
        assert!(eventually(WAIT, || emu.control().websocket_count() == 2).await);
        // One more drop so that a reconnect is under way or just done.
        emu.control().drop_websockets();
        tokio::time::sleep(Duration::from_millis(2)).await;
        persistent.stop().await;
        once.stop().await;
        assert_eq!(persistent.state(), ListenerState::Stopped);
        drop(persistent);
        drop(once);
        drop(client);
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.metrics().num_alive_tasks() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rt.metrics().num_alive_tasks(), 0, "tasks left running");
    emu_rt.block_on(async {
        assert!(eventually(WAIT, || emu.control().websocket_count() == 0).await);
    });
}

#[test]
fn the_blocking_listener_runs_on_its_own_thread() {
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emu = emu_rt.block_on(common::emulator());
    let admin = &emu.connection().spp.admin;
    let client = safeguard_sdk::blocking::SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .auth(safeguard_sdk::auth::PkceAuth::new(
            "local",
            admin.user.clone(),
            admin.password.clone(),
        ))
        .build()
        .unwrap();
    client.login().expect("signs in");
    let mut listener = client.event_listener();
    let (tx, rx) = std::sync::mpsc::channel::<(String, std::thread::ThreadId)>();
    let tx = Mutex::new(tx);
    listener.on("UserCreated", move |e: &Event| {
        let _ = tx
            .lock()
            .unwrap()
            .send((e.name.clone(), std::thread::current().id()));
    });
    listener.start().expect("starts");
    assert!(listener.wait_connected(WAIT));
    let deadline = Instant::now() + WAIT;
    let got = loop {
        emu.control()
            .emit_event("UserCreated", json!({"UserId": 1}));
        if let Ok(got) = rx.recv_timeout(Duration::from_millis(50)) {
            break got;
        }
        assert!(Instant::now() < deadline, "no event");
    };
    assert_eq!(got.0, "UserCreated");
    assert_ne!(got.1, std::thread::current().id());
    listener.stop();
    assert_eq!(listener.state(), ListenerState::Stopped);
    emu_rt.block_on(async {
        assert!(eventually(WAIT, || emu.control().websocket_count() == 0).await);
    });
}

#[cfg(feature = "a2a")]
mod a2a {
    use super::*;
    use safeguard_emulator::ClientCertMode;
    use safeguard_sdk::a2a::A2aContext;
    use safeguard_sdk::events::A2A_EVENTS;
    use safeguard_sdk::tls::TlsOptions;
    use safeguard_sdk::SecretString;

    fn context(emu: &Emulator) -> A2aContext {
        let cert = &emu.connection().spp.client_cert;
        A2aContext::builder(emu.spp_host())
            .pem_files(cert.cert.clone(), cert.key.clone())
            .tls(TlsOptions::default().with_ca_pem(emu.ca_pem()).expect("CA"))
            .build()
            .expect("A2A context")
    }

    fn names(listener: &PersistentEventListener) -> Arc<Mutex<Vec<(String, serde_json::Value)>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        listener.on_any(move |e: &Event| s.lock().unwrap().push((e.name.clone(), e.body.clone())));
        seen
    }

    /// Events of one or several API keys, with the certificate asked for in
    /// the first handshake and (like the appliance) after it: TLS 1.3
    /// post-handshake authentication and TLS 1.2 renegotiation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a2a_events_for_one_or_several_keys() {
        for mode in [
            ClientCertMode::InHandshake,
            ClientCertMode::PostHandshake,
            ClientCertMode::Renegotiation,
        ] {
            let emu = common::emulator_with(|c| c.client_cert_mode = mode).await;
            let ctx = context(&emu);
            let keys = emu.connection().spp.a2a.clone();
            let control = emu.control();
            let (password_account, ssh_account) =
                (control.password_account_id(), control.ssh_key_account_id());

            let both = ctx
                .persistent_event_listener(&[
                    keys.password_api_key.as_str(),
                    keys.ssh_key_api_key.as_str(),
                ])
                .with_reconnect_policy(quick_policy());
            let both_seen = names(&both);
            let updated = Arc::new(AtomicUsize::new(0));
            let u = updated.clone();
            both.on(A2A_EVENTS[0], move |_: &Event| {
                u.fetch_add(1, Ordering::SeqCst);
            });
            let one = ctx.persistent_event_listener(&[keys.password_api_key.as_str()]);
            let one_seen = names(&one);
            both.start().await.expect("starts");
            one.start().await.expect("starts");
            assert!(
                both.wait_for_state(ListenerState::Connected, WAIT).await,
                "{mode:?}: {:?}",
                both.last_error()
            );
            assert!(
                one.wait_for_state(ListenerState::Connected, WAIT).await,
                "{mode:?}: {:?}",
                one.last_error()
            );
            assert!(eventually(WAIT, || control.websocket_count() == 2).await);

            // A real change through A2A: the password account's event.
            ctx.set_password(
                &keys.password_api_key,
                &SecretString::from("Rotated-Password-2"),
            )
            .await
            .expect("password set");
            assert!(
                eventually(WAIT, || updated.load(Ordering::SeqCst) == 1).await,
                "{mode:?}"
            );
            assert!(
                eventually(WAIT, || one_seen.lock().unwrap().len() == 1).await,
                "{mode:?}"
            );
            // The SSH key account's event reaches only the two-key listener;
            // another account's reaches neither.
            control.emit_a2a_event(
                "AssetAccountPasswordUpdated",
                999_999,
                json!({"AccountId": 999_999}),
            );
            control.emit_a2a_event(
                A2A_EVENTS[1],
                ssh_account,
                json!({"AccountId": ssh_account}),
            );
            assert!(
                eventually(WAIT, || both_seen.lock().unwrap().len() == 2).await,
                "{mode:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            let both_names: Vec<String> = both_seen
                .lock()
                .unwrap()
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            assert_eq!(
                both_names,
                vec![A2A_EVENTS[0].to_owned(), A2A_EVENTS[1].to_owned()],
                "{mode:?}"
            );
            assert_eq!(one_seen.lock().unwrap().len(), 1, "{mode:?}");
            assert_eq!(
                one_seen.lock().unwrap()[0].1["AccountId"],
                password_account,
                "{mode:?}"
            );

            // Survives a drop.
            let connects = count_connects(&both);
            control.drop_websockets();
            assert!(
                eventually(WAIT, || connects.load(Ordering::SeqCst) >= 1).await,
                "{mode:?}"
            );
            let deadline = Instant::now() + WAIT;
            while updated.load(Ordering::SeqCst) < 2 {
                assert!(
                    Instant::now() < deadline,
                    "{mode:?}: no event after the reconnect"
                );
                control.emit_a2a_event(
                    A2A_EVENTS[0],
                    password_account,
                    json!({"AccountId": password_account}),
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            both.stop().await;
            one.stop().await;
            assert!(eventually(WAIT, || control.websocket_count() == 0).await);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a2a_listener_with_a_bad_key_is_refused() {
        let emu = common::emulator().await;
        let ctx = context(&emu);
        let listener = ctx.event_listener(&["not-a-key"]);
        match listener.start().await {
            Err(Error::Authorization(e)) => assert_eq!(e.status.as_u16(), 403),
            other => panic!("expected 403, got {other:?}"),
        }
        let none: [&str; 0] = [];
        assert!(matches!(
            ctx.event_listener(&none).start().await,
            Err(Error::Config(_))
        ));
    }
}
