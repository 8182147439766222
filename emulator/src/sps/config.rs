//! The configuration tree of the fake SPS: a static schema of branches, keyed
//! lists of objects and settings nodes, the stored data, write validation,
//! reference rendering and the replay of a transaction's changelog.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

/// The type of a value in an object, enough to check writes the way SPS does.
#[derive(Clone, Debug)]
pub(crate) enum Ty {
    Str,
    Bool,
    Int,
    Any,
    /// A reference to an object of the list at this configuration path
    /// (relative to `/api/configuration`). Stored and written as the bare key,
    /// shown as `{key, meta}`.
    Ref(&'static str),
    /// `null` or the inner type.
    Nullable(Box<Ty>),
    List(Box<Ty>),
    Obj(Vec<(&'static str, Ty)>),
}

fn obj(fields: Vec<(&'static str, Ty)>) -> Ty {
    Ty::Obj(fields)
}
fn list(t: Ty) -> Ty {
    Ty::List(Box::new(t))
}
fn nullable(t: Ty) -> Ty {
    Ty::Nullable(Box::new(t))
}

/// What a node of the configuration tree is.
#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    /// A container of named children.
    Branch(Vec<&'static str>),
    /// A keyed, ordered list of objects.
    List {
        schema: Ty,
        /// Objects cannot be read back (passwords).
        write_only: bool,
    },
    /// A single object that can be read and replaced.
    Settings(Ty),
}

/// The static schema: every node path (relative to `/api/configuration`,
/// `""` is the root) and its kind.
#[derive(Debug)]
pub(crate) struct Schema {
    nodes: BTreeMap<&'static str, NodeKind>,
}

fn channel_policy() -> Ty {
    obj(vec![
        ("name", Ty::Str),
        (
            "rules",
            list(obj(vec![
                ("channel", Ty::Str),
                (
                    "actions",
                    obj(vec![
                        ("audit", Ty::Bool),
                        (
                            "content_policy",
                            nullable(Ty::Ref("policies/content_policies")),
                        ),
                        ("four_eyes", Ty::Bool),
                        ("ids", Ty::Bool),
                    ]),
                ),
                (
                    "allowed_for",
                    obj(vec![
                        ("clients", list(Ty::Str)),
                        ("gateway_groups", list(Ty::Str)),
                        ("remote_groups", list(Ty::Str)),
                        ("servers", list(Ty::Str)),
                        ("time_policy", Ty::Ref("policies/time_policies")),
                    ]),
                ),
            ])),
        ),
    ])
}

fn options() -> Ty {
    obj(vec![(
        "service",
        obj(vec![("enabled", Ty::Bool), ("log_level", Ty::Int)]),
    )])
}

impl Schema {
    pub(crate) fn new() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "",
            NodeKind::Branch(vec![
                "local_services",
                "management",
                "network",
                "passwords",
                "policies",
                "rdp",
                "ssh",
            ]),
        );
        // Clustering, as `Join-SafeguardSessionCluster` (safeguard-ps,
        // src/sessionjoin.psm1) reads and writes it: `enabled` and the
        // `listen_address`, a reference to a NIC address written as
        // `nic1.interfaces.<id>.addresses.<id>` (null while disabled).
        nodes.insert("local_services", NodeKind::Branch(vec!["cluster"]));
        nodes.insert(
            "local_services/cluster",
            NodeKind::Settings(obj(vec![
                ("enabled", Ty::Bool),
                ("listen_address", nullable(Ty::Str)),
            ])),
        );
        // The NICs the same cmdlet searches for the address SPS is reached
        // at (`Get-NicRefForIp`): `interfaces` keyed by id with an `@order`,
        // each with `addresses` keyed by id (`"127.0.0.1/8"`) and an `@order`.
        nodes.insert("network", NodeKind::Branch(vec!["nics"]));
        nodes.insert(
            "network/nics",
            NodeKind::Branch(vec!["nic1", "nic2", "nic3"]),
        );
        for nic in [
            "network/nics/nic1",
            "network/nics/nic2",
            "network/nics/nic3",
        ] {
            nodes.insert(nic, NodeKind::Settings(obj(vec![("interfaces", Ty::Any)])));
        }
        nodes.insert("management", NodeKind::Branch(vec!["change_management"]));
        nodes.insert(
            "management/change_management",
            NodeKind::Settings(obj(vec![("require_commitlog", Ty::Bool)])),
        );
        nodes.insert(
            "passwords",
            NodeKind::List {
                schema: obj(vec![("plain", Ty::Str)]),
                write_only: true,
            },
        );
        nodes.insert(
            "policies",
            NodeKind::Branch(vec![
                "content_policies",
                "local_user_databases",
                "time_policies",
            ]),
        );
        nodes.insert(
            "policies/time_policies",
            NodeKind::List {
                schema: obj(vec![
                    ("name", Ty::Str),
                    (
                        "days",
                        list(obj(vec![
                            ("day", Ty::Str),
                            ("start", Ty::Str),
                            ("end", Ty::Str),
                        ])),
                    ),
                ]),
                write_only: false,
            },
        );
        nodes.insert(
            "policies/content_policies",
            NodeKind::List {
                schema: obj(vec![("name", Ty::Str), ("rules", list(Ty::Any))]),
                write_only: false,
            },
        );
        nodes.insert(
            "policies/local_user_databases",
            NodeKind::List {
                schema: obj(vec![
                    ("name", Ty::Str),
                    (
                        "users",
                        list(obj(vec![
                            ("certificates", list(Ty::Str)),
                            ("passwords", list(Ty::Ref("passwords"))),
                            ("public_keys", list(Ty::Str)),
                            ("username", Ty::Str),
                        ])),
                    ),
                ]),
                write_only: false,
            },
        );
        for proto in ["rdp", "ssh"] {
            nodes.insert(proto, NodeKind::Branch(vec!["channel_policies", "options"]));
        }
        nodes.insert(
            "rdp/channel_policies",
            NodeKind::List {
                schema: channel_policy(),
                write_only: false,
            },
        );
        nodes.insert(
            "ssh/channel_policies",
            NodeKind::List {
                schema: channel_policy(),
                write_only: false,
            },
        );
        nodes.insert("rdp/options", NodeKind::Settings(options()));
        nodes.insert("ssh/options", NodeKind::Settings(options()));
        Self { nodes }
    }

    pub(crate) fn node(&self, path: &str) -> Option<&NodeKind> {
        self.nodes.get(path)
    }

    /// Every list and the schema of its objects.
    fn lists(&self) -> impl Iterator<Item = (&'static str, &Ty)> {
        self.nodes.iter().filter_map(|(p, k)| match k {
            NodeKind::List { schema, .. } => Some((*p, schema)),
            _ => None,
        })
    }

    fn settings(&self) -> impl Iterator<Item = (&'static str, &Ty)> {
        self.nodes.iter().filter_map(|(p, k)| match k {
            NodeKind::Settings(t) => Some((*p, t)),
            _ => None,
        })
    }
}

/// The keys of built-in objects, which cannot be deleted.
pub(crate) fn is_builtin(key: &str) -> bool {
    key.starts_with('-')
}

/// The stored configuration (bare-key form, as written).
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    pub(crate) lists: BTreeMap<String, Vec<(String, Value)>>,
    pub(crate) settings: BTreeMap<String, Value>,
}

impl Config {
    /// The factory configuration: built-in time policy `-100`, default channel
    /// policies, protocol options, commit log not required.
    pub(crate) fn factory(schema: &Schema) -> Self {
        let mut c = Config::default();
        for (p, _) in schema.lists() {
            c.lists.insert(p.to_string(), Vec::new());
        }
        let all_days: Vec<Value> = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ]
        .iter()
        .map(|d| json!({"day": d, "start": "00:00", "end": "23:59"}))
        .collect();
        c.list_mut("policies/time_policies")
            .push(("-100".into(), json!({"name": "All time", "days": all_days})));
        let default_policy = |channel: &str| {
            json!({
                "name": "default",
                "rules": [{
                    "channel": channel,
                    "actions": {"audit": true, "content_policy": null, "four_eyes": false, "ids": false},
                    "allowed_for": {"clients": [], "gateway_groups": [], "remote_groups": [], "servers": [], "time_policy": "-100"}
                }]
            })
        };
        c.list_mut("rdp/channel_policies")
            .push(("-20100".into(), default_policy("#drawing")));
        c.list_mut("ssh/channel_policies")
            .push(("-10000".into(), default_policy("session-shell")));
        c.settings.insert(
            "local_services/cluster".into(),
            json!({"enabled": false, "listen_address": null}),
        );
        c.settings.insert(
            "network/nics/nic1".into(),
            json!({"interfaces": {
                "@order": ["8f1c0d2e"],
                "8f1c0d2e": {"name": "default", "vlantag": 0,
                             "addresses": {"@order": ["5a9e7b31"], "5a9e7b31": "127.0.0.1/8"}}
            }}),
        );
        for nic in ["network/nics/nic2", "network/nics/nic3"] {
            c.settings
                .insert(nic.into(), json!({"interfaces": {"@order": []}}));
        }
        c.settings.insert(
            "management/change_management".into(),
            json!({"require_commitlog": false}),
        );
        for p in ["rdp/options", "ssh/options"] {
            c.settings.insert(
                p.into(),
                json!({"service": {"enabled": true, "log_level": 4}}),
            );
        }
        c
    }

    pub(crate) fn list_mut(&mut self, path: &str) -> &mut Vec<(String, Value)> {
        self.lists.entry(path.to_string()).or_default()
    }

    pub(crate) fn list(&self, path: &str) -> &[(String, Value)] {
        self.lists.get(path).map(Vec::as_slice).unwrap_or(&[])
    }

    pub(crate) fn object(&self, list: &str, key: &str) -> Option<&Value> {
        self.list(list)
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub(crate) fn require_commitlog(&self) -> bool {
        self.settings
            .get("management/change_management")
            .and_then(|v| v.get("require_commitlog"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Every reference held anywhere: (path of the referring object, target
    /// list, target key).
    pub(crate) fn references(&self, schema: &Schema) -> Vec<(String, &'static str, String)> {
        let mut out = Vec::new();
        for (list, ty) in schema.lists() {
            for (key, value) in self.list(list) {
                let mut refs = Vec::new();
                collect_refs(ty, value, &mut refs);
                for (target, k) in refs {
                    out.push((format!("/api/configuration/{list}/{key}"), target, k));
                }
            }
        }
        for (path, ty) in schema.settings() {
            if let Some(value) = self.settings.get(path) {
                let mut refs = Vec::new();
                collect_refs(ty, value, &mut refs);
                for (target, k) in refs {
                    out.push((format!("/api/configuration/{path}"), target, k));
                }
            }
        }
        out
    }

    /// The semantic problems of the whole configuration: dangling references
    /// and duplicate names within a list.
    pub(crate) fn semantic_errors(&self, schema: &Schema) -> Vec<Value> {
        let mut errors = Vec::new();
        for (from, target, key) in self.references(schema) {
            if self.object(target, &key).is_none() {
                errors.push(json!({
                    "path": from,
                    "message": format!("Referenced object /api/configuration/{target}/{key} does not exist")
                }));
            }
        }
        for (list, _) in schema.lists() {
            let mut seen: HashMap<&str, &str> = HashMap::new();
            for (key, value) in self.list(list) {
                if let Some(name) = value.get("name").and_then(Value::as_str) {
                    if let Some(first) = seen.insert(name, key) {
                        errors.push(json!({
                            "path": format!("/api/configuration/{list}/{key}/name"),
                            "message": format!("Duplicate name '{name}': already used by /api/configuration/{list}/{first}")
                        }));
                    }
                }
            }
        }
        errors
    }
}

fn collect_refs(ty: &Ty, value: &Value, out: &mut Vec<(&'static str, String)>) {
    match (ty, value) {
        (Ty::Ref(target), Value::String(k)) => out.push((target, k.clone())),
        (Ty::Nullable(inner), v) if !v.is_null() => collect_refs(inner, v, out),
        (Ty::List(inner), Value::Array(items)) => {
            for item in items {
                collect_refs(inner, item, out);
            }
        }
        (Ty::Obj(fields), Value::Object(map)) => {
            for (name, fty) in fields {
                if let Some(v) = map.get(*name) {
                    collect_refs(fty, v, out);
                }
            }
        }
        _ => {}
    }
}

/// Why a written value was refused.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// Not accepted syntactically: (path, message).
    Syntactic(String, String),
    /// Dangling reference: (path, message).
    Semantic(String, String),
}

/// Checks a written value against the schema (exact fields, types, bare-key
/// references that exist in `config`).
pub(crate) fn validate(
    ty: &Ty,
    value: &Value,
    path: &str,
    config: &Config,
) -> Result<(), WriteError> {
    let syn = |msg: String| Err(WriteError::Syntactic(path.to_string(), msg));
    match ty {
        Ty::Any => Ok(()),
        Ty::Str => match value {
            Value::String(_) => Ok(()),
            other => syn(format!("Expected a string, got {}", kind_of(other))),
        },
        Ty::Bool => match value {
            Value::Bool(_) => Ok(()),
            other => syn(format!("Expected a boolean, got {}", kind_of(other))),
        },
        Ty::Int => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
            other => syn(format!("Expected an integer, got {}", kind_of(other))),
        },
        Ty::Nullable(inner) => {
            if value.is_null() {
                Ok(())
            } else {
                validate(inner, value, path, config)
            }
        }
        Ty::Ref(target) => match value {
            Value::String(k) => {
                if config.object(target, k).is_some() {
                    Ok(())
                } else {
                    Err(WriteError::Semantic(
                        path.to_string(),
                        format!("Referenced object /api/configuration/{target}/{k} does not exist"),
                    ))
                }
            }
            Value::Object(m) if m.contains_key("key") => syn(
                "A reference must be sent as the bare key of the referenced object, not as {key, meta}"
                    .into(),
            ),
            other => syn(format!(
                "Expected the key of a referenced object, got {}",
                kind_of(other)
            )),
        },
        Ty::List(inner) => match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    validate(inner, item, &format!("{path}/{i}"), config)?;
                }
                Ok(())
            }
            other => syn(format!("Expected a list, got {}", kind_of(other))),
        },
        Ty::Obj(fields) => match value {
            Value::Object(map) => {
                for (name, fty) in fields {
                    match map.get(*name) {
                        Some(v) => validate(fty, v, &format!("{path}/{name}"), config)?,
                        None => {
                            return Err(WriteError::Syntactic(
                                format!("{path}/{name}"),
                                "Missing required field (empty values must be sent too)".into(),
                            ))
                        }
                    }
                }
                for name in map.keys() {
                    if !fields.iter().any(|(f, _)| f == name) {
                        return Err(WriteError::Syntactic(
                            format!("{path}/{name}"),
                            "Unknown field".into(),
                        ));
                    }
                }
                Ok(())
            }
            other => syn(format!("Expected a JSON object, got {}", kind_of(other))),
        },
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Renders a stored value for a GET: bare-key references become `{key, meta}`.
pub(crate) fn render(ty: &Ty, value: &Value) -> Value {
    match (ty, value) {
        (Ty::Ref(target), Value::String(k)) => json!({
            "key": k,
            "meta": {"href": format!("/api/configuration/{target}/{k}")}
        }),
        (Ty::Nullable(inner), v) if !v.is_null() => render(inner, v),
        (Ty::List(inner), Value::Array(items)) => {
            Value::Array(items.iter().map(|i| render(inner, i)).collect())
        }
        (Ty::Obj(fields), Value::Object(map)) => {
            let mut out = Map::new();
            for (k, v) in map {
                match fields.iter().find(|(f, _)| f == k) {
                    Some((_, fty)) => out.insert(k.clone(), render(fty, v)),
                    None => out.insert(k.clone(), v.clone()),
                };
            }
            Value::Object(out)
        }
        _ => value.clone(),
    }
}

/// Whether a field path (segments below an object) exists in a value.
pub(crate) fn has_field(value: &Value, segments: &[&str]) -> bool {
    let mut cur = value;
    for s in segments {
        cur = match cur {
            Value::Object(m) => match m.get(*s) {
                Some(v) => v,
                None => return false,
            },
            Value::Array(a) => match s.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    true
}

/// One entry of a transaction's changelog, kept in the server's own terms.
#[derive(Clone, Debug)]
pub(crate) enum ChangeOp {
    Create {
        list: String,
        key: String,
        value: Value,
    },
    Replace {
        /// A list path with a key, or a settings path.
        list: Option<String>,
        path: String,
        key: Option<String>,
        old: Value,
        new: Value,
    },
    Delete {
        list: String,
        key: String,
        old: Value,
    },
    Reorder {
        list: String,
        old: Vec<String>,
        new: Vec<String>,
    },
}

impl ChangeOp {
    /// The changelog entry as `GET /api/transaction/changes` shows it.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            ChangeOp::Create { list, key, value } => json!({
                "type": "create",
                "path": format!("/api/configuration/{list}/{key}"),
                "new_value": value,
            }),
            ChangeOp::Replace { path, old, new, .. } => json!({
                "type": "replace",
                "path": format!("/api/configuration/{path}"),
                "old_value": old,
                "new_value": new,
            }),
            ChangeOp::Delete { list, key, old } => json!({
                "type": "delete",
                "path": format!("/api/configuration/{list}/{key}"),
                "old_value": old,
            }),
            ChangeOp::Reorder { list, old, new } => json!({
                "type": "reorder",
                "path": format!("/api/configuration/{list}"),
                "old_order": old,
                "new_order": new,
            }),
        }
    }

    /// The paths this change touches, for collision detection.
    pub(crate) fn touched(&self) -> Vec<String> {
        match self {
            ChangeOp::Create { list, key, .. } => vec![format!("{list}/{key}")],
            ChangeOp::Replace { path, .. } => vec![path.clone()],
            ChangeOp::Delete { list, key, .. } => vec![format!("{list}/{key}")],
            ChangeOp::Reorder { list, .. } => vec![list.clone()],
        }
    }

    /// The paths a committed change marks as modified (object and, for
    /// creation, deletion and reordering, the order of its list).
    pub(crate) fn marks(&self) -> Vec<String> {
        match self {
            ChangeOp::Create { list, key, .. } | ChangeOp::Delete { list, key, .. } => {
                vec![format!("{list}/{key}"), list.clone()]
            }
            other => other.touched(),
        }
    }

    /// Applies this change to `config`; `Err(path)` when it cannot apply
    /// cleanly (the object is gone or already exists).
    pub(crate) fn apply(&self, config: &mut Config) -> Result<(), String> {
        match self {
            ChangeOp::Create { list, key, value } => {
                let l = config.list_mut(list);
                if l.iter().any(|(k, _)| k == key) {
                    return Err(format!("/api/configuration/{list}/{key}"));
                }
                l.push((key.clone(), value.clone()));
                Ok(())
            }
            ChangeOp::Replace {
                list,
                path,
                key,
                new,
                ..
            } => match (list, key) {
                (Some(list), Some(key)) => {
                    let l = config.list_mut(list);
                    match l.iter_mut().find(|(k, _)| k == key) {
                        Some(slot) => {
                            slot.1 = new.clone();
                            Ok(())
                        }
                        None => Err(format!("/api/configuration/{path}")),
                    }
                }
                _ => {
                    config.settings.insert(path.clone(), new.clone());
                    Ok(())
                }
            },
            ChangeOp::Delete { list, key, .. } => {
                let l = config.list_mut(list);
                let before = l.len();
                l.retain(|(k, _)| k != key);
                if l.len() == before {
                    Err(format!("/api/configuration/{list}/{key}"))
                } else {
                    Ok(())
                }
            }
            ChangeOp::Reorder { list, new, .. } => {
                let l = config.list_mut(list);
                let mut current: Vec<&String> = l.iter().map(|(k, _)| k).collect();
                let mut wanted: Vec<&String> = new.iter().collect();
                current.sort();
                wanted.sort();
                if current != wanted {
                    return Err(format!("/api/configuration/{list}"));
                }
                let mut old = std::mem::take(l);
                for k in new {
                    if let Some(pos) = old.iter().position(|(ok, _)| ok == k) {
                        l.push(old.swap_remove(pos));
                    }
                }
                Ok(())
            }
        }
    }
}
