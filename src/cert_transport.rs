//! The certificate transport: HTTP/1.1 over OpenSSL with a client identity,
//! shared by certificate sign-in, A2A calls, the A2A event hub and the SPS
//! certificate sign-in.
//!
//! # Why OpenSSL and not rustls
//!
//! The appliance (Windows HTTP.sys) does not ask for the client certificate in
//! the first TLS handshake. It asks later, on the established connection, once
//! a request reaches an endpoint that needs it: with a renegotiation on TLS 1.2
//! and with post-handshake authentication (RFC 8446 §4.6.2) on TLS 1.3. rustls
//! can do neither, so a rustls client passes against a test server that asks in
//! the first handshake and then fails against a real appliance (403, code 60094
//! "Authorization is denied"); see `protocol.md` section 6. OpenSSL can do both:
//!
//! * TLS 1.3: the connector enables post-handshake authentication
//!   (`SSL_CTX_set_post_handshake_auth`, see
//!   [`TlsOptions::openssl_connector_builder`](crate::tls::TlsOptions)), so the client
//!   offers the `post_handshake_auth` extension and answers a later
//!   CertificateRequest with the configured certificate while it reads the
//!   response.
//! * TLS 1.2: an OpenSSL client accepts a server's (secure, RFC 5746)
//!   renegotiation request by default; nothing here turns that off
//!   (no `SSL_OP_NO_RENEGOTIATION`). It answers the HelloRequest while it
//!   reads the response, with a full handshake that presents the configured
//!   certificate. The emulator's `ClientCertMode::Renegotiation` tests this.
//!
//! HTTP/2 is never negotiated (ALPN offers `http/1.1` only): HTTP/2 forbids
//! renegotiation and post-handshake authentication.
//!
//! # Connection reuse
//!
//! Requests go through a small keep-alive pool (hyper-util's client over a
//! connector that opens TCP + OpenSSL connections), so many requests share
//! one TLS handshake, and on the appliance one certificate exchange: the
//! certificate answered after the handshake stays attached to the connection.
//!
//! A new connection resumes a TLS session the server handed out on an earlier
//! one (as rustls, and so reqwest, does by default) instead of a full
//! handshake; each session is offered once (RFC 8446, appendix C.4). A server
//! that declines falls back to a full handshake, and one that asks for the
//! client certificate again after a resumption gets it as after a full one.
//!
//! # Cluster members
//!
//! A transport may know several members of one Safeguard cluster. It sends
//! to the member in use and, when that member cannot be reached, moves on to
//! the next one ([`CertTransport::execute`]): every member serves A2A, a
//! replica too (the administration guide: users may "check out passwords"
//! on any member, and A2A retrieval is not a configuration change). With one
//! member the transport sends exactly as it always did.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslSession, SslSessionCacheMode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::error::{error_chain, Error, Result, TransportError};
use crate::host::Host;
use crate::limits::{Limits, WatchedBody};
use crate::proxy::{ConnectFailure, ProxyFailure, Rules as ProxyRules};
use crate::tls::{ClientIdentity, OpensslConnector, TlsOptions};
use crate::transport::Execute;

/// How long an idle pooled connection is kept by default. HTTP.sys drops
/// idle connections after about two minutes; stay well below.
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per host by default.
pub(crate) const DEFAULT_MAX_IDLE: usize = 8;
/// How long a call waits, once every cluster member failed it, before it
/// returns the failure: a caller that retries at once does not spin on
/// refused connections. Never longer than what is left of the call's timeout.
const ALL_MEMBERS_FAILED_BACKOFF: Duration = Duration::from_millis(250);

/// Connection-pool settings of a [`CertTransport`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolSettings {
    /// Idle connections kept per host; 0 opens a new connection per request.
    pub(crate) max_idle: usize,
    /// How long an idle connection is kept.
    pub(crate) idle_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_idle: DEFAULT_MAX_IDLE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// HTTP/1.1 over OpenSSL with a client certificate, pooled.
///
/// Cheap to share behind an `Arc`; every clone of the pool handle sees the
/// same connections. Connections are served by tasks on the tokio runtime
/// that opened them.
pub(crate) struct CertTransport {
    members: Members,
    thumbprint: String,
    connector: TlsConnector,
    client: Client<TlsConnector, reqwest::Body>,
    timeout: Option<Duration>,
    limits: Limits,
}

impl fmt::Debug for CertTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertTransport")
            .field("members", &self.members)
            .field("thumbprint", &self.thumbprint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CertTransport {
    /// A transport to `host` presenting `identity`, trusting what `tls` trusts. `timeout` bounds a
    /// whole request (connect, handshake, answer and body); `limits` bound
    /// connecting, waiting for an answer and silences while reading. It
    /// follows no redirect: every request it sends carries a certificate's
    /// or an API key's authority. Connections go through the proxy that
    /// `proxy` names for the host, in a `CONNECT` tunnel.
    pub(crate) fn new(
        host: &Host,
        tls: &TlsOptions,
        identity: ClientIdentity,
        timeout: Option<Duration>,
        limits: Limits,
        proxy: &ProxyRules,
    ) -> Result<Self> {
        Self::with_pool(
            host,
            tls,
            identity,
            timeout,
            limits,
            PoolSettings::default(),
            proxy,
        )
    }

    /// Like [`CertTransport::new`], with explicit pool settings.
    pub(crate) fn with_pool(
        host: &Host,
        tls: &TlsOptions,
        identity: ClientIdentity,
        timeout: Option<Duration>,
        limits: Limits,
        pool: PoolSettings,
        proxy: &ProxyRules,
    ) -> Result<Self> {
        Self::for_members(
            std::slice::from_ref(host),
            tls,
            identity,
            timeout,
            limits,
            pool,
            proxy,
        )
    }

    /// Like [`CertTransport::with_pool`], for the members of one cluster,
    /// tried in this order (duplicates dropped); the first is used first.
    /// No member is [`Error::Config`].
    pub(crate) fn for_members(
        members: &[Host],
        tls: &TlsOptions,
        identity: ClientIdentity,
        timeout: Option<Duration>,
        limits: Limits,
        pool: PoolSettings,
        proxy: &ProxyRules,
    ) -> Result<Self> {
        let members = Members::new(members)?;
        let host = members.host(0);
        let mut builder = tls.openssl_connector_builder(Some(&identity))?;
        let sessions = Arc::new(SessionCache::default());
        let key_index = session_key_index()?;
        builder.set_session_cache_mode(SslSessionCacheMode::CLIENT);
        let cache = sessions.clone();
        builder.set_new_session_callback(move |ssl, session| {
            if let Some(key) = ssl.ex_data(key_index) {
                cache.put(key, session);
            }
        });
        let connector = TlsConnector {
            ssl: OpensslConnector(builder.build()),
            sessions,
            key_index,
            default_target: (host.name().to_owned(), host.port()),
            connect_timeout: earliest(timeout, limits.connect_timeout),
            proxy: proxy.clone(),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(pool.idle_timeout)
            .pool_max_idle_per_host(pool.max_idle)
            .build(connector.clone());
        Ok(Self {
            members,
            thumbprint: identity.thumbprint().to_owned(),
            connector,
            client,
            timeout,
            limits,
        })
    }

    /// What the transport accepts from the server.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The appliance it connects to: the first member given.
    #[cfg_attr(not(feature = "a2a"), allow(dead_code))]
    pub(crate) fn host(&self) -> &Host {
        self.members.host(0)
    }

    /// Every member, in the order they are tried.
    #[cfg_attr(not(feature = "a2a"), allow(dead_code))]
    pub(crate) fn members(&self) -> &[Host] {
        &self.members.hosts
    }

    /// The member in use: the one that answered last (the first member
    /// until then).
    #[cfg_attr(not(feature = "a2a"), allow(dead_code))]
    pub(crate) fn current_member(&self) -> &Host {
        self.members.host(self.members.current())
    }

    /// SHA-1 thumbprint of the client certificate (upper-case hex).
    #[allow(dead_code)]
    pub(crate) fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The request timeout, if any.
    #[allow(dead_code)]
    pub(crate) fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Opens a new TLS connection to `member` with the client identity (not
    /// pooled), e.g. for a websocket. ALPN offers `http/1.1`; the stream
    /// answers post-handshake certificate requests like pooled connections.
    #[allow(dead_code)]
    pub(crate) async fn connect_tls(&self, member: &Host) -> Result<SslStream<TcpStream>> {
        self.connector
            .open(member.name(), member.port())
            .await
            .map_err(ConnectError::into_error)
    }

    /// Sends `request` and streams back the answer (any status is `Ok`).
    /// TLS failures are [`Error::Tls`], an expired timeout [`Error::Timeout`],
    /// other connection failures [`Error::Transport`].
    ///
    /// With several members the request goes to the member in use, whatever
    /// host its URL names, and moves on to the next member (each at most
    /// once) when:
    /// * the connection could not be opened (refused, connect timeout, TLS
    ///   handshake failure): the request never reached the member, so this
    ///   holds for every method;
    /// * the request is idempotent (`GET`, `HEAD`, `PUT`, `DELETE`,
    ///   `OPTIONS`, RFC 9110 section 9.2.2) and the connection broke or timed
    ///   out after it was sent, before the answer came, or the member
    ///   answered 503 (the service is unavailable there). A `POST` that may
    ///   have reached a member is never sent again. A body that breaks after
    ///   the answer's head is the caller's failure (the answer is returned).
    ///
    /// The member that answers is the one used next. When every member
    /// failed the call waits [`ALL_MEMBERS_FAILED_BACKOFF`] (within its
    /// timeout) and returns the last failure, naming the members tried.
    /// The whole call, every member included, stays within the timeout.
    pub(crate) async fn execute(&self, request: reqwest::Request) -> Result<reqwest::Response> {
        self.execute_on(request).await.map(|(response, _)| response)
    }

    /// Like [`CertTransport::execute`]; also says which member answered.
    pub(crate) async fn execute_on(
        &self,
        request: reqwest::Request,
    ) -> Result<(reqwest::Response, &Host)> {
        if self.members.len() == 1 {
            // One member: one attempt, as before clusters.
            let deadline = self
                .timeout
                .and_then(|t| tokio::time::Instant::now().checked_add(t));
            return match self.attempt(request, deadline).await {
                Ok(response) => Ok((response, self.members.host(0))),
                Err(failure) => Err(failure.error),
            };
        }
        self.fail_over(request).await
    }

    /// Sends `request` to the members in turn, from the one in use; see
    /// [`CertTransport::execute`].
    async fn fail_over(&self, request: reqwest::Request) -> Result<(reqwest::Response, &Host)> {
        let idempotent = crate::transport::is_idempotent(request.method());
        let deadline = self
            .timeout
            .and_then(|t| tokio::time::Instant::now().checked_add(t));
        let out_of_time = || deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        let order = self.members.order();
        let count = order.len();
        let mut next = Some(request);
        for (step, index) in order.enumerate() {
            let Some(mut request) = next.take() else {
                break;
            };
            let member = self.members.host(index);
            member.point(request.url_mut())?;
            // A copy for the next member (the body is shared, not copied:
            // bodies here are byte buffers); none when this is the last.
            if step + 1 < count {
                next = request.try_clone();
            }
            let to = self.members.host(self.members.after(index));
            match self.attempt(request, deadline).await {
                Ok(response)
                    if response.status() == http::StatusCode::SERVICE_UNAVAILABLE
                        && idempotent
                        && next.is_some()
                        && !out_of_time() =>
                {
                    tracing::warn!(
                        from = %member,
                        to = %to,
                        "the cluster member answered 503 (service unavailable); trying the next member"
                    );
                }
                Ok(response) => {
                    if response.status() != http::StatusCode::SERVICE_UNAVAILABLE {
                        self.settle(index);
                    }
                    return Ok((response, member));
                }
                Err(failure)
                    if failure.may_retry(idempotent) && next.is_some() && !out_of_time() =>
                {
                    tracing::warn!(
                        from = %member,
                        to = %to,
                        error = %failure.error,
                        "the cluster member failed the request; trying the next member"
                    );
                }
                Err(failure) => {
                    if step + 1 < count || !failure.may_retry(idempotent) {
                        return Err(failure.error);
                    }
                    // Every member failed.
                    tracing::warn!(
                        members = %self.members,
                        error = %failure.error,
                        "no cluster member could serve the request"
                    );
                    let pause = match deadline {
                        Some(d) => ALL_MEMBERS_FAILED_BACKOFF
                            .min(d.saturating_duration_since(tokio::time::Instant::now())),
                        None => ALL_MEMBERS_FAILED_BACKOFF,
                    };
                    tokio::time::sleep(pause).await;
                    return Err(all_failed(failure.error, &self.members));
                }
            }
        }
        Err(Error::Config(
            "the request could not be sent to another cluster member".into(),
        ))
    }

    /// Makes `index` the member in use, tracing the move.
    fn settle(&self, index: usize) {
        if let Some(from) = self.members.settle(index) {
            tracing::info!(
                from = %self.members.host(from),
                to = %self.members.host(index),
                "A2A moved to another cluster member"
            );
        }
    }

    /// One attempt at `request` against the host of its URL; `deadline`
    /// bounds the whole call.
    async fn attempt(
        &self,
        request: reqwest::Request,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<reqwest::Response, Failure> {
        let url = request.url().clone();
        if url.scheme() != "https" {
            return Err(Failure::fatal(Error::Config(format!(
                "the certificate transport only speaks https, not {}",
                url.scheme()
            ))));
        }
        let label = crate::transport::request_label(&request);
        let now = tokio::time::Instant::now();
        let head_deadline = earliest(
            deadline,
            self.limits.answer_timeout.and_then(|t| now.checked_add(t)),
        );
        let http_request = http::Request::<reqwest::Body>::try_from(request).map_err(|e| {
            Failure::fatal(Error::Config(format!(
                "cannot send {label}: {}",
                error_chain(&e)
            )))
        })?;
        let sent = self.client.request(http_request);
        let answer = match head_deadline {
            Some(d) => tokio::time::timeout_at(d, sent)
                .await
                .map_err(|_| Failure {
                    error: Error::Timeout(format!("{label}: no answer within {:?}", d - now)),
                    reach: Reach::Maybe,
                })?,
            None => sent.await,
        };
        let response = answer.map_err(|e| client_error(e, &label))?;
        let (parts, body) = response.into_parts();
        let body = reqwest::Body::wrap(WatchedBody::new(
            body,
            deadline,
            self.limits.read_timeout,
            body_error,
        ));
        let response = crate::limits::answer_at(url, parts, body);
        match crate::limits::unfollowed_redirect(&response) {
            Some(refused) => Err(Failure::fatal(Error::Redirect(refused))),
            None => Ok(response),
        }
    }
}

/// The last failure of a call that every member failed, saying so; of the
/// same kind (a connect failure stays one).
fn all_failed(error: Error, members: &Members) -> Error {
    let say = |what: &dyn fmt::Display| {
        format!("no member of the cluster ({members}) could be reached; the last one: {what}")
    };
    match error {
        Error::Tls(m) => Error::Tls(say(&m)),
        Error::Timeout(m) => Error::Timeout(say(&m)),
        Error::Transport(t) => {
            let kind = std::error::Error::source(&t)
                .and_then(|s| s.downcast_ref::<io::Error>())
                .map_or(io::ErrorKind::Other, io::Error::kind);
            transport_error(kind, say(&t), t.is_connect())
        }
        other => other,
    }
}

/// How far a failed attempt got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// The connection was never opened: the request did not reach the member.
    Unsent,
    /// The request may have reached the member (the connection broke or
    /// timed out afterwards).
    Maybe,
    /// A failure another member would not change (a bad request, a redirect).
    Final,
}

/// A failed attempt.
struct Failure {
    error: Error,
    reach: Reach,
}

impl Failure {
    fn fatal(error: Error) -> Self {
        Self {
            error,
            reach: Reach::Final,
        }
    }

    /// Whether the request may go to another member: when it never left,
    /// or when it is idempotent and the failure is the connection's.
    fn may_retry(&self, idempotent: bool) -> bool {
        match self.reach {
            Reach::Unsent => true,
            Reach::Maybe => {
                idempotent && matches!(self.error, Error::Timeout(_) | Error::Transport(_))
            }
            Reach::Final => false,
        }
    }
}

/// The members of one cluster and the one in use.
struct Members {
    /// Never empty, no duplicates.
    hosts: Box<[Host]>,
    /// Index of the member in use.
    current: AtomicUsize,
}

impl Members {
    fn new(given: &[Host]) -> Result<Self> {
        let mut hosts: Vec<Host> = Vec::with_capacity(given.len());
        for host in given {
            if !hosts.contains(host) {
                hosts.push(host.clone());
            }
        }
        if hosts.is_empty() {
            return Err(Error::Config("no appliance address was given".into()));
        }
        Ok(Self {
            hosts: hosts.into_boxed_slice(),
            current: AtomicUsize::new(0),
        })
    }

    fn len(&self) -> usize {
        self.hosts.len()
    }

    fn host(&self, index: usize) -> &Host {
        &self.hosts[index % self.hosts.len()]
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.hosts.len()
    }

    /// The member tried after `index`.
    fn after(&self, index: usize) -> usize {
        (index + 1) % self.hosts.len()
    }

    /// Every member once, from the one in use.
    fn order(&self) -> impl ExactSizeIterator<Item = usize> {
        let start = self.current();
        let len = self.hosts.len();
        (0..len).map(move |step| (start + step) % len)
    }

    /// Makes `index` the member in use; the one it replaces, if another.
    fn settle(&self, index: usize) -> Option<usize> {
        let index = index % self.hosts.len();
        let before = self.current.swap(index, Ordering::Relaxed) % self.hosts.len();
        (before != index).then_some(before)
    }
}

impl fmt::Display for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, host) in self.hosts.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{host}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Members")
            .field("hosts", &self.hosts)
            .field("current", &self.current())
            .finish()
    }
}

impl Execute for CertTransport {
    fn execute(
        &self,
        request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        CertTransport::execute(self, request)
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Reads a pool failure into the SDK's error, and how far the request got.
fn client_error(e: hyper_util::client::legacy::Error, label: &str) -> Failure {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<ConnectError>() {
            return Failure {
                error: c.to_error(),
                reach: Reach::Unsent,
            };
        }
        cur = err.source();
    }
    let chain = error_chain(&e);
    let error = if has_tls_error(&e) {
        Error::Tls(format!("{label}: {chain}"))
    } else {
        transport_error(
            io::ErrorKind::ConnectionAborted,
            format!("{label}: {chain}"),
            false,
        )
    };
    Failure {
        error,
        reach: Reach::Maybe,
    }
}

fn has_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<openssl::ssl::Error>().is_some()
            || err.downcast_ref::<openssl::error::ErrorStack>().is_some()
        {
            return true;
        }
        if let Some(inner) = err.downcast_ref::<io::Error>().and_then(|i| i.get_ref()) {
            if has_tls_error(inner) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// A connection failure that is neither TLS nor a timeout, with its
/// original kind (`ConnectionRefused`, `ConnectionReset`, ...); `connect`:
/// the connection was never opened.
fn transport_error(kind: io::ErrorKind, message: String, connect: bool) -> Error {
    Error::Transport(TransportError::from_io(
        io::Error::new(kind, message),
        connect,
    ))
}

/// Why a connection could not be opened.
#[derive(Debug)]
enum ConnectError {
    Tls(String),
    Io(io::ErrorKind, String),
    Timeout(String),
    /// The proxy could not be reached or refused the tunnel.
    Proxy(ProxyFailure),
}

impl ConnectError {
    fn to_error(&self) -> Error {
        match self {
            ConnectError::Tls(m) => Error::Tls(m.clone()),
            ConnectError::Io(k, m) => transport_error(*k, m.clone(), true),
            ConnectError::Timeout(m) => Error::Timeout(m.clone()),
            ConnectError::Proxy(p) => p.to_error(),
        }
    }

    fn into_error(self) -> Error {
        self.to_error()
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Tls(m) | ConnectError::Io(_, m) | ConnectError::Timeout(m) => {
                f.write_str(m)
            }
            ConnectError::Proxy(p) => f.write_str(&p.message),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Sessions kept for resumption per `host:port`, at the most.
const MAX_SESSIONS_PER_TARGET: usize = 8;

/// TLS sessions handed out by servers, by `host:port`, for resumption.
#[derive(Default)]
struct SessionCache {
    sessions: Mutex<HashMap<String, VecDeque<SslSession>>>,
}

impl SessionCache {
    fn put(&self, target: &str, session: SslSession) {
        let Ok(mut all) = self.sessions.lock() else {
            return;
        };
        let queue = all.entry(target.to_owned()).or_default();
        if queue.len() >= MAX_SESSIONS_PER_TARGET {
            queue.pop_front();
        }
        queue.push_back(session);
    }

    /// The newest session for `target`, removed: each is offered once.
    fn take(&self, target: &str) -> Option<SslSession> {
        self.sessions.lock().ok()?.get_mut(target)?.pop_back()
    }
}

/// Where each connection records its `host:port`, so that the new-session
/// callback knows under which target to keep the session.
fn session_key_index() -> Result<Index<Ssl, String>> {
    static INDEX: OnceLock<Index<Ssl, String>> = OnceLock::new();
    if let Some(index) = INDEX.get() {
        return Ok(*index);
    }
    let index = Ssl::new_ex_index().map_err(|e| Error::Tls(e.to_string()))?;
    Ok(*INDEX.get_or_init(|| index))
}

/// Opens TCP + OpenSSL connections for the pool.
#[derive(Clone)]
struct TlsConnector {
    ssl: OpensslConnector,
    sessions: Arc<SessionCache>,
    key_index: Index<Ssl, String>,
    default_target: (String, u16),
    connect_timeout: Option<Duration>,
    /// Which proxy, if any, connections go through.
    proxy: ProxyRules,
}

impl TlsConnector {
    async fn open(&self, host: &str, port: u16) -> Result<SslStream<TcpStream>, ConnectError> {
        let work = self.open_unbounded(host, port);
        match self.connect_timeout {
            Some(t) => tokio::time::timeout(t, work).await.map_err(|_| {
                ConnectError::Timeout(format!(
                    "connecting to {host}:{port} took longer than {t:?}"
                ))
            })?,
            None => work.await,
        }
    }

    async fn open_unbounded(
        &self,
        host: &str,
        port: u16,
    ) -> Result<SslStream<TcpStream>, ConnectError> {
        // Directly or through a CONNECT tunnel; TLS runs end to end with
        // `host` either way.
        let tcp = crate::proxy::connect(self.proxy.server_for(host), host, port)
            .await
            .map_err(|e| match e {
                ConnectFailure::Direct(e) => {
                    ConnectError::Io(e.kind(), format!("cannot connect to {host}:{port}: {e}"))
                }
                ConnectFailure::Proxy(p) => ConnectError::Proxy(p),
            })?;
        let tls = |e: openssl::error::ErrorStack| {
            ConnectError::Tls(format!("TLS setup for {host}:{port}: {e}"))
        };
        let target = format!("{host}:{port}");
        let mut ssl = self.ssl.ssl(host).map_err(tls)?;
        if let Some(session) = self.sessions.take(&target) {
            // SAFETY: the session was handed out on a connection of this
            // connector's own context (its new-session callback keeps it).
            unsafe { ssl.set_session(&session) }.map_err(tls)?;
        }
        ssl.set_ex_data(self.key_index, target);
        let mut stream = SslStream::new(ssl, tcp).map_err(tls)?;
        if let Err(e) = Pin::new(&mut stream).connect().await {
            let verify = stream.ssl().verify_result();
            let detail = if verify.as_raw() != 0 {
                format!(": server certificate rejected: {}", verify.error_string())
            } else {
                String::new()
            };
            return Err(if e.ssl_error().is_some() || verify.as_raw() != 0 {
                ConnectError::Tls(format!(
                    "TLS handshake with {host}:{port} failed{detail}: {e}"
                ))
            } else {
                match e.io_error() {
                    Some(io) => ConnectError::Io(
                        io.kind(),
                        format!("connection to {host}:{port} broke during the TLS handshake: {io}"),
                    ),
                    None => {
                        ConnectError::Tls(format!("TLS handshake with {host}:{port} failed: {e}"))
                    }
                }
            });
        }
        Ok(stream)
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsConn>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (host, port) = match uri.host() {
                Some(h) => (
                    h.trim_start_matches('[').trim_end_matches(']').to_owned(),
                    uri.port_u16().unwrap_or(443),
                ),
                None => this.default_target.clone(),
            };
            this.open(&host, port)
                .await
                .map(|s| TokioIo::new(TlsConn(s)))
        })
    }
}

/// A pooled TLS connection.
struct TlsConn(SslStream<TcpStream>);

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A broken body as an I/O error: `InvalidData` for TLS, `ConnectionAborted`
/// for the rest.
fn body_error(e: hyper::Error) -> io::Error {
    let kind = if has_tls_error(&e) {
        io::ErrorKind::InvalidData
    } else {
        io::ErrorKind::ConnectionAborted
    };
    io::Error::new(kind, e)
}

/// The earlier of two optional limits.
fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Vec<Host> {
        names.iter().map(|n| Host::parse(n).unwrap()).collect()
    }

    #[test]
    fn members_are_tried_once_each_from_the_one_in_use() {
        let m = Members::new(&hosts(&["a", "b:8443", "c"])).unwrap();
        assert_eq!(m.order().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(m.settle(2), Some(0));
        assert_eq!(m.order().collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(m.after(2), 0);
        assert_eq!(m.settle(2), None, "no move, nothing to report");
        assert_eq!(m.current(), 2);
        assert_eq!(m.to_string(), "a, b:8443, c");
    }

    #[test]
    fn duplicate_members_are_dropped_and_none_is_a_config_error() {
        let m = Members::new(&hosts(&["a", "b", "a", "https://b/"])).unwrap();
        assert_eq!(m.len(), 2);
        assert!(matches!(Members::new(&[]), Err(Error::Config(_))));
    }

    #[test]
    fn only_what_cannot_have_been_done_is_sent_again() {
        let failure = |error: Error, reach| Failure { error, reach };
        let refused = || transport_error(io::ErrorKind::ConnectionRefused, "x".into(), true);
        let reset = || transport_error(io::ErrorKind::ConnectionReset, "x".into(), false);
        // A connection never opened: any method.
        assert!(failure(refused(), Reach::Unsent).may_retry(false));
        assert!(failure(Error::Tls("handshake".into()), Reach::Unsent).may_retry(false));
        // Broken after sending: idempotent calls only.
        assert!(failure(reset(), Reach::Maybe).may_retry(true));
        assert!(!failure(reset(), Reach::Maybe).may_retry(false));
        assert!(failure(Error::Timeout("t".into()), Reach::Maybe).may_retry(true));
        assert!(!failure(Error::Timeout("t".into()), Reach::Maybe).may_retry(false));
        // A TLS failure on an open connection is the certificate's, everywhere.
        assert!(!failure(Error::Tls("renegotiation".into()), Reach::Maybe).may_retry(true));
        assert!(!Failure::fatal(Error::Config("bad".into())).may_retry(true));
    }

    #[test]
    fn when_every_member_failed_the_error_keeps_its_kind_and_names_them() {
        let m = Members::new(&hosts(&["a", "b"])).unwrap();
        let e = all_failed(
            transport_error(io::ErrorKind::ConnectionRefused, "refused".into(), true),
            &m,
        );
        match &e {
            Error::Transport(t) => {
                assert!(t.is_connect());
                let text = t.to_string();
                assert!(text.contains("a, b") && text.contains("refused"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            all_failed(Error::Timeout("slow".into()), &m),
            Error::Timeout(m) if m.contains("a, b")
        ));
    }
}
