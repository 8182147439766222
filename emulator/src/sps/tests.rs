//! Router-level tests: every error code through a request.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::Engine as _;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

struct T {
    emu: Arc<SpsEmulator>,
    seen: HashSet<&'static str>,
}

struct Resp {
    status: StatusCode,
    body: Value,
    cookie: Option<String>,
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl T {
    fn new() -> Self {
        Self {
            emu: SpsEmulator::new(SpsConfig::default()),
            seen: HashSet::new(),
        }
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.emu.router().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let cookie = resp
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_string);
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            cookie,
        }
    }

    async fn login(&self, user: &str, password: &str) -> String {
        let r = self
            .send(
                Request::get("/api/authentication")
                    .header(header::AUTHORIZATION, basic(user, password))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.cookie.expect("cookie")
    }

    async fn call(&self, cookie: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, cookie);
        let body = match body {
            Some(v) => {
                let s = v.to_string();
                b = b
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(header::CONTENT_LENGTH, s.len());
                Body::from(s)
            }
            None if method == "POST" || method == "PUT" => {
                b = b.header(header::CONTENT_LENGTH, 0);
                Body::empty()
            }
            None => Body::empty(),
        };
        self.send(b.body(body).expect("request")).await
    }

    fn expect(&mut self, r: &Resp, code: SpsErrorCode) {
        assert_eq!(r.status, code.status(), "{code:?}: {}", r.body);
        assert_eq!(r.body["error"]["type"], code.as_str(), "{}", r.body);
        assert!(r.body["error"]["message"].is_string());
        assert!(r.body["error"].get("details").is_some());
        self.seen.insert(code.as_str());
    }
}

fn rdp_policy(name: &str, time_policy: Value) -> Value {
    json!({
        "name": name,
        "rules": [{
            "channel": "#drawing",
            "actions": {"audit": true, "content_policy": null, "four_eyes": false, "ids": false},
            "allowed_for": {"clients": [], "gateway_groups": [], "remote_groups": [], "servers": [], "time_policy": time_policy}
        }]
    })
}

#[tokio::test]
async fn every_error_code_is_reachable() {
    let mut t = T::new();
    let c = t.login("admin", "Sps-Admin1!").await;

    // 417 and 411 come first, before anything else.
    let r = t
        .send(
            Request::post("/api/transaction")
                .header(header::COOKIE, &c)
                .header(header::EXPECT, "100-continue")
                .header(header::CONTENT_LENGTH, 2)
                .body(Body::from("{}"))
                .expect("req"),
        )
        .await;
    t.expect(&r, SpsErrorCode::ExpectationFailed);
    let r = t
        .send(
            Request::post("/api/transaction")
                .header(header::COOKIE, &c)
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    t.expect(&r, SpsErrorCode::LengthRequired);

    // Authentication.
    let r = t.call("x=y", "GET", "/api/configuration", None).await;
    t.expect(&r, SpsErrorCode::Unauthenticated);
    let r = t
        .send(
            Request::get("/api/authentication")
                .header(header::AUTHORIZATION, basic("admin", "wrong"))
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    t.expect(&r, SpsErrorCode::AuthenticationFailure);

    // Paths and methods.
    let r = t.call(&c, "GET", "/api/configuration/RDP", None).await;
    t.expect(&r, SpsErrorCode::InvalidPath);
    let r = t.call(&c, "GET", "/api/configuration/nope", None).await;
    t.expect(&r, SpsErrorCode::NodeNotFound);
    let r = t
        .call(
            &c,
            "GET",
            "/api/configuration/rdp/channel_policies/-20100/name",
            None,
        )
        .await;
    t.expect(&r, SpsErrorCode::NodeNotAvailable);
    let r = t.call(&c, "PATCH", "/api/configuration", None).await;
    t.expect(&r, SpsErrorCode::UnsupportedMethod);
    let r = t
        .call(&c, "PUT", "/api/configuration/rdp", Some(json!({})))
        .await;
    t.expect(&r, SpsErrorCode::PutNotAllowed);
    let r = t
        .call(&c, "POST", "/api/configuration/rdp", Some(json!({})))
        .await;
    t.expect(&r, SpsErrorCode::PostNotAllowed);
    let r = t.call(&c, "DELETE", "/api/configuration/rdp", None).await;
    t.expect(&r, SpsErrorCode::DeleteNotAllowed);
    let r = t
        .call(&c, "GET", "/api/audit/sessions/_snapshot", None)
        .await;
    t.expect(&r, SpsErrorCode::GetNotAllowed);

    // No transaction yet.
    let r = t
        .call(
            &c,
            "POST",
            "/api/configuration/rdp/channel_policies",
            Some(rdp_policy("p", json!("-100"))),
        )
        .await;
    t.expect(&r, SpsErrorCode::NoTransaction);

    let r = t
        .call(&c, "POST", "/api/transaction", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["body"]["status"], "open");
    assert!(r.body["meta"]["remaining_seconds"].as_u64().is_some());
    let r = t
        .call(&c, "POST", "/api/transaction", Some(json!({})))
        .await;
    t.expect(&r, SpsErrorCode::DoubleTransaction);

    let r = t
        .send(
            Request::post("/api/configuration/rdp/channel_policies")
                .header(header::COOKIE, &c)
                .header(header::CONTENT_LENGTH, 5)
                .body(Body::from("{nope"))
                .expect("req"),
        )
        .await;
    t.expect(&r, SpsErrorCode::InvalidRequestBody);
    let r = t
        .call(
            &c,
            "POST",
            "/api/configuration/rdp/channel_policies",
            Some(json!({"name": 3})),
        )
        .await;
    t.expect(&r, SpsErrorCode::SyntacticError);
    let r = t
        .call(
            &c,
            "POST",
            "/api/configuration/rdp/channel_policies",
            Some(rdp_policy("p", json!({"key": "-100", "meta": {"href": "/api/configuration/policies/time_policies/-100"}}))),
        )
        .await;
    t.expect(&r, SpsErrorCode::SyntacticError);
    assert!(r.body["error"]["details"]["path"]
        .as_str()
        .unwrap_or("")
        .ends_with("time_policy"));
    let r = t
        .call(
            &c,
            "POST",
            "/api/configuration/rdp/channel_policies",
            Some(rdp_policy("p", json!("-999"))),
        )
        .await;
    t.expect(&r, SpsErrorCode::SemanticError);
    let r = t
        .call(
            &c,
            "DELETE",
            "/api/configuration/rdp/channel_policies",
            None,
        )
        .await;
    t.expect(&r, SpsErrorCode::MethodNotAllowed);
    let r = t
        .call(
            &c,
            "DELETE",
            "/api/configuration/policies/time_policies/-100",
            None,
        )
        .await;
    t.expect(&r, SpsErrorCode::DeleteNotAllowed);

    // Commit message required.
    t.emu.set_require_commit_message(true);
    let r = t
        .call(
            &c,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit"})),
        )
        .await;
    t.expect(&r, SpsErrorCode::CommitMessageMissing);
    t.emu.inject_fault(SpsFault::TransactionCommitError);
    let r = t
        .call(
            &c,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit", "message": "m"})),
        )
        .await;
    t.expect(&r, SpsErrorCode::TransactionCommitError);

    // Two sessions: lock and collisions.
    let c2 = t.login("admin", "Sps-Admin1!").await;
    let r = t
        .call(
            &c,
            "POST",
            "/api/configuration/policies/time_policies",
            Some(json!({"name": "tp", "days": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let tp = r.body["key"].as_str().expect("key").to_string();
    let r = t
        .call(&c2, "POST", "/api/transaction", Some(json!({})))
        .await;
    t.expect(&r, SpsErrorCode::WebGuiOrRpcApiConfigInProgress);
    // Commit the time policy.
    let r = t
        .call(
            &c,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit", "message": "tp"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // c2 opens, c deletes the time policy and commits; c2 references it: semantic collision.
    let r = t
        .call(&c2, "POST", "/api/transaction", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = t
        .call(&c, "POST", "/api/transaction", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = t
        .call(
            &c,
            "DELETE",
            &format!("/api/configuration/policies/time_policies/{tp}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = t
        .call(
            &c,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit", "message": "del"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = t
        .call(
            &c2,
            "POST",
            "/api/configuration/rdp/channel_policies",
            Some(rdp_policy("uses-tp", json!(tp))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = t
        .call(
            &c2,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit", "message": "x"})),
        )
        .await;
    t.expect(&r, SpsErrorCode::MidAirCollisionSemanticError);
    let r = t.call(&c2, "DELETE", "/api/transaction", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Same object changed by both: MidAirCollision.
    let r = t
        .call(&c2, "POST", "/api/transaction", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t
        .call(&c, "POST", "/api/transaction", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t
        .call(
            &c,
            "PUT",
            "/api/configuration/rdp/channel_policies/-20100",
            Some(rdp_policy("default", json!("-100"))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = t
        .call(
            &c,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit", "message": "a"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = t
        .call(
            &c2,
            "PUT",
            "/api/configuration/rdp/channel_policies/-20100",
            Some(rdp_policy("renamed", json!("-100"))),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = t
        .call(
            &c2,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit", "message": "b"})),
        )
        .await;
    t.expect(&r, SpsErrorCode::MidAirCollision);
    let r = t.call(&c2, "DELETE", "/api/transaction", None).await;
    assert_eq!(r.status, StatusCode::OK);

    // Authorization.
    t.emu.add_user("viewer", "Viewer1!", SpsRole::ReadOnly);
    let v = t.login("viewer", "Viewer1!").await;
    let r = t
        .call(&v, "POST", "/api/transaction", Some(json!({})))
        .await;
    t.expect(&r, SpsErrorCode::Unauthorized);
    t.emu.inject_fault(SpsFault::AuthorizationError);
    let r = t.call(&v, "GET", "/api/configuration", None).await;
    t.expect(&r, SpsErrorCode::AuthorizationError);
    t.emu.inject_fault(SpsFault::ConfigTreeNotAvailable);
    let r = t.call(&v, "GET", "/api/configuration", None).await;
    t.expect(&r, SpsErrorCode::ConfigTreeNotAvailable);

    let all: HashSet<&str> = SpsErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let missing: Vec<_> = all.difference(&t.seen).collect();
    assert!(missing.is_empty(), "not reached: {missing:?}");
}

#[tokio::test]
async fn references_paging_changes_and_timeouts() {
    let t = T::new();
    let c = t.login("admin", "Sps-Admin1!").await;
    // Reference rendering.
    let r = t
        .call(
            &c,
            "GET",
            "/api/configuration/rdp/channel_policies/-20100",
            None,
        )
        .await;
    assert_eq!(
        r.body["body"]["rules"][0]["allowed_for"]["time_policy"]["key"], "-100",
        "{}",
        r.body
    );
    // Paging.
    assert!(t.emu.seed_objects("policies/time_policies", "bulk", 1100));
    let r = t
        .call(&c, "GET", "/api/configuration/policies/time_policies", None)
        .await;
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(500));
    assert_eq!(r.body["meta"]["match_count"], 1101);
    let next = r.body["meta"]["next"].as_str().expect("next").to_string();
    let r = t.call(&c, "GET", &next, None).await;
    assert_eq!(r.body["meta"]["offset"], 500);
    let r = t
        .call(
            &c,
            "GET",
            "/api/configuration/policies/time_policies?limit=abc",
            None,
        )
        .await;
    assert_eq!(r.body["error"]["type"], "SyntacticError");

    // Changelog with all four kinds.
    t.call(&c, "POST", "/api/transaction", Some(json!({})))
        .await;
    let r = t
        .call(
            &c,
            "POST",
            "/api/configuration/policies/content_policies",
            Some(json!({"name": "a", "rules": []})),
        )
        .await;
    let a = r.body["key"].as_str().expect("key").to_string();
    let r = t
        .call(
            &c,
            "POST",
            "/api/configuration/policies/content_policies",
            Some(json!({"name": "b", "rules": []})),
        )
        .await;
    let b = r.body["key"].as_str().expect("key").to_string();
    t.call(
        &c,
        "PUT",
        &format!("/api/configuration/policies/content_policies/{a}"),
        Some(json!({"name": "a2", "rules": []})),
    )
    .await;
    let r = t
        .call(
            &c,
            "PUT",
            "/api/configuration/policies/content_policies",
            Some(json!([b, a])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    t.call(
        &c,
        "DELETE",
        &format!("/api/configuration/policies/content_policies/{b}"),
        None,
    )
    .await;
    let r = t.call(&c, "GET", "/api/transaction/changes", None).await;
    let kinds: Vec<&str> = r.body["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(kinds, ["create", "create", "replace", "reorder", "delete"]);

    // Transaction timeout.
    t.emu.advance_clock(Duration::from_secs(601));
    let r = t.call(&c, "GET", "/api/transaction", None).await;
    assert_eq!(r.body["body"]["status"], "closed", "{}", r.body);
    // Session expiry.
    t.emu.advance_clock(Duration::from_secs(20 * 60 + 1));
    let r = t.call(&c, "GET", "/api/transaction", None).await;
    assert_eq!(r.body["error"]["type"], "Unauthenticated");

    // Legacy status shape.
    let c = t.login("admin", "Sps-Admin1!").await;
    t.emu.set_legacy_transaction_status(true);
    let r = t.call(&c, "GET", "/api/transaction", None).await;
    assert_eq!(r.body["transaction"]["status"], "closed", "{}", r.body);
}

#[tokio::test]
async fn audit_sessions() {
    let t = T::new();
    let c = t.login("admin", "Sps-Admin1!").await;
    let r = t
        .call(&c, "GET", "/api/audit/sessions?q=protocol:ssh", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let n = r.body["items"].as_array().map(Vec::len).unwrap_or(0);
    assert!((1..5).contains(&n), "{n}");
    let r = t.call(&c, "GET", "/api/audit/sessions?q=*ssh", None).await;
    assert_eq!(r.body["error"]["type"], "SyntacticError");
    let r = t
        .call(&c, "GET", "/api/audit/sessions?q=bogus:x", None)
        .await;
    assert_eq!(r.body["error"]["type"], "SyntacticError");
    let id = t.emu.audit_session_ids()[0].clone();
    let r = t
        .call(&c, "GET", &format!("/api/audit/sessions/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["body"]["protocol"]["name"].is_string());
    let r = t
        .call(
            &c,
            "GET",
            &format!("/api/audit/sessions/{id}/content/?q=sudo"),
            None,
        )
        .await;
    assert_eq!(
        r.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    let r = t
        .call(
            &c,
            "GET",
            &format!("/api/audit/sessions/{id}/content/"),
            None,
        )
        .await;
    assert_eq!(
        r.body["items"].as_array().map(Vec::len),
        Some(0),
        "{}",
        r.body
    );
    let resp = t
        .emu
        .router()
        .oneshot(
            Request::get(format!("/api/audit/sessions/{id}/audit_trail"))
                .header(header::COOKIE, &c)
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    let len: usize = resp.headers()[header::CONTENT_LENGTH]
        .to_str()
        .expect("len")
        .parse()
        .expect("num");
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(bytes.len(), len);
    assert!(bytes.starts_with(b"ZAT"));
    let r = t
        .call(
            &c,
            "POST",
            "/api/audit/sessions/_snapshot?q=user:root",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let href = r.body["meta"]["href"].as_str().expect("href").to_string();
    let r = t.call(&c, "GET", &href, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn browser_agents_need_x_token_and_implicit_transactions() {
    let t = T::new();
    let c = t.login("admin", "Sps-Admin1!").await;
    let sid = c.trim_start_matches("session_id=").to_string();
    let post = |token: Option<&str>| {
        let mut b = Request::post("/api/transaction")
            .header(header::COOKIE, &c)
            .header(header::USER_AGENT, "Mozilla/5.0 (X11; Linux x86_64)")
            .header(header::CONTENT_LENGTH, 2);
        if let Some(tok) = token {
            b = b.header("x-token", tok);
        }
        b.body(Body::from("{}")).expect("req")
    };
    let r = t.send(post(None)).await;
    assert_eq!(r.body["error"]["type"], "Unauthorized", "{}", r.body);
    let r = t.send(post(Some(&sid))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    t.call(&c, "DELETE", "/api/transaction", None).await;

    t.emu.set_implicit_transactions(true);
    let r = t
        .call(
            &c,
            "POST",
            "/api/configuration/policies/time_policies",
            Some(json!({"name": "i", "days": []})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = t.call(&c, "GET", "/api/transaction", None).await;
    assert_eq!(r.body["body"]["status"], "open");

    // Signing out ends the session.
    let r = t.call(&c, "DELETE", "/api/authentication", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t.call(&c, "GET", "/api/transaction", None).await;
    assert_eq!(r.body["error"]["type"], "Unauthenticated");
    assert_eq!(t.emu.active_sessions(), 0);
}

#[tokio::test]
async fn malformed_requests_do_not_panic() {
    let t = T::new();
    let c = t.login("admin", "Sps-Admin1!").await;
    for path in [
        "/api/%ff",
        "/api//x",
        "/api/configuration/../x",
        "/api/audit/sessions?limit=0",
        "/api/audit/sessions?offset=-1",
        "/api/audit/sessions/zz/content?q=((((",
        "/api/configuration/rdp/channel_policies/-20100/rules/0/x/y",
    ] {
        let r = t.call(&c, "GET", path, None).await;
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
    }
    let r = t
        .send(
            Request::get("/api/authentication")
                .header(
                    header::AUTHORIZATION,
                    axum::http::HeaderValue::from_bytes(b"Basic \xff\xfe").expect("opaque header"),
                )
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(
                &[
                    "configuration",
                    "transaction",
                    "changes",
                    "audit",
                    "sessions",
                    "_snapshot",
                    "rdp",
                    "ssh",
                    "channel_policies",
                    "policies",
                    "time_policies",
                    "-100",
                    "-20100",
                    "passwords",
                    "options",
                    "management",
                    "change_management",
                    "content",
                    "audit_trail",
                    "events",
                    "authentication",
                    "login_methods",
                    "info",
                    "user_info",
                    "rules",
                    "0",
                    "name",
                    "",
                ][..]
            )
            .prop_map(str::to_string),
            "[A-Za-z0-9%._~-]{0,8}",
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(proptest::arbitrary::any::<u8>(), 0..64),
            Just(br#"{"status":"commit","message":"m"}"#.to_vec()),
            Just(br#"{"status":"rollback"}"#.to_vec()),
            Just(br#"{"name":"x","days":[]}"#.to_vec()),
            Just(br#"["-100"]"#.to_vec()),
            Just(br#"{"items":[]}"#.to_vec()),
            Just(br#"{"name":"p","rules":[{"channel":"c","actions":{"audit":true,"content_policy":null,"four_eyes":false,"ids":false},"allowed_for":{"clients":[],"gateway_groups":[],"remote_groups":[],"servers":[],"time_policy":{"key":"-100"}}}]}"#.to_vec()),
            Just(br#"{"require_commitlog":"yes"}"#.to_vec()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        /// Random requests after signing in: never a panic; every error is
        /// a JSON body with error.type.
        #[test]
        fn random_requests_never_panic(
            reqs in prop::collection::vec((
                prop::sample::select(&["GET", "POST", "PUT", "DELETE", "PATCH"][..]),
                prop::collection::vec(segment(), 0..6),
                prop::sample::select(&["", "?limit=2", "?offset=x", "?q=a%20AND", "?q=protocol:ssh", "?type=x509", "?login_method=zz", "?q=(((((("][..]),
                body(),
            ), 1..12)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
            rt.block_on(async {
                let t = T::new();
                let c = t.login("admin", "Sps-Admin1!").await;
                for (method, segs, query, body) in reqs {
                    let uri = format!("/api/{}{}", segs.join("/"), query);
                    let Ok(req) = Request::builder()
                        .method(method)
                        .uri(&uri)
                        .header(header::COOKIE, &c)
                        .header(header::CONTENT_LENGTH, body.len())
                        .body(Body::from(body))
                    else {
                        continue;
                    };
                    let r = t.send(req).await;
                    if !r.status.is_success() {
                        assert!(r.body["error"]["type"].is_string(), "{uri}: {} {}", r.status, r.body);
                    }
                }
            });
        }

        /// The search-expression parser and matcher never panic.
        #[test]
        fn query_parser_never_panics(q in ".{0,64}", text in ".{0,32}") {
            if let Ok(query) = audit::parse_query(&q) {
                let lower = text.to_lowercase();
                let _ = query.eval(&|_, p| audit::wildcard(p, &lower));
            }
            let _ = audit::wildcard(&q, &text);
        }
    }
}

#[tokio::test]
async fn the_cluster_endpoints_follow_the_join_steps() {
    let mut t = T::new();
    let c = t.login("admin", "Sps-Admin1!").await;
    // Not clustered: no status, no promotion, no join.
    let r = t.call(&c, "GET", "/api/cluster/status", None).await;
    t.expect(&r, SpsErrorCode::NodeNotFound);
    let r = t
        .call(&c, "POST", "/api/cluster/promote", Some(json!({})))
        .await;
    t.expect(&r, SpsErrorCode::NoTransaction);
    let r = t
        .call(&c, "POST", "/api/cluster/spp", Some(json!({})))
        .await;
    t.expect(&r, SpsErrorCode::SemanticError);
    let r = t
        .call(&c, "PUT", "/api/cluster/status", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);

    // Enabling clustering is configuration: only in a transaction.
    let enable =
        json!({"enabled": true, "listen_address": "nic1.interfaces.8f1c0d2e.addresses.5a9e7b31"});
    let r = t
        .call(
            &c,
            "PUT",
            "/api/configuration/local_services/cluster",
            Some(enable.clone()),
        )
        .await;
    t.expect(&r, SpsErrorCode::NoTransaction);
    t.call(&c, "POST", "/api/transaction", Some(json!({})))
        .await;
    let r = t
        .call(
            &c,
            "PUT",
            "/api/configuration/local_services/cluster",
            Some(enable),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Promotion needs clustering committed first.
    let r = t
        .call(&c, "POST", "/api/cluster/promote", Some(json!({})))
        .await;
    t.expect(&r, SpsErrorCode::SemanticError);
    let r = t
        .call(
            &c,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(t.emu.clustering_enabled());

    // Promotion takes effect on commit; a rollback drops it.
    t.call(&c, "POST", "/api/transaction", Some(json!({})))
        .await;
    let r = t
        .call(&c, "POST", "/api/cluster/promote", Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    t.call(&c, "DELETE", "/api/transaction", None).await;
    assert!(!t.emu.is_promoted());
    t.call(&c, "POST", "/api/transaction", Some(json!({})))
        .await;
    t.call(&c, "POST", "/api/cluster/promote", Some(json!({})))
        .await;
    let r = t
        .call(
            &c,
            "PUT",
            "/api/transaction",
            Some(json!({"status": "commit"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(t.emu.is_promoted());
    let r = t.call(&c, "GET", "/api/cluster/status", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["body"]["node_id"], json!(t.emu.node_id()));

    // The join body is checked before SPP is contacted.
    let r = t
        .call(
            &c,
            "POST",
            "/api/cluster/spp",
            Some(json!({"spp": "x", "spp_api_token": "t"})),
        )
        .await;
    t.expect(&r, SpsErrorCode::SyntacticError);
    assert_eq!(
        r.body["error"]["details"]["path"],
        json!("/api/cluster/spp/spp_cert_chain")
    );
    let r = t
        .call(
            &c,
            "POST",
            "/api/cluster/spp",
            Some(json!({"spp": "x", "spp_api_token": "t", "spp_cert_chain": "not PEM"})),
        )
        .await;
    t.expect(&r, SpsErrorCode::SyntacticError);
    // Without an SPP side (a lone SpsEmulator), SPP cannot be reached.
    let pem = {
        use openssl::{ec, hash, nid, pkey, x509};
        let group = ec::EcGroup::from_curve_name(nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = pkey::PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "spp").unwrap();
        let name = name.build();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&key, hash::MessageDigest::sha256()).unwrap();
        String::from_utf8(b.build().to_pem().unwrap()).unwrap()
    };
    let r = t
        .call(
            &c,
            "POST",
            "/api/cluster/spp",
            Some(json!({"spp": "x", "spp_api_token": "t", "spp_cert_chain": pem})),
        )
        .await;
    t.expect(&r, SpsErrorCode::SemanticError);
    assert!(t.emu.joined_spp().is_none());
}
