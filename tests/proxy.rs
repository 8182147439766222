//! Every client through a real forwarding proxy: a small `CONNECT` proxy on
//! loopback, started by each test in front of the emulator, that records the
//! tunnels it opened (and the `Proxy-Authorization` it was sent).
//!
//! Only `environment_variables_of_the_process` touches the process
//! environment; every other test gives its clients an explicit policy, so
//! none of them reads it.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use safeguard_emulator::Emulator;
use safeguard_sdk::a2a::A2aContext;
use safeguard_sdk::auth::{Auth, CertificateAuth, PkceAuth};
use safeguard_sdk::proxy::Proxy;
use safeguard_sdk::sps::SpsClient;
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{Error, ExposeSecret, Host, SafeguardClient, SecretString, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the test proxy does with a `CONNECT`.
#[derive(Clone)]
enum Answer {
    /// Tunnels it (after checking `Proxy-Authorization` when `credentials`
    /// are required: `407` otherwise).
    Forward { credentials: Option<String> },
    /// Answers this status and closes.
    Refuse(u16),
    /// Reads the `CONNECT` and says nothing, ever.
    Silent,
    /// Answers `200` and header lines without end.
    Flood,
}

/// One `CONNECT` the proxy was sent.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    authorization: Option<String>,
    tunnelled: bool,
}

struct TestProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// When not 0, every `CONNECT` is answered with this status.
    refusing: Arc<AtomicU16>,
}

impl TestProxy {
    async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let refusing = Arc::new(AtomicU16::new(0));
        let (record, refuse) = (seen.clone(), refusing.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let answer = match refuse.load(Ordering::SeqCst) {
                    0 => answer.clone(),
                    status => Answer::Refuse(status),
                };
                tokio::spawn(serve(client, answer, record.clone()));
            }
        });
        Self {
            addr,
            seen,
            refusing,
        }
    }

    /// Answers every later `CONNECT` with `status` (0: serves them again).
    fn refuse(&self, status: u16) {
        self.refusing.store(status, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:port`, with `user:password@` when given.
    fn url(&self, credentials: Option<&str>) -> String {
        match credentials {
            Some(c) => format!("http://{c}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    fn policy(&self, credentials: Option<&str>) -> Proxy {
        Proxy::http(&self.url(credentials)).expect("proxy address")
    }

    /// The targets of the tunnels opened since the last call.
    fn take_tunnels(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .drain(..)
            .filter(|s| s.tunnelled)
            .map(|s| s.target)
            .collect()
    }

    fn all_seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves one client connection of the proxy.
async fn serve(mut client: TcpStream, answer: Answer, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let authorization = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_owned())
    });
    let mut entry = Seen {
        target: target.to_owned(),
        authorization: authorization.clone(),
        tunnelled: false,
    };
    let refuse = |status: u16| {
        let reason = match status {
            407 => "Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"",
            403 => "Forbidden",
            _ => "Bad Gateway",
        };
        format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    if method != "CONNECT" {
        let _ = client.write_all(refuse(405).as_bytes()).await;
        seen.lock().unwrap().push(entry);
        return;
    }
    match answer {
        Answer::Silent => {
            seen.lock().unwrap().push(entry);
            let _client = client;
            std::future::pending::<()>().await;
        }
        Answer::Flood => {
            seen.lock().unwrap().push(entry);
            let _ = client.write_all(b"HTTP/1.1 200 OK\r\n").await;
            while client
                .write_all(b"X-Filler: 0123456789abcdef\r\n")
                .await
                .is_ok()
            {}
        }
        Answer::Refuse(status) => {
            seen.lock().unwrap().push(entry);
            let _ = client.write_all(refuse(status).as_bytes()).await;
        }
        Answer::Forward { credentials } => {
            let wanted = credentials.map(|c| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(c)
                )
            });
            if wanted.is_some() && wanted != authorization {
                seen.lock().unwrap().push(entry);
                let _ = client.write_all(refuse(407).as_bytes()).await;
                return;
            }
            let Ok(mut upstream) = TcpStream::connect(target).await else {
                seen.lock().unwrap().push(entry);
                let _ = client.write_all(refuse(502).as_bytes()).await;
                return;
            };
            entry.tunnelled = true;
            seen.lock().unwrap().push(entry);
            if client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    }
}

fn tls(emu: &Emulator) -> TlsOptions {
    TlsOptions::default()
        .with_ca_pem(emu.ca_pem())
        .expect("CA parses")
}

fn admin_auth(emu: &Emulator) -> PkceAuth {
    let c = &emu.connection().spp.admin;
    PkceAuth::new("local", c.user.clone(), c.password.clone())
}

fn cert_auth(emu: &Emulator) -> CertificateAuth {
    let c = &emu.connection().spp.client_cert;
    CertificateAuth::from_pem_files(&c.cert, &c.key).expect("certificate")
}

/// An SPP client of `emu` with `proxy` (the environment's when `None`).
fn spp(emu: &Emulator, auth: impl Into<Auth>, proxy: Option<Proxy>) -> SafeguardClient {
    let mut builder = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .expect("CA parses")
        .auth(auth);
    if let Some(p) = proxy {
        builder = builder.proxy(p);
    }
    builder.build().expect("client builds")
}

fn a2a(emu: &Emulator, proxy: Option<Proxy>) -> A2aContext {
    let c = &emu.connection().spp.client_cert;
    let mut builder = A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(tls(emu))
        .timeout(Duration::from_secs(20));
    if let Some(p) = proxy {
        builder = builder.proxy(p);
    }
    builder.build().expect("context builds")
}

fn sps(emu: &Emulator, proxy: Option<Proxy>) -> SpsClient {
    let c = emu.connection().sps.clone();
    let mut builder = SpsClient::builder(emu.sps_host())
        .credentials(c.user, c.password)
        .tls(tls(emu));
    if let Some(p) = proxy {
        builder = builder.proxy(p);
    }
    builder.build().expect("SPS client builds")
}

fn password_key(emu: &Emulator) -> SecretString {
    SecretString::from(emu.connection().spp.a2a.password_api_key.clone())
}

/// Every client of the SDK, one after the other; after each, `check` is
/// told which client ran and on which host.
async fn every_client(
    emu: &Emulator,
    proxy: impl Fn() -> Option<Proxy>,
    mut check: impl FnMut(&str, &str),
) {
    let spp_host = emu.spp_host();
    let sps_host = emu.sps_host();

    // Password (PKCE) sign-in, a typed call and a generic one.
    let client = spp(emu, admin_auth(emu), proxy());
    client.login().await.expect("PKCE sign-in");
    client
        .notification()
        .status_get()
        .send()
        .await
        .expect("typed call");
    let me: serde_json::Value = client
        .get(Service::Core, "Me")
        .send_json()
        .await
        .expect("generic call");
    assert!(me["Id"].is_number(), "{me}");
    check("sign-in and calls", &spp_host);

    // The event listener's negotiate and websocket.
    let listener = client.event_listener();
    listener.start().await.expect("listener connects");
    listener.stop().await;
    check("event listener", &spp_host);

    // Certificate sign-in (the OpenSSL transport).
    let cert = spp(emu, cert_auth(emu), proxy());
    cert.login().await.expect("certificate sign-in");
    check("certificate sign-in", &spp_host);

    // A2A credential retrieval and the A2A event hub.
    let context = a2a(emu, proxy());
    let password = context
        .retrieve_password(&password_key(emu))
        .await
        .expect("A2A retrieval");
    assert!(!password.expose_secret().is_empty());
    check("A2A retrieval", &spp_host);
    let a2a_listener = context.event_listener(&[password_key(emu)]);
    a2a_listener.start().await.expect("A2A listener connects");
    a2a_listener.stop().await;
    check("A2A event listener", &spp_host);

    // SPS.
    let sps = sps(emu, proxy());
    sps.get_json("configuration").await.expect("SPS call");
    check("SPS", &sps_host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_proxy_carries_every_client() {
    let emu = common::emulator().await;
    let proxy = TestProxy::start(Answer::Forward {
        credentials: Some("alice:pa ss@w0rd".into()),
    })
    .await;
    // Credentials percent-encoded in the address, sent decoded.
    let policy = proxy.policy(Some("alice:pa%20ss%40w0rd"));
    every_client(
        &emu,
        || Some(policy.clone()),
        |step, host| {
            let tunnels = proxy.take_tunnels();
            assert!(!tunnels.is_empty(), "{step}: no tunnel through the proxy");
            assert!(
                tunnels.iter().all(|t| t == host),
                "{step}: tunnels {tunnels:?}, expected {host}"
            );
        },
    )
    .await;
    let wanted = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:pa ss@w0rd")
    );
    assert!(proxy
        .all_seen()
        .iter()
        .all(|s| s.authorization.as_deref() == Some(wanted.as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_credentials_is_sent_none() {
    let emu = common::emulator().await;
    let proxy = TestProxy::start(Answer::Forward { credentials: None }).await;
    let client = spp(&emu, admin_auth(&emu), Some(proxy.policy(None)));
    client.login().await.expect("sign-in");
    a2a(&emu, Some(proxy.policy(None)))
        .retrieve_password(&password_key(&emu))
        .await
        .expect("A2A retrieval");
    let seen = proxy.all_seen();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.authorization.is_none()), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_policy_from_variables() {
    let emu = common::emulator().await;
    let proxy = TestProxy::start(Answer::Forward { credentials: None }).await;
    let url = proxy.url(None);
    let vars = [("HTTPS_PROXY", url.as_str()), ("NO_PROXY", "example.com")];
    every_client(
        &emu,
        || Some(Proxy::from_variables(vars).unwrap()),
        |step, host| {
            let tunnels = proxy.take_tunnels();
            assert!(!tunnels.is_empty(), "{step}: no tunnel through the proxy");
            assert!(tunnels.iter().all(|t| t == host), "{step}: {tunnels:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_and_proxy_none_bypass_the_proxy() {
    let emu = common::emulator().await;
    let proxy = TestProxy::start(Answer::Forward { credentials: None }).await;
    let url = proxy.url(None);
    let bypassing: [Box<dyn Fn() -> Proxy>; 5] = [
        Box::new(Proxy::none),
        Box::new(|| proxy.policy(None).no_proxy("127.0.0.1")),
        Box::new(|| proxy.policy(None).no_proxy("10.0.0.0/8, 127.0.0.0/8")),
        Box::new(|| {
            Proxy::from_variables([("https_proxy", url.as_str()), ("no_proxy", "*")]).unwrap()
        }),
        Box::new(|| {
            Proxy::from_variables([
                ("ALL_PROXY", url.as_str()),
                ("NO_PROXY", "x.example, 127.0.0.1:9"),
            ])
            .unwrap()
        }),
    ];
    for (i, policy) in bypassing.iter().enumerate() {
        every_client(&emu, || Some(policy()), |_, _| {}).await;
        assert!(
            proxy.all_seen().is_empty(),
            "policy {i}: the proxy saw {:?}",
            proxy.all_seen()
        );
        assert_eq!(
            policy()
                .for_host(&Host::parse(&emu.spp_host()).unwrap())
                .unwrap(),
            None
        );
    }
    // A host the exceptions do not name still goes through it.
    assert_eq!(
        proxy
            .policy(None)
            .no_proxy("127.0.0.1")
            .for_host(&Host::parse("sg.example.com").unwrap())
            .unwrap(),
        Some(url.clone())
    );
}

/// Everything `err` shows.
fn shown(err: &Error) -> String {
    format!("{err} {err:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_refusal_is_a_typed_error_without_the_password() {
    let emu = common::emulator().await;
    let proxy = TestProxy::start(Answer::Forward {
        credentials: Some("alice:right".into()),
    })
    .await;
    let secret = "wr0ng-s3cret";
    let policy = proxy.policy(Some(&format!("alice:{secret}")));
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("alice:{secret}"));
    let check = |what: &str, err: Error| {
        let text = shown(&err);
        assert!(
            matches!(
                err,
                Error::Proxy {
                    status: Some(407),
                    ..
                }
            ),
            "{what}: {text}"
        );
        assert!(
            !text.contains(secret) && !text.contains(&encoded),
            "{what}: {text}"
        );
        assert!(
            text.contains(&proxy.addr.to_string()) || what != "A2A",
            "{what}: {text}"
        );
        assert!(!err.is_retryable(), "{what}");
    };

    let err = spp(&emu, admin_auth(&emu), Some(policy.clone()))
        .login()
        .await
        .unwrap_err();
    check("PKCE sign-in", err);
    let err = a2a(&emu, Some(policy.clone()))
        .retrieve_password(&password_key(&emu))
        .await
        .unwrap_err();
    check("A2A", err);
    let err = sps(&emu, Some(policy.clone()))
        .get_json("configuration")
        .await
        .unwrap_err();
    check("SPS", err);
    // Certificate sign-in: the rSTS steps before the certificate grant run
    // over reqwest; a direct client gets past them, so the grant's own
    // connection is refused by a proxy given to the transport alone.
    assert!(proxy.take_tunnels().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_refusals_and_an_unreachable_proxy() {
    let emu = common::emulator().await;
    for status in [403u16, 502] {
        let proxy = TestProxy::start(Answer::Refuse(status)).await;
        // The certificate transport reads the status.
        let err = a2a(&emu, Some(proxy.policy(None)))
            .retrieve_password(&password_key(&emu))
            .await
            .unwrap_err();
        match &err {
            Error::Proxy { status: s, message } => {
                assert_eq!(*s, Some(status), "{message}");
                assert!(message.contains(&emu.spp_host()), "{message}");
            }
            other => panic!("{status}: expected a proxy error, got {other:?}"),
        }
        assert_eq!(err.is_retryable(), status == 502);
        // reqwest reports the refusal without its status.
        let err = spp(&emu, admin_auth(&emu), Some(proxy.policy(None)))
            .login()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Proxy { .. }), "{err:?}");
        // The websocket's CONNECT: a client whose REST calls go direct
        // cannot be made, so the listener is refused at its negotiate.
        let client = spp(&emu, admin_auth(&emu), Some(proxy.policy(None)));
        let err = client.event_listener().start().await.unwrap_err();
        assert!(matches!(err, Error::Proxy { .. }), "{err:?}");
    }

    // Nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let policy = Proxy::http(&format!("http://u:s3cret-pw@{addr}")).unwrap();
    let err = a2a(&emu, Some(policy.clone()))
        .retrieve_password(&password_key(&emu))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Proxy { status: None, .. }) && err.is_retryable(),
        "{err:?}"
    );
    assert!(!shown(&err).contains("s3cret-pw"));
    let err = sps(&emu, Some(policy))
        .get_json("configuration")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Proxy { status: None, .. }), "{err:?}");
    assert!(!shown(&err).contains("s3cret-pw"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_and_certificate_sign_in_connects_are_refused_typed() {
    // The proxy tunnels until told to refuse: by then the REST calls have
    // their (pooled) connections, and only the connections the SDK opens
    // itself (the websocket, the certificate grant) meet the refusal, with
    // its status.
    let emu = common::emulator().await;
    let proxy = TestProxy::start(Answer::Forward { credentials: None }).await;

    let client = spp(&emu, admin_auth(&emu), Some(proxy.policy(None)));
    client.login().await.expect("sign-in");
    proxy.refuse(403);
    let err = client.event_listener().start().await.unwrap_err();
    // The negotiate (over reqwest, which reports no status but 407) may
    // need a tunnel of its own before the websocket's.
    assert!(
        matches!(
            err,
            Error::Proxy {
                status: Some(403) | None,
                ..
            }
        ),
        "{err:?}"
    );
    proxy.refuse(0);

    let cert = spp(&emu, cert_auth(&emu), Some(proxy.policy(None)));
    cert.login().await.expect("certificate sign-in");
    proxy.refuse(407);
    let err = cert.login().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Proxy {
                status: Some(407),
                ..
            }
        ),
        "{err:?}"
    );
}

/// The process's own variables. The only test here that sets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_of_the_process() {
    let emu = common::emulator().await;
    let proxy = TestProxy::start(Answer::Forward {
        credentials: Some("env:pw".into()),
    })
    .await;
    let vars = [
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ];
    for v in vars {
        std::env::remove_var(v);
    }
    std::env::set_var("HTTPS_PROXY", proxy.url(Some("env:pw")));
    // The default policy is the environment's.
    every_client(
        &emu,
        || None,
        |step, host| {
            let tunnels = proxy.take_tunnels();
            assert!(!tunnels.is_empty(), "{step}: no tunnel through the proxy");
            assert!(tunnels.iter().all(|t| t == host), "{step}: {tunnels:?}");
        },
    )
    .await;
    every_client(
        &emu,
        || Some(Proxy::from_env()),
        |step, _| {
            assert!(!proxy.take_tunnels().is_empty(), "{step}");
        },
    )
    .await;

    // The blocking builders' default too.
    let (host, ca, auth) = (emu.spp_host(), emu.ca_pem().to_owned(), admin_auth(&emu));
    tokio::task::spawn_blocking(move || {
        let client = safeguard_sdk::blocking::SafeguardClient::builder(host)
            .ca_pem(ca)
            .expect("CA parses")
            .auth(auth)
            .build()
            .expect("blocking client builds");
        client.login().expect("blocking sign-in");
    })
    .await
    .unwrap();
    assert!(!proxy.take_tunnels().is_empty(), "blocking client");

    // NO_PROXY takes the emulator out.
    std::env::set_var("NO_PROXY", "localhost,127.0.0.1");
    every_client(&emu, || None, |_, _| {}).await;
    assert!(proxy.all_seen().is_empty(), "{:?}", proxy.all_seen());
    std::env::remove_var("NO_PROXY");

    // An explicit policy is not the environment's.
    every_client(&emu, || Some(Proxy::none()), |_, _| {}).await;
    assert!(proxy.all_seen().is_empty(), "{:?}", proxy.all_seen());

    // A variable that names no usable proxy fails the build, naming it.
    std::env::set_var("HTTPS_PROXY", "socks5://env:pw@127.0.0.1:1");
    let err = SafeguardClient::builder(emu.spp_host())
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(m) if m.contains("HTTPS_PROXY") && !m.contains("pw")),
        "{err:?}"
    );
    for v in vars {
        std::env::remove_var(v);
    }
}

#[tokio::test]
async fn sps_certificate_sign_in_goes_through_the_proxy() {
    // The certificate sign-in runs over the certificate transport, which
    // tunnels like every other connection.
    let emu = common::emulator().await;
    let proxy = TestProxy::start(Answer::Forward { credentials: None }).await;
    let files = emu.client_cert().clone();
    emu.sps().add_certificate_user(&files.thumbprint, "admin");
    let identity =
        safeguard_sdk::tls::ClientIdentity::from_pem_files(&files.cert, &files.key, None)
            .expect("identity");
    let sps = SpsClient::builder(emu.sps_host())
        .client_certificate(identity)
        .tls(tls(&emu))
        .proxy(proxy.policy(None))
        .build()
        .expect("builds");
    sps.sign_in().await.expect("signed in by certificate");
    let tunnels = proxy.take_tunnels();
    assert!(!tunnels.is_empty(), "no tunnel");
    assert!(tunnels.iter().all(|t| t == &emu.sps_host()), "{tunnels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_flooding_proxy_is_bounded() {
    let emu = common::emulator().await;
    let limits =
        safeguard_sdk::limits::Limits::default().connect_timeout(Some(Duration::from_millis(500)));
    let silent = TestProxy::start(Answer::Silent).await;
    let started = std::time::Instant::now();
    let err = {
        let c = &emu.connection().spp.client_cert;
        A2aContext::builder(emu.spp_host())
            .pem_files(&c.cert, &c.key)
            .tls(tls(&emu))
            .limits(limits)
            .proxy(silent.policy(None))
            .build()
            .unwrap()
    }
    .retrieve_password(&password_key(&emu))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    let err = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .auth(admin_auth(&emu))
        .limits(limits)
        .proxy(silent.policy(None))
        .build()
        .unwrap()
        .login()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20));

    let flood = TestProxy::start(Answer::Flood).await;
    let err = a2a(&emu, Some(flood.policy(None)))
        .retrieve_password(&password_key(&emu))
        .await
        .unwrap_err();
    match err {
        Error::Proxy {
            status: None,
            message,
        } => assert!(message.contains("longer"), "{message}"),
        other => panic!("expected a proxy error, got {other:?}"),
    }
}
