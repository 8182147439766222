//! The HTTP face of [`crate::Control`], for programs that are not Rust, under
//! `https://{spp}/emulator/`. No authentication (the emulator listens on
//! loopback only). Bodies are JSON; every answer is JSON.
//!
//! | Method and path | Body | Effect |
//! |---|---|---|
//! | `GET /emulator/state` | | counters, switches, grant types, websocket count, TLS handshakes (full, resumed), what is left of an A2A hub outage (`a2a_hub_outage_ms`, `null` when up) |
//! | `POST /emulator/latency` | `{"ms": 250}` | delay every SPP request |
//! | `POST /emulator/fail` | `{"count": 3, "status": 503}` | fail the next N requests |
//! | `POST /emulator/maintenance` | `{"on": true}` | put the appliance in maintenance (core, appliance and a2a answer 503; the management service keeps answering) or take it out; answers the state |
//! | `POST /emulator/validation` | `{"strict": false}` | stop (or resume) validating requests against the documents |
//! | `POST /emulator/websockets/drop` | | close every SignalR websocket abruptly |
//! | `POST /emulator/websockets/silent` | `{"silent": true}` | hubs stop pinging and answering |
//! | `POST /emulator/a2a-hub/outage` | `{"ms": 10000}` | the A2A hub is out for that long: its connections drop, negotiate and upgrades answer 503 (`{"ms": 0}` ends it); answers the state |
//! | `POST /emulator/signalr` | `{"negotiate_v0": true, "ping_ms": 15000, "long_poll_ms": 90000}` | negotiate version, ping interval, long-poll timeout |
//! | `POST /emulator/tokens/expire` | | expire every token now |
//! | `POST /emulator/tokens/lifetime` | `{"seconds": 60}` | lifetime of new tokens |
//! | `POST /emulator/access-requests/expire` | | end the window of every pending or available access request now; answers `{"expired": N}` |
//! | `POST /emulator/client-cert-mode` | `{"mode": "PostHandshake"}` | or `InHandshake`, `Renegotiation` |
//! | `POST /emulator/grants` | `{"grants": ["ResourceOwner", ...]}` | allowed OAuth2 grant types |
//! | `GET /emulator/counters` | | sign-ins per grant, LoginResponse calls |
//! | `POST /emulator/counters/reset` | | zero the counters |
//! | `POST /emulator/events` | `{"name": "UserCreated", "data": {..}}` | publish an event |
//! | `POST /emulator/users/seed` | `{"count": 250}` | create users for paging tests |
//! | `GET /emulator/device-codes` | | device-code logins |
//! | `POST /emulator/device-codes/{user_code}/approve` | `{"user": "Admin"}` | approve |
//! | `POST /emulator/device-codes/{user_code}/deny` | | deny |
//! | `POST /emulator/device-codes/{user_code}/expire` | | expire |
//! | `POST /emulator/backups` | `{"size": 1048576}` | add a backup |
//! | `GET /emulator/uploads` | | backup uploads received (size, SHA-256) |
//! | `POST /emulator/cluster/members/{index}/stop` | | stop cluster member `index` (0 = the first): its listener closes; send it to another member |
//! | `POST /emulator/cluster/members/{index}/start` | | start it again on its port |
//! | `POST /emulator/cluster/lock` | `{"operation": "Patch", "ms": 5000}` | lock the cluster for that long (`{"ms": 0}` unlocks) |

use std::time::Duration;

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::api::{json_response, ok, Ctx};
use crate::control::Control;
use crate::model::{ClientCertMode, ADMIN_USER};

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, &json!({"error": message}))
}

async fn body(ctx: &mut Ctx) -> Result<Value, Response> {
    let bytes = ctx.bytes().await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("invalid JSON: {e}")))
}

fn state(c: &Control) -> Value {
    let (full, resumed) = c.tls_handshakes();
    json!({
        "tls_handshakes": {"full": full, "resumed": resumed},
        "counters": c.counters(),
        "grants": c.allowed_grant_types(),
        "client_cert_mode": c.client_cert_mode(),
        "token_lifetime_seconds": c.token_lifetime().as_secs(),
        "websockets": c.websocket_count(),
        "pending_failures": c.pending_failures(),
        "users": c.user_count(),
        "a2a_hub_outage_ms": c.a2a_hub_outage_remaining().map(|d| d.as_millis() as u64),
        "strict_validation": c.strict_validation(),
        "maintenance": c.maintenance(),
    })
}

/// Handles `/emulator/...` on the SPP port.
pub(crate) async fn handle(mut ctx: Ctx) -> Response {
    let control = Control::new(ctx.app.clone());
    let lower: Vec<String> = ctx.lower.iter().skip(1).cloned().collect();
    let segs: Vec<String> = ctx.segs.iter().skip(1).cloned().collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = ctx.method().clone();
    let b = if m == Method::POST {
        match body(&mut ctx).await {
            Ok(b) => b,
            Err(r) => return r,
        }
    } else {
        Value::Null
    };
    match (m, l.as_slice()) {
        (Method::GET, ["state"]) => ok(&state(&control)),
        (Method::POST, ["latency"]) => {
            control.set_latency(Duration::from_millis(b["ms"].as_u64().unwrap_or(0)));
            ok(&state(&control))
        }
        (Method::POST, ["validation"]) => match b["strict"].as_bool() {
            Some(strict) => {
                control.set_strict_validation(strict);
                ok(&state(&control))
            }
            None => error(StatusCode::BAD_REQUEST, "strict must be true or false"),
        },
        (Method::POST, ["maintenance"]) => match b["on"].as_bool() {
            Some(on) => {
                control.set_maintenance(on);
                ok(&state(&control))
            }
            None => error(StatusCode::BAD_REQUEST, "on must be true or false"),
        },
        (Method::POST, ["fail"]) => {
            let status = b["status"].as_u64().unwrap_or(503);
            if !(500..=599).contains(&status) {
                return error(StatusCode::BAD_REQUEST, "status must be a 5xx code");
            }
            control.fail_next(b["count"].as_u64().unwrap_or(1), status as u16);
            ok(&state(&control))
        }
        (Method::POST, ["websockets", "drop"]) => {
            control.drop_websockets();
            ok(&state(&control))
        }
        (Method::POST, ["websockets", "silent"]) => {
            control.set_silent(b["silent"].as_bool().unwrap_or(true));
            ok(&state(&control))
        }
        (Method::POST, ["a2a-hub", "outage"]) => match b["ms"].as_u64() {
            Some(ms) => {
                control.a2a_hub_outage(Duration::from_millis(ms));
                ok(&state(&control))
            }
            None => error(
                StatusCode::BAD_REQUEST,
                "ms (the outage's length) is required",
            ),
        },
        (Method::POST, ["signalr"]) => {
            if let Some(v) = b["negotiate_v0"].as_bool() {
                control.set_negotiate_v0(v);
            }
            if let Some(ms) = b["ping_ms"].as_u64() {
                control.set_ping_interval(Duration::from_millis(ms));
            }
            if let Some(ms) = b["long_poll_ms"].as_u64() {
                control.set_long_poll_timeout(Duration::from_millis(ms));
            }
            ok(&state(&control))
        }
        (Method::POST, ["tokens", "expire"]) => {
            control.expire_all_tokens();
            ok(&state(&control))
        }
        (Method::POST, ["cluster", "members", index, action @ ("stop" | "start")]) => {
            match index.parse::<usize>() {
                Ok(i) => match control.set_member_running(i, *action == "start") {
                    Ok(()) => ok(&json!({"member": i, "running": *action == "start"})),
                    Err(e) => error(StatusCode::NOT_FOUND, &e),
                },
                Err(_) => error(StatusCode::BAD_REQUEST, "the member index is a number"),
            }
        }
        (Method::POST, ["cluster", "lock"]) => match b["ms"].as_u64() {
            Some(ms) => {
                let operation = b["operation"].as_str().unwrap_or("Patch");
                control.lock_cluster(operation, Duration::from_millis(ms));
                ok(&json!({"operation": operation, "ms": ms}))
            }
            None => error(StatusCode::BAD_REQUEST, "expected {\"ms\": N}"),
        },
        (Method::POST, ["access-requests", "expire"]) => {
            ok(&json!({"expired": control.expire_access_requests()}))
        }
        (Method::POST, ["tokens", "lifetime"]) => match b["seconds"].as_u64() {
            Some(s) if s > 0 => {
                control.set_token_lifetime(Duration::from_secs(s));
                ok(&state(&control))
            }
            _ => error(StatusCode::BAD_REQUEST, "seconds (> 0) is required"),
        },
        (Method::POST, ["client-cert-mode"]) => {
            let mode = match b["mode"].as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("posthandshake") | Some("post_handshake") | Some("post-handshake") => {
                    ClientCertMode::PostHandshake
                }
                Some("inhandshake") | Some("in_handshake") | Some("in-handshake") => {
                    ClientCertMode::InHandshake
                }
                Some("renegotiation") => ClientCertMode::Renegotiation,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "mode must be InHandshake, PostHandshake or Renegotiation",
                    )
                }
            };
            control.set_client_cert_mode(mode);
            ok(&state(&control))
        }
        (Method::POST, ["grants"]) => {
            let grants: Vec<String> = match &b["grants"] {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect(),
                Value::String(s) => s
                    .split(',')
                    .map(|g| g.trim().to_string())
                    .filter(|g| !g.is_empty())
                    .collect(),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "grants (list or comma-separated string) is required",
                    )
                }
            };
            let refs: Vec<&str> = grants.iter().map(String::as_str).collect();
            match control.set_allowed_grant_types(&refs) {
                Ok(()) => ok(&state(&control)),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            }
        }
        (Method::GET, ["counters"]) => ok(&json!(control.counters())),
        (Method::POST, ["counters", "reset"]) => {
            control.reset_counters();
            ok(&json!(control.counters()))
        }
        (Method::POST, ["events"]) => match b["name"].as_str() {
            Some(name) if !name.is_empty() => {
                let data = b.get("data").cloned().unwrap_or(json!({}));
                match b["account_id"].as_i64() {
                    Some(acct) => control.emit_a2a_event(name, acct, data),
                    None => control.emit_event(name, data),
                }
                ok(&json!({"emitted": name}))
            }
            _ => error(StatusCode::BAD_REQUEST, "name is required"),
        },
        (Method::POST, ["users", "seed"]) => {
            let n = b["count"].as_u64().unwrap_or(0).min(100_000) as usize;
            ok(&json!({"ids": control.seed_users(n)}))
        }
        (Method::GET, ["device-codes"]) => ok(&json!(control.device_codes())),
        (Method::POST, ["device-codes", _, action]) => {
            let code = &segs[1];
            let r = match *action {
                "approve" => {
                    control.approve_device_code(code, b["user"].as_str().unwrap_or(ADMIN_USER))
                }
                "deny" => control.deny_device_code(code),
                "expire" => control.expire_device_code(code),
                _ => return error(StatusCode::NOT_FOUND, "unknown action"),
            };
            match r {
                Ok(()) => ok(&json!(control.device_codes())),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            }
        }
        (Method::POST, ["backups"]) => {
            let size = b["size"].as_u64().unwrap_or(1024 * 1024);
            ok(&json!({"id": control.add_backup(size)}))
        }
        (Method::GET, ["uploads"]) => ok(&json!(control.uploads())),
        _ => error(
            StatusCode::NOT_FOUND,
            "unknown emulator control path; see the admin module docs",
        ),
    }
}
