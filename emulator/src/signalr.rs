//! ASP.NET Core SignalR (JSON hub protocol over websockets) for the user event
//! hub `/service/event/signalr` and the A2A hub `/service/a2a/signalr`.
//!
//! During an A2A hub outage (`Control::a2a_hub_outage`) the A2A hub answers
//! every request 503 (negotiate and websocket upgrade alike) and drops its
//! connections; the user hub is not affected.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::api::{api_error, authorization_denied, bad_method, no_route, ok, Ctx};
use crate::state::{App, Event};

const RS: char = '\u{1e}';

/// Event names the A2A hub forwards.
const A2A_EVENTS: [&str; 3] = [
    "AssetAccountPasswordUpdated",
    "AssetAccountSshKeyUpdated",
    "AccountApiKeySecretUpdated",
];

/// Who is listening.
enum Listener {
    User,
    A2a(HashSet<i64>),
}

async fn authenticate(ctx: &mut Ctx, a2a: bool) -> Result<Listener, Response> {
    if !a2a {
        ctx.user()?;
        return Ok(Listener::User);
    }
    let Some(cert) = ctx.client_certificate().await else {
        return Err(authorization_denied());
    };
    let Some(keys) = crate::api::a2a_keys(ctx) else {
        return Err(api_error(
            StatusCode::UNAUTHORIZED,
            60108,
            "Authorization is required for this request. Send 'Authorization: A2A <api key> ...'.",
        ));
    };
    let mut accounts = HashSet::new();
    for key in keys {
        let owner = ctx.app.db().api_key_owner(&key);
        let Some((reg, acct)) = owner else {
            return Err(api_error(
                StatusCode::FORBIDDEN,
                60096,
                "Invalid API key or the API key is not authorized for this request.",
            ));
        };
        crate::api::registration_accepts(ctx, reg, &cert)?;
        accounts.insert(acct);
    }
    Ok(Listener::A2a(accounts))
}

pub(crate) async fn handle(ctx: &mut Ctx, a2a: bool) -> Response {
    if a2a && ctx.app.a2a_hub_down() {
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            50000,
            "The A2A event service is unavailable (injected outage).",
        );
    }
    let tail: Vec<String> = ctx.lower.iter().skip(3).cloned().collect();
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    match tail.as_slice() {
        ["negotiate"] => {
            if ctx.method() != Method::POST {
                return bad_method(ctx);
            }
            if let Err(r) = authenticate(ctx, a2a).await {
                return r;
            }
            let requested = ctx
                .q("negotiateversion")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0);
            let version = if ctx.app.negotiate_v0.load(Ordering::SeqCst) {
                0
            } else {
                requested.min(1)
            };
            let connection_id = crate::state::random_token(16);
            let token = crate::state::random_token(16);
            let id_for_ws = if version == 1 { &token } else { &connection_id };
            ctx.app
                .db()
                .signalr_ids
                .insert(id_for_ws.clone(), std::time::Instant::now());
            let transports =
                json!([{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]);
            let mut v = json!({"negotiateVersion": version, "connectionId": connection_id,
                "availableTransports": transports});
            if version == 1 {
                v["connectionToken"] = json!(token);
            }
            ok(&v)
        }
        [] => {
            if ctx.method() != Method::GET {
                return bad_method(ctx);
            }
            let listener = match authenticate(ctx, a2a).await {
                Ok(l) => l,
                Err(r) => return r,
            };
            if let Some(id) = ctx.q("id") {
                if ctx.app.db().signalr_ids.remove(id).is_none() {
                    return (StatusCode::NOT_FOUND, "No Connection with that ID").into_response();
                }
            }
            let upgrade = match WebSocketUpgrade::from_request_parts(&mut ctx.parts, &()).await {
                Ok(u) => u,
                Err(e) => return e.into_response(),
            };
            let app = ctx.app.clone();
            upgrade.on_upgrade(move |socket| run(app, socket, listener))
        }
        _ => no_route(ctx),
    }
}

/// Splits complete records (terminated by 0x1E) off `buf`.
fn records(buf: &mut String) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(pos) = buf.find(RS) {
        let rec: String = buf[..pos].to_string();
        buf.drain(..pos + RS.len_utf8());
        if !rec.trim().is_empty() {
            out.push(rec);
        }
    }
    out
}

fn frame(v: &Value) -> Message {
    Message::Text(format!("{v}{RS}").into())
}

async fn run(app: Arc<App>, mut socket: WebSocket, listener: Listener) {
    let a2a = matches!(listener, Listener::A2a(_));
    // Subscribed before the outage is checked, so that an outage that starts
    // while this connection opens is seen one way or the other.
    let mut a2a_drop = app.a2a_hub_drop.subscribe();
    if a2a && app.a2a_hub_down() {
        return;
    }
    let mut buf = String::new();
    // Handshake.
    let handshake = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(t))) => buf.push_str(t.as_str()),
                Some(Ok(Message::Binary(b))) => buf.push_str(&String::from_utf8_lossy(&b)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
            if let Some(first) = records(&mut buf).into_iter().next() {
                return Some(first);
            }
        }
    })
    .await;
    let Ok(Some(first)) = handshake else { return };
    let parsed: Value = serde_json::from_str(&first).unwrap_or(Value::Null);
    if parsed["protocol"].as_str() != Some("json") {
        let msg = format!(
            "The protocol '{}' is not supported.",
            parsed["protocol"].as_str().unwrap_or_default()
        );
        let _ = socket.send(frame(&json!({"error": msg}))).await;
        return;
    }
    if parsed["version"].as_u64().unwrap_or(1) > 1 {
        let _ = socket
            .send(frame(&json!({"error": "The server does not support version 2 or later of the 'json' protocol."})))
            .await;
        return;
    }
    // Subscribed before the handshake is answered: a client that sees the
    // answer (and reports itself connected) can be dropped, and receives
    // the events emitted from then on.
    let mut events = app.events.subscribe();
    let mut drop_rx = app.ws_drop.subscribe();
    let mut close_rx = app.ws_close.subscribe();
    let mut shutdown = app.shutdown.subscribe();
    if a2a && app.a2a_hub_down() {
        return;
    }
    if socket
        .send(Message::Text(format!("{{}}{RS}").into()))
        .await
        .is_err()
    {
        return;
    }
    app.websockets.fetch_add(1, Ordering::SeqCst);
    let ping_every = Duration::from_millis(app.ping_interval_ms.load(Ordering::SeqCst).max(10));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if !app.silent.load(Ordering::SeqCst) && socket.send(frame(&json!({"type": 6}))).await.is_err() {
                    break;
                }
            }
            ev = events.recv() => {
                let ev: Event = match ev {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                };
                if app.silent.load(Ordering::SeqCst) {
                    continue;
                }
                // An event that raced the outage's start: the outage wins.
                if a2a && app.a2a_hub_down() {
                    break;
                }
                let wanted = match &listener {
                    Listener::User => true,
                    Listener::A2a(accounts) => {
                        A2A_EVENTS.iter().any(|n| n.eq_ignore_ascii_case(&ev.name))
                            && ev.account_id.is_some_and(|a| accounts.contains(&a))
                    }
                };
                if wanted {
                    let msg = json!({"type": 1, "target": "NotifyEventAsync",
                        "arguments": [{"Name": ev.name, "Data": ev.data}]});
                    if socket.send(frame(&msg)).await.is_err() {
                        break;
                    }
                }
            }
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.as_str().to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                if app.silent.load(Ordering::SeqCst) {
                    continue;
                }
                buf.push_str(&text);
                let mut close = false;
                for rec in records(&mut buf) {
                    let v: Value = serde_json::from_str(&rec).unwrap_or(Value::Null);
                    match v["type"].as_u64() {
                        Some(7) => close = true,
                        Some(1) | Some(4) => {
                            if let Some(id) = v["invocationId"].as_str() {
                                let target = v["target"].as_str().unwrap_or_default();
                                let reply = json!({"type": 3, "invocationId": id,
                                    "error": format!("Unknown hub method '{target}'")});
                                let _ = socket.send(frame(&reply)).await;
                            }
                        }
                        _ => {}
                    }
                }
                if close {
                    break;
                }
            }
            _ = close_rx.changed() => {
                // A hub close message, then a websocket close frame.
                let msg = close_rx.borrow_and_update().1.clone();
                let _ = socket.send(frame(&msg)).await;
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
            _ = drop_rx.changed() => {
                // Dropped without a close frame, like a broken connection.
                break;
            }
            _ = a2a_drop.changed(), if a2a => {
                // The start of an A2A hub outage: dropped the same way.
                break;
            }
            _ = shutdown.changed() => break,
        }
    }
    app.websockets.fetch_sub(1, Ordering::SeqCst);
}
