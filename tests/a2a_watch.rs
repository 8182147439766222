//! A2A credential watches against the emulator, in every client-certificate
//! mode: a rotation reaches the watch by its event, after a reconnect when
//! the event was missed (a dropped connection, an outage of the hub), or
//! within the safety interval when events are lost; a value is never
//! followed by an older one; a failed pull keeps the last value and says so.

mod common;

use std::time::{Duration, Instant};

use safeguard_emulator::{ClientCertMode, Emulator, EmulatorConfig};
use safeguard_sdk::a2a::{A2aContext, CredentialWatch, KeyFormat};
use safeguard_sdk::events::ListenerState;
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{ExposeSecret, SafeguardClient, SecretString, Service};

const MODES: [ClientCertMode; 2] = [ClientCertMode::InHandshake, ClientCertMode::PostHandshake];
const WAIT: Duration = Duration::from_secs(15);

async fn emulator(mode: ClientCertMode) -> Emulator {
    Emulator::start(EmulatorConfig {
        client_cert_mode: mode,
        post_handshake_timeout: Duration::from_secs(3),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
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
        watch.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_missed_while_disconnected_arrives_after_the_reconnect() {
    for mode in MODES {
        let emu = emulator(mode).await;
        let admin = common::admin(&emu).await;
        let watch = context(&emu)
            .credential_watch()
            .safety_interval(Duration::from_secs(3600));
        let password = watch.password(password_key(&emu));
        watch.start().await.expect("the first pull");
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
        rotate(&emu, &admin, "rotated-while-away").await;
        assert!(
            until_password(&password, "rotated-while-away").await,
            "{mode:?}: the reconnect pulled it"
        );
        assert_eq!(
            reconnected.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{mode:?}: it came with the reconnect, not an event"
        );
        watch.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_during_a_hub_outage_arrives_once_the_hub_is_back() {
    for mode in MODES {
        let emu = emulator(mode).await;
        let admin = common::admin(&emu).await;
        let watch = context(&emu)
            .credential_watch()
            .safety_interval(Duration::from_secs(3600));
        let password = watch.password(password_key(&emu));
        watch.start().await.expect("the first pull");
        assert!(connected(&watch).await);
        // The hub refuses connections for a while; core and A2A retrieval work.
        let outage = Duration::from_millis(1500);
        emu.control().a2a_hub_outage(outage);
        let ends = Instant::now() + outage;
        rotate(&emu, &admin, "rotated-during-outage").await;
        assert!(
            until_password(&password, "rotated-during-outage").await,
            "{mode:?}: the reconnect after the outage pulled it"
        );
        assert!(
            Instant::now() >= ends,
            "{mode:?}: nothing brought it during the outage"
        );
        assert_eq!(watch.listener_state(), ListenerState::Connected);
        watch.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_and_drops_interleaved_end_on_the_last_value_never_going_back() {
    for mode in MODES {
        let emu = emulator(mode).await;
        let admin = common::admin(&emu).await;
        let watch = context(&emu)
            .credential_watch()
            .safety_interval(Duration::from_secs(3600));
        let password = watch.password(password_key(&emu));
        watch.start().await.expect("the first pull");
        assert!(connected(&watch).await);
        // Every value the watch reports, in order.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        password.on_change(move |c| s.lock().unwrap().push(c.value.expose_secret().to_owned()));
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
        let emu = emulator(mode).await;
        let admin = common::admin(&emu).await;
        let watch = context(&emu)
            .credential_watch()
            .safety_interval(Duration::from_millis(700));
        let password = watch.password(password_key(&emu));
        watch.start().await.expect("the first pull");
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
        let emu = emulator(mode).await;
        let admin = common::admin(&emu).await;
        let watch = context(&emu)
            .credential_watch()
            .safety_interval(Duration::from_millis(300));
        let password = watch.password(password_key(&emu));
        watch.start().await.expect("the first pull");
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
