//! [`SpsClient`]: sign-in, the session cookie, generic verbs, paging and
//! navigation.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, Stream, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::error::{Result, SpsApiError, SpsError};
use super::model::{self, ListItem, LoginMethod, SpsPage, SpsResponse};
use crate::tls::{ClientIdentity, TlsOptions};

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
}

impl SpsClientBuilder {
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
    /// over OpenSSL so that a post-handshake certificate request is answered.
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

    /// A timeout for each request (none by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Builds the client. No request is made: the client signs in on its
    /// first call (or with [`SpsClient::sign_in`]).
    pub fn build(self) -> Result<SpsClient> {
        let base = parse_host(&self.host)?;
        if let SignIn::Basic { user, .. } = &self.sign_in {
            if user.is_empty() {
                return Err(SpsError::Config(
                    "login_method was given without credentials".into(),
                ));
            }
        }
        let mut builder = self
            .tls
            .reqwest_builder()
            .map_err(|e| SpsError::Config(e.to_string()))?
            .user_agent(self.user_agent.clone());
        if let Some(t) = self.timeout {
            builder = builder.timeout(t);
        }
        let http = builder
            .build()
            .map_err(|e| SpsError::Config(e.to_string()))?;
        Ok(SpsClient {
            inner: Arc::new(Inner {
                http,
                base,
                tls: self.tls,
                sign_in: self.sign_in,
                user_agent: self.user_agent,
                timeout: self.timeout,
                session: Mutex::new(None),
                login_lock: tokio::sync::Mutex::new(()),
                in_transaction: AtomicBool::new(false),
                sign_ins: AtomicU64::new(0),
            }),
        })
    }
}

fn parse_host(host: &str) -> Result<Url> {
    let host = host.trim();
    if host.is_empty() {
        return Err(SpsError::Config("the SPS host is empty".into()));
    }
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    };
    let mut url = Url::parse(&with_scheme)
        .map_err(|e| SpsError::Config(format!("invalid SPS host {host:?}: {e}")))?;
    if url.scheme() != "https" {
        return Err(SpsError::Config(
            "the SPS REST API is served over https only".into(),
        ));
    }
    if url.host_str().is_none() {
        return Err(SpsError::Config(format!("invalid SPS host {host:?}")));
    }
    url.set_path("/");
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Url,
    pub(crate) tls: TlsOptions,
    pub(crate) sign_in: SignIn,
    pub(crate) user_agent: String,
    pub(crate) timeout: Option<Duration>,
    /// The `session_id` cookie value.
    session: Mutex<Option<SecretString>>,
    login_lock: tokio::sync::Mutex<()>,
    pub(crate) in_transaction: AtomicBool,
    sign_ins: AtomicU64,
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
            .field(
                "in_transaction",
                &self.inner.in_transaction.load(Ordering::SeqCst),
            )
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

    /// How many times the client has signed in (re-logins included).
    pub fn sign_in_count(&self) -> u64 {
        self.inner.sign_ins.load(Ordering::SeqCst)
    }

    /// Whether the client believes one of its transactions is open.
    pub fn in_transaction(&self) -> bool {
        self.inner.in_transaction.load(Ordering::SeqCst)
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
            .map_err(|e| SpsError::Config(format!("invalid path {path:?}: {e}")))
    }

    /// The sign-in methods SPS offers (anonymous call).
    pub async fn login_methods(&self) -> Result<Vec<LoginMethod>> {
        let url = self.url("authentication/login_methods")?;
        let resp = self
            .inner
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            return Err(SpsError::from_api(SpsApiError::from_parts(
                status,
                label(&Method::GET, &url),
                &body,
            )));
        }
        model::parse_login_methods(&body)
    }

    /// Signs in now (otherwise the first call does). Replaces any session.
    pub async fn sign_in(&self) -> Result<()> {
        let _guard = self.inner.login_lock.lock().await;
        self.sign_in_locked().await
    }

    async fn sign_in_locked(&self) -> Result<()> {
        let mut url = self.url("authentication")?;
        let (status, set_cookies, body) = match &self.inner.sign_in {
            SignIn::Anonymous => return Err(SpsError::Config(
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
                let resp = self
                    .inner
                    .http
                    .get(url.clone())
                    .header(ACCEPT, "application/json")
                    .basic_auth(user, Some(password.expose_secret()))
                    .send()
                    .await?;
                let status = resp.status();
                let cookies = set_cookie_values(resp.headers());
                (status, cookies, resp.bytes().await?.to_vec())
            }
            SignIn::Certificate(identity) => {
                url.query_pairs_mut().append_pair("type", "x509");
                let r = super::x509::get(
                    &self.inner.tls,
                    identity,
                    &url,
                    &self.inner.user_agent,
                    self.inner.timeout.unwrap_or(Duration::from_secs(60)),
                )
                .await?;
                let cookies = r
                    .headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
                    .map(|(_, v)| v.clone())
                    .collect();
                (r.status, cookies, r.body)
            }
        };
        if !status.is_success() {
            return Err(SpsError::from_api(SpsApiError::from_parts(
                status,
                format!("GET {}", url.path()),
                &body,
            )));
        }
        let sid = set_cookies
            .iter()
            .find_map(|c| session_cookie(c))
            .ok_or_else(|| SpsError::Decode {
                status: Some(status),
                message: "the sign-in answer set no session_id cookie".into(),
            })?;
        if let Ok(mut s) = self.inner.session.lock() {
            *s = Some(sid);
        }
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
        self.current_session().ok_or_else(|| SpsError::Decode {
            status: None,
            message: "no session after signing in".into(),
        })
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
        let payload: Option<Vec<u8>> = match body {
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| SpsError::Config(e.to_string()))?),
            None if method == Method::POST || method == Method::PUT => Some(b"{}".to_vec()),
            None => None,
        };
        for attempt in 0..2 {
            let sid = self.ensure_session().await?;
            let mut cookie = HeaderValue::from_str(&format!("session_id={}", sid.expose_secret()))
                .map_err(|_| SpsError::Decode {
                    status: None,
                    message: "the session_id cookie is not a valid header value".into(),
                })?;
            cookie.set_sensitive(true);
            let mut req = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(ACCEPT, "application/json")
                .header(COOKIE, cookie);
            if let Some(p) = &payload {
                req = req.header(CONTENT_TYPE, "application/json").body(p.clone());
            }
            let resp = req.send().await?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            let body = resp.bytes().await?;
            let err = SpsApiError::from_parts(status, label(&method, &url), &body);
            if status == StatusCode::UNAUTHORIZED && err.code != "AuthenticationFailure" {
                // The session is gone (idle expiry, signed out elsewhere).
                if let Ok(mut s) = self.inner.session.lock() {
                    if s.as_ref().map(|c| c.expose_secret() == sid.expose_secret()) == Some(true) {
                        *s = None;
                    }
                }
                if self.inner.in_transaction.swap(false, Ordering::SeqCst) {
                    return Err(SpsError::SessionExpiredInTransaction(Box::new(err)));
                }
                if attempt == 0 {
                    tracing::debug!(target: "safeguard_sdk::sps", "session expired, signing in again");
                    continue;
                }
            }
            let e = SpsError::from_api(err);
            if matches!(e, SpsError::NoTransaction(_)) && path_is_transaction(&url) {
                self.inner.in_transaction.store(false, Ordering::SeqCst);
            }
            return Err(e);
        }
        Err(SpsError::Decode {
            status: Some(StatusCode::UNAUTHORIZED),
            message: "the session expired again right after signing in".into(),
        })
    }

    pub(crate) async fn execute(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Bytes> {
        let resp = self.send(method, path, body).await?;
        Ok(resp.bytes().await?)
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
        serde_json::from_slice(&b).map_err(|e| SpsError::Decode {
            status: None,
            message: e.to_string(),
        })
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

    /// Every page of a list, following `meta.next`.
    pub fn pages(&self, path: &str) -> impl Stream<Item = Result<SpsPage>> + Send + 'static {
        let client = self.clone();
        let start = path.to_string();
        stream::try_unfold(
            (client, Some(start), 0usize),
            |(client, next, n)| async move {
                let Some(path) = next else { return Ok(None) };
                if n > 1_000_000 {
                    return Err(SpsError::Decode {
                        status: None,
                        message: "too many pages (meta.next loops?)".into(),
                    });
                }
                let page = client.page(&path).await?;
                let following = page
                    .meta
                    .next
                    .clone()
                    .filter(|n| !n.is_empty() && *n != path);
                Ok(Some((page, (client, following, n + 1))))
            },
        )
    }

    /// Every item of a list, across pages.
    pub fn items(&self, path: &str) -> impl Stream<Item = Result<ListItem>> + Send + 'static {
        self.pages(path)
            .map_ok(|p| stream::iter(p.items.into_iter().map(Ok)))
            .try_flatten()
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
        r.key.ok_or_else(|| SpsError::Decode {
            status: Some(StatusCode::CREATED),
            message: "the create answer has no key".into(),
        })
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

fn path_is_transaction(url: &Url) -> bool {
    url.path().trim_end_matches('/') == "/api/transaction"
}

fn to_value<B: Serialize + ?Sized>(b: &B) -> Result<Value> {
    serde_json::to_value(b).map_err(|e| SpsError::Config(format!("cannot serialize the body: {e}")))
}

fn set_cookie_values(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("10.0.0.5:8443").expect("ok").as_str(),
            "https://10.0.0.5:8443/"
        );
        assert_eq!(
            parse_host("https://sps.example.com/x?y")
                .expect("ok")
                .as_str(),
            "https://sps.example.com/"
        );
        assert!(parse_host("http://sps").is_err());
        assert!(parse_host("").is_err());
    }

    #[test]
    fn cookies() {
        let s = session_cookie("session_id=abc; Path=/api; Secure").expect("cookie");
        assert_eq!(s.expose_secret(), "abc");
        assert!(session_cookie("session_id=; Max-Age=0").is_none());
        assert!(session_cookie("other=1").is_none());
    }
}
