//! RSA SSH private keys in the three formats the A2A service hands out:
//! OpenSSH (`openssh-key-v1`), SSH2 (ssh.com / SECSH) and PuTTY (PPK v2),
//! all unencrypted, plus parsing of OpenSSH and PEM (PKCS#1 / PKCS#8) keys.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use sha2::{Digest, Sha256};

/// An RSA SSH key with its comment.
#[derive(Clone)]
pub(crate) struct SshKey {
    rsa: Rsa<Private>,
    pub comment: String,
}

impl std::fmt::Debug for SshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKey")
            .field("bits", &self.rsa.size())
            .finish()
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
}

fn put_mpint(out: &mut Vec<u8>, n: &BigNumRef) {
    let mut bytes = n.to_vec();
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    put_string(out, &bytes);
}

/// ssh.com multiple-precision integer: bit count, then the magnitude.
fn put_sshcom_mpint(out: &mut Vec<u8>, n: &BigNumRef) {
    put_u32(out, n.num_bits() as u32);
    out.extend_from_slice(&n.to_vec());
}

fn wrap(b64: &str, width: usize) -> Vec<String> {
    b64.as_bytes()
        .chunks(width)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        if self.0.len() < 4 {
            return None;
        }
        let (a, b) = self.0.split_at(4);
        self.0 = b;
        Some(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn mpint(&mut self) -> Option<BigNum> {
        BigNum::from_slice(self.string()?).ok()
    }
}

impl SshKey {
    /// A fresh 2048-bit RSA key.
    pub(crate) fn generate(comment: &str) -> Self {
        Self {
            rsa: Rsa::generate(2048).expect("RSA key generation"),
            comment: comment.to_string(),
        }
    }

    /// Parses an OpenSSH (`openssh-key-v1`, unencrypted) or PEM RSA private key.
    pub(crate) fn parse(text: &str, passphrase: Option<&str>) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
            return Self::parse_openssh(text);
        }
        if text.starts_with("-----BEGIN") {
            let pkey = match passphrase.filter(|p| !p.is_empty()) {
                Some(p) => PKey::private_key_from_pem_passphrase(text.as_bytes(), p.as_bytes()),
                None => PKey::private_key_from_pem(text.as_bytes()),
            }
            .map_err(|_| "The private key could not be read (wrong passphrase or format).")?;
            let rsa = pkey
                .rsa()
                .map_err(|_| "Only RSA private keys are supported.".to_string())?;
            return Ok(Self {
                rsa,
                comment: String::new(),
            });
        }
        Err("Unsupported private key format.".to_string())
    }

    fn parse_openssh(text: &str) -> Result<Self, String> {
        let bad = || "Invalid OpenSSH private key.".to_string();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let blob = B64.decode(body).map_err(|_| bad())?;
        let magic = b"openssh-key-v1\0";
        if !blob.starts_with(magic) {
            return Err(bad());
        }
        let mut r = Reader(&blob[magic.len()..]);
        let cipher = r.string().ok_or_else(bad)?;
        let _kdf = r.string().ok_or_else(bad)?;
        let _kdf_opts = r.string().ok_or_else(bad)?;
        if cipher != b"none" {
            return Err("Encrypted OpenSSH private keys are not supported.".to_string());
        }
        if r.u32().ok_or_else(bad)? != 1 {
            return Err(bad());
        }
        let _public = r.string().ok_or_else(bad)?;
        let private = r.string().ok_or_else(bad)?;
        let mut p = Reader(private);
        let c1 = p.u32().ok_or_else(bad)?;
        let c2 = p.u32().ok_or_else(bad)?;
        if c1 != c2 {
            return Err(bad());
        }
        let kind = p.string().ok_or_else(bad)?;
        if kind != b"ssh-rsa" {
            return Err("Only RSA private keys are supported.".to_string());
        }
        let n = p.mpint().ok_or_else(bad)?;
        let e = p.mpint().ok_or_else(bad)?;
        let d = p.mpint().ok_or_else(bad)?;
        let iqmp = p.mpint().ok_or_else(bad)?;
        let pp = p.mpint().ok_or_else(bad)?;
        let q = p.mpint().ok_or_else(bad)?;
        let comment = String::from_utf8_lossy(p.string().unwrap_or_default()).into_owned();
        let mut ctx = BigNumContext::new().map_err(|_| bad())?;
        let one = BigNum::from_u32(1).map_err(|_| bad())?;
        let mut p1 = BigNum::new().map_err(|_| bad())?;
        p1.checked_sub(&pp, &one).map_err(|_| bad())?;
        let mut q1 = BigNum::new().map_err(|_| bad())?;
        q1.checked_sub(&q, &one).map_err(|_| bad())?;
        let mut dmp1 = BigNum::new().map_err(|_| bad())?;
        dmp1.nnmod(&d, &p1, &mut ctx).map_err(|_| bad())?;
        let mut dmq1 = BigNum::new().map_err(|_| bad())?;
        dmq1.nnmod(&d, &q1, &mut ctx).map_err(|_| bad())?;
        let rsa =
            Rsa::from_private_components(n, e, d, pp, q, dmp1, dmq1, iqmp).map_err(|_| bad())?;
        if !rsa.check_key().unwrap_or(false) {
            return Err(bad());
        }
        Ok(Self { rsa, comment })
    }

    fn public_blob(&self) -> Vec<u8> {
        let mut b = Vec::new();
        put_string(&mut b, b"ssh-rsa");
        put_mpint(&mut b, self.rsa.e());
        put_mpint(&mut b, self.rsa.n());
        b
    }

    /// `ssh-rsa AAAA... comment`.
    pub(crate) fn public_key(&self) -> String {
        let mut s = format!("ssh-rsa {}", B64.encode(self.public_blob()));
        if !self.comment.is_empty() {
            s.push(' ');
            s.push_str(&self.comment);
        }
        s
    }

    /// `SHA256:...` fingerprint of the public key.
    pub(crate) fn fingerprint_sha256(&self) -> String {
        let digest = Sha256::digest(self.public_blob());
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    /// MD5 fingerprint `aa:bb:...`.
    pub(crate) fn fingerprint_md5(&self) -> String {
        let digest = openssl::hash::hash(MessageDigest::md5(), &self.public_blob())
            .map(|d| d.to_vec())
            .unwrap_or_default();
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Key size in bits.
    pub(crate) fn bits(&self) -> u32 {
        self.rsa.size() * 8
    }

    fn iqmp(&self) -> BigNum {
        self.rsa
            .iqmp()
            .map(|b| b.to_owned().expect("bignum copy"))
            .unwrap_or_else(|| BigNum::new().expect("bignum"))
    }

    /// `-----BEGIN OPENSSH PRIVATE KEY-----` (unencrypted).
    pub(crate) fn openssh(&self) -> String {
        let p = self.rsa.p().expect("RSA p");
        let q = self.rsa.q().expect("RSA q");
        let check: u32 = rand::random();
        let mut private = Vec::new();
        put_u32(&mut private, check);
        put_u32(&mut private, check);
        put_string(&mut private, b"ssh-rsa");
        put_mpint(&mut private, self.rsa.n());
        put_mpint(&mut private, self.rsa.e());
        put_mpint(&mut private, self.rsa.d());
        put_mpint(&mut private, &self.iqmp());
        put_mpint(&mut private, p);
        put_mpint(&mut private, q);
        put_string(&mut private, self.comment.as_bytes());
        let mut pad = 1u8;
        while private.len() % 8 != 0 {
            private.push(pad);
            pad += 1;
        }
        let mut blob = b"openssh-key-v1\0".to_vec();
        put_string(&mut blob, b"none");
        put_string(&mut blob, b"none");
        put_string(&mut blob, b"");
        put_u32(&mut blob, 1);
        put_string(&mut blob, &self.public_blob());
        put_string(&mut blob, &private);
        let mut out = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
        for line in wrap(&B64.encode(blob), 70) {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("-----END OPENSSH PRIVATE KEY-----\n");
        out
    }

    /// `---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----` (ssh.com format, cipher none).
    pub(crate) fn ssh2(&self) -> String {
        let p = self.rsa.p().expect("RSA p");
        let q = self.rsa.q().expect("RSA q");
        let mut key = Vec::new();
        put_sshcom_mpint(&mut key, self.rsa.e());
        put_sshcom_mpint(&mut key, self.rsa.d());
        put_sshcom_mpint(&mut key, self.rsa.n());
        put_sshcom_mpint(&mut key, &self.iqmp());
        put_sshcom_mpint(&mut key, p);
        put_sshcom_mpint(&mut key, q);
        let mut enc = Vec::new();
        put_u32(&mut enc, key.len() as u32);
        enc.extend_from_slice(&key);
        let mut body = Vec::new();
        put_string(
            &mut body,
            b"if-modn{sign{rsa-pkcs1-sha1},encrypt{rsa-pkcs1v2-oaep}}",
        );
        put_string(&mut body, b"none");
        put_string(&mut body, &enc);
        let mut blob = Vec::new();
        put_u32(&mut blob, 0x3f6f_f9eb);
        put_u32(&mut blob, (body.len() + 8) as u32);
        blob.extend_from_slice(&body);
        let mut out = String::from("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\n");
        out.push_str(&format!("Comment: \"{}\"\n", self.comment));
        for line in wrap(&B64.encode(blob), 70) {
            out.push_str(&line);
            out.push('\n');
        }
        out.push_str("---- END SSH2 ENCRYPTED PRIVATE KEY ----\n");
        out
    }

    /// PuTTY `.ppk` version 2, unencrypted.
    pub(crate) fn putty(&self) -> String {
        let p = self.rsa.p().expect("RSA p");
        let q = self.rsa.q().expect("RSA q");
        let public = self.public_blob();
        let mut private = Vec::new();
        put_mpint(&mut private, self.rsa.d());
        put_mpint(&mut private, p);
        put_mpint(&mut private, q);
        put_mpint(&mut private, &self.iqmp());
        let mut mac_data = Vec::new();
        put_string(&mut mac_data, b"ssh-rsa");
        put_string(&mut mac_data, b"none");
        put_string(&mut mac_data, self.comment.as_bytes());
        put_string(&mut mac_data, &public);
        put_string(&mut mac_data, &private);
        let mac_key = openssl::hash::hash(MessageDigest::sha1(), b"putty-private-key-file-mac-key")
            .expect("sha1");
        let mac = PKey::hmac(&mac_key)
            .and_then(|k| {
                let mut s = Signer::new(MessageDigest::sha1(), &k)?;
                s.update(&mac_data)?;
                s.sign_to_vec()
            })
            .expect("hmac-sha1");
        let pub_lines = wrap(&B64.encode(&public), 64);
        let priv_lines = wrap(&B64.encode(&private), 64);
        let mut out = String::from("PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\n");
        out.push_str(&format!("Comment: {}\n", self.comment));
        out.push_str(&format!("Public-Lines: {}\n", pub_lines.len()));
        for l in pub_lines {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str(&format!("Private-Lines: {}\n", priv_lines.len()));
        for l in priv_lines {
            out.push_str(&l);
            out.push('\n');
        }
        out.push_str(&format!("Private-MAC: {}\n", hex::encode(mac)));
        out
    }

    /// The key in the format named by the A2A/core `keyFormat` parameter.
    pub(crate) fn format(&self, format: KeyFormat) -> String {
        match format {
            KeyFormat::OpenSsh => self.openssh(),
            KeyFormat::Ssh2 => self.ssh2(),
            KeyFormat::Putty => self.putty(),
        }
    }
}

/// The `keyFormat` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyFormat {
    OpenSsh,
    Ssh2,
    Putty,
}

impl KeyFormat {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "openssh" => Some(Self::OpenSsh),
            "ssh2" => Some(Self::Ssh2),
            "putty" => Some(Self::Putty),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssh_round_trip() {
        let k = SshKey::generate("test@emulator");
        let text = k.openssh();
        let back = SshKey::parse(&text, None).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        assert!(k
            .ssh2()
            .starts_with("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"));
        assert!(k.putty().starts_with("PuTTY-User-Key-File-2: ssh-rsa"));
        let pem = String::from_utf8(k.rsa.private_key_to_pem().unwrap()).unwrap();
        assert_eq!(
            SshKey::parse(&pem, None).unwrap().fingerprint_sha256(),
            k.fingerprint_sha256()
        );
    }
}
