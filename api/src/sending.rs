//! The sending half of every generated operation.
//!
//! Each operation builder's `send` builds its request and hands it here
//! (see `safeguard-codegen`'s `sending` pass): one generic future per kind
//! of answer instead of one state machine per operation, which is most of
//! what the generated code cost to compile. Not meant to be called by hand.

use progenitor_client::{ByteStream, Error, ResponseValue};
use serde::de::DeserializeOwned;

use crate::answer::{read_bounded, AnswerLimits, ReadError};
use crate::Inner;

/// Sends `request` (or returns its building error) and keeps the answer if
/// its status is one of `ok`. `streamed`: the answer's body is handed to the
/// caller unread (the executor then bounds the wait for its head and the
/// silences in its body); otherwise the caller reads it whole, within
/// [`within_answer_timeout`].
async fn answer<E>(
    inner: &Inner,
    request: Result<reqwest::Request, Error<E>>,
    ok: &[u16],
    streamed: bool,
) -> Result<reqwest::Response, Error<E>> {
    let request = request?;
    let response = if streamed {
        inner.exec_stream(request).await?
    } else {
        inner.exec(request).await?
    };
    if ok.contains(&response.status().as_u16()) {
        Ok(response)
    } else {
        Err(Error::UnexpectedResponse(response))
    }
}

/// Runs `call` (a request and the reading of its whole answer) within the
/// answer timeout of `inner`'s executor. The timer lives in the caller's
/// future, not in the executor's boxed one, and costs no allocation.
/// progenitor's error has no variant for a timeout: it comes back as
/// [`Error::Custom`] with a message that starts with
/// [`TIMED_OUT`](crate::answer::TIMED_OUT), which the SDK reads.
// progenitor's error type, as the generated `send`s return it.
#[allow(clippy::result_large_err)]
async fn within_answer_timeout<T, E>(
    inner: &Inner,
    call: impl std::future::Future<Output = Result<T, Error<E>>>,
) -> Result<T, Error<E>> {
    match inner.answer_limits().timeout {
        None => call.await,
        Some(after) => tokio::time::timeout(after, call)
            .await
            .unwrap_or_else(|_| Err(Error::Custom(crate::answer::timed_out(after)))),
    }
}

/// The status and headers of `response`, moved out of it (progenitor's own
/// constructors copy the headers of every answer).
fn head(response: &mut reqwest::Response) -> (reqwest::StatusCode, reqwest::header::HeaderMap) {
    (response.status(), std::mem::take(response.headers_mut()))
}

/// An operation whose success answer is a JSON `T`.
pub async fn json<T: DeserializeOwned, E>(
    inner: &Inner,
    request: Result<reqwest::Request, Error<E>>,
    ok: &[u16],
) -> Result<ResponseValue<T>, Error<E>> {
    within_answer_timeout(inner, async {
        let mut response = answer(inner, request, ok, false).await?;
        // The answer timeout covers the body: no second timer.
        let limits = AnswerLimits {
            timeout: None,
            ..inner.answer_limits()
        };
        let body = match read_bounded(&mut response, limits).await {
            Ok(body) => body,
            Err(ReadError::Body(e)) => return Err(Error::ResponseBodyError(e)),
            // progenitor's error has no variant for a refused body: the
            // answer travels back with the refusal on it, which the SDK reads.
            Err(ReadError::Refused(failure)) => {
                response.extensions_mut().insert(failure);
                return Err(Error::UnexpectedResponse(response));
            }
        };
        let (status, headers) = head(&mut response);
        let value =
            serde_json::from_slice(&body).map_err(|e| Error::InvalidResponsePayload(body, e))?;
        Ok(ResponseValue::new(value, status, headers))
    })
    .await
}

/// An operation whose success answer has no body.
pub async fn empty<E>(
    inner: &Inner,
    request: Result<reqwest::Request, Error<E>>,
    ok: &[u16],
) -> Result<ResponseValue<()>, Error<E>> {
    within_answer_timeout(inner, async {
        let mut response = answer(inner, request, ok, false).await?;
        let (status, headers) = head(&mut response);
        Ok(ResponseValue::new((), status, headers))
    })
    .await
}

/// An operation whose success answer is streamed (downloads, raw bytes).
pub async fn stream<E>(
    inner: &Inner,
    request: Result<reqwest::Request, Error<E>>,
    ok: &[u16],
) -> Result<ResponseValue<ByteStream>, Error<E>> {
    let mut response = answer(inner, request, ok, true).await?;
    let (status, headers) = head(&mut response);
    let bytes = ByteStream::new(Box::pin(response.bytes_stream()));
    Ok(ResponseValue::new(bytes, status, headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoxFuture, Exec};

    /// Answers every request with `status` and `body`, counting them.
    struct Fixed {
        status: u16,
        body: &'static str,
        sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Exec for Fixed {
        fn exec(
            &self,
            _request: reqwest::Request,
        ) -> BoxFuture<'_, reqwest::Result<reqwest::Response>> {
            self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let response = http::Response::builder()
                .status(self.status)
                .header("content-type", "application/json")
                .header("x-tokenlifetimeremaining", "42")
                .body(self.body)
                .expect("valid response");
            Box::pin(async move { Ok(reqwest::Response::from(response)) })
        }
    }

    /// An `Inner` whose every answer is `status` and `body`, and its count of requests.
    fn answering(
        status: u16,
        body: &'static str,
    ) -> (Inner, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (
            Inner::new(Fixed {
                status,
                body,
                sent: sent.clone(),
            }),
            sent,
        )
    }

    // progenitor's error type, as the generated `send`s build it.
    #[allow(clippy::result_large_err)]
    fn get() -> Result<reqwest::Request, Error<()>> {
        Ok(reqwest::Request::new(
            reqwest::Method::GET,
            "https://appliance.test/service/core/v4/Me"
                .parse()
                .expect("url"),
        ))
    }

    /// Polls `f` to completion: the futures here never wait on I/O.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn a_listed_status_decodes_the_body() {
        let (inner, _) = answering(201, r#"{"Id": 7}"#);
        let value: ResponseValue<serde_json::Value> =
            block_on(json(&inner, get(), &[200, 201])).expect("decoded");
        assert_eq!(value.status().as_u16(), 201);
        assert_eq!(value.headers()["x-tokenlifetimeremaining"], "42");
        assert_eq!(value.into_inner()["Id"], 7);
    }

    #[test]
    fn an_unlisted_status_is_an_unexpected_response_with_its_status() {
        let (inner, _) = answering(404, r#"{"Code": 70000, "Message": "gone"}"#);
        let err = block_on(json::<serde_json::Value, ()>(&inner, get(), &[200])).unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
        assert!(matches!(err, Error::UnexpectedResponse(_)), "{err:?}");
        let (inner, _) = answering(500, "");
        let err = block_on(empty::<()>(&inner, get(), &[204])).unwrap_err();
        assert_eq!(err.status().map(|s| s.as_u16()), Some(500));
    }

    #[test]
    fn an_undecodable_body_is_an_invalid_payload() {
        let (inner, _) = answering(200, "{not json");
        let err = block_on(json::<serde_json::Value, ()>(&inner, get(), &[200])).unwrap_err();
        assert!(matches!(err, Error::InvalidResponsePayload(..)), "{err:?}");
    }

    #[test]
    fn empty_and_stream_answers_keep_the_status_and_headers() {
        let (inner, _) = answering(204, "");
        let value = block_on(empty::<()>(&inner, get(), &[200, 204])).expect("empty");
        assert_eq!(value.status().as_u16(), 204);
        assert_eq!(value.headers()["content-type"], "application/json");
        let (inner, _) = answering(200, "bytes");
        let value = block_on(stream::<()>(&inner, get(), &[200])).expect("stream");
        assert_eq!(value.status().as_u16(), 200);
        assert_eq!(value.headers()["x-tokenlifetimeremaining"], "42");
        let mut body = value.into_inner();
        let chunk = block_on(futures::StreamExt::next(&mut *body)).expect("one chunk");
        assert_eq!(&chunk.expect("readable")[..], b"bytes");
    }

    /// [`Fixed`] with a limit of `max_bytes` on the answers it reads.
    struct Limited(Fixed, u64);

    impl Exec for Limited {
        fn exec(
            &self,
            request: reqwest::Request,
        ) -> BoxFuture<'_, reqwest::Result<reqwest::Response>> {
            self.0.exec(request)
        }

        fn answer_limits(&self) -> crate::answer::AnswerLimits {
            crate::answer::AnswerLimits {
                max_bytes: self.1,
                timeout: None,
            }
        }
    }

    #[test]
    fn an_answer_over_the_limit_comes_back_with_the_refusal_on_it() {
        let (Inner(_), sent) = answering(200, "");
        let limited = |max| {
            Inner::new(Limited(
                Fixed {
                    status: 200,
                    body: r#"{"Id": 7}"#,
                    sent: sent.clone(),
                },
                max,
            ))
        };
        let err = block_on(json::<serde_json::Value, ()>(&limited(8), get(), &[200])).unwrap_err();
        let Error::UnexpectedResponse(response) = err else {
            panic!("not an unexpected response: {err:?}");
        };
        assert_eq!(
            response.status().as_u16(),
            200,
            "the real status, not a made-up one"
        );
        assert_eq!(
            response.extensions().get::<crate::answer::ReadFailure>(),
            Some(&crate::answer::ReadFailure::TooLarge {
                limit: 8,
                announced: Some(9)
            })
        );
        let value = block_on(json::<serde_json::Value, ()>(&limited(9), get(), &[200]));
        assert_eq!(value.expect("at the limit").into_inner()["Id"], 7);
    }

    #[test]
    fn a_request_that_failed_to_build_is_never_sent() {
        let (inner, sent) = answering(200, "{}");
        let invalid: Result<reqwest::Request, Error<()>> = Err(Error::InvalidRequest(
            "conversion to `i32` for limit failed".into(),
        ));
        let err = block_on(json::<serde_json::Value, ()>(&inner, invalid, &[200])).unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
