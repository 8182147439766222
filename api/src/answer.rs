//! Reading an answer's body into memory, within limits.
//!
//! Every body the SDK holds whole (a typed call's JSON, an error answer, a
//! credential, a sign-in step) is read here, so that no server can make a
//! client buffer without bound or wait without end: a body larger than the
//! limit ends the read (an announced `Content-Length` over the limit is
//! refused before a byte of the body is read), and so does a body that has
//! not arrived in full within the time allowed. Streams (downloads, raw
//! bytes) are never read here.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// The largest body held in memory by default: 128 MiB. The largest real
/// listing measured, 1,000 users of `GET core/v4/Users`, is 1.28 MB, so the
/// default holds about 100,000 such objects in one answer; page larger sets.
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 128 << 20;

/// How much of an error answer is kept by default: 64 KiB, far more than
/// the appliance's `{Code, Message, ModelState}` bodies; the rest is never
/// read.
pub const DEFAULT_MAX_ERROR_BYTES: usize = 64 << 10;

/// How much of an answer may be held in memory, and how long its body may
/// take to arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnswerLimits {
    /// The largest body read into memory, in bytes.
    pub max_bytes: u64,
    /// The longest a body read into memory may take to arrive in full
    /// (`None`: no limit).
    pub timeout: Option<Duration>,
}

impl Default for AnswerLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_ANSWER_BYTES,
            timeout: None,
        }
    }
}

/// Why a body was not read in full (a generated call fails with
/// [`CallError::Limit`](crate::CallError::Limit) for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFailure {
    /// The body is larger than `limit` (`announced`: its `Content-Length`,
    /// when it gave one).
    TooLarge {
        /// The limit in force, in bytes.
        limit: u64,
        /// The length the server announced, if any.
        announced: Option<u64>,
    },
    /// The body did not arrive within `after`.
    TimedOut {
        /// The time allowed.
        after: Duration,
    },
}

/// A body that could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Refused by the limits (see [`ReadFailure`]).
    Refused(ReadFailure),
    /// The connection failed while the body was read.
    Body(reqwest::Error),
}

/// Reads the whole body of `response` within `limits`. The response stays
/// with the caller (its status and headers, and for a refusal the
/// connection, which is dropped with it instead of being drained).
pub async fn read_bounded(
    response: &mut reqwest::Response,
    limits: AnswerLimits,
) -> Result<Bytes, ReadError> {
    let announced = response.content_length();
    if let Some(length) = announced.filter(|l| *l > limits.max_bytes) {
        return Err(ReadError::Refused(ReadFailure::TooLarge {
            limit: limits.max_bytes,
            announced: Some(length),
        }));
    }
    let read = collect(response, limits.max_bytes, announced);
    match limits.timeout {
        None => read.await,
        Some(after) => tokio::time::timeout(after, read)
            .await
            .unwrap_or(Err(ReadError::Refused(ReadFailure::TimedOut { after }))),
    }
}

/// The body's chunks gathered up to `max` bytes. A body that arrives in one
/// chunk (most small answers) is returned as it is, without a copy.
async fn collect(
    response: &mut reqwest::Response,
    max: u64,
    announced: Option<u64>,
) -> Result<Bytes, ReadError> {
    let too_large = || {
        ReadError::Refused(ReadFailure::TooLarge {
            limit: max,
            announced,
        })
    };
    let Some(first) = response.chunk().await.map_err(ReadError::Body)? else {
        return Ok(Bytes::new());
    };
    if first.len() as u64 > max {
        return Err(too_large());
    }
    let Some(second) = response.chunk().await.map_err(ReadError::Body)? else {
        return Ok(first);
    };
    let mut total = first.len() as u64 + second.len() as u64;
    if total > max {
        return Err(too_large());
    }
    // The announced length is at most `max` here; a missing one starts small.
    let capacity = announced.unwrap_or(total).max(total).min(max);
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(usize::MAX));
    body.extend_from_slice(&first);
    body.extend_from_slice(&second);
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Body)? {
        total = total.saturating_add(chunk.len() as u64);
        if total > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The first `cap` bytes of an error answer's body; the rest is never read
/// (the connection is dropped with the response). A body that breaks off
/// keeps what arrived.
pub async fn read_prefix(mut response: reqwest::Response, cap: usize) -> Bytes {
    let mut body = BytesMut::new();
    while body.len() < cap {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    /// An answer whose body arrives as `chunks`, with no announced length.
    fn answer(chunks: Vec<&'static [u8]>) -> reqwest::Response {
        let body = reqwest::Body::wrap_stream(stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        ));
        reqwest::Response::from(http::Response::new(body))
    }

    fn limits(max_bytes: u64) -> AnswerLimits {
        AnswerLimits {
            max_bytes,
            timeout: None,
        }
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let mut r = answer(vec![b"ab", b"cd", b"e"]);
        let body = read_bounded(&mut r, limits(5)).await.expect("read");
        assert_eq!(&body[..], b"abcde");
        let mut r = answer(vec![b"abc"]);
        assert_eq!(
            &read_bounded(&mut r, limits(3)).await.expect("read")[..],
            b"abc"
        );
        let mut r = answer(vec![]);
        assert!(read_bounded(&mut r, limits(0))
            .await
            .expect("read")
            .is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_whether_announced_or_not() {
        let mut r = answer(vec![b"abc", b"def"]);
        let err = read_bounded(&mut r, limits(5)).await.unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::Refused(ReadFailure::TooLarge {
                    limit: 5,
                    announced: None
                })
            ),
            "{err:?}"
        );
        let mut r = reqwest::Response::from(http::Response::new(reqwest::Body::from("abcdef")));
        assert_eq!(r.content_length(), Some(6));
        let err = read_bounded(&mut r, limits(5)).await.unwrap_err();
        assert!(matches!(
            err,
            ReadError::Refused(ReadFailure::TooLarge {
                announced: Some(6),
                ..
            })
        ));
        let mut r = answer(vec![b"a", b"b", b"c", b"d", b"e", b"f"]);
        assert!(read_bounded(&mut r, limits(5)).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        let body = reqwest::Body::wrap_stream(stream::pending::<std::io::Result<Bytes>>());
        let mut r = reqwest::Response::from(http::Response::new(body));
        let after = Duration::from_secs(3);
        let err = read_bounded(
            &mut r,
            AnswerLimits {
                max_bytes: 10,
                timeout: Some(after),
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(
            err,
            ReadError::Refused(ReadFailure::TimedOut { after: a }) if a == after
        ));
    }

    #[tokio::test]
    async fn an_error_body_keeps_its_first_bytes_only() {
        let r = answer(vec![b"0123", b"4567", b"89"]);
        assert_eq!(&read_prefix(r, 6).await[..], b"012345");
        let r = answer(vec![b"01"]);
        assert_eq!(&read_prefix(r, 6).await[..], b"01");
    }
}
