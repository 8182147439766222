//! The shapes of SPS answers and their parsers.
//!
//! Every parser takes the raw body and never panics: an unexpected shape is
//! an [`Error::Decode`](crate::Error::Decode), unknown members are ignored,
//! missing optional members are `None`.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error;
use crate::{Error, Result};

/// The `meta` object of an answer: links and transaction information.
///
/// On an object, `first`/`last`/`next`/`previous` point to its siblings; on a
/// list, to pages of the list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// This node.
    pub href: Option<String>,
    /// The parent node.
    pub parent: Option<String>,
    /// The transaction endpoint.
    pub transaction: Option<String>,
    /// The first page or sibling.
    pub first: Option<String>,
    /// The last page or sibling.
    pub last: Option<String>,
    /// The next page or sibling.
    pub next: Option<String>,
    /// The previous page or sibling.
    pub previous: Option<String>,
    /// Seconds left before the open transaction times out.
    pub remaining_seconds: Option<u64>,
    /// Page size of a list.
    pub limit: Option<u64>,
    /// Offset of this page.
    pub offset: Option<u64>,
    /// Number of items of the whole list.
    pub match_count: Option<u64>,
    /// The changelog endpoint (transaction status).
    pub changes: Option<String>,
    /// Every other member.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An answer `{key, body, meta}` with the body typed.
#[derive(Clone, Debug, PartialEq)]
pub struct SpsResponse<T> {
    /// The key of the node (object id, `transaction`, ...), when given.
    pub key: Option<String>,
    /// The body; JSON `null` when the answer had none.
    pub body: T,
    /// The links and transaction information.
    pub meta: Meta,
}

/// One item of a list: `{key, meta: {href}}` for nodes, with `body` when
/// fields were asked for, or a flat object (search results, events).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListItem {
    /// The item's key.
    pub key: Option<String>,
    /// The item's body, when the list includes it.
    pub body: Option<Value>,
    /// The item's links.
    pub meta: Option<Meta>,
    /// Every other member (the whole item for flat lists).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ListItem {
    /// `meta.href` of the item.
    pub fn href(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.href.as_deref())
    }
}

/// One page of a list: `{items, meta}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpsPage {
    /// The items of this page.
    pub items: Vec<ListItem>,
    /// Paging links (`next` is `None` on the last page).
    pub meta: Meta,
}

fn decode_err(status: Option<StatusCode>, e: impl std::fmt::Display) -> Error {
    error::decode(status, e)
}

fn parse_value(body: &[u8]) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| decode_err(None, e))
}

fn meta_of(v: &Value) -> Result<Meta> {
    match v.get("meta") {
        None | Some(Value::Null) => Ok(Meta::default()),
        Some(m) => Meta::deserialize(m).map_err(|e| decode_err(None, format!("meta: {e}"))),
    }
}

/// Parses `{key, body, meta}`; `body` decodes into `T` (`null` when absent).
pub fn parse_response<T: DeserializeOwned>(body: &[u8]) -> Result<SpsResponse<T>> {
    let v = parse_value(body)?;
    if !(v.is_object() || v.is_null()) {
        return Err(decode_err(None, "expected a JSON object"));
    }
    let key = match v.get("key") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let inner = v.get("body").cloned().unwrap_or(Value::Null);
    let body = T::deserialize(inner).map_err(|e| decode_err(None, format!("body: {e}")))?;
    Ok(SpsResponse {
        key,
        body,
        meta: meta_of(&v)?,
    })
}

/// Parses a list page `{items, meta}`.
pub fn parse_page(body: &[u8]) -> Result<SpsPage> {
    let v = parse_value(body)?;
    let items = match v.get("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|i| match i {
                Value::Object(_) => ListItem::deserialize(i).unwrap_or_else(|_| ListItem {
                    extra: i.as_object().cloned().unwrap_or_default(),
                    ..ListItem::default()
                }),
                Value::String(s) => ListItem {
                    key: Some(s.clone()),
                    ..ListItem::default()
                },
                other => {
                    let mut extra = Map::new();
                    extra.insert("value".into(), other.clone());
                    ListItem {
                        extra,
                        ..ListItem::default()
                    }
                }
            })
            .collect(),
        Some(_) => return Err(decode_err(None, "items: expected a list")),
    };
    Ok(SpsPage {
        items,
        meta: meta_of(&v)?,
    })
}

/// Whether a transaction is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionState {
    /// A transaction of this session is open.
    Open,
    /// No transaction is open.
    Closed,
    /// A state this SDK does not know.
    Other(String),
}

/// Whether a commit needs a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitMessagePolicy {
    /// A commit without a message fails with `CommitMessageMissing`.
    Required,
    /// A message is optional.
    Optional,
    /// A value this SDK does not know.
    Other(String),
}

/// `GET /api/transaction`, from either shape: the current
/// `{"body": {"status", "commit_message"}, "meta": {"remaining_seconds"}}` or
/// the older `{"transaction": {"status"}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct TransactionStatus {
    /// Open or closed.
    pub state: TransactionState,
    /// Whether a commit needs a message; `None` on firmware that does not say.
    pub commit_message: Option<CommitMessagePolicy>,
    /// Seconds before the open transaction times out.
    pub remaining_seconds: Option<u64>,
    /// The answer's `meta`.
    pub meta: Meta,
}

impl TransactionStatus {
    /// A transaction is open.
    pub fn is_open(&self) -> bool {
        self.state == TransactionState::Open
    }

    /// A commit needs a message.
    pub fn commit_message_required(&self) -> bool {
        self.commit_message == Some(CommitMessagePolicy::Required)
    }
}

/// Parses a transaction status in either shape.
pub fn parse_transaction_status(body: &[u8]) -> Result<TransactionStatus> {
    let v = parse_value(body)?;
    let node = match (v.get("body"), v.get("transaction")) {
        (Some(b @ Value::Object(_)), _) => b,
        (_, Some(t @ Value::Object(_))) => t,
        _ => {
            return Err(decode_err(
                None,
                "no transaction status (body.status or transaction.status)",
            ))
        }
    };
    let state = match node.get("status").and_then(Value::as_str) {
        Some("open") => TransactionState::Open,
        Some("closed") => TransactionState::Closed,
        Some(other) => TransactionState::Other(other.to_string()),
        None => return Err(decode_err(None, "the transaction status has no status")),
    };
    let commit_message = node
        .get("commit_message")
        .and_then(Value::as_str)
        .map(|s| match s {
            "required" => CommitMessagePolicy::Required,
            "optional" => CommitMessagePolicy::Optional,
            other => CommitMessagePolicy::Other(other.to_string()),
        });
    let meta = meta_of(&v)?;
    Ok(TransactionStatus {
        state,
        commit_message,
        remaining_seconds: meta.remaining_seconds,
        meta,
    })
}

/// What a changelog entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// An object was created.
    Create,
    /// An object was deleted.
    Delete,
    /// An object or settings node was replaced.
    Replace,
    /// A list was reordered.
    Reorder,
    /// A kind this SDK does not know.
    Other(String),
}

/// One entry of `GET /api/transaction/changes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The changed node (`/api/configuration/...`).
    pub path: String,
    /// The value before (replace, delete).
    pub old_value: Option<Value>,
    /// The value after (create, replace).
    pub new_value: Option<Value>,
    /// The list's keys before (reorder).
    pub old_order: Option<Value>,
    /// The list's keys after (reorder).
    pub new_order: Option<Value>,
}

impl Change {
    /// `new_order` as keys, when it is a list of strings.
    pub fn new_order_keys(&self) -> Option<Vec<String>> {
        order_keys(self.new_order.as_ref())
    }

    /// `old_order` as keys, when it is a list of strings.
    pub fn old_order_keys(&self) -> Option<Vec<String>> {
        order_keys(self.old_order.as_ref())
    }
}

fn order_keys(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array()?
        .iter()
        .map(|k| k.as_str().map(str::to_string))
        .collect()
}

/// Parses a changelog `{"changes": [..], "meta"}`.
pub fn parse_changes(body: &[u8]) -> Result<Vec<Change>> {
    let v = parse_value(body)?;
    let list = match v.get("changes") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(decode_err(None, "changes: expected a list")),
    };
    list.iter()
        .map(|c| {
            let obj = c
                .as_object()
                .ok_or_else(|| decode_err(None, "a change is not an object"))?;
            let kind = match obj.get("type").and_then(Value::as_str) {
                Some("create") => ChangeKind::Create,
                Some("delete") => ChangeKind::Delete,
                Some("replace") => ChangeKind::Replace,
                Some("reorder") => ChangeKind::Reorder,
                Some(other) => ChangeKind::Other(other.to_string()),
                None => return Err(decode_err(None, "a change has no type")),
            };
            let path = obj
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let field = |n: &str| obj.get(n).filter(|v| !v.is_null()).cloned();
            Ok(Change {
                kind,
                path,
                old_value: field("old_value"),
                new_value: field("new_value"),
                old_order: field("old_order"),
                new_order: field("new_order"),
            })
        })
        .collect()
}

/// A sign-in method of `GET /api/authentication/login_methods`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoginMethod {
    /// The name to pass as `login_method`.
    pub key: String,
    /// The human name, when given.
    pub name: Option<String>,
    /// The kind (`password`, `certificate`, ...), when given.
    pub kind: Option<String>,
    /// The whole item.
    pub raw: Value,
}

/// Parses the login methods (a list page, or a bare list of names or objects).
pub fn parse_login_methods(body: &[u8]) -> Result<Vec<LoginMethod>> {
    let v = parse_value(body)?;
    let items: Vec<Value> = match &v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => match o.get("items").or_else(|| o.get("body")) {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        },
        _ => return Err(decode_err(None, "expected a list of login methods")),
    };
    Ok(items
        .into_iter()
        .filter_map(|i| match &i {
            Value::String(s) => Some(LoginMethod {
                key: s.clone(),
                name: None,
                kind: None,
                raw: i.clone(),
            }),
            Value::Object(o) => {
                let body = o.get("body").and_then(Value::as_object);
                let get = |n: &str| {
                    body.and_then(|b| b.get(n))
                        .or_else(|| o.get(n))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                let key = o
                    .get("key")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| get("name"))?;
                Some(LoginMethod {
                    key,
                    name: get("name"),
                    kind: get("type"),
                    raw: i.clone(),
                })
            }
            _ => None,
        })
        .collect())
}

/// Turns a fetched object into what a write must send: drops a `{key, body,
/// meta}` envelope (keeping `body`), and replaces every embedded reference
/// `{"key": .., "meta": {"href": ..}}` by its bare key. Empty lists and
/// `null`s are kept as they are.
pub fn flatten_references(value: Value) -> Value {
    let value = match value {
        Value::Object(mut o) if o.contains_key("body") && o.contains_key("meta") => {
            o.remove("body").unwrap_or(Value::Null)
        }
        other => other,
    };
    flatten(value, 0)
}

const MAX_DEPTH: usize = 256;

fn flatten(value: Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return value;
    }
    match value {
        Value::Object(o) => {
            if is_reference(&o) {
                return o.get("key").cloned().unwrap_or(Value::Null);
            }
            Value::Object(
                o.into_iter()
                    .map(|(k, v)| (k, flatten(v, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|v| flatten(v, depth + 1)).collect()),
        other => other,
    }
}

fn is_reference(o: &Map<String, Value>) -> bool {
    o.len() == 2
        && matches!(o.get("key"), Some(Value::String(_)))
        && o.get("meta")
            .and_then(Value::as_object)
            .is_some_and(|m| m.get("href").is_some_and(Value::is_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_shapes() {
        let s = parse_transaction_status(
            br#"{"key":"transaction","body":{"status":"open","commit_message":"required"},"meta":{"remaining_seconds":12}}"#,
        )
        .expect("new");
        assert!(s.is_open() && s.commit_message_required());
        assert_eq!(s.remaining_seconds, Some(12));
        let s = parse_transaction_status(br#"{"transaction":{"status":"closed"},"meta":{}}"#)
            .expect("old");
        assert!(!s.is_open());
        assert_eq!(s.commit_message, None);
        assert!(parse_transaction_status(b"[]").is_err());
    }

    #[test]
    fn flattening() {
        let v = json!({"key": "k", "body": {"name": "x", "tp": {"key": "-100", "meta": {"href": "/a"}}, "l": []}, "meta": {"href": "/b"}});
        assert_eq!(
            flatten_references(v),
            json!({"name": "x", "tp": "-100", "l": []})
        );
    }
}
