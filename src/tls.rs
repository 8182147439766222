//! TLS settings shared by every connection the SDK makes.
//!
//! One [`TlsOptions`] describes whom to trust and which protocol versions to
//! speak; it configures both transports of the SDK:
//!
//! - bearer traffic (sign-in, REST calls, events) goes through `reqwest` with
//!   rustls (ring provider, no process-wide state), HTTP/1.1 only;
//! - traffic that presents a client certificate ([`ClientIdentity`]: certificate
//!   sign-in, A2A, the A2A event hub) goes through OpenSSL, because the
//!   appliance asks for the certificate only after the handshake (TLS 1.2
//!   renegotiation, TLS 1.3 post-handshake authentication), which rustls
//!   cannot answer.
//!
//! ```
//! use safeguard_sdk::tls::{TlsOptions, TlsVersion};
//! let tls = TlsOptions::default().min_version(TlsVersion::Tls12);
//! # let _ = tls;
//! ```

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::X509;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};

use crate::error::{Error, Result};

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// Whom to trust and which TLS versions to speak.
///
/// By default the system's root certificates are trusted and TLS 1.2 and 1.3
/// are allowed. A CA given with [`with_ca_pem`](Self::with_ca_pem) or
/// [`with_ca_file`](Self::with_ca_file) replaces the system roots (as a
/// Python `verify="ca.pem"` does) unless [`with_system_roots`](Self::with_system_roots)
/// adds them back.
#[derive(Clone, Default)]
pub struct TlsOptions {
    ca_certs: Vec<CertificateDer<'static>>,
    system_roots: Option<bool>,
    accept_invalid_certs: bool,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_certs", &self.ca_certs.len())
            .field("system_roots", &self.uses_system_roots())
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .finish()
    }
}

impl TlsOptions {
    /// Trusts the CA certificates of a PEM bundle.
    pub fn with_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Result<Self> {
        let certs = parse_pem_certs(pem.as_ref())?;
        if certs.is_empty() {
            return Err(Error::Config(
                "the CA bundle holds no PEM certificate".into(),
            ));
        }
        self.ca_certs.extend(certs);
        Ok(self)
    }

    /// Trusts the CA certificates of a PEM file.
    pub fn with_ca_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| {
            Error::Config(format!("cannot read the CA file {}: {e}", path.display()))
        })?;
        self.with_ca_pem(pem)
    }

    /// Whether the system's roots are trusted as well as the given CAs.
    pub fn with_system_roots(mut self, yes: bool) -> Self {
        self.system_roots = Some(yes);
        self
    }

    /// Accepts any server certificate, valid or not. Dangerous: anyone on the
    /// path can read and change the traffic, tokens and passwords included.
    /// For throwaway test appliances only.
    pub fn danger_accept_invalid_certs(mut self, yes: bool) -> Self {
        self.accept_invalid_certs = yes;
        self
    }

    /// The lowest TLS version to speak.
    pub fn min_version(mut self, version: TlsVersion) -> Self {
        self.min_version = Some(version);
        self
    }

    /// The highest TLS version to speak.
    pub fn max_version(mut self, version: TlsVersion) -> Self {
        self.max_version = Some(version);
        self
    }

    /// Whether invalid certificates are accepted.
    pub fn accepts_invalid_certs(&self) -> bool {
        self.accept_invalid_certs
    }

    fn uses_system_roots(&self) -> bool {
        self.system_roots.unwrap_or(self.ca_certs.is_empty())
    }

    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>> {
        let min = self.min_version.unwrap_or(TlsVersion::Tls12);
        let max = self.max_version.unwrap_or(TlsVersion::Tls13);
        if min > max {
            return Err(Error::Config(format!(
                "minimum TLS version {min:?} is above the maximum {max:?}"
            )));
        }
        let mut v = Vec::new();
        if min <= TlsVersion::Tls13 && max >= TlsVersion::Tls13 {
            v.push(&rustls::version::TLS13);
        }
        if min <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
            v.push(&rustls::version::TLS12);
        }
        Ok(v)
    }

    /// The rustls configuration for bearer traffic.
    pub(crate) fn rustls_config(&self) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions()?)
            .map_err(|e| Error::Config(format!("TLS versions: {e}")))?;
        let mut config = if self.accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            if self.uses_system_roots() {
                for cert in system_roots() {
                    let _ = roots.add(cert.clone());
                }
            }
            for cert in &self.ca_certs {
                roots
                    .add(cert.clone())
                    .map_err(|e| Error::Config(format!("unusable CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A `reqwest` builder speaking HTTP/1.1 over rustls with these settings.
    #[cfg_attr(not(feature = "a2a"), allow(dead_code))]
    pub(crate) fn reqwest_builder(&self) -> Result<reqwest::ClientBuilder> {
        Ok(Self::reqwest_builder_with(self.rustls_config()?))
    }

    /// A reqwest client builder over an already made [`rustls_config`](Self::rustls_config).
    pub(crate) fn reqwest_builder_with(config: rustls::ClientConfig) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .http1_only()
            .tls_backend_preconfigured(config)
    }

    /// The OpenSSL client context of the certificate transport: the same
    /// trust and versions, the client identity, and post-handshake
    /// authentication on. Callers add to it (the certificate transport's
    /// session cache) and wrap the built context in [`OpensslConnector`].
    ///
    /// Made as `openssl::ssl::SslConnector::builder` makes its context (the
    /// same options, modes and cipher list) except that it does not load the
    /// system's trust store into a store that is then replaced: with OpenSSL
    /// 3.0 that load alone took ~50 ms of CPU for every A2A context,
    /// certificate sign-in and SPS certificate login. The system store is
    /// loaded only when it is trusted.
    pub(crate) fn openssl_connector_builder(
        &self,
        identity: Option<&ClientIdentity>,
    ) -> Result<SslContextBuilder> {
        let tls = |e: openssl::error::ErrorStack| Error::Tls(e.to_string());
        let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(tls)?;
        let options = (SslOptions::ALL
            | SslOptions::NO_COMPRESSION
            | SslOptions::NO_SSLV2
            | SslOptions::NO_SSLV3
            | SslOptions::SINGLE_DH_USE
            | SslOptions::SINGLE_ECDH_USE)
            & !SslOptions::DONT_INSERT_EMPTY_FRAGMENTS;
        b.set_options(options);
        b.set_mode(
            SslMode::AUTO_RETRY
                | SslMode::ACCEPT_MOVING_WRITE_BUFFER
                | SslMode::ENABLE_PARTIAL_WRITE
                | SslMode::RELEASE_BUFFERS,
        );
        b.set_cipher_list("DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK")
            .map_err(tls)?;
        let ossl_version = |v: TlsVersion| match v {
            TlsVersion::Tls12 => SslVersion::TLS1_2,
            TlsVersion::Tls13 => SslVersion::TLS1_3,
        };
        self.versions()?;
        b.set_min_proto_version(Some(ossl_version(
            self.min_version.unwrap_or(TlsVersion::Tls12),
        )))
        .map_err(tls)?;
        b.set_max_proto_version(Some(ossl_version(
            self.max_version.unwrap_or(TlsVersion::Tls13),
        )))
        .map_err(tls)?;
        if self.accept_invalid_certs {
            b.set_verify(SslVerifyMode::NONE);
        } else {
            let mut store = X509StoreBuilder::new().map_err(tls)?;
            if self.uses_system_roots() {
                store.set_default_paths().map_err(tls)?;
            }
            for cert in &self.ca_certs {
                let x509 = X509::from_der(cert).map_err(tls)?;
                store.add_cert(x509).map_err(tls)?;
            }
            b.set_verify_cert_store(store.build()).map_err(tls)?;
            b.set_verify(SslVerifyMode::PEER);
        }
        if let Some(id) = identity {
            b.set_certificate(&id.cert).map_err(tls)?;
            for extra in &id.chain {
                b.add_extra_chain_cert(extra.clone()).map_err(tls)?;
            }
            b.set_private_key(&id.key).map_err(tls)?;
            b.check_private_key().map_err(|e| {
                Error::Config(format!(
                    "the private key does not match the certificate: {e}"
                ))
            })?;
        }
        // SAFETY: the context pointer is valid for the builder's lifetime and
        // the call only sets a flag on it.
        unsafe {
            openssl_sys::SSL_CTX_set_post_handshake_auth(b.as_ptr(), 1);
        }
        b.set_alpn_protos(b"\x08http/1.1").map_err(tls)?;
        Ok(b)
    }
}

/// An OpenSSL client context of [`TlsOptions::openssl_connector_builder`]: makes the
/// `Ssl` of each connection, with SNI and the server's name checked.
#[derive(Clone)]
pub(crate) struct OpensslConnector(pub(crate) SslContext);

impl OpensslConnector {
    /// A client `Ssl` for `host` (a DNS name or an IP address): SNI for a
    /// name, and the server certificate must be valid for `host` (no partial
    /// wildcards), as `openssl::ssl::ConnectConfiguration` does it.
    pub(crate) fn ssl(&self, host: &str) -> std::result::Result<Ssl, openssl::error::ErrorStack> {
        let mut ssl = Ssl::new(&self.0)?;
        let ip = host.parse::<std::net::IpAddr>();
        if ip.is_err() {
            ssl.set_hostname(host)?;
        }
        let param = ssl.param_mut();
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match ip {
            Ok(ip) => param.set_ip(ip)?,
            Err(_) => param.set_host(host)?,
        }
        Ok(ssl)
    }
}

fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    X509::stack_from_pem(pem)
        .map_err(|e| Error::Config(format!("not a PEM certificate bundle: {e}")))?
        .into_iter()
        .map(|c| {
            c.to_der()
                .map(CertificateDer::from)
                .map_err(|e| Error::Config(format!("unusable certificate: {e}")))
        })
        .collect()
}

/// Accepts any server certificate (but still checks the handshake signatures).
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client certificate with its private key, presented by certificate
/// sign-in, A2A and the A2A event hub.
///
/// Loaded from PEM (certificate and key, the key optionally encrypted with a
/// passphrase) or from PKCS#12 (`.pfx`/`.p12`) with its password. The key
/// stays inside OpenSSL; `Debug` shows only the subject and thumbprint.
#[derive(Clone)]
pub struct ClientIdentity {
    cert: X509,
    chain: Vec<X509>,
    key: PKey<Private>,
    thumbprint: String,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("subject", &self.subject())
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// From a PEM certificate (optionally followed by its chain) and an
    /// unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self> {
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| {
            Error::Config(format!(
                "cannot read the private key (if it is encrypted, use from_encrypted_pem): {e}"
            ))
        })?;
        Self::from_cert_and_key(cert_pem, key)
    }

    /// From a PEM certificate and a passphrase-protected PEM private key.
    pub fn from_encrypted_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        passphrase: &SecretString,
    ) -> Result<Self> {
        let key =
            PKey::private_key_from_pem_passphrase(key_pem, passphrase.expose_secret().as_bytes())
                .map_err(|_| {
                Error::Config(
                    "cannot decrypt the private key: wrong passphrase or not a PEM key".into(),
                )
            })?;
        Self::from_cert_and_key(cert_pem, key)
    }

    /// From PEM files; `passphrase` when the key is encrypted.
    pub fn from_pem_files(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
        passphrase: Option<&SecretString>,
    ) -> Result<Self> {
        let cert = read_file(cert_path.as_ref(), "certificate")?;
        let key = zeroizing_read(key_path.as_ref(), "private key")?;
        match passphrase {
            Some(p) => Self::from_encrypted_pem(&cert, &key, p),
            None => Self::from_pem(&cert, &key),
        }
    }

    /// From PKCS#12 bytes and their password.
    pub fn from_pkcs12(der: &[u8], password: &SecretString) -> Result<Self> {
        let parsed = Pkcs12::from_der(der)
            .and_then(|p| p.parse2(password.expose_secret()))
            .map_err(|_| {
                Error::Config("cannot open the PKCS#12 file: wrong password or not PKCS#12".into())
            })?;
        let cert = parsed
            .cert
            .ok_or_else(|| Error::Config("the PKCS#12 file holds no certificate".into()))?;
        let key = parsed
            .pkey
            .ok_or_else(|| Error::Config("the PKCS#12 file holds no private key".into()))?;
        let chain = parsed
            .ca
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        Self::build(cert, chain, key)
    }

    /// From a PKCS#12 file and its password.
    pub fn from_pkcs12_file(path: impl AsRef<Path>, password: &SecretString) -> Result<Self> {
        let der = zeroizing_read(path.as_ref(), "PKCS#12 file")?;
        Self::from_pkcs12(&der, password)
    }

    fn from_cert_and_key(cert_pem: &[u8], key: PKey<Private>) -> Result<Self> {
        let mut certs = X509::stack_from_pem(cert_pem)
            .map_err(|e| Error::Config(format!("cannot read the certificate: {e}")))?
            .into_iter();
        let cert = certs
            .next()
            .ok_or_else(|| Error::Config("the certificate file holds no PEM certificate".into()))?;
        Self::build(cert, certs.collect(), key)
    }

    fn build(cert: X509, chain: Vec<X509>, key: PKey<Private>) -> Result<Self> {
        let public_matches = cert
            .public_key()
            .map(|p| p.public_eq(&key))
            .unwrap_or(false);
        // A mismatch leaves its reason on this thread's OpenSSL error queue,
        // where a later TLS read on the same thread would take it for its
        // own failure. Drain it.
        drop(openssl::error::ErrorStack::get());
        if !public_matches {
            return Err(Error::Config(
                "the private key does not match the certificate".into(),
            ));
        }
        let der = cert
            .to_der()
            .map_err(|e| Error::Config(format!("unusable certificate: {e}")))?;
        let thumbprint = hex::encode_upper(Sha1::digest(&der));
        Ok(Self {
            cert,
            chain,
            key,
            thumbprint,
        })
    }

    /// The SHA-1 thumbprint of the certificate, upper-case hex: how the
    /// appliance identifies a certificate user.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The certificate's subject, one line.
    pub fn subject(&self) -> String {
        self.cert
            .subject_name()
            .entries()
            .map(|e| {
                format!(
                    "{}={}",
                    e.object().nid().short_name().unwrap_or("?"),
                    e.data().to_string().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read the {what} {}: {e}", path.display())))
}

fn zeroizing_read(path: &Path, what: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    read_file(path, what).map(zeroize::Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::ssl::SslAcceptor;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509Builder, X509NameBuilder};
    use std::pin::Pin;

    /// A self-signed server certificate for `right.example` and its key.
    fn server_identity() -> (X509, PKey<Private>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "right.example").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns("right.example")
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }

    /// Handshakes the connector's `Ssl` for `name` with a server presenting
    /// `server`, over an in-memory pipe; the client's verification result
    /// on failure.
    async fn handshake(
        connector: &OpensslConnector,
        name: &str,
        server: &(X509, PKey<Private>),
    ) -> std::result::Result<(), String> {
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        acceptor.set_certificate(&server.0).unwrap();
        acceptor.set_private_key(&server.1).unwrap();
        let acceptor = acceptor.build();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server_task = tokio::spawn(async move {
            let ssl = Ssl::new(acceptor.context()).unwrap();
            let mut stream = tokio_openssl::SslStream::new(ssl, server_io).unwrap();
            let _ = Pin::new(&mut stream).accept().await;
        });
        let ssl = connector.ssl(name).unwrap();
        let mut stream = tokio_openssl::SslStream::new(ssl, client_io).unwrap();
        let result = Pin::new(&mut stream).connect().await;
        let verify = stream.ssl().verify_result();
        drop(stream);
        let _ = server_task.await;
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(format!("{} ({e})", verify.error_string())),
        }
    }

    impl TlsOptions {
        /// The certificate transport's connector, without its session cache.
        fn openssl_connector(&self, identity: Option<&ClientIdentity>) -> OpensslConnector {
            OpensslConnector(self.openssl_connector_builder(identity).unwrap().build())
        }
    }

    /// A connector trusting `ca` only.
    fn trusting(ca: &X509) -> OpensslConnector {
        TlsOptions::default()
            .with_ca_pem(ca.to_pem().unwrap())
            .unwrap()
            .openssl_connector(None)
    }

    #[tokio::test]
    async fn the_openssl_connector_checks_the_trust_and_the_server_name() {
        let server = server_identity();
        let trusted = trusting(&server.0);
        handshake(&trusted, "right.example", &server)
            .await
            .expect("trusted, and the name matches");
        let wrong_name = handshake(&trusted, "wrong.example", &server)
            .await
            .unwrap_err();
        assert!(wrong_name.contains("hostname mismatch"), "{wrong_name}");
        let wrong_ip = handshake(&trusted, "127.0.0.1", &server).await.unwrap_err();
        assert!(wrong_ip.contains("IP address mismatch"), "{wrong_ip}");
        // Trusting another CA only: the server is not trusted.
        let distrusting = trusting(&server_identity().0);
        let untrusted = handshake(&distrusting, "right.example", &server)
            .await
            .unwrap_err();
        assert!(untrusted.contains("certificate"), "{untrusted}");
        // Accepting anything (test appliances only) gets through any name.
        let anything = TlsOptions::default()
            .danger_accept_invalid_certs(true)
            .openssl_connector(None);
        handshake(&anything, "wrong.example", &server)
            .await
            .expect("verification off");
    }

    #[test]
    fn a_connector_with_its_own_ca_does_not_load_the_system_store() {
        let connector = trusting(&server_identity().0);
        // The context's own store (what `set_default_verify_paths` fills)
        // stays empty; verification uses the store of the configured CA.
        assert_eq!(connector.0.cert_store().all_certificates().len(), 0);
    }
}
