//! Certificates generated at start: a CA, the server certificate (SANs
//! `127.0.0.1` and `localhost`) and a client certificate, written into the
//! emulator's directory as PEM, PKCS#12 and encrypted-key PEM files.

use std::path::{Path, PathBuf};

use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use openssl::x509::X509;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha1::{Digest, Sha1};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::model::EmulatorError;

/// Everything generated at start, in memory and on disk.
pub(crate) struct GeneratedCerts {
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub server_cert: X509,
    pub server_key: PKey<Private>,
    pub ca_cert: X509,
    pub client: ClientCertFiles,
}

/// Where the client certificate's files were written, and how to open them.
#[derive(Clone, Debug)]
pub struct ClientCertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, unencrypted).
    pub key: PathBuf,
    /// The same key, encrypted (PKCS#8, AES-256-CBC) with [`Self::pfx_password`].
    pub encrypted_key: PathBuf,
    /// PKCS#12 bundle (certificate, key and the CA) protected by [`Self::pfx_password`].
    pub pfx: PathBuf,
    /// Password of the PKCS#12 bundle and of the encrypted key.
    pub pfx_password: String,
    /// SHA-1 of the certificate's DER, upper-case hex (the appliance's thumbprint).
    pub thumbprint: String,
    /// The certificate's subject, e.g. `CN=Safeguard Emulator A2A Client`.
    pub subject: String,
}

/// SHA-1 of DER bytes as upper-case hex, the way the appliance prints thumbprints.
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(Sha1::digest(der))
}

fn err(what: &str, e: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::Certificates(format!("{what}: {e}"))
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Safeguard Emulator");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Generates the CA, server and client certificates and writes them into `dir`.
pub(crate) fn generate(dir: &Path) -> Result<GeneratedCerts, EmulatorError> {
    let ca_key = KeyPair::generate().map_err(|e| err("CA key", e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
    ca_params.distinguished_name = name("Safeguard Emulator CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(|e| err("CA", e))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(|e| err("server key", e))?;
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| err("server", e))?;
    server_params.distinguished_name = name("localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.use_authority_key_identifier_extension = true;
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(|e| err("server", e))?;

    let client_key = KeyPair::generate().map_err(|e| err("client key", e))?;
    let mut client_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("client", e))?;
    client_params.distinguished_name = name("Safeguard Emulator A2A Client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client_params.use_authority_key_identifier_extension = true;
    let client_cert = client_params
        .signed_by(&client_key, &issuer)
        .map_err(|e| err("client", e))?;

    let write = |file: &str, data: &[u8]| -> Result<PathBuf, EmulatorError> {
        let path = dir.join(file);
        std::fs::write(&path, data).map_err(|e| EmulatorError::Io(path.clone(), e))?;
        Ok(path)
    };

    let ca_pem = ca_cert.pem();
    let ca_path = write("ca.pem", ca_pem.as_bytes())?;
    write("server.pem", server_cert.pem().as_bytes())?;
    write("server-key.pem", server_key.serialize_pem().as_bytes())?;
    let cert_path = write("client.pem", client_cert.pem().as_bytes())?;
    let key_path = write("client-key.pem", client_key.serialize_pem().as_bytes())?;

    let ca_x509 = X509::from_der(ca_cert.der()).map_err(|e| err("CA", e))?;
    let client_x509 = X509::from_der(client_cert.der()).map_err(|e| err("client", e))?;
    let client_pkey =
        PKey::private_key_from_der(client_key.serialized_der()).map_err(|e| err("client", e))?;
    let pfx_password = hex::encode(rand::random::<[u8; 8]>());
    let mut cas = openssl::stack::Stack::new().map_err(|e| err("pfx", e))?;
    cas.push(ca_x509.clone()).map_err(|e| err("pfx", e))?;
    let pfx = Pkcs12::builder()
        .name("Safeguard Emulator A2A Client")
        .pkey(&client_pkey)
        .cert(&client_x509)
        .ca(cas)
        .build2(&pfx_password)
        .map_err(|e| err("pfx", e))?
        .to_der()
        .map_err(|e| err("pfx", e))?;
    let pfx_path = write("client.pfx", &pfx)?;
    let encrypted = client_pkey
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), pfx_password.as_bytes())
        .map_err(|e| err("encrypted key", e))?;
    let encrypted_key = write("client-key-encrypted.pem", &encrypted)?;

    let server_x509 = X509::from_der(server_cert.der()).map_err(|e| err("server", e))?;
    let server_pkey =
        PKey::private_key_from_der(server_key.serialized_der()).map_err(|e| err("server", e))?;

    Ok(GeneratedCerts {
        ca_pem,
        ca_path,
        server_cert: server_x509,
        server_key: server_pkey,
        ca_cert: ca_x509,
        client: ClientCertFiles {
            cert: cert_path,
            key: key_path,
            encrypted_key,
            pfx: pfx_path,
            pfx_password,
            thumbprint: thumbprint(client_cert.der()),
            subject: subject_string(&client_x509),
        },
    })
}

/// The subject of an X.509 certificate as `CN=.., O=..` (most specific first, like Windows).
pub(crate) fn subject_string(cert: &X509) -> String {
    let mut parts: Vec<String> = cert
        .subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?").to_string();
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect();
    parts.reverse();
    parts.join(", ")
}

/// Issuer of an X.509 certificate in the same format as [`subject_string`].
pub(crate) fn issuer_string(cert: &X509) -> String {
    let mut parts: Vec<String> = cert
        .issuer_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?").to_string();
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect();
    parts.reverse();
    parts.join(", ")
}

/// A TrustedCertificate (`ServerCertificate` schema) from DER.
pub(crate) fn trusted_cert_json(der: &[u8]) -> Option<Value> {
    let cert = X509::from_der(der).ok()?;
    let is_ca = cert.subject_name().to_der().ok() == cert.issuer_name().to_der().ok()
        || cert
            .to_text()
            .map(|t| String::from_utf8_lossy(&t).contains("CA:TRUE"))
            .unwrap_or(false);
    let dns: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let ips: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.ipaddress())
                .filter_map(|b| match b.len() {
                    4 => Some(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
                    16 => <[u8; 16]>::try_from(b)
                        .ok()
                        .map(|a| std::net::Ipv6Addr::from(a).to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(json!({
        "Subject": subject_string(&cert),
        "Base64CertificateData": base64::engine::general_purpose::STANDARD.encode(der),
        "IssuedBy": issuer_string(&cert),
        "IsCertificateAuthority": is_ca,
        "IssuerCertificates": [],
        "DnsNames": dns,
        "IpAddresses": ips,
        "NotBefore": asn1_rfc3339(cert.not_before()),
        "NotAfter": asn1_rfc3339(cert.not_after()),
        "Thumbprint": thumbprint(der),
        "CertificateType": "TrustedRoot",
        "IsSystemOwned": false,
        "SystemOwnedPrivateKey": false,
    }))
}

/// An ASN.1 certificate time as core.json's `date-time` (RFC 3339, UTC,
/// whole seconds, as the appliance writes them: `2026-12-04T17:21:17Z`);
/// `None` (JSON null) for a time that cannot be represented.
pub(crate) fn asn1_rfc3339(t: &openssl::asn1::Asn1TimeRef) -> Option<String> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(t).ok()?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn certificate_times_are_rfc3339() {
        let t = openssl::asn1::Asn1Time::from_str("20261204172117Z").unwrap();
        assert_eq!(asn1_rfc3339(&t).as_deref(), Some("2026-12-04T17:21:17Z"));
        let t = openssl::asn1::Asn1Time::from_str("19991231235959Z").unwrap();
        assert_eq!(asn1_rfc3339(&t).as_deref(), Some("1999-12-31T23:59:59Z"));
        let t = openssl::asn1::Asn1Time::from_str("20500101000000Z").unwrap();
        assert_eq!(asn1_rfc3339(&t).as_deref(), Some("2050-01-01T00:00:00Z"));
    }
}
