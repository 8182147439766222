//! [`SafeguardClient`]: the handle a service keeps for its whole life.
//!
//! It signs in with an [`Auth`] strategy, keeps the user token (as a
//! `SecretString`), refreshes it when the appliance says it is nearly spent
//! or answers 401 (once, single-flight: a hundred concurrent calls that hit
//! expiry cause one sign-in), and offers both the generated typed clients
//! ([`core`](SafeguardClient::core), ...) and generic verbs for any endpoint
//! ([`get`](SafeguardClient::get), [`stream`](SafeguardClient::stream),
//! [`download`](SafeguardClient::download), [`upload`](SafeguardClient::upload),
//! [`paginate`](SafeguardClient::paginate)).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::auth::rsts::Sts;
use crate::auth::Auth;
use crate::error::{DecodeError, Error, Result};
use crate::limits::{self, Limits, RedirectPolicy};
use crate::tls::{TlsOptions, TlsVersion};
#[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
use crate::transport::Transport;
use crate::transport::{request_label, BoxFuture, Execute};

/// The header in which the appliance reports the token's remaining minutes.
pub const TOKEN_LIFETIME_HEADER: &str = "X-TokenLifetimeRemaining";

/// An appliance service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    /// `core`: most of the product.
    Core,
    /// `appliance`: appliance-local operations (backups, networking, time).
    Appliance,
    /// `notification`: anonymous status.
    Notification,
    /// `a2a`: application to application.
    A2a,
}

impl Service {
    /// The service's path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Core => "core",
            Service::Appliance => "appliance",
            Service::Notification => "notification",
            Service::A2a => "a2a",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds a [`SafeguardClient`].
#[derive(Debug)]
pub struct SafeguardClientBuilder {
    host: String,
    auth: Auth,
    tls: TlsOptions,
    timeout: Option<Duration>,
    limits: Limits,
    proxy: Option<String>,
    user_agent: String,
    api_version: String,
    refresh_margin: Duration,
}

impl SafeguardClientBuilder {
    /// How to sign in (default: anonymous).
    pub fn auth(mut self, auth: impl Into<Auth>) -> Self {
        self.auth = auth.into();
        self
    }

    /// Whom to trust and which TLS versions to speak.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts the CA certificates of a PEM file (replacing the system roots).
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        self.tls = self.tls.with_ca_file(path)?;
        Ok(self)
    }

    /// Trusts the CA certificates of a PEM bundle (replacing the system roots).
    pub fn ca_pem(mut self, pem: impl AsRef<[u8]>) -> Result<Self> {
        self.tls = self.tls.with_ca_pem(pem)?;
        Ok(self)
    }

    /// Accepts any server certificate. Dangerous: for throwaway test appliances only.
    pub fn danger_accept_invalid_certs(mut self, yes: bool) -> Self {
        self.tls = self.tls.danger_accept_invalid_certs(yes);
        self
    }

    /// The lowest TLS version to speak.
    pub fn min_tls_version(mut self, v: TlsVersion) -> Self {
        self.tls = self.tls.min_version(v);
        self
    }

    /// The highest TLS version to speak.
    pub fn max_tls_version(mut self, v: TlsVersion) -> Self {
        self.tls = self.tls.max_version(v);
        self
    }

    /// A limit on each whole request, streams and downloads included
    /// (default: none; the [`Limits`] bound what a server can make a call
    /// wait for without cutting long downloads).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A limit on establishing a connection (default 30 s; the same as
    /// [`Limits::connect_timeout`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.limits.connect_timeout = Some(timeout);
        self
    }

    /// What the client accepts from the appliance: timeouts, the size of
    /// answers read into memory, redirects, pages (default
    /// [`Limits::default`]; see [`crate::limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sends everything through this HTTP(S) proxy (`http://proxy:3128`).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// The User-Agent header (default `safeguard-sdk-rust/<version>`).
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// The API version of the generic verbs' paths (default `v4`; the typed
    /// clients are generated for the documents' version).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// Refresh the token when the appliance says fewer than this many
    /// minutes remain (default 2 minutes; only strategies that can refresh).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Builds the client. No request is made: call [`SafeguardClient::login`]
    /// to sign in now, or let the first call do it.
    pub fn build(self) -> Result<SafeguardClient> {
        if self.host.is_empty() || self.host.contains('/') {
            return Err(Error::Config(format!(
                "host must be a name or address with an optional port, not {:?}",
                self.host
            )));
        }
        let rustls = self.tls.rustls_config()?;
        // Two clients over one TLS configuration: requests that carry a
        // secret of their own (sign-in) follow no redirect at all.
        let client =
            |redirects: RedirectPolicy, whole: Option<Duration>| -> Result<reqwest::Client> {
                let mut http = self.limits.apply(
                    TlsOptions::reqwest_builder_with(rustls.clone())
                        .user_agent(self.user_agent.clone()),
                    redirects,
                );
                if let Some(t) = whole {
                    http = http.timeout(t);
                }
                if let Some(p) = &self.proxy {
                    http = http.proxy(
                        reqwest::Proxy::all(p)
                            .map_err(|e| Error::Config(format!("bad proxy {p:?}: {e}")))?,
                    );
                } else {
                    http = http.no_proxy();
                }
                http.build()
                    .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
            };
        let http = client(self.limits.redirects, self.timeout)?;
        // Every request that carries a secret of its own is read whole: its
        // client bounds each one within the answer timeout.
        let secret_whole = match (self.timeout, self.limits.answer_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let secret_http = client(RedirectPolicy::Never, secret_whole)?;
        let initial = match &self.auth {
            Auth::Token(t) => Some(Arc::new(Bearer::new(t.token.clone())?)),
            _ => None,
        };
        Ok(SafeguardClient {
            session: Arc::new(Session {
                host: self.host,
                http,
                secret_http,
                limits: self.limits,
                tls: self.tls,
                auth: self.auth,
                api_version: self.api_version,
                refresh_margin: self.refresh_margin,
                timeout: self.timeout,
                token: RwLock::new(TokenState {
                    token: initial,
                    generation: 0,
                    lifetime: None,
                }),
                sign_in: Mutex::new(()),
            }),
            #[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
            generated: Arc::default(),
        })
    }
}

/// A user token and the `Authorization` value that carries it, built once
/// per sign-in instead of once per request (one copy of the secret in a
/// header, marked sensitive so that HTTP tracing never prints it).
struct Bearer {
    token: SecretString,
    header: HeaderValue,
}

impl Bearer {
    fn new(token: SecretString) -> Result<Self> {
        let value = Zeroizing::new(format!("Bearer {}", token.expose_secret()));
        let mut header = HeaderValue::from_str(&value)
            .map_err(|_| Error::Config("the user token is not a valid header value".into()))?;
        header.set_sensitive(true);
        Ok(Self { token, header })
    }

    /// Puts the token on `request`.
    fn authorize(&self, request: &mut reqwest::Request) {
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.header.clone());
    }
}

struct TokenState {
    token: Option<Arc<Bearer>>,
    /// Bumped at every sign-in: a refresh after a 401 happens only if no
    /// other task signed in since the failed request was sent.
    generation: u64,
    /// Minutes remaining as last reported, and when.
    lifetime: Option<(u64, Instant)>,
}

pub(crate) struct Session {
    host: String,
    http: reqwest::Client,
    /// `http` without redirects, for requests that carry a secret of their own.
    secret_http: reqwest::Client,
    limits: Limits,
    tls: TlsOptions,
    auth: Auth,
    api_version: String,
    refresh_margin: Duration,
    timeout: Option<Duration>,
    token: RwLock<TokenState>,
    sign_in: Mutex<()>,
}

impl Session {
    /// The token state for reading. Held for a few instructions, never across
    /// an await, so a plain lock is enough; a poisoned lock (a panic while
    /// holding it cannot leave the state half-written) is used as it is.
    fn state(&self) -> RwLockReadGuard<'_, TokenState> {
        self.token.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The token state for writing (see [`Session::state`]).
    fn state_mut(&self) -> RwLockWriteGuard<'_, TokenState> {
        self.token.write().unwrap_or_else(|e| e.into_inner())
    }

    fn sts(&self) -> Sts<'_> {
        Sts {
            http: &self.secret_http,
            host: &self.host,
            limits: &self.limits,
        }
    }

    /// Runs the strategy's sign-in and installs the new token.
    async fn sign_in(&self) -> Result<Arc<Bearer>> {
        let span = tracing::info_span!("safeguard.sign_in", strategy = self.auth.name(), host = %self.host);
        async {
            let sts = self.sts();
            let sts_token = match &self.auth {
                Auth::Anonymous | Auth::Token(_) => {
                    return Err(Error::CannotRefresh {
                        strategy: self.auth.name(),
                        reason: self.auth.refresh_refusal(),
                    })
                }
                Auth::Password(a) => sts.password(a).await?,
                Auth::Pkce(a) => sts.pkce(a).await?,
                Auth::DeviceCode(a) => sts.device_code(a).await?,
                Auth::BrowserPkce(a) => sts.browser_pkce(a).await?,
                Auth::Certificate(a) => sts.certificate(a, &self.tls, self.timeout).await?,
            };
            let user_token = Arc::new(Bearer::new(sts.login_response(&sts_token).await?)?);
            let mut state = self.state_mut();
            state.token = Some(user_token.clone());
            state.generation += 1;
            state.lifetime = None;
            tracing::info!("signed in");
            Ok(user_token)
        }
        .instrument(span)
        .await
    }

    /// Signs in unless another task already did since `seen_generation`.
    ///
    /// Boxed: the sign-in conversations make a future of kilobytes, and
    /// every request's future would otherwise carry (and copy) that much
    /// for a path it almost never takes.
    fn refresh_after(&self, seen_generation: Option<u64>) -> BoxFuture<'_, Result<Arc<Bearer>>> {
        Box::pin(async move {
            let _guard = self.sign_in.lock().await;
            if let Some(seen) = seen_generation {
                let state = self.state();
                if state.generation != seen {
                    if let Some(t) = &state.token {
                        return Ok(t.clone());
                    }
                }
            }
            self.sign_in().await
        })
    }

    /// The token to send now: signs in when there is none, refreshes when
    /// the appliance said it is nearly spent. Returns the token and its generation.
    async fn current_token(&self) -> Result<(Arc<Bearer>, u64)> {
        let (token, generation, nearly_spent) = {
            let state = self.state();
            let nearly_spent = state.lifetime.is_some_and(|(minutes, at)| {
                time_left(minutes, at.elapsed()) <= self.refresh_margin
            });
            (state.token.clone(), state.generation, nearly_spent)
        };
        match token {
            Some(t) if !(nearly_spent && self.auth.can_refresh()) => Ok((t, generation)),
            Some(_) => {
                let t = self.refresh_after(Some(generation)).await?;
                Ok((t, self.state().generation))
            }
            None => {
                if matches!(self.auth, Auth::Anonymous) {
                    return Err(Error::CannotRefresh {
                        strategy: "anonymous",
                        reason: self.auth.refresh_refusal(),
                    });
                }
                let t = self.refresh_after(Some(generation)).await?;
                Ok((t, self.state().generation))
            }
        }
    }

    fn observe(&self, response: &reqwest::Response) {
        let Some(m) = lifetime_minutes(response.headers()) else {
            return;
        };
        // Almost every answer repeats the minutes already recorded: keep the
        // first sighting (it under-estimates what is left, so a refresh can
        // only come early) and take the write lock only when they change,
        // so concurrent calls do not queue on it.
        let unchanged = |state: &TokenState| state.lifetime.is_some_and(|(seen, _)| seen == m);
        if unchanged(&self.state()) {
            return;
        }
        let mut state = self.state_mut();
        if !unchanged(&state) {
            state.lifetime = Some((m, Instant::now()));
        }
    }

    /// Sends with the bearer token; on a 401, signs in again (once,
    /// single-flight) and resends when the body can be replayed.
    ///
    /// `streamed`: the answer's body goes to the caller unread (its head and
    /// its silences are then bounded here); otherwise the caller reads it
    /// whole within the answer timeout.
    async fn send(
        &self,
        mut request: reqwest::Request,
        streamed: bool,
    ) -> Result<reqwest::Response> {
        if matches!(self.auth, Auth::Anonymous) {
            return self.execute_within_limits(request, streamed).await;
        }
        let (token, generation) = self.current_token().await?;
        // Only a strategy that can sign in again replays after a 401.
        let replay = if self.auth.can_refresh() {
            request.try_clone()
        } else {
            None
        };
        token.authorize(&mut request);
        let response = self.execute_within_limits(request, streamed).await?;
        self.observe(&response);
        // No replay copy: a strategy that cannot sign in again, or a
        // streamed body.
        match replay.filter(|_| response.status() == StatusCode::UNAUTHORIZED) {
            Some(replay) => {
                // The 401's connection goes back while the sign-in runs.
                drop(response);
                self.resend(replay, generation, streamed).await
            }
            None => Ok(response),
        }
    }

    /// After a 401: signs in again (unless another task did since
    /// `generation`) and sends `replay`. Boxed, like [`Session::refresh_after`]:
    /// a second request's future in every request's for the rare 401.
    fn resend(
        &self,
        mut replay: reqwest::Request,
        generation: u64,
        streamed: bool,
    ) -> BoxFuture<'_, Result<reqwest::Response>> {
        Box::pin(async move {
            tracing::debug!("401: signing in again");
            let token = self.refresh_after(Some(generation)).await?;
            token.authorize(&mut replay);
            let response = self.execute_within_limits(replay, streamed).await?;
            self.observe(&response);
            Ok(response)
        })
    }

    /// Sends `request` within the [`Limits`] (see [`limits::send_within`]).
    fn execute_within_limits(
        &self,
        request: reqwest::Request,
        streamed: bool,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send + '_ {
        limits::send_within(&self.http, &self.limits, &self.host, request, streamed)
    }
}

/// How many downloaded bytes [`SafeguardClient::download`] gathers per
/// write to the file.
const DOWNLOAD_WRITE_BUFFER: usize = 1 << 20;

/// What is left of a token that had `minutes` left `elapsed` ago; any
/// number of minutes a server reports gives an answer (saturating).
fn time_left(minutes: u64, elapsed: Duration) -> Duration {
    Duration::from_secs(minutes.saturating_mul(60)).saturating_sub(elapsed)
}

/// The minutes left on the token, as an answer's [`TOKEN_LIFETIME_HEADER`] says.
fn lifetime_minutes(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(TOKEN_LIFETIME_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl Execute for Session {
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        self.send(request, false)
    }

    fn execute_stream(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        self.send(request, true)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// A client of one Safeguard appliance. Cheap to clone; clones share the
/// connection pool and the token.
///
/// ```no_run
/// use safeguard_sdk::{auth::PkceAuth, SafeguardClient, Service};
/// # async fn run() -> safeguard_sdk::Result<()> {
/// let client = SafeguardClient::builder("safeguard.example.com")
///     .auth(PkceAuth::new("local", "Admin", "Admin123"))
///     .ca_file("ca.pem")?
///     .build()?;
/// client.login().await?;
/// let me: serde_json::Value = client.get(Service::Core, "Me").send().await?.json().await?;
/// let users = client.core().users_get_users().limit(10).send().await?;
/// println!("{} sees {} users", me["DisplayName"], users.len());
/// client.logout().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SafeguardClient {
    session: Arc<Session>,
    #[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
    generated: Arc<Generated>,
}

/// The generated clients of a [`SafeguardClient`], made on first use: a
/// typed call then costs no allocation for its client. They hold the
/// session, not the `SafeguardClient`, so nothing here forms a cycle.
#[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
#[derive(Default)]
struct Generated {
    #[cfg(feature = "core")]
    core: std::sync::OnceLock<crate::api::core::Client>,
    #[cfg(feature = "appliance")]
    appliance: std::sync::OnceLock<crate::api::appliance::Client>,
    #[cfg(feature = "notification")]
    notification: std::sync::OnceLock<crate::api::notification::Client>,
}

impl fmt::Debug for SafeguardClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeguardClient")
            .field("host", &self.session.host)
            .field("auth", &self.session.auth)
            .field("tls", &self.session.tls)
            .finish_non_exhaustive()
    }
}

impl SafeguardClient {
    /// Starts building a client of the appliance at `host` (a name or an
    /// address, with an optional `:port`).
    pub fn builder(host: impl Into<String>) -> SafeguardClientBuilder {
        SafeguardClientBuilder {
            host: host.into(),
            auth: Auth::Anonymous,
            tls: TlsOptions::default(),
            timeout: None,
            limits: Limits::default(),
            proxy: None,
            user_agent: format!("safeguard-sdk-rust/{}", env!("CARGO_PKG_VERSION")),
            api_version: "v4".into(),
            refresh_margin: Duration::from_secs(120),
        }
    }

    /// The appliance's host (with port when given).
    pub fn host(&self) -> &str {
        &self.session.host
    }

    /// The API version of the generic verbs.
    pub fn api_version(&self) -> &str {
        &self.session.api_version
    }

    /// The sign-in strategy.
    pub fn auth(&self) -> &Auth {
        &self.session.auth
    }

    #[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.session.http
    }

    /// `http` without redirects, for requests that carry a secret of their
    /// own (the events negotiate).
    pub(crate) fn secret_http(&self) -> &reqwest::Client {
        &self.session.secret_http
    }

    /// What the client accepts from the appliance.
    pub fn limits(&self) -> &Limits {
        &self.session.limits
    }

    pub(crate) fn tls_options(&self) -> &TlsOptions {
        &self.session.tls
    }

    /// The current user token, signing in first when there is none.
    pub(crate) async fn bearer_token(&self) -> Result<SecretString> {
        self.session
            .current_token()
            .await
            .map(|(t, _)| SecretString::from(t.token.expose_secret().to_owned()))
    }

    /// Signs in now (a no-op for anonymous clients; for a token client it
    /// only checks nothing is missing).
    pub async fn login(&self) -> Result<()> {
        match self.session.auth {
            Auth::Anonymous | Auth::Token(_) => Ok(()),
            _ => self.session.refresh_after(None).await.map(|_| ()),
        }
    }

    /// Signs in again now. Strategies that cannot sign in without a person or
    /// a new token answer [`Error::CannotRefresh`].
    pub async fn refresh(&self) -> Result<()> {
        if !self.session.auth.can_refresh() {
            return Err(Error::CannotRefresh {
                strategy: self.session.auth.name(),
                reason: self.session.auth.refresh_refusal(),
            });
        }
        let generation = self.session.state().generation;
        self.session
            .refresh_after(Some(generation))
            .await
            .map(|_| ())
    }

    /// The current user token, if signed in (as PySafeguard's `user_token`);
    /// it stays wrapped as a secret.
    pub async fn user_token(&self) -> Option<SecretString> {
        self.session
            .state()
            .token
            .as_ref()
            .map(|t| SecretString::from(t.token.expose_secret().to_owned()))
    }

    /// Whether the client holds a user token.
    pub async fn is_signed_in(&self) -> bool {
        self.session.state().token.is_some()
    }

    /// Signs out: the appliance invalidates the token, and the client forgets it.
    pub async fn logout(&self) -> Result<()> {
        let token = self.session.state_mut().token.take();
        let Some(token) = token else {
            return Ok(());
        };
        let mut request = self
            .session
            .http
            .post(self.url(Service::Core, "Token/Logout"))
            .header(reqwest::header::ACCEPT, "application/json")
            .build()
            .map_err(Error::from_reqwest)?;
        token.authorize(&mut request);
        let limits = &self.session.limits;
        limits
            .head(|| "POST Token/Logout".to_owned(), async {
                let response = self.session.execute_within_limits(request, false).await?;
                check(response, limits).await.map(|_| ())
            })
            .await
    }

    /// Minutes the current token has left, as the appliance reports them
    /// (`X-TokenLifetimeRemaining` on an authenticated call); `None` when
    /// not signed in.
    pub async fn token_lifetime_remaining(&self) -> Result<Option<u64>> {
        if self.session.state().token.is_none() {
            return Ok(None);
        }
        let response = self.get(Service::Core, "LoginMessage").send_raw().await?;
        Ok(lifetime_minutes(response.headers()))
    }

    /// `https://host/service/{service}/{api_version}/{path}`.
    pub fn url(&self, service: Service, path: &str) -> String {
        format!(
            "https://{}/service/{}/{}/{}",
            self.session.host,
            service,
            self.session.api_version,
            path.trim_start_matches('/')
        )
    }

    /// A generated client of `service` over this client's connections and
    /// session; `with_inner` is that client's constructor.
    #[cfg(any(feature = "core", feature = "appliance", feature = "notification"))]
    fn make_generated<C>(
        &self,
        service: Service,
        with_inner: fn(&str, reqwest::Client, safeguard_api::Inner) -> C,
    ) -> C {
        with_inner(
            &format!("https://{}/service/{}", self.session.host, service),
            self.http().clone(),
            Transport::new(self.session.clone()).into(),
        )
    }

    /// The generated client of the core service, sharing this client's
    /// connections and token. Made on first use and shared by this client's
    /// clones; clone it to keep one of your own.
    #[cfg(feature = "core")]
    pub fn core(&self) -> &crate::api::core::Client {
        self.generated.core.get_or_init(|| {
            self.make_generated(Service::Core, crate::api::core::Client::with_inner)
        })
    }

    /// The generated client of the appliance service (see [`SafeguardClient::core`]).
    #[cfg(feature = "appliance")]
    pub fn appliance(&self) -> &crate::api::appliance::Client {
        self.generated.appliance.get_or_init(|| {
            self.make_generated(
                Service::Appliance,
                crate::api::appliance::Client::with_inner,
            )
        })
    }

    /// The generated client of the notification service (see [`SafeguardClient::core`]).
    #[cfg(feature = "notification")]
    pub fn notification(&self) -> &crate::api::notification::Client {
        self.generated.notification.get_or_init(|| {
            self.make_generated(
                Service::Notification,
                crate::api::notification::Client::with_inner,
            )
        })
    }

    /// A request of any method to any endpoint of a service.
    pub fn request(&self, method: Method, service: Service, path: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            url: self.url(service, path),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            error: None,
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

    /// Sends a request and returns the answer with its body unread, for
    /// streaming large bodies (`bytes_stream`). Error answers fail.
    pub async fn stream(
        &self,
        method: Method,
        service: Service,
        path: &str,
    ) -> Result<ApiResponse> {
        self.request(method, service, path).send().await
    }

    /// Streams a `GET` answer into a file without holding it in memory;
    /// returns the bytes written. `progress(written, total)` is called as
    /// chunks arrive.
    pub async fn download(
        &self,
        service: Service,
        path: &str,
        to: impl AsRef<Path>,
        mut progress: Option<&mut (dyn FnMut(u64, Option<u64>) + Send)>,
    ) -> Result<u64> {
        let response = self
            .get(service, path)
            .header_str("Accept", "application/octet-stream")
            .send()
            .await?;
        let total = response.content_length();
        // Chunks arrive as TLS records do (16 KiB or less), and every write
        // to a tokio `File` is a trip to the blocking pool: gather them into
        // writes of `DOWNLOAD_WRITE_BUFFER` bytes.
        let mut file = tokio::io::BufWriter::with_capacity(
            DOWNLOAD_WRITE_BUFFER,
            tokio::fs::File::create(to.as_ref()).await?,
        );
        let mut written = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            written += chunk.len() as u64;
            if let Some(p) = progress.as_deref_mut() {
                p(written, total);
            }
        }
        file.flush().await?;
        Ok(written)
    }

    /// Streams a file or a byte stream as the body of a `POST` (or the
    /// method given), never holding it whole; `progress(sent, total)` is
    /// called as chunks go out.
    pub async fn upload(
        &self,
        method: Method,
        service: Service,
        path: &str,
        source: UploadSource,
        content_type: &str,
        progress: Option<UploadProgress>,
    ) -> Result<ApiResponse> {
        let (stream, total) = source.into_stream().await?;
        let mut sent = 0u64;
        let mut progress = progress;
        let counted = stream.map(move |chunk| {
            if let Ok(c) = &chunk {
                sent += c.len() as u64;
                if let Some(p) = progress.as_mut() {
                    p(sent, total);
                }
            }
            chunk
        });
        let mut builder = self
            .request(method, service, path)
            .header_str("Content-Type", content_type)
            .raw_body(reqwest::Body::wrap_stream(counted));
        if let Some(t) = total {
            builder = builder.header_str("Content-Length", &t.to_string());
        }
        builder.send().await
    }

    /// Every item of a list endpoint, fetched page by page (`page`/`limit`
    /// query parameters) as a `Stream`, stopping after the last page.
    pub fn paginate<T: DeserializeOwned + Send + 'static>(
        &self,
        service: Service,
        path: &str,
        page_size: u32,
        query: Vec<(String, String)>,
    ) -> impl Stream<Item = Result<T>> + Send + 'static {
        let client = self.clone();
        let path = path.to_owned();
        let max_pages = self.session.limits.max_pages;
        crate::paging::walk(page_size, max_pages, move |page, limit| {
            let client = client.clone();
            let path = path.clone();
            let query = query.clone();
            async move {
                let response = client
                    .get(service, &path)
                    .query(&query)?
                    .query(&[("page", page.to_string()), ("limit", limit.to_string())])?
                    .send()
                    .await?;
                let status = response.status();
                let body = response.bytes().await?;
                let items = serde_json::from_slice::<Vec<T>>(&body)
                    .map_err(|e| Error::Decode(DecodeError::new(Some(status), e, &body)))?;
                Ok((items, crate::paging::PageIds::of_json(&body)))
            }
        })
    }
}

/// Called as an upload's chunks go out, with the bytes sent so far and the
/// total when known.
pub type UploadProgress = Box<dyn FnMut(u64, Option<u64>) + Send + Sync>;

/// Where an upload's bytes come from.
pub enum UploadSource {
    /// A file, read in chunks.
    File(std::path::PathBuf),
    /// A stream of chunks, with its total length when known.
    Stream(
        futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        Option<u64>,
    ),
}

impl fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadSource::File(p) => f.debug_tuple("File").field(p).finish(),
            UploadSource::Stream(_, len) => f.debug_tuple("Stream").field(len).finish(),
        }
    }
}

impl UploadSource {
    async fn into_stream(
        self,
    ) -> Result<(
        futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        Option<u64>,
    )> {
        match self {
            UploadSource::File(path) => {
                let file = tokio::fs::File::open(&path).await?;
                let len = file.metadata().await?.len();
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
                Ok((stream.boxed(), Some(len)))
            }
            UploadSource::Stream(s, len) => Ok((s, len)),
        }
    }
}

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

    fn build(self) -> Result<(SafeguardClient, reqwest::Request)> {
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
        Ok((self.client, request))
    }

    /// Sends and returns the answer whatever its status.
    pub async fn send_raw(self) -> Result<ApiResponse> {
        let (client, request) = self.build()?;
        let label = request_label(&request);
        let span = tracing::debug_span!("safeguard.request", request = %label);
        let response = client.session.send(request, true).instrument(span).await?;
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
        let (client, request) = self.build()?;
        let label = request_label(&request);
        let span = tracing::debug_span!("safeguard.request", request = %label);
        let limits = &client.session.limits;
        let call = async {
            let response = client.session.send(request, false).await?;
            if !response.status().is_success() {
                return Err(limits::read_error(response, label.clone(), limits).await);
            }
            // The answer timeout around the whole call covers the body.
            let body_limits = limits.answer_timeout(None);
            let (status, body) = limits::read_body(response, &label, &body_limits).await?;
            serde_json::from_slice(&body)
                .map_err(|e| Error::Decode(DecodeError::new(Some(status), e, &body)))
        };
        limits.head(|| label.clone(), call).instrument(span).await
    }
}

async fn check(response: reqwest::Response, limits: &Limits) -> Result<reqwest::Response> {
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

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a server puts in `X-TokenLifetimeRemaining`, reading it
        /// and computing what is left neither panics nor wraps around.
        #[test]
        fn any_token_lifetime_header_is_read_without_panic(value in "\\PC{0,30}", minutes in proptest::num::u64::ANY, elapsed in 0u64..(1 << 40)) {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(TOKEN_LIFETIME_HEADER, v);
                let _ = lifetime_minutes(&headers);
            }
            headers.insert(TOKEN_LIFETIME_HEADER, HeaderValue::from(minutes));
            proptest::prop_assert_eq!(lifetime_minutes(&headers), Some(minutes));
            let left = time_left(minutes, Duration::from_secs(elapsed));
            let expected = u128::from(minutes) * 60;
            proptest::prop_assert!(
                u128::from(left.as_secs()) == expected.saturating_sub(u128::from(elapsed)).min(u128::from(u64::MAX))
                    || minutes.checked_mul(60).is_none(),
                "{} minutes, {} s elapsed: {:?} left", minutes, elapsed, left
            );
        }
    }

    #[test]
    fn the_bearer_header_is_built_once_and_marked_sensitive() {
        let bearer = Bearer::new(SecretString::from("abc.def")).unwrap();
        assert_eq!(bearer.header.to_str().unwrap(), "Bearer abc.def");
        assert!(bearer.header.is_sensitive());
        let mut request = reqwest::Request::new(
            Method::GET,
            "https://sg.example/service/core/v4/Me".parse().unwrap(),
        );
        bearer.authorize(&mut request);
        bearer.authorize(&mut request);
        let values: Vec<_> = request.headers().get_all(AUTHORIZATION).iter().collect();
        assert_eq!(values.len(), 1, "authorizing twice replaces, never appends");
        assert!(values[0].is_sensitive());
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_a_configuration_error() {
        let err = Bearer::new(SecretString::from("line\nbreak"))
            .err()
            .expect("a newline cannot go in a header");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(
            !format!("{err}").contains("break"),
            "the token is never echoed"
        );
    }

    #[test]
    fn a_token_auth_client_with_a_bad_token_fails_to_build() {
        let built = SafeguardClient::builder("sg.example")
            .auth(crate::auth::TokenAuth::new("bad\rtoken"))
            .build();
        assert!(matches!(built, Err(Error::Config(_))));
    }

    #[test]
    fn a_request_future_does_not_carry_the_sign_in_conversations() {
        let client = SafeguardClient::builder("sg.example").build().unwrap();
        let request = reqwest::Request::new(Method::GET, "https://sg.example/x".parse().unwrap());
        let sign_in = std::mem::size_of_val(&client.session.sign_in());
        let send = std::mem::size_of_val(&client.session.send(request, false));
        // Every call moves its future into a box: the rare sign-in after a
        // 401 is a box of its own instead of kilobytes in every request.
        assert!(
            send < sign_in,
            "a request's future ({send} B) holds the sign-in's ({sign_in} B)"
        );
    }

    #[cfg(feature = "notification")]
    #[test]
    fn generated_clients_are_made_once_and_shared_by_clones() {
        let client = SafeguardClient::builder("sg.example").build().unwrap();
        let first: *const _ = client.notification();
        assert!(std::ptr::eq(first, client.notification()));
        assert!(std::ptr::eq(first, client.clone().notification()));
        let other = SafeguardClient::builder("sg.example").build().unwrap();
        assert!(!std::ptr::eq(first, other.notification()));
    }
}
