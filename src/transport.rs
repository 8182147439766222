//! What every generated client holds: the way its requests are sent.
//!
//! A [`Transport`] wraps whatever adds authentication to a request and sends
//! it (a signed-in [`SafeguardClient`](crate::SafeguardClient) session, an
//! A2A context, or nothing for anonymous calls). Error answers are read here,
//! once, so that every generated call fails with the SDK's [`Error`]
//! carrying the status, the appliance's `Code` and `Message`, and the body.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::StatusCode;

use crate::error::{ApiError, CarriedApiError, CarriedError, Error, Result};

/// A boxed, sendable future (the one the generated clients' seam uses).
pub(crate) use safeguard_api::BoxFuture;

/// Sends one request with whatever authentication it needs.
pub(crate) trait Execute: Send + Sync + 'static {
    /// Sends `request`; an answer of any status is `Ok`.
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send;
}

/// Sends requests without authentication.
struct Anonymous(reqwest::Client);

impl Execute for Anonymous {
    async fn execute(&self, request: reqwest::Request) -> Result<reqwest::Response> {
        self.0.execute(request).await.map_err(Error::from_reqwest)
    }
}

/// The request path of the generated clients: authentication, then the
/// error answer read into an [`Error`].
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

    /// A transport that sends requests as they are, with no authentication.
    pub fn anonymous(http: reqwest::Client) -> Self {
        Self::new(Arc::new(Anonymous(http)))
    }
}

/// An [`Execute`] as the generated clients' seam: one boxed future per
/// call (the seam is dynamic), with the executor's own future inside it.
struct ForGenerated<E>(Arc<E>);

impl<E: Execute> safeguard_api::Exec for ForGenerated<E> {
    fn exec(&self, request: reqwest::Request) -> BoxFuture<'_, reqwest::Result<reqwest::Response>> {
        let method = request.method().clone();
        Box::pin(for_generated(method, self.0.execute(request)))
    }
}

/// What a generated call receives for an executor's answer. Success answers
/// pass through untouched (streamed); an error answer's body is read (error
/// bodies are small) and kept on the response so that the generated call's
/// error converts into [`Error`] with everything the appliance said; a
/// failure of the SDK itself (a refresh that could not sign in) travels the
/// same way.
async fn for_generated(
    method: reqwest::Method,
    answer: impl Future<Output = Result<reqwest::Response>>,
) -> reqwest::Result<reqwest::Response> {
    match answer.await {
        Ok(response) if response.status().is_success() => Ok(response),
        Ok(response) => {
            let label = label(&method, response.url());
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            let api = ApiError::from_parts(status, label, body.clone());
            let mut rebuilt = http::Response::new(reqwest::Body::from(body));
            *rebuilt.status_mut() = status;
            *rebuilt.headers_mut() = headers;
            rebuilt.extensions_mut().insert(CarriedApiError(api));
            Ok(reqwest::Response::from(rebuilt))
        }
        Err(Error::Transport(e)) => Err(e),
        Err(e) => {
            let status = e
                .status()
                .filter(|s| !s.is_success())
                .unwrap_or(StatusCode::from_u16(599).unwrap_or(StatusCode::BAD_GATEWAY));
            let mut rebuilt = http::Response::new(reqwest::Body::from(Bytes::new()));
            *rebuilt.status_mut() = status;
            rebuilt.extensions_mut().insert(CarriedError::new(e));
            Ok(reqwest::Response::from(rebuilt))
        }
    }
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

/// `METHOD /path` (see [`request_label`]).
fn label(method: &reqwest::Method, url: &reqwest::Url) -> String {
    format!("{method} {}", url.path())
}
