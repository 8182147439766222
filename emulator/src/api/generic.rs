//! The generic layer: every documented operation that no handwritten handler
//! answers. Shapes derived from the documents' paths get state:
//!
//! * a collection `C` with `POST C` and `GET C/{id}`: create (id and the
//!   read-only `Created*` members filled), list (with `filter`, `fields`,
//!   `orderby`, `page`, `limit`, `count`), and `GET`/`PUT`/`PATCH`/`DELETE
//!   C/{id}`; nested collections (`Assets/{id}/Accounts`) likewise, per
//!   parent;
//! * lists: `POST X/{operation}` (the documents' `ListOperation`, `Add` or
//!   `Remove`, with an array), `PUT X` (set), `GET X`;
//! * any path below an entity of a stateful collection answers 404 when the
//!   entity does not exist.
//!
//! Everything else (actions, reports, read-only views) answers a
//! deterministic body that conforms to the operation's documented success
//! response. Authorization of every operation, handwritten or not, follows
//! its documented 403 ("Must have PolicyAdmin or Auditor permission."): the
//! caller needs one of the roles it names ([`authorize`]).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

use super::{json_response, list, not_found, one, Ctx};
use crate::openapi::{Operation, Route, Segment, ServiceSpec};
use crate::state::now_string;

/// Who answered a request (a response extension; `--coverage` reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServedBy {
    /// A handwritten handler.
    Handwritten,
    /// The generic layer, from stored state.
    Stateful,
    /// The generic layer, a synthesized answer.
    Synthesized,
}

impl ServedBy {
    /// The name `--coverage` prints.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ServedBy::Handwritten => "handwritten",
            ServedBy::Stateful => "generic stateful",
            ServedBy::Synthesized => "synthesized",
        }
    }
}

/// What the generic layer does with one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    List,
    Create,
    Read,
    Update,
    Delete,
    MembersGet,
    MembersSet,
    /// `POST X/Add` or `POST X/Remove`.
    MembersModify,
    Synthesized,
}

impl Kind {
    /// Whether answers of this kind come from stored state.
    pub(crate) fn stateful(self) -> bool {
        self != Kind::Synthesized
    }
}

fn with_param(segments: &[Segment]) -> Vec<Segment> {
    let mut v = segments.to_vec();
    v.push(Segment::Param(String::new()));
    v
}

/// Whether `prefix` (ending in a literal) is a collection with a create
/// operation and entities addressed by id.
fn is_collection(svc: &ServiceSpec, prefix: &[Segment]) -> bool {
    matches!(prefix.last(), Some(Segment::Literal(_)))
        && svc
            .route_of(prefix)
            .is_some_and(|r| r.operation(&Method::POST).is_some())
        && svc
            .route_of(&with_param(prefix))
            .is_some_and(|r| r.operation(&Method::GET).is_some())
}

/// Whether `prefix` is a list with `POST prefix/{operation}` (the
/// documents' `ListOperation`: `Add` or `Remove`).
fn has_add(svc: &ServiceSpec, prefix: &[Segment]) -> bool {
    svc.route_of(&with_param(prefix)).is_some_and(|r| {
        r.operation(&Method::POST).is_some()
            && matches!(r.segments.last(), Some(Segment::Param(p)) if p == "operation")
    })
}

/// Classifies an operation by the shape of its path.
pub(crate) fn kind(svc: &ServiceSpec, route: &Route, op: &Operation) -> Kind {
    let segs = &route.segments;
    let Some(last) = segs.last() else {
        return Kind::Synthesized;
    };
    let prefix = &segs[..segs.len() - 1];
    match (&op.method, last) {
        (&Method::GET, Segment::Literal(_)) if is_collection(svc, segs) => Kind::List,
        (&Method::POST, Segment::Literal(_)) if is_collection(svc, segs) => Kind::Create,
        (m, Segment::Param(_)) if is_collection(svc, prefix) => match *m {
            Method::GET => Kind::Read,
            Method::PUT | Method::PATCH => Kind::Update,
            Method::DELETE => Kind::Delete,
            _ => Kind::Synthesized,
        },
        (&Method::POST, Segment::Param(p)) if p == "operation" && has_add(svc, prefix) => {
            Kind::MembersModify
        }
        (&Method::GET, Segment::Literal(_)) if has_add(svc, segs) => Kind::MembersGet,
        (&Method::PUT, Segment::Literal(_)) if has_add(svc, segs) => Kind::MembersSet,
        _ => Kind::Synthesized,
    }
}

/// The roles a documented 403 names ("Must have PolicyAdmin or Auditor
/// permission."), from the document's own list of role names. Empty when
/// the description names none or allows other grounds (a partition owner,
/// an approver, a certificate).
fn required_roles(svc: &ServiceSpec, operation: &Value) -> Vec<String> {
    let Some(text) = operation["responses"]["403"]["description"].as_str() else {
        return Vec::new();
    };
    if !text.starts_with("Must have ") || text.contains(" own ") || text.contains(" be ") {
        return Vec::new();
    }
    if text.contains("certificate") || text.contains("fine-grained") {
        return Vec::new();
    }
    let known: Vec<&str> = svc.document["components"]["schemas"]["AdminRoleName"]["enum"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| known.contains(w))
        .map(str::to_string)
        .collect()
}

/// Authorization as the documents describe it: a caller signed in with a
/// user token needs one of the roles the operation's 403 names. ASP.NET
/// runs authorization before model validation, so this comes before it
/// (403 before 400). Callers without a user token (certificate users) are
/// left to the handlers.
pub(crate) fn authorize(
    ctx: &mut Ctx,
    svc: &ServiceSpec,
    operation: &Value,
) -> Result<(), Response> {
    if ctx.user().is_err() {
        return Ok(());
    }
    let roles = required_roles(svc, operation);
    if roles.is_empty() {
        return Ok(());
    }
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    ctx.admin(&roles).map(drop)
}

/// The lower-cased key of the stored collection at `segs` (concrete
/// segments, ids included).
fn key(service: &str, segs: &[String]) -> String {
    let mut k = service.to_ascii_lowercase();
    for s in segs {
        k.push('/');
        k.push_str(&s.to_ascii_lowercase());
    }
    k
}

/// Whether the handwritten state holds `id` in the collection at
/// `collection` (the lower-cased path: `users`, `cluster/members`); `None`
/// when that collection is not handwritten.
fn handwritten_exists(ctx: &Ctx, service: &str, collection: &str, id: &str) -> Option<bool> {
    // Before the state lock: the cluster has its own (never held together).
    if (service, collection) == ("core", "cluster/members") {
        let cluster = ctx.app.cluster.lock().ok()?;
        return Some(
            cluster
                .members
                .iter()
                .any(|m| m.id.eq_ignore_ascii_case(id)),
        );
    }
    let db = ctx.app.db();
    let n = id.parse::<i64>().ok();
    let has = |m: &std::collections::BTreeMap<i64, Value>| n.is_some_and(|n| m.contains_key(&n));
    match (service, collection) {
        ("core", "users") => Some(has(&db.users)),
        ("core", "assets") => Some(has(&db.assets)),
        ("core", "assetaccounts") => Some(has(&db.accounts)),
        ("core", "a2aregistrations") => Some(has(&db.registrations)),
        ("core", "accessrequests") => Some(db.access_requests.values().any(|r| match &r["Id"] {
            Value::String(s) => s == id,
            Value::Number(n) => n.to_string() == id,
            _ => false,
        })),
        ("core", "roles") => Some(has(&db.roles)),
        ("core", "accesspolicies") => Some(has(&db.policies)),
        ("core", "platforms") => Some(
            n.is_some_and(|n| crate::platforms::get(n).is_some())
                || db
                    .generic
                    .get("core/platforms")
                    .is_some_and(|v| v.iter().any(|e| id_matches(e, id, None))),
        ),
        ("core", "trustedcertificates") => {
            Some(db.trusted_certs.keys().any(|k| k.eq_ignore_ascii_case(id)))
        }
        ("appliance", "backups") => Some(db.backups.contains_key(id)),

        _ => None,
    }
}

/// Answers one documented operation no handwritten handler took; the answer
/// says how it was served ([`ServedBy`], for `--coverage`).
pub(crate) async fn handle(
    ctx: &mut Ctx,
    svc: &ServiceSpec,
    route: &Route,
    op: &Operation,
    body: Option<Value>,
) -> Response {
    let kind = kind(svc, route, op);
    let mut r = serve(ctx, svc, route, op, kind, body).await;
    r.extensions_mut().insert(if kind.stateful() {
        ServedBy::Stateful
    } else {
        ServedBy::Synthesized
    });
    r
}

async fn serve(
    ctx: &mut Ctx,
    svc: &ServiceSpec,
    route: &Route,
    op: &Operation,
    kind: Kind,
    body: Option<Value>,
) -> Response {
    let operation = svc.operation_object(route, op);
    // The roles the operation needs were checked before validation (see
    // `authorize`); a user token is needed here in any case.
    let user = match ctx.user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    let concrete: Vec<String> = ctx.segs.iter().skip(3).cloned().collect();

    // Every entity on the way must exist (the one addressed by Read, Update
    // and Delete too).
    for (i, seg) in route.segments.iter().enumerate() {
        if !matches!(seg, Segment::Param(_)) || !is_collection(svc, &route.segments[..i]) {
            continue;
        }
        let id = &concrete[i];
        // Handwritten collections first; an entity the generic layer created
        // in one (a collection whose create the handlers leave to it) counts
        // too.
        let collection = concrete[..i].join("/").to_ascii_lowercase();
        let member = key_member(svc, &route.segments[..i]);
        let exists = handwritten_exists(ctx, svc.name, &collection, id) == Some(true)
            || find(ctx, &key(svc.name, &concrete[..i]), id, member.as_deref()).is_some();
        if !exists {
            let what = match &route.segments[i - 1] {
                Segment::Literal(l) => l.trim_end_matches('s').to_string(),
                Segment::Param(_) => "entity".to_string(),
            };
            return not_found(&what, id);
        }
    }

    let (status, content) = svc.success(operation);
    let response_schema = content.map(|(_, s)| s);
    match kind {
        Kind::List => {
            let items = stored(ctx, &key(svc.name, &concrete));
            list(ctx, items)
        }
        Kind::Create => {
            let schema = response_schema.unwrap_or(&Value::Null);
            let mut entity = svc.example(schema);
            let id_member = svc
                .members(schema)
                .into_iter()
                .find(|(n, _)| *n == "Id")
                .map(|(_, s)| svc.resolve(s).unwrap_or(s)["type"].as_str() == Some("string"));
            let id = {
                let mut db = ctx.app.db();
                match id_member {
                    Some(true) => Value::String(uuid::Uuid::new_v4().to_string()),
                    _ => Value::from(db.id()),
                }
            };
            if let (Value::Object(e), Some(Value::Object(b))) = (&mut entity, &body) {
                for (k, v) in b {
                    e.insert(k.clone(), v.clone());
                }
            }
            if let Value::Object(e) = &mut entity {
                e.insert("Id".to_string(), id.clone());
                // Addressed by another member (`Share/{sharedWithId}`):
                // the body's value, else the new id.
                if let Some(member) = key_member(svc, &route.segments) {
                    let given = body
                        .as_ref()
                        .and_then(|b| b.get(&member))
                        .is_some_and(|v| !v.is_null() && v != &json!(0));
                    if !given && e.contains_key(&member) {
                        let text = matches!(e[&member], Value::String(_));
                        let value = match &id {
                            Value::Number(n) if text => Value::String(n.to_string()),
                            other => other.clone(),
                        };
                        e.insert(member, value);
                    }
                }
                let name = ctx
                    .app
                    .db()
                    .users
                    .get(&user)
                    .and_then(|u| u["DisplayName"].as_str().map(str::to_string))
                    .unwrap_or_default();
                for (member, value) in [
                    ("CreatedDate", json!(now_string())),
                    ("CreatedByUserId", json!(user)),
                    ("CreatedByUserDisplayName", json!(name)),
                ] {
                    if e.contains_key(member) {
                        e.insert(member.to_string(), value);
                    }
                }
            }
            ctx.app
                .db()
                .generic
                .entry(key(svc.name, &concrete))
                .or_default()
                .push(entity.clone());
            answer(ctx, status, content, Some(entity))
        }
        Kind::Read => {
            let k = key(svc.name, &concrete[..concrete.len() - 1]);
            let member = key_member(svc, &route.segments[..route.segments.len() - 1]);
            let entity = find(ctx, &k, &concrete[concrete.len() - 1], member.as_deref());
            answer(ctx, status, content, entity)
        }
        Kind::Update => {
            let k = key(svc.name, &concrete[..concrete.len() - 1]);
            let id = concrete[concrete.len() - 1].clone();
            let key = key_member(svc, &route.segments[..route.segments.len() - 1]);
            let updated = {
                let mut db = ctx.app.db();
                let items = db.generic.entry(k).or_default();
                items
                    .iter_mut()
                    .find(|e| id_matches(e, &id, key.as_deref()))
                    .map(|e| {
                        if let (Value::Object(e), Some(Value::Object(b))) = (&mut *e, &body) {
                            for (k, v) in b {
                                if k != "Id" {
                                    e.insert(k.clone(), v.clone());
                                }
                            }
                        }
                        e.clone()
                    })
            };
            answer(ctx, status, content, updated)
        }
        Kind::Delete => {
            let k = key(svc.name, &concrete[..concrete.len() - 1]);
            let id = concrete[concrete.len() - 1].clone();
            let key = key_member(svc, &route.segments[..route.segments.len() - 1]);
            {
                let mut db = ctx.app.db();
                if let Some(items) = db.generic.get_mut(&k) {
                    items.retain(|e| !id_matches(e, &id, key.as_deref()));
                }
                let prefix = format!("{k}/{}/", id.to_ascii_lowercase());
                db.generic.retain(|key, _| !key.starts_with(&prefix));
                db.members.retain(|key, _| !key.starts_with(&prefix));
            }
            answer(ctx, status, content, None)
        }
        Kind::MembersGet | Kind::MembersSet | Kind::MembersModify => {
            let set_segs = match kind {
                Kind::MembersModify => &concrete[..concrete.len() - 1],
                _ => &concrete[..],
            };
            let remove = kind == Kind::MembersModify
                && concrete[concrete.len() - 1].eq_ignore_ascii_case("remove");
            let k = key(svc.name, set_segs);
            let given: Vec<Value> = match &body {
                Some(Value::Array(a)) => a.clone(),
                Some(v @ Value::Object(_)) => vec![v.clone()],
                _ => Vec::new(),
            };
            let members = {
                let mut db = ctx.app.db();
                let set = db.members.entry(k).or_default();
                if kind == Kind::MembersSet {
                    set.clear();
                }
                if remove {
                    set.retain(|m| !given.iter().any(|g| same_member(m, g)));
                } else if kind != Kind::MembersGet {
                    for g in &given {
                        if !set.iter().any(|m| same_member(m, g)) {
                            set.push(g.clone());
                        }
                    }
                }
                set.clone()
            };
            let is_array = response_schema
                .and_then(|s| svc.resolve(s))
                .is_some_and(|s| s["type"].as_str() == Some("array"));
            if is_array {
                if kind == Kind::MembersGet {
                    return list(ctx, members);
                }
                answer(ctx, status, content, Some(Value::Array(members)))
            } else {
                let example = response_schema.map(|s| svc.example(s));
                answer(ctx, status, content, example)
            }
        }
        Kind::Synthesized => {
            let example = response_schema.map(|s| svc.example(s));
            answer(ctx, status, content, example)
        }
    }
}

/// Whether `entity` is the one a path addresses with `id`: by its `Id`, or
/// by the member named like the path's parameter (`{sharedWithId}` ->
/// `SharedWithId`).
fn id_matches(entity: &Value, id: &str, key: Option<&str>) -> bool {
    let is = |v: &Value| match v {
        Value::Number(n) => n.to_string() == id,
        Value::String(s) => s.eq_ignore_ascii_case(id),
        _ => false,
    };
    is(&entity["Id"]) || key.is_some_and(|k| is(&entity[k]))
}

/// The member naming an entity of the collection `segments` when its
/// by-id path's parameter is not `id` (`Share/{sharedWithId}` ->
/// `SharedWithId`).
fn key_member(svc: &ServiceSpec, segments: &[Segment]) -> Option<String> {
    let route = svc.route_of(&with_param(segments))?;
    match route.segments.last() {
        Some(Segment::Param(p)) if !p.eq_ignore_ascii_case("id") => {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        }
        _ => None,
    }
}

fn same_member(a: &Value, b: &Value) -> bool {
    match (a.get("Id"), b.get("Id")) {
        (Some(x), Some(y)) if !x.is_null() => x == y,
        _ => a == b,
    }
}

fn stored(ctx: &Ctx, key: &str) -> Vec<Value> {
    ctx.app.db().generic.get(key).cloned().unwrap_or_default()
}

fn find(ctx: &Ctx, key: &str, id: &str, member: Option<&str>) -> Option<Value> {
    ctx.app
        .db()
        .generic
        .get(key)
        .and_then(|items| items.iter().find(|e| id_matches(e, id, member)).cloned())
}

/// The documented success answer: `status`, and `body` in the documented
/// media type (JSON honours `fields`); no body when none is documented.
fn answer(
    ctx: &Ctx,
    status: u16,
    content: Option<(&str, &Value)>,
    body: Option<Value>,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    match (content, body) {
        (Some((media, _)), Some(v)) if media.contains("json") => {
            if status == StatusCode::OK {
                let mut r = one(ctx, &v);
                *r.status_mut() = status;
                r
            } else {
                json_response(status, &v)
            }
        }
        (Some((media, _)), body) if !media.contains("json") => {
            let bytes = match body {
                Some(Value::String(s)) => s.into_bytes(),
                _ => Vec::new(),
            };
            let mut r = (status, Body::from(bytes)).into_response();
            if let Ok(v) = HeaderValue::from_str(media) {
                r.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            r
        }
        (Some(_), None) => json_response(status, &Value::Null),
        _ => status.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::Spec;

    fn kind_of(service: &str, method: Method, path: &[&str]) -> Kind {
        let svc = Spec::get().service(service).unwrap();
        let (route, _) = svc.find(path, &method).unwrap();
        let op = route.operation(&method).unwrap();
        kind(svc, route, op)
    }

    #[test]
    fn shapes_are_derived_from_the_paths() {
        use Kind::*;
        assert_eq!(kind_of("core", Method::GET, &["Roles"]), List);
        assert_eq!(kind_of("core", Method::POST, &["Roles"]), Create);
        assert_eq!(kind_of("core", Method::GET, &["Roles", "1"]), Read);
        assert_eq!(kind_of("core", Method::PUT, &["Roles", "1"]), Update);
        assert_eq!(kind_of("core", Method::DELETE, &["Roles", "1"]), Delete);
        assert_eq!(
            kind_of("core", Method::POST, &["Roles", "1", "Members", "Add"]),
            MembersModify
        );
        assert_eq!(
            kind_of("core", Method::POST, &["Roles", "1", "Members", "Remove"]),
            MembersModify
        );
        assert_eq!(
            kind_of("core", Method::GET, &["Roles", "1", "Members"]),
            MembersGet
        );
        assert_eq!(
            kind_of("core", Method::PUT, &["Roles", "1", "Members"]),
            MembersSet
        );
        assert_eq!(kind_of("appliance", Method::GET, &["Version"]), Synthesized);
    }

    #[test]
    fn roles_come_from_the_documented_403() {
        let svc = Spec::get().service("core").unwrap();
        let op = json!({"responses": {"403": {"description": "Must have PolicyAdmin, ApplicationAuditor or Auditor permission."}}});
        assert_eq!(
            required_roles(svc, &op),
            vec!["PolicyAdmin", "ApplicationAuditor", "Auditor"]
        );
        let op = json!({"responses": {"403": {"description": "Must have PolicyAdmin permission or own a partition."}}});
        assert!(required_roles(svc, &op).is_empty());
        assert!(required_roles(svc, &json!({})).is_empty());
    }

    #[test]
    fn members_compare_by_id() {
        assert!(same_member(
            &json!({"Id": 3, "Name": "a"}),
            &json!({"Id": 3})
        ));
        assert!(!same_member(&json!({"Id": 3}), &json!({"Id": 4})));
        assert!(id_matches(&json!({"Id": 12}), "12", None));
        assert!(id_matches(&json!({"Id": "AbC"}), "abc", None));
        assert!(id_matches(
            &json!({"Id": 1, "SharedWithId": 7}),
            "7",
            Some("SharedWithId")
        ));
        assert!(!id_matches(&json!({"Id": 1, "SharedWithId": 7}), "7", None));
    }
}
