//! The SPS error model: every code of the vendor's guide with its status,
//! answered as `{"error": {"type", "message", "details"}, "meta": {..}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Every error code the guide documents, plus the two HTTP-level ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpsErrorCode {
    /// 400: the body is not valid UTF-8 JSON of the expected shape.
    InvalidRequestBody,
    /// 400: the configuration tree could not be prepared.
    ConfigTreeNotAvailable,
    /// 400: a value is not accepted syntactically.
    SyntacticError,
    /// 400: a path component breaks the path rules.
    InvalidPath,
    /// 400: the configuration would be inconsistent.
    SemanticError,
    /// 401: no valid session.
    Unauthenticated,
    /// 401: the credentials were refused.
    AuthenticationFailure,
    /// 403: the user may not do this.
    Unauthorized,
    /// 404: no such node.
    NodeNotFound,
    /// 404: the node exists but is not available directly.
    NodeNotAvailable,
    /// 405: the method is not supported at all here.
    UnsupportedMethod,
    /// 405: PUT is not supported here.
    PutNotAllowed,
    /// 405: the subtree cannot be changed this way.
    MethodNotAllowed,
    /// 405: POST is not supported here.
    PostNotAllowed,
    /// 405: GET is not supported here.
    GetNotAllowed,
    /// 405: DELETE is not supported here.
    DeleteNotAllowed,
    /// 409: someone else committed first; the changes would collide.
    MidAirCollision,
    /// 409: someone else committed first; the result would be inconsistent.
    MidAirCollisionSemanticError,
    /// 409: the configuration is locked by another user or interface.
    WebGuiOrRpcApiConfigInProgress,
    /// 409: a change without an open transaction.
    NoTransaction,
    /// 409: a second transaction in the same session.
    DoubleTransaction,
    /// 411: a POST/PUT without Content-Length.
    LengthRequired,
    /// 417: an `Expect:` header.
    ExpectationFailed,
    /// 500: a commit message is required.
    CommitMessageMissing,
    /// 500: the commit failed internally.
    TransactionCommitError,
    /// 500: authorization failed internally.
    AuthorizationError,
}

impl SpsErrorCode {
    /// Every code, for tests.
    pub const ALL: [SpsErrorCode; 26] = [
        Self::InvalidRequestBody,
        Self::ConfigTreeNotAvailable,
        Self::SyntacticError,
        Self::InvalidPath,
        Self::SemanticError,
        Self::Unauthenticated,
        Self::AuthenticationFailure,
        Self::Unauthorized,
        Self::NodeNotFound,
        Self::NodeNotAvailable,
        Self::UnsupportedMethod,
        Self::PutNotAllowed,
        Self::MethodNotAllowed,
        Self::PostNotAllowed,
        Self::GetNotAllowed,
        Self::DeleteNotAllowed,
        Self::MidAirCollision,
        Self::MidAirCollisionSemanticError,
        Self::WebGuiOrRpcApiConfigInProgress,
        Self::NoTransaction,
        Self::DoubleTransaction,
        Self::LengthRequired,
        Self::ExpectationFailed,
        Self::CommitMessageMissing,
        Self::TransactionCommitError,
        Self::AuthorizationError,
    ];

    /// The `error.type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequestBody => "InvalidRequestBody",
            Self::ConfigTreeNotAvailable => "ConfigTreeNotAvailable",
            Self::SyntacticError => "SyntacticError",
            Self::InvalidPath => "InvalidPath",
            Self::SemanticError => "SemanticError",
            Self::Unauthenticated => "Unauthenticated",
            Self::AuthenticationFailure => "AuthenticationFailure",
            Self::Unauthorized => "Unauthorized",
            Self::NodeNotFound => "NodeNotFound",
            Self::NodeNotAvailable => "NodeNotAvailable",
            Self::UnsupportedMethod => "UnsupportedMethod",
            Self::PutNotAllowed => "PutNotAllowed",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::PostNotAllowed => "PostNotAllowed",
            Self::GetNotAllowed => "GetNotAllowed",
            Self::DeleteNotAllowed => "DeleteNotAllowed",
            Self::MidAirCollision => "MidAirCollision",
            Self::MidAirCollisionSemanticError => "MidAirCollisionSemanticError",
            Self::WebGuiOrRpcApiConfigInProgress => "WebGuiOrRpcApiConfigInProgress",
            Self::NoTransaction => "NoTransaction",
            Self::DoubleTransaction => "DoubleTransaction",
            Self::LengthRequired => "LengthRequired",
            Self::ExpectationFailed => "ExpectationFailed",
            Self::CommitMessageMissing => "CommitMessageMissing",
            Self::TransactionCommitError => "TransactionCommitError",
            Self::AuthorizationError => "AuthorizationError",
        }
    }

    /// The HTTP status the guide gives the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequestBody
            | Self::ConfigTreeNotAvailable
            | Self::SyntacticError
            | Self::InvalidPath
            | Self::SemanticError => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::AuthenticationFailure => StatusCode::UNAUTHORIZED,
            Self::Unauthorized => StatusCode::FORBIDDEN,
            Self::NodeNotFound | Self::NodeNotAvailable => StatusCode::NOT_FOUND,
            Self::UnsupportedMethod
            | Self::PutNotAllowed
            | Self::MethodNotAllowed
            | Self::PostNotAllowed
            | Self::GetNotAllowed
            | Self::DeleteNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::MidAirCollision
            | Self::MidAirCollisionSemanticError
            | Self::WebGuiOrRpcApiConfigInProgress
            | Self::NoTransaction
            | Self::DoubleTransaction => StatusCode::CONFLICT,
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            Self::CommitMessageMissing
            | Self::TransactionCommitError
            | Self::AuthorizationError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer being built.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: SpsErrorCode,
    pub(crate) message: String,
    pub(crate) details: Value,
    pub(crate) meta: Value,
}

impl ApiError {
    pub(crate) fn new(code: SpsErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: json!({}),
            meta: json!({}),
        }
    }

    pub(crate) fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub(crate) fn path(self, path: &str) -> Self {
        self.details(json!({ "path": path }))
    }

    pub(crate) fn meta(mut self, meta: Value) -> Self {
        self.meta = meta;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "type": self.code.as_str(),
                "message": self.message,
                "details": self.details,
            },
            "meta": self.meta,
        });
        let mut resp = (self.code.status(), axum::Json(body)).into_response();
        if self.code == SpsErrorCode::AuthenticationFailure {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"SPS REST API\""),
            );
        }
        resp
    }
}
