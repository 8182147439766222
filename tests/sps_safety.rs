//! The SPS client against a hostile server (`tests/hostile/`): redirects
//! that would carry the credentials or the session cookie elsewhere,
//! answers larger than the limits, silence, `meta.next` cycles, untrusted
//! certificates; and the certificate sign-in over a connection the server
//! keeps alive.
//!
//! Run: `cargo test --no-default-features --test sps_safety`.

mod hostile;

use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hostile::{Hostile, Received, Step};
use safeguard_sdk::limits::Limits;
use safeguard_sdk::paging::PagingError;
use safeguard_sdk::sps::SpsClient;
use safeguard_sdk::tls::{ClientIdentity, TlsOptions};
use safeguard_sdk::Error;

const USER: &str = "admin";
const PASSWORD: &str = "hostile-test-password";
const MIB: u64 = 1 << 20;

/// Every test ends within this, whatever the server does.
async fn bounded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("the call ended within 30 s")
}

/// Trusts the CA of the hostile servers.
fn tls() -> TlsOptions {
    TlsOptions::default()
        .with_ca_pem(hostile::ca_pem())
        .expect("CA")
}

/// Trusts a CA that signed none of the hostile servers.
fn stranger_tls() -> TlsOptions {
    TlsOptions::default()
        .with_ca_pem(hostile::stranger_ca_pem())
        .expect("CA")
}

fn client_with(server: &Hostile, tls: TlsOptions, limits: Limits) -> SpsClient {
    SpsClient::builder(&server.host)
        .credentials(USER, PASSWORD.to_string())
        .tls(tls)
        .limits(limits)
        .build()
        .expect("client")
}

fn client(server: &Hostile, limits: Limits) -> SpsClient {
    client_with(server, tls(), limits)
}

/// A client certificate signed by the hostile servers' CA, as PEM.
fn client_certificate() -> (String, String) {
    hostile::issue(false)
}

fn certificate_client_with(
    server: &Hostile,
    (cert, key): &(String, String),
    tls: TlsOptions,
    limits: Limits,
) -> SpsClient {
    SpsClient::builder(&server.host)
        .client_certificate(
            ClientIdentity::from_pem(cert.as_bytes(), key.as_bytes()).expect("identity"),
        )
        .tls(tls)
        .limits(limits)
        .build()
        .expect("client")
}

fn certificate_client(server: &Hostile, limits: Limits) -> SpsClient {
    certificate_client_with(server, &client_certificate(), tls(), limits)
}

/// A complete JSON answer with `headers` (the connection stays open).
fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Vec<Step> {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    vec![hostile::answer(status, &all, body.as_bytes())]
}

/// The sign-in answer that sets `session_id=hostile-session`.
fn signed_in() -> Vec<Step> {
    reply(
        200,
        &[("Set-Cookie", "session_id=hostile-session; Path=/; Secure")],
        r#"{"key":"authentication","body":{},"meta":{}}"#,
    )
}

/// `bytes` (a head, maybe part of a body), then nothing more, the
/// connection held until the client closes it.
fn stall(bytes: &[u8]) -> Vec<Step> {
    vec![Step::Send(bytes.to_vec()), Step::Hang]
}

fn is_sign_in(r: &Received) -> bool {
    r.target().starts_with("/api/authentication") && !r.target().contains("login_methods")
}

/// Nothing at all reached `other`: no connection, so no credentials and no
/// cookie.
fn untouched(other: &Hostile) {
    assert_eq!(other.connections(), 0, "the other host was contacted");
    assert!(other.received().is_empty());
}

#[tokio::test]
async fn a_redirected_password_sign_in_sends_nothing_to_the_other_host() {
    let other = Hostile::https(|_| signed_in()).await;
    let to = format!("https://{}/api/authentication", other.host);
    let sps = Hostile::https(move |_| reply(307, &[("Location", &to)], "{}")).await;
    let err = bounded(client(&sps, Limits::default()).sign_in())
        .await
        .unwrap_err();
    let Error::Redirect(refused) = &err else {
        panic!("expected a refused redirect, got {err:?}");
    };
    assert_eq!(refused.status.as_u16(), 307);
    assert_eq!(refused.to, format!("https://{}", other.addr));
    assert!(err.to_string().contains("307"), "{err}");
    untouched(&other);
    // The credentials went to the SPS they were meant for, and only there.
    let seen = sps.received();
    assert_eq!(seen.len(), 1);
    assert!(seen[0]
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));
}

#[tokio::test]
async fn a_redirected_certificate_sign_in_is_refused() {
    let other = Hostile::https_client_auth(|_| signed_in()).await;
    let sps = {
        let to = format!("https://{}/api/authentication?type=x509", other.host);
        Hostile::https_client_auth(move |_| reply(302, &[("Location", &to)], "{}")).await
    };
    let err = bounded(certificate_client(&sps, Limits::default()).sign_in())
        .await
        .unwrap_err();
    let Error::Redirect(refused) = &err else {
        panic!("expected a refused redirect, got {err:?}");
    };
    assert_eq!(refused.status.as_u16(), 302);
    assert_eq!(refused.to, format!("https://{}", other.addr));
    untouched(&other);
    // The sign-in went to the SPS it was meant for, with the certificate.
    let seen = sps.received();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].client_certificate.is_some());
}

#[tokio::test]
async fn the_session_cookie_never_follows_a_redirect() {
    let other = Hostile::https(|_| reply(200, &[], r#"{"items":[]}"#)).await;
    let other_host = other.host.clone();
    let sps = Hostile::https(move |r| {
        if is_sign_in(r) {
            signed_in()
        } else if r.target().starts_with("/api/elsewhere") {
            reply(
                308,
                &[(
                    "Location",
                    &format!("https://{other_host}/api/configuration"),
                )],
                "{}",
            )
        } else if r.target().starts_with("/api/same-origin") {
            // Even to the same host: a request with the cookie follows none.
            reply(302, &[("Location", "/api/configuration")], "{}")
        } else {
            reply(200, &[], r#"{"items":[],"meta":{}}"#)
        }
    })
    .await;
    let c = client(&sps, Limits::default());
    let err = bounded(c.get_json("elsewhere")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Redirect(r) if r.status.as_u16() == 308 && r.to == format!("https://{}", other.addr)),
        "{err:?}"
    );
    let err = bounded(c.get_json("same-origin")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Redirect(r) if r.status.as_u16() == 302),
        "{err:?}"
    );
    untouched(&other);
    // The cookie went only to the host that set it; the redirect targets
    // were not requested.
    let seen = sps.received();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[1..]
        .iter()
        .all(|r| r.header("cookie") == Some("session_id=hostile-session")));
    assert!(!seen.iter().any(|r| r.target() == "/api/configuration"));
}

#[tokio::test]
async fn anonymous_login_methods_follow_same_origin_redirects_only() {
    let other = Hostile::https(|_| reply(200, &[], r#"["local"]"#)).await;
    let other_host = other.host.clone();
    let sps = Hostile::https(move |r| match r.target() {
        "/api/authentication/login_methods" => {
            reply(307, &[("Location", "/api/moved/login_methods")], "{}")
        }
        "/api/moved/login_methods" => reply(
            307,
            &[(
                "Location",
                &format!("https://{other_host}/api/authentication/login_methods"),
            )],
            "{}",
        ),
        _ => reply(404, &[], "{}"),
    })
    .await;
    let anonymous = SpsClient::builder(&sps.host)
        .tls(tls())
        .build()
        .expect("client");
    let err = bounded(anonymous.login_methods()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Redirect(r) if r.to == format!("https://{}", other.addr)),
        "{err:?}"
    );
    // The same-origin hop was followed, the cross-origin one was not.
    assert_eq!(sps.received().len(), 2);
    untouched(&other);
}

/// A client signed in to a server that answers `page` to every other call.
async fn signed_in_to(
    limits: Limits,
    page: impl Fn(&Received) -> Vec<Step> + Send + Sync + 'static,
) -> (Hostile, SpsClient) {
    let sps = Hostile::https(move |r| if is_sign_in(r) { signed_in() } else { page(r) }).await;
    let c = client(&sps, limits);
    bounded(c.sign_in()).await.expect("signs in");
    (sps, c)
}

const FLOOD: u64 = 256 * MIB;
const FLOOD_CHUNK: usize = 64 * 1024;

/// `head` (ending with the blank line), then [`FLOOD`] bytes of body: in
/// chunks when `chunked`, otherwise as they come (the length announced in
/// `head`, or none and the end of the connection ends the body).
fn flood_after(head: String, chunked: bool) -> Vec<Step> {
    let filler = vec![b'x'; FLOOD_CHUNK];
    let (chunk, total) = if chunked {
        let framed = hostile::chunk(&filler);
        let total = (FLOOD / FLOOD_CHUNK as u64) * framed.len() as u64;
        (framed, total)
    } else {
        (filler, FLOOD)
    };
    let mut steps = vec![Step::Send(head.into_bytes()), Step::Repeat { chunk, total }];
    if chunked {
        steps.push(Step::Send(b"0\r\n\r\n".to_vec()));
    }
    steps.push(Step::Reset);
    steps
}

fn flood(status: u16, announce: bool) -> Vec<Step> {
    let length = if announce {
        format!("Content-Length: {FLOOD}\r\n")
    } else {
        "Transfer-Encoding: chunked\r\n".to_string()
    };
    flood_after(
        format!("HTTP/1.1 {status} Flood\r\nContent-Type: application/json\r\n{length}\r\n"),
        !announce,
    )
}

/// The server stopped writing long before the end of its flood: the client
/// read a bounded prefix and closed the connection.
async fn flood_was_cut(sps: &Hostile) {
    assert!(
        sps.wait_abandoned(1).await,
        "the client closed the connection"
    );
    let written = sps.written();
    assert!(
        written < 64 * MIB,
        "the server wrote {written} of {FLOOD} bytes"
    );
}

#[tokio::test]
async fn an_answer_over_max_answer_bytes_is_refused_without_reading_it() {
    let limits = Limits::default().max_answer_bytes(MIB);
    // No announced length: the client counts as the body arrives.
    let (sps, c) = signed_in_to(limits, |_| flood(200, false)).await;
    let err = bounded(c.get_json("configuration")).await.unwrap_err();
    match &err {
        Error::TooLarge {
            request,
            limit,
            announced,
        } => {
            assert_eq!(*limit, MIB);
            assert_eq!(*announced, None);
            assert_eq!(request, "GET /api/configuration");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("1048576"), "{err}");
    flood_was_cut(&sps).await;

    // An announced length over the limit: refused before the body is read.
    let (sps, c) = signed_in_to(limits, |_| flood(200, true)).await;
    let err = bounded(c.page("configuration")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: MIB,
                announced: Some(FLOOD),
                ..
            }
        ),
        "{err:?}"
    );
    flood_was_cut(&sps).await;
}

#[tokio::test]
async fn an_oversized_sign_in_answer_is_refused() {
    let limits = Limits::default().max_answer_bytes(MIB);
    let sps = Hostile::https(|_| {
        flood_after(
            "HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s\r\nTransfer-Encoding: chunked\r\n\r\n"
                .into(),
            true,
        )
    })
    .await;
    let err = bounded(client(&sps, limits).sign_in()).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: MIB, .. }), "{err:?}");
    flood_was_cut(&sps).await;
    // The certificate sign-in reads its answer within the same limit,
    // whether the body is chunked, announced or ended by the connection.
    for head in [
        "HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_owned(),
        format!("HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s\r\nContent-Length: {FLOOD}\r\n\r\n"),
        "HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s\r\n\r\n".to_owned(),
    ] {
        let chunked = head.contains("chunked");
        let sps = Hostile::https_client_auth(move |_| flood_after(head.clone(), chunked)).await;
        let err = bounded(certificate_client(&sps, limits).sign_in())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { limit: MIB, .. }), "{err:?}");
        flood_was_cut(&sps).await;
    }
}

#[tokio::test]
async fn an_error_answer_is_read_only_up_to_max_error_bytes() {
    let limits = Limits::default().max_error_bytes(4096);
    let (sps, c) = signed_in_to(limits, |_| flood(500, false)).await;
    let err = bounded(c.get_json("configuration")).await.unwrap_err();
    let api = err.sps_error().expect("an error answer");
    assert_eq!(api.status.as_u16(), 500);
    assert!(api.message.starts_with("xxxx"), "{api:?}");
    flood_was_cut(&sps).await;
    // The same for the certificate sign-in's error answer.
    let sps = Hostile::https_client_auth(|_| flood(500, false)).await;
    let err = bounded(certificate_client(&sps, limits).sign_in())
        .await
        .unwrap_err();
    let api = err.sps_error().expect("an error answer");
    assert_eq!(api.status.as_u16(), 500);
    assert!(api.message.starts_with("xxxx"), "{api:?}");
    flood_was_cut(&sps).await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let short = Limits::default()
        .connect_timeout(Some(Duration::from_millis(500)))
        .answer_timeout(Some(Duration::from_millis(500)))
        .read_timeout(Some(Duration::from_millis(500)));

    // Accepts the connection, never starts TLS.
    let mute = Hostile::mute().await;
    let err = bounded(client(&mute, short).sign_in()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(err.is_retryable() && err.sps().is_none(), "{err:?}");
    let err = bounded(certificate_client(&mute, short).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");

    // Reads the request, never answers: the read timeout ends it, and
    // without one the answer timeout.
    let silent = Hostile::https_client_auth(|_| vec![Step::Hang]).await;
    let err = bounded(client(&silent, short).sign_in()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    let answer_only = Limits::default()
        .answer_timeout(Some(Duration::from_millis(500)))
        .read_timeout(None);
    let err = bounded(client(&silent, answer_only).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("GET /api/authentication: no answer within"),
        "{err}"
    );
    let err = bounded(certificate_client(&silent, short).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    let err = bounded(certificate_client(&silent, answer_only).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("GET /api/authentication: no answer within"),
        "{err}"
    );

    // Sends the head and part of the body, then nothing.
    let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"items\"";
    let (_sps, c) = signed_in_to(short, |_| stall(partial)).await;
    let err = bounded(c.get_json("configuration")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");

    // The same with only the answer timeout: the body must arrive in full
    // within it.
    let (_sps, c) = signed_in_to(answer_only, |_| stall(partial)).await;
    let err = bounded(c.get_json("configuration")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");

    // The certificate sign-in's answer body stalls: the same, with either
    // limit.
    let stalled = b"HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s\r\nContent-Length: 100\r\n\r\n{";
    let sps = Hostile::https_client_auth(|_| stall(stalled)).await;
    for limits in [short, answer_only] {
        let err = bounded(certificate_client(&sps, limits).sign_in())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    }
}

#[tokio::test]
async fn an_audit_trail_download_is_cut_by_silence() {
    let short = Limits::default().read_timeout(Some(Duration::from_millis(500)));
    let (_sps, c) = signed_in_to(short, |_| {
        stall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nsome bytes")
    })
    .await;
    let mut trail = bounded(c.download_audit_trail("session-1"))
        .await
        .expect("the head arrived");
    let first = bounded(trail.next())
        .await
        .expect("a chunk")
        .expect("bytes");
    assert_eq!(&first[..], b"some bytes");
    let err = bounded(trail.try_next()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

fn page(items: &[&str], next: Option<&str>) -> Vec<Step> {
    let items: Vec<_> = items
        .iter()
        .map(|k| serde_json::json!({"key": k}))
        .collect();
    let body = serde_json::json!({"items": items, "meta": {"next": next}});
    reply(200, &[], &body.to_string())
}

#[tokio::test]
async fn meta_next_cycling_between_two_pages_ends_with_a_cycle_error() {
    let (sps, c) = signed_in_to(Limits::default(), |r| {
        match r.target() {
            "/api/configuration/list" => page(&["a"], Some("/api/configuration/list?offset=1")),
            // Back to the first page, spelt as an absolute href.
            _ => page(&["b"], Some("/api/configuration/list")),
        }
    })
    .await;
    let mut items = Box::pin(c.items("configuration/list"));
    let mut keys = Vec::new();
    let err = bounded(async {
        loop {
            match items.next().await {
                Some(Ok(item)) => keys.push(item.key.unwrap_or_default()),
                Some(Err(e)) => break e,
                None => panic!("the listing ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(keys, ["a", "b"]);
    assert!(
        matches!(&err, Error::Paging(PagingError::Cycle { next }) if next == "/api/configuration/list"),
        "{err:?}"
    );
    assert!(
        items.next().await.is_none(),
        "the stream ends after the error"
    );
    // Sign-in and two pages: the cycle was not walked again.
    assert_eq!(sps.received().len(), 3);
}

#[tokio::test]
async fn max_pages_ends_an_endless_listing() {
    let limits = Limits::default().max_pages(Some(3));
    let (sps, c) = signed_in_to(limits, |r| {
        // Every page links to a new one.
        let n: u64 = r
            .target()
            .split("offset=")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        page(
            &["x"],
            Some(&format!("/api/configuration/list?offset={}", n + 1)),
        )
    })
    .await;
    let err = bounded(c.children("configuration/list")).await.unwrap_err();
    assert!(
        matches!(err, Error::Paging(PagingError::TooManyPages { limit: 3 })),
        "{err:?}"
    );
    assert_eq!(sps.received().len(), 1 + 3);
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_a_tls_error() {
    let sps = Hostile::https_client_auth(|_| signed_in()).await;
    // Trusts another CA than the one that signed the server's certificate.
    let err = bounded(client_with(&sps, stranger_tls(), Limits::default()).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(!err.is_retryable() && err.sps().is_none(), "{err:?}");
    let anonymous = SpsClient::builder(&sps.host)
        .tls(stranger_tls())
        .build()
        .expect("client");
    let err = bounded(anonymous.login_methods()).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    let certificate = client_certificate();
    let err = bounded(
        certificate_client_with(&sps, &certificate, stranger_tls(), Limits::default()).sign_in(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    // No request got through.
    assert!(sps.received().is_empty());
    // The same server, trusted, is usable: the failure was the trust.
    bounded(client(&sps, Limits::default()).sign_in())
        .await
        .expect("signs in");
    bounded(certificate_client_with(&sps, &certificate, tls(), Limits::default()).sign_in())
        .await
        .expect("signs in with the certificate");
}

#[test]
fn the_blocking_client_takes_the_limits() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sps = rt.block_on(Hostile::https(|_| vec![Step::Hang]));
    let host = sps.host.clone();
    let short = Limits::default().answer_timeout(Some(Duration::from_millis(300)));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let c = safeguard_sdk::sps::blocking::SpsClient::builder(host)
            .credentials(USER, PASSWORD.to_string())
            .tls(tls())
            .limits(short)
            .build()
            .expect("client");
        let _ = tx.send(c.sign_in());
    });
    let err = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the call ended within 30 s")
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn a_listing_still_walks_every_page() {
    // The cycle check must not cut an honest listing: distinct pages, then
    // no `next`.
    let (_sps, c) = signed_in_to(Limits::default(), |r| match r.target() {
        "/api/configuration/list" => page(&["a"], Some("/api/configuration/list?offset=1")),
        "/api/configuration/list?offset=1" => {
            page(&["b"], Some("/api/configuration/list?offset=2"))
        }
        _ => page(&["c"], None),
    })
    .await;
    let items: Vec<_> = bounded(c.items("configuration/list").try_collect::<Vec<_>>())
        .await
        .expect("every page");
    let keys: Vec<_> = items.into_iter().filter_map(|i| i.key).collect();
    assert_eq!(keys, ["a", "b", "c"]);
}

// --- the certificate sign-in over a kept-alive connection -----------------

/// The DER of a PEM certificate.
fn der(cert_pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .expect("certificate")
        .to_vec()
}

#[tokio::test]
async fn a_certificate_sign_in_needs_no_closed_connection_and_reuses_it() {
    // SPS keeps the connection open after answering (no `Connection:
    // close`): the sign-in ends with the answer's length, not with the
    // connection, and the next sign-in goes over the same connection.
    let sps = Hostile::https_client_auth(|_| signed_in()).await;
    let certificate = client_certificate();
    // Far shorter than the test's bound: waiting for the end of the
    // connection would end in a timeout.
    let limits = Limits::default()
        .answer_timeout(Some(Duration::from_secs(5)))
        .read_timeout(Some(Duration::from_secs(5)));
    let c = certificate_client_with(&sps, &certificate, tls(), limits);
    let started = std::time::Instant::now();
    bounded(c.sign_in()).await.expect("signs in");
    assert!(c.is_signed_in());
    // A sign-in some time later (after the session expired, say).
    tokio::time::sleep(Duration::from_millis(200)).await;
    bounded(c.sign_in()).await.expect("signs in again");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.sign_in_count(), 2);
    assert_eq!(sps.connections(), 1, "the connection was reused");
    assert_eq!(sps.closed(), 0, "the connection is still open");
    let seen = sps.received();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.line, "GET /api/authentication?type=x509 HTTP/1.1");
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(r.header("user-agent"), Some(safeguard_sdk::sps::USER_AGENT));
        assert_eq!(r.header("host"), Some(sps.host.as_str()));
        assert_eq!(r.header("connection"), None);
        assert!(r.header("cookie").is_none() && r.header("authorization").is_none());
        assert_eq!(
            r.client_certificate.as_deref(),
            Some(der(&certificate.0).as_slice()),
            "the sign-in presented the client certificate"
        );
    }
}

#[tokio::test]
async fn an_expired_session_is_renewed_over_the_kept_connection() {
    // The first call finds the session gone (401 without
    // `AuthenticationFailure`): the client signs in again with its
    // certificate, over the connection of its first sign-in, and retries.
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let sps = Hostile::https_client_auth(move |r| {
        if is_sign_in(r) {
            signed_in()
        } else if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            reply(
                401,
                &[],
                r#"{"error":{"type":"Unauthenticated","message":"the session expired"}}"#,
            )
        } else {
            reply(200, &[], r#"{"key":"x","body":{"a":1},"meta":{}}"#)
        }
    })
    .await;
    let c = certificate_client(&sps, Limits::default());
    bounded(c.sign_in()).await.expect("signs in");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = bounded(c.get_json("configuration/x"))
        .await
        .expect("renewed");
    assert_eq!(answer["body"]["a"], 1);
    assert_eq!(c.sign_in_count(), 2);
    let sign_ins: Vec<_> = sps.received().into_iter().filter(is_sign_in).collect();
    assert_eq!(sign_ins.len(), 2);
    assert!(sign_ins.iter().all(|r| r.client_certificate.is_some()));
    // One connection for the sign-ins (the certificate transport's), one for
    // the calls with the cookie (the ordinary transport's).
    assert_eq!(sps.connections(), 2);
}
