//! SignalR hubs: negotiate, handshake, events, pings, dropped and silent connections.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use safeguard_emulator::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_openssl::SslStream<tokio::net::TcpStream>>;

async fn negotiate(emu: &Emulator, hub: &str, auth: &str, version: u32, with_cert: bool) -> Value {
    let c = if with_cert {
        cert_client(emu)
    } else {
        client(emu)
    };
    let r = c
        .post(format!(
            "{}{hub}/negotiate?negotiateVersion={version}",
            base(emu)
        ))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn connect(emu: &Emulator, hub: &str, auth: &str, id: &str, with_cert: bool) -> Ws {
    let stream = openssl_connect(emu, with_cert, false).await;
    let mut req = format!("wss://{}{hub}?id={id}", emu.spp_host())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", auth.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    ws.send(Message::Text(
        "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
    ))
    .await
    .unwrap();
    let first = next_text(&mut ws).await.expect("handshake answer");
    assert_eq!(first, "{}\u{1e}");
    ws
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Next invocation frame (skipping pings).
async fn next_invocation(ws: &mut Ws) -> Option<Value> {
    loop {
        let text = next_text(ws).await?;
        for rec in text.split('\u{1e}').filter(|r| !r.is_empty()) {
            let v: Value = serde_json::from_str(rec).unwrap();
            if v["type"] == 1 {
                return Some(v);
            }
        }
    }
}

#[tokio::test]
async fn user_hub_events_pings_and_drop() {
    let emu = start_with(EmulatorConfig {
        signalr_ping_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let auth = format!("Bearer {t}");
    let v1 = negotiate(&emu, "/service/event/signalr", &auth, 1, false).await;
    assert_eq!(v1["negotiateVersion"], 1);
    assert!(v1["connectionToken"].is_string());
    assert_eq!(v1["availableTransports"][0]["transport"], "WebSockets");
    let v0 = negotiate(&emu, "/service/event/signalr", &auth, 0, false).await;
    assert_eq!(v0["negotiateVersion"], 0);
    assert!(v0.get("connectionToken").is_none());
    emu.control().set_negotiate_v0(true);
    let forced = negotiate(&emu, "/service/event/signalr", &auth, 1, false).await;
    assert_eq!(forced["negotiateVersion"], 0);
    emu.control().set_negotiate_v0(false);
    // Unauthenticated negotiate: 401.
    let r = c
        .post(format!(
            "{}/service/event/signalr/negotiate?negotiateVersion=1",
            base(&emu)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let mut ws = connect(
        &emu,
        "/service/event/signalr",
        &auth,
        v1["connectionToken"].as_str().unwrap(),
        false,
    )
    .await;
    // A ping arrives.
    let text = next_text(&mut ws).await.unwrap();
    assert_eq!(text, "{\"type\":6}\u{1e}");
    // Creating a user emits UserCreated.
    let r = c
        .post(core(&emu, "Users"))
        .bearer_auth(&t)
        .json(&json!({"Name": "evt-user"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let inv = next_invocation(&mut ws).await.unwrap();
    assert_eq!(inv["target"], "NotifyEventAsync");
    assert_eq!(inv["arguments"][0]["Name"], "UserCreated");
    assert_eq!(inv["arguments"][0]["Data"]["UserName"], "evt-user");
    emu.control().emit_event("Custom", json!({"x": 1}));
    let inv = next_invocation(&mut ws).await.unwrap();
    assert_eq!(inv["arguments"][0]["Name"], "Custom");
    assert_eq!(emu.control().websocket_count(), 1);
    // Silent: no pings, no events.
    emu.control().set_silent(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Drain anything queued before silence.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {}
    emu.control().emit_event("Custom", json!({}));
    assert!(tokio::time::timeout(Duration::from_millis(700), ws.next())
        .await
        .is_err());
    emu.control().set_silent(false);
    // Drop: the socket ends without a close frame.
    emu.control().drop_websockets();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(!matches!(end, Some(Ok(Message::Close(_)))), "{end:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(emu.control().websocket_count(), 0);
}

#[tokio::test]
async fn unknown_connection_id_and_access_token_query() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let r = c
        .get(format!(
            "{}/service/event/signalr?id=unknown&access_token={t}",
            base(&emu)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(format!(
            "{}/service/event/signalr/negotiate?negotiateVersion=1&access_token={t}",
            base(&emu)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a2a_hub_gets_only_its_accounts_events() {
    let emu = start().await;
    let keys = emu.connection().spp.a2a.clone();
    let auth = format!("A2A {}", keys.password_api_key);
    let v = negotiate(&emu, "/service/a2a/signalr", &auth, 1, true).await;
    let mut ws = connect(
        &emu,
        "/service/a2a/signalr",
        &auth,
        v["connectionToken"].as_str().unwrap(),
        true,
    )
    .await;
    let control = emu.control();
    // Not an A2A event, and an A2A event of another account: both filtered.
    control.emit_event("UserCreated", json!({}));
    control.emit_a2a_event(
        "AssetAccountPasswordUpdated",
        control.ssh_key_account_id(),
        json!({"which": "other"}),
    );
    // Setting the password through A2A emits the event for this account.
    let c = cert_client(&emu);
    let r = c
        .put(format!(
            "{}/service/a2a/v4/Credentials/Password",
            base(&emu)
        ))
        .header("Authorization", &auth)
        .json(&"Rotated-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let inv = next_invocation(&mut ws).await.unwrap();
    assert_eq!(inv["arguments"][0]["Name"], "AssetAccountPasswordUpdated");
    assert_eq!(
        inv["arguments"][0]["Data"]["AccountId"],
        control.password_account_id()
    );
    // Without a certificate the A2A hub refuses.
    let r = client(&emu)
        .post(format!(
            "{}/service/a2a/signalr/negotiate?negotiateVersion=1",
            base(&emu)
        ))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["Code"], 60094);
}

/// The next close record (skipping pings).
async fn next_close(ws: &mut Ws) -> Option<Value> {
    loop {
        let text = next_text(ws).await?;
        for rec in text.split('\u{1e}').filter(|r| !r.is_empty()) {
            let v: Value = serde_json::from_str(rec).unwrap();
            if v["type"] == 7 {
                return Some(v);
            }
        }
    }
}

#[tokio::test]
async fn hub_close_messages_with_and_without_allow_reconnect() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let auth = format!("Bearer {t}");
    for allow in [Some(false), Some(true), None] {
        let v1 = negotiate(&emu, "/service/event/signalr", &auth, 1, false).await;
        let mut ws = connect(
            &emu,
            "/service/event/signalr",
            &auth,
            v1["connectionToken"].as_str().unwrap(),
            false,
        )
        .await;
        emu.control().close_websockets("maintenance", allow);
        let close = next_close(&mut ws).await.expect("a close message");
        assert_eq!(close["error"], "maintenance");
        match allow {
            Some(a) => assert_eq!(close["allowReconnect"], a),
            None => assert!(close.get("allowReconnect").is_none(), "{close}"),
        }
        // Then the websocket ends with a close frame.
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(_))) => continue,
                    other => return other,
                }
            }
        })
        .await
        .unwrap();
        assert!(matches!(end, Some(Ok(Message::Close(_))) | None), "{end:?}");
    }
}

/// The end of a websocket (skipping text frames), within 5 s.
async fn ws_end(ws: &mut Ws) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the websocket ends")
}

/// Status of an A2A hub negotiate.
async fn a2a_negotiate_status(emu: &Emulator, auth: &str) -> u16 {
    cert_client(emu)
        .post(format!(
            "{}/service/a2a/signalr/negotiate?negotiateVersion=1",
            base(emu)
        ))
        .header("Authorization", auth)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a2a_hub_outage_refuses_connections_then_ends() {
    let emu = start().await;
    let control = emu.control();
    let keys = emu.connection().spp.a2a.clone();
    let auth = format!("A2A {}", keys.password_api_key);
    let a2a_hub = "/service/a2a/signalr";
    let v = negotiate(&emu, a2a_hub, &auth, 1, true).await;
    let mut a2a_ws = connect(
        &emu,
        a2a_hub,
        &auth,
        v["connectionToken"].as_str().unwrap(),
        true,
    )
    .await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let bearer = format!("Bearer {t}");
    let v = negotiate(&emu, "/service/event/signalr", &bearer, 1, false).await;
    let mut user_ws = connect(
        &emu,
        "/service/event/signalr",
        &bearer,
        v["connectionToken"].as_str().unwrap(),
        false,
    )
    .await;
    // A token negotiated before the outage, to try the upgrade during it.
    let early = negotiate(&emu, a2a_hub, &auth, 1, true).await;
    assert_eq!(control.a2a_hub_outage_remaining(), None);

    let outage = Duration::from_millis(1500);
    control.a2a_hub_outage(outage);
    let ends = tokio::time::Instant::now() + outage;
    assert!(control.a2a_hub_outage_remaining().is_some());
    // The A2A hub's connection drops at once, without a close frame.
    let end = ws_end(&mut a2a_ws).await;
    assert!(!matches!(end, Some(Ok(Message::Close(_)))), "{end:?}");
    // Negotiate answers 503, and so does the websocket upgrade.
    assert_eq!(a2a_negotiate_status(&emu, &auth).await, 503);
    let stream = openssl_connect(&emu, true, false).await;
    let mut req = format!(
        "wss://{}{a2a_hub}?id={}",
        emu.spp_host(),
        early["connectionToken"].as_str().unwrap()
    )
    .into_client_request()
    .unwrap();
    req.headers_mut()
        .insert("Authorization", auth.parse().unwrap());
    match tokio_tungstenite::client_async(req, stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("the upgrade is refused: {other:?}"),
    }
    // The rest of the appliance works: the user hub, a rotation through
    // core, A2A credential retrieval.
    let id = control.password_account_id();
    let r = c
        .put(core(&emu, &format!("AssetAccounts/{id}/Password")))
        .bearer_auth(&t)
        .json(&"Rotated-during-outage")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let inv = next_invocation(&mut user_ws).await.unwrap();
    assert_eq!(inv["arguments"][0]["Name"], "AssetAccountPasswordUpdated");
    let r = cert_client(&emu)
        .get(format!(
            "{}/service/a2a/v4/Credentials?type=password",
            base(&emu)
        ))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!("Rotated-during-outage")
    );
    assert_eq!(emu.control().websocket_count(), 1, "the user hub's");

    // After the outage the hub accepts connections and delivers events.
    tokio::time::sleep_until(ends + Duration::from_millis(50)).await;
    assert_eq!(control.a2a_hub_outage_remaining(), None);
    let v = negotiate(&emu, a2a_hub, &auth, 1, true).await;
    let mut a2a_ws = connect(
        &emu,
        a2a_hub,
        &auth,
        v["connectionToken"].as_str().unwrap(),
        true,
    )
    .await;
    control.emit_a2a_event("AssetAccountPasswordUpdated", id, json!({"after": true}));
    let inv = next_invocation(&mut a2a_ws).await.unwrap();
    assert_eq!(inv["arguments"][0]["Data"]["after"], true);
}

#[tokio::test]
async fn a2a_hub_outage_over_http_and_ended_early() {
    let emu = start().await;
    let keys = emu.connection().spp.a2a.clone();
    let auth = format!("A2A {}", keys.password_api_key);
    let c = client(&emu);
    let outage = |ms: u64| {
        c.post(format!("{}/emulator/a2a-hub/outage", base(&emu)))
            .json(&json!({"ms": ms}))
            .send()
    };
    let state: Value = outage(60_000).await.unwrap().json().await.unwrap();
    let left = state["a2a_hub_outage_ms"].as_u64().expect("an outage");
    assert!(left > 50_000 && left <= 60_000, "{state}");
    assert_eq!(a2a_negotiate_status(&emu, &auth).await, 503);
    let state: Value = outage(0).await.unwrap().json().await.unwrap();
    assert!(state["a2a_hub_outage_ms"].is_null(), "{state}");
    assert_eq!(a2a_negotiate_status(&emu, &auth).await, 200);
    let r = c
        .post(format!("{}/emulator/a2a-hub/outage", base(&emu)))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
