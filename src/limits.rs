//! What the SDK accepts from a server: how long it waits, how much it holds
//! in memory, where it lets a redirect take a request, how many pages it
//! walks.
//!
//! A privileged-access client talks to servers it cannot vouch for: a load
//! balancer that redirects, an appliance that is broken or compromised, a
//! network that stalls. Every client of the SDK ([`SafeguardClient`],
//! `A2aContext`, the event listeners,
//! [`SpsClient`](crate::sps::SpsClient)) takes a [`Limits`], with defaults
//! that hold against any server:
//!
//! | limit | default | what it ends |
//! |---|---|---|
//! | [`connect_timeout`](Limits::connect_timeout) | 30 s | a host that does not accept the connection or finish the TLS handshake |
//! | [`answer_timeout`](Limits::answer_timeout) | 5 min | a call whose answer is read into memory and has not arrived in full (no answer, endless `1xx`, trickled headers or body); for a stream or download, its status and headers not arriving |
//! | [`read_timeout`](Limits::read_timeout) | 60 s | silence while a stream or download is read (one that keeps arriving is never cut, however long) |
//! | [`max_answer_bytes`](Limits::max_answer_bytes) | 128 MiB | a body read into memory larger than this ([`Error::TooLarge`]); streams are never held |
//! | [`max_error_bytes`](Limits::max_error_bytes) | 64 KiB | the part of an error answer kept; the rest is never read |
//! | [`max_pages`](Limits::max_pages) | none | a listing longer than this many pages ([`Error::Paging`]); a page repeated by the server always ends the listing |
//! | [`redirects`](Limits::redirects) | [`RedirectPolicy::SameOrigin`] | a redirect to another scheme, host or port ([`Error::Redirect`]) |
//!
//! A request that carries a secret of its own in its body or headers (every
//! sign-in step, `Token/LoginResponse`, device code, A2A, SPS
//! authentication, the events negotiate) never follows a redirect, whatever
//! the policy: it ends with [`Error::Redirect`] and the secret stays where
//! it was sent. Other requests follow redirects to the same origin only
//! (same scheme, host and port; so never from https to http), at most ten.
//!
//! [`SafeguardClient`]: crate::SafeguardClient

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use futures::TryFutureExt;
use reqwest::StatusCode;
use safeguard_api::answer::{read_bounded, read_prefix, AnswerLimits, ReadError, ReadFailure};

use crate::error::{ApiError, Error, Result};

pub use safeguard_api::answer::{DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MAX_ERROR_BYTES};

/// The default [`Limits::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`Limits::answer_timeout`]: long enough for the slowest
/// synchronous operations of the appliance (the longer ones run as tasks).
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// The default [`Limits::read_timeout`].
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Redirects followed in a row at the most, within one origin.
const MAX_REDIRECTS: usize = 10;

/// Which redirects a client follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedirectPolicy {
    /// To the same scheme, host and port only, ten at the most (the default).
    #[default]
    SameOrigin,
    /// None: every redirect ends the request with [`Error::Redirect`].
    Never,
}

/// What a client accepts from a server (see the [module](self) for the
/// defaults and what each one ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Opening a connection: TCP, the proxy's tunnel when there is one (see
    /// [`crate::proxy`]) and the TLS handshake.
    pub connect_timeout: Option<Duration>,
    /// From sending a request to the end of its answer, for a call whose
    /// answer is read into memory; to its status and headers for a stream
    /// or download.
    pub answer_timeout: Option<Duration>,
    /// The longest silence while a stream or download is read.
    pub read_timeout: Option<Duration>,
    /// The largest body read into memory.
    pub max_answer_bytes: u64,
    /// How much of an error answer is kept.
    pub max_error_bytes: usize,
    /// The most pages a listing walks (`None`: no limit).
    pub max_pages: Option<u32>,
    /// Which redirects are followed.
    pub redirects: RedirectPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Limits {
    /// The defaults (see the [module](self)).
    pub const DEFAULT: Limits = Limits {
        connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
        answer_timeout: Some(DEFAULT_ANSWER_TIMEOUT),
        read_timeout: Some(DEFAULT_READ_TIMEOUT),
        max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        max_error_bytes: DEFAULT_MAX_ERROR_BYTES,
        max_pages: None,
        redirects: RedirectPolicy::SameOrigin,
    };

    /// The defaults without any timeout: calls wait as long as the server
    /// takes. For callers that bound their calls themselves.
    pub fn without_timeouts(self) -> Self {
        Self {
            connect_timeout: None,
            answer_timeout: None,
            read_timeout: None,
            ..self
        }
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`answer_timeout`](Self::answer_timeout).
    pub fn answer_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.answer_timeout = timeout;
        self
    }

    /// Sets [`read_timeout`](Self::read_timeout).
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets [`max_answer_bytes`](Self::max_answer_bytes).
    pub fn max_answer_bytes(mut self, bytes: u64) -> Self {
        self.max_answer_bytes = bytes;
        self
    }

    /// Sets [`max_error_bytes`](Self::max_error_bytes).
    pub fn max_error_bytes(mut self, bytes: usize) -> Self {
        self.max_error_bytes = bytes;
        self
    }

    /// Sets [`max_pages`](Self::max_pages).
    pub fn max_pages(mut self, pages: Option<u32>) -> Self {
        self.max_pages = pages;
        self
    }

    /// Sets [`redirects`](Self::redirects).
    pub fn redirects(mut self, policy: RedirectPolicy) -> Self {
        self.redirects = policy;
        self
    }

    /// The limits on a body read into memory.
    pub(crate) fn answer(&self) -> AnswerLimits {
        AnswerLimits {
            max_bytes: self.max_answer_bytes,
            timeout: self.answer_timeout,
        }
    }

    /// A reqwest client builder with these timeouts and `redirects`.
    pub(crate) fn apply(
        &self,
        builder: reqwest::ClientBuilder,
        redirects: RedirectPolicy,
    ) -> reqwest::ClientBuilder {
        let mut builder = builder.redirect(redirect_policy(redirects));
        if let Some(t) = self.connect_timeout {
            builder = builder.connect_timeout(t);
        }
        // No reqwest read timeout (a timer reset at every read of every
        // call): the answer timeout bounds an answer read into memory as a
        // whole, and streamed bodies are watched for silence
        // ([`WatchedBody`]).
        builder
    }

    /// Waits for `answer` (a request's status and headers) within
    /// [`answer_timeout`](Self::answer_timeout); `label` names the request
    /// or the server in the error (made only when needed).
    pub(crate) fn head<T, F, L>(&self, label: L, answer: F) -> Head<F, L>
    where
        F: Future<Output = Result<T>>,
        L: FnOnce() -> String,
    {
        Head {
            answer,
            timer: self
                .answer_timeout
                .map(|after| (Box::pin(tokio::time::sleep(after)), after)),
            label: Some(label),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, or [`Error::Timeout`] once the answer timeout
    /// has passed (see [`Limits::head`]).
    ///
    /// A future of its own rather than an `async fn` around
    /// `tokio::time::timeout`: the timer is boxed and the request is not
    /// kept twice, so that every call's future (boxed itself for the
    /// generated clients) stays small enough for the allocator's fastest
    /// caches.
    pub(crate) struct Head<F, L> {
        #[pin]
        answer: F,
        timer: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
        label: Option<L>,
    }
}

impl<T, F, L> Future for Head<F, L>
where
    F: Future<Output = Result<T>>,
    L: FnOnce() -> String,
{
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.project();
        if let Poll::Ready(answer) = this.answer.poll(cx) {
            return Poll::Ready(answer);
        }
        if let Some((timer, after)) = this.timer {
            if timer.as_mut().poll(cx).is_ready() {
                let label = this.label.take().map(|l| l()).unwrap_or_default();
                return Poll::Ready(Err(Error::Timeout(format!(
                    "{label}: no answer within {after:?}"
                ))));
            }
        }
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// A response body that fails with `TimedOut` once `deadline` has
    /// passed, or when the server stays silent longer than the read
    /// timeout while it is read ([`Limits::read_timeout`]).
    pub(crate) struct WatchedBody<B, E> {
        #[pin]
        inner: B,
        deadline: Option<Pin<Box<tokio::time::Sleep>>>,
        // The read timeout, and the sleep that each frame's arrival resets.
        silence: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
        map_err: E,
    }
}

impl<B, E> WatchedBody<B, E> {
    /// Watches `inner`; `map_err` turns its errors into I/O errors.
    pub(crate) fn new(
        inner: B,
        deadline: Option<tokio::time::Instant>,
        read_timeout: Option<Duration>,
        map_err: E,
    ) -> Self {
        Self {
            inner,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            silence: read_timeout.map(|t| (t, Box::pin(tokio::time::sleep(t)))),
            map_err,
        }
    }
}

impl<B, E> http_body::Body for WatchedBody<B, E>
where
    B: http_body::Body<Data = Bytes>,
    E: Fn(B::Error) -> std::io::Error,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, std::io::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if let Some((after, sleep)) = this.silence.as_mut() {
                if let Some(next) = tokio::time::Instant::now().checked_add(*after) {
                    sleep.as_mut().reset(next);
                }
            }
            return Poll::Ready(frame.map(|f| f.map_err(&*this.map_err)));
        }
        let timed_out = |message: String| {
            Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                message,
            ))))
        };
        if let Some(sleep) = this.deadline.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                return timed_out("the answer did not arrive before the request's timeout".into());
            }
        }
        if let Some((after, sleep)) = this.silence.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                return timed_out(format!(
                    "the server sent nothing for {after:?} while the answer was read"
                ));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Sends `request` with `http` within `limits`; `server` names the server
/// in a timeout.
///
/// `streamed`: the answer's body goes to the caller unread (a stream, a
/// download, a generic call whose body is read later): its head must come
/// within the answer timeout, and its body is watched for silences longer
/// than the read timeout. That path is boxed, so that the future of every
/// call stays as small as reqwest's own. Otherwise the caller reads the
/// answer whole and bounds the whole call (the generated calls' sending,
/// [`RequestBuilder::send_json`](crate::RequestBuilder::send_json)): no
/// timer here.
pub(crate) fn send_within<'a>(
    http: &reqwest::Client,
    limits: &'a Limits,
    server: &'a str,
    request: reqwest::Request,
    streamed: bool,
) -> impl Future<Output = Result<reqwest::Response>> + Send + 'a {
    let sent = http.execute(request).map_err(Error::from_reqwest);
    if !streamed || (limits.answer_timeout.is_none() && limits.read_timeout.is_none()) {
        return Either::Left(sent);
    }
    let watched: safeguard_api::BoxFuture<'a, _> = Box::pin(async move {
        let response = limits.head(|| server.to_owned(), sent).await?;
        Ok(watch_silence(response, limits.read_timeout))
    });
    Either::Right(watched)
}

/// `response` with its body watched for silences longer than `read_timeout`.
pub(crate) fn watch_silence(
    response: reqwest::Response,
    read_timeout: Option<Duration>,
) -> reqwest::Response {
    let Some(after) = read_timeout else {
        return response;
    };
    let url = response.url().clone();
    let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
    let body = reqwest::Body::wrap(WatchedBody::new(
        body,
        None,
        Some(after),
        std::io::Error::other,
    ));
    answer_at(url, parts, body)
}

/// A reqwest response from its parts, keeping the URL it answers (which
/// reqwest reads from the parts' extensions).
pub(crate) fn answer_at(
    url: url::Url,
    mut parts: http::response::Parts,
    body: reqwest::Body,
) -> reqwest::Response {
    use reqwest::ResponseBuilderExt;
    if let Ok(with_url) = http::Response::builder().url(url).body(()) {
        parts.extensions.extend(with_url.into_parts().0.extensions);
    }
    reqwest::Response::from(http::Response::from_parts(parts, body))
}

/// A redirect that was not followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectRefused {
    /// The redirect's status (301, 302, 303, 307, 308).
    pub status: StatusCode,
    /// Where it pointed: `scheme://host:port` (no path or query, which may
    /// carry values the caller would not want in a message).
    pub to: String,
    /// Why it was not followed.
    pub reason: &'static str,
}

impl fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} to {} not followed: {}",
            self.status.as_u16(),
            self.to,
            self.reason
        )
    }
}

impl std::error::Error for RedirectRefused {}

/// `scheme://host:port` of a URL.
pub(crate) fn origin(url: &url::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => url.scheme().to_owned(),
    }
}

fn same_origin(a: &url::Url, b: &url::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Decides one redirect: `None` to follow it, or why not.
fn judge(
    policy: RedirectPolicy,
    status: StatusCode,
    to: &url::Url,
    previous: &[url::Url],
) -> Option<RedirectRefused> {
    let refuse = |reason| {
        Some(RedirectRefused {
            status,
            to: origin(to),
            reason,
        })
    };
    let Some(from) = previous.last() else {
        return refuse("no request to redirect");
    };
    match policy {
        RedirectPolicy::Never => refuse("this request follows no redirect"),
        RedirectPolicy::SameOrigin if from.scheme() == "https" && to.scheme() != "https" => {
            refuse("a redirect from https to another scheme is never followed")
        }
        RedirectPolicy::SameOrigin if !same_origin(from, to) => {
            refuse("only redirects to the same scheme, host and port are followed")
        }
        RedirectPolicy::SameOrigin if previous.len() > MAX_REDIRECTS => {
            refuse("too many redirects in a row")
        }
        RedirectPolicy::SameOrigin => None,
    }
}

/// The reqwest policy for `policy`.
fn redirect_policy(policy: RedirectPolicy) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        match judge(policy, attempt.status(), attempt.url(), attempt.previous()) {
            None => attempt.follow(),
            Some(refused) => attempt.error(refused),
        }
    })
}

/// The redirect an answer of a transport that follows none (the certificate
/// transport) stands for, if it is one: a 3xx with a `Location`.
pub(crate) fn unfollowed_redirect(response: &reqwest::Response) -> Option<RedirectRefused> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(reqwest::header::LOCATION)?;
    let to = location
        .to_str()
        .ok()
        .and_then(|l| response.url().join(l).ok())
        .map(|u| origin(&u))
        .unwrap_or_else(|| "an unreadable location".into());
    Some(RedirectRefused {
        status: response.status(),
        to,
        reason: "this request follows no redirect",
    })
}

/// The body of a success answer within `limits`; an error answer becomes
/// the matching [`Error`] (its body read up to
/// [`max_error_bytes`](Limits::max_error_bytes)).
#[cfg_attr(not(feature = "a2a"), allow(dead_code))]
pub(crate) async fn read_success(
    response: reqwest::Response,
    label: &str,
    limits: &Limits,
) -> Result<Bytes> {
    if !response.status().is_success() {
        return Err(read_error(response, label.to_owned(), limits).await);
    }
    read_body(response, label, limits).await.map(|(_, b)| b)
}

/// The status and body of an answer of any status, read within `limits`.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    label: &str,
    limits: &Limits,
) -> Result<(StatusCode, Bytes)> {
    let status = response.status();
    match read_bounded(&mut response, limits.answer()).await {
        Ok(body) => Ok((status, body)),
        Err(ReadError::Body(e)) => Err(Error::from_reqwest(e)),
        Err(ReadError::Refused(failure)) => Err(refused(failure, label)),
    }
}

/// The error an error answer stands for, its body kept up to
/// [`max_error_bytes`](Limits::max_error_bytes).
pub(crate) async fn read_error(
    response: reqwest::Response,
    label: String,
    limits: &Limits,
) -> Error {
    let status = response.status();
    let body = read_prefix(response, limits.max_error_bytes).await;
    Error::from_api(ApiError::from_parts(status, label, body))
}

/// The error for a body refused by the limits.
pub(crate) fn refused(failure: ReadFailure, label: &str) -> Error {
    match failure {
        ReadFailure::TooLarge { limit, announced } => Error::TooLarge {
            request: label.to_owned(),
            limit,
            announced,
        },
        ReadFailure::TimedOut { after } => Error::Timeout(format!(
            "{label}: the answer's body did not arrive within {after:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        s.parse().expect("url")
    }

    #[test]
    fn same_origin_redirects_are_followed_and_others_refused() {
        let from = [url("https://sg.example/service/core/v4/Users")];
        let follow = |to: &str| {
            judge(
                RedirectPolicy::SameOrigin,
                StatusCode::FOUND,
                &url(to),
                &from,
            )
        };
        assert_eq!(follow("https://sg.example/service/core/v4/Users/"), None);
        assert_eq!(follow("https://sg.example:443/x"), None);
        let other = follow("https://evil.example/x?token=abc").expect("refused");
        assert_eq!(other.to, "https://evil.example:443");
        assert_eq!(other.status, StatusCode::FOUND);
        assert!(follow("https://sg.example:8443/x").is_some());
        assert!(
            follow("http://sg.example/x").is_some(),
            "never down to http"
        );
        assert!(follow("http://sg.example:443/x").is_some());
    }

    #[test]
    fn the_never_policy_refuses_even_the_same_origin() {
        let from = [url("https://sg.example/RSTS/oauth2/token")];
        let refused = judge(
            RedirectPolicy::Never,
            StatusCode::TEMPORARY_REDIRECT,
            &url("https://sg.example/RSTS/oauth2/token2"),
            &from,
        )
        .expect("refused");
        assert_eq!(refused.status.as_u16(), 307);
        assert!(refused.to_string().contains("https://sg.example:443"));
    }

    #[test]
    fn a_redirect_loop_ends() {
        let chain: Vec<_> = (0..=MAX_REDIRECTS)
            .map(|i| url(&format!("https://sg.example/{i}")))
            .collect();
        assert!(judge(
            RedirectPolicy::SameOrigin,
            StatusCode::FOUND,
            &url("https://sg.example/next"),
            &chain
        )
        .is_some());
    }

    #[test]
    fn a_redirect_answer_of_the_certificate_transport_names_its_target() {
        let answer = |status: u16, location: Option<&str>| {
            let mut b = http::Response::builder().status(status);
            if let Some(l) = location {
                b = b.header("location", l);
            }
            reqwest::Response::from(b.body("").expect("response"))
        };
        let r = unfollowed_redirect(&answer(307, Some("https://other.example:8443/a?key=1")))
            .expect("a redirect");
        assert_eq!(r.to, "https://other.example:8443");
        assert!(unfollowed_redirect(&answer(304, None)).is_none());
        assert!(unfollowed_redirect(&answer(200, Some("https://x/"))).is_none());
    }
}
