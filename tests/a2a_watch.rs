//! A2A credential watches against the emulator, in every client-certificate
//! mode: a rotation reaches the watch by its event, after a reconnect when
//! the event was missed (a dropped connection, an outage of the hub), or
//! within the safety interval when events are lost; a value is never
//! followed by an older one; a failed pull keeps the last value and says so.

mod common;

use std::time::{Duration, Instant};

use safeguard_emulator::{ClientCertMode, Emulator};
use safeguard_sdk::a2a::{A2aContext, CredentialWatch, KeyFormat, Watched};
use safeguard_sdk::events::{ListenerState, ReconnectPolicy};
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{ExposeSecret, SafeguardClient, SecretString, Service};

const MODES: [ClientCertMode; 3] = [
    ClientCertMode::InHandshake,
    ClientCertMode::PostHandshake,
    ClientCertMode::Renegotiation,
];
const WAIT: Duration = Duration::from_secs(15);

async fn emulator(mode: ClientCertMode) -> Emulator {
    common::emulator_with(|c| {
        c.client_cert_mode = mode;
        c.post_handshake_timeout = Duration::from_secs(3);
    })
    .await
}

/// An emulator in `mode`, its admin, and a started watch of the password
/// credential pulling every `safety` when no event comes.
async fn watching(
    mode: ClientCertMode,
    safety: Duration,
) -> (
    Emulator,
    SafeguardClient,
    CredentialWatch,
    Watched<SecretString>,
) {
    let emu = emulator(mode).await;
    let admin = common::admin(&emu).await;
    let watch = context(&emu).credential_watch().safety_interval(safety);
    let password = watch.password(password_key(&emu));
    watch.start().await.expect("the first pull");
    (emu, admin, watch, password)
}

fn context(emu: &Emulator) -> A2aContext {
    let c = &emu.connection().spp.client_cert;
    A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(TlsOptions::default().with_ca_pem(emu.ca_pem()).unwrap())
        .build()
        .expect("context builds")
}

fn password_key(emu: &Emulator) -> SecretString {
    SecretString::from(emu.connection().spp.a2a.password_api_key.clone())
}

/// Rotates the watched account's password through the core API, as an
/// administrator (the emulator publishes the A2A event, as the appliance does).
async fn rotate(emu: &Emulator, admin: &SafeguardClient, password: &str) {
    let id = emu.control().password_account_id();
    admin
        .put(Service::Core, &format!("AssetAccounts/{id}/Password"))
        .json(password)
        .send()
        .await
        .expect("the password is set");
}

/// Waits until the watched password is `expected`.
async fn until_password(
    watched: &safeguard_sdk::a2a::Watched<SecretString>,
    expected: &str,
) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if watched
            .current()
            .is_some_and(|c| c.value.expose_secret() == expected)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn connected(watch: &CredentialWatch) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if watch.listener_state() == ListenerState::Connected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_arrives_by_its_event() {
    for mode in MODES {
        let emu = emulator(mode).await;
        let admin = common::admin(&emu).await;
        let watch = context(&emu)
            .credential_watch()
            .safety_interval(Duration::from_secs(3600));
        let password = watch.password(password_key(&emu));
        let key = watch.private_key(
            SecretString::from(emu.connection().spp.a2a.ssh_key_api_key.clone()),
            KeyFormat::OpenSsh,
        );
        watch.start().await.expect("the first pull");
        let first = password.current().expect("a value after start");
        assert_eq!(first.version, 1);
        assert!(key.current().is_some());
        assert!(connected(&watch).await, "{mode:?}: the hub connects");
        let mut changes = Box::pin(password.changes());
        rotate(&emu, &admin, "rotated-by-event").await;
        let next = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut changes))
            .await
            .expect("the change arrives")
            .expect("a value");
        assert_eq!(next.value.expose_secret(), "rotated-by-event");
        assert_eq!(next.version, 2);
        assert!(password.status().last_error.is_none());
        // The key was pulled again when the hub connected, and came back
        // with new random check numbers: the same key, no change.
        assert!(key.status().pulls >= 2, "{mode:?}");
        assert_eq!(key.current().unwrap().version, 1, "{mode:?}");
        watch.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_password_task_reaches_the_watch() {
    let (emu, admin, watch, password) =
        watching(ClientCertMode::InHandshake, Duration::from_secs(3600)).await;
    assert!(connected(&watch).await);
    let before = password.current().unwrap();
    let mut changes = Box::pin(password.changes());
    let id = emu.control().password_account_id();
    let task = admin
        .post(Service::Core, &format!("AssetAccounts/{id}/ChangePassword"))
        .send()
        .await
        .expect("the task is accepted");
    assert_eq!(task.status().as_u16(), 202);
    let log: serde_json::Value = task.json().await.unwrap();
    assert_eq!(log["AccountId"], id);
    let next = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut changes))
        .await
        .expect("the change arrives")
        .expect("a value");
    assert_ne!(next.value.expose_secret(), before.value.expose_secret());
    assert_eq!(
        Some(next.value.expose_secret().to_owned()),
        emu.control().account_password(id)
    );
    watch.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_missed_while_disconnected_arrives_after_the_reconnect() {
    for mode in MODES {
        let (emu, admin, watch, password) = watching(mode, Duration::from_secs(3600)).await;
        assert!(connected(&watch).await);
        let listener = watch.listener().expect("running");
        let reconnected = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = reconnected.clone();
        listener.on_state_change(move |s| {
            if s.gap.is_some() {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // The hub is gone for the rotation: its event reaches no one (the
        // listener waits about a second before reconnecting).
        emu.control().drop_websockets();
        let deadline = Instant::now() + WAIT;
        while emu.control().websocket_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rotate(&emu, &admin, "rotated-while-away").await;
        let before_reconnect = password.current().unwrap();
        assert_ne!(
            before_reconnect.value.expose_secret(),
            "rotated-while-away",
            "{mode:?}: no event while disconnected"
        );
        assert!(
            until_password(&password, "rotated-while-away").await,
            "{mode:?}: the reconnect pulled it"
        );
        // The listener's own report of the reconnect (its callbacks run one
        // after the other, the watch's first).
        let deadline = Instant::now() + WAIT;
        while reconnected.load(std::sync::atomic::Ordering::SeqCst) == 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            reconnected.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{mode:?}: one reconnect, with its gap"
        );
        watch.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_during_a_hub_outage_arrives_once_the_hub_is_back() {
    for mode in MODES {
        let emu = emulator(mode).await;
        let admin = common::admin(&emu).await;
        // Attempts every 100 ms at most: the value arrives soon after the end.
        let watch = context(&emu)
            .credential_watch()
            .safety_interval(Duration::from_secs(3600))
            .reconnect_policy(ReconnectPolicy::new(
                Duration::from_millis(50),
                Duration::from_millis(100),
            ));
        let password = watch.password(password_key(&emu));
        watch.start().await.expect("the first pull");
        assert!(connected(&watch).await);
        // The hub refuses connections for a while; core and A2A retrieval work.
        let outage = Duration::from_millis(1500);
        emu.control().a2a_hub_outage(outage);
        let ends = Instant::now() + outage;
        // The old connection is gone before the rotation: its event cannot
        // ride on it.
        let deadline = Instant::now() + WAIT;
        while watch.listener_state() == ListenerState::Connected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        rotate(&emu, &admin, "rotated-during-outage").await;
        assert!(
            until_password(&password, "rotated-during-outage").await,
            "{mode:?}: the reconnect after the outage pulled it"
        );
        assert!(
            Instant::now() >= ends,
            "{mode:?}: nothing brought it during the outage"
        );
        assert!(
            Instant::now() < ends + Duration::from_secs(1),
            "{mode:?}: the reconnect policy of the watch was not used"
        );
        assert_eq!(watch.listener_state(), ListenerState::Connected);
        watch.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_and_drops_interleaved_end_on_the_last_value_never_going_back() {
    for mode in MODES {
        let (emu, admin, watch, password) = watching(mode, Duration::from_secs(3600)).await;
        assert!(connected(&watch).await);
        // Every value the watch reports, in order.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        password
            .on_change(move |c| s.lock().unwrap().push(c.value.expose_secret().to_owned()))
            .expect("inside the runtime");
        for i in 0..100u32 {
            rotate(&emu, &admin, &format!("pw-{i:03}")).await;
            if i % 5 == 4 {
                emu.control().drop_websockets();
            }
        }
        assert!(
            until_password(&password, "pw-099").await,
            "{mode:?}: the last value arrives"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.is_empty());
        assert_eq!(seen.last().map(String::as_str), Some("pw-099"));
        for pair in seen.windows(2) {
            assert!(pair[0] < pair[1], "{mode:?}: {} after {}", pair[1], pair[0]);
        }
        watch.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_events_lost_the_safety_interval_refreshes_the_value() {
    for mode in MODES {
        let (emu, admin, watch, password) = watching(mode, Duration::from_millis(700)).await;
        assert!(connected(&watch).await);
        // The hub stays up but says nothing: no event, no ping.
        emu.control().set_silent(true);
        let rotated = Instant::now();
        rotate(&emu, &admin, "rotated-in-silence").await;
        assert!(until_password(&password, "rotated-in-silence").await);
        assert!(
            rotated.elapsed() < Duration::from_secs(5),
            "{mode:?}: refreshed by the safety interval, not by a reconnect after 30 s"
        );
        emu.control().set_silent(false);
        watch.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_cannot_pull_keeps_the_last_value_and_reports_why() {
    for mode in MODES {
        let (emu, admin, watch, password) = watching(mode, Duration::from_millis(300)).await;
        let before = password.current().unwrap();
        // Every request fails from now on (the hub keeps its connection).
        emu.control().fail_next(1_000_000, 503);
        rotate_failing(&emu, &admin).await;
        let deadline = Instant::now() + WAIT;
        while password.status().last_error.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let status = password.status();
        let error = status.last_error.expect("the failure is reported");
        assert_eq!(error.status().map(|s| s.as_u16()), Some(503), "{error}");
        assert!(status.failing_since.is_some());
        assert!(status.age.is_some());
        let held = password.current().expect("the last value is kept");
        assert_eq!(held.value.expose_secret(), before.value.expose_secret());
        assert_eq!(held.version, before.version);
        emu.control().fail_next(0, 503);
        watch.stop().await;
    }
}

/// A rotation attempt while the emulator fails every request: nothing
/// changes on the appliance.
async fn rotate_failing(emu: &Emulator, admin: &SafeguardClient) {
    let id = emu.control().password_account_id();
    let _ = admin
        .put(Service::Core, &format!("AssetAccounts/{id}/Password"))
        .json("never-set")
        .send()
        .await;
}

#[tokio::test]
async fn a_watch_that_cannot_make_its_first_pull_fails_to_start() {
    let emu = emulator(ClientCertMode::InHandshake).await;
    let watch = context(&emu).credential_watch();
    let password = watch.password("not-a-registered-key");
    let err = watch.start().await.expect_err("a bad key");
    assert!(err.is_bad_api_key(), "{err:?}");
    assert!(password.current().is_none());
    assert_eq!(watch.listener_state(), ListenerState::Idle);
}

#[test]
fn the_blocking_watch_keeps_a_credential_current() {
    use safeguard_sdk::a2a::blocking;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emu = runtime.block_on(emulator(ClientCertMode::PostHandshake));
    let c = &emu.connection().spp.client_cert;
    let a2a = blocking::A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(TlsOptions::default().with_ca_pem(emu.ca_pem()).unwrap())
        .build()
        .unwrap();
    let key = password_key(&emu);
    let watch = a2a
        .credential_watch()
        .safety_interval(Duration::from_secs(3600));
    let password = watch.password(&key);
    watch.start().expect("the first pull");
    let deadline = Instant::now() + WAIT;
    while watch.listener_state() != ListenerState::Connected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let changes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = changes.clone();
    watch
        .on_change(&password, move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .unwrap();
    // The registration is bidirectional: the context sets the password
    // itself, and the event brings it back to the watch.
    let waiter = {
        let (watch, password) = (watch.clone(), password.clone());
        std::thread::spawn(move || watch.wait_for_change(&password, WAIT))
    };
    std::thread::sleep(Duration::from_millis(100));
    a2a.set_password(&key, &SecretString::from("set-by-blocking"))
        .unwrap();
    let changed = waiter.join().unwrap().unwrap().expect("a change");
    assert_eq!(changed.value.expose_secret(), "set-by-blocking");
    assert_eq!(
        password.current().unwrap().value.expose_secret(),
        "set-by-blocking"
    );
    let deadline = Instant::now() + WAIT;
    while changes.load(std::sync::atomic::Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(changes.load(std::sync::atomic::Ordering::SeqCst), 1);
    watch.stop().unwrap();
    // Inside a runtime: refused, not a panic.
    let refused = runtime.block_on(async { watch.start() });
    assert!(matches!(
        refused,
        Err(safeguard_sdk::Error::BlockingInsideRuntime { .. })
    ));
}
