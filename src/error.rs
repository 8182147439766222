//! The SDK's one error type, and what each layer reports into it.
//!
//! Every fallible call of the SDK returns [`Result<T>`](Result). A caller
//! matches on [`Error`] by what happened (authentication, authorization, not
//! found, another API error, an STS refusal, transport, TLS, timeout, decode,
//! configuration), never by parsing text. No variant prints a secret: bodies
//! are kept but only their length shows in `Debug`.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;
use serde::Deserialize;

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the SDK. Cheap to clone (an event
/// listener reports the error that stopped it to its caller and in its
/// state).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The appliance refused the credentials or the token (HTTP 401).
    #[error("authentication failed: {0}")]
    Authentication(Box<ApiError>),
    /// The caller may not do this (HTTP 403; also a bad A2A API key).
    #[error("not authorized: {0}")]
    Authorization(Box<ApiError>),
    /// The resource does not exist (HTTP 404).
    #[error("not found: {0}")]
    NotFound(Box<ApiError>),
    /// Any other error answer of the appliance.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The secure token service (rSTS) refused a sign-in step.
    #[error("sign-in refused by the STS: {0}")]
    Sts(StsError),
    /// The sign-in strategy cannot get a new token by itself.
    #[error("the {strategy} sign-in cannot be refreshed: {reason}")]
    CannotRefresh {
        /// The strategy (`token`, `anonymous`, ...).
        strategy: &'static str,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// The client was signed out ([`logout`](crate::SafeguardClient::logout)):
    /// it signs in again only when asked to, not by itself in the middle of
    /// a call (which, for a device-code or browser sign-in, would prompt a
    /// person).
    #[error("signed out: call login() to sign in again")]
    SignedOut,
    /// A device-code or browser sign-in was cancelled, denied or expired.
    #[error("sign-in did not complete: {0}")]
    SignInIncomplete(String),
    /// The TLS handshake or certificate verification failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The request or the sign-in took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The HTTP proxy the client goes through (see [`crate::proxy`]) could
    /// not be reached or refused to open a tunnel to the appliance: `407`
    /// (it wants credentials, or refused the ones given), `403`, `502`, ...
    /// The message names the proxy and the target, never the credentials.
    #[error("proxy: {message}")]
    Proxy {
        /// The proxy's answer to the `CONNECT`, when it answered one. The
        /// SPP and SPS REST calls (over reqwest) report `407` only; their
        /// other refusals carry no status.
        status: Option<u16>,
        /// What happened.
        message: String,
    },
    /// The connection failed or broke (DNS, refused, reset, closed), over
    /// whichever connection carried the request.
    #[error("transport: {0}")]
    Transport(#[source] TransportError),
    /// A response could not be decoded into the expected type.
    #[error("{0}")]
    Decode(DecodeError),
    /// An answer's body was larger than the client reads into memory
    /// ([`Limits::max_answer_bytes`](crate::limits::Limits::max_answer_bytes)).
    #[error(
        "the answer to {request} is larger than the limit of {limit} bytes{}; raise `max_answer_bytes` in the client's `Limits`, or stream it",
        announced.map(|a| format!(" (it announced {a})")).unwrap_or_default()
    )]
    TooLarge {
        /// `METHOD /path` of the request.
        request: String,
        /// The limit in force, in bytes.
        limit: u64,
        /// The `Content-Length` the server announced, if any.
        announced: Option<u64>,
    },
    /// The server answered with a redirect that was not followed (see
    /// [`limits`](crate::limits) for the policy).
    #[error("redirect refused: {0}")]
    Redirect(crate::limits::RedirectRefused),
    /// A listing did not end as a listing should (a repeated page, a cycle,
    /// more pages than allowed).
    #[error("paging stopped: {0}")]
    Paging(crate::paging::PagingError),
    /// The client was configured inconsistently (bad URL, unreadable
    /// certificate file, missing option).
    #[error("configuration: {0}")]
    Config(String),
    /// An event listener failed (SignalR protocol, websocket, dead
    /// connection, closed by the hub).
    #[error("events: {0}")]
    Events(#[from] crate::events::EventsError),
    /// What is specific to Safeguard for Privileged Sessions: its error
    /// answers (by code) and its transaction and search rules. The other
    /// failures of SPS calls are the shared variants.
    #[error("SPS: {0}")]
    Sps(#[from] crate::sps::SpsError),
    /// No member of the cluster could take the request within the
    /// failover timeout (see [`crate::cluster`]): none answered, or, for
    /// a configuration write, none was the primary.
    #[error("no cluster member could take {request}: {reason}")]
    ClusterUnavailable {
        /// `METHOD /path` of the request.
        request: String,
        /// Why.
        reason: &'static str,
    },
    /// A local file could not be read or written (downloads, uploads).
    #[error("I/O: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// A blocking facade ([`crate::blocking::SafeguardClient`],
    /// [`crate::a2a::blocking::A2aContext`],
    /// [`crate::events::blocking::BlockingEventListener`],
    /// [`crate::sps::blocking::SpsClient`]) was called on a thread where a
    /// tokio runtime is current (an async task, `block_on`, or
    /// `spawn_blocking`). Blocking there would stall (or panic) that runtime;
    /// nothing was sent. `async_client` names the async client to use there.
    #[error(
        "a blocking client was called inside an async runtime, where it would block the \
         runtime's thread; use the async client ({async_client}) there, or call from a thread \
         without a runtime"
    )]
    BlockingInsideRuntime {
        /// The async client to use instead, e.g. `safeguard_sdk::SafeguardClient`.
        async_client: &'static str,
    },
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

/// A connection that could not be opened or broke, from whichever HTTP
/// stack carried it (the bearer connections or the client-certificate
/// ones); its source is that stack's own error.
#[derive(Clone, Debug)]
pub struct TransportError {
    source: Arc<dyn std::error::Error + Send + Sync>,
    connect: bool,
}

impl TransportError {
    /// The connection could not be opened (DNS, refused, unreachable): the
    /// request never reached the server.
    pub fn is_connect(&self) -> bool {
        self.connect
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Self {
        Self {
            connect: e.is_connect(),
            source: Arc::new(e),
        }
    }

    /// An I/O failure of a connection; `connect`: while opening it.
    pub(crate) fn from_io(e: std::io::Error, connect: bool) -> Self {
        Self {
            source: Arc::new(e),
            connect,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

impl Error {
    /// The HTTP status the appliance answered with, when the error is an answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Authentication(e)
            | Error::Authorization(e)
            | Error::NotFound(e)
            | Error::Api(e) => Some(e.status),
            Error::Sts(e) => Some(e.status),
            Error::Sps(e) => e.status(),
            Error::Decode(e) => e.status,
            _ => None,
        }
    }

    /// The appliance's error details, for answers of the Safeguard API.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Authentication(e)
            | Error::Authorization(e)
            | Error::NotFound(e)
            | Error::Api(e) => Some(e.as_ref()),
            _ => None,
        }
    }

    /// The SPS-specific part of the error, for failures of SPS calls.
    pub fn sps(&self) -> Option<&crate::sps::SpsError> {
        match self {
            Error::Sps(e) => Some(e),
            _ => None,
        }
    }

    /// The SPS error answer (status, code, message, details, meta).
    pub fn sps_error(&self) -> Option<&crate::sps::SpsApiError> {
        self.sps().and_then(crate::sps::SpsError::api_error)
    }

    /// The SPS error code (`error.type`, e.g. `MidAirCollision`), when the
    /// error is an SPS answer that has one.
    pub fn sps_code(&self) -> Option<&str> {
        self.sps().and_then(crate::sps::SpsError::code)
    }

    /// An SPS answer of status 409 (see [`SpsError::is_conflict`](crate::sps::SpsError::is_conflict)).
    pub fn is_conflict(&self) -> bool {
        self.sps().is_some_and(crate::sps::SpsError::is_conflict)
    }

    /// Worth redoing: a timeout, a failure to connect, no cluster member, an answer 502/503/504
    /// (of the appliance or of a proxy), a proxy that cannot be reached, or an SPS answer that says so (see
    /// [`SpsError::is_retryable`](crate::sps::SpsError::is_retryable)).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout(_) | Error::ClusterUnavailable { .. } => true,
            Error::Proxy { status, .. } => matches!(status, None | Some(502..=504)),
            Error::Transport(e) => e.is_connect(),
            Error::Api(e) => matches!(e.status.as_u16(), 502..=504),
            Error::Sps(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Builds the variant that fits an error answer of the Safeguard API.
    pub(crate) fn from_api(error: ApiError) -> Self {
        let error = Box::new(error);
        match error.status {
            StatusCode::UNAUTHORIZED => Error::Authentication(error),
            StatusCode::FORBIDDEN => Error::Authorization(error),
            StatusCode::NOT_FOUND => Error::NotFound(error),
            _ => Error::Api(error),
        }
    }

    /// Classifies a reqwest failure: a refused redirect, timeout, TLS, or
    /// transport. A connection that breaks while a body is read is a
    /// transport failure, never a decoding one (the SDK decodes bodies
    /// itself, after they arrived).
    pub(crate) fn from_reqwest(error: reqwest::Error) -> Self {
        if let Some(refused) = find_in_chain::<crate::limits::RedirectRefused>(&error) {
            return Error::Redirect(refused.clone());
        }
        if error.is_timeout() {
            return Error::Timeout(error_chain(&error));
        }
        if let Some(proxy) = crate::proxy::from_reqwest_tunnel(&error) {
            return proxy;
        }
        if is_tls_failure(&error) {
            return Error::Tls(error_chain(&error));
        }
        Error::Transport(TransportError::from_reqwest(error))
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        Error::from_reqwest(e)
    }
}

/// `a: b: c` over an error's source chain, deduplicated.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The first error of type `T` in `e`'s source chain.
fn find_in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some()
            || err.downcast_ref::<openssl::ssl::Error>().is_some()
            || err.downcast_ref::<openssl::error::ErrorStack>().is_some()
        {
            return true;
        }
        // hyper and rustls wrap the TLS error in (possibly nested) io::Errors
        // whose `source()` skips the payload.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_tls_failure(inner) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// An error answer of the Safeguard API: the HTTP status, the appliance's
/// `Code` and `Message` when the body carries them, and the raw body.
#[derive(Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The Safeguard error code (e.g. 60519), when the body has one.
    pub code: Option<i64>,
    /// The Safeguard error message, when the body has one.
    pub message: Option<String>,
    /// Per-field validation messages (`ModelState`), when present.
    pub model_state: Option<serde_json::Value>,
    /// `METHOD /path` of the request (no query string, no host).
    pub request: String,
    /// The raw body.
    pub body: Bytes,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(rename = "Code")]
    code: Option<i64>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "ModelState")]
    model_state: Option<serde_json::Value>,
}

impl ApiError {
    /// Reads an error answer: JSON `{Code, Message, ModelState}` when the body
    /// has it, otherwise the status alone (a bodiless 404 keeps its status).
    pub fn from_parts(status: StatusCode, request: String, body: Bytes) -> Self {
        let parsed: Option<ApiErrorBody> = serde_json::from_slice(&body).ok();
        let (code, message, model_state) = match parsed {
            Some(b) => (b.code, b.message, b.model_state),
            None => (None, None, None),
        };
        Self {
            status,
            code,
            message,
            model_state,
            request,
            body,
        }
    }

    /// The body as text (lossy), for logging by the caller.
    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.request.is_empty() {
            write!(f, " from {}", self.request)?;
        }
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => write!(f, ": {c} {m}"),
            (None, Some(m)) => write!(f, ": {m}"),
            (Some(c), None) => write!(f, ": code {c}"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("request", &self.request)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A refusal of the secure token service: OAuth `error` and
/// `error_description`, or the text of a non-JSON answer.
#[derive(Clone, Debug)]
pub struct StsError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The OAuth error (`invalid_grant`, `unauthorized_client`, ...), or
    /// `http_<status>` when the answer was not OAuth JSON.
    pub error: String,
    /// The human description.
    pub description: Option<String>,
}

#[derive(Deserialize)]
struct StsErrorBody {
    error: String,
    error_description: Option<String>,
}

impl StsError {
    /// Reads an STS error answer.
    pub fn from_parts(status: StatusCode, body: &[u8]) -> Self {
        if let Ok(b) = serde_json::from_slice::<StsErrorBody>(body) {
            return Self {
                status,
                error: b.error,
                description: b.error_description,
            };
        }
        if let Ok(b) = serde_json::from_slice::<ApiErrorBody>(body) {
            if b.message.is_some() {
                return Self {
                    status,
                    error: b
                        .code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| format!("http_{}", status.as_u16())),
                    description: b.message,
                };
            }
        }
        let text = String::from_utf8_lossy(body);
        let description = html_text(&text);
        Self {
            status,
            error: format!("http_{}", status.as_u16()),
            description: (!description.is_empty()).then_some(description),
        }
    }
}

/// The visible text of an HTML (or plain) answer, squeezed to one line.
fn html_text(text: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let squeezed: Vec<&str> = out.split_whitespace().collect();
    let mut line = squeezed.join(" ");
    if line.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|i| line.is_char_boundary(*i))
            .unwrap_or(0);
        line.truncate(cut);
        line.push('…');
    }
    line
}

impl fmt::Display for StsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.error, self.status.as_u16())?;
        if let Some(d) = &self.description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// A response that did not decode into the expected type.
#[derive(Clone, Debug)]
pub struct DecodeError {
    /// The HTTP status of the response, when known.
    pub status: Option<StatusCode>,
    /// What the decoder said.
    pub message: String,
    /// The first bytes of the body (up to 200 characters).
    pub body_prefix: String,
}

impl DecodeError {
    pub(crate) fn new(status: Option<StatusCode>, error: impl fmt::Display, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let cut = (0..=text.len().min(200))
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        Self {
            status,
            message: error.to_string(),
            body_prefix: text[..cut].to_owned(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode the response")?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {})", s.as_u16())?;
        }
        write!(f, ": {}", self.message)
    }
}

/// An error answer read by the request hook, kept on the response.
#[derive(Clone)]
pub(crate) struct CarriedApiError(pub(crate) ApiError);

/// Turns a generated client's error into the SDK's.
impl From<progenitor_client::Error<()>> for Error {
    fn from(e: progenitor_client::Error<()>) -> Self {
        use progenitor_client::Error as P;
        match e {
            P::InvalidRequest(m) => Error::Config(format!("invalid request: {m}")),
            P::CommunicationError(e) | P::ResponseBodyError(e) | P::InvalidUpgrade(e) => {
                Error::from_reqwest(e)
            }
            P::ErrorResponse(rv) => Error::from_api(ApiError::from_parts(
                rv.status(),
                String::new(),
                Bytes::new(),
            )),
            P::InvalidResponsePayload(body, e) => Error::Decode(DecodeError::new(None, e, &body)),
            P::UnexpectedResponse(response) => {
                if let Some(CarriedApiError(api)) = response.extensions().get::<CarriedApiError>() {
                    return Error::from_api(api.clone());
                }
                Error::from_api(ApiError::from_parts(
                    response.status(),
                    response.url().path().to_owned(),
                    Bytes::new(),
                ))
            }
            P::Custom(m) => Error::Config(m),
        }
    }
}

/// Turns a generated call's failure into the SDK's: the executor's own
/// failure is the SDK error it was.
impl From<safeguard_api::CallError<()>> for Error {
    fn from(e: safeguard_api::CallError<()>) -> Self {
        use safeguard_api::CallError as C;
        match e {
            C::Call(e) => e.into(),
            C::Limit { failure, path } => {
                crate::limits::refused(failure, path.as_deref().unwrap_or("the call"))
            }
            C::Exec(e) => match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => match e.downcast::<reqwest::Error>() {
                    Ok(e) => Error::from_reqwest(*e),
                    Err(e) => Error::Config(format!("the request was not sent: {e}")),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_reads_code_and_message_and_keeps_status_without_body() {
        let e = ApiError::from_parts(
            StatusCode::UNAUTHORIZED,
            "GET /service/core/v4/Me".into(),
            Bytes::from_static(
                br#"{"Code":60519,"Message":"Invalid STS access_token.","ModelState":null}"#,
            ),
        );
        assert_eq!(e.code, Some(60519));
        let err = Error::from_api(e);
        assert!(matches!(err, Error::Authentication(_)));
        assert_eq!(
            err.to_string(),
            "authentication failed: HTTP 401 Unauthorized from GET /service/core/v4/Me: 60519 Invalid STS access_token."
        );
        let bare = Error::from_api(ApiError::from_parts(
            StatusCode::NOT_FOUND,
            String::new(),
            Bytes::new(),
        ));
        assert!(matches!(bare, Error::NotFound(_)));
        assert_eq!(bare.status(), Some(StatusCode::NOT_FOUND));
    }

    #[test]
    fn sts_error_reads_oauth_json_and_html() {
        let e = StsError::from_parts(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant","error_description":"bad password"}"#,
        );
        assert_eq!(e.error, "invalid_grant");
        assert_eq!(e.to_string(), "invalid_grant (HTTP 400): bad password");
        let html = StsError::from_parts(
            StatusCode::BAD_REQUEST,
            b"<html><body><h1>Error</h1><p>The device code grant type is not allowed.</p></body></html>",
        );
        assert_eq!(html.error, "http_400");
        assert_eq!(
            html.description.as_deref(),
            Some("Error The device code grant type is not allowed.")
        );
    }

    proptest::proptest! {
        /// No error body a server sends makes reading it panic, and what is
        /// kept of it for messages stays short.
        #[test]
        fn any_error_body_is_read_without_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..600), status in 400u16..600) {
            let status = StatusCode::from_u16(status).unwrap();
            let api = ApiError::from_parts(status, "GET /x".into(), Bytes::from(body.clone()));
            let _ = (api.to_string(), format!("{api:?}"), api.body_text());
            let sts = StsError::from_parts(status, &body);
            proptest::prop_assert!(sts.description.as_ref().is_none_or(|d| d.len() <= 300 + '…'.len_utf8()));
            let decode = DecodeError::new(Some(status), "bad", &body);
            proptest::prop_assert!(decode.body_prefix.len() <= 200);
        }

        /// The same for text: any characters, cut on character boundaries.
        #[test]
        fn any_error_text_is_read_without_panic(text in "\\PC{0,400}") {
            let sts = StsError::from_parts(StatusCode::BAD_REQUEST, text.as_bytes());
            let _ = sts.to_string();
            let decode = DecodeError::new(None, "bad", text.as_bytes());
            proptest::prop_assert!(text.starts_with(&decode.body_prefix));
        }
    }

    #[test]
    fn debug_of_api_error_hides_the_body() {
        let e = ApiError::from_parts(
            StatusCode::BAD_REQUEST,
            String::new(),
            Bytes::from_static(b"secret-ish"),
        );
        assert!(!format!("{e:?}").contains("secret-ish"));
    }
}
