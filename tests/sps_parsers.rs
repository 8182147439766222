//! Property tests: no SPS response parser panics, whatever the input.
//!
//! `cargo test --no-default-features --test sps_parsers` runs 2,000 cases per
//! property; the ignored `one_million_inputs` runs 1,000,000 inputs through
//! every parser: `cargo test --no-default-features --test sps_parsers -- --ignored`.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use safeguard_sdk::sps::{
    flatten_references, parse_changes, parse_login_methods, parse_page, parse_response,
    parse_transaction_status, session_cookie, validate_query, SpsApiError, SpsError,
};
use serde_json::{Map, Value};

const KEYS: &[&str] = &[
    "key",
    "body",
    "meta",
    "items",
    "href",
    "next",
    "parent",
    "status",
    "commit_message",
    "transaction",
    "remaining_seconds",
    "changes",
    "type",
    "path",
    "old_value",
    "new_value",
    "old_order",
    "new_order",
    "error",
    "message",
    "details",
    "name",
    "limit",
    "offset",
    "match_count",
    "errors",
];

const WORDS: &[&str] = &[
    "open",
    "closed",
    "required",
    "optional",
    "create",
    "delete",
    "replace",
    "reorder",
    "MidAirCollision",
    "NoTransaction",
    "x509",
    "local",
    "/api/configuration",
    "-100",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        prop::sample::select(WORDS).prop_map(|w| Value::String(w.to_string())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                let mut m = Map::new();
                for (k, v) in kv {
                    m.insert(k.to_string(), v);
                }
                Value::Object(m)
            }),
        ]
    })
}

/// Bytes: arbitrary, JSON-ish documents, or JSON documents cut or corrupted.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        (json_value(), any::<usize>(), any::<u8>()).prop_map(|(v, at, b)| {
            let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                if b % 2 == 0 {
                    bytes.truncate(i);
                } else {
                    bytes[i] = b;
                }
            }
            bytes
        }),
    ]
}

/// Runs every parser on one input; none may panic.
fn exercise(bytes: &[u8], value: &Value, text: &str, status: u16) {
    let _ = parse_response::<Value>(bytes);
    let _ = parse_response::<Map<String, Value>>(bytes);
    let _ = parse_page(bytes);
    let _ = parse_transaction_status(bytes);
    let _ = parse_changes(bytes);
    let _ = parse_login_methods(bytes);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let e = SpsError::from_api(SpsApiError::from_parts(status, "GET /api/x", bytes));
    let _ = (
        e.to_string(),
        format!("{e:?}"),
        e.is_conflict(),
        e.is_retryable(),
        e.code(),
        e.status(),
    );
    if let Some(api) = e.api_error() {
        let _ = (api.path(), api.errors());
    }
    let _ = flatten_references(value.clone());
    let _ = validate_query(text);
    let _ = session_cookie(text);
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn run(cases: u32) {
    let mut runner = TestRunner::new(config(cases));
    let strategy = (body(), json_value(), ".{0,40}", 100u16..600);
    runner
        .run(&strategy, |(bytes, value, text, status)| {
            exercise(&bytes, &value, &text, status);
            let as_json = serde_json::to_vec(&value).unwrap_or_default();
            exercise(&as_json, &value, &text, status);
            Ok(())
        })
        .expect("no parser panics");
}

#[test]
fn parsers_never_panic() {
    run(2_000);
}

proptest! {
    #![proptest_config(config(500))]

    /// Flattening turns every `{key, meta: {href}}` into the bare key and
    /// keeps everything else, including empty lists.
    #[test]
    fn flattening_replaces_references_only(name in "[a-z]{1,8}", key in "-?[0-9a-f]{1,8}", n in 0usize..3) {
        let reference = serde_json::json!({"key": key, "meta": {"href": format!("/api/x/{key}")}});
        let input = serde_json::json!({"name": name, "refs": vec![reference; n], "empty": [], "nested": {"r": {"key": key, "meta": {"href": "/h"}}}});
        let out = flatten_references(input);
        prop_assert_eq!(out["refs"].as_array().map(Vec::len), Some(n));
        for r in out["refs"].as_array().cloned().unwrap_or_default() {
            prop_assert_eq!(r, Value::String(key.clone()));
        }
        prop_assert_eq!(&out["empty"], &serde_json::json!([]));
        prop_assert_eq!(&out["nested"]["r"], &Value::String(key.clone()));
        prop_assert_eq!(&out["name"], &Value::String(name));
    }

    /// Every documented code maps to its own variant, with status and details kept.
    #[test]
    fn every_code_maps_to_its_variant(i in 0usize..26, msg in ".{0,20}", status in 400u16..600) {
        let code = SpsError::CODES[i];
        let body = serde_json::json!({"error": {"type": code, "message": msg, "details": {"path": "/api/p"}}, "meta": {}});
        let e = SpsError::from_api(SpsApiError::from_parts(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            "GET /api/p",
            &serde_json::to_vec(&body).unwrap_or_default(),
        ));
        prop_assert_eq!(e.code(), Some(code));
        prop_assert!(!matches!(e, SpsError::Other(_)));
        let api = e.api_error().cloned();
        prop_assert_eq!(api.as_ref().and_then(|a| a.path().map(str::to_string)), Some("/api/p".to_string()));
        prop_assert_eq!(api.map(|a| a.message), Some(msg));
    }
}

#[test]
#[ignore = "one million inputs; run with --ignored"]
fn one_million_inputs() {
    let started = std::time::Instant::now();
    // Each case feeds two documents to every parser (1,000,000 documents).
    run(500_000);
    eprintln!(
        "1,000,000 documents through every parser: {:.1?}",
        started.elapsed()
    );
}
