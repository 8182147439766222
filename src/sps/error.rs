//! [`SpsError`], the data of [`Error::Sps`](crate::Error::Sps): one variant
//! per error code of the SPS REST API, plus the client-side failures only SPS
//! has. Failures shared with the rest of the SDK (transport, TLS, timeout,
//! limits, decoding, configuration, I/O) are the shared variants of
//! [`Error`](crate::Error).

use std::fmt;

use reqwest::StatusCode;
use serde_json::Value;

/// An error answer of the SPS REST API:
/// `{"error": {"type", "message", "details"}, "meta": {..}}`.
#[derive(Clone)]
pub struct SpsApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// `error.type` as sent (e.g. `MidAirCollision`); empty when the answer
    /// had no SPS error body.
    pub code: String,
    /// `error.message`, or the body text when it was not an SPS error body.
    pub message: String,
    /// `error.details`: the path that failed, the semantic errors, the method...
    pub details: Value,
    /// The answer's `meta`.
    pub meta: Value,
    /// `METHOD /path` of the request (no query string).
    pub request: String,
}

impl SpsApiError {
    /// Reads an error answer. Never fails: a body that is not an SPS error
    /// keeps its status, and its text (cut to 300 characters) as the message.
    pub fn from_parts(status: StatusCode, request: impl Into<String>, body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let error = parsed.as_ref().and_then(|v| v.get("error"));
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let (code, message, details) = match error {
            Some(Value::Object(e)) => (
                text(e.get("type")),
                text(e.get("message")),
                e.get("details").cloned().unwrap_or(Value::Null),
            ),
            Some(Value::String(s)) => (s.clone(), String::new(), Value::Null),
            _ => {
                let lossy = String::from_utf8_lossy(body);
                let cut = (0..=lossy.len().min(300))
                    .rev()
                    .find(|i| lossy.is_char_boundary(*i))
                    .unwrap_or(0);
                (String::new(), lossy[..cut].trim().to_string(), Value::Null)
            }
        };
        let meta = parsed
            .as_ref()
            .and_then(|v| v.get("meta"))
            .cloned()
            .unwrap_or(Value::Null);
        Self {
            status,
            code,
            message,
            details,
            meta,
            request: request.into(),
        }
    }

    /// `details.path`, when the server named the path that failed.
    pub fn path(&self) -> Option<&str> {
        self.details.get("path").and_then(Value::as_str)
    }

    /// `details.errors`, the list of semantic errors, when present.
    pub fn errors(&self) -> Vec<Value> {
        self.details
            .get("errors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

impl fmt::Display for SpsApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status.as_u16())?;
        if !self.request.is_empty() {
            write!(f, " from {}", self.request)?;
        }
        if !self.code.is_empty() {
            write!(f, ": {}", self.code)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(p) = self.path() {
            write!(f, " ({p})")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SpsApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpsApiError")
            .field("status", &self.status.as_u16())
            .field("code", &self.code)
            .field("message", &self.message)
            .field("details", &self.details)
            .field("request", &self.request)
            .finish()
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $status:literal ),* $(,)?) => {
        /// What is specific to SPS in a failed SPS call, carried by
        /// [`Error::Sps`](crate::Error::Sps).
        ///
        /// One variant per error code the SPS REST API documents, each keeping
        /// the status, message and `details` ([`SpsApiError`], boxed to keep
        /// `Result`s small); an error answer
        /// with an unknown code (or no SPS error body) is [`SpsError::Other`].
        /// Then the client-side failures of the transaction workflow and the
        /// search syntax.
        #[derive(Clone, Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum SpsError {
            $(
                $(#[$doc])*
                #[doc = concat!("\n\nHTTP ", stringify!($status), ".")]
                #[error("{0}")]
                $name(Box<SpsApiError>),
            )*
            /// An error answer with a code this SDK does not know, or without
            /// an SPS error body.
            #[error("{0}")]
            Other(Box<SpsApiError>),
            /// The session expired (or was signed out) while a transaction was
            /// open: the server discarded the transaction with it. The client
            /// signs in again on the next call; redo the transaction.
            #[error("the SPS session expired inside a transaction, which the server discarded: {0}")]
            SessionExpiredInTransaction(Box<SpsApiError>),
            /// The transaction needs a commit message (`commit_message:
            /// required`) and none was given; nothing was sent.
            #[error("a commit message is required to commit this transaction")]
            CommitMessageRequired,
            /// A call through a [`Transaction`](super::Transaction) whose
            /// transaction is over (committed, rolled back, timed out, or
            /// discarded with its session), even if a later transaction of the
            /// session is open; nothing was sent. Open a new transaction.
            #[error("this SPS transaction is closed; open a new one")]
            TransactionClosed,
            /// A search expression (`q`) that SPS would not accept; nothing was sent.
            #[error("invalid search expression: {0}")]
            InvalidQuery(String),
            /// A step of [`SpsClient::join_spp`](super::SpsClient::join_spp)
            /// failed: which one, and the error of the call that failed (an
            /// SPS answer, an SPP answer, TLS, transport, ...).
            #[error("joining SPS to SPP failed at step {step}: {source}")]
            Join {
                /// The step that failed.
                step: super::JoinStep,
                /// What failed.
                source: Box<crate::Error>,
            },
        }

        impl SpsError {
            /// Builds the variant for an error answer.
            pub fn from_api(error: SpsApiError) -> Self {
                let code = error.code.clone();
                let status = error.status;
                let error = Box::new(error);
                match code.as_str() {
                    $( stringify!($name) => SpsError::$name(error), )*
                    "" if status == StatusCode::LENGTH_REQUIRED => SpsError::LengthRequired(error),
                    "" if status == StatusCode::EXPECTATION_FAILED => SpsError::ExpectationFailed(error),
                    _ => SpsError::Other(error),
                }
            }

            /// The error answer, for every variant that is one.
            pub fn api_error(&self) -> Option<&SpsApiError> {
                match self {
                    $( SpsError::$name(e) => Some(e.as_ref()), )*
                    SpsError::Other(e) | SpsError::SessionExpiredInTransaction(e) => Some(e.as_ref()),
                    _ => None,
                }
            }

            /// The names of every documented code, for tests.
            pub const CODES: &'static [&'static str] = &[$( stringify!($name) ),*];
        }
    };
}

codes! {
    /// The request body is not valid (not UTF-8 JSON, or the wrong shape).
    InvalidRequestBody = 400,
    /// SPS could not prepare its configuration tree.
    ConfigTreeNotAvailable = 400,
    /// A value is not accepted syntactically; `details.path` names it.
    SyntacticError = 400,
    /// A path component breaks the rules (lower-case alphanumerics, `-`, `_`).
    InvalidPath = 400,
    /// The configuration would be inconsistent; `details.errors` lists why.
    SemanticError = 400,
    /// No valid session (signed out or expired).
    Unauthenticated = 401,
    /// The credentials or certificate were refused.
    AuthenticationFailure = 401,
    /// The user may not access this.
    Unauthorized = 403,
    /// No such node.
    NodeNotFound = 404,
    /// The node exists but cannot be accessed directly.
    NodeNotAvailable = 404,
    /// The method is not supported here.
    UnsupportedMethod = 405,
    /// Replacing this path is not supported.
    PutNotAllowed = 405,
    /// The subtree cannot be changed this way.
    MethodNotAllowed = 405,
    /// Posting to this path is not supported.
    PostNotAllowed = 405,
    /// Querying this path is not supported.
    GetNotAllowed = 405,
    /// Deleting this path is not supported (built-in objects, branches).
    DeleteNotAllowed = 405,
    /// Another client committed first and this transaction would overwrite
    /// its changes: roll back, reopen, redo (see [`SpsClient::transaction_with_retry`](super::SpsClient::transaction_with_retry)).
    MidAirCollision = 409,
    /// Another client committed first and this transaction would be
    /// inconsistent with its changes: review, roll back, reopen, redo.
    MidAirCollisionSemanticError = 409,
    /// The configuration is locked by another user (web GUI, console, or
    /// another REST session with pending changes).
    WebGuiOrRpcApiConfigInProgress = 409,
    /// A change was attempted without an open transaction (or it timed out).
    NoTransaction = 409,
    /// This session already has an open transaction.
    DoubleTransaction = 409,
    /// The request had no body and no `Content-Length`.
    LengthRequired = 411,
    /// The request carried an `Expect:` header the server cannot meet.
    ExpectationFailed = 417,
    /// A commit message is required and the commit had none.
    CommitMessageMissing = 500,
    /// The commit failed inside SPS.
    TransactionCommitError = 500,
    /// Authorization failed inside SPS.
    AuthorizationError = 500,
}

impl SpsError {
    /// The step of [`SpsClient::join_spp`](super::SpsClient::join_spp) that
    /// failed, for [`SpsError::Join`].
    pub fn join_step(&self) -> Option<super::JoinStep> {
        match self {
            SpsError::Join { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// The HTTP status, when the error is an answer.
    pub fn status(&self) -> Option<StatusCode> {
        self.api_error().map(|e| e.status)
    }

    /// The SPS error code (`error.type`), when the error is an answer that has one.
    pub fn code(&self) -> Option<&str> {
        self.api_error()
            .map(|e| e.code.as_str())
            .filter(|c| !c.is_empty())
    }

    /// A 409 answer: the configuration or the transaction state conflicts
    /// with the request (collisions, lock, missing or double transaction).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            SpsError::MidAirCollision(_)
                | SpsError::MidAirCollisionSemanticError(_)
                | SpsError::WebGuiOrRpcApiConfigInProgress(_)
                | SpsError::NoTransaction(_)
                | SpsError::DoubleTransaction(_)
        ) || (matches!(self, SpsError::Other(e) if e.status == StatusCode::CONFLICT))
    }

    /// Worth redoing (after rolling back and reopening for transaction
    /// errors): a mid-air collision, a configuration lock, a transient server
    /// error (`ConfigTreeNotAvailable`, `TransactionCommitError`, 502/503/504).
    /// [`Error::is_retryable`](crate::Error::is_retryable) adds connection
    /// failures and timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            SpsError::MidAirCollision(_)
            | SpsError::WebGuiOrRpcApiConfigInProgress(_)
            | SpsError::ConfigTreeNotAvailable(_)
            | SpsError::TransactionCommitError(_) => true,
            SpsError::Other(e) => matches!(e.status.as_u16(), 502..=504),
            _ => false,
        }
    }
}

/// An answer of SPS that did not decode into the expected shape.
pub(crate) fn decode(status: Option<StatusCode>, message: impl fmt::Display) -> crate::Error {
    crate::Error::Decode(crate::error::DecodeError::new(status, message, b""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn an_sps_answer_is_the_one_errors_sps_variant() {
        let e: Error = SpsError::from_api(SpsApiError::from_parts(
            StatusCode::CONFLICT,
            "PUT /api/transaction",
            br#"{"error":{"type":"MidAirCollision","message":"m","details":{"path":"/x"}},"meta":{}}"#,
        ))
        .into();
        assert!(matches!(e, Error::Sps(SpsError::MidAirCollision(_))));
        assert_eq!(e.sps_code(), Some("MidAirCollision"));
        assert_eq!(e.sps_error().and_then(SpsApiError::path), Some("/x"));
        assert_eq!(e.status(), Some(StatusCode::CONFLICT));
        assert!(e.is_conflict() && e.is_retryable());
        assert_eq!(
            e.to_string(),
            "SPS: HTTP 409 from PUT /api/transaction: MidAirCollision: m (/x)"
        );
        let closed = Error::from(SpsError::TransactionClosed);
        assert!(closed.sps().is_some() && closed.sps_error().is_none());
        assert!(!closed.is_retryable() && !closed.is_conflict());
        // A shared failure is not an SPS one.
        let timeout = Error::Timeout("no answer".into());
        assert!(timeout.sps().is_none() && timeout.is_retryable());
    }

    #[test]
    fn known_unknown_and_garbage() {
        let e = SpsError::from_api(SpsApiError::from_parts(
            StatusCode::CONFLICT,
            "PUT /api/transaction",
            br#"{"error":{"type":"MidAirCollision","message":"m","details":{"paths":["/x"]}},"meta":{}}"#,
        ));
        assert!(matches!(e, SpsError::MidAirCollision(_)));
        assert!(e.is_conflict() && e.is_retryable());
        let e = SpsError::from_api(SpsApiError::from_parts(
            StatusCode::IM_A_TEAPOT,
            "GET /api/x",
            br#"{"error":{"type":"BrandNew","message":"m"}}"#,
        ));
        assert_eq!(e.code(), Some("BrandNew"));
        assert!(matches!(e, SpsError::Other(_)));
        let e = SpsError::from_api(SpsApiError::from_parts(
            StatusCode::LENGTH_REQUIRED,
            "",
            b"<html>",
        ));
        assert!(matches!(e, SpsError::LengthRequired(_)));
        assert_eq!(SpsError::CODES.len(), 26);
    }
}
