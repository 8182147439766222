//! The A2A context for programs without an async runtime.
//!
//! [`A2aContext`] owns a small tokio runtime (one worker thread, like every
//! blocking facade: see [`crate::blocking`]) and blocks on it for each call;
//! connections are reused between calls like in the async context. Calling it
//! from inside an async runtime is refused with
//! [`Error::BlockingInsideRuntime`] (it would block that runtime's thread);
//! use [`super::A2aContext`] there.
//!
//! ```no_run
//! use safeguard_sdk::a2a::blocking::A2aContext;
//! use safeguard_sdk::ExposeSecret;
//! # fn run() -> safeguard_sdk::Result<()> {
//! let a2a = A2aContext::builder("safeguard.example.com")
//!     .pkcs12_file("a2a.pfx", "pfx-password")
//!     .build()?;
//! let password = a2a.retrieve_password("my-api-key")?;
//! println!("{} characters", password.expose_secret().len());
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::watch::{Credential, Current, Watched};
use super::{
    A2aRegistration, AccessRequest, ApiKey, ApiKeySecret, BrokeredAccessRequest, KeyFormat,
};
use crate::blocking::runtime::BlockingRuntime;
use crate::error::{Error, Result};
use crate::tls::{ClientIdentity, TlsOptions};

/// Builds a blocking [`A2aContext`]; from [`A2aContext::builder`].
#[derive(Debug)]
pub struct A2aContextBuilder(super::A2aContextBuilder);

impl A2aContextBuilder {
    /// Further members of the same cluster, tried in order after the first
    /// host when the member in use cannot serve a call (see
    /// [`super::A2aContextBuilder::members`]).
    pub fn members<I>(self, members: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self(self.0.members(members))
    }

    /// The client certificate and key.
    pub fn identity(self, identity: ClientIdentity) -> Self {
        Self(self.0.identity(identity))
    }

    /// The client certificate from PEM certificate and (unencrypted) key files.
    pub fn pem_files(self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self(self.0.pem_files(cert, key))
    }

    /// The client certificate from PEM files, the key protected by `passphrase`.
    pub fn encrypted_pem_files(
        self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        passphrase: impl Into<SecretString>,
    ) -> Self {
        Self(self.0.encrypted_pem_files(cert, key, passphrase))
    }

    /// The client certificate from a PKCS#12 file and its password.
    pub fn pkcs12_file(self, path: impl Into<PathBuf>, password: impl Into<SecretString>) -> Self {
        Self(self.0.pkcs12_file(path, password))
    }

    /// Whom to trust and which TLS versions to speak.
    pub fn tls(self, tls: TlsOptions) -> Self {
        Self(self.0.tls(tls))
    }

    /// Bounds each call (default [`super::DEFAULT_TIMEOUT`]).
    pub fn timeout(self, timeout: Duration) -> Self {
        Self(self.0.timeout(timeout))
    }

    /// Lets calls take as long as they take.
    pub fn no_timeout(self) -> Self {
        Self(self.0.no_timeout())
    }

    /// What the context accepts from the appliance (see [`crate::limits`]).
    pub fn limits(self, limits: crate::limits::Limits) -> Self {
        Self(self.0.limits(limits))
    }

    /// Which HTTP proxy the context goes through (see [`crate::proxy`]).
    pub fn proxy(self, proxy: crate::proxy::Proxy) -> Self {
        Self(self.0.proxy(proxy))
    }

    /// Idle connections kept for reuse (default 8; 0 = a new connection per call).
    pub fn max_idle_connections(self, max: usize) -> Self {
        Self(self.0.max_idle_connections(max))
    }

    /// How long an idle connection is kept (default 60 s).
    pub fn idle_timeout(self, idle: Duration) -> Self {
        Self(self.0.idle_timeout(idle))
    }

    /// Reads the certificate and starts the context's runtime.
    pub fn build(self) -> Result<A2aContext> {
        let runtime = BlockingRuntime::new("safeguard-a2a", "safeguard_sdk::a2a::A2aContext")?;
        let inner = {
            let _entered = runtime.enter();
            self.0.build()?
        };
        Ok(A2aContext {
            inner,
            runtime: Arc::new(runtime),
        })
    }
}

/// Retrieves credentials through A2A, blocking; cheap to clone (clones share
/// the runtime and the connection pool).
#[derive(Clone)]
pub struct A2aContext {
    inner: super::A2aContext,
    runtime: Arc<BlockingRuntime>,
}

impl fmt::Debug for A2aContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("blocking::A2aContext")
            .field(&self.inner)
            .finish()
    }
}

impl A2aContext {
    /// Starts building a context for the appliance at `host` (`name` or `name:port`).
    pub fn builder(host: impl Into<String>) -> A2aContextBuilder {
        A2aContextBuilder(super::A2aContext::builder(host))
    }

    /// The async context inside (shares the pool; run its futures with
    /// [`block_on`](Self::block_on)).
    pub fn inner(&self) -> &super::A2aContext {
        &self.inner
    }

    /// Runs a future of the inner context (or any future ending in a
    /// `Result` whose error converts into the SDK's [`Error`]) on this
    /// context's runtime. Refused with [`Error::BlockingInsideRuntime`]
    /// inside an async runtime.
    pub fn block_on<T, E: Into<Error>>(
        &self,
        future: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        self.runtime.run(future)
    }

    /// The appliance: the host given to [`A2aContext::builder`] (for a
    /// cluster, the member tried first).
    pub fn host(&self) -> &crate::Host {
        self.inner.host()
    }

    /// Every cluster member the context may send to, in the order tried.
    pub fn members(&self) -> &[crate::Host] {
        self.inner.members()
    }

    /// The member in use: the one that answered last.
    pub fn current_member(&self) -> &crate::Host {
        self.inner.current_member()
    }

    /// SHA-1 thumbprint (upper-case hex) of the client certificate.
    pub fn thumbprint(&self) -> &str {
        self.inner.thumbprint()
    }

    /// Retrieves the password of the account `api_key` is registered for.
    pub fn retrieve_password(&self, api_key: impl ApiKey) -> Result<SecretString> {
        self.block_on(self.inner.retrieve_password(api_key))
    }

    /// Retrieves the SSH private key of the account `api_key` is registered for.
    pub fn retrieve_private_key(
        &self,
        api_key: impl ApiKey,
        format: KeyFormat,
    ) -> Result<SecretString> {
        self.block_on(self.inner.retrieve_private_key(api_key, format))
    }

    /// Retrieves the API key secrets of the account `api_key` is registered for.
    pub fn retrieve_api_key_secret(&self, api_key: impl ApiKey) -> Result<Vec<ApiKeySecret>> {
        self.block_on(self.inner.retrieve_api_key_secret(api_key))
    }

    /// Sets the password of the account `api_key` is registered for.
    pub fn set_password(&self, api_key: impl ApiKey, password: &SecretString) -> Result<()> {
        self.block_on(self.inner.set_password(api_key, password))
    }

    /// Sets the SSH private key of the account `api_key` is registered for.
    pub fn set_private_key(
        &self,
        api_key: impl ApiKey,
        private_key: &SecretString,
        passphrase: Option<&SecretString>,
        format: KeyFormat,
    ) -> Result<()> {
        self.block_on(
            self.inner
                .set_private_key(api_key, private_key, passphrase, format),
        )
    }

    /// Brokers an access request on behalf of another user.
    pub fn broker_access_request(
        &self,
        api_key: impl ApiKey,
        request: &BrokeredAccessRequest,
    ) -> Result<AccessRequest> {
        self.block_on(self.inner.broker_access_request(api_key, request))
    }

    /// The certificate user's registrations and their retrievable accounts.
    pub fn retrievable_accounts(&self) -> Result<Vec<A2aRegistration>> {
        self.block_on(self.inner.retrievable_accounts())
    }
}

impl A2aContext {
    /// A watch of credentials kept current on this context's runtime (see
    /// [`super::watch`]).
    pub fn credential_watch(&self) -> CredentialWatch {
        CredentialWatch {
            inner: self.inner.credential_watch(),
            runtime: self.runtime.clone(),
        }
    }
}

/// [`super::CredentialWatch`] for programs without an async runtime: the
/// listener and the pulls run on the context's runtime; the [`Watched`]
/// handles are read from any thread ([`Watched::current`],
/// [`Watched::status`]), and [`wait_for_change`](Self::wait_for_change)
/// blocks until a credential changes.
#[derive(Clone)]
pub struct CredentialWatch {
    inner: super::CredentialWatch,
    runtime: Arc<BlockingRuntime>,
}

impl fmt::Debug for CredentialWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl CredentialWatch {
    /// See [`super::CredentialWatch::password`].
    pub fn password(&self, api_key: impl ApiKey) -> Watched<SecretString> {
        self.inner.password(api_key)
    }

    /// See [`super::CredentialWatch::private_key`].
    pub fn private_key(&self, api_key: impl ApiKey, format: KeyFormat) -> Watched<SecretString> {
        self.inner.private_key(api_key, format)
    }

    /// See [`super::CredentialWatch::api_key_secret`].
    pub fn api_key_secret(&self, api_key: impl ApiKey) -> Watched<Vec<ApiKeySecret>> {
        self.inner.api_key_secret(api_key)
    }

    /// See [`super::CredentialWatch::safety_interval`].
    pub fn safety_interval(self, every: Duration) -> Self {
        Self {
            inner: self.inner.safety_interval(every),
            runtime: self.runtime,
        }
    }

    /// See [`super::CredentialWatch::reconnect_policy`].
    pub fn reconnect_policy(self, policy: crate::events::ReconnectPolicy) -> Self {
        Self {
            inner: self.inner.reconnect_policy(policy),
            runtime: self.runtime,
        }
    }

    /// Pulls every credential, then keeps them current in the background
    /// (see [`super::CredentialWatch::start`]).
    pub fn start(&self) -> Result<()> {
        self.runtime.run(self.inner.start())
    }

    /// Stops the listener and the pulls.
    pub fn stop(&self) -> Result<()> {
        self.runtime.block_on(self.inner.stop())
    }

    /// The state of the A2A event listener.
    pub fn listener_state(&self) -> crate::events::ListenerState {
        self.inner.listener_state()
    }

    /// Calls `handler` with each value that replaces the present one of
    /// `watched`, on the context's runtime.
    pub fn on_change<T: Credential>(
        &self,
        watched: &Watched<T>,
        handler: impl Fn(&Current<T>) + Send + 'static,
    ) -> Result<()> {
        let _entered = self.runtime.enter();
        watched.on_change(handler).map(drop)
    }

    /// Blocks until `watched` has a value other than the one it had when
    /// called, at most `timeout`: the new value, or `None` when none came.
    pub fn wait_for_change<T: Credential>(
        &self,
        watched: &Watched<T>,
        timeout: Duration,
    ) -> Result<Option<Current<T>>> {
        let mut rx = watched.subscribe();
        rx.mark_unchanged();
        self.runtime.block_on(async move {
            match tokio::time::timeout(timeout, rx.changed()).await {
                Ok(Ok(())) => rx.borrow_and_update().clone(),
                _ => None,
            }
        })
    }
}
