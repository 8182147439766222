//! The HTTPS server: OpenSSL over tokio, HTTP/1.1 only (hyper), and the
//! client-certificate machinery.
//!
//! Client certificates are asked for optionally and any certificate is
//! accepted at the TLS layer; the application decides (unknown certificate →
//! 403), as the appliance does. Three ways of asking:
//!
//! * [`ClientCertMode::InHandshake`]: the server's CertificateRequest is part of
//!   the first handshake (what most test servers do).
//! * [`ClientCertMode::PostHandshake`]: the first handshake does not ask. When a
//!   request that needs a certificate arrives (A2A paths, the A2A hub and the
//!   certificate token grant), the handler calls
//!   `ConnHandle::request_client_certificate`, which sends a TLS 1.3
//!   post-handshake CertificateRequest (`SSL_verify_client_post_handshake`) on
//!   the same connection and reads until the client's answer (its `Finished`
//!   message) has been processed. A client that did not offer post-handshake
//!   authentication (rustls, or any TLS 1.2 connection) cannot be asked, and
//!   the request is answered like the appliance answers it: 403 with code 60094.
//! * [`ClientCertMode::Renegotiation`]: connections are TLS 1.2 only and the
//!   first handshake does not ask. When a request that needs a certificate
//!   arrives (the same requests as above), `request_client_certificate` sets
//!   the connection's verify mode to ask (optionally), calls `SSL_renegotiate`,
//!   sends the HelloRequest (`SSL_do_handshake`) and reads until the client's
//!   renegotiation handshake has completed (`SSL_renegotiate_pending` is 0);
//!   the certificate it presented is then the connection's. Only secure
//!   (RFC 5746) renegotiation, OpenSSL's default; renegotiations the client
//!   starts itself are refused (OpenSSL 3's default). A client that answers
//!   without a certificate gets 403 / 60094; one that refuses to renegotiate
//!   (rustls answers the HelloRequest with a `no_renegotiation` alert, which
//!   OpenSSL turns into a fatal `handshake_failure`) loses the connection.
//!
//! To let a handler drive the TLS connection while hyper owns it, the
//! connection lives behind a mutex shared by hyper's I/O adapter and the
//! handler; application data read while waiting for the client's certificate
//! is kept and handed to hyper first.

use std::io;
use std::os::raw::{c_int, c_void};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use foreign_types::{ForeignType, ForeignTypeRef};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use openssl::ex_data::Index;
use openssl::ssl::{
    AlpnError, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslRef, SslVerifyMode,
    SslVersion,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_openssl::SslStream;
use tower::ServiceExt;

use crate::certs::{subject_string, thumbprint, GeneratedCerts};
use crate::model::{ClientCertMode, EmulatorError};

/// The client certificate presented on the TLS connection that carried a
/// request, inserted into the request's extensions (both ports).
#[derive(Clone, Debug)]
pub struct PeerCertificate {
    /// SHA-1 of the DER encoding, upper-case hex (the appliance's thumbprint).
    pub thumbprint: String,
    /// The certificate, DER encoded.
    pub der: Vec<u8>,
    /// The subject, most specific part first (`CN=.., O=..`).
    pub subject: String,
}

impl PeerCertificate {
    fn from_x509(cert: &openssl::x509::X509Ref) -> Option<Self> {
        let der = cert.to_der().ok()?;
        Some(Self {
            thumbprint: thumbprint(&der),
            subject: subject_string(&cert.to_owned()),
            der,
        })
    }
}

extern "C" {
    fn SSL_verify_client_post_handshake(ssl: *mut openssl_sys::SSL) -> c_int;
    fn SSL_renegotiate(ssl: *mut openssl_sys::SSL) -> c_int;
    fn SSL_renegotiate_pending(ssl: *const openssl_sys::SSL) -> c_int;
    fn SSL_CTX_set_msg_callback(
        ctx: *mut openssl_sys::SSL_CTX,
        cb: Option<
            unsafe extern "C" fn(
                write_p: c_int,
                version: c_int,
                content_type: c_int,
                buf: *const c_void,
                len: usize,
                ssl: *mut openssl_sys::SSL,
                arg: *mut c_void,
            ),
        >,
    );
}

/// Per-connection counter of `Finished` handshake messages received from the client.
fn finished_index() -> Index<Ssl, Arc<AtomicU64>> {
    static INDEX: OnceLock<Index<Ssl, Arc<AtomicU64>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("OpenSSL ex_data index"))
}

const SSL3_RT_HANDSHAKE: c_int = 22;
const HANDSHAKE_FINISHED: u8 = 20;

unsafe extern "C" fn on_tls_message(
    write_p: c_int,
    _version: c_int,
    content_type: c_int,
    buf: *const c_void,
    len: usize,
    ssl: *mut openssl_sys::SSL,
    _arg: *mut c_void,
) {
    if write_p != 0 || content_type != SSL3_RT_HANDSHAKE || buf.is_null() || len == 0 {
        return;
    }
    // SAFETY: OpenSSL hands us `len` readable bytes at `buf` and a live SSL.
    let first = unsafe { *(buf as *const u8) };
    if first != HANDSHAKE_FINISHED || ssl.is_null() {
        return;
    }
    let ssl = unsafe { SslRef::from_ptr(ssl) };
    if let Some(counter) = ssl.ex_data(finished_index()) {
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// Server TLS contexts for the client-certificate modes.
pub(crate) struct TlsContexts {
    in_handshake: SslContext,
    post_handshake: SslContext,
    renegotiation: SslContext,
}

impl TlsContexts {
    pub(crate) fn new(certs: &GeneratedCerts) -> Result<Self, EmulatorError> {
        Ok(Self {
            in_handshake: build_context(certs, ClientCertMode::InHandshake)?,
            post_handshake: build_context(certs, ClientCertMode::PostHandshake)?,
            renegotiation: build_context(certs, ClientCertMode::Renegotiation)?,
        })
    }

    fn get(&self, mode: ClientCertMode) -> &SslContext {
        match mode {
            ClientCertMode::InHandshake => &self.in_handshake,
            ClientCertMode::PostHandshake => &self.post_handshake,
            ClientCertMode::Renegotiation => &self.renegotiation,
        }
    }
}

fn build_context(
    certs: &GeneratedCerts,
    mode: ClientCertMode,
) -> Result<SslContext, EmulatorError> {
    let e = |e: openssl::error::ErrorStack| EmulatorError::Tls(e.to_string());
    let mut b: SslContextBuilder = SslContext::builder(SslMethod::tls_server()).map_err(e)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(e)?;
    if mode == ClientCertMode::Renegotiation {
        // Like the appliance on TLS 1.2. Secure renegotiation only (the
        // default: no SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION), and only the
        // server starts one (OpenSSL 3 refuses client-initiated ones unless
        // SSL_OP_ALLOW_CLIENT_RENEGOTIATION). The renegotiation is a full
        // handshake: a client offers its session in it and resuming that
        // would skip the CertificateRequest.
        b.set_max_proto_version(Some(SslVersion::TLS1_2))
            .map_err(e)?;
        b.set_options(
            SslOptions::CIPHER_SERVER_PREFERENCE
                | SslOptions::NO_SESSION_RESUMPTION_ON_RENEGOTIATION,
        );
    } else {
        b.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::CIPHER_SERVER_PREFERENCE);
    }
    b.set_certificate(&certs.server_cert).map_err(e)?;
    b.set_private_key(&certs.server_key).map_err(e)?;
    b.add_extra_chain_cert(certs.ca_cert.clone()).map_err(e)?;
    b.check_private_key().map_err(e)?;
    b.set_alpn_select_callback(|_, client| {
        openssl::ssl::select_next_proto(b"\x08http/1.1", client).ok_or(AlpnError::NOACK)
    });
    let verify = match mode {
        ClientCertMode::InHandshake => SslVerifyMode::PEER,
        ClientCertMode::PostHandshake => SslVerifyMode::PEER | SslVerifyMode::POST_HANDSHAKE,
        // Asked for only in the renegotiation (see `Conn::renegotiate`).
        ClientCertMode::Renegotiation => SslVerifyMode::NONE,
    };
    // Any certificate is accepted here; the application decides what it is worth.
    b.set_verify_callback(verify, |_, _| true);
    b.set_session_id_context(match mode {
        ClientCertMode::InHandshake => b"sg-emulator-in",
        ClientCertMode::PostHandshake => b"sg-emulator-post",
        ClientCertMode::Renegotiation => b"sg-emulator-reneg",
    })
    .map_err(e)?;
    let ctx = b.build();
    // SAFETY: the context is alive and not shared yet; the callback is a plain function.
    unsafe { SSL_CTX_set_msg_callback(ctx.as_ptr(), Some(on_tls_message)) };
    Ok(ctx)
}

struct ConnInner {
    stream: SslStream<TcpStream>,
    /// Application data read while waiting for a post-handshake certificate.
    pending: BytesMut,
    /// hyper's read waker, woken when the certificate wait took over reading.
    read_waker: Option<Waker>,
    /// The certificate has been asked for after the handshake (once per connection).
    cert_asked: bool,
}

/// One accepted TLS connection, shared between hyper and the handlers.
pub(crate) struct Conn {
    inner: Mutex<ConnInner>,
    mode: ClientCertMode,
    finished: Arc<AtomicU64>,
    pha_lock: tokio::sync::Mutex<()>,
    pha_timeout: Duration,
}

/// Request extension giving handlers access to the connection that carried the request.
#[derive(Clone)]
pub(crate) struct ConnHandle(pub(crate) Arc<Conn>);

impl ConnHandle {
    /// The certificate already presented on this connection, if any.
    pub(crate) fn peer_certificate(&self) -> Option<PeerCertificate> {
        self.0.peer_certificate()
    }

    /// The client certificate of this connection; in the post-handshake and
    /// renegotiation modes asks for it now (once per connection) when it has
    /// not been presented yet.
    pub(crate) async fn request_client_certificate(&self) -> Option<PeerCertificate> {
        self.0.request_client_certificate().await
    }
}

impl Conn {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn peer_certificate(&self) -> Option<PeerCertificate> {
        let inner = self.lock();
        let cert = inner.stream.ssl().peer_certificate()?;
        PeerCertificate::from_x509(&cert)
    }

    async fn request_client_certificate(&self) -> Option<PeerCertificate> {
        if let Some(cert) = self.peer_certificate() {
            return Some(cert);
        }
        match self.mode {
            ClientCertMode::InHandshake => return None,
            ClientCertMode::PostHandshake => {}
            ClientCertMode::Renegotiation => return self.renegotiate().await,
        }
        let _serialized = self.pha_lock.lock().await;
        let before = {
            let mut inner = self.lock();
            if inner.cert_asked {
                drop(inner);
                return self.peer_certificate();
            }
            inner.cert_asked = true;
            if inner.stream.ssl().version2() != Some(SslVersion::TLS1_3) {
                tracing::debug!("client certificate needed on a pre-TLS 1.3 connection");
                return None;
            }
            let before = self.finished.load(Ordering::SeqCst);
            // SAFETY: the SSL is alive and exclusively ours while the mutex is held.
            let rc = unsafe { SSL_verify_client_post_handshake(inner.stream.ssl().as_ptr()) };
            if rc != 1 {
                // Typically: the client did not send the post_handshake_auth extension.
                let _ = openssl::error::ErrorStack::get();
                tracing::debug!("client cannot do post-handshake authentication");
                return None;
            }
            before
        };
        let sent = tokio::time::timeout(
            self.pha_timeout,
            std::future::poll_fn(|cx| {
                let mut inner = self.lock();
                Pin::new(&mut inner.stream).poll_do_handshake(cx)
            }),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!("sending the post-handshake CertificateRequest failed");
            self.wake_reader();
            return None;
        }
        let deadline = tokio::time::Instant::now() + self.pha_timeout;
        let mut answered = false;
        while tokio::time::Instant::now() < deadline {
            let attempt = std::future::poll_fn(|cx| {
                self.poll_answer(cx, |_| self.finished.load(Ordering::SeqCst) > before)
            });
            tokio::select! {
                r = attempt => { answered = r; break; }
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        if !answered && self.finished.load(Ordering::SeqCst) > before {
            answered = true;
        }
        self.wake_reader();
        if !answered {
            tracing::debug!("no answer to the post-handshake CertificateRequest");
        }
        self.peer_certificate()
    }

    /// Asks for the client certificate with a TLS 1.2 renegotiation and
    /// waits (at most the post-handshake timeout) until the client's new
    /// handshake has completed.
    async fn renegotiate(&self) -> Option<PeerCertificate> {
        let _serialized = self.pha_lock.lock().await;
        {
            let mut inner = self.lock();
            if inner.cert_asked {
                drop(inner);
                return self.peer_certificate();
            }
            inner.cert_asked = true;
            let ssl = inner.stream.ssl().as_ptr();
            // Ask for a certificate in the coming handshake, optionally (no
            // FAIL_IF_NO_PEER_CERT): a client without one gets 403 / 60094 from
            // the application, as on the appliance. A null callback keeps the
            // context's accept-anything one.
            // SAFETY: the SSL is alive and exclusively ours while the mutex is held.
            unsafe { openssl_sys::SSL_set_verify(ssl, SslVerifyMode::PEER.bits(), None) };
            // SAFETY: as above.
            if unsafe { SSL_renegotiate(ssl) } != 1 {
                let errors = openssl::error::ErrorStack::get();
                tracing::debug!("cannot renegotiate: {errors}");
                return None;
            }
        }
        let deadline = tokio::time::Instant::now() + self.pha_timeout;
        // Sends the HelloRequest; the client's handshake is read below.
        let sent = tokio::time::timeout_at(
            deadline,
            std::future::poll_fn(|cx| {
                let mut inner = self.lock();
                Pin::new(&mut inner.stream).poll_do_handshake(cx)
            }),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::debug!("sending the HelloRequest failed");
            self.wake_reader();
            return None;
        }
        let done = |inner: &ConnInner| {
            // SAFETY: the SSL is alive; the mutex is held by the caller.
            unsafe { SSL_renegotiate_pending(inner.stream.ssl().as_ptr()) == 0 }
        };
        let mut answered = false;
        while tokio::time::Instant::now() < deadline {
            let attempt = std::future::poll_fn(|cx| self.poll_answer(cx, done));
            tokio::select! {
                r = attempt => { answered = r; break; }
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        if !answered && done(&self.lock()) {
            answered = true;
        }
        self.wake_reader();
        if !answered {
            tracing::debug!("the client did not complete the renegotiation");
            return None;
        }
        self.peer_certificate()
    }

    /// Reads (keeping application data for hyper) until `done`.
    /// Ready(true) when done, Ready(false) on EOF or error.
    fn poll_answer(&self, cx: &mut Context<'_>, done: impl Fn(&ConnInner) -> bool) -> Poll<bool> {
        let mut inner = self.lock();
        loop {
            if done(&inner) {
                return Poll::Ready(true);
            }
            let mut tmp = [0u8; 8192];
            let mut buf = ReadBuf::new(&mut tmp);
            match Pin::new(&mut inner.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    if buf.filled().is_empty() {
                        return Poll::Ready(false);
                    }
                    let data = buf.filled().to_vec();
                    inner.pending.extend_from_slice(&data);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(false),
                Poll::Pending => {
                    if done(&inner) {
                        return Poll::Ready(true);
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn wake_reader(&self) {
        if let Some(w) = self.lock().read_waker.take() {
            w.wake();
        }
    }
}

/// hyper's view of a connection.
struct ConnIo(Arc<Conn>);

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.0.lock();
        if !inner.pending.is_empty() {
            let n = inner.pending.len().min(buf.remaining());
            buf.put_slice(&inner.pending[..n]);
            inner.pending.advance(n);
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut inner.stream).poll_read(cx, buf);
        if r.is_pending() {
            inner.read_waker = Some(cx.waker().clone());
        }
        r
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.0.lock();
        Pin::new(&mut inner.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.0.lock();
        Pin::new(&mut inner.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.0.lock();
        Pin::new(&mut inner.stream).poll_shutdown(cx)
    }
}

/// Where the accept loop reads the current client-certificate mode.
pub(crate) type ModeCell = Arc<AtomicU8>;

pub(crate) fn mode_to_u8(m: ClientCertMode) -> u8 {
    match m {
        ClientCertMode::InHandshake => 0,
        ClientCertMode::PostHandshake => 1,
        ClientCertMode::Renegotiation => 2,
    }
}

pub(crate) fn mode_from_u8(v: u8) -> ClientCertMode {
    match v {
        1 => ClientCertMode::PostHandshake,
        2 => ClientCertMode::Renegotiation,
        _ => ClientCertMode::InHandshake,
    }
}

/// Binds a loopback listener with a deep accept backlog.
pub(crate) fn bind(port: u16) -> Result<TcpListener, EmulatorError> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| EmulatorError::Bind(port, e))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| EmulatorError::Bind(port, e))?;
    socket
        .bind(addr)
        .map_err(|e| EmulatorError::Bind(port, e))?;
    socket
        .listen(4096)
        .map_err(|e| EmulatorError::Bind(port, e))
}

/// TLS handshakes completed on one port: full ones and session resumptions.
#[derive(Debug, Default)]
pub(crate) struct HandshakeCounts {
    pub(crate) full: AtomicU64,
    pub(crate) resumed: AtomicU64,
}

/// How long a stopped listener lets its requests in flight finish before it
/// aborts their connections.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long the open connections of a stopped listener are drained (see
/// `serve_connection`) before the idle ones close.
const STOP_DRAIN: Duration = Duration::from_millis(250);

/// Resolves once `stop` says `true`; never when its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Accepts connections until `stop` says `true`, serving `router` over TLS.
/// Then, as an appliance whose services shut down: new connections are
/// refused (the listener is closed), open connections are drained for
/// [`STOP_DRAIN`] (answers say `Connection: close`) and then closed, and
/// requests in flight finish (within [`STOP_GRACE`]) with their connection
/// closed after the answer. Aborting the task that runs this aborts every
/// connection it spawned.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    listener: TcpListener,
    contexts: Arc<TlsContexts>,
    mode: ModeCell,
    router: axum::Router,
    pha_timeout: Duration,
    handshakes: Arc<HandshakeCounts>,
    stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut stop_accepting = stop.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            () = stopped(&mut stop_accepting) => break,
        };
        let (tcp, _) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let cert_mode = mode_from_u8(mode.load(Ordering::SeqCst));
        let ctx = contexts.get(cert_mode).clone();
        let router = router.clone();
        let handshakes = handshakes.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let served =
                serve_connection(tcp, &ctx, cert_mode, router, pha_timeout, &handshakes, stop);
            if let Err(e) = served.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(STOP_GRACE, drained).await.is_err() {
        tracing::warn!("requests still in flight after {STOP_GRACE:?}: aborted");
    }
}

async fn serve_connection(
    tcp: TcpStream,
    ctx: &SslContext,
    mode: ClientCertMode,
    router: axum::Router,
    pha_timeout: Duration,
    handshakes: &HandshakeCounts,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let finished = Arc::new(AtomicU64::new(0));
    let mut ssl = Ssl::new(ctx).map_err(|e| e.to_string())?;
    ssl.set_ex_data(finished_index(), finished.clone());
    let mut stream = SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(30), Pin::new(&mut stream).accept()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
        Err(_) => return Err("TLS handshake timed out".into()),
    }
    if stream.ssl().session_reused() {
        handshakes.resumed.fetch_add(1, Ordering::Relaxed);
    } else {
        handshakes.full.fetch_add(1, Ordering::Relaxed);
    }
    let conn = Arc::new(Conn {
        inner: Mutex::new(ConnInner {
            stream,
            pending: BytesMut::new(),
            read_waker: None,
            cert_asked: false,
        }),
        mode,
        finished,
        pha_lock: tokio::sync::Mutex::new(()),
        pha_timeout,
    });
    let handle = ConnHandle(conn.clone());
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain_flag = draining.clone();
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        let handle = handle.clone();
        let router = router.clone();
        let draining = drain_flag.clone();
        async move {
            if let Some(cert) = handle.peer_certificate() {
                req.extensions_mut().insert(cert);
            }
            req.extensions_mut().insert(handle);
            let mut answer = router.oneshot(req.map(axum::body::Body::new)).await;
            if draining.load(Ordering::SeqCst) {
                if let Ok(a) = &mut answer {
                    a.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
            }
            answer
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // HTTP.sys, in front of the appliance, writes `Content-Length`,
        // `Content-Type`, ... in title case.
        .title_case_headers(true)
        .serve_connection(TokioIo::new(ConnIo(conn)), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => return served.map_err(|e| e.to_string()),
        () = stopped(&mut stop) => {}
    }
    // Stopping. First a drain: requests still come on open connections and
    // are answered with `Connection: close`, so that the client closes the
    // connection after the answer instead of sending on it while it is
    // being closed (a request that meets a closing keep-alive connection
    // cannot tell whether it was carried out). Then an idle connection
    // closes, and one with a request in flight after its answer.
    draining.store(true, Ordering::SeqCst);
    tokio::select! {
        served = connection.as_mut() => return served.map_err(|e| e.to_string()),
        () = tokio::time::sleep(STOP_DRAIN) => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await.map_err(|e| e.to_string())
}
