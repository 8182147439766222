//! Shared helpers for the emulator's integration tests: reqwest clients over
//! rustls trusting the emulator's CA, a PKCE sign-in, and a small OpenSSL
//! HTTP/1.1 client that can answer post-handshake certificate requests.

#![allow(dead_code)]

use std::pin::Pin;
use std::time::Duration;

use base64::Engine;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use reqwest::{Certificate, Client, Identity, StatusCode};
use safeguard_emulator::{Emulator, EmulatorConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn start() -> Emulator {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(config: EmulatorConfig) -> Emulator {
    init();
    Emulator::start(config).await.expect("emulator starts")
}

pub fn base(emu: &Emulator) -> String {
    format!("https://{}", emu.spp_host())
}

pub fn core(emu: &Emulator, path: &str) -> String {
    format!("https://{}/service/core/v4/{path}", emu.spp_host())
}

/// A rustls client trusting only the emulator's CA.
pub fn client(emu: &Emulator) -> Client {
    builder(emu).build().expect("client")
}

pub fn builder(emu: &Emulator) -> reqwest::ClientBuilder {
    init();
    let ca = Certificate::from_pem(emu.ca_pem().as_bytes()).expect("CA");
    Client::builder()
        .tls_certs_only([ca])
        .http1_only()
        .timeout(Duration::from_secs(60))
}

/// A rustls client presenting the emulator's client certificate.
pub fn cert_client(emu: &Emulator) -> Client {
    let files = emu.client_cert();
    let mut pem = std::fs::read(&files.cert).unwrap();
    pem.extend(std::fs::read(&files.key).unwrap());
    builder(emu)
        .identity(Identity::from_pem(&pem).expect("identity"))
        .build()
        .unwrap()
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
    pub csrf: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = b64url(&rand::random::<[u8; 48]>());
        let challenge = b64url(&Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
            csrf: b64url(&rand::random::<[u8; 32]>()),
        }
    }

    pub fn url(&self, emu: &Emulator, step: u32) -> String {
        format!(
            "{}/RSTS/UserLogin/LoginController?response_type=code&code_challenge_method=S256&code_challenge={}&redirect_uri=urn:InstalledApplication&loginRequestStep={step}",
            base(emu),
            self.challenge
        )
    }

    pub async fn post(
        &self,
        c: &Client,
        emu: &Emulator,
        step: u32,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut body = vec![("csrfTokenTextbox", self.csrf.as_str())];
        body.extend_from_slice(form);
        c.post(self.url(emu, step))
            .header("Cookie", format!("CsrfToken={}", self.csrf))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&body).unwrap())
            .send()
            .await
            .unwrap()
    }
}

/// Full PKCE login; returns the rSTS access token.
pub async fn pkce_access_token(
    c: &Client,
    emu: &Emulator,
    provider: &str,
    user: &str,
    password: &str,
    otp: Option<&str>,
) -> String {
    let p = Pkce::new();
    let form = [
        ("directoryComboBox", provider),
        ("usernameTextbox", user),
        ("passwordTextbox", password),
    ];
    assert_eq!(p.post(c, emu, 1, &form).await.status(), 200);
    let r = p.post(c, emu, 3, &form).await;
    assert_eq!(r.status(), 200);
    let primary: Value = r.json().await.unwrap();
    if primary.get("SecondaryProviderID").is_some() {
        let state: Value = p.post(c, emu, 7, &form).await.json().await.unwrap();
        let state = state["State"].as_str().unwrap().to_string();
        let mut f = form.to_vec();
        f.push(("secondaryLoginTextbox", otp.expect("otp needed")));
        f.push(("secondaryAuthenticationStateTextbox", &state));
        assert_eq!(p.post(c, emu, 5, &f).await.status(), 200);
    }
    let r: Value = p.post(c, emu, 6, &form).await.json().await.unwrap();
    let url = r["RelyingPartyUrl"].as_str().unwrap();
    let code = url.split("code=").nth(1).unwrap().to_string();
    let tok: Value = c
        .post(format!("{}/RSTS/oauth2/token", base(emu)))
        .json(
            &json!({"grant_type": "authorization_code", "redirect_uri": "urn:InstalledApplication",
            "code": code, "code_verifier": p.verifier}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tok["access_token"].as_str().unwrap().to_string()
}

/// Exchanges an rSTS token for a user token.
pub async fn user_token(c: &Client, emu: &Emulator, sts: &str) -> String {
    let r = c
        .post(core(emu, "Token/LoginResponse"))
        .json(&json!({"StsAccessToken": sts}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Status"], "Success");
    v["UserToken"].as_str().unwrap().to_string()
}

/// The seeded admin's user token (PKCE).
pub async fn admin_token(c: &Client, emu: &Emulator) -> String {
    let sts = pkce_access_token(
        c,
        emu,
        "local",
        safeguard_emulator::ADMIN_USER,
        safeguard_emulator::ADMIN_PASSWORD,
        None,
    )
    .await;
    user_token(c, emu, &sts).await
}

/// A raw HTTP/1.1 answer.
#[derive(Debug)]
pub struct RawResponse {
    /// The head as sent (status line and headers, names in their case).
    pub head: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// An OpenSSL client connection; `post_handshake` enables TLS 1.3
/// post-handshake authentication, `with_cert` loads the client certificate.
pub async fn openssl_connect(
    emu: &Emulator,
    with_cert: bool,
    post_handshake: bool,
) -> tokio_openssl::SslStream<tokio::net::TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_ca_file(emu.connection().spp.ca.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER);
    if with_cert {
        let files = emu.client_cert();
        b.set_certificate_file(&files.cert, SslFiletype::PEM)
            .unwrap();
        b.set_private_key_file(&files.key, SslFiletype::PEM)
            .unwrap();
    }
    if post_handshake {
        // SAFETY: the builder owns a live SSL_CTX.
        unsafe { openssl_sys::SSL_CTX_set_post_handshake_auth(b.as_ptr(), 1) };
    }
    let connector = b.build();
    let ssl = connector
        .configure()
        .unwrap()
        .into_ssl("127.0.0.1")
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(emu.spp_host())
        .await
        .unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    Pin::new(&mut s).connect().await.unwrap();
    s
}

/// Sends one request over an OpenSSL stream and reads the answer (keep-alive).
pub async fn raw_request(
    s: &mut tokio_openssl::SslStream<tokio::net::TcpStream>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s.flush().await.unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut tmp))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "connection closed before the answer");
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut tmp).await.unwrap();
        assert!(n > 0);
        body.extend_from_slice(&tmp[..n]);
    }
    RawResponse {
        head,
        status,
        headers,
        body,
    }
}
