//! The sending half of every generated operation.
//!
//! Each operation builder's `send` builds its request and hands it here
//! (see `safeguard-codegen`'s `sending` pass): one generic future per kind
//! of answer instead of one state machine per operation, which is most of
//! what the generated code cost to compile. Not meant to be called by hand.

use progenitor_client::{ByteStream, Error, ResponseValue};
use serde::de::DeserializeOwned;

use crate::answer::{read_bounded, AnswerLimits, ReadError, ReadFailure};
use crate::{CallError, Inner};

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
) -> Result<reqwest::Response, CallError<E>> {
    let request = request?;
    let response = if streamed {
        inner.exec_stream(request).await
    } else {
        inner.exec(request).await
    }
    .map_err(CallError::Exec)?;
    if ok.contains(&response.status().as_u16()) {
        Ok(response)
    } else {
        Err(CallError::Call(Error::UnexpectedResponse(response)))
    }
}

/// Runs `call` (a request and the reading of its whole answer) within
/// `timeout`, the answer timeout of the executor. The timer lives in the
/// caller's future, not in the executor's boxed one, and costs no
/// allocation. (`CallError` is the generated calls' error as it is: boxing
/// it here would cost every call an allocation.)
#[allow(clippy::result_large_err)]
async fn within_answer_timeout<T, E>(
    timeout: Option<std::time::Duration>,
    call: impl std::future::Future<Output = Result<T, CallError<E>>>,
) -> Result<T, CallError<E>> {
    match timeout {
        None => call.await,
        Some(after) => tokio::time::timeout(after, call).await.unwrap_or_else(|_| {
            Err(CallError::Limit {
                failure: ReadFailure::TimedOut { after },
                path: None,
            })
        }),
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
) -> Result<ResponseValue<T>, CallError<E>> {
    let limits = inner.answer_limits();
    within_answer_timeout(limits.timeout, async {
        let mut response = answer(inner, request, ok, false).await?;
        // The answer timeout covers the body: no second timer.
        let body = match read_bounded(
            &mut response,
            AnswerLimits {
                timeout: None,
                ..limits
            },
        )
        .await
        {
            Ok(body) => body,
            Err(ReadError::Body(e)) => return Err(Error::ResponseBodyError(e).into()),
            Err(ReadError::Refused(failure)) => {
                return Err(CallError::Limit {
                    failure,
                    path: Some(response.url().path().to_owned()),
                })
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
) -> Result<ResponseValue<()>, CallError<E>> {
    within_answer_timeout(inner.answer_limits().timeout, async {
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
) -> Result<ResponseValue<ByteStream>, CallError<E>> {
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
            request: reqwest::Request,
        ) -> BoxFuture<'_, Result<reqwest::Response, crate::ExecError>> {
            use reqwest::ResponseBuilderExt;
            self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let response = http::Response::builder()
                .url(request.url().clone())
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
        let CallError::Call(err) = err else {
            panic!("{err:?}")
        };
        assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
        assert!(matches!(err, Error::UnexpectedResponse(_)), "{err:?}");
        let (inner, _) = answering(500, "");
        let err = block_on(empty::<()>(&inner, get(), &[204])).unwrap_err();
        assert!(
            matches!(&err, CallError::Call(e) if e.status().map(|s| s.as_u16()) == Some(500)),
            "{err:?}"
        );
    }

    #[test]
    fn an_undecodable_body_is_an_invalid_payload() {
        let (inner, _) = answering(200, "{not json");
        let err = block_on(json::<serde_json::Value, ()>(&inner, get(), &[200])).unwrap_err();
        assert!(
            matches!(err, CallError::Call(Error::InvalidResponsePayload(..))),
            "{err:?}"
        );
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
        ) -> BoxFuture<'_, Result<reqwest::Response, crate::ExecError>> {
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
    fn an_answer_over_the_limit_is_refused_naming_the_limit_and_path() {
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
        let CallError::Limit { failure, path } = err else {
            panic!("not a refusal: {err:?}");
        };
        assert_eq!(
            failure,
            ReadFailure::TooLarge {
                limit: 8,
                announced: Some(9)
            }
        );
        assert_eq!(path.as_deref(), Some("/service/core/v4/Me"));
        let value = block_on(json::<serde_json::Value, ()>(&limited(9), get(), &[200]));
        assert_eq!(value.expect("at the limit").into_inner()["Id"], 7);
    }

    /// Fails every request with `message`.
    struct Failing(&'static str);

    impl Exec for Failing {
        fn exec(
            &self,
            _request: reqwest::Request,
        ) -> BoxFuture<'_, Result<reqwest::Response, crate::ExecError>> {
            Box::pin(async move { Err(self.0.into()) })
        }
    }

    #[test]
    fn an_executor_failure_is_that_failure_not_an_answer() {
        let inner = Inner::new(Failing("the sign-in was refused"));
        let err = block_on(json::<serde_json::Value, ()>(&inner, get(), &[200])).unwrap_err();
        let CallError::Exec(e) = err else {
            panic!("not the executor's failure: {err:?}");
        };
        assert_eq!(e.to_string(), "the sign-in was refused");
        let streamed = block_on(stream::<()>(&inner, get(), &[200]));
        assert!(matches!(streamed, Err(CallError::Exec(_))));
    }

    #[tokio::test]
    async fn an_executor_failure_through_progenitors_hook_is_the_source_of_its_error() {
        let e = crate::as_reqwest_error("refused".into()).await;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut chain = Vec::new();
        while let Some(c) = cause {
            chain.push(c.to_string());
            cause = c.source();
        }
        assert_eq!(
            chain.last().map(String::as_str),
            Some("refused"),
            "{chain:?}"
        );
    }

    #[test]
    fn a_request_that_failed_to_build_is_never_sent() {
        let (inner, sent) = answering(200, "{}");
        let invalid: Result<reqwest::Request, Error<()>> = Err(Error::InvalidRequest(
            "conversion to `i32` for limit failed".into(),
        ));
        let err = block_on(json::<serde_json::Value, ()>(&inner, invalid, &[200])).unwrap_err();
        assert!(
            matches!(err, CallError::Call(Error::InvalidRequest(_))),
            "{err:?}"
        );
        assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
