//! The SDK's own transient copies of secrets (request bodies and header
//! values that carry a password, key or token): built in buffers that are
//! wiped when dropped, every allocation they outgrow included, and handed
//! to the HTTP stack by move, never copied once more.

use bytes::Bytes;
use reqwest::header::HeaderValue;
use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

/// A growable byte buffer that wipes its contents when dropped, and every
/// allocation it outgrows (a `Vec` that grows leaves its old allocation to
/// the allocator as it is).
pub(crate) struct SecretBuf(Zeroizing<Vec<u8>>);

impl SecretBuf {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let needed = self.0.len().saturating_add(bytes.len());
        if needed > self.0.capacity() {
            let mut grown = Vec::with_capacity(needed.max(self.0.capacity().saturating_mul(2)));
            grown.extend_from_slice(&self.0);
            // The outgrown allocation is wiped as it drops.
            self.0 = Zeroizing::new(grown);
        }
        self.0.extend_from_slice(bytes);
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn into_inner(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl std::io::Write for SecretBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` as JSON, in a buffer wiped when dropped.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Zeroizing<Vec<u8>>> {
    let mut buf = SecretBuf::with_capacity(256);
    serde_json::to_writer(&mut buf, value)?;
    Ok(buf.into_inner())
}

/// A JSON object of string fields, in a buffer wiped when dropped.
pub(crate) fn json_object(fields: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    struct Object<'a>(&'a [(&'a str, &'a str)]);
    impl Serialize for Object<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().copied())
        }
    }
    // Strings into memory: nothing can fail.
    json(&Object(fields)).unwrap_or_default()
}

/// `application/x-www-form-urlencoded` pairs, in a buffer wiped when dropped.
pub(crate) fn form(pairs: &[(&str, &str)]) -> Zeroizing<Vec<u8>> {
    let size: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut buf = SecretBuf::with_capacity(size + size / 2);
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            buf.push(b"&");
        }
        url::form_urlencoded::byte_serialize(key.as_bytes()).for_each(|s| buf.push(s.as_bytes()));
        buf.push(b"=");
        url::form_urlencoded::byte_serialize(value.as_bytes()).for_each(|s| buf.push(s.as_bytes()));
    }
    buf.into_inner()
}

/// Hands a body over to the HTTP stack, moved, not copied.
pub(crate) fn body(mut buf: Zeroizing<Vec<u8>>) -> reqwest::Body {
    // The HTTP stack owns this copy from here on and cannot wipe it.
    reqwest::Body::from(std::mem::take(&mut *buf))
}

/// The concatenation of `parts` as a sensitive header value (never shown by
/// its `Debug` nor by HTTP tracing); `None` when it cannot be a header value.
pub(crate) fn header(parts: &[&str]) -> Option<HeaderValue> {
    let mut value = Zeroizing::new(Vec::with_capacity(parts.iter().map(|p| p.len()).sum()));
    parts
        .iter()
        .for_each(|p| value.extend_from_slice(p.as_bytes()));
    // What `HeaderValue` accepts; checked here, so that a refused value is wiped.
    if !value.iter().all(|&b| b >= 32 && b != 127 || b == b'\t') {
        return None;
    }
    // The HTTP stack owns this copy from here on (moved into the header) and cannot wipe it.
    let mut header =
        HeaderValue::from_maybe_shared(Bytes::from(std::mem::take(&mut *value))).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// `Basic base64(user:password)` as a sensitive header value; every
/// intermediate copy is wiped.
pub(crate) fn basic(user: &str, password: &str) -> Option<HeaderValue> {
    use base64::Engine as _;
    let mut pair = SecretBuf::with_capacity(user.len() + 1 + password.len());
    pair.push(user.as_bytes());
    pair.push(b":");
    pair.push(password.as_bytes());
    let len = base64::encoded_len(pair.as_slice().len(), true)?;
    let mut encoded = Zeroizing::new(String::with_capacity(len));
    base64::engine::general_purpose::STANDARD.encode_string(pair.as_slice(), &mut encoded);
    header(&["Basic ", &encoded])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_sensitive_and_refuse_what_a_header_cannot_hold() {
        let h = header(&["Bearer ", "abc.def"]).expect("a header");
        assert_eq!(h.to_str().unwrap(), "Bearer abc.def");
        assert!(h.is_sensitive());
        assert_eq!(format!("{h:?}"), "Sensitive");
        assert!(header(&["A2A ", "k\r\nX: y"]).is_none());
        assert!(header(&["A2A ", "k\u{7f}"]).is_none());
        let b = basic("admin", "p:ss wörd").expect("a header");
        assert!(b.is_sensitive());
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode("admin:p:ss wörd");
        assert_eq!(b.to_str().unwrap(), format!("Basic {expected}"));
    }

    #[test]
    fn bodies_are_encoded_in_wiped_buffers() {
        let f: Zeroizing<Vec<u8>> = form(&[("passwordTextbox", "p&ss=w rd+é"), ("x", "")]);
        assert_eq!(&f[..], b"passwordTextbox=p%26ss%3Dw+rd%2B%C3%A9&x=");
        let j: Zeroizing<Vec<u8>> = json_object(&[("password", "p\"w\n"), ("scope", "s")]);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&j).unwrap(),
            serde_json::json!({ "password": "p\"w\n", "scope": "s" })
        );
        let s: Zeroizing<Vec<u8>> = json("top-secret").unwrap();
        assert_eq!(&s[..], b"\"top-secret\"");
    }

    #[test]
    fn a_growing_buffer_keeps_everything_pushed() {
        let mut buf = SecretBuf::with_capacity(1);
        let parts: Vec<String> = (0..100).map(|i| format!("part{i};")).collect();
        parts.iter().for_each(|p| buf.push(p.as_bytes()));
        assert_eq!(buf.as_slice(), parts.concat().as_bytes());
        // Handed over by move: the body is the buffer itself, not a copy.
        let buf = buf.into_inner();
        let at = buf.as_ptr();
        assert_eq!(body(buf).as_bytes().map(<[u8]>::as_ptr), Some(at));
    }
}
