//! RSA and Ed25519 SSH private keys in the three formats the A2A service
//! hands out: OpenSSH (`openssh-key-v1`), SSH2 (ssh.com / SECSH, RSA only)
//! and PuTTY (PPK v2), all unencrypted, plus parsing of OpenSSH, PEM
//! (PKCS#1 / PKCS#8), unencrypted PuTTY (PPK v2 and v3) and unencrypted
//! ssh.com (RSA) keys.
//!
//! The appliance supports RSA, Ed25519, ECDSA and DSA identity keys (SPP
//! administration guide, "SSH key management": "SPP supports RSA, Ed25519,
//! ECDSA, and DSA algorithms for SSH identity keys"); the emulator holds RSA
//! and Ed25519 ones.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::bn::{BigNum, BigNumContext, BigNumRef};
use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use sha2::{Digest, Sha256};

/// The key pair itself.
#[derive(Clone)]
enum Material {
    Rsa(Rsa<Private>),
    /// The 32-byte private seed and the 32-byte public key (RFC 8032).
    Ed25519 {
        seed: [u8; 32],
        public: [u8; 32],
    },
}

/// An RSA or Ed25519 SSH key with its comment.
#[derive(Clone)]
pub(crate) struct SshKey {
    material: Material,
    pub comment: String,
}

impl std::fmt::Debug for SshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKey")
            .field("type", &self.key_type())
            .field("bits", &self.bits())
            .finish()
    }
}

const SSH_RSA: &[u8] = b"ssh-rsa";
const SSH_ED25519: &[u8] = b"ssh-ed25519";

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

/// An RSA key from its OpenSSH/PuTTY components (CRT values computed).
fn rsa_from_parts(
    n: BigNum,
    e: BigNum,
    d: BigNum,
    p: BigNum,
    q: BigNum,
    iqmp: BigNum,
) -> Result<Rsa<Private>, String> {
    let bad = || "Invalid RSA private key.".to_string();
    let mut ctx = BigNumContext::new().map_err(|_| bad())?;
    let one = BigNum::from_u32(1).map_err(|_| bad())?;
    let mut p1 = BigNum::new().map_err(|_| bad())?;
    p1.checked_sub(&p, &one).map_err(|_| bad())?;
    let mut q1 = BigNum::new().map_err(|_| bad())?;
    q1.checked_sub(&q, &one).map_err(|_| bad())?;
    let mut dmp1 = BigNum::new().map_err(|_| bad())?;
    dmp1.nnmod(&d, &p1, &mut ctx).map_err(|_| bad())?;
    let mut dmq1 = BigNum::new().map_err(|_| bad())?;
    dmq1.nnmod(&d, &q1, &mut ctx).map_err(|_| bad())?;
    let rsa = Rsa::from_private_components(n, e, d, p, q, dmp1, dmq1, iqmp).map_err(|_| bad())?;
    if !rsa.check_key().unwrap_or(false) {
        return Err(bad());
    }
    Ok(rsa)
}

/// The public key of an Ed25519 seed.
fn ed25519_public(seed: &[u8; 32]) -> Result<[u8; 32], String> {
    let bad = || "Invalid Ed25519 private key.".to_string();
    let pkey = PKey::private_key_from_raw_bytes(seed, Id::ED25519).map_err(|_| bad())?;
    let raw = pkey.raw_public_key().map_err(|_| bad())?;
    raw.try_into().map_err(|_| bad())
}

fn hmac(md: MessageDigest, key: &[u8], data: &[u8]) -> Vec<u8> {
    PKey::hmac(key)
        .and_then(|k| {
            let mut s = Signer::new(md, &k)?;
            s.update(data)?;
            s.sign_to_vec()
        })
        .expect("HMAC")
}

impl SshKey {
    /// A fresh 2048-bit RSA key.
    pub(crate) fn generate(comment: &str) -> Self {
        Self {
            material: Material::Rsa(Rsa::generate(2048).expect("RSA key generation")),
            comment: comment.to_string(),
        }
    }

    /// An Ed25519 key from its 32-byte private seed.
    pub(crate) fn ed25519_from_seed(seed: [u8; 32], comment: &str) -> Result<Self, String> {
        let public = ed25519_public(&seed)?;
        Ok(Self {
            material: Material::Ed25519 { seed, public },
            comment: comment.to_string(),
        })
    }

    /// Parses an OpenSSH (`openssh-key-v1`, unencrypted), PEM (RSA or
    /// Ed25519) or PuTTY (PPK v2/v3, unencrypted) private key.
    pub(crate) fn parse(text: &str, passphrase: Option<&str>) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
            return Self::parse_openssh(text);
        }
        if text.starts_with("PuTTY-User-Key-File-") {
            return Self::parse_putty(text);
        }
        if text.starts_with("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----") {
            return Self::parse_ssh2(text);
        }
        if text.starts_with("-----BEGIN") {
            let pkey = match passphrase.filter(|p| !p.is_empty()) {
                Some(p) => PKey::private_key_from_pem_passphrase(text.as_bytes(), p.as_bytes()),
                None => PKey::private_key_from_pem(text.as_bytes()),
            }
            .map_err(|_| "The private key could not be read (wrong passphrase or format).")?;
            if pkey.id() == Id::ED25519 {
                let raw = pkey
                    .raw_private_key()
                    .map_err(|_| "Invalid Ed25519 private key.".to_string())?;
                let seed: [u8; 32] = raw
                    .try_into()
                    .map_err(|_| "Invalid Ed25519 private key.".to_string())?;
                return Self::ed25519_from_seed(seed, "");
            }
            let rsa = pkey
                .rsa()
                .map_err(|_| "Only RSA and Ed25519 private keys are supported.".to_string())?;
            return Ok(Self {
                material: Material::Rsa(rsa),
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
        if kind == SSH_ED25519 {
            // PROTOCOL.key (openssh-portable): string public (32 bytes),
            // string private (seed || public, 64 bytes), string comment.
            let public = p.string().ok_or_else(bad)?;
            let pair = p.string().ok_or_else(bad)?;
            if public.len() != 32 || pair.len() != 64 || &pair[32..] != public {
                return Err(bad());
            }
            let comment = String::from_utf8_lossy(p.string().unwrap_or_default()).into_owned();
            let seed: [u8; 32] = pair[..32].try_into().map_err(|_| bad())?;
            let key = Self::ed25519_from_seed(seed, &comment)?;
            if key.public_blob() != ed25519_blob(public) {
                return Err(bad());
            }
            return Ok(key);
        }
        if kind != SSH_RSA {
            return Err("Only RSA and Ed25519 private keys are supported.".to_string());
        }
        let n = p.mpint().ok_or_else(bad)?;
        let e = p.mpint().ok_or_else(bad)?;
        let d = p.mpint().ok_or_else(bad)?;
        let iqmp = p.mpint().ok_or_else(bad)?;
        let pp = p.mpint().ok_or_else(bad)?;
        let q = p.mpint().ok_or_else(bad)?;
        let comment = String::from_utf8_lossy(p.string().unwrap_or_default()).into_owned();
        let rsa = rsa_from_parts(n, e, d, pp, q, iqmp).map_err(|_| bad())?;
        Ok(Self {
            material: Material::Rsa(rsa),
            comment,
        })
    }

    /// An ssh.com (SECSH) RSA key with cipher `none`, as [`Self::ssh2`] writes it.
    fn parse_ssh2(text: &str) -> Result<Self, String> {
        let bad = || "Invalid SSH2 private key.".to_string();
        let mut comment = String::new();
        let mut body = String::new();
        let mut lines = text.lines().map(str::trim).skip(1);
        while let Some(line) = lines.next() {
            if line.starts_with("---- END") {
                break;
            }
            if let Some((name, value)) = line.split_once(": ") {
                // A header; a trailing backslash continues it on the next line.
                let mut value = value.to_string();
                while value.ends_with('\\') {
                    value.pop();
                    value.push_str(lines.next().ok_or_else(bad)?);
                }
                if name.eq_ignore_ascii_case("Comment") {
                    comment = value.trim_matches('"').to_string();
                }
                continue;
            }
            body.push_str(line);
        }
        let blob = B64.decode(body).map_err(|_| bad())?;
        let mut r = Reader(&blob);
        if r.u32().ok_or_else(bad)? != 0x3f6f_f9eb {
            return Err(bad());
        }
        let _total = r.u32().ok_or_else(bad)?;
        let kind = r.string().ok_or_else(bad)?;
        let cipher = r.string().ok_or_else(bad)?;
        if cipher != b"none" {
            return Err("Encrypted SSH2 private keys are not supported.".to_string());
        }
        if !kind.starts_with(b"if-modn{sign{rsa") {
            return Err("Only RSA keys are supported in the SSH2 format.".to_string());
        }
        let mut enc = Reader(r.string().ok_or_else(bad)?);
        let len = enc.u32().ok_or_else(bad)? as usize;
        let mut k = Reader(enc.0.get(..len).ok_or_else(bad)?);
        // ssh.com multiple-precision integers: a bit count, then the magnitude.
        let mut mpint = || -> Result<BigNum, String> {
            let bits = k.u32().ok_or_else(bad)? as usize;
            let n = bits.div_ceil(8);
            if k.0.len() < n {
                return Err(bad());
            }
            let (a, rest) = k.0.split_at(n);
            k.0 = rest;
            BigNum::from_slice(a).map_err(|_| bad())
        };
        let e = mpint()?;
        let d = mpint()?;
        let n = mpint()?;
        let iqmp = mpint()?;
        let p = mpint()?;
        let q = mpint()?;
        let rsa = rsa_from_parts(n, e, d, p, q, iqmp).map_err(|_| bad())?;
        Ok(Self {
            material: Material::Rsa(rsa),
            comment,
        })
    }

    /// An unencrypted PuTTY key, format 2 or 3, its MAC checked (PuTTY
    /// manual, appendix C "PPK file format").
    fn parse_putty(text: &str) -> Result<Self, String> {
        let bad = || "Invalid PuTTY private key.".to_string();
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        let mut at = 0;
        // The next line as `Name: value`, its name checked.
        let header = |name: &str, at: &mut usize| -> Result<String, String> {
            let line = lines.get(*at).ok_or_else(bad)?;
            *at += 1;
            let (k, v) = line.split_once(": ").ok_or_else(bad)?;
            if k != name {
                return Err(bad());
            }
            Ok(v.to_string())
        };
        let (version, algorithm) = match lines.first().and_then(|l| l.split_once(": ")) {
            Some(("PuTTY-User-Key-File-2", a)) => (2, a.to_string()),
            Some(("PuTTY-User-Key-File-3", a)) => (3, a.to_string()),
            _ => return Err("Only PuTTY key files of format 2 and 3 are supported.".into()),
        };
        at += 1;
        let encryption = header("Encryption", &mut at)?;
        if encryption != "none" {
            return Err("Encrypted PuTTY private keys are not supported.".to_string());
        }
        let comment = header("Comment", &mut at)?;
        let block = |name: &str, at: &mut usize| -> Result<String, String> {
            let count: usize = header(name, at)?.parse().map_err(|_| bad())?;
            let end = at
                .checked_add(count)
                .filter(|e| *e <= lines.len())
                .ok_or_else(bad)?;
            let b64: String = lines[*at..end].iter().map(|l| l.trim()).collect();
            *at = end;
            Ok(b64)
        };
        let public_b64 = block("Public-Lines", &mut at)?;
        let private_b64 = block("Private-Lines", &mut at)?;
        let mac_hex = lines
            .get(at)
            .and_then(|l| l.strip_prefix("Private-MAC: "))
            .ok_or_else(bad)?;
        let public = B64.decode(public_b64).map_err(|_| bad())?;
        let private = B64.decode(private_b64).map_err(|_| bad())?;
        let expected = putty_mac(version, &algorithm, &comment, &public, &private);
        if hex::encode(expected) != mac_hex.to_ascii_lowercase() {
            return Err("The PuTTY private key's MAC does not match.".to_string());
        }
        let mut pubr = Reader(&public);
        let kind = pubr.string().ok_or_else(bad)?;
        if kind != algorithm.as_bytes() {
            return Err(bad());
        }
        let mut privr = Reader(&private);
        if kind == SSH_ED25519 {
            let pk = pubr.string().ok_or_else(bad)?;
            // The private scalar as a little-endian integer string; PuTTY
            // writes it without its high zero bytes.
            let le = privr.string().ok_or_else(bad)?;
            if le.len() > 32 {
                return Err(bad());
            }
            let mut seed = [0u8; 32];
            seed[..le.len()].copy_from_slice(le);
            let key = Self::ed25519_from_seed(seed, &comment)?;
            if key.public_blob() != ed25519_blob(pk) {
                return Err(bad());
            }
            return Ok(key);
        }
        if kind != SSH_RSA {
            return Err("Only RSA and Ed25519 private keys are supported.".to_string());
        }
        let e = pubr.mpint().ok_or_else(bad)?;
        let n = pubr.mpint().ok_or_else(bad)?;
        let d = privr.mpint().ok_or_else(bad)?;
        let p = privr.mpint().ok_or_else(bad)?;
        let q = privr.mpint().ok_or_else(bad)?;
        let iqmp = privr.mpint().ok_or_else(bad)?;
        let rsa = rsa_from_parts(n, e, d, p, q, iqmp).map_err(|_| bad())?;
        Ok(Self {
            material: Material::Rsa(rsa),
            comment,
        })
    }

    fn algorithm(&self) -> &'static [u8] {
        match self.material {
            Material::Rsa(_) => SSH_RSA,
            Material::Ed25519 { .. } => SSH_ED25519,
        }
    }

    fn public_blob(&self) -> Vec<u8> {
        match &self.material {
            Material::Rsa(rsa) => {
                let mut b = Vec::new();
                put_string(&mut b, SSH_RSA);
                put_mpint(&mut b, rsa.e());
                put_mpint(&mut b, rsa.n());
                b
            }
            Material::Ed25519 { public, .. } => ed25519_blob(public),
        }
    }

    /// `ssh-rsa AAAA... comment` or `ssh-ed25519 AAAA... comment`.
    pub(crate) fn public_key(&self) -> String {
        let mut s = format!(
            "{} {}",
            String::from_utf8_lossy(self.algorithm()),
            B64.encode(self.public_blob())
        );
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

    /// Key size in bits (256 for Ed25519).
    pub(crate) fn bits(&self) -> u32 {
        match &self.material {
            Material::Rsa(rsa) => rsa.size() * 8,
            Material::Ed25519 { .. } => 256,
        }
    }

    /// The `SshKeyType` enum value of core.json (`Rsa`, `Ed25519`).
    pub(crate) fn key_type(&self) -> &'static str {
        match self.material {
            Material::Rsa(_) => "Rsa",
            Material::Ed25519 { .. } => "Ed25519",
        }
    }

    /// The private half in PuTTY's encoding.
    fn putty_private(&self) -> Vec<u8> {
        let mut private = Vec::new();
        match &self.material {
            Material::Rsa(rsa) => {
                put_mpint(&mut private, rsa.d());
                put_mpint(&mut private, rsa.p().expect("RSA p"));
                put_mpint(&mut private, rsa.q().expect("RSA q"));
                put_mpint(&mut private, &rsa_iqmp(rsa));
            }
            Material::Ed25519 { seed, .. } => {
                // A little-endian integer without its high zero bytes.
                let len = seed.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                put_string(&mut private, &seed[..len]);
            }
        }
        private
    }

    /// `-----BEGIN OPENSSH PRIVATE KEY-----` (unencrypted).
    pub(crate) fn openssh(&self) -> String {
        let check: u32 = rand::random();
        let mut private = Vec::new();
        put_u32(&mut private, check);
        put_u32(&mut private, check);
        match &self.material {
            Material::Rsa(rsa) => {
                put_string(&mut private, SSH_RSA);
                put_mpint(&mut private, rsa.n());
                put_mpint(&mut private, rsa.e());
                put_mpint(&mut private, rsa.d());
                put_mpint(&mut private, &rsa_iqmp(rsa));
                put_mpint(&mut private, rsa.p().expect("RSA p"));
                put_mpint(&mut private, rsa.q().expect("RSA q"));
            }
            Material::Ed25519 { seed, public } => {
                put_string(&mut private, SSH_ED25519);
                put_string(&mut private, public);
                let mut pair = seed.to_vec();
                pair.extend_from_slice(public);
                put_string(&mut private, &pair);
            }
        }
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

    /// `---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----` (ssh.com format, cipher
    /// none). The format defines key containers for RSA (`if-modn{...}`) and
    /// DSA (`dl-modp{...}`) only, and PuTTYgen likewise exports only those
    /// to it; what the appliance answers for an Ed25519 key in this format
    /// could not be found in the vendor's documents, so the emulator refuses
    /// with a 400 naming `keyFormat` (an error is `Err`).
    pub(crate) fn ssh2(&self) -> Result<String, String> {
        let Material::Rsa(rsa) = &self.material else {
            return Err(format!(
                "The Ssh2 key format is not available for {} keys; use OpenSsh or Putty.",
                self.key_type()
            ));
        };
        let mut key = Vec::new();
        put_sshcom_mpint(&mut key, rsa.e());
        put_sshcom_mpint(&mut key, rsa.d());
        put_sshcom_mpint(&mut key, rsa.n());
        put_sshcom_mpint(&mut key, &rsa_iqmp(rsa));
        put_sshcom_mpint(&mut key, rsa.p().expect("RSA p"));
        put_sshcom_mpint(&mut key, rsa.q().expect("RSA q"));
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
        Ok(out)
    }

    /// PuTTY `.ppk` version 2, unencrypted (readable by every PuTTY since 0.52).
    pub(crate) fn putty(&self) -> String {
        self.putty_version(2)
    }

    /// PuTTY `.ppk` of format `version` (2 or 3), unencrypted.
    fn putty_version(&self, version: u32) -> String {
        let algorithm = String::from_utf8_lossy(self.algorithm()).into_owned();
        let public = self.public_blob();
        let private = self.putty_private();
        let mac = putty_mac(version, &algorithm, &self.comment, &public, &private);
        let pub_lines = wrap(&B64.encode(&public), 64);
        let priv_lines = wrap(&B64.encode(&private), 64);
        let mut out = format!("PuTTY-User-Key-File-{version}: {algorithm}\nEncryption: none\n");
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

    /// The key in the format named by the A2A/core `keyFormat` parameter;
    /// `Err` (a message) when the format cannot hold this key type.
    pub(crate) fn format(&self, format: KeyFormat) -> Result<String, String> {
        match format {
            KeyFormat::OpenSsh => Ok(self.openssh()),
            KeyFormat::Ssh2 => self.ssh2(),
            KeyFormat::Putty => Ok(self.putty()),
        }
    }
}

fn ed25519_blob(public: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_string(&mut b, SSH_ED25519);
    put_string(&mut b, public);
    b
}

fn rsa_iqmp(rsa: &Rsa<Private>) -> BigNum {
    rsa.iqmp()
        .map(|b| b.to_owned().expect("bignum copy"))
        .unwrap_or_else(|| BigNum::new().expect("bignum"))
}

/// The MAC of an unencrypted PPK file: over the algorithm, encryption,
/// comment, public and private blobs, each as an SSH string; format 2 with
/// HMAC-SHA-1 keyed by SHA-1("putty-private-key-file-mac-key"), format 3
/// with HMAC-SHA-256 and an empty key (PuTTY manual, appendix C).
fn putty_mac(
    version: u32,
    algorithm: &str,
    comment: &str,
    public: &[u8],
    private: &[u8],
) -> Vec<u8> {
    let mut data = Vec::new();
    put_string(&mut data, algorithm.as_bytes());
    put_string(&mut data, b"none");
    put_string(&mut data, comment.as_bytes());
    put_string(&mut data, public);
    put_string(&mut data, private);
    if version >= 3 {
        // HMAC pads its key with zeros to the block size, so the empty key
        // is 64 zero bytes (OpenSSL refuses a zero-length HMAC key).
        hmac(MessageDigest::sha256(), &[0u8; 64], &data)
    } else {
        let key = openssl::hash::hash(MessageDigest::sha1(), b"putty-private-key-file-mac-key")
            .expect("sha1");
        hmac(MessageDigest::sha1(), &key, &data)
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
            .unwrap()
            .starts_with("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"));
        assert!(k.putty().starts_with("PuTTY-User-Key-File-2: ssh-rsa"));
        let Material::Rsa(rsa) = &k.material else {
            panic!("an RSA key")
        };
        let pem = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
        assert_eq!(
            SshKey::parse(&pem, None).unwrap().fingerprint_sha256(),
            k.fingerprint_sha256()
        );
        // The SSH2 form reads back too, comment included.
        let back = SshKey::parse(&k.ssh2().unwrap(), None).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        // PuTTY files of both formats read back.
        for version in [2, 3] {
            let back = SshKey::parse(&k.putty_version(version), None).unwrap();
            assert_eq!(back.public_key(), k.public_key());
        }
    }

    /// An OpenSSH Ed25519 key as `ssh-keygen -t ed25519` writes it, with its
    /// public key (a public example of the format).
    const OPENSSH_ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBR9Lbe0t6wCRKmdIwh60bMST4a3VDK0evaUT52cq13cAAAAJCOEs5NjhLO
TQAAAAtzc2gtZWQyNTUxOQAAACBR9Lbe0t6wCRKmdIwh60bMST4a3VDK0evaUT52cq13cA
AAAEADkfVQs1I16Y0LdQVJxTZPlRAwA7qTqu0y0lFCT/hRoFH0tt7S3rAJEqZ0jCHrRsxJ
PhrdUMrR69pRPnZyrXdwAAAAC29wZW5zc2gta2V5AQI=
-----END OPENSSH PRIVATE KEY-----
";
    const OPENSSH_ED25519_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFH0tt7S3rAJEqZ0jCHrRsxJPhrdUMrR69pRPnZyrXdw openssh-key";

    /// PuTTYgen's Ed25519 keys, format 2 and 3 (public examples).
    const PPK2_ED25519: &str = "PuTTY-User-Key-File-2: ssh-ed25519\r\nEncryption: none\r\nComment: ed25519-key-20240418\r\nPublic-Lines: 2\r\nAAAAC3NzaC1lZDI1NTE5AAAAILMyy5tkHvvUqRtQYHzOzkyR4PYwj1P284HBQXHv\r\nrKeh\r\nPrivate-Lines: 1\r\nAAAAIBwepG2OCCnYICCmTXNuDk6Hl/xdjPbNGY3CQlTLGBo4\r\nPrivate-MAC: 53075221be556e89770351391573dbb7dba661d2\r\n";
    const PPK3_ED25519: &str = "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: eddsa-key-20240414\nPublic-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAILd1uFfzk6dLkf9HbdczyiLRnIz5d0fq0mRS5Nvp\ne9w7\nPrivate-Lines: 1\nAAAAICRy3RnrtQkRZx8kOEI9KHvTFEMmgOfBq2WdFCrRpIE6\nPrivate-MAC: acc8030afe46301f01e7eb8d3cda38ae54ddd219adfefe32548569b4ac107784\n";

    #[test]
    fn ed25519_openssh_parses_and_writes_back() {
        let k = SshKey::parse(OPENSSH_ED25519, None).unwrap();
        assert_eq!(k.public_key(), OPENSSH_ED25519_PUBLIC);
        assert_eq!(k.key_type(), "Ed25519");
        assert_eq!(k.bits(), 256);
        assert_eq!(k.comment, "openssh-key");
        // Written back, the same key block (only the random check words differ).
        let again = SshKey::parse(&k.openssh(), None).unwrap();
        assert_eq!(again.public_key(), OPENSSH_ED25519_PUBLIC);
        let strip = |t: &str| -> Vec<u8> {
            let body: String = t.lines().filter(|l| !l.starts_with("-----")).collect();
            let mut b = B64.decode(body).unwrap();
            // The check words sit right after the public key.
            // magic, "none", "none", empty options, key count, public key,
            // private section length.
            let at = 15 + 8 + 8 + 4 + 4 + (4 + 51) + 4;
            b.drain(at..at + 8);
            b
        };
        assert_eq!(strip(&k.openssh()), strip(OPENSSH_ED25519));
        // PEM (PKCS#8) input too.
        let Material::Ed25519 { seed, .. } = k.material else {
            panic!("an Ed25519 key")
        };
        let pkey = PKey::private_key_from_raw_bytes(&seed, Id::ED25519).unwrap();
        let pem = String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let from_pem = SshKey::parse(&pem, None).unwrap();
        assert_eq!(from_pem.fingerprint_sha256(), k.fingerprint_sha256());
    }

    #[test]
    fn ed25519_putty_matches_puttygen() {
        for (text, version) in [(PPK2_ED25519, 2), (PPK3_ED25519, 3)] {
            let k = SshKey::parse(text, None).unwrap();
            assert_eq!(k.key_type(), "Ed25519");
            // Written in the same format: byte for byte what PuTTYgen wrote
            // (PuTTYgen wraps at 64 and this file uses LF line ends).
            assert_eq!(k.putty_version(version), text.replace("\r\n", "\n"));
        }
        assert!(SshKey::parse(PPK2_ED25519, None)
            .unwrap()
            .putty()
            .starts_with("PuTTY-User-Key-File-2: ssh-ed25519\n"));
        // A tampered file fails its MAC.
        let tampered = PPK3_ED25519.replace("eddsa-key-20240414", "eddsa-key-20240415");
        assert!(SshKey::parse(&tampered, None).unwrap_err().contains("MAC"));
    }

    #[test]
    fn ed25519_has_no_ssh2_form() {
        let k = SshKey::parse(OPENSSH_ED25519, None).unwrap();
        let e = k.format(KeyFormat::Ssh2).unwrap_err();
        assert!(e.contains("Ed25519"), "{e}");
        assert!(k.format(KeyFormat::OpenSsh).is_ok());
        assert!(k.format(KeyFormat::Putty).is_ok());
    }

    #[test]
    fn malformed_keys_are_errors() {
        for bad in [
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
            "PuTTY-User-Key-File-9: ssh-ed25519\n",
            "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nAAAA\n---- END SSH2 ENCRYPTED PRIVATE KEY ----",
            "garbage",
        ] {
            assert!(SshKey::parse(bad, None).is_err(), "{bad}");
        }
    }
}
