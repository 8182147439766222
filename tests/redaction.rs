//! No secret (password, one-time password, token, key passphrase, A2A API
//! key, SPS session) appears in `Display`, `Debug` or logs: every sign-in,
//! A2A and SPS call, and both event hubs (negotiate, websocket upgrade,
//! events, reconnects, a sign-in again after a 401) run with TRACE logging
//! captured (the `log` records of the HTTP and websocket stacks included),
//! then every error and configuration type is formatted, and none of the
//! secrets may appear anywhere.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use safeguard_emulator as emu_consts;
use safeguard_sdk::a2a::A2aContext;
use safeguard_sdk::auth::{Auth, DeviceCodeAuth, PasswordAuth, PkceAuth, TokenAuth};
use safeguard_sdk::events::{Event, ListenerState, PersistentEventListener, ReconnectPolicy};
use safeguard_sdk::sps::SpsClient;
use safeguard_sdk::tls::{ClientIdentity, TlsOptions};
use safeguard_sdk::{ExposeSecret, SafeguardClient, SecretString, Service};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_appear_in_logs_display_or_debug() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        // Everything the SDK and its HTTP/TLS stack log; the in-process
        // emulator's own logs are the server's, not the SDK's.
        .with_env_filter("trace,safeguard_emulator=off")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        // Every span's fields as it closes (the calls' spans included).
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();

    let emu = common::emulator().await;
    let (mfa_user, mfa_password, otp) = emu.control().mfa_user();
    emu.control().enable_grant("ResourceOwner").unwrap();
    let mut secrets: Vec<String> = vec![
        emu_consts::ADMIN_PASSWORD.into(),
        mfa_password.into(),
        otp.into(),
        emu.connection().spp.client_cert.pfx_password.clone(),
    ];
    let mut formatted = String::new();

    let pkce = PkceAuth::new("local", mfa_user, mfa_password).one_time_password(otp);
    let password = PasswordAuth::new("local", emu_consts::ADMIN_USER, emu_consts::ADMIN_PASSWORD);
    for auth in [Auth::from(pkce.clone()), Auth::from(password.clone())] {
        let client = common::client(&emu, auth.clone());
        client.login().await.unwrap();
        let token = client.user_token().await.unwrap();
        secrets.push(token.expose_secret().to_owned());
        let _: serde_json::Value = client.get(Service::Core, "Me").send_json().await.unwrap();
        let token_client = common::client(&emu, TokenAuth::new(token.clone()));
        formatted += &format!(
            "{token_client:?} {:?} {client:?} {auth:?}\n",
            token_client.auth()
        );
        // An error answer after signing out, with the old token.
        client.logout().await.unwrap();
        let err = token_client
            .get(Service::Core, "Me")
            .send()
            .await
            .unwrap_err();
        formatted += &format!("{err} {err:?}\n");
    }
    // Failed sign-ins: wrong one-time password, wrong password.
    for auth in [
        Auth::from(PkceAuth::new("local", mfa_user, mfa_password).one_time_password("999999")),
        Auth::from(PasswordAuth::new(
            "local",
            emu_consts::ADMIN_USER,
            "Wrong-Password-77",
        )),
    ] {
        let err = common::client(&emu, auth.clone())
            .login()
            .await
            .unwrap_err();
        formatted += &format!("{err} {err:?} {auth:?}\n");
    }
    secrets.push("999999".into());
    secrets.push("Wrong-Password-77".into());

    let cert = &emu.connection().spp.client_cert;
    let identity =
        ClientIdentity::from_pkcs12_file(&cert.pfx, &SecretString::from(cert.pfx_password.clone()))
            .unwrap();
    let key_pem = std::fs::read_to_string(&cert.key).unwrap();
    secrets.push(key_pem.lines().nth(1).unwrap().to_owned());
    formatted += &format!("{identity:?}\n");
    let device = DeviceCodeAuth::new("local", |_| {});
    formatted += &format!("{device:?} {:?}\n", SecretString::from("x".to_owned()));
    let anon = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .build()
        .unwrap();
    formatted += &format!("{anon:?}\n");

    // Calls of every kind (typed, A2A, SPS), their spans logged as they close.
    let admin = common::admin(&emu).await;
    let admin_token = admin.user_token().await.unwrap();
    secrets.push(admin_token.expose_secret().to_owned());
    admin.core().me_get_me().send().await.unwrap();
    let tls = TlsOptions::default().with_ca_pem(emu.ca_pem()).unwrap();
    let a2a = A2aContext::builder(emu.spp_host())
        .pem_files(&cert.cert, &cert.key)
        .tls(tls.clone())
        .build()
        .unwrap();
    let api_key = emu.connection().spp.a2a.password_api_key.clone();
    let retrieved = a2a
        .retrieve_password(&SecretString::from(api_key.clone()))
        .await
        .unwrap();
    secrets.push(api_key.clone());
    secrets.push(retrieved.expose_secret().to_owned());
    let s = emu.connection().sps.clone();
    secrets.push(s.password.clone());
    let sps = SpsClient::builder(emu.sps_host())
        .credentials(s.user, s.password)
        .tls(tls)
        .build()
        .unwrap();
    sps.get_json("configuration").await.unwrap();

    // Both event hubs: negotiate, upgrade, an event each, a reconnect after
    // a drop, and (user hub) a sign-in again after the hub refused the
    // expired token.
    let quick = ReconnectPolicy::new(Duration::from_millis(5), Duration::from_millis(50));
    let user_hub = Hub::watch(
        admin
            .persistent_event_listener()
            .with_reconnect_policy(quick.clone()),
    );
    let a2a_hub = Hub::watch(
        a2a.persistent_event_listener(&[api_key.as_str()])
            .with_reconnect_policy(quick),
    );
    let control = emu.control();
    let account = control.password_account_id();
    let emit_user = || control.emit_event("UserCreated", serde_json::json!({ "UserId": 7 }));
    let emit_a2a = || {
        control.emit_a2a_event(
            "AssetAccountPasswordUpdated",
            account,
            serde_json::json!({ "AccountId": account }),
        )
    };
    for (round, expire) in [(1, false), (2, false), (3, true)] {
        if round > 1 {
            if expire {
                control.expire_all_tokens();
            }
            control.drop_websockets();
        }
        user_hub.receives(round, &emit_user).await;
        a2a_hub.receives(round, &emit_a2a).await;
    }
    let renewed = admin.user_token().await.unwrap();
    assert_ne!(
        renewed.expose_secret(),
        admin_token.expose_secret(),
        "signed in again for the hub"
    );
    secrets.push(renewed.expose_secret().to_owned());
    for hub in [&user_hub, &a2a_hub] {
        formatted += &format!("{:?} {:?}\n", hub.listener, hub.listener.last_error());
        formatted += &hub.reasons.lock().unwrap().join("\n");
        hub.listener.stop().await;
    }
    assert!(
        user_hub
            .reasons
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("401")),
        "the user hub refused the expired token: {:?}",
        user_hub.reasons.lock().unwrap()
    );

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("signed in"),
        "the capture works: {}",
        &logs[..logs.len().min(2000)]
    );
    assert!(
        logs.contains("safeguard.call"),
        "the calls' spans are logged"
    );
    assert!(
        logs.contains("/service/event/signalr") && logs.contains("/service/a2a/signalr"),
        "both hubs' calls are logged"
    );
    // The SPS session cookie (its name never appears, nor its value).
    assert!(
        !logs.contains("session_id="),
        "the SPS cookie appears in the logs"
    );
    for (i, secret) in secrets.iter().enumerate() {
        assert!(!secret.is_empty());
        // The line, with the secret masked (a failing test must not leak it).
        let line = logs.lines().find(|l| l.contains(secret.as_str()));
        assert!(
            line.is_none(),
            "secret #{i} appears in the logs: {}",
            line.unwrap_or_default()
                .replace(secret.as_str(), "<SECRET>")
        );
        assert!(
            !formatted.contains(secret.as_str()),
            "a secret appears in Display/Debug: {formatted}"
        );
    }
}

/// A persistent listener, what it received and why it dropped.
struct Hub {
    listener: PersistentEventListener,
    connects: Arc<AtomicUsize>,
    events: Arc<AtomicUsize>,
    /// Each drop's reason, as `Display` and `Debug`.
    reasons: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    fn watch(listener: PersistentEventListener) -> Self {
        let (connects, events, reasons) =
            <(Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>)>::default();
        let (c, r) = (connects.clone(), reasons.clone());
        listener.on_state_change(move |change| {
            if change.state == ListenerState::Connected {
                c.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(e) = &change.reason {
                r.lock()
                    .unwrap()
                    .push(format!("{:?} {e} {e:?}", e.status()));
            }
        });
        let e = events.clone();
        listener.on_any(move |_: &Event| {
            e.fetch_add(1, Ordering::SeqCst);
        });
        Self {
            listener,
            connects,
            events,
            reasons,
        }
    }

    /// Starts (the first time), waits for connection number `round`, then
    /// emits until an event arrives.
    async fn receives(&self, round: usize, emit: &dyn Fn()) {
        if round == 1 {
            self.listener.start().await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.connects.load(Ordering::SeqCst) < round {
            assert!(
                Instant::now() < deadline,
                "connection {round}: {:?}",
                self.listener.last_error()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seen = self.events.load(Ordering::SeqCst);
        while self.events.load(Ordering::SeqCst) == seen {
            assert!(
                Instant::now() < deadline,
                "no event after connection {round}"
            );
            emit();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
