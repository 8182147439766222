//! The token's life cycle: the early refresh and what happens when it
//! fails, sign-out (and that nothing signs in again behind the caller's
//! back), the remaining lifetime, and the provider list looked up once.
//!
//! Most tests run against a scripted appliance (`tests/hostile/`), which
//! can fail a sign-in on demand and counts every request; the others
//! against the emulator.

mod common;
mod hostile;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostile::{answer, json, Hostile, Received, Step};
use safeguard_sdk::auth::{PasswordAuth, TokenAuth};
use safeguard_sdk::{Error, SafeguardClient, Service};

const PASSWORD: &str = "Sup3r-Secret-Pa55word";
const LOCAL_ONLY: &str = r#"[{"Name":"Local","RstsProviderId":"local"}]"#;
const WITH_CORP: &str = r#"[{"Name":"Local","RstsProviderId":"local"},{"Name":"Corp","RstsProviderId":"corp.example"}]"#;

/// What the scripted appliance does, and what it saw.
struct Knobs {
    /// `X-TokenLifetimeRemaining` on API answers (none when 0).
    lifetime_minutes: AtomicU64,
    /// The token endpoint refuses (as for a changed password).
    refuse_sign_in: AtomicBool,
    /// How long the token endpoint takes, in milliseconds.
    sign_in_pause_ms: AtomicU64,
    /// Token endpoint requests.
    token_requests: AtomicU64,
    /// User tokens issued (`user-token-1`, `user-token-2`, ...).
    issued: AtomicU64,
    /// The provider list served.
    providers: Mutex<&'static str>,
}

impl Knobs {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            lifetime_minutes: AtomicU64::new(0),
            refuse_sign_in: AtomicBool::new(false),
            sign_in_pause_ms: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            providers: Mutex::new(LOCAL_ONLY),
        })
    }
}

/// A scripted appliance: provider list, password grant, `LoginResponse`,
/// `Logout`, and `{}` for anything else.
async fn appliance(knobs: Arc<Knobs>) -> Hostile {
    Hostile::https(move |r: &Received| {
        let target = r.target();
        if target.contains("/AuthenticationProviders") {
            let list: &str = *knobs.providers.lock().unwrap();
            vec![json(200, list)]
        } else if target.starts_with("/RSTS/oauth2/token") {
            let n = knobs.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
            let pause = Step::Pause(Duration::from_millis(
                knobs.sign_in_pause_ms.load(Ordering::SeqCst),
            ));
            if knobs.refuse_sign_in.load(Ordering::SeqCst) {
                vec![pause, json(400, r#"{"error":"invalid_grant"}"#)]
            } else {
                vec![
                    pause,
                    json(200, &format!(r#"{{"access_token":"sts-{n}"}}"#)),
                ]
            }
        } else if target.contains("/Token/LoginResponse") {
            let n = knobs.issued.fetch_add(1, Ordering::SeqCst) + 1;
            vec![json(
                200,
                &format!(r#"{{"Status":"Success","UserToken":"user-token-{n}"}}"#),
            )]
        } else {
            let minutes = knobs.lifetime_minutes.load(Ordering::SeqCst).to_string();
            let mut headers = vec![("Content-Type", "application/json")];
            if minutes != "0" {
                headers.push(("X-TokenLifetimeRemaining", minutes.as_str()));
            }
            vec![answer(200, &headers, b"{}")]
        }
    })
    .await
}

fn password_client(server: &Hostile, provider: &str) -> SafeguardClient {
    SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .unwrap()
        .auth(PasswordAuth::new(provider, "admin", PASSWORD))
        .build()
        .unwrap()
}

/// The bearer token a request carried.
fn bearer(r: &Received) -> Option<String> {
    r.headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim().trim_start_matches("Bearer ").to_owned())
    })
}

/// The requests whose target contains `part`.
fn requests_to(server: &Hostile, part: &str) -> Vec<Received> {
    server
        .received()
        .into_iter()
        .filter(|r| r.target().contains(part))
        .collect()
}

async fn me(client: &SafeguardClient) -> safeguard_sdk::Result<serde_json::Value> {
    client.get(Service::Core, "Me").send_json().await
}

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

// --- a. a failed early refresh -------------------------------------------

#[tokio::test]
async fn a_failed_early_refresh_keeps_the_token_that_is_still_valid() {
    let capture = Capture::default();
    let writer = capture.clone();
    // This test's thread only (a current-thread runtime): the warning is
    // logged by the calling task.
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_env_filter("safeguard_sdk=warn")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let knobs = Knobs::new();
    // One minute left: inside the default two-minute margin.
    knobs.lifetime_minutes.store(1, Ordering::SeqCst);
    let server = appliance(knobs.clone()).await;
    let client = password_client(&server, "local");
    client.login().await.unwrap();
    me(&client)
        .await
        .expect("answered; the lifetime is recorded");

    knobs.refuse_sign_in.store(true, Ordering::SeqCst);
    me(&client)
        .await
        .expect("the refresh failed but the current token still works");
    assert_eq!(
        knobs.token_requests.load(Ordering::SeqCst),
        2,
        "the early refresh was tried"
    );
    let calls = requests_to(&server, "/service/core/v4/Me");
    assert_eq!(calls.len(), 2);
    assert_eq!(bearer(&calls[1]).as_deref(), Some("user-token-1"));

    // The next calls do not try again at once (nor make every call wait
    // for a sign-in that fails).
    me(&client).await.unwrap();
    assert_eq!(knobs.token_requests.load(Ordering::SeqCst), 2);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("WARN"), "a warning: {logs}");
    assert!(logs.contains("refresh"), "{logs}");
    for secret in [PASSWORD, "user-token-1", "sts-"] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
    }
}

#[tokio::test]
async fn calls_do_not_wait_for_an_early_refresh_in_flight() {
    let knobs = Knobs::new();
    knobs.lifetime_minutes.store(1, Ordering::SeqCst);
    let server = appliance(knobs.clone()).await;
    let client = password_client(&server, "local");
    client.login().await.unwrap();
    me(&client).await.unwrap();

    // A slow STS: the first call starts the early refresh and waits for it.
    knobs.sign_in_pause_ms.store(3000, Ordering::SeqCst);
    let first = tokio::spawn({
        let client = client.clone();
        async move { me(&client).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    me(&client).await.expect("answered with the current token");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the call waited {:?} for the sign-in",
        started.elapsed()
    );
    first
        .await
        .unwrap()
        .expect("the first call, after the refresh");
    let calls = requests_to(&server, "/service/core/v4/Me");
    let tokens: Vec<_> = calls.iter().filter_map(bearer).collect();
    assert_eq!(tokens, ["user-token-1", "user-token-1", "user-token-2"]);
    assert_eq!(knobs.token_requests.load(Ordering::SeqCst), 2);
}

// --- b. sign-out -----------------------------------------------------------

#[tokio::test]
async fn after_logout_calls_fail_until_login() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    client.logout().await.unwrap();
    let sign_ins = emu.control().login_response_calls();

    let err = me(&client).await.expect_err("signed out");
    assert!(matches!(err, Error::SignedOut), "{err:?}");
    assert!(
        err.to_string().contains("call login() to sign in again"),
        "{err}"
    );
    assert!(matches!(client.refresh().await, Err(Error::SignedOut)));
    assert!(!client.is_signed_in().await);
    assert_eq!(client.token_lifetime_remaining().await.unwrap(), None);
    assert_eq!(
        emu.control().login_response_calls(),
        sign_ins,
        "nothing signed in behind the caller's back"
    );

    client.login().await.unwrap();
    assert!(me(&client).await.is_ok());
    assert_eq!(emu.control().login_response_calls(), sign_ins + 1);
}

#[tokio::test]
async fn logout_waits_for_a_sign_in_in_flight_and_signs_its_token_out() {
    let knobs = Knobs::new();
    let server = appliance(knobs.clone()).await;
    let client = password_client(&server, "local");
    client.login().await.unwrap();

    knobs.sign_in_pause_ms.store(1000, Ordering::SeqCst);
    let refresh = tokio::spawn({
        let client = client.clone();
        async move { client.refresh().await }
    });
    // The refresh holds the sign-in lock now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.logout().await.unwrap();
    refresh
        .await
        .unwrap()
        .expect("the refresh itself succeeded");

    assert!(
        !client.is_signed_in().await,
        "the refresh did not bring the session back"
    );
    let logouts = requests_to(&server, "/Token/Logout");
    assert_eq!(logouts.len(), 1);
    assert_eq!(
        bearer(&logouts[0]).as_deref(),
        Some("user-token-2"),
        "the token the refresh got is the one signed out"
    );
    let before = server.received().len();
    let err = me(&client).await.expect_err("signed out");
    assert!(matches!(err, Error::SignedOut), "{err:?}");
    assert_eq!(server.received().len(), before, "no request was made");
}

#[tokio::test]
async fn a_token_client_after_logout_cannot_sign_in_again() {
    let knobs = Knobs::new();
    let server = appliance(knobs).await;
    let client = SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .unwrap()
        .auth(TokenAuth::new("user-token-0"))
        .build()
        .unwrap();
    me(&client).await.unwrap();
    client.logout().await.unwrap();
    assert!(matches!(me(&client).await, Err(Error::SignedOut)));
    assert!(matches!(
        client.login().await,
        Err(Error::CannotRefresh {
            strategy: "token",
            ..
        })
    ));
}

// --- c. what is known is not asked again ----------------------------------

#[tokio::test]
async fn the_token_lifetime_is_answered_from_the_last_answer() {
    let knobs = Knobs::new();
    knobs.lifetime_minutes.store(42, Ordering::SeqCst);
    let server = appliance(knobs).await;
    let client = SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .unwrap()
        .auth(TokenAuth::new("user-token-0"))
        .build()
        .unwrap();

    // Nothing recorded yet: one request.
    assert_eq!(client.token_lifetime_remaining().await.unwrap(), Some(42));
    assert_eq!(server.received().len(), 1);
    // Recorded: no request.
    assert_eq!(client.token_lifetime_remaining().await.unwrap(), Some(42));
    me(&client).await.unwrap();
    assert_eq!(client.token_lifetime_remaining().await.unwrap(), Some(42));
    assert_eq!(server.received().len(), 2, "only the call to Me");
}

#[tokio::test]
async fn the_provider_list_is_fetched_once_per_client() {
    let knobs = Knobs::new();
    let server = appliance(knobs.clone()).await;
    let client = password_client(&server, "local");
    client.login().await.unwrap();
    client.refresh().await.unwrap();
    client.refresh().await.unwrap();
    assert_eq!(knobs.token_requests.load(Ordering::SeqCst), 3);
    assert_eq!(requests_to(&server, "/AuthenticationProviders").len(), 1);
}

#[tokio::test]
async fn a_provider_not_in_the_list_is_looked_up_again() {
    let knobs = Knobs::new();
    let server = appliance(knobs.clone()).await;
    let client = password_client(&server, "Corp");
    match client.login().await {
        Err(Error::Config(m)) => assert!(m.contains("Corp"), "{m}"),
        other => panic!("expected an unknown provider, got {other:?}"),
    }
    // The administrator adds it: the next sign-in looks again, once.
    *knobs.providers.lock().unwrap() = WITH_CORP;
    client.login().await.unwrap();
    client.refresh().await.unwrap();
    assert_eq!(requests_to(&server, "/AuthenticationProviders").len(), 2);
    let scopes: Vec<String> = requests_to(&server, "/RSTS/oauth2/token")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(
        scopes
            .iter()
            .all(|b| b.contains("primaryproviderid:corp.example")),
        "{scopes:?}"
    );
}

#[tokio::test]
async fn a_refused_sign_in_looks_the_provider_up_again() {
    // The provider may have been renamed or removed: after a refused
    // sign-in the cached id is not trusted.
    let knobs = Knobs::new();
    let server = appliance(knobs.clone()).await;
    let client = password_client(&server, "local");
    client.login().await.unwrap();
    knobs.refuse_sign_in.store(true, Ordering::SeqCst);
    assert!(matches!(client.refresh().await, Err(Error::Sts(_))));
    knobs.refuse_sign_in.store(false, Ordering::SeqCst);
    client.refresh().await.unwrap();
    assert_eq!(requests_to(&server, "/AuthenticationProviders").len(), 2);
}
