//! Certificate sign-in: one `GET /api/authentication?type=x509` over an
//! OpenSSL connection that presents the client certificate (and answers a
//! post-handshake certificate request). The session cookie it returns is then
//! used by the ordinary transport.

use std::pin::Pin;
use std::time::Duration;

use openssl::x509::X509VerifyResult;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use super::error;
use crate::limits::{Limits, RedirectRefused};
use crate::tls::{ClientIdentity, TlsOptions};
use crate::{Error, Result};

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// The largest sign-in answer read, whatever the limits allow.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Room for the answer's head on top of its body.
const MAX_HEAD: usize = 64 * 1024;

/// Sends `GET url` with the client certificate and reads the whole answer:
/// the connection and handshake within `limits.connect_timeout`, the answer
/// (head and body) within `limits.answer_timeout` with no silence longer
/// than `limits.read_timeout`, its body at most `limits.max_answer_bytes`
/// (and 4 MiB), everything within `timeout` when given. A redirect is never
/// followed ([`Error::Redirect`]).
pub(crate) async fn get(
    tls: &TlsOptions,
    identity: &ClientIdentity,
    url: &Url,
    user_agent: &str,
    limits: &Limits,
    timeout: Option<Duration>,
) -> Result<RawResponse> {
    let host = url
        .host_str()
        .ok_or_else(|| Error::Config("the SPS URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let label = format!("GET {}", url.path());
    let max_body = usize::try_from(limits.max_answer_bytes)
        .unwrap_or(usize::MAX)
        .min(MAX_RESPONSE);
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let connector = tls.openssl_connector(Some(identity))?;
        let ssl = connector
            .ssl(&host)
            .map_err(|e| Error::Tls(e.to_string()))?;
        let mut stream =
            tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| Error::Tls(e.to_string()))?;
        if let Err(e) = Pin::new(&mut stream).connect().await {
            let verify = stream.ssl().verify_result();
            return Err(Error::Tls(if verify == X509VerifyResult::OK {
                e.to_string()
            } else {
                format!("{e}: {}", verify.error_string())
            }));
        }
        Ok(stream)
    };
    let exchange = async {
        let mut stream = within(limits.connect_timeout, connect, |after| {
            format!("{label}: no connection to {host}:{port} within {after:?}")
        })
        .await?;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let host_header = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {user_agent}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        let answer = async {
            stream.write_all(request.as_bytes()).await?;
            stream.flush().await?;
            // The answer sets the session cookie: both buffers are wiped.
            let mut buf = crate::secret::SecretBuf::with_capacity(16 * 1024);
            // On the heap: this future is part of every call that may sign in.
            let mut chunk = zeroize::Zeroizing::new(vec![0u8; 16 * 1024]);
            loop {
                let read = within(
                    limits.read_timeout,
                    async { Ok(stream.read(&mut chunk).await) },
                    |after| format!("{label}: nothing arrived for {after:?}"),
                )
                .await?;
                let n = match read {
                    Ok(0) => break,
                    Ok(n) => n,
                    // A peer that closes without close_notify: keep what we have.
                    Err(e)
                        if !buf.as_slice().is_empty()
                            && e.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        break
                    }
                    Err(e) => return Err(e.into()),
                };
                buf.push(&chunk[..n]);
                if buf.as_slice().len() > max_body.saturating_add(MAX_HEAD) {
                    return Err(Error::TooLarge {
                        request: label.clone(),
                        limit: max_body as u64,
                        announced: None,
                    });
                }
            }
            parse_http_response(buf.as_slice())?.ok_or_else(|| {
                error::decode(None, "the connection closed before the answer was complete")
            })
        };
        let answer = within(limits.answer_timeout, answer, |after| {
            format!("{label}: no complete answer within {after:?}")
        })
        .await?;
        if answer.body.len() > max_body {
            return Err(Error::TooLarge {
                request: label.clone(),
                limit: max_body as u64,
                announced: None,
            });
        }
        if let Some(refused) = unfollowed_redirect(url, &answer) {
            return Err(Error::Redirect(refused));
        }
        Ok(answer)
    };
    within(timeout, exchange, |after| {
        format!("{label}: the certificate sign-in took longer than {after:?}")
    })
    .await
}

/// `work` within `limit` (if any); `what` says what did not happen in time.
async fn within<T>(
    limit: Option<Duration>,
    work: impl std::future::Future<Output = Result<T>>,
    what: impl FnOnce(Duration) -> String,
) -> Result<T> {
    match limit {
        None => work.await,
        Some(after) => tokio::time::timeout(after, work)
            .await
            .unwrap_or_else(|_| Err(Error::Timeout(what(after)))),
    }
}

/// The redirect a 3xx answer with a `Location` stands for.
fn unfollowed_redirect(url: &Url, answer: &RawResponse) -> Option<RedirectRefused> {
    if !answer.status.is_redirection() {
        return None;
    }
    let location = answer
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.as_str())?;
    let to = url
        .join(location)
        .map(|u| crate::limits::origin(&u))
        .unwrap_or_else(|_| "an unreadable location".into());
    Some(RedirectRefused {
        status: answer.status,
        to,
        reason: "this request follows no redirect",
    })
}

fn decode_err(m: impl Into<String>) -> Error {
    error::decode(None, m.into())
}

/// Parses an HTTP/1.1 response. `Ok(None)`: incomplete so far (a body
/// delimited by the end of the connection is complete only when `buf` is
/// all there is, which the caller decides by calling again at EOF).
pub fn parse_http_response(buf: &[u8]) -> Result<Option<RawResponse>> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(decode_err("the response head is too large"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| decode_err("the response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(decode_err(format!(
            "not an HTTP/1.x response: {:.40}",
            status_line
        )));
    }
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| decode_err("the status line has no status code"))?;
    let status = StatusCode::from_u16(code).map_err(|_| decode_err("invalid status code"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| decode_err("a header line has no ':'"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let rest = &buf[head_end + 4..];
    let no_body = code / 100 == 1 || code == 204 || code == 304;
    let body = if no_body {
        Vec::new()
    } else if header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        match dechunk(rest)? {
            Some(b) => b,
            None => return Ok(None),
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| decode_err("invalid Content-Length"))?;
        if len > MAX_RESPONSE {
            return Err(decode_err("the body is too large"));
        }
        if rest.len() < len {
            return Ok(None);
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Some(RawResponse {
        status,
        headers,
        body,
    }))
}

fn dechunk(mut data: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let size_text =
            std::str::from_utf8(&data[..line_end]).map_err(|_| decode_err("invalid chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| decode_err("invalid chunk size"))?;
        if size > MAX_RESPONSE || out.len() + size > MAX_RESPONSE {
            return Err(decode_err("the body is too large"));
        }
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&data[..size]);
        if &data[size..size + 2] != b"\r\n" {
            return Err(decode_err("a chunk is not followed by CRLF"));
        }
        data = &data[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let r = parse_http_response(
            b"HTTP/1.1 200 OK\r\nSet-Cookie: session_id=x\r\nContent-Length: 2\r\n\r\n{}",
        )
        .expect("ok")
        .expect("complete");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, b"{}");
        let r = parse_http_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .expect("ok")
        .expect("complete");
        assert_eq!(r.body, b"{}");
        assert!(
            parse_http_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}")
                .expect("ok")
                .is_none()
        );
        assert!(parse_http_response(b"garbage\r\n\r\n").is_err());
    }
}
