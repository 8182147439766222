//! The generic verbs' requests ([`RequestBuilder`]) and answers
//! ([`ApiResponse`]).

use std::fmt;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::call_span::CallSpan;
use crate::error::{DecodeError, Error, Result};
use crate::limits::{self, Limits};
use crate::transport::request_label;

use super::SafeguardClient;

/// A request being built by the generic verbs.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: SafeguardClient,
    method: Method,
    url: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<reqwest::Body>,
    error: Option<Error>,
    /// Sent without the token and without signing in.
    anonymous: bool,
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RequestBuilder {
    /// A request of `client` with no query, header or body yet.
    pub(super) fn new(client: SafeguardClient, method: Method, url: String) -> Self {
        Self {
            client,
            method,
            url,
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            error: None,
            anonymous: false,
        }
    }

    /// Sends without the token and without signing in (the management
    /// service is anonymous).
    pub(super) fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Adds query parameters (anything that serializes to pairs:
    /// `&[("filter", "Disabled eq false")]`, a map, a struct).
    pub fn query<Q: Serialize + ?Sized>(mut self, query: &Q) -> Result<Self> {
        let encoded = serde_urlencoded::to_string(query)
            .map_err(|e| Error::Config(format!("query parameters: {e}")))?;
        self.query
            .extend(url::form_urlencoded::parse(encoded.as_bytes()).into_owned());
        Ok(self)
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Adds a header from strings; an invalid one fails at `send`.
    pub fn header_str(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.insert(n, v);
            }
            _ => self.error = Some(Error::Config(format!("invalid header {name:?}"))),
        }
        self
    }

    /// A JSON body.
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                self.body = Some(bytes.into());
            }
            Err(e) => self.error = Some(Error::Config(format!("cannot encode the body: {e}"))),
        }
        self
    }

    /// A raw body (set `Content-Type` with [`header_str`](Self::header_str)).
    pub fn raw_body(mut self, body: impl Into<reqwest::Body>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn build(self) -> Result<(SafeguardClient, reqwest::Request, bool)> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut url = url::Url::parse(&self.url)
            .map_err(|e| Error::Config(format!("bad URL {}: {e}", self.url)))?;
        if !self.query.is_empty() {
            url.query_pairs_mut().extend_pairs(self.query.iter());
        }
        let mut request = reqwest::Request::new(self.method, url);
        *request.headers_mut() = self.headers;
        request
            .headers_mut()
            .entry(reqwest::header::ACCEPT)
            .or_insert(HeaderValue::from_static("application/json"));
        *request.body_mut() = self.body;
        Ok((self.client, request, self.anonymous))
    }

    /// Sends and returns the answer whatever its status.
    pub async fn send_raw(self) -> Result<ApiResponse> {
        let (client, request, anonymous) = self.build()?;
        let label = request_label(&request);
        let call = CallSpan::for_url(request.method(), request.url());
        let response = call
            .run(client.session.send_as(request, true, anonymous), |r| {
                Some(r.status().as_u16())
            })
            .await?;
        Ok(ApiResponse {
            response,
            label,
            limits: client.session.limits,
        })
    }

    /// Sends; an error answer becomes the matching [`Error`] (its body
    /// read up to [`Limits::max_error_bytes`]).
    pub async fn send(self) -> Result<ApiResponse> {
        let response = self.send_raw().await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(response.into_error().await)
        }
    }

    /// Sends and decodes a JSON answer, the whole answer within
    /// [`Limits::answer_timeout`].
    pub async fn send_json<T: DeserializeOwned>(self) -> Result<T> {
        let (client, request, anonymous) = self.build()?;
        let label = request_label(&request);
        let span = CallSpan::for_url(request.method(), request.url());
        let limits = &client.session.limits;
        let call = async {
            let response = client.session.send_as(request, false, anonymous).await?;
            span.status(response.status().as_u16());
            if !response.status().is_success() {
                return Err(limits::read_error(response, label.clone(), limits).await);
            }
            // The answer timeout around the whole call covers the body.
            let body_limits = limits.answer_timeout(None);
            let (status, body) = limits::read_body(response, &label, &body_limits).await?;
            serde_json::from_slice(&body)
                .map_err(|e| Error::Decode(DecodeError::new(Some(status), e, &body)))
        };
        span.run(limits.head(|| label.clone(), call), |_| None)
            .await
    }
}

/// `response` when it is a success, otherwise the error it stands for.
pub(super) async fn check(
    response: reqwest::Response,
    limits: &Limits,
) -> Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let label = response.url().path().to_owned();
    Err(limits::read_error(response, label, limits).await)
}

/// An answer of the appliance, body unread. Its body is read into memory
/// within the client's [`Limits`] ([`json`](Self::json), [`text`](Self::text),
/// [`bytes`](Self::bytes)) or streamed without a size limit
/// ([`bytes_stream`](Self::bytes_stream)).
#[derive(Debug)]
pub struct ApiResponse {
    response: reqwest::Response,
    label: String,
    limits: Limits,
}

impl ApiResponse {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The body's length, when announced.
    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The body decoded from JSON.
    pub async fn json<T: DeserializeOwned>(self) -> Result<T> {
        let (status, body) = limits::read_body(self.response, &self.label, &self.limits).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Error::Decode(DecodeError::new(Some(status), e, &body)))
    }

    /// The body as text (invalid UTF-8 replaced).
    pub async fn text(self) -> Result<String> {
        let (_, body) = limits::read_body(self.response, &self.label, &self.limits).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Bytes> {
        limits::read_body(self.response, &self.label, &self.limits)
            .await
            .map(|(_, body)| body)
    }

    /// The body as a stream of chunks, never held whole.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        self.response.bytes_stream().map_err(Error::from_reqwest)
    }

    /// The error this answer stands for (reads the body up to
    /// [`Limits::max_error_bytes`]).
    pub async fn into_error(self) -> Error {
        limits::read_error(self.response, self.label, &self.limits).await
    }

    /// The underlying `reqwest` response.
    pub fn into_inner(self) -> reqwest::Response {
        self.response
    }
}
