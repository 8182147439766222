//! Reads the four OpenAPI documents of the appliance (as they are, not
//! normalized: the table describes the wire) and writes `operations.rs` into
//! `OUT_DIR`: a static table of every operation, from which `src/generated.rs`
//! builds the clap command tree at run time. The documents are found as
//! `safeguard_codegen::locate_documents` says (`$SAFEGUARD_OPENAPI_DIR`,
//! `openapi/`, `../shared/openapi/`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use heck::ToKebabCase;
use serde_json::Value;

/// Flags every generated command may carry besides its parameters; a body
/// member whose flag would be one of these gets no flag of its own.
const RESERVED: &[&str] = &[
    "body",
    "out",
    "in",
    "file",
    "all",
    "output",
    "profile",
    "host",
    "ca",
    "insecure",
    "help",
    "raw",
    "page-size",
];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn main() {
    if let Err(message) = run() {
        eprintln!("\n{message}\n");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let sources = safeguard_codegen::build_script::build_documents(
        &safeguard_codegen::SERVICES,
        std::path::Path::new(".."),
    )?;
    let mut code = String::from("&[\n");
    let mut total = 0usize;
    for source in &sources {
        let doc = safeguard_codegen::read_document(&source.path).map_err(|e| e.to_string())?;
        total += emit_service(&source.service, &doc, &mut code)?;
    }
    code.push_str("]\n");
    std::fs::write(out.join("operations.rs"), code).map_err(|e| e.to_string())?;
    std::fs::write(out.join("operation_count.txt"), total.to_string())
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Appends one `Operation` literal per operation of `doc`; returns how many.
fn emit_service(service: &str, doc: &Value, code: &mut String) -> Result<usize, String> {
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{service}: the document has no paths"))?;
    // First pass: names, so that collisions are settled in document order.
    let mut ops = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let tag = op
                .get("tags")
                .and_then(|t| t.get(0))
                .and_then(Value::as_str)
                .unwrap_or("other");
            let group = tag.to_kebab_case();
            let name = command_name(tag, method, path, op);
            ops.push((path.as_str(), method, op, group, name));
        }
    }
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut count = 0;
    for (path, method, op, group, name) in ops {
        // Two operations of a group with one name: the later ones (in
        // document order) take the method, then a number.
        let mut unique = name.clone();
        let key = |n: &str| (group.clone(), n.to_owned());
        if seen.contains_key(&key(&unique)) {
            unique = format!("{name}-{method}");
            let mut i = 2;
            while seen.contains_key(&key(&unique)) {
                unique = format!("{name}-{i}");
                i += 1;
            }
        }
        seen.insert(key(&unique), 1);
        emit_operation(service, doc, path, method, op, &group, &unique, code)?;
        count += 1;
    }
    Ok(count)
}

/// `Users_GetUsersAsync` under tag `Users` -> `get-users`; without an
/// operationId, the method and the path.
fn command_name(tag: &str, method: &str, path: &str, op: &Value) -> String {
    match op.get("operationId").and_then(Value::as_str) {
        Some(id) => {
            let id = id
                .strip_prefix(&format!("{tag}_"))
                .or_else(|| id.split_once('_').map(|(_, rest)| rest))
                .unwrap_or(id);
            let id = id.strip_suffix("Async").unwrap_or(id);
            id.to_kebab_case()
        }
        None => format!("{method}-{}", path.trim_start_matches("/v4/")).to_kebab_case(),
    }
}

/// Follows a local `$ref` (`#/components/schemas/X`), once or more.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..8 {
        let Some(r) = schema.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let mut target = doc;
        for part in r.trim_start_matches("#/").split('/') {
            target = match target.get(part) {
                Some(t) => t,
                None => return schema,
            };
        }
        schema = target;
    }
    // `allOf: [{$ref}]` wrappers around enums.
    if let Some([only]) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return resolve(doc, only);
    }
    schema
}

/// `Kind::...` of a scalar schema, or `None` for objects and arrays.
fn scalar_kind(schema: &Value) -> Option<&'static str> {
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => Some("Kind::String"),
        Some("integer") => Some("Kind::Integer"),
        Some("number") => Some("Kind::Number"),
        Some("boolean") => Some("Kind::Boolean"),
        None if schema.get("enum").is_some() => Some("Kind::String"),
        _ => None,
    }
}

fn enum_values(schema: &Value) -> String {
    let values: Vec<String> = schema
        .get("enum")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| match v {
                    Value::String(s) => format!("{s:?}"),
                    other => format!("{:?}", other.to_string()),
                })
                .collect()
        })
        .unwrap_or_default();
    format!("&[{}]", values.join(", "))
}

fn text(v: Option<&Value>) -> String {
    format!("{:?}", v.and_then(Value::as_str).unwrap_or("").trim())
}

#[allow(clippy::too_many_arguments)]
fn emit_operation(
    service: &str,
    doc: &Value,
    path: &str,
    method: &str,
    op: &Value,
    group: &str,
    name: &str,
    code: &mut String,
) -> Result<(), String> {
    let relative = path
        .strip_prefix("/v4/")
        .unwrap_or(path.trim_start_matches('/'));
    let mut flags: BTreeSet<String> = RESERVED.iter().map(|s| (*s).to_owned()).collect();
    let mut params = String::new();
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let p = resolve(doc, p);
        let Some(pname) = p.get("name").and_then(Value::as_str) else {
            continue;
        };
        let location = match p.get("in").and_then(Value::as_str) {
            Some("path") => "Location::Path",
            Some("query") => "Location::Query",
            Some("header") => "Location::Header",
            _ => continue,
        };
        let raw_schema = p.get("schema").unwrap_or(&Value::Null);
        let schema = resolve(doc, raw_schema);
        let (array, item) = if schema.get("type").and_then(Value::as_str) == Some("array") {
            (
                true,
                resolve(doc, schema.get("items").unwrap_or(&Value::Null)),
            )
        } else {
            (false, schema)
        };
        let kind = scalar_kind(item).unwrap_or("Kind::String");
        let mut flag = pname.to_kebab_case();
        if !flags.insert(flag.clone()) {
            flag = format!(
                "{flag}-{}",
                location.trim_start_matches("Location::").to_lowercase()
            );
            flags.insert(flag.clone());
        }
        let required = p.get("required").and_then(Value::as_bool).unwrap_or(false)
            || location == "Location::Path";
        let _ = writeln!(
            params,
            "        Param {{ name: {pname:?}, flag: {flag:?}, location: {location}, required: {required}, kind: {kind}, array: {array}, format: {:?}, values: {}, help: {} }},",
            item.get("format").and_then(Value::as_str).unwrap_or(""),
            enum_values(item),
            text(p.get("description")),
        );
    }
    let body = emit_body(doc, op, &mut flags);
    let binary = op
        .get("responses")
        .and_then(Value::as_object)
        .map(|r| {
            r.iter().any(|(status, answer)| {
                status.starts_with('2')
                    && answer
                        .get("content")
                        .and_then(Value::as_object)
                        .is_some_and(|c| c.contains_key("application/octet-stream"))
            })
        })
        .unwrap_or(false);
    let _ = writeln!(
        code,
        "Operation {{ service: {service:?}, group: {group:?}, name: {name:?}, id: {:?}, method: {:?}, path: {relative:?}, summary: {}, description: {}, params: &[\n{params}    ], body: {body}, binary_response: {binary} }},",
        op.get("operationId").and_then(Value::as_str).unwrap_or(""),
        method.to_uppercase(),
        text(op.get("summary")),
        text(op.get("description")),
    );
    Ok(())
}

/// `None`, or `Some(Body { ... })` with the flags of the body's scalar,
/// writable members when it is a JSON object.
fn emit_body(doc: &Value, op: &Value, flags: &mut BTreeSet<String>) -> String {
    let Some(request) = op.get("requestBody") else {
        return "None".into();
    };
    let request = resolve(doc, request);
    let Some(content) = request.get("content").and_then(Value::as_object) else {
        return "None".into();
    };
    let required = request
        .get("required")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let description = text(request.get("description"));
    // Raw bytes first (a backup upload offers both octet-stream and
    // multipart: the raw stream is the simpler wire), then JSON, then
    // multipart.
    if content.contains_key("application/octet-stream") {
        return format!("Some(Body {{ content_type: \"application/octet-stream\", kind: BodyKind::Raw, required: {required}, help: {description}, members: &[] }})");
    }
    let json = [
        "application/json",
        "text/json",
        "application/*+json",
        "application/json-patch+json",
    ]
    .into_iter()
    .find(|c| content.contains_key(*c));
    if let Some(ct) = json {
        let schema = resolve(doc, content[ct].get("schema").unwrap_or(&Value::Null));
        let kind = if scalar_kind(schema) == Some("Kind::String") {
            "BodyKind::JsonString"
        } else {
            "BodyKind::Json"
        };
        let mut members = String::new();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (mname, mschema) in props {
                let m = resolve(doc, mschema);
                if m.get("readOnly").and_then(Value::as_bool) == Some(true)
                    || mschema.get("readOnly").and_then(Value::as_bool) == Some(true)
                {
                    continue;
                }
                let Some(kind) = scalar_kind(m) else { continue };
                // A secret never goes on the command line (it would show in
                // the process list and the shell's history): such members
                // come only from --body.
                let lower = mname.to_ascii_lowercase();
                if [
                    "password",
                    "passphrase",
                    "privatekey",
                    "secret",
                    "apikey",
                    "token",
                ]
                .iter()
                .any(|s| lower.contains(s))
                {
                    continue;
                }
                let flag = mname.to_kebab_case();
                if !flags.insert(flag.clone()) {
                    continue;
                }
                let _ = write!(
                    members,
                    "Member {{ name: {mname:?}, flag: {flag:?}, kind: {kind}, values: {}, help: {} }}, ",
                    enum_values(m),
                    text(m.get("description").or(mschema.get("description"))),
                );
            }
        }
        // The content type sent: plain JSON whichever JSON flavour the
        // document lists first (the appliance reads them alike).
        return format!("Some(Body {{ content_type: \"application/json\", kind: {kind}, required: {required}, help: {description}, members: &[{members}] }})");
    }
    if let Some(multipart) = content.get("multipart/form-data") {
        let schema = resolve(doc, multipart.get("schema").unwrap_or(&Value::Null));
        let field = schema
            .get("properties")
            .and_then(Value::as_object)
            .and_then(|p| p.keys().next().cloned())
            .unwrap_or_else(|| "file".into());
        return format!("Some(Body {{ content_type: \"multipart/form-data\", kind: BodyKind::Multipart({field:?}), required: {required}, help: {description}, members: &[] }})");
    }
    let ct = content.keys().next().cloned().unwrap_or_default();
    format!("Some(Body {{ content_type: {ct:?}, kind: BodyKind::Raw, required: {required}, help: {description}, members: &[] }})")
}
