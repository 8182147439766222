//! The SPP services (core, appliance, notification, a2a, management) and what every SPP
//! handler shares: the pre-parsed request [`Ctx`], authentication helpers and
//! the appliance's error bodies. The routing that calls the handlers is in
//! `crate::router`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use crate::state::App;
use crate::tls::{ConnHandle, PeerCertificate};

pub(crate) mod a2a;
pub(crate) mod access;
pub(crate) mod appliance;
pub(crate) mod cluster;
pub(crate) mod core;
pub(crate) mod generic;
pub(crate) mod management;

pub(crate) use self::a2a::{a2a_keys, registration_accepts};

/// Largest JSON body accepted.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// One request, pre-parsed.
pub(crate) struct Ctx {
    pub app: Arc<App>,
    pub parts: http::request::Parts,
    pub body: Option<Body>,
    /// Decoded path segments, original case.
    pub segs: Vec<String>,
    /// The same, lower case (for matching).
    pub lower: Vec<String>,
    /// Query parameters, keys lower-cased.
    pub query: HashMap<String, String>,
    /// The user token's expiry when the request was authenticated with one.
    pub token_expires: Option<Instant>,
    /// The token's owner once [`Ctx::user`] has found it: the router, the
    /// authorization and the handlers all ask, the token is looked up once.
    pub user_id: Option<i64>,
}

impl Ctx {
    pub(crate) fn method(&self) -> &Method {
        &self.parts.method
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn q(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub(crate) fn conn(&self) -> Option<ConnHandle> {
        self.parts.extensions.get::<ConnHandle>().cloned()
    }

    /// The client certificate, asking for it after the handshake when the
    /// connection is in post-handshake mode.
    pub(crate) async fn client_certificate(&mut self) -> Option<PeerCertificate> {
        if let Some(c) = self.parts.extensions.get::<PeerCertificate>() {
            return Some(c.clone());
        }
        match self.conn() {
            Some(conn) => conn.request_client_certificate().await,
            None => None,
        }
    }

    /// Reads the whole body (bounded).
    pub(crate) async fn bytes(&mut self) -> Result<bytes::Bytes, Response> {
        let body = self.body.take().unwrap_or_else(Body::empty);
        axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|_| {
            api_error(
                StatusCode::BAD_REQUEST,
                70001,
                "The request body could not be read or is too large.",
            )
        })
    }

    /// Reads a JSON body: 415 unless the content type is JSON, 400 when it does not parse.
    pub(crate) async fn json(&mut self) -> Result<Value, Response> {
        let ct = self
            .header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !ct.contains("json") {
            return Err(unsupported_media_type(&ct));
        }
        let bytes = self.bytes().await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(validation_error("The request body is required.", "body"));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            validation_error(&format!("The request body is not valid JSON: {e}"), "body")
        })
    }

    /// Reads a JSON object body.
    pub(crate) async fn json_object(&mut self) -> Result<serde_json::Map<String, Value>, Response> {
        match self.json().await? {
            Value::Object(m) => Ok(m),
            _ => Err(validation_error(
                "The request body must be a JSON object.",
                "body",
            )),
        }
    }

    /// Reads a JSON string body (passwords).
    pub(crate) async fn json_string(&mut self) -> Result<String, Response> {
        match self.json().await? {
            Value::String(s) => Ok(s),
            _ => Err(validation_error(
                "The request body must be a JSON string.",
                "body",
            )),
        }
    }

    /// The bearer user token's owner; 401 with the appliance's body otherwise.
    pub(crate) fn user(&mut self) -> Result<i64, Response> {
        if let Some(id) = self.user_id {
            return Ok(id);
        }
        let token = self
            .header("authorization")
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| rest.trim().to_string())
            })
            .or_else(|| self.q("access_token").map(str::to_string));
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(unauthorized());
        };
        let now = Instant::now();
        let db = self.app.db();
        match db.tokens.get(&token) {
            Some(t) if t.expires > now && db.users.contains_key(&t.user_id) => {
                let disabled = db.users[&t.user_id]["Disabled"].as_bool().unwrap_or(false);
                if disabled {
                    return Err(unauthorized());
                }
                self.token_expires = Some(t.expires);
                self.user_id = Some(t.user_id);
                Ok(t.user_id)
            }
            _ => Err(unauthorized()),
        }
    }

    /// Like [`Ctx::user`], and the user must hold one of `roles` (or GlobalAdmin).
    pub(crate) fn admin(&mut self, roles: &[&str]) -> Result<i64, Response> {
        let id = self.user()?;
        if self.app.db().holds_role(id, roles) {
            Ok(id)
        } else {
            Err(api_error(
                StatusCode::FORBIDDEN,
                60101,
                "You do not have permission to perform this action.",
            ))
        }
    }
}

/// JSON response.
pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, serde_json::to_vec(v).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// 200 with JSON.
pub(crate) fn ok(v: &Value) -> Response {
    json_response(StatusCode::OK, v)
}

/// 204.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// The appliance's error body `{"Code", "Message", "InnerError"}`.
pub(crate) fn api_error(status: StatusCode, code: i64, message: &str) -> Response {
    json_response(
        status,
        &json!({"Code": code, "Message": message, "InnerError": Value::Null}),
    )
}

/// 400 with a `ModelState` naming the offending member.
pub(crate) fn validation_error(message: &str, field: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"Code": 70000, "Message": "The request is invalid.", "InnerError": Value::Null,
                "ModelState": {field: [message]}}),
    )
}

/// 400 for a business-rule refusal.
pub(crate) fn bad_request(code: i64, message: &str) -> Response {
    api_error(StatusCode::BAD_REQUEST, code, message)
}

/// 401 for a missing, unknown, expired or logged-out token.
pub(crate) fn unauthorized() -> Response {
    let mut r = api_error(
        StatusCode::UNAUTHORIZED,
        60108,
        "Authorization is required for this request.",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// 403 / 60094, what a client without (an acceptable) certificate gets.
pub(crate) fn authorization_denied() -> Response {
    api_error(StatusCode::FORBIDDEN, 60094, "Authorization is denied.")
}

/// 404 for a missing entity.
pub(crate) fn not_found(what: &str, id: &str) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        70003,
        &format!("Unable to find {what} with id '{id}'."),
    )
}

/// 415 for a body that is not JSON.
pub(crate) fn unsupported_media_type(ct: &str) -> Response {
    api_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        70002,
        &format!(
            "The request entity's media type '{}' is not supported for this resource.",
            if ct.is_empty() { "text/plain" } else { ct }
        ),
    )
}

/// Marks the answer of a handwritten handler that does not serve the
/// request's path or method, so that the router passes the request on to
/// the generic layer when the documents describe it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unhandled;

/// 404 for a path no route matches.
pub(crate) fn no_route(ctx: &Ctx) -> Response {
    let mut r = json_response(
        StatusCode::NOT_FOUND,
        &json!({"Message": format!("No HTTP resource was found that matches the request URI '{}'.", ctx.parts.uri.path())}),
    );
    r.extensions_mut().insert(Unhandled);
    r
}

/// 405 for a known path with another method.
pub(crate) fn bad_method(ctx: &Ctx) -> Response {
    let mut r = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"Message": format!("The requested resource does not support http method '{}'.", ctx.method())}),
    );
    r.extensions_mut().insert(Unhandled);
    r
}

/// STS (OAuth) error body.
pub(crate) fn sts_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// Parses a numeric path id; a non-numeric id is a 404 like an unknown route.
pub(crate) fn parse_id(ctx: &Ctx, s: &str) -> Result<i64, Response> {
    s.parse::<i64>().map_err(|_| no_route(ctx))
}

/// Applies the list query parameters and answers.
pub(crate) fn list(ctx: &Ctx, items: Vec<Value>) -> Response {
    match crate::query::apply(items, &ctx.query) {
        Ok(crate::query::Listing::Items(v)) => ok(&Value::Array(v)),
        Ok(crate::query::Listing::Count(n)) => ok(&json!(n)),
        Err(e) => bad_request(70009, &e),
    }
}

/// Answers one entity, honouring `fields`.
pub(crate) fn one(ctx: &Ctx, v: &Value) -> Response {
    match ctx.q("fields").filter(|f| !f.trim().is_empty()) {
        Some(f) => {
            let list: Vec<String> = f.split(',').map(|s| s.trim().to_string()).collect();
            ok(&crate::query::project(v, &list))
        }
        None => ok(v),
    }
}

/// Helper for handlers: the `Ctx` path segments after the service prefix.
pub(crate) fn rest(ctx: &Ctx, skip: usize) -> (Vec<String>, Vec<String>) {
    (
        ctx.segs.iter().skip(skip).cloned().collect(),
        ctx.lower.iter().skip(skip).cloned().collect(),
    )
}
