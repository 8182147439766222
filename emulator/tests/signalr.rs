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

// ---- Server-Sent Events and long polling (TransportProtocols.md) ----

const HANDSHAKE: &str = "{\"protocol\":\"json\",\"version\":1}\u{1e}";

/// Reads SSE events (the `data:` lines of each event, joined) off a response.
struct SseReader {
    stream: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl SseReader {
    fn new(r: reqwest::Response) -> SseReader {
        SseReader {
            stream: r.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    /// The next event's data; `Err` when the stream broke, `Ok(None)` when it ended.
    async fn next_event(&mut self) -> Result<Option<String>, String> {
        loop {
            if let Some(pos) = self.buf.find("\r\n\r\n") {
                let block: String = self.buf.drain(..pos + 4).collect();
                let data: Vec<&str> = block
                    .split("\r\n")
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if !data.is_empty() {
                    return Ok(Some(data.join("\n")));
                }
                continue;
            }
            match tokio::time::timeout(Duration::from_secs(10), self.stream.next()).await {
                Ok(Some(Ok(b))) => self.buf.push_str(&String::from_utf8_lossy(&b)),
                Ok(Some(Err(e))) => return Err(e.to_string()),
                Ok(None) => return Ok(None),
                Err(_) => return Err("no event within 10 s".into()),
            }
        }
    }

    /// The next invocation (skipping pings and the handshake answer).
    async fn next_invocation(&mut self) -> Value {
        loop {
            let data = self.next_event().await.unwrap().expect("an event");
            for rec in data.split('\u{1e}').filter(|r| !r.is_empty()) {
                let v: Value = serde_json::from_str(rec).unwrap();
                if v["type"] == 1 {
                    return v;
                }
            }
        }
    }
}

fn hub_url(emu: &Emulator, hub: &str, id: &str) -> String {
    format!("{}{hub}?id={id}", base(emu))
}

/// Fires the core test event as the admin.
async fn fire_test_event(emu: &Emulator, token: &str) {
    let r = client(emu)
        .post(core(emu, "Events/FireTestEvent"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// Invocations in a long poll's body.
fn invocations(body: &str) -> Vec<Value> {
    body.split('\u{1e}')
        .filter(|r| !r.is_empty())
        .map(|r| serde_json::from_str::<Value>(r).unwrap())
        .filter(|v| v["type"] == 1)
        .collect()
}

#[tokio::test]
async fn negotiate_lists_the_three_transports() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let auth = format!("Bearer {t}");
    for version in [0, 1] {
        let v = negotiate(&emu, "/service/event/signalr", &auth, version, false).await;
        assert_eq!(
            v["availableTransports"],
            json!([
                {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
                {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
                {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
            ])
        );
        assert_eq!(v["negotiateVersion"], version);
        assert_eq!(v.get("connectionToken").is_some(), version == 1);
    }
    let keys = emu.connection().spp.a2a.clone();
    let a2a = negotiate(
        &emu,
        "/service/a2a/signalr",
        &format!("A2A {}", keys.password_api_key),
        1,
        true,
    )
    .await;
    assert_eq!(a2a["availableTransports"].as_array().unwrap().len(), 3);
    // A version that is not an integer: ASP.NET Core's error answer.
    let r = c
        .post(format!(
            "{}/service/event/signalr/negotiate?negotiateVersion=x",
            base(&emu)
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "The client requested a non-integer protocol version."
    );
}

#[tokio::test]
async fn server_sent_events_receive_a_fired_test_event() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let hub = "/service/event/signalr";
    // Version 1 connects with the connectionToken, version 0 with the
    // connectionId (here with the token in the query, as browsers send it).
    for version in [1, 0] {
        let v = negotiate(&emu, hub, &format!("Bearer {t}"), version, false).await;
        let id = if version == 1 {
            v["connectionToken"].as_str().unwrap().to_string()
        } else {
            v["connectionId"].as_str().unwrap().to_string()
        };
        let url = format!("{}&access_token={t}", hub_url(&emu, hub, &id));
        let r = c
            .get(&url)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        let mut sse = SseReader::new(r);
        // A second stream for the same connection: 409.
        let second = c
            .get(&url)
            .header("Accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(second.status(), 409);
        let r = c.post(&url).body(HANDSHAKE).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(sse.next_event().await.unwrap().unwrap(), "{}\u{1e}");
        fire_test_event(&emu, &t).await;
        let inv = sse.next_invocation().await;
        assert_eq!(inv["target"], "NotifyEventAsync");
        assert_eq!(inv["arguments"][0]["Name"], "TestEvent");
        assert_eq!(emu.control().http_hub_connection_count(), 1);
        // DELETE only ends long-polling connections.
        let r = c.delete(&url).send().await.unwrap();
        assert_eq!(r.status(), 400);
        // An injected drop breaks the stream (no clean end).
        emu.control().drop_websockets();
        let end = loop {
            match sse.next_event().await {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        assert!(end.is_err(), "{end:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(emu.control().http_hub_connection_count(), 0);
        // The connection is gone.
        let r = c.post(&url).body(HANDSHAKE).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
}

#[tokio::test]
async fn long_polling_receives_events_and_delete_ends_it() {
    let emu = start_with(EmulatorConfig {
        signalr_long_poll_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let hub = "/service/event/signalr";
    let v = negotiate(&emu, hub, &format!("Bearer {t}"), 1, false).await;
    let url = hub_url(&emu, hub, v["connectionToken"].as_str().unwrap());
    let poll = || c.get(&url).bearer_auth(&t).send();
    // The first poll answers at once, empty.
    let started = std::time::Instant::now();
    let r = poll().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(250));
    assert_eq!(r.text().await.unwrap(), "");
    let r = c
        .post(&url)
        .bearer_auth(&t)
        .body(HANDSHAKE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = poll().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.text().await.unwrap(), "{}\u{1e}");
    // Nothing pending: 200 empty after the poll timeout (no pings on long polling).
    let started = std::time::Instant::now();
    let r = poll().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // A fired event arrives in the next poll.
    fire_test_event(&emu, &t).await;
    let body = poll().await.unwrap().text().await.unwrap();
    let inv = invocations(&body);
    assert_eq!(inv.len(), 1, "{body}");
    assert_eq!(inv[0]["arguments"][0]["Name"], "TestEvent");
    // An invocation of an unknown hub method gets a completion with an error.
    c.post(&url)
        .bearer_auth(&t)
        .body("{\"type\":1,\"invocationId\":\"7\",\"target\":\"Nope\",\"arguments\":[]}\u{1e}")
        .send()
        .await
        .unwrap();
    let body = poll().await.unwrap().text().await.unwrap();
    assert!(body.contains("\"invocationId\":\"7\""), "{body}");
    // A long poll waiting when the connection is deleted answers 204.
    emu.control().set_long_poll_timeout(Duration::from_secs(30));
    let waiting = tokio::spawn(poll());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c.delete(&url).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let r = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting poll ends")
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 204);
    // Then the connection is gone.
    assert_eq!(poll().await.unwrap().status(), 404);
    let r = c
        .post(&url)
        .bearer_auth(&t)
        .body(HANDSHAKE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(emu.control().http_hub_connection_count(), 0);
}

#[tokio::test]
async fn long_polling_close_message_and_superseded_poll() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let hub = "/service/event/signalr";
    let v = negotiate(&emu, hub, &format!("Bearer {t}"), 1, false).await;
    let url = hub_url(&emu, hub, v["connectionToken"].as_str().unwrap());
    let poll = || c.get(&url).bearer_auth(&t).send();
    assert_eq!(poll().await.unwrap().status(), 200);
    c.post(&url)
        .bearer_auth(&t)
        .body(HANDSHAKE)
        .send()
        .await
        .unwrap();
    assert_eq!(poll().await.unwrap().text().await.unwrap(), "{}\u{1e}");
    // A newer poll supersedes a waiting one, which answers 204.
    let first = tokio::spawn(poll());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn(poll());
    let r = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), 204);
    // The hub's close message arrives in the live poll; the next poll: 204.
    emu.control().close_websockets("maintenance", Some(true));
    let body = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .text()
        .await
        .unwrap();
    let close: Value = serde_json::from_str(body.trim_end_matches('\u{1e}')).unwrap();
    assert_eq!(close["type"], 7);
    assert_eq!(close["error"], "maintenance");
    assert_eq!(poll().await.unwrap().status(), 204);
    assert_eq!(poll().await.unwrap().status(), 404);
}

#[tokio::test]
async fn http_transports_unauthenticated_and_bad_ids() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let hub = "/service/event/signalr";
    let v = negotiate(&emu, hub, &format!("Bearer {t}"), 1, false).await;
    let url = hub_url(&emu, hub, v["connectionToken"].as_str().unwrap());
    // Without a token every request of every transport is 401.
    let sse = c
        .get(&url)
        .header("Accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 401);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    let r = c.post(&url).body(HANDSHAKE).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(c.delete(&url).send().await.unwrap().status(), 401);
    let r = c.get(&url).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A2A hub: no certificate is 403, no key 401.
    let keys = emu.connection().spp.a2a.clone();
    let a2a_url = hub_url(&emu, "/service/a2a/signalr", "x");
    let r = c
        .get(&a2a_url)
        .header("Authorization", format!("A2A {}", keys.password_api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = cert_client(&emu).get(&a2a_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Authenticated: no id is 400, an unknown id 404.
    let r = c
        .get(format!("{}{hub}", base(&emu)))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "Connection ID required");
    let r = c
        .get(hub_url(&emu, hub, "unknown"))
        .header("Accept", "text/event-stream")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // One transport per connection.
    assert_eq!(
        c.get(&url).bearer_auth(&t).send().await.unwrap().status(),
        200
    );
    let r = c
        .get(&url)
        .header("Accept", "text/event-stream")
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn a2a_hub_over_long_polling_and_its_outage() {
    let emu = start_with(EmulatorConfig {
        signalr_long_poll_timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .await;
    let control = emu.control();
    let keys = emu.connection().spp.a2a.clone();
    let auth = format!("A2A {}", keys.password_api_key);
    let hub = "/service/a2a/signalr";
    let v = negotiate(&emu, hub, &auth, 1, true).await;
    let url = hub_url(&emu, hub, v["connectionToken"].as_str().unwrap());
    let c = cert_client(&emu);
    let poll = || c.get(&url).header("Authorization", &auth).send();
    assert_eq!(poll().await.unwrap().status(), 200);
    let r = c
        .post(&url)
        .header("Authorization", &auth)
        .body(HANDSHAKE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(poll().await.unwrap().text().await.unwrap(), "{}\u{1e}");
    // Another account's event is filtered; this account's arrives.
    control.emit_a2a_event(
        "AssetAccountPasswordUpdated",
        control.ssh_key_account_id(),
        json!({"which": "other"}),
    );
    let r = c
        .put(format!(
            "{}/service/a2a/v4/Credentials/Password",
            base(&emu)
        ))
        .header("Authorization", &auth)
        .json(&"Rotated-lp")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let body = poll().await.unwrap().text().await.unwrap();
    let inv = invocations(&body);
    assert_eq!(inv.len(), 1, "{body}");
    assert_eq!(
        inv[0]["arguments"][0]["Data"]["AccountId"],
        control.password_account_id()
    );
    // An outage breaks the waiting poll and refuses the next with 503.
    let waiting = tokio::spawn(poll());
    tokio::time::sleep(Duration::from_millis(200)).await;
    control.a2a_hub_outage(Duration::from_secs(60));
    let broken = tokio::time::timeout(Duration::from_secs(5), async {
        match waiting.await.unwrap() {
            Ok(r) => r.bytes().await.map(|_| ()),
            Err(e) => Err(e),
        }
    })
    .await
    .expect("the poll ends");
    assert!(broken.is_err(), "{broken:?}");
    assert_eq!(poll().await.unwrap().status(), 503);
}

/// Reads from an OpenSSL stream until `needle` shows up (the SSE body is
/// chunked; each event is one chunk, so its text is contiguous).
async fn read_until(
    s: &mut tokio_openssl::SslStream<tokio::net::TcpStream>,
    buf: &mut Vec<u8>,
    needle: &str,
) {
    use tokio::io::AsyncReadExt;
    let mut tmp = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut tmp))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(buf)))
            .unwrap();
        assert!(n > 0, "closed before {needle:?}");
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// The A2A hub over Server-Sent Events the way safeguard-ps' A2A listener
/// connects (negotiate, open the stream, POST the handshake), with the
/// certificate asked for in `mode`, over OpenSSL.
async fn a2a_hub_sse(mode: ClientCertMode) {
    use tokio::io::AsyncWriteExt;
    let emu = start_with(EmulatorConfig {
        client_cert_mode: mode,
        ..Default::default()
    })
    .await;
    let keys = emu.connection().spp.a2a.clone();
    let auth = format!("A2A {}", keys.password_api_key);
    let post_handshake = mode == ClientCertMode::PostHandshake;
    let hub = "/service/a2a/signalr";
    let mut c = openssl_connect(&emu, true, post_handshake).await;
    let r = raw_request(
        &mut c,
        "POST",
        &format!("{hub}/negotiate?negotiateVersion=1"),
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{mode:?}");
    let token = r.json()["connectionToken"].as_str().unwrap().to_string();
    // The stream, on its own connection.
    let mut s = openssl_connect(&emu, true, post_handshake).await;
    let req = format!(
        "GET {hub}?id={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nAuthorization: {auth}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut s, &mut buf, ":\r\n").await;
    assert!(
        String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"),
        "{mode:?}: {}",
        String::from_utf8_lossy(&buf)
    );
    let r = raw_request(
        &mut c,
        "POST",
        &format!("{hub}?id={token}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        HANDSHAKE.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    read_until(&mut s, &mut buf, "data: {}\u{1e}\r\n\r\n").await;
    emu.control().emit_a2a_event(
        "AssetAccountPasswordUpdated",
        emu.control().password_account_id(),
        json!({"mode": format!("{mode:?}")}),
    );
    read_until(&mut s, &mut buf, "NotifyEventAsync").await;
    // Without a certificate the stream is refused.
    let mut n = openssl_connect(&emu, false, post_handshake).await;
    let r = raw_request(
        &mut n,
        "GET",
        &format!("{hub}?id={token}"),
        &[("Authorization", &auth), ("Accept", "text/event-stream")],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn a2a_hub_sse_in_handshake_mode() {
    a2a_hub_sse(ClientCertMode::InHandshake).await;
}

#[tokio::test]
async fn a2a_hub_sse_post_handshake() {
    a2a_hub_sse(ClientCertMode::PostHandshake).await;
}

#[tokio::test]
async fn a2a_hub_sse_by_renegotiation() {
    a2a_hub_sse(ClientCertMode::Renegotiation).await;
}

#[tokio::test]
async fn long_poll_timeout_over_the_control_face() {
    let emu = start().await;
    let c = client(&emu);
    let r = c
        .post(format!("{}/emulator/signalr", base(&emu)))
        .json(&json!({"long_poll_ms": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t = admin_token(&c, &emu).await;
    let hub = "/service/event/signalr";
    let v = negotiate(&emu, hub, &format!("Bearer {t}"), 1, false).await;
    let url = hub_url(&emu, hub, v["connectionToken"].as_str().unwrap());
    assert_eq!(
        c.get(&url).bearer_auth(&t).send().await.unwrap().status(),
        200
    );
    c.post(&url)
        .bearer_auth(&t)
        .body(HANDSHAKE)
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.get(&url)
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "{}\u{1e}"
    );
    // An empty poll ends after the configured 200 ms, not the default 90 s.
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), c.get(&url).bearer_auth(&t).send())
        .await
        .expect("the poll ends after the configured timeout")
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    assert!(started.elapsed() >= Duration::from_millis(150));
}
