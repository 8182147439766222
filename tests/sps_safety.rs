//! The SPS client against a hostile server: redirects that would carry the
//! credentials or the session cookie elsewhere, answers larger than the
//! limits, silence, `meta.next` cycles, untrusted certificates.
//!
//! Run: `cargo test --no-default-features --test sps_safety`.

#[path = "common/sps_hostile.rs"]
mod hostile;

use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hostile::{Pki, Reply, Request, Server};
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

fn tls(pki: &Pki) -> TlsOptions {
    TlsOptions::default().with_ca_pem(pki.ca_pem()).expect("CA")
}

fn client(pki: &Pki, server: &Server, limits: Limits) -> SpsClient {
    SpsClient::builder(server.host())
        .credentials(USER, PASSWORD.to_string())
        .tls(tls(pki))
        .limits(limits)
        .build()
        .expect("client")
}

fn certificate_client(pki: &Pki, server: &Server, limits: Limits) -> SpsClient {
    let id = pki.client("hostile client");
    SpsClient::builder(server.host())
        .client_certificate(ClientIdentity::from_pem(&id.cert_pem(), &id.key_pem()).expect("id"))
        .tls(tls(pki))
        .limits(limits)
        .build()
        .expect("client")
}

fn is_sign_in(r: &Request) -> bool {
    r.target.starts_with("/api/authentication") && !r.target.contains("login_methods")
}

/// Nothing at all reached `other`: no connection, so no credentials and no
/// cookie.
fn untouched(other: &Server) {
    assert_eq!(other.connections(), 0, "the other host was contacted");
    assert!(other.requests().is_empty());
}

#[tokio::test]
async fn a_redirected_password_sign_in_sends_nothing_to_the_other_host() {
    let pki = Pki::new();
    let other = Server::start(&pki, |_| Reply::signed_in()).await;
    let to = format!("https://{}/api/authentication", other.host());
    let sps = Server::start(&pki, move |_| Reply::json(307, &[("Location", &to)], "{}")).await;
    let err = bounded(client(&pki, &sps, Limits::default()).sign_in())
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
    let seen = sps.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0]
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic ")));
}

#[tokio::test]
async fn a_redirected_certificate_sign_in_is_refused() {
    let pki = Pki::new();
    let other = Server::start(&pki, |_| Reply::signed_in()).await;
    let sps = {
        let to = format!("https://{}/api/authentication?type=x509", other.host());
        Server::start(&pki, move |_| Reply::json(302, &[("Location", &to)], "{}")).await
    };
    let err = bounded(certificate_client(&pki, &sps, Limits::default()).sign_in())
        .await
        .unwrap_err();
    let Error::Redirect(refused) = &err else {
        panic!("expected a refused redirect, got {err:?}");
    };
    assert_eq!(refused.status.as_u16(), 302);
    assert_eq!(refused.to, format!("https://{}", other.addr));
    untouched(&other);
}

#[tokio::test]
async fn the_session_cookie_never_follows_a_redirect() {
    let pki = Pki::new();
    let other = Server::start(&pki, |_| Reply::json(200, &[], r#"{"items":[]}"#)).await;
    let other_host = other.host();
    let sps = Server::start(&pki, move |r| {
        if is_sign_in(r) {
            Reply::signed_in()
        } else if r.target.starts_with("/api/elsewhere") {
            Reply::json(
                308,
                &[(
                    "Location",
                    &format!("https://{other_host}/api/configuration"),
                )],
                "{}",
            )
        } else if r.target.starts_with("/api/same-origin") {
            // Even to the same host: a request with the cookie follows none.
            Reply::json(302, &[("Location", "/api/configuration")], "{}")
        } else {
            Reply::json(200, &[], r#"{"items":[],"meta":{}}"#)
        }
    })
    .await;
    let c = client(&pki, &sps, Limits::default());
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
    let seen = sps.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[1..]
        .iter()
        .all(|r| r.header("cookie") == Some("session_id=hostile-session")));
    assert!(!seen.iter().any(|r| r.target == "/api/configuration"));
}

#[tokio::test]
async fn anonymous_login_methods_follow_same_origin_redirects_only() {
    let pki = Pki::new();
    let other = Server::start(&pki, |_| Reply::json(200, &[], r#"["local"]"#)).await;
    let other_host = other.host();
    let sps = Server::start(&pki, move |r| match r.target.as_str() {
        "/api/authentication/login_methods" => {
            Reply::json(307, &[("Location", "/api/moved/login_methods")], "{}")
        }
        "/api/moved/login_methods" => Reply::json(
            307,
            &[(
                "Location",
                &format!("https://{other_host}/api/authentication/login_methods"),
            )],
            "{}",
        ),
        _ => Reply::json(404, &[], "{}"),
    })
    .await;
    let anonymous = SpsClient::builder(sps.host())
        .tls(tls(&pki))
        .build()
        .expect("client");
    let err = bounded(anonymous.login_methods()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Redirect(r) if r.to == format!("https://{}", other.addr)),
        "{err:?}"
    );
    // The same-origin hop was followed, the cross-origin one was not.
    assert_eq!(sps.requests().len(), 2);
    untouched(&other);
}

/// A client signed in to a server that answers `page` to every other call.
async fn signed_in_to(
    pki: &Pki,
    limits: Limits,
    page: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> (Server, SpsClient) {
    let sps = Server::start(pki, move |r| {
        if is_sign_in(r) {
            Reply::signed_in()
        } else {
            page(r)
        }
    })
    .await;
    let c = client(pki, &sps, limits);
    bounded(c.sign_in()).await.expect("signs in");
    (sps, c)
}

const FLOOD: u64 = 256 * MIB;

fn flood(status: u16, announce: bool) -> Reply {
    let length = if announce {
        format!("Content-Length: {FLOOD}\r\n")
    } else {
        "Transfer-Encoding: chunked\r\n".to_string()
    };
    Reply::Flood {
        head: format!("HTTP/1.1 {status} Flood\r\nContent-Type: application/json\r\n{length}\r\n"),
        total: FLOOD,
        chunked: !announce,
    }
}

/// The server stopped writing long before the end of its flood: the client
/// read a bounded prefix and closed the connection.
async fn flood_was_cut(sps: &Server) {
    assert!(sps.all_closed().await, "the client closed the connection");
    let written = sps.flood_written();
    assert!(
        written < 64 * MIB,
        "the server wrote {written} of {FLOOD} bytes"
    );
}

#[tokio::test]
async fn an_answer_over_max_answer_bytes_is_refused_without_reading_it() {
    let pki = Pki::new();
    let limits = Limits::default().max_answer_bytes(MIB);
    // No announced length: the client counts as the body arrives.
    let (sps, c) = signed_in_to(&pki, limits, |_| flood(200, false)).await;
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
    let (sps, c) = signed_in_to(&pki, limits, |_| flood(200, true)).await;
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
    let pki = Pki::new();
    let limits = Limits::default().max_answer_bytes(MIB);
    let sps = Server::start(&pki, |_| Reply::Flood {
        head: "HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s\r\nTransfer-Encoding: chunked\r\n\r\n"
            .into(),
        total: FLOOD,
        chunked: true,
    })
    .await;
    let err = bounded(client(&pki, &sps, limits).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: MIB, .. }), "{err:?}");
    flood_was_cut(&sps).await;
    // The certificate sign-in reads its answer itself, within the same limit.
    let sps = Server::start(&pki, |_| Reply::Flood {
        head: "HTTP/1.1 200 OK\r\nSet-Cookie: session_id=s\r\n\r\n".into(),
        total: FLOOD,
        chunked: false,
    })
    .await;
    let err = bounded(certificate_client(&pki, &sps, limits).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: MIB, .. }), "{err:?}");
    flood_was_cut(&sps).await;
}

#[tokio::test]
async fn an_error_answer_is_read_only_up_to_max_error_bytes() {
    let pki = Pki::new();
    let limits = Limits::default().max_error_bytes(4096);
    let (sps, c) = signed_in_to(&pki, limits, |_| flood(500, false)).await;
    let err = bounded(c.get_json("configuration")).await.unwrap_err();
    let api = err.sps_error().expect("an error answer");
    assert_eq!(api.status.as_u16(), 500);
    assert!(api.message.starts_with("xxxx"), "{api:?}");
    flood_was_cut(&sps).await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let pki = Pki::new();
    let short = Limits::default()
        .connect_timeout(Some(Duration::from_millis(500)))
        .answer_timeout(Some(Duration::from_millis(500)))
        .read_timeout(Some(Duration::from_millis(500)));

    // Accepts the connection, never starts TLS.
    let mute = Server::mute().await;
    let err = bounded(client(&pki, &mute, short).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(err.is_retryable() && err.sps().is_none(), "{err:?}");
    let err = bounded(certificate_client(&pki, &mute, short).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");

    // Reads the request, never answers: the read timeout ends it, and
    // without one the answer timeout.
    let silent = Server::start(&pki, |_| Reply::Stall(vec![])).await;
    let err = bounded(client(&pki, &silent, short).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    let answer_only = Limits::default()
        .answer_timeout(Some(Duration::from_millis(500)))
        .read_timeout(None);
    let err = bounded(client(&pki, &silent, answer_only).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("GET /api/authentication: no answer within"),
        "{err}"
    );
    let err = bounded(certificate_client(&pki, &silent, short).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");

    // Sends the head and part of the body, then nothing.
    let (_sps, c) = signed_in_to(&pki, short, |_| {
        Reply::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"items\"".to_vec())
    })
    .await;
    let err = bounded(c.get_json("configuration")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");

    // The same with only the answer timeout: the body must arrive in full
    // within it.
    let (_sps, c) = signed_in_to(&pki, answer_only, |_| {
        Reply::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"items\"".to_vec())
    })
    .await;
    let err = bounded(c.get_json("configuration")).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn an_audit_trail_download_is_cut_by_silence() {
    let pki = Pki::new();
    let short = Limits::default().read_timeout(Some(Duration::from_millis(500)));
    let (_sps, c) = signed_in_to(&pki, short, |_| {
        Reply::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nsome bytes".to_vec())
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

fn page(items: &[&str], next: Option<&str>) -> Reply {
    let items: Vec<_> = items
        .iter()
        .map(|k| serde_json::json!({"key": k}))
        .collect();
    let body = serde_json::json!({"items": items, "meta": {"next": next}});
    Reply::json(200, &[], &body.to_string())
}

#[tokio::test]
async fn meta_next_cycling_between_two_pages_ends_with_a_cycle_error() {
    let pki = Pki::new();
    let (sps, c) = signed_in_to(&pki, Limits::default(), |r| {
        match r.target.as_str() {
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
    assert_eq!(sps.requests().len(), 3);
}

#[tokio::test]
async fn max_pages_ends_an_endless_listing() {
    let pki = Pki::new();
    let limits = Limits::default().max_pages(Some(3));
    let (sps, c) = signed_in_to(&pki, limits, |r| {
        // Every page links to a new one.
        let n: u64 = r
            .target
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
    assert_eq!(sps.requests().len(), 1 + 3);
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_a_tls_error() {
    let pki = Pki::new();
    let sps = Server::start(&pki, |_| Reply::signed_in()).await;
    // Trusts another CA than the one that signed the server's certificate.
    let stranger = Pki::new();
    let err = bounded(client(&stranger, &sps, Limits::default()).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(!err.is_retryable() && err.sps().is_none(), "{err:?}");
    let anonymous = SpsClient::builder(sps.host())
        .tls(tls(&stranger))
        .build()
        .expect("client");
    let err = bounded(anonymous.login_methods()).await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    let err = bounded(certificate_client(&stranger, &sps, Limits::default()).sign_in())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    // No request got through.
    assert!(sps.requests().is_empty());
    // The same server, trusted, is usable: the failure was the trust.
    bounded(client(&pki, &sps, Limits::default()).sign_in())
        .await
        .expect("signs in");
}

#[test]
fn the_blocking_client_takes_the_limits() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pki = Pki::new();
    let sps = rt.block_on(Server::start(&pki, |_| Reply::Stall(vec![])));
    let (host, tls) = (sps.host(), tls(&pki));
    let short = Limits::default().answer_timeout(Some(Duration::from_millis(300)));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let c = safeguard_sdk::sps::blocking::SpsClient::builder(host)
            .credentials(USER, PASSWORD.to_string())
            .tls(tls)
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
    let pki = Pki::new();
    let (_sps, c) = signed_in_to(&pki, Limits::default(), |r| match r.target.as_str() {
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
