//! How a generated call fails.

use std::fmt;

use crate::answer::ReadFailure;

/// A failure of the executor behind a generated client: whatever kept it
/// from getting an answer (in `safeguard-sdk`, its own `Error`: a sign-in
/// that failed, a refused redirect, a TLS or connection failure...).
pub type ExecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a generated call failed. `safeguard-sdk` turns every variant into its
/// one `Error` (with `?`); match on this only to tell the three apart.
#[derive(Debug)]
pub enum CallError<E = ()> {
    /// What the call itself found: a parameter that did not convert, an
    /// answer whose status the document does not list, a body that does not
    /// decode (progenitor's error).
    Call(progenitor_client::Error<E>),
    /// The answer was refused by the executor's limits: larger than allowed
    /// or not whole in time; `path` is the request's path when known.
    Limit {
        /// Which limit.
        failure: ReadFailure,
        /// The request's path, when an answer had begun.
        path: Option<String>,
    },
    /// No answer: the executor failed.
    Exec(ExecError),
}

impl<E> From<progenitor_client::Error<E>> for CallError<E> {
    fn from(e: progenitor_client::Error<E>) -> Self {
        CallError::Call(e)
    }
}

impl<E: fmt::Debug> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Call(e) => write!(f, "{e}"),
            CallError::Limit { failure, path } => {
                match failure {
                    ReadFailure::TooLarge { limit, .. } => {
                        write!(f, "the answer is larger than the limit of {limit} bytes")?
                    }
                    ReadFailure::TimedOut { after } => {
                        write!(f, "no whole answer within {after:?}")?
                    }
                }
                match path {
                    Some(p) => write!(f, " ({p})"),
                    None => Ok(()),
                }
            }
            CallError::Exec(e) => write!(f, "{e}"),
        }
    }
}

impl<E: fmt::Debug> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CallError::Call(e) => e.source(),
            CallError::Limit { .. } => None,
            CallError::Exec(e) => Some(&**e),
        }
    }
}

/// `e` as the `reqwest::Error` progenitor's own `send` bodies expect from
/// the client hook: used only by the interface styles kept for measuring
/// build times, whose `send`s do not go through [`crate::sending`]: a
/// reqwest error whose innermost source is `e`.
#[doc(hidden)]
pub async fn as_reqwest_error(e: ExecError) -> reqwest::Error {
    let failing = futures::stream::once(async move { Err::<bytes::Bytes, _>(e) });
    let mut response =
        reqwest::Response::from(http::Response::new(reqwest::Body::wrap_stream(failing)));
    match response.chunk().await {
        Err(e) => e,
        Ok(_) => unreachable!("a body whose only chunk is an error fails"),
    }
}
