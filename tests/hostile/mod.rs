//! A hostile HTTPS server on loopback: it answers each request with a script
//! of raw bytes, pauses, endless streams, resets, so that tests can make
//! the SDK meet the misbehaviours the emulator never produces, and records
//! everything it received (to prove what did *not* reach a host).
//!
//! One server for every such test (`misbehaving_server.rs`, `transfer.rs`,
//! `sps_safety.rs`): HTTPS (rustls) or plain HTTP, keep-alive unless a
//! script ends the connection, optionally asking for a client certificate
//! ([`Hostile::https_client_auth`]), or accepting connections and never
//! saying a byte ([`Hostile::mute`]).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Received {
    /// `METHOD /path?query HTTP/1.1`.
    pub line: String,
    /// The header block, as text.
    pub headers: String,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
    /// The certificate (DER) the client presented on this request's
    /// connection, if the server asked for one and got it.
    pub client_certificate: Option<Vec<u8>>,
}

impl Received {
    /// The request path with its query.
    pub fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or_default()
    }

    /// The value of header `name` (the first one), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Everything received, as lossy text (for "no secret here" checks).
    pub fn text(&self) -> String {
        format!(
            "{}\r\n{}\r\n{}",
            self.line,
            self.headers,
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// What the server does, in order, to answer one request.
#[derive(Clone, Debug)]
pub enum Step {
    /// Writes these bytes.
    Send(Vec<u8>),
    /// Writes `chunk` again and again up to `total` bytes, or until the
    /// client goes away (counted by [`Hostile::abandoned`]).
    Repeat { chunk: Vec<u8>, total: u64 },
    /// Writes these bytes one at a time, pausing between them.
    Trickle { bytes: Vec<u8>, every: Duration },
    /// Waits.
    Pause(Duration),
    /// Never answers (holds the connection open until the client leaves).
    Hang,
    /// Closes the connection abruptly (TCP reset where possible).
    Reset,
}

/// `HTTP/1.1 {status}` with `headers` and `body` (`Content-Length` added).
pub fn answer(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Step {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Step::Send(bytes)
}

/// A JSON answer.
pub fn json(status: u16, body: &str) -> Step {
    answer(
        status,
        &[("Content-Type", "application/json; charset=utf-8")],
        body.as_bytes(),
    )
}

/// A redirect to `location`.
pub fn redirect(status: u16, location: &str) -> Step {
    answer(status, &[("Location", location)], b"")
}

/// The head of an answer whose body is sent by the next steps: chunked
/// when `length` is `None`.
pub fn head(status: u16, length: Option<u64>) -> Step {
    let framing = match length {
        Some(l) => format!("Content-Length: {l}"),
        None => "Transfer-Encoding: chunked".to_owned(),
    };
    Step::Send(
        format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{framing}\r\n\r\n")
            .into_bytes(),
    )
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

type Script = dyn Fn(&Received) -> Vec<Step> + Send + Sync;

/// How the server meets a connection.
#[derive(Clone)]
enum Listen {
    /// Plain HTTP.
    Plain,
    /// HTTPS.
    Tls(tokio_rustls::TlsAcceptor),
    /// Accepts the connection and never says a byte (not even TLS).
    Mute,
}

/// What the server counts.
#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    closed: AtomicUsize,
    written: AtomicU64,
    abandoned: AtomicUsize,
}

/// A running hostile server. It stops accepting connections when dropped.
pub struct Hostile {
    /// Its address.
    pub addr: SocketAddr,
    /// `127.0.0.1:port`, as a client builder takes it.
    pub host: String,
    received: Arc<Mutex<Vec<Received>>>,
    counters: Arc<Counters>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Hostile {
    /// An HTTPS server (certificate for `127.0.0.1` by [`ca_pem`]) answering
    /// each request with `script(request)`.
    pub async fn https(script: impl Fn(&Received) -> Vec<Step> + Send + Sync + 'static) -> Self {
        Self::start(Listen::Tls(tls_acceptor(false)), Arc::new(script), true).await
    }

    /// An HTTPS server that asks for a client certificate in the handshake
    /// and checks it against [`ca_pem`] (as the SPS certificate port and a
    /// test appliance do): a client without one still gets through, a
    /// client with one the CA did not sign does not.
    /// [`Received::client_certificate`] says what was presented.
    pub async fn https_client_auth(
        script: impl Fn(&Received) -> Vec<Step> + Send + Sync + 'static,
    ) -> Self {
        Self::start(Listen::Tls(tls_acceptor(true)), Arc::new(script), true).await
    }

    /// An HTTPS server that reads only the head of each request and never
    /// its body (a [`Step::Pause`] then holds the client's upload where
    /// the connection's buffers stop it); [`Received::body`] stays empty.
    pub async fn https_unread_body(
        script: impl Fn(&Received) -> Vec<Step> + Send + Sync + 'static,
    ) -> Self {
        Self::start(Listen::Tls(tls_acceptor(false)), Arc::new(script), false).await
    }

    /// The same over plain HTTP.
    pub async fn plain(script: impl Fn(&Received) -> Vec<Step> + Send + Sync + 'static) -> Self {
        Self::start(Listen::Plain, Arc::new(script), true).await
    }

    /// A server that accepts connections and never says a byte: no TLS
    /// handshake, no answer (what it is sent is read and dropped).
    pub async fn mute() -> Self {
        Self::start(
            Listen::Mute,
            Arc::new(|_: &Received| vec![Step::Hang]),
            true,
        )
        .await
    }

    async fn start(listen: Listen, script: Arc<Script>, read_body: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let (r, c) = (received.clone(), counters.clone());
        let accepting = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::SeqCst);
                let (listen, script, r, c) = (listen.clone(), script.clone(), r.clone(), c.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match listen {
                        Listen::Tls(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let presented = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|chain| chain.first())
                                    .map(|leaf| leaf.to_vec());
                                serve(stream, &*script, &r, &c, read_body, presented).await;
                            }
                        }
                        Listen::Plain => serve(tcp, &*script, &r, &c, read_body, None).await,
                        Listen::Mute => {
                            let mut tcp = tcp;
                            let mut sink = [0u8; 1024];
                            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                        }
                    }
                    c.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            host: addr.to_string(),
            received,
            counters,
            accepting,
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// Connections accepted so far (TLS or not).
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Connections that ended so far (closed by either side).
    pub fn closed(&self) -> usize {
        self.counters.closed.load(Ordering::SeqCst)
    }

    /// Body bytes the server managed to write for [`Step::Repeat`].
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::SeqCst)
    }

    /// [`Step::Repeat`]s cut short because the client went away.
    pub fn abandoned(&self) -> usize {
        self.counters.abandoned.load(Ordering::SeqCst)
    }

    /// Waits (up to 20 s) until `n` [`Step::Repeat`]s were cut short by
    /// the client; whether they were.
    pub async fn wait_abandoned(&self, n: usize) -> bool {
        for _ in 0..400 {
            if self.abandoned() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Serves requests on one connection until the client leaves or a step ends it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    script: &Script,
    log: &Mutex<Vec<Received>>,
    counters: &Counters,
    read_body: bool,
    client_certificate: Option<Vec<u8>>,
) {
    loop {
        let Some(mut request) = read_request(&mut stream, read_body).await else {
            return;
        };
        request.client_certificate = client_certificate.clone();
        log.lock().expect("log").push(request.clone());
        for step in script(&request) {
            let ok = match step {
                Step::Send(bytes) => stream.write_all(&bytes).await.is_ok(),
                Step::Repeat { chunk, total } => {
                    let mut sent = 0u64;
                    let mut ok = true;
                    while sent < total {
                        let n = chunk.len().min((total - sent) as usize);
                        if stream.write_all(&chunk[..n]).await.is_err() {
                            counters.abandoned.fetch_add(1, Ordering::SeqCst);
                            ok = false;
                            break;
                        }
                        sent += n as u64;
                        counters.written.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    ok
                }
                Step::Trickle { bytes, every } => {
                    let mut ok = true;
                    for b in bytes {
                        if stream.write_all(&[b]).await.is_err() || stream.flush().await.is_err() {
                            ok = false;
                            break;
                        }
                        tokio::time::sleep(every).await;
                    }
                    ok
                }
                Step::Pause(d) => {
                    let _ = stream.flush().await;
                    tokio::time::sleep(d).await;
                    true
                }
                Step::Hang => {
                    let _ = stream.flush().await;
                    // Until the client closes its side.
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
                Step::Reset => return,
            };
            if !ok || stream.flush().await.is_err() {
                return;
            }
        }
    }
}

/// Reads one request (head, then a `Content-Length` body unless
/// `read_body` is false); `None` when the client closed or sent something
/// unreadable.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S, read_body: bool) -> Option<Received> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let (line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let length = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let length = if read_body { length } else { 0 };
    let mut body = vec![0u8; length.min(16 << 20)];
    stream.read_exact(&mut body).await.ok()?;
    Some(Received {
        line: line.to_owned(),
        headers: headers.trim_end().to_owned(),
        body,
        client_certificate: None,
    })
}

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA");
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "Hostile Test CA");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    })
}

/// The PEM of the CA every hostile server's certificate is signed by.
pub fn ca_pem() -> String {
    pki().ca_pem.clone()
}

/// The PEM of a CA that signed none of the hostile servers' certificates
/// (a new one at each call): a client trusting only it trusts no hostile
/// server.
pub fn stranger_ca_pem() -> String {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA");
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Hostile Test CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params.self_signed(&key).expect("CA").pem()
}

/// A certificate and key in PEM signed by the test CA: a server's (SANs
/// `127.0.0.1`, `localhost`) or a client's.
pub fn issue(server: bool) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let names = if server {
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(names).expect("params");
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        if server { "localhost" } else { "client" },
    );
    params.distinguished_name = name;
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &pki().issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// The server's TLS; `client_auth`: ask for a client certificate signed by
/// the test CA (optional: a client without one gets through).
fn tls_acceptor(client_auth: bool) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = issue(true);
    let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = if client_auth {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem().as_bytes()).expect("CA"))
            .expect("CA");
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .expect("client verifier");
        versions.with_client_cert_verifier(verifier)
    } else {
        versions.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key).expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
