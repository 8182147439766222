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

use crate::api::{self, api_error, json_response, no_route, Ctx};
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
        ["service", svc, "swagger", "v4", "swagger.json"] => {
            api::appliance::swagger(&mut ctx, svc).await
        }
        // v3 answers as v4: the vendor's tools and tutorial still call v3
        // for the resources both versions share.
        ["service", "core", "v3" | "v4", ..] => api::core::handle(&mut ctx).await,
        ["service", "appliance", "v3" | "v4", ..] => api::appliance::handle(&mut ctx).await,
        ["service", "notification", "v3" | "v4", ..] => {
            api::appliance::notification(&mut ctx).await
        }
        ["service", "a2a", "v3" | "v4", ..] => api::a2a::handle(&mut ctx).await,
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
