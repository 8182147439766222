//! Routing of the SPP port: every request goes through [`dispatch`], which
//! matches paths case-insensitively like the appliance, applies the injected
//! faults and calls the handlers. Also the SPS port's fallback.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use http::{HeaderValue, StatusCode};
use serde_json::json;

use crate::api::generic::{self, ServedBy};
use crate::api::{
    self, api_error, bad_method, json_response, no_route, unauthorized, Ctx, Unhandled,
};
use crate::openapi::Spec;
use crate::state::App;
use crate::{admin, rsts, signalr};

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The SPP router: everything goes through [`dispatch`].
pub(crate) fn router(app: Arc<App>) -> Router {
    Router::new().fallback(dispatch).with_state(app)
}

/// Fallback of the SPS port for paths outside `/api/`.
pub(crate) async fn sps_fallback(req: Request) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": {"type": "InvalidPath", "message": format!("The requested path does not exist: {}", req.uri().path()), "details": {}}, "meta": {}}),
    )
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_string();
    let segs: Vec<String> = raw_path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_lowercase()).collect();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_lowercase(), v))
                .collect()
        })
        .unwrap_or_default();
    let mut ctx = Ctx {
        app: app.clone(),
        parts,
        body: Some(body),
        segs,
        lower,
        query,
        token_expires: None,
        user_id: None,
    };

    if ctx.lower.first().map(String::as_str) == Some("emulator") {
        return admin::handle(ctx).await;
    }

    let latency = app.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let failing = app
        .fail_remaining
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        let status = StatusCode::from_u16(app.fail_status.load(Ordering::SeqCst) as u16)
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return api_error(
            status,
            50000,
            "The appliance is temporarily unable to process the request (injected fault).",
        );
    }

    let lower = ctx.lower.clone();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let mut response = match l.as_slice() {
        ["rsts", ..] => rsts::handle(&mut ctx).await,
        ["service", "event", "signalr", ..] => signalr::handle(&mut ctx, false).await,
        ["service", "a2a", "signalr", ..] => signalr::handle(&mut ctx, true).await,
        // The management service is handwritten (no document) and keeps
        // answering in maintenance, when core, appliance and a2a do not.
        ["service", "management", _, ..] => api::management::handle(&mut ctx).await,
        ["service", "core" | "appliance" | "a2a", ..] if api::management::in_maintenance(&app) => {
            api::management::unavailable()
        }
        ["service", svc, "swagger", "v4", "swagger.json"] => {
            api::appliance::swagger(&mut ctx, svc).await
        }
        // v3 answers as v4: the vendor's tools and tutorial still call v3
        // for the resources both versions share.
        ["service", svc, version, ..]
            if (version.eq_ignore_ascii_case("v3") || version.eq_ignore_ascii_case("v4"))
                && crate::openapi::SERVICES.contains(svc) =>
        {
            let svc = svc.to_string();
            serve_api(&mut ctx, &svc).await
        }
        _ => no_route(&ctx),
    };
    if let Some(expires) = ctx.token_expires {
        if !response.headers().contains_key("x-tokenlifetimeremaining") {
            let remaining = expires.saturating_duration_since(Instant::now());
            let minutes = remaining.as_secs().div_ceil(60);
            if let Ok(v) = HeaderValue::from_str(&minutes.to_string()) {
                response.headers_mut().insert("x-tokenlifetimeremaining", v);
            }
        }
    }
    response
}

/// The handwritten handler of `service`.
async fn handwritten(ctx: &mut Ctx, service: &str) -> Response {
    match service {
        "core" => api::core::handle(ctx).await,
        "appliance" => api::appliance::handle(ctx).await,
        "notification" => api::appliance::notification(ctx).await,
        _ => api::a2a::handle(ctx).await,
    }
}

/// Whether the request carries a credential the appliance would look at: a
/// live user token, or (certificate users) an `A2A` authorization. The
/// notification service is anonymous and the a2a service checks its own.
fn credentialed(ctx: &mut Ctx, service: &str) -> bool {
    service == "notification"
        || service == "a2a"
        || ctx
            .header("authorization")
            .is_some_and(|h| h.len() > 4 && h[..4].eq_ignore_ascii_case("a2a "))
        || ctx.user().is_ok()
}

fn served(mut r: Response, by: ServedBy) -> Response {
    r.extensions_mut().insert(by);
    r
}

/// One request to a service: the handwritten handler first; what it does
/// not serve and the documents describe goes to the generic layer.
/// Authentication comes before routing, as on the appliance: without a
/// credential an unknown path is 401, not 404.
async fn serve_api(ctx: &mut Ctx, service: &str) -> Response {
    let spec = Spec::get();
    let Some(svc) = spec.service(service) else {
        return no_route(ctx);
    };
    let rest: Vec<String> = ctx.segs.iter().skip(3).cloned().collect();
    let found = svc.find(&rest, ctx.method());
    let op = found
        .as_ref()
        .and_then(|(route, _)| route.operation(ctx.method()));
    // Authorization and validation come after authentication (a request
    // without a credential is 401 whatever it holds) and before any handler.
    let mut parsed = None;
    if let (Some((route, params)), Some(op)) = (&found, op) {
        if credentialed(ctx, service) {
            if let Err(r) = generic::authorize(ctx, svc, svc.operation_object(route, op)) {
                return r;
            }
            if ctx.app.strict_validation.load(Ordering::SeqCst) {
                match validate_request(ctx, svc, route, op, params).await {
                    Ok(body) => parsed = body,
                    Err(r) => return r,
                }
            }
        }
    }
    // A replica, or a locked cluster, refuses documented configuration
    // writes (after authentication, authorization and validation).
    if op.is_some() && credentialed(ctx, service) {
        if let Some(r) = api::cluster::refuse(ctx, service) {
            return served(r, ServedBy::Handwritten);
        }
    }
    let r = handwritten(ctx, service).await;
    if r.extensions().get::<Unhandled>().is_none() {
        return served(r, ServedBy::Handwritten);
    }
    if !credentialed(ctx, service) {
        return unauthorized();
    }
    let (Some((route, _)), Some(op)) = (&found, op) else {
        return match found {
            Some(_) => bad_method(ctx),
            None => no_route(ctx),
        };
    };
    let body = if parsed.is_some() {
        parsed
    } else if ctx.body.is_some()
        && svc
            .json_body_schema(svc.operation_object(route, op))
            .is_some()
    {
        match ctx.bytes().await {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => None,
            Ok(b) => serde_json::from_slice(&b).ok(),
            Err(r) => return r,
        }
    } else {
        None
    };
    generic::handle(ctx, svc, route, op, body).await
}

/// Validates a request against its operation in the original document;
/// the appliance's 400 (or 415) when it is invalid. The body is read here
/// and handed back to the handlers unchanged; its JSON, when it has some,
/// is returned.
async fn validate_request(
    ctx: &mut Ctx,
    svc: &crate::openapi::ServiceSpec,
    route: &crate::openapi::Route,
    op: &crate::openapi::Operation,
    params: &[(String, String)],
) -> Result<Option<serde_json::Value>, Response> {
    // Only JSON bodies are read (bounded) for validation; an upload's stream
    // (octet-stream, multipart) is checked for its media type only and
    // reaches the handler untouched.
    let json = ctx
        .header("content-type")
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"));
    let bytes = match ctx.body.is_some() && json {
        true => ctx.bytes().await?,
        false => bytes::Bytes::new(),
    };
    let query: Vec<(String, String)> = ctx
        .parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let path_params: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let view = crate::validate::RequestView {
        path_params: &path_params,
        query: &query,
        content_type: ctx.header("content-type"),
        body: &bytes,
    };
    let result = crate::validate::validate(
        &svc.document,
        svc.path_item(route),
        svc.operation_object(route, op),
        &view,
    );
    if json {
        ctx.body = Some(axum::body::Body::from(bytes));
    }
    result.map_err(|invalid| {
        json_response(
            StatusCode::from_u16(invalid.status()).unwrap_or(StatusCode::BAD_REQUEST),
            &invalid.body(),
        )
    })
}

/// How one documented operation is served: probed through the router with an
/// administrator's token and placeholder arguments (state changes stay on
/// `app`; run it on a throwaway instance).
pub(crate) async fn coverage(app: Arc<App>) -> Vec<crate::model::OperationCoverage> {
    use tower::ServiceExt;

    // A fresh token for every probe (one probe may sign out), and ids no
    // entity has (`0`), so that no probe deletes or changes what the next
    // one needs.
    let admin = app
        .db()
        .users
        .iter()
        .find(|(_, u)| u["Name"].as_str() == Some(crate::model::ADMIN_USER))
        .map(|(id, _)| *id)
        .unwrap_or(1);
    let fresh_token = || {
        let token = crate::state::random_token(32);
        app.db().tokens.insert(
            token.clone(),
            crate::state::UserToken {
                user_id: admin,
                expires: Instant::now() + Duration::from_secs(3600),
            },
        );
        token
    };
    // Placeholder arguments are not valid ones: probe the handlers, not
    // the validation.
    let strict = app.strict_validation.swap(false, Ordering::SeqCst);
    let router = router(app.clone());
    let mut out = Vec::new();
    for svc in &Spec::get().services {
        for route in &svc.routes {
            let path: Vec<String> = route
                .segments
                .iter()
                .map(|s| match s {
                    crate::openapi::Segment::Literal(l) => l.clone(),
                    crate::openapi::Segment::Param(_) => "0".to_string(),
                })
                .collect();
            for op in &route.operations {
                let uri = format!("/service/{}/v4/{}", svc.name, path.join("/"));
                let req = http::Request::builder()
                    .method(op.method.clone())
                    .uri(&uri)
                    .header("authorization", format!("Bearer {}", fresh_token()))
                    .body(axum::body::Body::empty());
                let served_by = match req {
                    Ok(req) => match router.clone().oneshot(req).await {
                        Ok(r) => r.extensions().get::<ServedBy>().copied(),
                        Err(never) => match never {},
                    },
                    Err(_) => None,
                };
                out.push(crate::model::OperationCoverage {
                    service: svc.name.to_string(),
                    method: op.method.to_string(),
                    path: route.template.clone(),
                    operation_id: op.id.clone(),
                    served_by: served_by
                        .map(ServedBy::name)
                        .unwrap_or("unserved")
                        .to_string(),
                });
            }
        }
    }
    app.strict_validation.store(strict, Ordering::SeqCst);
    out
}
