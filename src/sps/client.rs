//! [`SpsClient`]: sign-in, the session cookie, generic verbs, paging and
//! navigation.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, Stream, TryStreamExt};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use url::Url;
use zeroize::Zeroizing;

use super::error::{self, SpsApiError, SpsError};
use super::model::{self, ListItem, LoginMethod, SpsPage, SpsResponse};
use super::x509::CertificateSignIn;
use crate::call_span::CallSpan;
use crate::limits::{Limits, RedirectPolicy};
use crate::paging::PagingError;
use crate::proxy::Proxy;
use crate::tls::{ClientIdentity, TlsOptions};
use crate::{Error, Host, Result};

/// The User-Agent the client sends: not browser-like, so SPS 7.5+ does not
/// ask for an `X-Token` header on writes.
pub const USER_AGENT: &str = concat!(
    "safeguard-sdk-rust/",
    env!("CARGO_PKG_VERSION"),
    " (SPS REST client)"
);

/// How the client signs in.
#[derive(Clone)]
pub(crate) enum SignIn {
    /// HTTP Basic credentials, with an optional `login_method`.
    Basic {
        user: String,
        password: SecretString,
        login_method: Option<String>,
    },
    /// `type=x509` with a client certificate.
    Certificate(ClientIdentity),
    /// No sign-in: only anonymous calls (`login_methods`).
    Anonymous,
}

impl fmt::Debug for SignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignIn::Basic {
                user, login_method, ..
            } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .field("login_method", login_method)
                .finish(),
            SignIn::Certificate(id) => f.debug_tuple("Certificate").field(id).finish(),
            SignIn::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Configures an [`SpsClient`]; start with [`SpsClient::builder`].
#[derive(Debug, Clone)]
pub struct SpsClientBuilder {
    host: String,
    tls: TlsOptions,
    sign_in: SignIn,
    user_agent: String,
    timeout: Option<Duration>,
    limits: Limits,
    proxy: Proxy,
    session: Option<SecretString>,
}

impl SpsClientBuilder {
    /// Resumes a session signed in earlier (its `session_id` cookie, from
    /// [`SpsClient::session_id`]), for example by another process of a
    /// command-line tool. A transaction the session has open stays open; the
    /// client does not know of it (commit it with `PUT transaction`, roll it
    /// back with [`SpsClient::rollback`]). When the session has expired, the
    /// client signs in again only if it was given credentials or a
    /// certificate.
    pub fn session_id(mut self, session_id: impl Into<SecretString>) -> Self {
        self.session = Some(session_id.into());
        self
    }

    /// Signs in with HTTP Basic credentials (sent as UTF-8).
    pub fn credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        let login_method = match &self.sign_in {
            SignIn::Basic { login_method, .. } => login_method.clone(),
            _ => None,
        };
        self.sign_in = SignIn::Basic {
            user: user.into(),
            password: password.into(),
            login_method,
        };
        self
    }

    /// Names the `login_method` to sign in with (see [`SpsClient::login_methods`]).
    /// Only meaningful with [`credentials`](Self::credentials).
    pub fn login_method(mut self, method: impl Into<String>) -> Self {
        if let SignIn::Basic { login_method, .. } = &mut self.sign_in {
            *login_method = Some(method.into());
        } else {
            self.sign_in = SignIn::Basic {
                user: String::new(),
                password: SecretString::from(String::new()),
                login_method: Some(method.into()),
            };
        }
        self
    }

    /// Signs in with a client certificate (`GET /api/authentication?type=x509`),
    /// over the SDK's certificate transport (OpenSSL, as for A2A) so that a
    /// post-handshake certificate request is answered. The connection is
    /// kept for the next sign-in while SPS keeps it open.
    pub fn client_certificate(mut self, identity: ClientIdentity) -> Self {
        self.sign_in = SignIn::Certificate(identity);
        self
    }

    /// TLS trust and versions (as for the SPP client).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Replaces the User-Agent. Keep it non-browser-like: SPS 7.5+ asks
    /// browser-like clients for an `X-Token` header on writes.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// A limit on each whole request, downloads included (none by default;
    /// the [`limits`](Self::limits) bound what a server can make a call wait
    /// for without cutting long downloads).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// What the client accepts from SPS: connect, answer and read timeouts,
    /// the size of answers read into memory (error answers kept up to
    /// `max_error_bytes`), the pages a listing walks (default
    /// [`Limits::default`]; see [`crate::limits`]).
    ///
    /// Every SPS request except the anonymous
    /// [`login_methods`](SpsClient::login_methods) carries a secret (the
    /// sign-in's credentials or the `session_id` cookie), so none of them
    /// follows a redirect, whatever [`Limits::redirects`] says: a redirect
    /// ends the call with [`Error::Redirect`] and the secret goes nowhere
    /// else. `login_methods` follows [`Limits::redirects`].
    ///
    /// What the limits end is reported as [`Error::Timeout`],
    /// [`Error::TooLarge`], [`Error::Redirect`] and
    /// [`Error::Paging`], as for the rest of the SDK.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Which HTTP proxy the client's connections go through (default
    /// [`Proxy::from_env`]: `HTTPS_PROXY` and `NO_PROXY`, read by
    /// [`build`](Self::build), the same rules as every client of the SDK;
    /// see [`crate::proxy`]). For now a client that signs in with a
    /// certificate ([`client_certificate`](Self::client_certificate)) and
    /// whose policy names a proxy for the host fails to build with
    /// [`Error::Config`], rather than sign in around the proxy.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = proxy;
        self
    }

    /// Builds the client. No request is made: the client signs in on its
    /// first call (or with [`SpsClient::sign_in`]).
    pub fn build(self) -> Result<SpsClient> {
        let host = Host::parse(&self.host)?;
        let base = base_url(&host)?;
        let proxy = self.proxy.rules()?;
        if let SignIn::Basic { user, .. } = &self.sign_in {
            if user.is_empty() {
                return Err(Error::Config(
                    "login_method was given without credentials".into(),
                ));
            }
        }
        let rustls = self.tls.rustls_config()?;
        // Two clients over one TLS configuration. Every request but the
        // anonymous `login_methods` carries a secret (Basic credentials or
        // the session cookie) and goes through `secret_http`, which follows
        // no redirect: the session cookie is only ever sent to the host that
        // set it.
        let client = |redirects: RedirectPolicy| -> Result<reqwest::Client> {
            let mut builder = self.limits.apply(
                TlsOptions::reqwest_builder_with(rustls.clone())
                    .user_agent(self.user_agent.clone()),
                redirects,
            );
            if let Some(t) = self.timeout {
                builder = builder.timeout(t);
            }
            proxy
                .apply(builder, &host)?
                .build()
                .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
        };
        let http = client(self.limits.redirects)?;
        let secret_http = client(RedirectPolicy::Never)?;
        // The certificate sign-in goes through the certificate transport
        // (OpenSSL), which can answer SPS's certificate request.
        let certificate = match &self.sign_in {
            SignIn::Certificate(identity) => Some(CertificateSignIn::new(
                &host,
                &self.tls,
                identity.clone(),
                &self.user_agent,
                self.timeout,
                &self.limits,
                &proxy,
            )?),
            _ => None,
        };
        Ok(SpsClient {
            inner: Arc::new(Inner {
                http,
                secret_http,
                certificate,
                limits: self.limits,
                base,
                sign_in: self.sign_in,
                session: Mutex::new(self.session),
                login_lock: tokio::sync::Mutex::new(()),
                tx: Mutex::new(TxTrack::default()),
                tx_calls: tokio::sync::Mutex::new(()),
                sign_ins: AtomicU64::new(0),
            }),
        })
    }
}

/// `https://{host}/`, the root every SPS path is joined to.
fn base_url(host: &Host) -> Result<Url> {
    Url::parse(&host.url("/")).map_err(|e| Error::Config(format!("bad SPS host {host}: {e}")))
}

pub(crate) struct Inner {
    /// For anonymous requests: follows [`Limits::redirects`].
    pub(crate) http: reqwest::Client,
    /// For requests that carry credentials or the session cookie: follows
    /// no redirect.
    pub(crate) secret_http: reqwest::Client,
    /// The certificate sign-in, when the client signs in with a client
    /// certificate.
    certificate: Option<CertificateSignIn>,
    pub(crate) limits: Limits,
    pub(crate) base: Url,
    pub(crate) sign_in: SignIn,
    /// The `session_id` cookie value.
    session: Mutex<Option<SecretString>>,
    login_lock: tokio::sync::Mutex<()>,
    /// The transaction this client opened and has not seen end.
    tx: Mutex<TxTrack>,
    /// Serializes opening, committing and rolling back, so that a rollback
    /// decided for one transaction is never sent after another was opened.
    pub(crate) tx_calls: tokio::sync::Mutex<()>,
    sign_ins: AtomicU64,
}

/// Which transaction of the session is open, as far as the client knows.
///
/// Every [`open`](SpsClient::open) hands out a new generation; a
/// [`Transaction`](super::Transaction) acts only while its generation is the
/// open one, so the guard of a transaction that ended (committed, rolled
/// back, timed out, discarded with an expired session) never acts on a later
/// transaction of the same session.
#[derive(Debug, Default)]
pub(crate) struct TxTrack {
    /// The generation of the open transaction.
    pub(crate) open: Option<u64>,
    /// The last generation handed out.
    pub(crate) last: u64,
    /// The open transaction's last guard was dropped while it was open: the
    /// next `open` rolls it back first.
    pub(crate) orphaned: bool,
}

/// A client of the SPS REST API (`https://{host}/api/`).
///
/// Cheap to clone (an `Arc`); clones share the session. Paths given to the
/// verbs are relative to `/api/` (`configuration/rdp/channel_policies`), or
/// absolute hrefs as found in `meta` (`/api/configuration/...?offset=500`).
#[derive(Clone)]
pub struct SpsClient {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for SpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpsClient")
            .field("base", &self.inner.base.as_str())
            .field("sign_in", &self.inner.sign_in)
            .field("signed_in", &self.is_signed_in())
            .field("in_transaction", &self.in_transaction())
            .finish()
    }
}

/// `METHOD /path` for error messages (no query string).
fn label(method: &Method, url: &Url) -> String {
    format!("{method} {}", url.path())
}

impl SpsClient {
    /// Starts configuring a client of the SPS at `host` (`sps.example.com`,
    /// `10.0.0.5:8443` or `https://sps.example.com`).
    pub fn builder(host: impl Into<String>) -> SpsClientBuilder {
        SpsClientBuilder {
            host: host.into(),
            tls: TlsOptions::default(),
            sign_in: SignIn::Anonymous,
            user_agent: USER_AGENT.to_string(),
            timeout: None,
            limits: Limits::default(),
            proxy: Proxy::default(),
            session: None,
        }
    }

    /// The base URL (`https://host/`).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// Whether the client holds a session cookie.
    pub fn is_signed_in(&self) -> bool {
        self.inner
            .session
            .lock()
            .map(|s| s.is_some())
            .unwrap_or(false)
    }

    /// The session's `session_id` cookie, if signed in: a secret, to keep
    /// where secrets are kept and hand to [`SpsClientBuilder::session_id`].
    pub fn session_id(&self) -> Option<SecretString> {
        self.current_session()
    }

    /// How many times the client has signed in (re-logins included).
    pub fn sign_in_count(&self) -> u64 {
        self.inner.sign_ins.load(Ordering::SeqCst)
    }

    /// The limits the client was built with.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Whether the client believes one of its transactions is open.
    pub fn in_transaction(&self) -> bool {
        self.tx_track().open.is_some()
    }

    pub(crate) fn tx_track(&self) -> MutexGuard<'_, TxTrack> {
        self.inner
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the open transaction (the server no longer has it); whether
    /// there was one.
    pub(crate) fn end_tracking(&self) -> bool {
        let mut t = self.tx_track();
        t.orphaned = false;
        t.open.take().is_some()
    }

    /// Forgets the open transaction if it is `generation`; whether it was.
    pub(crate) fn end_tracking_of(&self, generation: u64) -> bool {
        let mut t = self.tx_track();
        if t.open == Some(generation) {
            t.open = None;
            t.orphaned = false;
            true
        } else {
            false
        }
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        let p = path.trim();
        let rel = if let Some(rest) = p.strip_prefix("/api/") {
            format!("api/{rest}")
        } else if p == "/api" || p == "api" {
            "api".to_string()
        } else if let Some(rest) = p.strip_prefix("api/") {
            format!("api/{rest}")
        } else {
            format!("api/{}", p.trim_start_matches('/'))
        };
        self.inner
            .base
            .join(&rel)
            .map_err(|e| Error::Config(format!("invalid path {path:?}: {e}")))
    }

    /// The sign-in methods SPS offers (anonymous call).
    pub async fn login_methods(&self) -> Result<Vec<LoginMethod>> {
        let url = self.url("authentication/login_methods")?;
        let label = label(&Method::GET, &url);
        let request = self
            .inner
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json");
        let resp = self.answer_head(&label, request).await?;
        if !resp.status().is_success() {
            return Err(SpsError::from_api(self.error_answer(resp, label).await).into());
        }
        let body = self.answer_body(resp, &label).await?;
        model::parse_login_methods(&body)
    }

    /// Signs in now (otherwise the first call does). Replaces any session.
    pub async fn sign_in(&self) -> Result<()> {
        let _guard = self.inner.login_lock.lock().await;
        self.sign_in_locked().await
    }

    async fn sign_in_locked(&self) -> Result<()> {
        let mut url = self.url("authentication")?;
        let label = label(&Method::GET, &url);
        let (status, set_cookies) = match &self.inner.sign_in {
            SignIn::Anonymous => return Err(Error::Config(
                "no credentials or client certificate: this client can only make anonymous calls"
                    .into(),
            )),
            SignIn::Basic {
                user,
                password,
                login_method,
            } => {
                if let Some(m) = login_method {
                    url.query_pairs_mut().append_pair("login_method", m);
                }
                // Not reqwest's `basic_auth`, whose buffers are never wiped.
                let authorization = crate::secret::basic(user, password.expose_secret())
                    .ok_or_else(|| {
                        Error::Config("the SPS user name or password cannot be sent".into())
                    })?;
                let request = self
                    .inner
                    .secret_http
                    .get(url.clone())
                    .header(ACCEPT, "application/json")
                    .header(AUTHORIZATION, authorization);
                let resp = self.answer_head(&label, request).await?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(SpsError::from_api(self.error_answer(resp, label).await).into());
                }
                let cookies = set_cookie_values(resp.headers());
                // Read in full, within the limits.
                self.answer_body(resp, &label).await?;
                (status, cookies)
            }
            SignIn::Certificate(_) => {
                let certificate = self.inner.certificate.as_ref().ok_or_else(|| {
                    Error::Config("the certificate sign-in was not set up".into())
                })?;
                url.query_pairs_mut().append_pair("type", "x509");
                // Boxed: the sign-in is part of every call's future.
                Box::pin(certificate.sign_in(url)).await?
            }
        };
        let sid = set_cookies
            .iter()
            .find_map(|c| session_cookie(c))
            .ok_or_else(|| {
                error::decode(Some(status), "the sign-in answer set no session_id cookie")
            })?;
        if let Ok(mut s) = self.inner.session.lock() {
            *s = Some(sid);
        }
        // A new session has no transaction.
        self.end_tracking();
        self.inner.sign_ins.fetch_add(1, Ordering::SeqCst);
        tracing::debug!(target: "safeguard_sdk::sps", "signed in to {}", self.inner.base);
        Ok(())
    }

    /// Signs out (`DELETE /api/authentication`) and forgets the session.
    pub async fn sign_out(&self) -> Result<()> {
        let had = self.current_session().is_some();
        if had {
            let r = self.execute(Method::DELETE, "authentication", None).await;
            self.forget_session();
            // The server discards the session's transaction with it.
            self.end_tracking();
            r.map(|_| ())
        } else {
            Ok(())
        }
    }

    fn current_session(&self) -> Option<SecretString> {
        self.inner.session.lock().ok().and_then(|s| s.clone())
    }

    fn forget_session(&self) {
        if let Ok(mut s) = self.inner.session.lock() {
            *s = None;
        }
    }

    async fn ensure_session(&self) -> Result<SecretString> {
        if let Some(s) = self.current_session() {
            return Ok(s);
        }
        let _guard = self.inner.login_lock.lock().await;
        if let Some(s) = self.current_session() {
            return Ok(s);
        }
        self.sign_in_locked().await?;
        self.current_session()
            .ok_or_else(|| error::decode(None, "no session after signing in"))
    }

    /// Sends a request with the session cookie and returns the successful
    /// response. Signs in again once when the session expired outside a
    /// transaction; inside one, fails with
    /// [`SpsError::SessionExpiredInTransaction`].
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let url = self.url(path)?;
        let span = CallSpan::new("sps", method.as_str(), url.path());
        span.run(self.send_to(method, url, body), |r| {
            Some(r.status().as_u16())
        })
        .await
    }

    /// [`send`](Self::send) to `url`.
    async fn send_to(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let payload: Option<Vec<u8>> = match body {
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| Error::Config(e.to_string()))?),
            None if method == Method::POST || method == Method::PUT => Some(b"{}".to_vec()),
            None => None,
        };
        for attempt in 0..2 {
            let sid = self.ensure_session().await?;
            // The transaction open when the request leaves: an answer saying
            // the session has none ends that one, never one opened meanwhile.
            let tracked = self.tx_track().open;
            let cookie =
                crate::secret::header(&["session_id=", sid.expose_secret()]).ok_or_else(|| {
                    error::decode(None, "the session_id cookie is not a valid header value")
                })?;
            let mut req = self
                .inner
                .secret_http
                .request(method.clone(), url.clone())
                .header(ACCEPT, "application/json")
                .header(COOKIE, cookie);
            if let Some(p) = &payload {
                req = req.header(CONTENT_TYPE, "application/json").body(p.clone());
            }
            let resp = self.answer_head(&label(&method, &url), req).await?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            let err = self.error_answer(resp, label(&method, &url)).await;
            if status == StatusCode::UNAUTHORIZED && err.code != "AuthenticationFailure" {
                // The session is gone (idle expiry, signed out elsewhere).
                if let Ok(mut s) = self.inner.session.lock() {
                    if s.as_ref().map(|c| c.expose_secret() == sid.expose_secret()) == Some(true) {
                        *s = None;
                    }
                }
                if tracked.is_some_and(|g| self.end_tracking_of(g)) {
                    return Err(SpsError::SessionExpiredInTransaction(Box::new(err)).into());
                }
                if attempt == 0 {
                    tracing::debug!(target: "safeguard_sdk::sps", "session expired, signing in again");
                    continue;
                }
            }
            let e = SpsError::from_api(err);
            if let (SpsError::NoTransaction(_), Some(g)) = (&e, tracked) {
                // The session has no transaction: it timed out.
                self.end_tracking_of(g);
            }
            return Err(e.into());
        }
        Err(error::decode(
            Some(StatusCode::UNAUTHORIZED),
            "the session expired again right after signing in",
        ))
    }

    pub(crate) async fn execute(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Bytes> {
        let resp = self.send(method.clone(), path, body).await?;
        let label = label(&method, resp.url());
        self.answer_body(resp, &label).await
    }

    /// Sends `request` and waits for its answer's status and headers within
    /// [`Limits::answer_timeout`].
    async fn answer_head(
        &self,
        label: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let sent = request.send();
        self.inner
            .limits
            .head(|| label.to_owned(), async {
                sent.await.map_err(crate::Error::from_reqwest)
            })
            .await
    }

    /// The whole body of an answer, within [`Limits::max_answer_bytes`] and
    /// [`Limits::answer_timeout`].
    async fn answer_body(&self, resp: reqwest::Response, label: &str) -> Result<Bytes> {
        crate::limits::read_body(resp, label, &self.inner.limits)
            .await
            .map(|(_, body)| body)
    }

    /// An error answer, its body read up to [`Limits::max_error_bytes`] (the
    /// rest is never read).
    async fn error_answer(&self, resp: reqwest::Response, label: String) -> SpsApiError {
        let status = resp.status();
        let body =
            safeguard_api::answer::read_prefix(resp, self.inner.limits.max_error_bytes).await;
        SpsApiError::from_parts(status, label, &body)
    }

    // ---- generic verbs --------------------------------------------------

    /// `GET` a node; `body` decodes into `T` (use [`Value`] for anything).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<SpsResponse<T>> {
        let b = self.execute(Method::GET, path, None).await?;
        model::parse_response(&b)
    }

    /// `GET` a node as raw JSON (lists, changelogs, anything).
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let b = self.execute(Method::GET, path, None).await?;
        serde_json::from_slice(&b).map_err(|e| error::decode(None, e.to_string()))
    }

    /// Follows an href from `meta` (`/api/...`), as raw JSON.
    pub async fn follow(&self, href: &str) -> Result<Value> {
        self.get_json(href).await
    }

    /// `POST` a JSON body, sent as given (see [`create`](Self::create) for
    /// objects).
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SpsResponse<T>> {
        let v = to_value(body)?;
        let b = self.execute(Method::POST, path, Some(&v)).await?;
        model::parse_response(&b)
    }

    /// `PUT` a JSON body, sent as given (see [`replace`](Self::replace) for
    /// objects).
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SpsResponse<T>> {
        let v = to_value(body)?;
        let b = self.execute(Method::PUT, path, Some(&v)).await?;
        model::parse_response(&b)
    }

    /// `DELETE` a node (inside a transaction for configuration objects).
    pub async fn delete(&self, path: &str) -> Result<SpsResponse<Value>> {
        let b = self.execute(Method::DELETE, path, None).await?;
        model::parse_response(&b)
    }

    // ---- lists and navigation ------------------------------------------

    /// One page of a list (`{items, meta}`).
    pub async fn page(&self, path: &str) -> Result<SpsPage> {
        let b = self.execute(Method::GET, path, None).await?;
        model::parse_page(&b)
    }

    /// Every page of a list, following `meta.next`. A `meta.next` that leads
    /// back to a page already read ends the listing with
    /// [`Error::Paging`]`(`[`PagingError::Cycle`]`)`, and so does a
    /// listing longer than [`Limits::max_pages`] (with
    /// [`PagingError::TooManyPages`]).
    pub fn pages(&self, path: &str) -> impl Stream<Item = Result<SpsPage>> + Send + 'static {
        struct Walk {
            client: SpsClient,
            next: Option<String>,
            /// The absolute URLs of the pages read (or being read).
            visited: HashSet<String>,
            read: u32,
        }
        let max_pages = self.inner.limits.max_pages;
        let start = Walk {
            client: self.clone(),
            next: Some(path.to_string()),
            visited: HashSet::new(),
            read: 0,
        };
        stream::try_unfold(start, move |mut walk| async move {
            let Some(path) = walk.next.take() else {
                return Ok(None);
            };
            // `url` puts every href on this host, and makes `x`, `/api/x`
            // and `api/x` the same page.
            if !walk.visited.insert(walk.client.url(&path)?.to_string()) {
                return Err(Error::Paging(PagingError::Cycle { next: path }));
            }
            if let Some(limit) = max_pages.filter(|m| walk.read >= *m) {
                return Err(Error::Paging(PagingError::TooManyPages { limit }));
            }
            let page = walk.client.page(&path).await?;
            walk.read = walk.read.saturating_add(1);
            walk.next = page.meta.next.clone().filter(|n| !n.trim().is_empty());
            Ok(Some((page, walk)))
        })
    }

    /// Every item of a list, across pages.
    pub fn items(&self, path: &str) -> impl Stream<Item = Result<ListItem>> + Send + 'static {
        items_of(self.pages(path))
    }

    /// The children of a node (every page), e.g. `children("configuration")`.
    pub async fn children(&self, path: &str) -> Result<Vec<ListItem>> {
        self.items(path).try_collect().await
    }

    // ---- objects ---------------------------------------------------------

    /// Fetches an object and returns it ready to be written back: the body
    /// without its envelope, references flattened to bare keys.
    pub async fn fetch_for_write(&self, path: &str) -> Result<Value> {
        let r = self.get::<Value>(path).await?;
        Ok(model::flatten_references(r.body))
    }

    /// Creates an object under a list (`POST` to the parent) and returns its
    /// new key. References given as `{key, meta}` are sent as bare keys and a
    /// `{key, body, meta}` envelope is unwrapped; empty lists are kept.
    pub async fn create<B: Serialize + ?Sized>(&self, parent: &str, object: &B) -> Result<String> {
        let v = model::flatten_references(to_value(object)?);
        let r: SpsResponse<Value> = self.post(parent, &v).await?;
        r.key
            .ok_or_else(|| error::decode(Some(StatusCode::CREATED), "the create answer has no key"))
    }

    /// Replaces an object (`PUT` of the whole object), flattening references
    /// like [`create`](Self::create).
    pub async fn replace<B: Serialize + ?Sized>(
        &self,
        path: &str,
        object: &B,
    ) -> Result<SpsResponse<Value>> {
        let v = model::flatten_references(to_value(object)?);
        self.put(path, &v).await
    }

    /// Reads an object, lets `edit` change it, and replaces it.
    pub async fn modify(
        &self,
        path: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<SpsResponse<Value>> {
        let mut v = self.fetch_for_write(path).await?;
        edit(&mut v);
        self.replace(path, &v).await
    }

    /// Reorders a list: `keys` is every key of the list in the new order.
    pub async fn reorder(&self, list: &str, keys: &[String]) -> Result<SpsResponse<Value>> {
        self.put(list, keys).await
    }
}

fn to_value<B: Serialize + ?Sized>(b: &B) -> Result<Value> {
    serde_json::to_value(b).map_err(|e| Error::Config(format!("cannot serialize the body: {e}")))
}

/// The `Set-Cookie` values (the session cookie among them), wiped once read.
fn set_cookie_values(headers: &HeaderMap) -> Vec<Zeroizing<String>> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(|s| Zeroizing::new(s.to_owned())))
        .collect()
}

/// The `session_id` value of a `Set-Cookie` header, if it sets a non-empty one.
pub fn session_cookie(set_cookie: &str) -> Option<SecretString> {
    let first = set_cookie.split(';').next()?;
    let (name, value) = first.split_once('=')?;
    let value = value.trim().trim_matches('"');
    if name.trim() == "session_id" && !value.is_empty() {
        Some(SecretString::from(value.to_string()))
    } else {
        None
    }
}

/// The items of a stream of pages, in order.
pub(super) fn items_of(
    pages: impl Stream<Item = Result<SpsPage>> + Send + 'static,
) -> impl Stream<Item = Result<ListItem>> + Send + 'static {
    pages
        .map_ok(|p| stream::iter(p.items.into_iter().map(Ok)))
        .try_flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for (host, base) in [
            ("10.0.0.5:8443", "https://10.0.0.5:8443/"),
            ("https://sps.example.com/", "https://sps.example.com/"),
            ("[::1]:9", "https://[::1]:9/"),
        ] {
            let c = SpsClient::builder(host).build().expect(host);
            assert_eq!(c.base_url().as_str(), base);
        }
        for bad in ["http://sps", "", "https://sps/x?y"] {
            assert!(SpsClient::builder(bad).build().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hrefs_of_another_host_stay_on_this_one() {
        let c = SpsClient::builder("sps.example").build().expect("client");
        for href in [
            "https://evil.example/api/configuration",
            "//evil.example/api/configuration",
            "/api/https://evil.example/x",
        ] {
            let url = c.url(href).expect("url");
            assert_eq!(url.host_str(), Some("sps.example"), "{href} -> {url}");
        }
    }

    #[test]
    fn call_futures_stay_small() {
        // Every call may sign in; the certificate sign-in is boxed so that
        // it does not swell every call's future: nested in a listing,
        // unboxed it overflowed the 2 MiB stack of a test thread in debug
        // builds.
        let c = SpsClient::builder("sps.example")
            .credentials("u", "p".to_string())
            .build()
            .expect("client");
        assert!(std::mem::size_of_val(&c.get_json("x")) < 8 * 1024);
        assert!(std::mem::size_of_val(&c.sign_in()) < 8 * 1024);
    }

    #[test]
    fn cookies() {
        let s = session_cookie("session_id=abc; Path=/api; Secure").expect("cookie");
        assert_eq!(s.expose_secret(), "abc");
        assert!(session_cookie("session_id=; Max-Age=0").is_none());
        assert!(session_cookie("other=1").is_none());
        let mut headers = HeaderMap::new();
        headers.append(SET_COOKIE, "session_id=abc; Path=/api".parse().unwrap());
        headers.append(SET_COOKIE, "other=1".parse().unwrap());
        let values: Vec<Zeroizing<String>> = set_cookie_values(&headers);
        assert_eq!(values.len(), 2);
        assert_eq!(session_cookie(&values[0]).unwrap().expose_secret(), "abc");
    }
}
