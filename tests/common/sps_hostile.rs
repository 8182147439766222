//! A misbehaving HTTPS server for the SPS client's safety tests: raw
//! HTTP/1.1 written by hand over OpenSSL, so that every byte (a redirect to
//! another host, a flood, silence) is the test's choice; and a record of
//! what it received (connections, request heads with their headers) and
//! how much of a flood it managed to write.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A certificate and its key.
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl Issued {
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().expect("cert PEM")
    }

    pub fn key_pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().expect("key PEM")
    }
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey")
}

fn build(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<&Issued>,
    ca: bool,
    sans: &[&str],
    serial: u32,
) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("CN");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(serial)
        .and_then(|n| n.to_asn1_integer())
        .expect("serial");
    b.set_serial_number(&serial).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name()))
        .expect("issuer");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("time"))
        .expect("not after");
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
            .expect("bc");
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .expect("ku"),
        )
        .expect("ku");
    }
    if !sans.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for s in sans {
            if s.parse::<std::net::IpAddr>().is_ok() {
                san.ip(s);
            } else {
                san.dns(s);
            }
        }
        let ext = san
            .build(&b.x509v3_context(issuer.map(|i| &*i.cert), None))
            .expect("san");
        b.append_extension(ext).expect("san");
    }
    b.sign(issuer.map_or(key, |i| &i.key), MessageDigest::sha256())
        .expect("sign");
    b.build()
}

/// A CA, and a server certificate for `127.0.0.1` and `localhost` it signed.
pub struct Pki {
    pub ca: Issued,
    pub server: Issued,
}

impl Pki {
    pub fn new() -> Self {
        let ca_key = ec_key();
        let ca = Issued {
            cert: build("Hostile Test CA", &ca_key, None, true, &[], 1),
            key: ca_key,
        };
        let server_key = ec_key();
        let server = Issued {
            cert: build(
                "hostile",
                &server_key,
                Some(&ca),
                false,
                &["127.0.0.1", "localhost"],
                2,
            ),
            key: server_key,
        };
        Self { ca, server }
    }

    pub fn ca_pem(&self) -> String {
        String::from_utf8(self.ca.cert_pem()).expect("PEM is text")
    }

    /// A client certificate signed by this CA (for the certificate sign-in).
    pub fn client(&self, cn: &str) -> Issued {
        let key = ec_key();
        Issued {
            cert: build(cn, &key, Some(&self.ca), false, &[], 3),
            key,
        }
    }

    fn acceptor(&self) -> Arc<SslAcceptor> {
        let mut b =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("acceptor");
        b.set_certificate(&self.server.cert).expect("cert");
        b.set_private_key(&self.server.key).expect("key");
        Arc::new(b.build())
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// The whole head (request line and headers), as text.
    pub head: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// What the server does with a request.
pub enum Reply {
    /// Writes these bytes and closes the connection.
    Bytes(Vec<u8>),
    /// Writes `head` (which must end with the blank line), then `total`
    /// bytes of body as fast as the client takes them (chunked when
    /// `chunked`, otherwise delimited by the end of the connection), then
    /// closes. Stops at the first failed write.
    Flood {
        head: String,
        total: u64,
        chunked: bool,
    },
    /// Writes `head` (possibly empty, possibly a head and part of a body)
    /// and then nothing, holding the connection until the client closes it.
    Stall(Vec<u8>),
}

impl Reply {
    /// A complete answer: `status`, `headers`, a JSON `body` with its length.
    pub fn json(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut head = format!("HTTP/1.1 {status} Hostile\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        Reply::Bytes(head.into_bytes())
    }

    /// The sign-in answer that sets `session_id=hostile-session`.
    pub fn signed_in() -> Reply {
        Reply::json(
            200,
            &[("Set-Cookie", "session_id=hostile-session; Path=/; Secure")],
            r#"{"key":"authentication","body":{},"meta":{}}"#,
        )
    }
}

/// What the server saw and did.
#[derive(Default)]
pub struct Record {
    /// TCP connections accepted (before any TLS).
    pub connections: AtomicUsize,
    /// Connections whose handling ended (closed by either side).
    pub finished: AtomicUsize,
    /// Body bytes of floods written so far.
    pub flood_written: AtomicU64,
    /// The requests received, in order.
    pub requests: Mutex<Vec<Request>>,
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running hostile server on `127.0.0.1`.
pub struct Server {
    pub addr: SocketAddr,
    pub record: Arc<Record>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a connection is served.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// TLS, then requests answered by the handler.
    Serve,
    /// Accepts TCP connections and never says a byte (not even TLS).
    Mute,
}

impl Server {
    /// Serves HTTPS with `pki`'s server certificate, answering every
    /// request with `handler`.
    pub async fn start(
        pki: &Pki,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Self::spawn(Mode::Serve, Some(pki.acceptor()), Arc::new(handler)).await
    }

    /// Accepts connections and says nothing at all (no TLS handshake).
    pub async fn mute() -> Server {
        Self::spawn(
            Mode::Mute,
            None,
            Arc::new(|_: &Request| Reply::Stall(vec![])),
        )
        .await
    }

    async fn spawn(mode: Mode, tls: Option<Arc<SslAcceptor>>, handler: Arc<Handler>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let record = Arc::new(Record::default());
        let rec = record.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                rec.connections.fetch_add(1, Ordering::SeqCst);
                let rec = rec.clone();
                let tls = tls.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    match (mode, tls) {
                        (Mode::Serve, Some(tls)) => {
                            if let Ok(ssl) = openssl::ssl::Ssl::new(tls.context()) {
                                if let Ok(mut s) = tokio_openssl::SslStream::new(ssl, tcp) {
                                    if Pin::new(&mut s).accept().await.is_ok() {
                                        serve(s, &rec, &*handler).await;
                                    }
                                }
                            }
                        }
                        _ => {
                            let mut tcp = tcp;
                            let mut sink = [0u8; 1024];
                            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                        }
                    }
                    rec.finished.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Server { addr, record, task }
    }

    /// `127.0.0.1:port`, as the SPS client takes a host.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn connections(&self) -> usize {
        self.record.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.record.requests.lock().expect("record").clone()
    }

    pub fn flood_written(&self) -> u64 {
        self.record.flood_written.load(Ordering::SeqCst)
    }

    /// Waits (up to 20 s) until every accepted connection was closed.
    pub async fn all_closed(&self) -> bool {
        for _ in 0..400 {
            if self.record.finished.load(Ordering::SeqCst) >= self.connections() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// Reads a request head (and discards its body); `None` when the client
/// closed or sent something unreadable.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf[..buf.len() - 4]).into_owned();
    let mut line = head.split("\r\n").next()?.split(' ');
    let request = Request {
        method: line.next()?.to_string(),
        target: line.next()?.to_string(),
        head: head.clone(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length.min(1 << 20)];
    s.read_exact(&mut body).await.ok()?;
    Some(request)
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, rec: &Record, handler: &Handler) {
    // One request per connection: every reply closes it.
    let Some(request) = read_request(&mut s).await else {
        return;
    };
    rec.requests.lock().expect("record").push(request.clone());
    match handler(&request) {
        Reply::Bytes(bytes) => {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
        Reply::Flood {
            head,
            total,
            chunked,
        } => {
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            const CHUNK: usize = 64 * 1024;
            let filler = vec![b'x'; CHUNK];
            let mut framed = format!("{CHUNK:x}\r\n").into_bytes();
            framed.extend_from_slice(&filler);
            framed.extend_from_slice(b"\r\n");
            let mut left = total;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                let wrote = if !chunked {
                    s.write_all(&filler[..n]).await
                } else if n == CHUNK {
                    s.write_all(&framed).await
                } else {
                    let mut last = format!("{n:x}\r\n").into_bytes();
                    last.extend_from_slice(&filler[..n]);
                    last.extend_from_slice(b"\r\n");
                    s.write_all(&last).await
                };
                if wrote.is_err() {
                    return;
                }
                rec.flood_written.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
            if chunked {
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
            let _ = s.shutdown().await;
        }
        Reply::Stall(head) => {
            if s.write_all(&head).await.is_err() || s.flush().await.is_err() {
                return;
            }
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    }
}
