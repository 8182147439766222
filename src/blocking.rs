//! The same client for programs without an async runtime.
//!
//! [`SafeguardClient`] owns a small tokio runtime (one worker thread, see
//! below) and blocks on it for each call. Inside an async runtime every call
//! is refused with [`Error::BlockingInsideRuntime`] (blocking there would
//! stall that runtime's thread); use the async [`crate::SafeguardClient`]
//! there.
//!
//! Typed calls (the generated clients, whose `send()` is async) run through
//! [`SafeguardClient::call`], which hands the closure the async client and
//! blocks on the future it returns:
//!
//! ```no_run
//! use safeguard_sdk::{auth::PkceAuth, blocking::SafeguardClient, Service};
//! # fn run() -> safeguard_sdk::Result<()> {
//! let client = SafeguardClient::builder("safeguard.example.com")
//!     .auth(PkceAuth::new("local", "Admin", "Admin123"))
//!     .ca_file("ca.pem")?
//!     .build()?;
//! client.login()?;
//! let me: serde_json::Value = client.get(Service::Core, "Me").send()?.json()?;
//! // Typed calls: no runtime, no block_on; errors convert into the SDK's one Error.
//! let users = client.call(|c| c.core().users_get_users().limit(5).send())?;
//! # let _ = (me, users);
//! # Ok(()) }
//! ```
//!
//! Every blocking facade of the SDK ([`SafeguardClient`],
//! [`crate::a2a::blocking::A2aContext`],
//! [`crate::events::blocking::BlockingEventListener`],
//! [`crate::sps::blocking::SpsClient`]) runs the same way: a tokio
//! multi-thread runtime with one worker of its own, which keeps the
//! connections (and an event listener) running between calls, while each
//! call's future runs on the calling thread, so any number of threads may
//! call at once. Inside an async runtime (including a `spawn_blocking`
//! thread, which tokio does not tell apart) each refuses with
//! [`Error::BlockingInsideRuntime`] and never panics, also when the last
//! handle is dropped there. The SDK's own event handlers may call them.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::Auth;
use crate::error::{Error, Result};
use crate::tls::{TlsOptions, TlsVersion};
use crate::{client, Service, UploadSource};

pub(crate) mod runtime;

use runtime::BlockingRuntime;

/// What [`Error::BlockingInsideRuntime`] names for this facade.
const ASYNC_CLIENT: &str = "safeguard_sdk::SafeguardClient";

/// Builds a blocking [`SafeguardClient`].
#[derive(Debug)]
pub struct SafeguardClientBuilder(client::SafeguardClientBuilder);

macro_rules! forward {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        $(#[$doc])*
        pub fn $name(self, $($arg: $ty),*) -> Self {
            Self(self.0.$name($($arg),*))
        }
    )*};
}

impl SafeguardClientBuilder {
    forward! {
        /// How to sign in (default: anonymous).
        fn auth(auth: impl Into<Auth>);
        /// Whom to trust and which TLS versions to speak.
        fn tls(tls: TlsOptions);
        /// Accepts any server certificate. Dangerous: test appliances only.
        fn danger_accept_invalid_certs(yes: bool);
        /// The lowest TLS version.
        fn min_tls_version(v: TlsVersion);
        /// The highest TLS version.
        fn max_tls_version(v: TlsVersion);
        /// A limit on each whole request.
        fn timeout(t: Duration);
        /// A limit on establishing a connection.
        fn connect_timeout(t: Duration);
        /// What the client accepts from the appliance (see [`crate::limits`]).
        fn limits(limits: crate::limits::Limits);
        /// Which HTTP proxy every connection goes through (default: the
        /// environment's; see [`crate::proxy`]).
        fn proxy(proxy: crate::proxy::Proxy);
        /// The User-Agent header.
        fn user_agent(agent: impl Into<String>);
        /// The API version of the generic verbs.
        fn api_version(version: impl Into<String>);
        /// How early to refresh a nearly spent token.
        fn refresh_margin(margin: Duration);
        /// A client of the cluster the host belongs to (see [`crate::cluster`]).
        fn cluster(options: crate::cluster::ClusterOptions);
        /// Where the management service listens when not on the host.
        fn management_host(host: impl Into<String>);
    }

    /// Trusts the CA certificates of a PEM file.
    pub fn ca_file(self, path: impl AsRef<Path>) -> Result<Self> {
        self.0.ca_file(path).map(Self)
    }

    /// Trusts the CA certificates of a PEM bundle.
    pub fn ca_pem(self, pem: impl AsRef<[u8]>) -> Result<Self> {
        self.0.ca_pem(pem).map(Self)
    }

    /// Builds the client and its runtime (one worker thread, see the
    /// [module](self)).
    pub fn build(self) -> Result<SafeguardClient> {
        let runtime = BlockingRuntime::new("safeguard-sdk", ASYNC_CLIENT)?;
        let inner = {
            let _guard = runtime.enter();
            self.0.build()?
        };
        Ok(SafeguardClient {
            inner,
            runtime: Arc::new(runtime),
        })
    }
}

/// A blocking client of one appliance. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SafeguardClient {
    inner: client::SafeguardClient,
    runtime: Arc<BlockingRuntime>,
}

impl SafeguardClient {
    /// Starts building a client of the appliance at `host`.
    pub fn builder(host: impl Into<String>) -> SafeguardClientBuilder {
        SafeguardClientBuilder(client::SafeguardClient::builder(host))
    }

    /// The async client inside (shares this client's connections and
    /// token). Its futures run here with [`call`](Self::call) or
    /// [`block_on`](Self::block_on).
    pub fn inner(&self) -> &client::SafeguardClient {
        &self.inner
    }

    /// Runs a call of the async client on this client's runtime: `f` gets the
    /// async client and returns the call's future, typically a typed call of
    /// the generated clients. Its error, whatever the generated client calls
    /// it, becomes the SDK's [`Error`]. Inside an async runtime, refused with
    /// [`Error::BlockingInsideRuntime`] (`f` is not called).
    ///
    /// ```no_run
    /// # fn run(client: &safeguard_sdk::blocking::SafeguardClient) -> safeguard_sdk::Result<()> {
    /// let users = client.call(|c| c.core().users_get_users().filter("Disabled eq false").send())?;
    /// let me = client.call(|c| c.core().me_get_me().send())?;
    /// # let _ = (users, me);
    /// # Ok(()) }
    /// ```
    pub fn call<'a, T, E, F, Fut>(&'a self, f: F) -> Result<T>
    where
        F: FnOnce(&'a client::SafeguardClient) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Error>,
    {
        runtime::check_outside_runtime(ASYNC_CLIENT)?;
        self.runtime.run(f(&self.inner))
    }

    /// Runs any future that ends in a `Result` (of the async client, of a
    /// generated client, or your own) on this client's runtime; its error
    /// becomes the SDK's [`Error`]. Inside an async runtime, refused with
    /// [`Error::BlockingInsideRuntime`] (the future is dropped unpolled).
    pub fn block_on<T, E: Into<Error>>(
        &self,
        future: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        self.runtime.run(future)
    }

    /// Signs in now.
    pub fn login(&self) -> Result<()> {
        self.block_on(self.inner.login())
    }

    /// Signs in again now.
    pub fn refresh(&self) -> Result<()> {
        self.block_on(self.inner.refresh())
    }

    /// Signs out; until [`login`](Self::login), calls fail with
    /// [`Error::SignedOut`].
    pub fn logout(&self) -> Result<()> {
        self.block_on(self.inner.logout())
    }

    /// What the client knows of its cluster's members (empty for a client
    /// of one appliance).
    pub fn cluster_members(&self) -> Vec<crate::cluster::ClusterMember> {
        self.inner.cluster_members()
    }

    /// Checks the cluster's members now (a no-op for one appliance).
    pub fn refresh_cluster(&self) -> Result<()> {
        self.block_on(async {
            self.inner.refresh_cluster().await;
            Ok::<_, Error>(())
        })
    }

    /// Minutes the current token has left.
    pub fn token_lifetime_remaining(&self) -> Result<Option<u64>> {
        self.block_on(self.inner.token_lifetime_remaining())
    }

    /// A request of any method to any endpoint of a service.
    pub fn request(&self, method: Method, service: Service, path: &str) -> RequestBuilder {
        RequestBuilder {
            inner: self.inner.request(method, service, path),
            runtime: self.runtime.clone(),
        }
    }

    /// `GET` an endpoint.
    pub fn get(&self, service: Service, path: &str) -> RequestBuilder {
        self.request(Method::GET, service, path)
    }

    /// `POST` to an endpoint.
    pub fn post(&self, service: Service, path: &str) -> RequestBuilder {
        self.request(Method::POST, service, path)
    }

    /// `PUT` to an endpoint.
    pub fn put(&self, service: Service, path: &str) -> RequestBuilder {
        self.request(Method::PUT, service, path)
    }

    /// `DELETE` an endpoint.
    pub fn delete(&self, service: Service, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, service, path)
    }

    /// Streams a `GET` answer into a file; returns the bytes written.
    pub fn download(&self, service: Service, path: &str, to: impl AsRef<Path>) -> Result<u64> {
        self.block_on(self.inner.download(service, path, to, None))
    }

    /// Streams a file as the body of a request.
    pub fn upload_file(
        &self,
        method: Method,
        service: Service,
        path: &str,
        file: impl AsRef<Path>,
        content_type: &str,
    ) -> Result<Response> {
        let response = self.block_on(self.inner.upload(
            method,
            service,
            path,
            UploadSource::File(file.as_ref().to_owned()),
            content_type,
            None,
        ))?;
        Ok(Response {
            inner: response,
            runtime: self.runtime.clone(),
        })
    }

    /// Every item of a list endpoint, page by page, as an iterator.
    pub fn paginate<T: DeserializeOwned + Send + 'static>(
        &self,
        service: Service,
        path: &str,
        page_size: u32,
        query: Vec<(String, String)>,
    ) -> impl Iterator<Item = Result<T>> {
        let runtime = self.runtime.clone();
        let mut stream = Box::pin(self.inner.paginate::<T>(service, path, page_size, query));
        let mut refused = false;
        std::iter::from_fn(move || {
            if refused {
                return None;
            }
            runtime.block_on(stream.next()).unwrap_or_else(|e| {
                // Refused inside an async runtime: said once, then the end.
                refused = true;
                Some(Err(e))
            })
        })
    }
}

/// A blocking request being built.
#[must_use = "a request does nothing until it is sent"]
#[derive(Debug)]
pub struct RequestBuilder {
    inner: client::RequestBuilder,
    runtime: Arc<BlockingRuntime>,
}

impl RequestBuilder {
    /// Adds query parameters.
    pub fn query<Q: Serialize + ?Sized>(self, query: &Q) -> Result<Self> {
        Ok(Self {
            inner: self.inner.query(query)?,
            runtime: self.runtime,
        })
    }

    /// Adds a header.
    pub fn header(self, name: HeaderName, value: HeaderValue) -> Self {
        Self {
            inner: self.inner.header(name, value),
            runtime: self.runtime,
        }
    }

    /// Adds a header from strings.
    pub fn header_str(self, name: &str, value: &str) -> Self {
        Self {
            inner: self.inner.header_str(name, value),
            runtime: self.runtime,
        }
    }

    /// A JSON body.
    pub fn json<B: Serialize + ?Sized>(self, body: &B) -> Self {
        Self {
            inner: self.inner.json(body),
            runtime: self.runtime,
        }
    }

    /// A raw body.
    pub fn raw_body(self, body: impl Into<reqwest::Body>) -> Self {
        Self {
            inner: self.inner.raw_body(body),
            runtime: self.runtime,
        }
    }

    /// Sends; an error answer becomes the matching [`Error`].
    pub fn send(self) -> Result<Response> {
        let inner = self.runtime.run(self.inner.send())?;
        Ok(Response {
            inner,
            runtime: self.runtime,
        })
    }

    /// Sends and decodes a JSON answer.
    pub fn send_json<T: DeserializeOwned>(self) -> Result<T> {
        self.send()?.json()
    }
}

/// A blocking answer, body unread.
#[derive(Debug)]
pub struct Response {
    inner: crate::ApiResponse,
    runtime: Arc<BlockingRuntime>,
}

impl Response {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The body decoded from JSON.
    pub fn json<T: DeserializeOwned>(self) -> Result<T> {
        self.runtime.run(self.inner.json())
    }

    /// The body as text.
    pub fn text(self) -> Result<String> {
        self.runtime.run(self.inner.text())
    }

    /// The whole body.
    pub fn bytes(self) -> Result<Bytes> {
        self.runtime.run(self.inner.bytes())
    }
}
