//! The SDK against a server that misbehaves: redirects that would carry a
//! secret away, answers too large to hold, answers that never come, absurd
//! header values, listings that never end, connections that break. Each
//! test names the typed error it expects and, where it matters, proves what
//! did not happen (a secret reaching another host, memory growing with the
//! answer, a call waiting without end).

// Some helpers serve only the tests of the generated clients or of A2A.
#![cfg_attr(
    not(all(feature = "core", feature = "a2a")),
    allow(dead_code, unused_imports)
)]

mod hostile;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use hostile::{answer, chunk, head, json, redirect, Hostile, Step};
use safeguard_sdk::auth::{PasswordAuth, TokenAuth};
use safeguard_sdk::limits::{Limits, RedirectPolicy};
use safeguard_sdk::paging::PagingError;
use safeguard_sdk::{Error, SafeguardClient, Service};

/// Counts the bytes allocated by this test binary, and their peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Memory-measuring tests run one at a time.
static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How far the allocated bytes rose above where they were while `work` ran.
async fn peak_growth<T>(work: impl std::future::Future<Output = T>) -> (T, usize) {
    let _one_at_a_time = MEASURING.lock().await;
    let start = CURRENT.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = work.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(start))
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Far more than any answer: if a call finishes, it did not wait for this.
const BOUND: Duration = Duration::from_secs(60);

/// The user token the test clients hold: it must never reach another host.
const USER_TOKEN: &str = "user-token-0123456789";
const PASSWORD: &str = "Sup3r-Secret-Pa55word";

fn client(server: &Hostile, limits: Limits) -> SafeguardClient {
    SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .expect("CA")
        .auth(TokenAuth::new(USER_TOKEN))
        .limits(limits)
        .build()
        .expect("client")
}

/// Runs `call` with an outer bound: a call that hangs fails the test
/// instead of hanging it.
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, call)
        .await
        .expect("the call ended by itself")
}

fn short_timeouts() -> Limits {
    Limits::default()
        .answer_timeout(Some(Duration::from_millis(800)))
        .read_timeout(Some(Duration::from_millis(800)))
}

// --- redirects -----------------------------------------------------------

/// A server that records whatever reaches it and answers 200.
async fn elsewhere_https() -> Hostile {
    Hostile::https(|_| vec![json(200, "{}")]).await
}

#[tokio::test]
async fn the_password_is_never_sent_after_a_redirect_to_another_host() {
    let other = elsewhere_https().await;
    let target = format!("https://{}/RSTS/oauth2/token", other.host);
    let server = Hostile::https(move |r| {
        if r.target().contains("AuthenticationProviders") {
            vec![json(200, r#"[{"Name":"Local","RstsProviderId":"local"}]"#)]
        } else {
            vec![redirect(307, &target)]
        }
    })
    .await;
    let client = SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .unwrap()
        .auth(PasswordAuth::new("local", "admin", PASSWORD))
        .build()
        .unwrap();
    let err = bounded(client.login()).await.expect_err("refused");
    let Error::Redirect(refused) = &err else {
        panic!("not a redirect error: {err:?}");
    };
    assert_eq!(refused.status.as_u16(), 307);
    assert_eq!(refused.to, format!("https://{}", other.host));
    assert_eq!(other.connections(), 0, "the other host was never contacted");
    let sent = server.received();
    assert!(sent.iter().any(|r| r.text().contains(PASSWORD)));
    assert!(!err.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn the_sts_token_is_never_sent_after_a_redirect_to_another_host() {
    let other = elsewhere_https().await;
    let target = format!("https://{}/service/core/v4/Token/LoginResponse", other.host);
    let server = Hostile::https(move |r| {
        let t = r.target();
        if t.contains("AuthenticationProviders") {
            vec![json(200, r#"[{"RstsProviderId":"local"}]"#)]
        } else if t.contains("oauth2/token") {
            vec![json(
                200,
                r#"{"access_token":"sts-token-secret","token_type":"Bearer"}"#,
            )]
        } else {
            vec![redirect(308, &target)]
        }
    })
    .await;
    let client = SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .unwrap()
        .auth(PasswordAuth::new("local", "admin", PASSWORD))
        .build()
        .unwrap();
    let err = bounded(client.login()).await.expect_err("refused");
    assert!(
        matches!(&err, Error::Redirect(r) if r.status.as_u16() == 308),
        "{err:?}"
    );
    assert_eq!(other.connections(), 0);
    assert!(server
        .received()
        .iter()
        .any(|r| r.text().contains("sts-token-secret")));
}

#[tokio::test]
async fn a_call_never_follows_a_redirect_to_plain_http_or_to_another_host() {
    let plain = Hostile::plain(|_| vec![json(200, "{}")]).await;
    let other = elsewhere_https().await;
    let (to_plain, to_other) = (
        format!("http://{}/service/core/v4/Me", plain.host),
        format!("https://{}/service/core/v4/Me", other.host),
    );
    let server = Hostile::https(move |r| {
        if r.target().ends_with("/Plain") {
            vec![redirect(307, &to_plain)]
        } else {
            vec![redirect(302, &to_other)]
        }
    })
    .await;
    let client = client(&server, Limits::default());
    for (path, status, to) in [
        ("Plain", 307, format!("http://{}", plain.host)),
        ("Other", 302, format!("https://{}", other.host)),
    ] {
        let err = bounded(client.get(Service::Core, path).send())
            .await
            .expect_err("refused");
        match err {
            Error::Redirect(r) => {
                assert_eq!(r.status.as_u16(), status);
                assert_eq!(r.to, to);
            }
            other => panic!("{path}: not a redirect error: {other:?}"),
        }
    }
    assert_eq!(plain.connections() + other.connections(), 0);
}

/// A typed call's own error says what happened: the SDK's failure (here a
/// refused redirect) is `CallError::Exec` holding that `Error`, a refused
/// answer is `CallError::Limit`; neither is a made-up HTTP answer.
#[cfg(feature = "core")]
#[tokio::test]
async fn a_typed_call_fails_with_what_happened_not_a_made_up_answer() {
    use safeguard_sdk::api::CallError;
    let other = elsewhere_https().await;
    let to_other = format!("https://{}/service/core/v4/Me", other.host);
    let server = Hostile::https(move |r| {
        if r.target().contains("/Me") {
            vec![redirect(302, &to_other)]
        } else {
            vec![head(200, None), Step::Hang]
        }
    })
    .await;
    let client = client(&server, short_timeouts());
    let failure = bounded(client.core().me_get_me().send())
        .await
        .expect_err("refused");
    let CallError::Exec(e) = failure else {
        panic!("not the SDK's own failure: {failure:?}");
    };
    match e.downcast::<Error>().map(|e| *e) {
        Ok(Error::Redirect(r)) => assert_eq!(r.status.as_u16(), 302),
        other => panic!("not the refused redirect: {other:?}"),
    }
    let failure = bounded(client.core().users_get_users().send())
        .await
        .expect_err("no whole answer");
    assert!(
        matches!(failure, CallError::Limit { .. }),
        "not a refusal: {failure:?}"
    );
    assert!(matches!(Error::from(failure), Error::Timeout(_)));
    assert_eq!(other.connections(), 0);
}

#[tokio::test]
async fn a_same_origin_redirect_is_followed_unless_the_policy_says_never() {
    let server = Hostile::https(|r| {
        if r.target().ends_with("/Old") {
            vec![redirect(301, "/service/core/v4/New")]
        } else {
            vec![json(200, r#"{"Id": 1}"#)]
        }
    })
    .await;
    let followed: serde_json::Value = bounded(
        client(&server, Limits::default())
            .get(Service::Core, "Old")
            .send_json(),
    )
    .await
    .expect("followed within the origin");
    assert_eq!(followed["Id"], 1);
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert!(received[1].target().ends_with("/New"));
    assert!(
        received[1].headers.contains(USER_TOKEN),
        "same origin keeps the token"
    );

    let strict = client(&server, Limits::default().redirects(RedirectPolicy::Never));
    let err = bounded(strict.get(Service::Core, "Old").send())
        .await
        .expect_err("never");
    assert!(matches!(err, Error::Redirect(r) if r.status.as_u16() == 301));
}

#[cfg(feature = "a2a")]
fn a2a_context(
    server: &Hostile,
    dir: &std::path::Path,
    limits: Limits,
) -> safeguard_sdk::a2a::A2aContext {
    let (cert, key) = hostile::issue(false);
    let (cert_path, key_path) = (dir.join("client.pem"), dir.join("client-key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    safeguard_sdk::a2a::A2aContext::builder(&server.host)
        .pem_files(cert_path, key_path)
        .tls(
            safeguard_sdk::tls::TlsOptions::default()
                .with_ca_pem(hostile::ca_pem())
                .unwrap(),
        )
        .limits(limits)
        .build()
        .expect("context")
}

#[cfg(feature = "a2a")]
#[tokio::test]
async fn an_a2a_api_key_is_never_sent_after_a_redirect() {
    let other = elsewhere_https().await;
    let target = format!(
        "https://{}/service/a2a/v4/Credentials?type=Password",
        other.host
    );
    let server = Hostile::https(move |_| vec![redirect(307, &target)]).await;
    let dir = tempfile::tempdir().unwrap();
    let a2a = a2a_context(&server, dir.path(), Limits::default());
    let err = bounded(a2a.retrieve_password("the-api-key-secret"))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, Error::Redirect(r) if r.status.as_u16() == 307),
        "{err:?}"
    );
    assert_eq!(other.connections(), 0);
    assert!(server.received()[0].headers.contains("the-api-key-secret"));
}

// --- bounded reads -------------------------------------------------------

/// An error answer announcing 2 GiB: JSON, then whitespace without end.
fn huge_error() -> Vec<Step> {
    let body = br#"{"Code":70000,"Message":"the answer that never ends"}"#;
    vec![
        Step::Send(
            format!(
                "HTTP/1.1 500 X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                2 * GIB
            )
            .into_bytes(),
        ),
        Step::Send(body.to_vec()),
        Step::Repeat {
            chunk: vec![b' '; 64 * 1024],
            total: 2 * GIB - body.len() as u64,
        },
    ]
}

#[cfg(feature = "core")]
#[tokio::test]
async fn a_huge_error_answer_keeps_its_code_and_message_and_is_not_read_further() {
    let server = Hostile::https(|_| huge_error()).await;
    let client = client(&server, Limits::default());
    let (result, growth) = peak_growth(bounded(client.core().me_get_me().send())).await;
    let err = Error::from(result.expect_err("an error answer"));
    let api = err.api_error().expect("the appliance's error");
    assert_eq!(api.code, Some(70000));
    assert_eq!(api.message.as_deref(), Some("the answer that never ends"));
    assert!(api.body.len() <= 64 * 1024, "kept {} bytes", api.body.len());
    assert!(
        growth < (32 * MIB) as usize,
        "memory grew by {growth} bytes"
    );
    assert!(
        server.written() < 2 * GIB - 64 * 1024,
        "the whole body was read"
    );

    // The generic verbs keep the same part of it.
    let err = bounded(client.get(Service::Core, "Me").send())
        .await
        .expect_err("an error answer");
    assert_eq!(err.api_error().and_then(|a| a.code), Some(70000));
}

#[cfg(feature = "core")]
#[tokio::test]
async fn a_success_answer_over_the_limit_is_refused_announced_or_not() {
    let server = Hostile::https(|r| {
        let announced = r.target().contains("Announced");
        vec![
            head(200, announced.then_some(2 * GIB)),
            Step::Repeat {
                chunk: if announced {
                    vec![b' '; 64 * 1024]
                } else {
                    chunk(&[b' '; 64 * 1024])
                },
                total: 2 * GIB,
            },
        ]
    })
    .await;
    let client = client(&server, Limits::default().max_answer_bytes(MIB));
    let (result, growth) = peak_growth(bounded(
        client
            .get(Service::Core, "Announced")
            .send_json::<serde_json::Value>(),
    ))
    .await;
    match result.expect_err("refused") {
        Error::TooLarge {
            limit,
            announced,
            request,
        } => {
            assert_eq!(limit, MIB);
            assert_eq!(announced, Some(2 * GIB));
            assert_eq!(request, "GET /service/core/v4/Announced");
        }
        other => panic!("not TooLarge: {other:?}"),
    }
    assert!(
        growth < (16 * MIB) as usize,
        "memory grew by {growth} bytes"
    );

    let (result, growth) = peak_growth(bounded(client.core().users_get_users().send())).await;
    let err = Error::from(result.expect_err("refused"));
    assert!(
        matches!(err, Error::TooLarge { limit, announced: None, .. } if limit == MIB),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("max_answer_bytes"),
        "the error says how to raise the limit: {err}"
    );
    assert!(
        growth < (16 * MIB) as usize,
        "memory grew by {growth} bytes"
    );
    assert!(server.written() < 2 * GIB);
}

#[cfg(feature = "a2a")]
#[tokio::test]
async fn an_a2a_answer_over_the_limit_is_refused() {
    let server = Hostile::https(|_| {
        vec![
            head(200, None),
            Step::Repeat {
                chunk: chunk(&[b'x'; 64 * 1024]),
                total: 2 * GIB,
            },
        ]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let a2a = a2a_context(&server, dir.path(), Limits::default().max_answer_bytes(MIB));
    let (result, growth) = peak_growth(bounded(a2a.retrieve_password("key"))).await;
    let err = result.expect_err("refused");
    assert!(
        matches!(err, Error::TooLarge { limit, .. } if limit == MIB),
        "{err:?}"
    );
    assert!(
        growth < (16 * MIB) as usize,
        "memory grew by {growth} bytes"
    );
}

// --- timeouts ------------------------------------------------------------

/// `GET Me` on `server`, with short timeouts, ends in [`Error::Timeout`].
async fn ends_in_timeout(server: &Hostile) {
    let call = client(server, short_timeouts());
    let err = bounded(call.get(Service::Core, "Me").send())
        .await
        .expect_err("no answer");
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = Hostile::https(|_| vec![Step::Hang]).await;
    ends_in_timeout(&server).await;
    let client = client(&server, short_timeouts());
    let err = bounded(
        client
            .get(Service::Core, "Me")
            .send_json::<serde_json::Value>(),
    )
    .await
    .expect_err("no answer");
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    #[cfg(feature = "core")]
    {
        let typed = bounded(client.core().me_get_me().send()).await;
        let err = Error::from(typed.expect_err("no answer"));
        assert!(matches!(err, Error::Timeout(_)), "typed: {err:?}");
    }
}

#[tokio::test]
async fn a_server_that_trickles_its_headers_or_body_times_out() {
    let server = Hostile::https(|r| {
        let body = br#"{"Id": 1, "Name": "slow"}"#.to_vec();
        let every = Duration::from_millis(100);
        if r.target().ends_with("/Headers") {
            let mut bytes = b"HTTP/1.1 200 X\r\nX-Slow: ".to_vec();
            bytes.extend(std::iter::repeat_n(b'a', 200));
            vec![Step::Trickle { bytes, every }]
        } else {
            vec![
                head(200, Some(body.len() as u64)),
                Step::Trickle { bytes: body, every },
            ]
        }
    })
    .await;
    // Each byte arrives well within the read timeout: only the answer
    // timeout can end these.
    let limits = Limits::default()
        .answer_timeout(Some(Duration::from_millis(800)))
        .read_timeout(Some(Duration::from_secs(30)));
    let client = client(&server, limits);
    for path in ["Headers", "Body"] {
        let err = bounded(
            client
                .get(Service::Core, path)
                .send_json::<serde_json::Value>(),
        )
        .await
        .expect_err("too slow");
        assert!(matches!(err, Error::Timeout(_)), "{path}: {err:?}");
    }
    #[cfg(feature = "core")]
    {
        let typed = bounded(client.core().users_get_users().send()).await;
        let err = Error::from(typed.expect_err("too slow"));
        assert!(matches!(err, Error::Timeout(_)), "typed: {err:?}");
    }
}

#[tokio::test]
async fn endless_informational_answers_time_out() {
    let server = Hostile::https(|_| {
        (0..200)
            .flat_map(|_| {
                [
                    Step::Send(b"HTTP/1.1 102 Processing\r\n\r\n".to_vec()),
                    Step::Pause(Duration::from_millis(50)),
                ]
            })
            .collect()
    })
    .await;
    ends_in_timeout(&server).await;
}

#[tokio::test]
async fn a_stream_is_cut_by_silence_but_not_by_its_length() {
    let server = Hostile::https(|r| {
        let piece = vec![b'x'; 1024];
        if r.target().ends_with("/Silent") {
            vec![head(200, Some(10 * MIB)), Step::Send(piece), Step::Hang]
        } else {
            // Ten pieces over ~2 s: longer than the answer timeout, with no
            // silence as long as the read timeout.
            let mut steps = vec![head(200, Some(10 * 1024))];
            for _ in 0..10 {
                steps.push(Step::Send(piece.clone()));
                steps.push(Step::Pause(Duration::from_millis(200)));
            }
            steps
        }
    })
    .await;
    let limits = Limits::default()
        .answer_timeout(Some(Duration::from_millis(800)))
        .read_timeout(Some(Duration::from_millis(800)));
    let client = client(&server, limits);
    let dir = tempfile::tempdir().unwrap();
    let written = bounded(client.download(Service::Core, "Slow", dir.path().join("slow"), None))
        .await
        .expect("a slow download that keeps arriving completes");
    assert_eq!(written, 10 * 1024);
    let err = bounded(client.download(Service::Core, "Silent", dir.path().join("silent"), None))
        .await
        .expect_err("silence ends it");
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

// --- no panic ------------------------------------------------------------

#[tokio::test]
async fn an_absurd_token_lifetime_is_taken_without_panic() {
    let server = Hostile::https(|_| {
        vec![answer(
            200,
            &[
                ("Content-Type", "application/json"),
                ("X-TokenLifetimeRemaining", "18446744073709551615"),
            ],
            b"{}",
        )]
    })
    .await;
    let client = client(&server, Limits::default());
    for _ in 0..3 {
        let me: serde_json::Value = bounded(client.get(Service::Core, "Me").send_json())
            .await
            .expect("answered");
        assert!(me.is_object());
    }
    assert_eq!(server.received().len(), 3, "no refresh was attempted");
}

// --- paging --------------------------------------------------------------

#[tokio::test]
async fn a_listing_that_repeats_its_page_ends_with_a_paging_error() {
    let server = Hostile::https(|_| vec![json(200, r#"[{"Id": 1}, {"Id": 2}]"#)]).await;
    let client = client(&server, Limits::default());
    let mut items =
        Box::pin(client.paginate::<serde_json::Value>(Service::Core, "Users", 2, vec![]));
    assert!(bounded(items.try_next()).await.unwrap().is_some());
    assert!(bounded(items.try_next()).await.unwrap().is_some());
    let err = bounded(items.try_next())
        .await
        .expect_err("a repeated page");
    assert!(
        matches!(err, Error::Paging(PagingError::RepeatedPage { page: 1 })),
        "{err:?}"
    );
    assert_eq!(server.received().len(), 2);
}

#[cfg(feature = "core")]
#[tokio::test]
async fn a_typed_listing_that_repeats_its_page_ends_too() {
    let page: Vec<_> = (0..safeguard_sdk::lists::PAGE_SIZE)
        .map(|i| serde_json::json!({"Id": i, "Name": format!("user{i}")}))
        .collect();
    let page = serde_json::to_string(&page).unwrap();
    let server = Hostile::https(move |_| vec![json(200, &page)]).await;
    let client = client(&server, Limits::default());
    let result: Result<Vec<_>, _> = bounded(client.list_users(None).try_collect()).await;
    assert!(
        matches!(
            result,
            Err(Error::Paging(PagingError::RepeatedPage { page: 1 }))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_listing_stops_at_the_page_limit() {
    // Every page different and full: only the limit can end it.
    let server = Hostile::https(|r| {
        let page = r
            .target()
            .split("page=")
            .nth(1)
            .and_then(|p| p.split('&').next())
            .unwrap_or("0")
            .to_owned();
        vec![json(200, &format!(r#"[{{"Id": "{page}"}}]"#))]
    })
    .await;
    let client = client(&server, Limits::default().max_pages(Some(5)));
    let result: Result<Vec<serde_json::Value>, _> = bounded(
        client
            .paginate(Service::Core, "Users", 1, vec![])
            .try_collect(),
    )
    .await;
    assert!(
        matches!(
            result,
            Err(Error::Paging(PagingError::TooManyPages { limit: 5 }))
        ),
        "{result:?}"
    );
    assert_eq!(server.received().len(), 5);
}

// --- classification ------------------------------------------------------

#[tokio::test]
async fn a_connection_broken_in_the_middle_of_a_body_is_a_transport_error() {
    let server = Hostile::https(|_| {
        vec![
            head(200, Some(1000)),
            Step::Send(b"[{\"Id\":".to_vec()),
            Step::Reset,
        ]
    })
    .await;
    let client = client(&server, Limits::default());
    let err = bounded(
        client
            .get(Service::Core, "Users")
            .send_json::<serde_json::Value>(),
    )
    .await
    .expect_err("broken");
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    #[cfg(feature = "core")]
    {
        let err = Error::from(
            bounded(client.core().me_get_me().send())
                .await
                .expect_err("broken"),
        );
        assert!(matches!(err, Error::Transport(_)), "typed: {err:?}");
    }
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_a_tls_error() {
    let server = Hostile::https(|_| vec![json(200, "{}")]).await;
    let client = SafeguardClient::builder(&server.host)
        .auth(TokenAuth::new(USER_TOKEN))
        .build()
        .unwrap();
    let err = bounded(client.get(Service::Core, "Me").send())
        .await
        .expect_err("untrusted");
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(server.received().is_empty(), "nothing was sent to it");
}

// --- sign-in and events ----------------------------------------------------

#[tokio::test]
async fn an_absurd_device_code_expiry_is_taken_without_panic() {
    let server = Hostile::https(|r| {
        let t = r.target();
        if t.contains("AuthenticationProviders") {
            vec![json(200, r#"[{"RstsProviderId":"local"}]"#)]
        } else if t.contains("DeviceLogin") {
            vec![json(
                200,
                r#"{"device_code":"dc","user_code":"UC","verification_uri":"https://sg/device","expires_in":18446744073709551615,"interval":1}"#,
            )]
        } else if t.contains("oauth2/token") {
            vec![json(200, r#"{"access_token":"sts"}"#)]
        } else {
            vec![json(200, r#"{"Status":"Success","UserToken":"user"}"#)]
        }
    })
    .await;
    let client = SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .unwrap()
        .auth(safeguard_sdk::auth::DeviceCodeAuth::new("local", |_| {}))
        .build()
        .unwrap();
    bounded(client.login()).await.expect("signed in");
    assert!(client.is_signed_in().await);
}

#[tokio::test]
async fn a_sign_in_answer_over_the_limit_is_refused() {
    let server = Hostile::https(|r| {
        if r.target().contains("AuthenticationProviders") {
            vec![json(200, r#"[{"RstsProviderId":"local"}]"#)]
        } else {
            vec![
                head(200, None),
                Step::Repeat {
                    chunk: chunk(&[b' '; 64 * 1024]),
                    total: 2 * GIB,
                },
            ]
        }
    })
    .await;
    let client = SafeguardClient::builder(&server.host)
        .ca_pem(hostile::ca_pem())
        .unwrap()
        .auth(PasswordAuth::new("local", "admin", PASSWORD))
        .limits(Limits::default().max_answer_bytes(MIB))
        .build()
        .unwrap();
    let (result, growth) = peak_growth(bounded(client.login())).await;
    let err = result.expect_err("refused");
    assert!(
        matches!(&err, Error::TooLarge { limit, request, .. } if *limit == MIB && request == "POST /RSTS/oauth2/token"),
        "{err:?}"
    );
    assert!(
        growth < (16 * MIB) as usize,
        "memory grew by {growth} bytes"
    );
}

#[tokio::test]
async fn the_events_negotiate_follows_no_redirect_and_reads_within_the_limit() {
    let endless = Hostile::https(|_| {
        vec![
            head(200, None),
            Step::Repeat {
                chunk: chunk(&[b' '; 64 * 1024]),
                total: 2 * GIB,
            },
        ]
    })
    .await;
    let listener = client(&endless, Limits::default().max_answer_bytes(MIB)).event_listener();
    let err = bounded(listener.start())
        .await
        .expect_err("an endless negotiate answer");
    assert!(
        matches!(&err, Error::TooLarge { limit, .. } if *limit == MIB),
        "{err:?}"
    );

    let other = elsewhere_https().await;
    let target = format!("https://{}/service/event/signalr/negotiate", other.host);
    let redirecting = Hostile::https(move |_| vec![redirect(307, &target)]).await;
    let listener = client(&redirecting, Limits::default()).event_listener();
    let err = bounded(listener.start())
        .await
        .expect_err("a redirected negotiate");
    assert!(
        matches!(&err, Error::Redirect(r) if r.status.as_u16() == 307),
        "{err:?}"
    );
    assert_eq!(other.connections(), 0, "the user token stayed home");
}
