//! A hostile HTTPS server on loopback: it answers each request with a script
//! of raw bytes, pauses, endless streams, resets, so that tests can make
//! the SDK meet the misbehaviours the emulator never produces, and records
//! everything it received (to prove what did *not* reach a host).

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
}

impl Received {
    /// The request path with its query.
    pub fn target(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or_default()
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
    /// client goes away.
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

/// A running hostile server.
pub struct Hostile {
    /// Its address.
    pub addr: SocketAddr,
    /// `127.0.0.1:port`, as a client builder takes it.
    pub host: String,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    written: Arc<AtomicU64>,
}

impl Hostile {
    /// An HTTPS server (certificate for `127.0.0.1` by [`ca_pem`]) answering
    /// each request with `script(request)`.
    pub async fn https(script: impl Fn(&Received) -> Vec<Step> + Send + Sync + 'static) -> Self {
        Self::start(Some(tls_acceptor()), Arc::new(script), true).await
    }

    /// An HTTPS server that reads only the head of each request and never
    /// its body (a [`Step::Pause`] then holds the client's upload where
    /// the connection's buffers stop it); [`Received::body`] stays empty.
    pub async fn https_unread_body(
        script: impl Fn(&Received) -> Vec<Step> + Send + Sync + 'static,
    ) -> Self {
        Self::start(Some(tls_acceptor()), Arc::new(script), false).await
    }

    /// The same over plain HTTP.
    pub async fn plain(script: impl Fn(&Received) -> Vec<Step> + Send + Sync + 'static) -> Self {
        Self::start(None, Arc::new(script), true).await
    }

    async fn start(
        tls: Option<tokio_rustls::TlsAcceptor>,
        script: Arc<Script>,
        read_body: bool,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let (r, c, w) = (received.clone(), connections.clone(), written.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (tls, script, r, w) = (tls.clone(), script.clone(), r.clone(), w.clone());
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, &*script, &r, &w, read_body).await;
                            }
                        }
                        None => serve(tcp, &*script, &r, &w, read_body).await,
                    }
                });
            }
        });
        Self {
            addr,
            host: addr.to_string(),
            received,
            connections,
            written,
        }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// Connections accepted so far (TLS or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Body bytes the server managed to write for [`Step::Repeat`].
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

/// Serves requests on one connection until the client leaves or a step ends it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    script: &Script,
    log: &Mutex<Vec<Received>>,
    written: &AtomicU64,
    read_body: bool,
) {
    loop {
        let Some(request) = read_request(&mut stream, read_body).await else {
            return;
        };
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
                            ok = false;
                            break;
                        }
                        sent += n as u64;
                        written.fetch_add(n as u64, Ordering::SeqCst);
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

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = issue(true);
    let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}
