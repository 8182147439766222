//! Every typed operation of the generated clients on the wire, against the
//! in-process emulator: valid arguments synthesized from the appliance's
//! original documents, parents created first through the generic verbs, and
//! each call must answer a 2xx whose typed body decodes. Prints `N of 1072`
//! and the failures grouped by cause (three of each; every one with
//! `SAFEGUARD_CONFORMANCE_ALL=1`); every one must pass.
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

/// The whole run's budget in a debug build.
const BUDGET: Duration = Duration::from_secs(120);

/// A cluster of two (so that a replica can be promoted); the calls go to
/// the primary.
async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        cluster_members: 2,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

async fn clients(emu: &Emulator) -> Clients {
    let admin = &emu.connection().spp.admin;
    clients_of(emu, &admin.user, &admin.password).await
}

async fn clients_of(emu: &Emulator, user: &str, password: &str) -> Clients {
    let admin = (user.to_owned(), password.to_owned());
    let sdk = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .expect("CA parses")
        .auth(PkceAuth::new("local", admin.0, admin.1))
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
        Some((v, rest)) if v.starts_with('v') && v[1..].chars().all(|c| c.is_ascii_digit()) => rest,
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
    known: HashMap<String, Value>,
    counter: u64,
    a2a_keys: (String, String, String),
}

impl<'a> Arranger<'a> {
    fn synth(&self, service: ApiService) -> Synth<'a> {
        let mut s = Synth::new(&self.docs[&service], self.counter);
        s.known = self.known.clone();
        s
    }

    /// Fills `known` from the first entity of the core collection each
    /// member name points at: an integer `<Stem>Id` takes its `Id`
    /// (`PlatformId` -> `GET Platforms`), an object member with an `Id`
    /// takes `{"Id": ..}` (`Asset` -> `GET Assets`). The collection is the
    /// plural of the stem, or of its last word (`CertificateUserId` ->
    /// `Users`).
    async fn find_known(&mut self) {
        let doc = &self.docs[&ApiService::Core];
        let synth = Synth::new(doc, 0);
        // member name -> (stem, whether the member is the object itself)
        let mut members: BTreeMap<String, (String, bool)> = BTreeMap::new();
        if let Some(schemas) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for schema in schemas.values() {
                let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                    continue;
                };
                for (name, prop) in props {
                    let resolved = synth.resolve(prop);
                    if name.len() > 2
                        && name.ends_with("Id")
                        && resolved.get("type").and_then(Value::as_str) == Some("integer")
                    {
                        members.insert(name.clone(), (name[..name.len() - 2].to_owned(), false));
                    } else if prop.get("$ref").is_some()
                        && resolved.pointer("/properties/Id").is_some()
                    {
                        members.insert(name.clone(), (name.clone(), true));
                    }
                }
            }
        }
        let mut listed: HashMap<String, Option<Value>> = HashMap::new();
        for (member, (stem, object)) in members {
            let last_word = stem
                .char_indices()
                .rev()
                .find(|(_, c)| c.is_ascii_uppercase())
                .map(|(i, _)| stem[i..].to_owned())
                .unwrap_or_default();
            let mut candidates = Vec::new();
            for word in [stem.as_str(), last_word.as_str()] {
                if word.is_empty() {
                    continue;
                }
                candidates.push(format!("{word}s"));
                candidates.push(format!("{word}es"));
                if let Some(w) = word.strip_suffix('y') {
                    candidates.push(format!("{w}ies"));
                }
            }
            // Then the collections named after it with a prefix
            // (`AccountId` -> `AssetAccounts`), shortest first.
            let plural = candidates.first().cloned().unwrap_or_default();
            let mut prefixed: Vec<String> = doc["paths"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(path, _)| path.strip_prefix("/v4/"))
                .filter(|name| !name.contains('/') && name.ends_with(plural.as_str()))
                .map(str::to_owned)
                .collect();
            prefixed.sort_by_key(String::len);
            candidates.extend(prefixed);
            for collection in candidates {
                let template = format!("/v4/{collection}");
                if doc
                    .pointer(&format!("/paths/{}/get", escape(&template)))
                    .is_none()
                {
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
                    let value = if object {
                        json!({ "Id": id })
                    } else {
                        id.clone()
                    };
                    self.known.insert(member.clone(), value);
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
            let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
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
                .parent(
                    op.service,
                    &collection_template,
                    &collection,
                    name,
                    own_entity,
                )
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
        // Required query (and header) parameters: the a2a `type`, ...
        for param in operation
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let required = param.get("required").and_then(Value::as_bool) == Some(true);
            let in_path = param.get("in").and_then(Value::as_str) == Some("path");
            if let (true, false, Some(name)) =
                (required, in_path, param.get("name").and_then(Value::as_str))
            {
                let mut s = self.synth(op.service);
                let value = s.parameter(param);
                self.counter = s.counter();
                args.set(name, value);
            }
        }
        if op.body != BodyKind::None {
            let mut s = self.synth(op.service);
            let body = match s.body_schema(operation) {
                Some((_, schema)) if op.body == BodyKind::Json => s.value(schema, "body", 0),
                _ => json!("conformance upload"),
            };
            self.counter = s.counter();
            // An update of an entity sends the entity as read, changed where
            // the synthesized body says (what a client does: GET, change,
            // PUT); its other members keep values the appliance accepts.
            let by_id = op.method == "PUT"
                && op.path.ends_with('}')
                && doc["paths"][op.path].get("get").is_some();
            let body = match (by_id, body) {
                (true, Value::Object(synth)) => {
                    let path = relative(&format!("/{}", concrete.join("/"))).to_owned();
                    match self
                        .clients
                        .sdk
                        .get(sdk_service(op.service), &path)
                        .send_json::<Value>()
                        .await
                    {
                        Ok(Value::Object(mut current)) => {
                            for (k, v) in synth {
                                current.entry(k).or_insert(v);
                            }
                            Value::Object(current)
                        }
                        _ => Value::Object(synth),
                    }
                }
                (_, body) => body,
            };
            args.set("body", body);
        }
        // What a few operations need to exist first.
        let id = concrete
            .iter()
            .zip(&segments)
            .find(|(_, t)| **t == "{id}")
            .map(|(c, _)| c.clone());
        match (op.client_method, id) {
            ("asset_accounts_get_ssh_key", Some(id)) => {
                let key = self.known.get("PrivateKey").cloned().unwrap_or_default();
                let _ = self
                    .clients
                    .sdk
                    .put(Service::Core, &format!("AssetAccounts/{id}/SshKey"))
                    .json(&json!({ "PrivateKey": key }))
                    .send()
                    .await;
            }
            (
                "a2a_registrations_get_registration_access_request_broker_api_key"
                | "a2a_registrations_regenerate_registration_access_request_broker_api_key",
                Some(id),
            ) => {
                let _ = self
                    .clients
                    .sdk
                    .put(
                        Service::Core,
                        &format!("A2ARegistrations/{id}/AccessRequestBroker"),
                    )
                    .json(&json!({}))
                    .send()
                    .await;
            }
            ("cluster_set_leader", _) => {
                // Promote the replica (the primary cannot be promoted).
                let members = self
                    .clients
                    .sdk
                    .get(Service::Core, "Cluster/Members")
                    .send_json::<Value>()
                    .await
                    .unwrap_or_default();
                if let Some(id) = members
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| m["IsLeader"] == json!(false))
                    .and_then(|m| m.get("Id"))
                {
                    args.set("id", id.clone());
                }
            }
            ("a2a_registrations_post_registration_retrievable_account", _) => {
                // An account this registration cannot retrieve yet.
                if let Some(account) = self
                    .parent(
                        ApiService::Core,
                        "/v4/AssetAccounts",
                        "/v4/AssetAccounts",
                        "id",
                        true,
                    )
                    .await
                {
                    if let Some(Value::Object(mut body)) = args.get_value("body") {
                        body.insert("AccountId".into(), account);
                        args.set("body", Value::Object(body));
                    }
                }
            }
            _ => {}
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
    /// operation deletes it), else the first one it lists. The id is the
    /// entity's member named like the parameter (`accountId` ->
    /// `AccountId`), else its `Id`.
    async fn parent(
        &mut self,
        service: ApiService,
        template: &str,
        collection: &str,
        param: &str,
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
                .and_then(|v| entity_id(&v, param));
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
                .and_then(|e| entity_id(&e, param));
        }
        let id = found?;
        if !fresh {
            self.parents.insert(key, id.clone());
        }
        Some(id)
    }
}

/// The id of `entity` for the path parameter `param`: its member named
/// like the parameter (`accountId` -> `AccountId`), else its `Id`.
fn entity_id(entity: &Value, param: &str) -> Option<Value> {
    let mut chars = param.chars();
    let pascal: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    // Entities keyed otherwise: certificates by `Thumbprint`, settings by
    // `Name`.
    [pascal.as_str(), "Id", "Thumbprint", "Name"]
        .iter()
        .filter_map(|m| entity.get(*m))
        .find(|v| v.is_number() || v.as_str().is_some_and(|s| !s.is_empty()))
        .cloned()
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
    let documented: usize = docs.values().map(documented_operations).sum::<usize>();
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
        known: HashMap::new(),
        counter: 0,
        a2a_keys: (
            keys.password_api_key.clone(),
            keys.ssh_key_api_key.clone(),
            emu.control().broker_api_key(),
        ),
    };
    arranger.find_known().await;
    // An A2A registration's certificate user must be one: the seeded one.
    if let Ok(users) = clients
        .sdk
        .get(Service::Core, "Users")
        .query(&[(
            "filter",
            format!("Name eq '{}'", safeguard_emulator::CERT_USER),
        )])
        .expect("query")
        .send_json::<Value>()
        .await
    {
        if let Some(id) = users.get(0).and_then(|u| u.get("Id")) {
            arranger
                .known
                .insert("CertificateUserId".into(), id.clone());
        }
    }
    // A certificate is parsed by the appliance: a real one (the emulator's
    // client certificate, as the base64 of its PEM file).
    let client_pem = std::fs::read(&emu.connection().spp.client_cert.cert).expect("client cert");
    arranger.known.insert(
        "Base64CertificateData".into(),
        json!(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &client_pem
        )),
    );
    // Token/LoginResponse exchanges a real rSTS token.
    arranger.known.insert(
        "StsAccessToken".into(),
        json!(emu
            .control()
            .issue_sts_token(safeguard_emulator::ADMIN_USER)
            .expect("admin")),
    );
    // The requester, and the administrator as a reviewer of its policy (so
    // that a request can reach PendingReview).
    let auditor = clients_of(
        &emu,
        safeguard_emulator::PLAIN_USER,
        safeguard_emulator::PLAIN_PASSWORD,
    )
    .await;
    let policy = clients
        .sdk
        .get(Service::Core, "AccessPolicies")
        .query(&[("filter", "Name eq 'Emulator Password Policy'")])
        .expect("query")
        .send_json::<Value>()
        .await
        .ok()
        .and_then(|p| p.get(0).and_then(|p| p.get("Id")).cloned());
    let me = clients
        .sdk
        .get(Service::Core, "Me")
        .send_json::<Value>()
        .await
        .expect("Me");
    if let Some(policy) = policy {
        let reviewer = json!([{"Id": me["Id"], "PrincipalKind": "User", "Name": me["Name"],
            "DisplayName": me["DisplayName"]}]);
        clients
            .sdk
            .post(
                Service::Core,
                &format!("AccessPolicies/{policy}/Reviewers/Add"),
            )
            .json(&reviewer)
            .send()
            .await
            .expect("the administrator reviews the requester policy");
    }
    // A private key is checked by the appliance: give it a real one.
    let rsa = openssl::rsa::Rsa::generate(2048).expect("RSA key");
    let pem = String::from_utf8(rsa.private_key_to_pem().expect("PEM")).expect("UTF-8");
    arranger.known.insert("PrivateKey".into(), json!(pem));

    let mut passed = 0;
    let mut per_service: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    // The a2a operations first: core operations on the seeded A2A
    // registration (which they find when they cannot create one) regenerate
    // or remove its API keys.
    // The deletions last: one that finds no entity it could create deletes
    // the first listed, which may be one that others use.
    // The operations that end a session or the appliance's service at the
    // very end, through a second session.
    let mut order: Vec<&Operation> = OPERATIONS.iter().collect();
    // Promoting the replica comes last of all: the member the calls go to
    // is a replica after it.
    order.sort_by_key(|op| {
        (
            op.service != ApiService::A2a,
            is_final(op),
            op.client_method == "cluster_set_leader",
            op.method == "DELETE",
        )
    });
    let mut second: Option<Clients> = None;
    for op in order {
        let mut args = arranger.arguments(op).await;
        let setup = access_setup(op.client_method);
        if let Some(setup) = &setup {
            match arrange_access_request(&emu, &clients, &auditor, setup).await {
                Ok(id) => args.set("id", json!(id)),
                Err(e) => {
                    per_service.entry(op.service.name()).or_default().1 += 1;
                    failures
                        .entry("access-request set-up failed".into())
                        .or_default()
                        .push((format!("{op:?}"), e));
                    continue;
                }
            }
        }
        let through = if setup.as_ref().is_some_and(|s| s.call_as == Who::Auditor) {
            &auditor
        } else if is_final(op) {
            if second.is_none() {
                second = Some(self::clients(&emu).await);
            }
            second.as_ref().unwrap_or(&clients)
        } else {
            &clients
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), (op.call)(through, &args))
            .await
            .unwrap_or_else(|_| {
                Err(Failure {
                    class: "no answer in 10 s".into(),
                    status: None,
                    detail: String::new(),
                })
            });
        let tally = per_service.entry(op.service.name()).or_default();
        tally.1 += 1;
        match answer {
            Ok(status) if (200..300).contains(&status) => {
                passed += 1;
                tally.0 += 1;
            }
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
    for (service, (ok, all)) in &per_service {
        println!("  {service}: {ok} of {all}");
    }
    // SAFEGUARD_CONFORMANCE_ALL=1 lists every failing operation, not three
    // of each cause.
    let shown = if std::env::var_os("SAFEGUARD_CONFORMANCE_ALL").is_some() {
        usize::MAX
    } else {
        3
    };
    println!("failures by cause:");
    for (class, ops) in &failures {
        println!("  {} x {class}", ops.len());
        for (op, detail) in ops.iter().take(shown) {
            println!("      {op}: {detail}");
        }
    }
    assert!(
        passed == OPERATIONS.len(),
        "{passed} of {} operations answered a decoded 2xx",
        OPERATIONS.len()
    );
    assert!(
        started.elapsed() < BUDGET,
        "the run took {:?}",
        started.elapsed()
    );
}

/// Who sends a request of an access request's set-up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Who {
    /// The administrator: a break-glass entitlement (no approval), and the
    /// approver and reviewer of the requester role's policy.
    Admin,
    /// The seeded requester: its policy needs the administrator's approval.
    Auditor,
}

/// The state an access-request step needs, reached through the workflow
/// (the appliance refuses a step out of order): who requests, what type,
/// the steps before, and who sends the step itself.
struct Setup {
    requester: Who,
    kind: &'static str,
    before: &'static [(Who, &'static str)],
    call_as: Who,
}

fn access_setup(client_method: &str) -> Option<Setup> {
    use Who::*;
    let (requester, kind, before, call_as): (Who, &str, &'static [(Who, &str)], Who) =
        match client_method {
            "access_requests_check_out_password" | "access_requests_cancel" => {
                (Admin, "Password", &[], Admin)
            }
            "access_requests_check_out_ssh_key" => (Admin, "SshKey", &[], Admin),
            "access_requests_check_in" => {
                (Admin, "Password", &[(Admin, "CheckOutPassword")], Admin)
            }
            "access_requests_close" => (
                Admin,
                "Password",
                &[(Admin, "CheckOutPassword"), (Admin, "CheckIn")],
                Admin,
            ),
            "access_requests_approve" | "access_requests_deny" => (Auditor, "Password", &[], Admin),
            "access_requests_acknowledge" => (Auditor, "Password", &[(Admin, "Deny")], Auditor),
            "access_requests_review" => (
                Auditor,
                "Password",
                &[
                    (Admin, "Approve"),
                    (Auditor, "CheckOutPassword"),
                    (Auditor, "CheckIn"),
                    (Auditor, "Close"),
                ],
                Admin,
            ),
            _ => return None,
        };
    Some(Setup {
        requester,
        kind,
        before,
        call_as,
    })
}

/// Walks an access request to the state `setup` needs; its id.
async fn arrange_access_request(
    emu: &Emulator,
    admin: &Clients,
    auditor: &Clients,
    setup: &Setup,
) -> Result<String, String> {
    let who = |w: Who| if w == Who::Admin { admin } else { auditor };
    let account = if setup.kind == "SshKey" {
        emu.control().ssh_key_account_id()
    } else {
        emu.control().password_account_id()
    };
    let created = who(setup.requester)
        .sdk
        .post(Service::Core, "AccessRequests")
        .json(&json!({"AccountId": account, "AccessRequestType": setup.kind}))
        .send_json::<Value>()
        .await
        .map_err(|e| format!("creating the request: {e}"))?;
    let id = match &created["Id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (by, step) in setup.before {
        who(*by)
            .sdk
            .post(Service::Core, &format!("AccessRequests/{id}/{step}"))
            .send()
            .await
            .map_err(|e| format!("{step}: {e}"))?;
    }
    Ok(id)
}

/// Operations that end the session they are sent in (`Token/Logout`), change
/// the signed-in user's password, or stop, restart or reset the appliance:
/// run last, through a session of their own.
fn is_final(op: &Operation) -> bool {
    const FINAL: [&str; 6] = [
        "/v4/Cluster/Members/{id}/Promote",
        "/v4/Token/Logout",
        "/v4/Me/Password",
        "/v4/ApplianceStatus/FactoryReset",
        "/v4/ApplianceStatus/Reboot",
        "/v4/ApplianceStatus/Shutdown",
    ];
    FINAL.contains(&op.path)
}

/// Operations of a document, as the generated clients count them.
fn documented_operations(doc: &Value) -> usize {
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

/// One invalid request of the sample and what the appliance answers it.
struct InvalidCase {
    what: String,
    service: ApiService,
    method: &'static str,
    path: String,
    query: Vec<(String, String)>,
    /// The body and its content type.
    body: Option<(String, &'static str)>,
    status: u16,
    /// The member (or parameter) the `ModelState` must name; none for 415.
    member: Option<String>,
}

/// Operations of `service` without path parameters, as (path, method, op).
fn flat_operations(doc: &Value) -> Vec<(String, &'static str, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        if path.contains('{') {
            continue;
        }
        for method in ["GET", "POST", "PUT"] {
            if let Some(op) = item.get(method.to_ascii_lowercase()) {
                out.push((path.clone(), method, op));
            }
        }
    }
    out
}

/// `n` items spread evenly over `items` (all of them when fewer).
fn spread<T>(items: Vec<T>, n: usize) -> Vec<T> {
    let len = items.len();
    if len <= n {
        return items;
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i * n / len != (i + 1) * n / len)
        .map(|(_, t)| t)
        .collect()
}

/// A sample of invalid requests, chosen from the core and appliance
/// documents so that it stays diverse as they change: a body missing a
/// required member, a member of the wrong type, an enum member with a value
/// outside the enum, an integer query parameter that is not an integer
/// (`limit=abc`), and a JSON body sent as `text/plain`.
fn invalid_sample(docs: &HashMap<ApiService, Value>) -> Vec<InvalidCase> {
    let mut cases = Vec::new();
    for service in [ApiService::Core, ApiService::Appliance] {
        let doc = &docs[&service];
        let per_kind = if service == ApiService::Core { 3 } else { 1 };
        let mut missing = Vec::new();
        let mut wrong_type = Vec::new();
        let mut bad_enum = Vec::new();
        let mut bad_query = Vec::new();
        let mut content_type = Vec::new();
        for (path, method, op) in flat_operations(doc) {
            let mut s = Synth::new(doc, 10_000_000);
            if let Some(("application/json", schema)) = s.body_schema(op) {
                let schema = s.resolve(schema).clone();
                let body = s.value(&schema, "body", 0);
                let props = schema.get("properties").and_then(Value::as_object);
                let required = schema.get("required").and_then(Value::as_array);
                if let (Some(props), Some(Value::Object(valid))) = (props, Some(&body)) {
                    if let Some(member) = required
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .find(|m| valid.contains_key(*m))
                    {
                        let mut b = valid.clone();
                        b.remove(member);
                        missing.push((path.clone(), method, json!(b), member.to_owned()));
                    }
                    for (member, prop) in props {
                        let prop = s.resolve(prop);
                        if synth_read_only(prop) {
                            continue;
                        }
                        let mut b = valid.clone();
                        if prop.get("type").and_then(Value::as_str) == Some("integer")
                            && prop.get("enum").is_none()
                        {
                            b.insert(member.clone(), json!("not-a-number"));
                            wrong_type.push((path.clone(), method, json!(b), member.clone()));
                            break;
                        }
                    }
                    for (member, prop) in props {
                        let prop = s.resolve(prop);
                        if prop.get("enum").is_some() && !synth_read_only(prop) {
                            let mut b = valid.clone();
                            b.insert(member.clone(), json!("NotAValueOfThisEnum"));
                            bad_enum.push((path.clone(), method, json!(b), member.clone()));
                            break;
                        }
                    }
                    content_type.push((path.clone(), method, body.to_string()));
                }
            }
            if method == "GET" {
                if let Some(param) = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|p| {
                        p["in"] == "query"
                            && s.resolve(&p["schema"])["type"].as_str() == Some("integer")
                    })
                {
                    let name = param["name"].as_str().unwrap_or_default().to_owned();
                    bad_query.push((path.clone(), name));
                }
            }
        }
        for (path, method, body, member) in spread(missing, per_kind) {
            cases.push(InvalidCase {
                what: format!("body without the required `{member}`"),
                service,
                method,
                path,
                query: Vec::new(),
                body: Some((body.to_string(), "application/json")),
                status: 400,
                member: Some(member),
            });
        }
        for (kind, list) in [
            ("an integer member given a string", wrong_type),
            ("an enum member given an unknown value", bad_enum),
        ] {
            for (path, method, body, member) in spread(list, per_kind) {
                cases.push(InvalidCase {
                    what: format!("{kind}: `{member}`"),
                    service,
                    method,
                    path,
                    query: Vec::new(),
                    body: Some((body.to_string(), "application/json")),
                    status: 400,
                    member: Some(member),
                });
            }
        }
        for (path, name) in spread(bad_query, per_kind) {
            cases.push(InvalidCase {
                what: format!("integer query parameter `{name}=abc`"),
                service,
                method: "GET",
                path,
                query: vec![(name.clone(), "abc".into())],
                body: None,
                status: 400,
                member: Some(name),
            });
        }
        for (path, method, body) in spread(content_type, per_kind) {
            cases.push(InvalidCase {
                what: "a JSON body sent as text/plain".into(),
                service,
                method,
                path,
                query: Vec::new(),
                body: Some((body, "text/plain")),
                status: 415,
                member: None,
            });
        }
    }
    cases
}

fn synth_read_only(schema: &Value) -> bool {
    safeguard_conformance::synth::is_read_only(schema)
}

/// Sends `case` through the generic verbs; why its answer is not the
/// appliance's, if it is not.
async fn check_invalid(client: &SafeguardClient, case: &InvalidCase) -> Result<(), String> {
    let service = sdk_service(case.service);
    let path = relative(&case.path);
    let mut request = match case.method {
        "POST" => client.post(service, path),
        "PUT" => client.put(service, path),
        _ => client.get(service, path),
    };
    if !case.query.is_empty() {
        request = request.query(&case.query).map_err(|e| e.to_string())?;
    }
    if let Some((body, content_type)) = &case.body {
        request = request
            .raw_body(body.clone())
            .header_str("Content-Type", content_type);
    }
    let answer = request.send_raw().await.map_err(|e| e.to_string())?;
    let status = answer.status().as_u16();
    let text = answer.text().await.map_err(|e| e.to_string())?;
    if status != case.status {
        return Err(format!(
            "HTTP {status}, not {}: {}",
            case.status,
            text.chars().take(160).collect::<String>()
        ));
    }
    let Some(member) = &case.member else {
        return Ok(());
    };
    let body: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    // The appliance's shape (ASP.NET Web API's model state):
    // {"Code": 70000, "Message": "The request is invalid.", "ModelState": {"<member path>": ["<message>"]}}
    let named = body["ModelState"].as_object().is_some_and(|state| {
        state.iter().any(|(key, messages)| {
            key.to_ascii_lowercase()
                .contains(&member.to_ascii_lowercase())
                && messages
                    .as_array()
                    .is_some_and(|m| !m.is_empty() && m.iter().all(Value::is_string))
        })
    });
    if body["Code"].is_i64() && body["Message"].is_string() && named {
        Ok(())
    } else {
        Err(format!(
            "not the appliance's body naming `{member}`: {text}"
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_get_the_appliances_400() {
    let emu = emulator().await;
    let clients = clients(&emu).await;
    let docs = documents();
    let cases = invalid_sample(&docs);
    assert!(
        cases.len() >= 15,
        "only {} cases in the sample",
        cases.len()
    );
    let mut passed = 0;
    for case in &cases {
        let result = check_invalid(&clients.sdk, case).await;
        let line = format!(
            "{} {} {}: {}",
            case.service.name(),
            case.method,
            case.path,
            case.what
        );
        match result {
            Ok(()) => {
                passed += 1;
                println!("  ok   {line}");
            }
            Err(why) => println!("  FAIL {line}: {why}"),
        }
    }
    println!(
        "\n{passed} of {} invalid requests got the appliance's answer",
        cases.len()
    );
    assert!(
        passed == cases.len() && cases.len() >= 20,
        "{passed} of {} invalid requests got the appliance's answer",
        cases.len()
    );
}
