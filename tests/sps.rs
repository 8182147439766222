//! SPS client against the emulator's SPS over real HTTPS.
//!
//! Run: `cargo test --no-default-features --test sps`.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use safeguard_emulator::{Emulator, EmulatorConfig};
use safeguard_sdk::sps::{
    self, ChangeKind, SessionSearch, SpsApiError, SpsClient, SpsError, TransactionState,
};
use safeguard_sdk::tls::{ClientIdentity, TlsOptions};
use safeguard_sdk::Error;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Env {
    emu: Emulator,
    ctl: reqwest::Client,
}

async fn env() -> Env {
    let emu = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    let ctl = control_client(emu.ca_pem());
    Env { emu, ctl }
}

fn control_client(ca_pem: &str) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .build()
        .expect("control client")
}

impl Env {
    fn tls(&self) -> TlsOptions {
        TlsOptions::default()
            .with_ca_pem(self.emu.ca_pem())
            .expect("CA")
    }

    fn client(&self) -> SpsClient {
        let c = self.emu.connection().sps.clone();
        SpsClient::builder(self.emu.sps_host())
            .credentials(c.user, c.password)
            .tls(self.tls())
            .build()
            .expect("client")
    }

    async fn control(&self, action: &str, body: Value) -> Value {
        let r = self
            .ctl
            .post(format!(
                "https://{}/emulator/sps/{action}",
                self.emu.sps_host()
            ))
            .json(&body)
            .send()
            .await
            .expect("control call");
        assert!(r.status().is_success(), "control {action}: {}", r.status());
        r.json().await.expect("control answer")
    }

    /// One raw HTTP/1.1 exchange over TLS (no verification), for requests
    /// the client never sends (no Content-Length, an Expect header).
    async fn raw(&self, request: String) -> RawAnswer {
        let tcp = tokio::net::TcpStream::connect(self.emu.sps_host())
            .await
            .expect("connect");
        let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client())
            .expect("ssl");
        b.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let ssl = b
            .build()
            .configure()
            .expect("cfg")
            .verify_hostname(false)
            .into_ssl("localhost")
            .expect("ssl");
        let mut s = tokio_openssl::SslStream::new(ssl, tcp).expect("stream");
        Pin::new(&mut s).connect().await.expect("handshake");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        RawAnswer::read(&buf)
    }

    async fn raw_cookie(&self) -> String {
        use base64::Engine as _;
        let c = &self.emu.connection().sps;
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        let r = self
            .raw(format!(
                "GET /api/authentication HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        let set = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.clone())
            .expect("cookie");
        set.split(';').next().expect("pair").to_string()
    }
}

/// An answer read by [`Env::raw`]: the emulator sends `Content-Length` and
/// closes the connection after it (every raw request says `Connection: close`).
struct RawAnswer {
    status: reqwest::StatusCode,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn read(bytes: &[u8]) -> Self {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a whole head");
        let head = std::str::from_utf8(&bytes[..end]).expect("a text head");
        let mut lines = head.split("\r\n");
        let code: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("a status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert!(
            header("transfer-encoding").is_none(),
            "the emulator's raw answers are not chunked"
        );
        let mut body = bytes[end + 4..].to_vec();
        if let Some(length) = header("content-length").and_then(|l| l.parse().ok()) {
            assert!(body.len() >= length, "the whole body arrived");
            body.truncate(length);
        }
        Self {
            status: reqwest::StatusCode::from_u16(code).expect("a status"),
            headers,
            body,
        }
    }
}

fn rdp_policy(name: &str, time_policy: Value) -> Value {
    json!({
        "name": name,
        "rules": [{
            "channel": "#drawing",
            "actions": {"audit": true, "content_policy": null, "four_eyes": false, "ids": false},
            "allowed_for": {"clients": [], "gateway_groups": [], "remote_groups": [], "servers": [], "time_policy": time_policy}
        }]
    })
}

const RDP: &str = "configuration/rdp/channel_policies";
const TIME: &str = "configuration/policies/time_policies";

/// An error answer read by hand, as the client reports it.
fn sps_answer(e: SpsApiError) -> Error {
    SpsError::from_api(e).into()
}

fn name_of(e: &Error) -> String {
    match e {
        Error::Sps(SpsError::LengthRequired(_)) => "LengthRequired".into(),
        Error::Sps(SpsError::ExpectationFailed(_)) => "ExpectationFailed".into(),
        other => other.sps_code().unwrap_or("?").to_string(),
    }
}

#[tokio::test]
async fn every_error_code_through_real_requests() {
    let env = env().await;
    let a = env.client();
    let mut seen: HashSet<String> = HashSet::new();
    let mut note = |r: Result<(), Error>, want: &str| {
        let e = r.expect_err(want);
        assert_eq!(name_of(&e), want, "{e}");
        let api = e.sps_error().expect("an answer");
        assert!(!api.message.is_empty(), "{want} has a message");
        assert!(format!("{e:?}").contains(want));
        seen.insert(want.to_string());
    };

    // HTTP-level: 411 and 417, sent raw.
    let cookie = env.raw_cookie().await;
    let r = env
        .raw(format!("POST /api/transaction HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"))
        .await;
    assert_eq!(r.status.as_u16(), 411);
    note(
        Err(sps_answer(SpsApiError::from_parts(
            r.status,
            "POST /api/transaction",
            &r.body,
        ))),
        "LengthRequired",
    );
    let r = env
        .raw(format!(
            "POST /api/transaction HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(r.status.as_u16(), 417);
    note(
        Err(sps_answer(SpsApiError::from_parts(
            r.status,
            "POST /api/transaction",
            &r.body,
        ))),
        "ExpectationFailed",
    );
    let r = env
        .raw(format!(
            "POST /api/transaction HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{["
        ))
        .await;
    note(
        Err(sps_answer(SpsApiError::from_parts(
            r.status,
            "POST /api/transaction",
            &r.body,
        ))),
        "InvalidRequestBody",
    );

    // Authentication.
    let bad = SpsClient::builder(env.emu.sps_host())
        .credentials("admin", "wrong".to_string())
        .tls(env.tls())
        .build()
        .expect("client");
    note(
        bad.get_json("configuration").await.map(|_| ()),
        "AuthenticationFailure",
    );
    let r = env
        .raw("GET /api/configuration HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into())
        .await;
    note(
        Err(sps_answer(SpsApiError::from_parts(
            r.status,
            "GET /api/configuration",
            &r.body,
        ))),
        "Unauthenticated",
    );

    // Paths and methods.
    note(
        a.get_json("configuration/RDP").await.map(|_| ()),
        "InvalidPath",
    );
    note(
        a.get_json("configuration/nope").await.map(|_| ()),
        "NodeNotFound",
    );
    note(
        a.get_json("configuration/rdp/channel_policies/-20100/name")
            .await
            .map(|_| ()),
        "NodeNotAvailable",
    );
    note(
        a.put::<_, Value>("configuration/rdp", &json!({}))
            .await
            .map(|_| ()),
        "PutNotAllowed",
    );
    note(
        a.post::<_, Value>("configuration/rdp", &json!({}))
            .await
            .map(|_| ()),
        "PostNotAllowed",
    );
    note(
        a.delete("configuration/rdp").await.map(|_| ()),
        "DeleteNotAllowed",
    );
    note(
        a.get_json("audit/sessions/_snapshot").await.map(|_| ()),
        "GetNotAllowed",
    );
    note(
        a.post::<_, Value>("transaction/changes", &json!({}))
            .await
            .map(|_| ()),
        "UnsupportedMethod",
    );
    note(
        a.create(RDP, &rdp_policy("p", json!("-100")))
            .await
            .map(|_| ()),
        "NoTransaction",
    );

    let tx = a.open().await.expect("open");
    note(a.open().await.map(|_| ()), "DoubleTransaction");
    note(
        a.create(RDP, &json!({"name": 1})).await.map(|_| ()),
        "SyntacticError",
    );
    note(
        a.create(RDP, &rdp_policy("p", json!("-999")))
            .await
            .map(|_| ()),
        "SemanticError",
    );
    note(a.delete(RDP).await.map(|_| ()), "MethodNotAllowed");
    env.control("require_commit_message", json!({"required": true}))
        .await;
    // The client refuses before the call; the raw PUT gets the server's code.
    assert!(matches!(
        tx.commit(None).await,
        Err(Error::Sps(SpsError::CommitMessageRequired))
    ));
    note(
        a.put::<_, Value>("transaction", &json!({"status": "commit"}))
            .await
            .map(|_| ()),
        "CommitMessageMissing",
    );
    env.control("fault", json!({"fault": "TransactionCommitError"}))
        .await;
    note(tx.commit(Some("m")).await, "TransactionCommitError");

    // A second session: lock, then collisions.
    let b = env.client();
    a.create(TIME, &json!({"name": "tp", "days": []}))
        .await
        .expect("create");
    note(b.open().await.map(|_| ()), "WebGuiOrRpcApiConfigInProgress");
    tx.commit(Some("tp")).await.expect("commit");
    let tp = a
        .children(TIME)
        .await
        .expect("list")
        .into_iter()
        .filter_map(|i| i.key)
        .find(|k| k != "-100")
        .expect("tp");

    let tb = b.open().await.expect("b opens");
    a.transaction_with_message("delete tp", |tx| {
        let tp = tp.clone();
        async move { tx.delete(&format!("{TIME}/{tp}")).await.map(|_| ()) }
    })
    .await
    .expect("a deletes tp");
    b.create(RDP, &rdp_policy("uses-tp", json!(tp)))
        .await
        .expect("b creates");
    note(tb.commit(Some("x")).await, "MidAirCollisionSemanticError");
    tb.rollback().await.expect("rollback");

    let tb = b.open().await.expect("b opens");
    a.transaction_with_message("a edits", |tx| async move {
        tx.replace(
            &format!("{RDP}/-20100"),
            &rdp_policy("default", json!("-100")),
        )
        .await
        .map(|_| ())
    })
    .await
    .expect("a edits");
    b.replace(
        &format!("{RDP}/-20100"),
        &rdp_policy("renamed", json!("-100")),
    )
    .await
    .expect("b edits");
    let e = tb.commit(Some("b")).await;
    assert!(e
        .as_ref()
        .is_err_and(|e| e.is_conflict() && e.is_retryable()));
    note(e, "MidAirCollision");
    tb.rollback().await.expect("rollback");

    // Authorization.
    env.control(
        "add_user",
        json!({"user": "viewer", "password": "Viewer1!", "role": "read_only"}),
    )
    .await;
    let v = SpsClient::builder(env.emu.sps_host())
        .credentials("viewer", "Viewer1!".to_string())
        .tls(env.tls())
        .build()
        .expect("client");
    note(v.open().await.map(|_| ()), "Unauthorized");
    env.control("fault", json!({"fault": "AuthorizationError"}))
        .await;
    note(
        v.get_json("configuration").await.map(|_| ()),
        "AuthorizationError",
    );
    env.control("fault", json!({"fault": "ConfigTreeNotAvailable"}))
        .await;
    note(
        v.get_json("configuration").await.map(|_| ()),
        "ConfigTreeNotAvailable",
    );

    let all: HashSet<String> = SpsError::CODES.iter().map(|c| c.to_string()).collect();
    let missing: Vec<_> = all.difference(&seen).collect();
    assert!(missing.is_empty(), "not reached: {missing:?}");
}

#[tokio::test]
async fn commit_rollback_changelog_and_flattening() {
    let env = env().await;
    let c = env.client();
    let methods = c.login_methods().await.expect("anonymous login methods");
    assert!(methods.iter().any(|m| m.key == "local"));

    // Rollback leaves nothing.
    let tx = c.open().await.expect("open");
    assert_eq!(
        tx.status().await.expect("status").state,
        TransactionState::Open
    );
    let key = tx
        .create(TIME, &json!({"name": "gone", "days": []}))
        .await
        .expect("create");
    tx.rollback().await.expect("rollback");
    assert!(matches!(
        c.get_json(&format!("{TIME}/{key}")).await,
        Err(Error::Sps(SpsError::NodeNotFound(_)))
    ));

    // Create, replace, reorder, delete; then the changelog.
    let tx = c.open().await.expect("open");
    let status = tx.status().await.expect("status");
    assert!(status.remaining_seconds.is_some_and(|s| s > 0));
    // Reference flattening: the fetched built-in policy carries {key, meta}.
    let fetched = c.get::<Value>(&format!("{RDP}/-20100")).await.expect("get");
    assert_eq!(
        fetched.body["rules"][0]["allowed_for"]["time_policy"]["key"],
        "-100"
    );
    assert_eq!(
        fetched.meta.parent.as_deref(),
        Some("/api/configuration/rdp/channel_policies")
    );
    let mut copy = fetched.body.clone();
    copy["name"] = json!("copy");
    // create() flattens the embedded reference; sent raw, it is refused.
    assert!(matches!(
        c.post::<_, Value>(RDP, &copy).await,
        Err(Error::Sps(SpsError::SyntacticError(_)))
    ));
    let a = tx
        .create(RDP, &copy)
        .await
        .expect("create from a fetched object");
    let written = c
        .fetch_for_write(&format!("{RDP}/{a}"))
        .await
        .expect("fetch");
    assert_eq!(written["rules"][0]["allowed_for"]["time_policy"], "-100");
    assert_eq!(written["rules"][0]["allowed_for"]["clients"], json!([]));
    c.modify(&format!("{RDP}/{a}"), |v| v["name"] = json!("copy-2"))
        .await
        .expect("modify");
    let keys: Vec<String> = c
        .children(RDP)
        .await
        .expect("list")
        .into_iter()
        .filter_map(|i| i.key)
        .collect();
    let reversed: Vec<String> = keys.iter().rev().cloned().collect();
    c.reorder(RDP, &reversed).await.expect("reorder");
    let b = tx
        .create(TIME, &json!({"name": "tmp", "days": []}))
        .await
        .expect("create");
    tx.delete(&format!("{TIME}/{b}")).await.expect("delete");
    let changes = tx.changes().await.expect("changes");
    let kinds: Vec<ChangeKind> = changes.iter().map(|c| c.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            ChangeKind::Create,
            ChangeKind::Replace,
            ChangeKind::Reorder,
            ChangeKind::Create,
            ChangeKind::Delete
        ]
    );
    assert_eq!(changes[2].new_order_keys(), Some(reversed.clone()));
    assert_eq!(
        changes[4].old_value.as_ref().map(|v| v["name"].clone()),
        Some(json!("tmp"))
    );
    tx.commit(Some("copy policy")).await.expect("commit");
    assert!(!c.in_transaction());
    assert_eq!(
        c.get::<Value>(&format!("{RDP}/{a}"))
            .await
            .expect("get")
            .body["name"],
        "copy-2"
    );
    assert_eq!(
        c.transaction_status().await.expect("status").state,
        TransactionState::Closed
    );

    // The older status shape.
    env.control("legacy_transaction_status", json!({"enabled": true}))
        .await;
    let s = c.transaction_status().await.expect("legacy status");
    assert_eq!(s.state, TransactionState::Closed);
    assert_eq!(s.commit_message, None);
}

#[tokio::test]
async fn guard_rolls_back_on_error_and_on_panic() {
    let env = env().await;
    let c = env.client();
    let r: Result<(), Error> = c
        .transaction(|tx| async move {
            tx.create(TIME, &json!({"name": "err", "days": []})).await?;
            Err(Error::Config("caller gave up".into()))
        })
        .await;
    assert!(matches!(r, Err(Error::Config(_))));
    assert_eq!(
        c.transaction_status().await.expect("status").state,
        TransactionState::Closed
    );

    let c2 = c.clone();
    let handle = tokio::spawn(async move {
        let _: Result<(), Error> = c2
            .transaction(|tx| async move {
                tx.create(TIME, &json!({"name": "panic", "days": []}))
                    .await?;
                panic!("boom");
            })
            .await;
    });
    assert!(handle.await.is_err(), "the panic continues");
    assert_eq!(
        c.transaction_status().await.expect("status").state,
        TransactionState::Closed
    );
    let names: Vec<Value> = futures::future::try_join_all(
        c.children(TIME)
            .await
            .expect("list")
            .into_iter()
            .filter_map(|i| i.key)
            .map(|k| {
                let c = c.clone();
                async move {
                    c.get::<Value>(&format!("{TIME}/{k}"))
                        .await
                        .map(|r| r.body["name"].clone())
                }
            }),
    )
    .await
    .expect("names");
    assert!(!names.contains(&json!("err")) && !names.contains(&json!("panic")));

    // Ok commits.
    let key = c
        .transaction(
            |tx| async move { tx.create(TIME, &json!({"name": "kept", "days": []})).await },
        )
        .await
        .expect("committed");
    assert!(c.get_json(&format!("{TIME}/{key}")).await.is_ok());
}

/// The names of the committed time policies.
async fn time_policy_names(c: &SpsClient) -> Vec<Value> {
    let mut names = Vec::new();
    for key in c
        .children(TIME)
        .await
        .expect("list")
        .into_iter()
        .filter_map(|i| i.key)
    {
        let r = c.get::<Value>(&format!("{TIME}/{key}")).await.expect("get");
        names.push(r.body["name"].clone());
    }
    names
}

#[tokio::test]
async fn the_guard_of_a_finished_transaction_never_touches_a_later_one() {
    let env = env().await;
    let c = env.client();
    // A transaction that timed out on the server: its commit says so.
    let stale = c.open().await.expect("open");
    stale
        .create(TIME, &json!({"name": "stale", "days": []}))
        .await
        .expect("create");
    env.control("advance_clock", json!({"seconds": 601})).await;
    assert!(matches!(
        stale.commit(Some("stale")).await,
        Err(Error::Sps(SpsError::NoTransaction(_)))
    ));
    // A later transaction of the same session.
    let later = c.open().await.expect("a later transaction opens");
    later
        .create(TIME, &json!({"name": "later", "days": []}))
        .await
        .expect("create");
    // Dropping the finished guard must not roll the later transaction back
    // (give a background rollback, if any, time to run).
    drop(stale);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(later.status().await.expect("status").is_open());
    later
        .commit(Some("later"))
        .await
        .expect("the later transaction commits");
    let names = time_policy_names(&c).await;
    assert!(names.contains(&json!("later")), "{names:?}");
    assert!(!names.contains(&json!("stale")), "{names:?}");
}

#[tokio::test]
async fn a_guard_whose_transaction_ended_unnoticed_cannot_act_in_a_later_one() {
    let env = env().await;
    let c = env.client();
    // Its transaction times out on the server; the client is not told.
    let unnoticed = c.open().await.expect("open");
    env.control("advance_clock", json!({"seconds": 601})).await;
    let later = c
        .open()
        .await
        .expect("the server has no transaction: opens");
    later
        .create(TIME, &json!({"name": "later-2", "days": []}))
        .await
        .expect("create");
    assert!(unnoticed.is_closed());
    assert!(matches!(
        unnoticed.commit(Some("not mine")).await,
        Err(Error::Sps(SpsError::TransactionClosed))
    ));
    assert!(matches!(
        unnoticed
            .create(TIME, &json!({"name": "stale-2", "days": []}))
            .await,
        Err(Error::Sps(SpsError::TransactionClosed))
    ));
    unnoticed
        .rollback()
        .await
        .expect("already over: nothing to do");
    drop(unnoticed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        later.changes().await.expect("changes").len(),
        1,
        "the later transaction is intact"
    );
    later.commit(Some("later-2")).await.expect("commit");
    assert!(matches!(
        later.rollback().await,
        Err(Error::Sps(SpsError::TransactionClosed))
    ));
    let names = time_policy_names(&c).await;
    assert!(names.contains(&json!("later-2")), "{names:?}");
    assert!(!names.contains(&json!("stale-2")), "{names:?}");
}

#[tokio::test]
async fn the_guard_of_a_transaction_lost_with_its_session_never_touches_a_later_one() {
    let env = env().await;
    let c = env.client();
    let lost = c.open().await.expect("open");
    env.control("advance_clock", json!({"seconds": 20 * 60 + 1}))
        .await;
    assert!(matches!(
        lost.create(TIME, &json!({"name": "lost", "days": []}))
            .await,
        Err(Error::Sps(SpsError::SessionExpiredInTransaction(_)))
    ));
    let later = c.open().await.expect("a new session, a new transaction");
    later
        .create(TIME, &json!({"name": "later", "days": []}))
        .await
        .expect("create");
    drop(lost);
    tokio::time::sleep(Duration::from_millis(500)).await;
    later
        .commit(Some("later"))
        .await
        .expect("the later transaction was not rolled back");
    assert!(time_policy_names(&c).await.contains(&json!("later")));
}

#[tokio::test]
async fn a_dropped_guard_is_rolled_back_and_the_next_open_succeeds() {
    let env = env().await;
    let c = env.client();
    let tx = c.open().await.expect("open");
    tx.create(TIME, &json!({"name": "dropped", "days": []}))
        .await
        .expect("create");
    drop(tx);
    // Right away: the dropped transaction is rolled back before opening.
    let tx = c.open().await.expect("opens after the dropped one");
    assert!(tx.changes().await.expect("changes").is_empty());
    tx.create(TIME, &json!({"name": "kept", "days": []}))
        .await
        .expect("create");
    // The background rollback of the dropped guard, if it runs now, must
    // leave this transaction alone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.commit(Some("kept")).await.expect("commit");
    let names = time_policy_names(&c).await;
    assert!(names.contains(&json!("kept")), "{names:?}");
    assert!(!names.contains(&json!("dropped")), "{names:?}");
}

#[tokio::test]
async fn two_clients_race_and_the_retry_helper_wins_on_the_second_try() {
    let env = env().await;
    let a = env.client();
    let b = env.client();
    let path = format!("{RDP}/-20100");
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (a2, path2, attempts2) = (a.clone(), path.clone(), attempts.clone());
    let result = b
        .transaction_with_retry(3, Some("rename default"), move |tx| {
            let (a, path, attempts) = (a2.clone(), path2.clone(), attempts2.clone());
            async move {
                let n = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut policy = tx.fetch_for_write(&path).await?;
                if n == 0 {
                    // Someone else commits a change to the same object meanwhile.
                    a.transaction_with_message("a wins", |atx| {
                        let path = path.clone();
                        async move {
                            atx.modify(&path, |v| v["name"] = json!("by-a"))
                                .await
                                .map(|_| ())
                        }
                    })
                    .await?;
                }
                policy["name"] = json!(format!("{}+b", policy["name"].as_str().unwrap_or("")));
                tx.replace(&path, &policy).await?;
                Ok(())
            }
        })
        .await;
    result.expect("the retry wins");
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        b.get::<Value>(&path).await.expect("get").body["name"],
        "by-a+b"
    );
}

#[tokio::test]
async fn configuration_is_locked_while_another_session_holds_a_transaction() {
    let env = env().await;
    let a = env.client();
    let b = env.client();
    let tx = a.open().await.expect("a opens");
    // Opened but unchanged: no lock yet.
    let tb = b.open().await.expect("b opens");
    tx.create(TIME, &json!({"name": "a", "days": []}))
        .await
        .expect("a changes");
    let e = b
        .create(TIME, &json!({"name": "b", "days": []}))
        .await
        .expect_err("locked");
    assert!(
        matches!(e, Error::Sps(SpsError::WebGuiOrRpcApiConfigInProgress(_))) && e.is_conflict(),
        "{e}"
    );
    tb.rollback().await.expect("b rolls back");
    assert!(matches!(
        b.open().await,
        Err(Error::Sps(SpsError::WebGuiOrRpcApiConfigInProgress(_)))
    ));
    tx.commit(Some("a")).await.expect("a commits");
    let tb = b.open().await.expect("free again");
    tb.rollback().await.expect("rollback");
    // The web GUI lock.
    env.control("web_gui_lock", json!({"locked": true})).await;
    assert!(matches!(
        b.open().await,
        Err(Error::Sps(SpsError::WebGuiOrRpcApiConfigInProgress(_)))
    ));
}

#[tokio::test]
async fn commit_message_required_is_refused_before_the_call() {
    let env = env().await;
    let c = env.client();
    env.control("require_commit_message", json!({"required": true}))
        .await;
    let tx = c.open().await.expect("open");
    assert!(tx.status().await.expect("status").commit_message_required());
    tx.create(TIME, &json!({"name": "x", "days": []}))
        .await
        .expect("create");
    assert!(matches!(
        tx.commit(None).await,
        Err(Error::Sps(SpsError::CommitMessageRequired))
    ));
    assert!(tx.status().await.expect("still open").is_open());
    tx.commit(Some("with a reason")).await.expect("commit");
    let r: Result<String, Error> = c
        .transaction(|tx| async move { tx.create(TIME, &json!({"name": "y", "days": []})).await })
        .await;
    assert!(matches!(
        r,
        Err(Error::Sps(SpsError::CommitMessageRequired))
    ));
    assert_eq!(
        c.transaction_status().await.expect("status").state,
        TransactionState::Closed
    );
}

#[tokio::test]
async fn transaction_timeout_session_expiry_and_relogin() {
    let env = env().await;
    let c = env.client();
    // Transaction timeout.
    let tx = c.open().await.expect("open");
    let remaining = tx
        .status()
        .await
        .expect("status")
        .remaining_seconds
        .expect("remaining");
    assert!(remaining > 500 && remaining <= 600, "{remaining}");
    tx.create(TIME, &json!({"name": "late", "days": []}))
        .await
        .expect("create");
    env.control("advance_clock", json!({"seconds": 601})).await;
    assert!(matches!(
        tx.commit(Some("late")).await,
        Err(Error::Sps(SpsError::NoTransaction(_)))
    ));
    assert!(!c.in_transaction());

    // Idle expiry outside a transaction: transparent re-login.
    assert_eq!(c.sign_in_count(), 1);
    env.control("advance_clock", json!({"seconds": 20 * 60 + 1}))
        .await;
    c.get_json("configuration").await.expect("re-login");
    assert_eq!(c.sign_in_count(), 2);

    // Inside a transaction: a typed error.
    let _tx = c.open().await.expect("open");
    env.control("advance_clock", json!({"seconds": 20 * 60 + 1}))
        .await;
    let e = c
        .create(TIME, &json!({"name": "x", "days": []}))
        .await
        .expect_err("expired");
    assert!(
        matches!(e, Error::Sps(SpsError::SessionExpiredInTransaction(_))),
        "{e}"
    );
    assert!(!c.in_transaction());
    c.get_json("configuration").await.expect("usable again");
    assert_eq!(c.sign_in_count(), 3);
}

#[tokio::test]
async fn paging_over_more_than_one_page() {
    let env = env().await;
    env.control(
        "seed_objects",
        json!({"list": "policies/time_policies", "prefix": "bulk", "count": 1200}),
    )
    .await;
    let c = env.client();
    let pages: Vec<sps::SpsPage> = c.pages(TIME).try_collect().await.expect("pages");
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0].items.len(), 500);
    assert_eq!(pages[0].meta.match_count, Some(1201));
    assert!(pages[2].meta.next.is_none());
    let all = c.children(TIME).await.expect("all");
    assert_eq!(all.len(), 1201);
    let unique: HashSet<_> = all.iter().filter_map(|i| i.key.clone()).collect();
    assert_eq!(unique.len(), 1201);
    // Navigation: the configuration root and a followed href.
    let root = c.children("configuration").await.expect("root");
    let rdp = root
        .iter()
        .find(|i| i.key.as_deref() == Some("rdp"))
        .expect("rdp");
    let followed = c.follow(rdp.href().expect("href")).await.expect("follow");
    assert!(followed["items"].as_array().is_some_and(|a| !a.is_empty()));
}

#[tokio::test]
async fn certificate_sign_in() {
    let env = env().await;
    let files = env.emu.client_cert().clone();
    env.control(
        "add_certificate_user",
        json!({"thumbprint": files.thumbprint, "user": "admin"}),
    )
    .await;
    let identity = ClientIdentity::from_pem_files(&files.cert, &files.key, None).expect("identity");
    let c = SpsClient::builder(env.emu.sps_host())
        .client_certificate(identity)
        .tls(env.tls())
        .build()
        .expect("client");
    let info = c
        .get::<Value>("user_info")
        .await
        .expect("signed in by certificate");
    assert_eq!(info.body["login_method"], "x509");
    assert_eq!(info.body["user"], "admin");
    // A certificate nobody is mapped to is refused.
    let env2 = self::env().await;
    let files2 = env2.emu.client_cert().clone();
    let other = SpsClient::builder(env.emu.sps_host())
        .client_certificate(
            ClientIdentity::from_pem_files(&files2.cert, &files2.key, None).expect("identity"),
        )
        .tls(env.tls())
        .build()
        .expect("client");
    assert!(matches!(
        other.sign_in().await,
        Err(Error::Sps(SpsError::AuthenticationFailure(_))) | Err(Error::Tls(_))
    ));
}

#[tokio::test]
async fn login_method_and_secrets_stay_out_of_debug() {
    let env = env().await;
    let conn = env.emu.connection().sps.clone();
    let c = SpsClient::builder(env.emu.sps_host())
        .credentials(conn.user.clone(), conn.password.clone())
        .login_method("ldap")
        .tls(env.tls())
        .build()
        .expect("client");
    let info = c.get::<Value>("user_info").await.expect("signed in");
    assert_eq!(info.body["login_method"], "ldap");
    let dbg = format!("{c:?}");
    assert!(!dbg.contains(&conn.password), "{dbg}");
    c.sign_out().await.expect("sign out");
    assert!(!c.is_signed_in());
    c.get_json("info").await.expect("signs in again");
    assert_eq!(c.sign_in_count(), 2);
    let bad = SpsClient::builder(env.emu.sps_host())
        .credentials(conn.user, conn.password)
        .login_method("nope")
        .tls(env.tls())
        .build()
        .expect("client");
    assert!(matches!(
        bad.sign_in().await,
        Err(Error::Sps(SpsError::AuthenticationFailure(_)))
    ));
}

#[tokio::test]
async fn audit_sessions_search_details_and_download() {
    let env = env().await;
    env.control("seed_audit_sessions", json!({"count": 600}))
        .await;
    let c = env.client();
    let all: Vec<sps::ListItem> = c
        .audit_sessions(&SessionSearch::new())
        .try_collect()
        .await
        .expect("list");
    assert_eq!(all.len(), 605);
    let ssh: Vec<sps::ListItem> = c
        .audit_sessions(
            &SessionSearch::new()
                .query("protocol:ssh")
                .fields(["protocol", "user"])
                .limit(100),
        )
        .try_collect()
        .await
        .expect("search");
    assert!(!ssh.is_empty() && ssh.len() < 605);
    assert!(ssh.iter().all(|i| i
        .body
        .as_ref()
        .is_some_and(|b| b["protocol"]["name"] == "ssh")));
    // Validated before the call.
    let bad: Result<Vec<sps::ListItem>, Error> = c
        .audit_sessions(&SessionSearch::new().query("*ssh"))
        .try_collect()
        .await;
    assert!(matches!(bad, Err(Error::Sps(SpsError::InvalidQuery(_)))));
    assert!(matches!(
        c.search_session_content("x", "  ").await,
        Err(Error::Sps(SpsError::InvalidQuery(_)))
    ));

    let id = all[0].key.clone().expect("id");
    let details = c.audit_session(&id).await.expect("details");
    assert!(details.body["protocol"]["name"].is_string());
    let hits = c
        .search_session_content(&id, "sudo OR passwd")
        .await
        .expect("content");
    assert_eq!(hits.len(), 2, "{hits:?}");
    let mut out = Vec::new();
    let n = c
        .download_audit_trail_to(&id, &mut out)
        .await
        .expect("download");
    assert_eq!(n as usize, out.len());
    assert!(out.len() > 60_000 && out.starts_with(b"ZAT"));
    let snap = c
        .audit_snapshot(&SessionSearch::new().query("user:root"))
        .await
        .expect("snapshot");
    let frozen: Vec<sps::ListItem> = c.items(&snap).try_collect().await.expect("snapshot items");
    assert!(!frozen.is_empty());
}

#[test]
fn blocking_facade() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let emu = rt
        .block_on(Emulator::start(EmulatorConfig::default()))
        .expect("emulator");
    let conn = emu.connection().sps.clone();
    let c = sps::blocking::SpsClient::builder(emu.sps_host())
        .credentials(conn.user, conn.password)
        .tls(TlsOptions::default().with_ca_pem(emu.ca_pem()).expect("CA"))
        .build()
        .expect("client");
    let key = c
        .transaction(|tx| {
            tx.set_commit_message("blocking");
            tx.create(TIME, &json!({"name": "blocking", "days": []}))
        })
        .expect("committed");
    assert_eq!(
        c.get::<Value>(&format!("{TIME}/{key}")).expect("get").body["name"],
        "blocking"
    );
    let r: Result<(), Error> = c.transaction(|tx| {
        tx.create(TIME, &json!({"name": "rolled-back", "days": []}))?;
        Err(Error::Config("no".into()))
    });
    assert!(r.is_err());
    assert_eq!(
        c.transaction_status().expect("status").state,
        TransactionState::Closed
    );
    let n = c.children(TIME).expect("list").len();
    assert_eq!(n, 2);
    drop(c);
    drop(emu);
    let _ = Duration::ZERO;
}
