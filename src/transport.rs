//! What every generated client holds: the way its requests are sent.
//!
//! A [`Transport`] wraps whatever adds authentication to a request and sends
//! it (a signed-in [`SafeguardClient`](crate::SafeguardClient) session, an
//! A2A context, or nothing for anonymous calls). Error answers are read here,
//! once, so that every generated call fails with the SDK's [`Error`](crate::Error)
//! carrying the status, the appliance's `Code` and `Message`, and the body.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::{ready, Either, Ready};
use futures::FutureExt;

use crate::call_span::{CallSpan, Generated};
use crate::error::{ApiError, CarriedApiError, Result};
use crate::limits::Limits;

/// A boxed, sendable future (the one the generated clients' seam uses).
pub(crate) use safeguard_api::BoxFuture;
use safeguard_api::ExecError;

/// What an executor answers a generated call: the answer, or its own failure.
type ExecAnswer = std::result::Result<reqwest::Response, ExecError>;

/// Sends one request with whatever authentication it needs.
pub(crate) trait Execute: Send + Sync + 'static {
    /// Sends `request`; an answer of any status is `Ok`.
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send;

    /// Sends `request`, whose answer is streamed to the caller (see
    /// [`safeguard_api::Exec::exec_stream`]); by default as [`execute`](Execute::execute).
    fn execute_stream(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        self.execute(request)
    }

    /// What it accepts from the server.
    fn limits(&self) -> &Limits;
}

/// Sends requests without authentication.
struct Anonymous(reqwest::Client, Limits);

impl Execute for Anonymous {
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        crate::limits::send_within(&self.0, &self.1, "the server", request, false)
    }

    fn execute_stream(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        crate::limits::send_within(&self.0, &self.1, "the server", request, true)
    }

    fn limits(&self) -> &Limits {
        &self.1
    }
}

/// The request path of the generated clients: authentication, then the
/// error answer read into an [`Error`](crate::Error).
#[derive(Clone)]
pub struct Transport {
    inner: safeguard_api::Inner,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    pub(crate) fn new<E: Execute>(exec: Arc<E>) -> Self {
        Self {
            inner: safeguard_api::Inner::new(ForGenerated(exec)),
        }
    }

    /// A transport that sends requests as they are, with no authentication,
    /// within the default [`Limits`] (configure `http`'s own timeouts and
    /// redirect policy; see [`crate::limits`]).
    pub fn anonymous(http: reqwest::Client) -> Self {
        Self::new(Arc::new(Anonymous(http, Limits::default())))
    }
}

/// An [`Execute`] as the generated clients' seam: one boxed future per
/// call (the seam is dynamic), with the executor's own future inside it.
struct ForGenerated<E>(Arc<E>);

impl<E: Execute> ForGenerated<E> {
    /// One generated call: `answer` is the executor's future for `request`.
    /// A combinator rather than an `async fn` taking the executor's future:
    /// an `async fn` keeps its argument and the future it awaits in separate
    /// slots, and this box would hold the executor's state twice
    /// (rust-lang/rust#62958).
    fn call<'a, Fut>(
        &'a self,
        request: reqwest::Request,
        answer: impl FnOnce(&'a E, reqwest::Request) -> Fut,
    ) -> BoxFuture<'a, ExecAnswer>
    where
        Fut: Future<Output = Result<reqwest::Response>> + Send + 'a,
    {
        let method = request.method().clone();
        let max_error_bytes = self.0.limits().max_error_bytes;
        let span = CallSpan::for_url(request.method(), request.url());
        Box::pin(Generated::new(
            answer(&self.0, request)
                .then(move |answer| for_generated(method, answer, max_error_bytes)),
            span,
        ))
    }
}

impl<E: Execute> safeguard_api::Exec for ForGenerated<E> {
    fn exec(&self, request: reqwest::Request) -> BoxFuture<'_, ExecAnswer> {
        self.call(request, |e, r| e.execute(r))
    }

    fn exec_stream(&self, request: reqwest::Request) -> BoxFuture<'_, ExecAnswer> {
        self.call(request, |e, r| e.execute_stream(r))
    }

    fn answer_limits(&self) -> safeguard_api::answer::AnswerLimits {
        self.0.limits().answer()
    }
}

/// What a generated call receives for an executor's answer. Success answers
/// pass through untouched (streamed); an error answer's body is read (error
/// bodies are small) and kept on the response so that the generated call's
/// error converts into [`Error`](crate::Error) with everything the appliance said; a
/// failure of the SDK itself (a refresh that could not sign in, a refused
/// redirect) is the call's `CallError::Exec`, the SDK's [`Error`](crate::Error) inside.
fn for_generated(
    method: reqwest::Method,
    answer: Result<reqwest::Response>,
    max_error_bytes: usize,
) -> Either<Ready<ExecAnswer>, BoxFuture<'static, ExecAnswer>> {
    Either::Left(ready(match answer {
        Ok(response) if response.status().is_success() => Ok(response),
        Ok(response) => return Either::Right(carry_api_error(method, response, max_error_bytes)),
        Err(e) => Err(Box::new(e)),
    }))
}

/// An error answer, its body read (up to `max_error_bytes`) into the
/// [`ApiError`] it carries. Boxed: reading a body makes a large future,
/// which every call's (boxed) future would otherwise hold for a path that
/// success answers never take.
fn carry_api_error(
    method: reqwest::Method,
    response: reqwest::Response,
    max_error_bytes: usize,
) -> BoxFuture<'static, ExecAnswer> {
    Box::pin(async move {
        let label = label(&method, response.url());
        let (mut rebuilt, body) = read_error_answer(response, max_error_bytes).await;
        let api = ApiError::from_parts(rebuilt.status(), label, body);
        rebuilt.extensions_mut().insert(CarriedApiError(api));
        Ok(reqwest::Response::from(rebuilt))
    })
}

/// An error answer with its body read (up to `max_bytes`; error bodies are
/// small): the body, and the answer rebuilt around it as it came (status,
/// version, headers, URL), for whoever reads it next.
pub(crate) async fn read_error_answer(
    response: reqwest::Response,
    max_bytes: usize,
) -> (http::Response<reqwest::Body>, bytes::Bytes) {
    use reqwest::ResponseBuilderExt;
    let status = response.status();
    let version = response.version();
    let url = response.url().clone();
    let headers = response.headers().clone();
    let body = safeguard_api::answer::read_prefix(response, max_bytes).await;
    // The builder only fails on a status or header it cannot parse, and
    // these are typed already; status and headers are set again after it.
    let mut rebuilt = http::Response::builder()
        .version(version)
        .url(url)
        .body(reqwest::Body::from(body.clone()))
        .unwrap_or_else(|_| http::Response::new(reqwest::Body::from(body.clone())));
    *rebuilt.status_mut() = status;
    *rebuilt.headers_mut() = headers;
    (rebuilt, body)
}

impl From<Transport> for safeguard_api::Inner {
    fn from(transport: Transport) -> Self {
        transport.inner
    }
}

/// `METHOD /path` of a request: no host, no query (which may carry values
/// the caller would not want in an error message).
pub(crate) fn request_label(request: &reqwest::Request) -> String {
    label(request.method(), request.url())
}

/// Whether a request may be sent twice with the effect of once (RFC 9110
/// section 9.2.2): what may be sent again after its connection broke.
pub(crate) fn is_idempotent(method: &reqwest::Method) -> bool {
    use reqwest::Method;
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// `METHOD /path` (see [`request_label`]).
fn label(method: &reqwest::Method, url: &reqwest::Url) -> String {
    format!("{method} {}", url.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use safeguard_api::Exec;

    /// An executor whose future is large, like a signed-in session's.
    struct Large;

    impl Execute for Large {
        async fn execute(&self, request: reqwest::Request) -> Result<reqwest::Response> {
            let padding = [0u8; 2048];
            tokio::task::yield_now().await;
            std::hint::black_box(&padding);
            drop(request);
            Err(Error::Config("not sent".into()))
        }

        fn limits(&self) -> &Limits {
            &Limits::DEFAULT
        }
    }

    fn request() -> reqwest::Request {
        reqwest::Request::new(
            reqwest::Method::GET,
            "https://sg.example/service/core/v4/Me".parse().unwrap(),
        )
    }

    #[test]
    fn idempotent_methods_are_those_of_rfc_9110() {
        use reqwest::Method;
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(is_idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m), "{m}");
        }
    }

    #[test]
    fn a_generated_call_boxes_its_executors_future_once() {
        let inner = std::mem::size_of_val(&Large.execute(request()));
        let boxed = std::mem::size_of_val(&*ForGenerated(Arc::new(Large)).exec(request()));
        assert!(
            boxed < inner + 256,
            "the boxed future ({boxed} B) holds more than one executor future ({inner} B)"
        );
    }

    #[tokio::test]
    async fn an_sdk_failure_is_the_calls_failure_not_an_answer() {
        let answer = ForGenerated(Arc::new(Large)).exec(request()).await;
        let failure = answer.expect_err("no made-up answer");
        let sdk = failure.downcast::<Error>().expect("the SDK's own error");
        assert!(matches!(*sdk, Error::Config(_)), "{sdk:?}");
    }
}
