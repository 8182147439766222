//! One `safeguard.call` span per API call (typed, generic, A2A, SPS, events
//! connect) with its service, method, operation, status and duration, and
//! no secret (password, token, API key, SPS session cookie) in any field.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use safeguard_emulator as emu_consts;
use safeguard_sdk::a2a::A2aContext;
use safeguard_sdk::sps::SpsClient;
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{ExposeSecret, SecretString, Service};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

type Fields = BTreeMap<String, String>;

/// The fields of every `safeguard.call` span, in creation order.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<(u64, Fields)>>>);

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Calls {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "safeguard.call" {
            let mut fields = Fields::new();
            attrs.record(&mut Collect(&mut fields));
            self.0.lock().unwrap().push((id.into_u64(), fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut calls = self.0.lock().unwrap();
        if let Some((_, fields)) = calls.iter_mut().rev().find(|(i, _)| *i == id.into_u64()) {
            values.record(&mut Collect(fields));
        }
    }
}

impl Calls {
    /// The calls captured since the last take.
    fn take(&self) -> Vec<Fields> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .map(|(_, f)| f)
            .collect()
    }
}

/// The one call among `calls` for `operation` (exactly one).
fn one<'a>(calls: &'a [Fields], method: &str, operation: &str) -> &'a Fields {
    let found: Vec<_> = calls
        .iter()
        .filter(|f| f.get("method").map(String::as_str) == Some(method))
        .filter(|f| f.get("operation").map(String::as_str) == Some(operation))
        .collect();
    assert_eq!(found.len(), 1, "{method} {operation} among {calls:#?}");
    found[0]
}

fn assert_call(call: &Fields, service: &str, status: &str) {
    assert_eq!(
        call.get("service").map(String::as_str),
        Some(service),
        "{call:?}"
    );
    assert_eq!(
        call.get("status").map(String::as_str),
        Some(status),
        "{call:?}"
    );
    let ms: f64 = call["duration_ms"].parse().expect("a duration");
    assert!(ms >= 0.0, "{call:?}");
    assert!(!call.contains_key("error"), "{call:?}");
}

#[tokio::test]
async fn every_call_has_one_span_with_its_fields_and_no_secret() {
    let calls = Calls::default();
    tracing_subscriber::registry()
        .with(
            calls
                .clone()
                .with_filter(tracing_subscriber::filter::LevelFilter::TRACE),
        )
        .init();

    let emu = common::emulator().await;
    let mut secrets: Vec<String> = vec![
        emu_consts::ADMIN_PASSWORD.into(),
        emu.connection().spp.a2a.password_api_key.clone(),
        emu.connection().sps.password.clone(),
    ];
    let client = common::admin(&emu).await;
    secrets.push(
        client
            .user_token()
            .await
            .unwrap()
            .expose_secret()
            .to_owned(),
    );
    calls.take();

    // A typed call.
    let me = client.core().me_get_me().send().await.unwrap();
    let typed = calls.take();
    assert_eq!(typed.len(), 1, "{typed:#?}");
    assert_call(one(&typed, "GET", "/service/core/v4/Me"), "core", "200");
    let id = me.id.expect("an id");

    // Generic calls: the id is templated, the query never appears.
    let _: serde_json::Value = client
        .get(Service::Core, &format!("Users/{id}"))
        .query(&[("fields", "Name")])
        .unwrap()
        .send_json()
        .await
        .unwrap();
    let missing = client
        .get(Service::Core, "Users/987654")
        .send_raw()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let generic = calls.take();
    assert_eq!(generic.len(), 2, "{generic:#?}");
    for call in &generic {
        assert_eq!(call["operation"], "/service/core/v4/Users/{id}");
        assert_eq!(call["service"], "core");
    }
    assert_eq!(generic[0]["status"], "200");
    assert_eq!(generic[1]["status"], "404");

    // An A2A retrieval (its certificate sign-in and the retrieval).
    let c = &emu.connection().spp.client_cert;
    let tls = TlsOptions::default().with_ca_pem(emu.ca_pem()).unwrap();
    let a2a = A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(tls.clone())
        .build()
        .unwrap();
    let key = SecretString::from(emu.connection().spp.a2a.password_api_key.clone());
    let password = a2a.retrieve_password(&key).await.unwrap();
    secrets.push(password.expose_secret().to_owned());
    let retrieval = calls.take();
    assert_call(
        one(&retrieval, "GET", "/service/a2a/v4/Credentials"),
        "a2a",
        "200",
    );

    // An SPS call (its sign-in is a call of its own).
    let s = emu.connection().sps.clone();
    let sps = SpsClient::builder(emu.sps_host())
        .credentials(s.user, s.password)
        .tls(tls)
        .build()
        .unwrap();
    sps.get_json("configuration").await.unwrap();
    let sps_calls = calls.take();
    assert_call(one(&sps_calls, "GET", "/api/configuration"), "sps", "200");

    // An events connect: the negotiate, then the websocket upgrade.
    let listener = client.event_listener();
    listener.start().await.expect("listener connects");
    let events = calls.take();
    assert_call(
        one(&events, "POST", "/service/event/signalr/negotiate"),
        "events",
        "200",
    );
    assert_call(
        one(&events, "GET", "/service/event/signalr"),
        "events",
        "101",
    );
    listener.stop().await;

    let all: Vec<Fields> = [typed, generic, retrieval, sps_calls, events].concat();
    let text = format!("{all:?}");
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!text.contains(secret.as_str()), "a secret in {text}");
    }
    assert!(!text.contains("session_id"), "the SPS cookie in {text}");
    assert!(!text.contains('?'), "a query string in {text}");
}
