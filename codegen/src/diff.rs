//! What changed between two sets of appliance documents: the report a user
//! reads before regenerating against an upgraded appliance.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::Path;

use serde_json::Value;

use crate::normalize::{operation_name, operations};
use crate::{read_document, CodegenError, SERVICES};

/// Differences for one service's document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceDiff {
    /// The service.
    pub service: String,
    /// Operations only in the new document (`METHOD path (operationId)`).
    pub operations_added: Vec<String>,
    /// Operations only in the old document.
    pub operations_removed: Vec<String>,
    /// Operations in both whose parameters, body or responses changed.
    pub operations_changed: BTreeMap<String, Vec<String>>,
    /// Component schemas only in the new document.
    pub schemas_added: Vec<String>,
    /// Component schemas only in the old document.
    pub schemas_removed: Vec<String>,
    /// Schemas in both whose fields or enum values changed.
    pub schemas_changed: BTreeMap<String, Vec<String>>,
}

impl ServiceDiff {
    /// Whether the two documents are equivalent for the generated client.
    pub fn is_empty(&self) -> bool {
        self.operations_added.is_empty()
            && self.operations_removed.is_empty()
            && self.operations_changed.is_empty()
            && self.schemas_added.is_empty()
            && self.schemas_removed.is_empty()
            && self.schemas_changed.is_empty()
    }
}

/// Differences for every service found in either folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiffReport {
    /// One entry per service present in either folder.
    pub services: Vec<ServiceDiff>,
}

/// Compares `{service}.json` in `old_dir` and `new_dir` for every service.
/// A document missing on one side counts as empty there.
pub fn diff_dirs(old_dir: &Path, new_dir: &Path) -> Result<DiffReport, CodegenError> {
    let mut report = DiffReport::default();
    for service in SERVICES {
        let file = format!("{service}.json");
        let (old, new) = (old_dir.join(&file), new_dir.join(&file));
        if !old.is_file() && !new.is_file() {
            continue;
        }
        let load = |p: &Path| -> Result<Value, CodegenError> {
            if p.is_file() {
                read_document(p)
            } else {
                Ok(Value::Null)
            }
        };
        report
            .services
            .push(diff_documents(service, &load(&old)?, &load(&new)?));
    }
    Ok(report)
}

/// Compares two documents of one service.
pub fn diff_documents(service: &str, old: &Value, new: &Value) -> ServiceDiff {
    let mut d = ServiceDiff {
        service: service.to_owned(),
        ..Default::default()
    };
    let old_ops = operation_map(old);
    let new_ops = operation_map(new);
    for (key, (label, op)) in &new_ops {
        match old_ops.get(key) {
            None => d.operations_added.push(label.clone()),
            Some((_, old_op)) => {
                let changes = operation_changes(old_op, op);
                if !changes.is_empty() {
                    d.operations_changed.insert(label.clone(), changes);
                }
            }
        }
    }
    for (key, (label, _)) in &old_ops {
        if !new_ops.contains_key(key) {
            d.operations_removed.push(label.clone());
        }
    }

    let old_schemas = schema_map(old);
    let new_schemas = schema_map(new);
    for (name, schema) in &new_schemas {
        match old_schemas.get(name) {
            None => d.schemas_added.push(name.clone()),
            Some(old_schema) => {
                let changes = schema_changes(old_schema, schema);
                if !changes.is_empty() {
                    d.schemas_changed.insert(name.clone(), changes);
                }
            }
        }
    }
    for name in old_schemas.keys() {
        if !new_schemas.contains_key(name) {
            d.schemas_removed.push(name.clone());
        }
    }
    d
}

/// `METHOD path` → (label, operation).
fn operation_map(doc: &Value) -> BTreeMap<String, (String, &Value)> {
    operations(doc)
        .map(|(path, method, op)| {
            let key = format!("{} {}", method.to_uppercase(), path);
            let label = format!("{key} ({})", operation_name(path, method, op));
            (key, (label, op))
        })
        .collect()
}

fn schema_map(doc: &Value) -> BTreeMap<String, &Value> {
    doc.pointer("/components/schemas")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v)).collect())
        .unwrap_or_default()
}

/// A short description of a schema's type: `$ref` name, `array of X`, or `type/format`.
fn type_label(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_owned();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => format!(
            "array of {}",
            schema.get("items").map(type_label).unwrap_or_default()
        ),
        Some(t) => match schema.get("format").and_then(Value::as_str) {
            Some(f) => format!("{t}/{f}"),
            None => t.to_owned(),
        },
        None => "any".to_owned(),
    }
}

fn parameters(op: &Value) -> BTreeMap<String, (bool, String)> {
    op.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?;
            let place = p.get("in").and_then(Value::as_str).unwrap_or("?");
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            let ty = p.get("schema").map(type_label).unwrap_or_default();
            Some((format!("{place} {name}"), (required, ty)))
        })
        .collect()
}

fn body_label(op: &Value) -> Option<String> {
    let content = op.pointer("/requestBody/content")?.as_object()?;
    Some(
        content
            .iter()
            .map(|(mt, m)| {
                format!(
                    "{mt}: {}",
                    m.get("schema").map(type_label).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn response_labels(op: &Value) -> BTreeMap<String, String> {
    op.get("responses")
        .and_then(Value::as_object)
        .map(|rs| {
            rs.iter()
                .map(|(code, r)| {
                    let types = r
                        .get("content")
                        .and_then(Value::as_object)
                        .map(|c| {
                            c.get("application/json")
                                .or_else(|| c.values().next())
                                .and_then(|m| m.get("schema"))
                                .map(type_label)
                                .unwrap_or_default()
                        })
                        .unwrap_or_else(|| "empty".to_owned());
                    (code.clone(), types)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn operation_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (op, np) = (parameters(old), parameters(new));
    for (name, (req, ty)) in &np {
        match op.get(name) {
            None => out.push(format!(
                "parameter added: {name}: {ty}{}",
                if *req { " (required)" } else { "" }
            )),
            Some((oreq, oty)) if oreq != req || oty != ty => out.push(format!(
                "parameter changed: {name}: {oty}{} -> {ty}{}",
                if *oreq { " (required)" } else { "" },
                if *req { " (required)" } else { "" }
            )),
            _ => {}
        }
    }
    for name in op.keys() {
        if !np.contains_key(name) {
            out.push(format!("parameter removed: {name}"));
        }
    }
    let (ob, nb) = (body_label(old), body_label(new));
    if ob != nb {
        out.push(format!(
            "request body: {} -> {}",
            ob.as_deref().unwrap_or("none"),
            nb.as_deref().unwrap_or("none")
        ));
    }
    let (or, nr) = (response_labels(old), response_labels(new));
    for (code, ty) in &nr {
        match or.get(code) {
            None => out.push(format!("response added: {code} {ty}")),
            Some(oty) if oty != ty => out.push(format!("response changed: {code} {oty} -> {ty}")),
            _ => {}
        }
    }
    for code in or.keys() {
        if !nr.contains_key(code) {
            out.push(format!("response removed: {code}"));
        }
    }
    out
}

fn enum_values(schema: &Value) -> BTreeSet<String> {
    schema
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
        .collect()
}

fn schema_changes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let props = |s: &Value| -> BTreeMap<String, String> {
        s.get("properties")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), type_label(v))).collect())
            .unwrap_or_default()
    };
    let (op, np) = (props(old), props(new));
    for (name, ty) in &np {
        match op.get(name) {
            None => out.push(format!("field added: {name}: {ty}")),
            Some(oty) if oty != ty => out.push(format!("field changed: {name}: {oty} -> {ty}")),
            _ => {}
        }
    }
    for name in op.keys() {
        if !np.contains_key(name) {
            out.push(format!("field removed: {name}"));
        }
    }
    let (oe, ne) = (enum_values(old), enum_values(new));
    for v in ne.difference(&oe) {
        out.push(format!("enum value added: {v}"));
    }
    for v in oe.difference(&ne) {
        out.push(format!("enum value removed: {v}"));
    }
    if out.is_empty() && type_label(old) != type_label(new) {
        out.push(format!(
            "type changed: {} -> {}",
            type_label(old),
            type_label(new)
        ));
    }
    out
}

impl fmt::Display for DiffReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.services {
            writeln!(f, "## {}", s.service)?;
            if s.is_empty() {
                writeln!(f, "no changes")?;
                continue;
            }
            let mut section = |title: &str, items: &[String]| -> fmt::Result {
                if !items.is_empty() {
                    writeln!(f, "{title} ({}):", items.len())?;
                    for i in items {
                        writeln!(f, "  {i}")?;
                    }
                }
                Ok(())
            };
            section("operations added", &s.operations_added)?;
            section("operations removed", &s.operations_removed)?;
            let changed: Vec<String> = s
                .operations_changed
                .iter()
                .map(|(k, v)| nested(k, v))
                .collect();
            section("operations changed", &changed)?;
            section("schemas added", &s.schemas_added)?;
            section("schemas removed", &s.schemas_removed)?;
            let changed: Vec<String> = s
                .schemas_changed
                .iter()
                .map(|(k, v)| nested(k, v))
                .collect();
            section("schemas changed", &changed)?;
        }
        Ok(())
    }
}

fn nested(head: &str, items: &[String]) -> String {
    let mut s = head.to_owned();
    for i in items {
        let _ = write!(s, "\n    {i}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v1() -> Value {
        json!({
            "openapi": "3.0.1", "info": { "title": "core", "version": "v4" },
            "paths": {
                "/v4/Users": {
                    "get": { "operationId": "Users_GetUsersAsync",
                        "parameters": [ { "name": "filter", "in": "query", "schema": { "type": "string" } } ],
                        "responses": { "200": { "description": "ok", "content": { "application/json": {
                            "schema": { "type": "array", "items": { "$ref": "#/components/schemas/User" } } } } } } }
                },
                "/v4/Old": { "delete": { "operationId": "Old_Delete", "responses": { "204": { "description": "gone" } } } }
            },
            "components": { "schemas": {
                "User": { "type": "object", "properties": {
                    "Id": { "type": "integer", "format": "int32" },
                    "Fax": { "type": "string" } } },
                "Role": { "type": "string", "enum": ["Admin", "Auditor"] },
                "Gone": { "type": "object" }
            } }
        })
    }

    fn v2() -> Value {
        json!({
            "openapi": "3.0.1", "info": { "title": "core", "version": "v4" },
            "paths": {
                "/v4/Users": {
                    "get": { "operationId": "Users_GetUsersAsync",
                        "parameters": [
                            { "name": "filter", "in": "query", "schema": { "type": "string" } },
                            { "name": "q", "in": "query", "schema": { "type": "string" } } ],
                        "responses": { "200": { "description": "ok", "content": { "application/json": {
                            "schema": { "type": "array", "items": { "$ref": "#/components/schemas/User" } } } } } } },
                    "post": { "operationId": "Users_CreateUserAsync", "responses": { "201": { "description": "made" } } }
                }
            },
            "components": { "schemas": {
                "User": { "type": "object", "properties": {
                    "Id": { "type": "integer", "format": "int64" },
                    "Email": { "type": "string" } } },
                "Role": { "type": "string", "enum": ["Admin", "Auditor", "Operator"] },
                "New": { "type": "object" }
            } }
        })
    }

    #[test]
    fn reports_operations_and_schemas_added_removed_and_changed() {
        let d = diff_documents("core", &v1(), &v2());
        assert_eq!(
            d.operations_added,
            ["POST /v4/Users (Users_CreateUserAsync)"]
        );
        assert_eq!(d.operations_removed, ["DELETE /v4/Old (Old_Delete)"]);
        assert_eq!(
            d.operations_changed["GET /v4/Users (Users_GetUsersAsync)"],
            ["parameter added: query q: string"]
        );
        assert_eq!(d.schemas_added, ["New"]);
        assert_eq!(d.schemas_removed, ["Gone"]);
        assert_eq!(
            d.schemas_changed["User"],
            [
                "field added: Email: string",
                "field changed: Id: integer/int32 -> integer/int64",
                "field removed: Fax"
            ]
        );
        assert_eq!(d.schemas_changed["Role"], ["enum value added: Operator"]);
        let text = DiffReport { services: vec![d] }.to_string();
        assert!(text.contains("operations added (1):"), "{text}");
        assert!(text.contains("enum value added: Operator"), "{text}");
    }

    #[test]
    fn identical_documents_have_no_changes() {
        let d = diff_documents("core", &v1(), &v1());
        assert!(d.is_empty());
    }

    #[test]
    fn diff_dirs_reads_each_service_present() {
        let base = std::env::temp_dir().join(format!("sg-diff-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("core.json"), v1().to_string()).unwrap();
        std::fs::write(b.join("core.json"), v2().to_string()).unwrap();
        std::fs::write(b.join("notification.json"), v2().to_string()).unwrap();
        let report = diff_dirs(&a, &b).unwrap();
        assert_eq!(report.services.len(), 2);
        assert_eq!(report.services[1].service, "notification");
        assert_eq!(report.services[1].operations_added.len(), 2);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
