//! Generic rewrites of an appliance OpenAPI document, applied to the raw JSON
//! before progenitor sees it.
//!
//! Each rule is independent, documented on its function, and counted in the
//! returned [`NormalizeReport`]. The rules only ever make the client more
//! tolerant of what a server sends; none of them drops an operation.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// Where the lenient date-time type lives, as typify's `x-rust-type` wants it.
pub const DATE_TIME_RUST_TYPE: &str = "safeguard_api_types::Timestamp";

/// String formats typify maps to strictly parsed types, kept as strings.
const STRICT_FORMATS: [&str; 5] = ["uuid", "date", "ip", "ipv4", "ipv6"];

/// Title of the known-values half of a tolerant enum (rule 8); typify names
/// the variant after it.
const KNOWN_TITLE: &str = "Known";

/// Title of the catch-all half of a tolerant enum (rule 8).
const OTHER_TITLE: &str = "Other";

/// The HTTP methods an OpenAPI path item may hold operations under.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Validation keywords removed by [`strip_validation`].
const VALIDATION_KEYWORDS: [&str; 11] = [
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "uniqueItems",
    "multipleOf",
];

/// What [`normalize`] changed, rule by rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NormalizeReport {
    /// Operations in the document.
    pub operations: usize,
    /// Operation ids that lost their `Async` suffix (rule 1).
    pub renamed_operations: usize,
    /// Request bodies reduced to a single media type (rule 2).
    pub request_bodies_reduced: usize,
    /// Request bodies turned into raw `application/octet-stream` uploads (rule 2).
    pub uploads: usize,
    /// 2xx responses turned into streamed downloads (rule 3).
    pub downloads: usize,
    /// Non-2xx responses removed so that errors are decoded by the SDK (rule 4).
    pub error_responses_removed: usize,
    /// Operations whose 2xx responses disagree and now return raw bytes (rule 5).
    pub raw_operations: BTreeSet<String>,
    /// `additionalProperties: false` removed (rule 6).
    pub closed_objects_opened: usize,
    /// Validation keywords removed (rule 7).
    pub validations_removed: usize,
    /// String enums made tolerant of unknown values (rule 8).
    pub tolerant_enums: usize,
    /// `required` lists removed so partial (`fields=`) objects decode (rule 9).
    pub required_lists_removed: usize,
    /// Array properties those `required` lists named, as (schema's type
    /// name, JSON property name): they are still sent when empty (rule 9,
    /// see [`crate::required_arrays`]).
    pub required_arrays: BTreeSet<(String, String)>,
    /// `date-time` strings mapped to the lenient timestamp type, and other
    /// strictly parsed formats (uuid, date, ip) kept as strings (rule 10).
    pub date_times: usize,
    /// Component schemas that became tolerant enums (rule 8), by name.
    pub tolerant_enum_components: Vec<String>,
    /// Descriptions whose text Markdown would read as code, tidied (rule 12).
    pub descriptions_tidied: usize,
    /// Component schemas renamed to avoid a clash with a generated name (rule 11).
    pub renamed_schemas: BTreeMap<String, String>,
}

impl NormalizeReport {
    /// One line per rule with its count, for the build log and the CLI.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "rule 1 operationId without Async: {}",
                self.renamed_operations
            ),
            format!(
                "rule 2 request bodies reduced: {}",
                self.request_bodies_reduced
            ),
            format!("rule 2 raw uploads: {}", self.uploads),
            format!("rule 3 streamed downloads: {}", self.downloads),
            format!(
                "rule 4 error responses removed: {}",
                self.error_responses_removed
            ),
            format!("rule 5 raw-bytes operations: {}", self.raw_operations.len()),
            format!(
                "rule 6 closed objects opened: {}",
                self.closed_objects_opened
            ),
            format!(
                "rule 7 validation keywords removed: {}",
                self.validations_removed
            ),
            format!("rule 8 tolerant enums: {}", self.tolerant_enums),
            format!(
                "rule 9 required lists removed: {}",
                self.required_lists_removed
            ),
            format!(
                "rule 9 required arrays sent even when empty: {}",
                self.required_arrays.len()
            ),
            format!("rule 10 lenient formats: {}", self.date_times),
            format!("rule 11 schemas renamed: {}", self.renamed_schemas.len()),
            format!("rule 12 descriptions tidied: {}", self.descriptions_tidied),
        ]
    }
}

/// Applies every rule to `doc` in place.
pub fn normalize(doc: &mut Value) -> NormalizeReport {
    let mut report = NormalizeReport {
        operations: operations(doc).count(),
        ..NormalizeReport::default()
    };
    rename_colliding_schemas(doc, &mut report);
    tidy_descriptions(doc, &mut report);
    strip_async_suffix(doc, &mut report);
    for_each_operation_mut(doc, |id, op| {
        reduce_request_body(op, &mut report);
        reduce_responses(id, op, &mut report);
    });
    let mut enum_names = BTreeSet::new();
    for_each_schema_mut(doc, &mut |ctx, schema| {
        rewrite_schema(ctx, schema, &mut enum_names, &mut report)
    });
    report.tolerant_enum_components = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .map(|schemas| {
            schemas
                .iter()
                .filter(|(_, s)| is_tolerant_enum(s))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    report
}

/// Whether `schema` is the `oneOf [Known, Other]` shape rule 8 makes.
pub fn is_tolerant_enum(schema: &Value) -> bool {
    schema
        .get("oneOf")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.len() == 2
                && list[0]
                    .get("title")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with(KNOWN_TITLE))
                && list[1]
                    .get("title")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with(OTHER_TITLE))
        })
}

/// Iterates `(path, method, operation)` over a document.
pub fn operations(doc: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    doc.get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|paths| paths.iter())
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |m| {
                item.get(*m)
                    .filter(|op| op.is_object())
                    .map(|op| (path.as_str(), *m, op))
            })
        })
}

/// The operation id, or `method path` when the document gives none.
pub fn operation_name(path: &str, method: &str, op: &Value) -> String {
    op.get("operationId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} {}", method.to_uppercase(), path))
}

fn for_each_operation_mut(doc: &mut Value, mut f: impl FnMut(String, &mut Map<String, Value>)) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                let name = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{} {}", method.to_uppercase(), path));
                f(name, op);
            }
        }
    }
}

/// Rule 12: descriptions become doc comments on the generated code, where
/// Markdown reads indented lines as code blocks and rustdoc compiles those
/// (and fenced blocks) as doctests. Leading whitespace is trimmed from every
/// line and every opening fence is marked `text`.
fn tidy_descriptions(doc: &mut Value, report: &mut NormalizeReport) {
    match doc {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(text) if key == "description" || key == "summary" => {
                        let tidy = tidy_text(text);
                        if tidy != *text {
                            *text = tidy;
                            report.descriptions_tidied += 1;
                        }
                    }
                    other => tidy_descriptions(other, report),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| tidy_descriptions(v, report)),
        _ => {}
    }
}

fn tidy_text(text: &str) -> String {
    let mut in_fence = false;
    text.lines()
        .map(|line| {
            let line = line.trim_start();
            if line.starts_with("```") {
                let opening = !in_fence;
                in_fence = !in_fence;
                if opening {
                    return "```text".to_owned();
                }
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rule 1: `Users_GetUsersAsync` becomes `Users_GetUsers`, unless another
/// operation already has (or would get) that id. Cosmetic: method names read
/// `users_get_users()`.
fn strip_async_suffix(doc: &mut Value, report: &mut NormalizeReport) {
    let ids: Vec<String> = operations(doc)
        .filter_map(|(_, _, op)| op.get("operationId")?.as_str().map(str::to_owned))
        .collect();
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        *taken.entry(id.clone()).or_default() += 1;
        if let Some(stem) = id.strip_suffix("Async") {
            *taken.entry(stem.to_owned()).or_default() += 1;
        }
    }
    for_each_operation_mut(doc, |_, op| {
        let Some(id) = op.get("operationId").and_then(Value::as_str) else {
            return;
        };
        if let Some(stem) = id.strip_suffix("Async") {
            if !stem.is_empty() && taken.get(stem) == Some(&1) {
                op.insert("operationId".into(), Value::String(stem.to_owned()));
                report.renamed_operations += 1;
            }
        }
    });
}

fn binary_media() -> Value {
    json!({ "schema": { "type": "string", "format": "binary" } })
}

fn is_json_media(name: &str) -> bool {
    name == "application/json" || name.starts_with("application/json;")
}

/// Rule 2: progenitor accepts one media type per request body. Keep
/// `application/json` when offered; otherwise the body is an upload
/// (`application/octet-stream`, a binary string, sent as a stream).
fn reduce_request_body(op: &mut Map<String, Value>, report: &mut NormalizeReport) {
    let Some(content) = op
        .get_mut("requestBody")
        .and_then(|b| b.get_mut("content"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some((name, media)) = content
        .iter()
        .find(|(name, _)| is_json_media(name))
        .map(|(n, m)| (n.clone(), m.clone()))
    {
        if content.len() > 1 {
            report.request_bodies_reduced += 1;
        }
        content.clear();
        content.insert(name, media);
    } else if !content.is_empty() {
        if content.len() > 1 {
            report.request_bodies_reduced += 1;
        }
        content.clear();
        content.insert("application/octet-stream".into(), binary_media());
        report.uploads += 1;
    }
}

fn status_is_success(code: &str) -> bool {
    code.starts_with('2')
}

/// Rules 3, 4 and 5 on the responses of one operation.
///
/// Rule 3: a 2xx response offering `application/octet-stream` is a download
/// and keeps only that type (streamed, never buffered); otherwise only
/// `application/json` is kept (`text/csv` and friends would be a second type).
///
/// Rule 4: non-2xx responses are removed. Errors then reach the SDK as
/// undocumented responses whose status, headers and body it decodes itself,
/// so a bodiless 404 still surfaces with its status.
///
/// Rule 5: when the remaining 2xx responses disagree (typed vs empty, or two
/// different schemas), every 2xx becomes raw bytes.
fn reduce_responses(id: String, op: &mut Map<String, Value>, report: &mut NormalizeReport) {
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    let before = responses.len();
    responses.retain(|code, _| status_is_success(code));
    report.error_responses_removed += before - responses.len();

    for response in responses.values_mut() {
        let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
            continue;
        };
        if content.contains_key("application/octet-stream") {
            content.clear();
            content.insert("application/octet-stream".into(), binary_media());
            report.downloads += 1;
        } else if let Some((name, media)) = content
            .iter()
            .find(|(name, _)| is_json_media(name))
            .map(|(n, m)| (n.clone(), m.clone()))
        {
            content.clear();
            content.insert(name, media);
        } else if !content.is_empty() {
            // text/plain, text/csv only: treat as raw bytes.
            content.clear();
            content.insert("application/octet-stream".into(), binary_media());
        }
    }

    let kinds: BTreeSet<String> = responses
        .values()
        .map(|r| match r.get("content").and_then(Value::as_object) {
            Some(c) if !c.is_empty() => serde_json::to_string(c).unwrap_or_default(),
            _ => "none".to_owned(),
        })
        .collect();
    if kinds.len() > 1 {
        for response in responses.values_mut() {
            if let Some(r) = response.as_object_mut() {
                r.insert(
                    "content".into(),
                    json!({ "application/octet-stream": binary_media() }),
                );
            }
        }
        report.raw_operations.insert(id);
    }
}

/// Rule 11: typify names inline schemas after their context (an operation's
/// response becomes `<OperationId>Response`, a property `<Parent><Property>`).
/// A component schema already holding such a name collides with it and the
/// generated module does not compile; rename the component (and every
/// reference to it) by appending `Schema`.
fn rename_colliding_schemas(doc: &mut Value, report: &mut NormalizeReport) {
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    else {
        return;
    };
    let names: BTreeSet<String> = schemas.keys().map(|k| pascal(k)).collect();
    let mut generated: BTreeSet<String> = BTreeSet::new();
    for (_, _, op) in operations(doc) {
        if let Some(id) = op.get("operationId").and_then(Value::as_str) {
            let id = id.strip_suffix("Async").unwrap_or(id);
            for suffix in ["Response", "Body"] {
                generated.insert(pascal(&format!("{id}-{suffix}")));
                generated.insert(pascal(&format!("{id}Async-{suffix}")));
            }
        }
    }
    for (name, schema) in schemas {
        for enum_name in inline_property_types(name, schema) {
            generated.insert(enum_name);
        }
    }
    let colliding: Vec<String> = schemas
        .keys()
        .filter(|k| generated.contains(&pascal(k)))
        .cloned()
        .collect();
    for old in colliding {
        let mut new = format!("{old}Schema");
        while names.contains(&pascal(&new)) {
            new.push('_');
        }
        rename_schema(doc, &old, &new);
        report.renamed_schemas.insert(old, new);
    }
}

/// Names typify gives to inline (non-`$ref`) object or enum properties of a
/// component schema.
fn inline_property_types(parent: &str, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (prop, s) in props {
            if s.get("$ref").is_none()
                && (s.get("enum").is_some()
                    || s.get("properties").is_some()
                    || s.get("allOf").is_some()
                    || s.get("oneOf").is_some())
            {
                out.push(pascal(&format!("{parent}-{prop}")));
            }
        }
    }
    out
}

fn rename_schema(doc: &mut Value, old: &str, new: &str) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        // Keep the map's order: rebuild it with the new key in place.
        let entries: Vec<(String, Value)> = std::mem::take(schemas).into_iter().collect();
        for (k, v) in entries {
            schemas.insert(if k == old { new.to_owned() } else { k }, v);
        }
    }
    let old_ref = format!("#/components/schemas/{old}");
    let new_ref = format!("#/components/schemas/{new}");
    replace_refs(doc, &old_ref, &new_ref);
}

fn replace_refs(v: &mut Value, old: &str, new: &str) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if k == "$ref" && child.as_str() == Some(old) {
                    *child = Value::String(new.to_owned());
                } else {
                    replace_refs(child, old, new);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| replace_refs(c, old, new)),
        _ => {}
    }
}

/// A name in the PascalCase typify gives types (a close approximation of
/// `heck`'s upper camel case: words split on non-alphanumerics and case).
pub fn pascal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper_next = true;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if upper_next {
                out.extend(c.to_uppercase());
                upper_next = false;
            } else {
                out.push(c);
            }
        } else {
            upper_next = true;
        }
    }
    out
}

/// Calls `f` on every schema object of the document: component schemas,
/// parameter and media-type schemas, and (recursively) their properties,
/// items, compositions and additional properties. Property *names* are never
/// mistaken for keywords.
///
/// `f` also gets a PascalCase name for where the schema stands (the
/// component, `<Component><Property>`, `<OperationId><Parameter>`, ...),
/// used to give types made by the rules unique names.
pub fn for_each_schema_mut(doc: &mut Value, f: &mut impl FnMut(&str, &mut Map<String, Value>)) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            walk_schema(&pascal(name), schema, f);
        }
    }
    for key in ["parameters", "requestBodies", "responses"] {
        if let Some(map) = doc
            .pointer_mut(&format!("/components/{key}"))
            .and_then(Value::as_object_mut)
        {
            for (name, item) in map.iter_mut() {
                walk_holder(&pascal(name), item, f);
            }
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (key, op) in item.iter_mut() {
            if key == "parameters" {
                walk_holder_list(&pascal(path), op, f);
                continue;
            }
            if !METHODS.contains(&key.as_str()) {
                continue;
            }
            let ctx = pascal(
                op.get("operationId")
                    .and_then(Value::as_str)
                    .unwrap_or(&format!("{key}{path}")),
            );
            if let Some(params) = op.get_mut("parameters") {
                walk_holder_list(&ctx, params, f);
            }
            if let Some(body) = op.get_mut("requestBody") {
                walk_holder(&format!("{ctx}Body"), body, f);
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for (code, r) in responses.iter_mut() {
                    walk_holder(&format!("{ctx}Response{code}"), r, f);
                }
            }
        }
    }
}

fn walk_holder_list(
    ctx: &str,
    list: &mut Value,
    f: &mut impl FnMut(&str, &mut Map<String, Value>),
) {
    if let Some(items) = list.as_array_mut() {
        for p in items {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .map(pascal)
                .unwrap_or_default();
            walk_holder(&format!("{ctx}{name}"), p, f);
        }
    }
}

/// A parameter, request body or response: a `schema`, or `content` of media types.
fn walk_holder(ctx: &str, holder: &mut Value, f: &mut impl FnMut(&str, &mut Map<String, Value>)) {
    if let Some(schema) = holder.get_mut("schema") {
        walk_schema(ctx, schema, f);
    }
    if let Some(content) = holder.get_mut("content").and_then(Value::as_object_mut) {
        for media in content.values_mut() {
            if let Some(schema) = media.get_mut("schema") {
                walk_schema(ctx, schema, f);
            }
        }
    }
}

fn walk_schema(ctx: &str, schema: &mut Value, f: &mut impl FnMut(&str, &mut Map<String, Value>)) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    f(ctx, map);
    if let Some(props) = map.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, p) in props.iter_mut() {
            walk_schema(&format!("{ctx}{}", pascal(name)), p, f);
        }
    }
    for (key, suffix) in [
        ("items", "Item"),
        ("additionalProperties", "Value"),
        ("not", "Not"),
    ] {
        if let Some(child) = map.get_mut(key) {
            walk_schema(&format!("{ctx}{suffix}"), child, f);
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        if let Some(list) = map.get_mut(key).and_then(Value::as_array_mut) {
            for (i, child) in list.iter_mut().enumerate() {
                walk_schema(&format!("{ctx}{i}"), child, f);
            }
        }
    }
}

/// Rules 6 to 10 on one schema object standing at `ctx`.
fn rewrite_schema(
    ctx: &str,
    schema: &mut Map<String, Value>,
    enum_names: &mut BTreeSet<String>,
    report: &mut NormalizeReport,
) {
    // Rule 6: `additionalProperties: false` makes typify emit
    // `deny_unknown_fields`; a newer appliance's extra field would then break
    // every call that returns the type.
    if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
        schema.remove("additionalProperties");
        report.closed_objects_opened += 1;
    }

    // Rule 7: server data must never be rejected by the client, and the
    // documents' validations (a `maximum` on strings, patterns typify would
    // compile into newtypes) do not hold for what the appliance really sends.
    for key in VALIDATION_KEYWORDS {
        if schema.remove(key).is_some() {
            report.validations_removed += 1;
        }
    }

    // Rule 9: `fields=` answers carry only the requested members; every
    // member must be optional to decode them. The required arrays are
    // recorded first: optional arrays are left out when empty, these must
    // not be.
    if let Some(required) = schema.remove("required") {
        record_required_arrays(ctx, schema, &required, report);
        report.required_lists_removed += 1;
    }

    // Rule 10: date-times without an offset (`2024-01-01T00:00:00`) exist;
    // map them to a type that accepts any string and parses leniently.
    if schema.get("type").and_then(Value::as_str) == Some("string")
        && schema.get("format").and_then(Value::as_str) == Some("date-time")
    {
        schema.remove("format");
        schema.insert(
            "x-rust-type".into(),
            json!({ "crate": "safeguard-api-types", "version": "*", "path": DATE_TIME_RUST_TYPE }),
        );
        report.date_times += 1;
    }

    // Rule 10 too: other formats typify would parse strictly (uuid, date,
    // ip) stay plain strings, so a value the appliance formats its own way
    // still decodes.
    if schema.get("type").and_then(Value::as_str) == Some("string")
        && schema
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|f| STRICT_FORMATS.contains(&f))
    {
        schema.remove("format");
        report.date_times += 1;
    }

    // Rule 8: a string enum becomes "one of the known values, or any other
    // string", so a value added by a newer appliance decodes as `Other`.
    let is_string_enum = schema
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|values| !values.is_empty() && values.iter().all(Value::is_string));
    // The inner "Known" schema this rule creates is itself a string enum.
    let already_tolerant = schema
        .get("title")
        .and_then(Value::as_str)
        .is_some_and(|t| t.ends_with(KNOWN_TITLE));
    if is_string_enum && !already_tolerant {
        // typify names the known-values enum after its title and each
        // variant after its subschema's title less the common prefix: titles
        // `<ctx>Known` / `<ctx>Other` give `<ctx>Known` and variants
        // `Known(..)` / `Other(String)`. Each title must be unique.
        let mut prefix = ctx.to_owned();
        while !enum_names.insert(prefix.clone()) {
            prefix.push('_');
        }
        let mut known = Map::new();
        for key in ["type", "format", "enum"] {
            if let Some(v) = schema.remove(key) {
                known.insert(key.to_owned(), v);
            }
        }
        known.insert(
            "title".into(),
            Value::String(format!("{prefix}{KNOWN_TITLE}")),
        );
        known.insert("type".into(), Value::String("string".into()));
        // An enum's default is one of its values; keep it on the outer schema.
        schema.insert(
            "oneOf".into(),
            json!([Value::Object(known), { "title": format!("{prefix}{OTHER_TITLE}"), "type": "string" }]),
        );
        report.tolerant_enums += 1;
    }
}

/// Rule 9's record: the properties of `schema` (standing at `ctx`) named in
/// its `required` list that are non-nullable arrays, the ones typify makes a
/// plain `Vec` skipped when empty. (A nullable array, or a `$ref` to an
/// array schema, becomes an `Option`, sent whenever it is `Some`.)
fn record_required_arrays(
    ctx: &str,
    schema: &Map<String, Value>,
    required: &Value,
    report: &mut NormalizeReport,
) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for name in required
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let is_array = props.get(name).is_some_and(|p| {
            p.get("type").and_then(Value::as_str) == Some("array")
                && p.get("nullable") != Some(&Value::Bool(true))
        });
        if is_array {
            report
                .required_arrays
                .insert((ctx.to_owned(), name.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_with(paths: Value, schemas: Value) -> Value {
        json!({
            "openapi": "3.0.1",
            "info": { "title": "t", "version": "v4" },
            "paths": paths,
            "components": { "schemas": schemas }
        })
    }

    #[test]
    fn async_suffix_is_dropped_unless_it_collides() {
        let mut doc = doc_with(
            json!({
                "/a": { "get": { "operationId": "A_GetAsync", "responses": {} } },
                "/b": { "get": { "operationId": "B_GetAsync", "responses": {} },
                        "post": { "operationId": "B_Get", "responses": {} } }
            }),
            json!({}),
        );
        let report = normalize(&mut doc);
        assert_eq!(doc["paths"]["/a"]["get"]["operationId"], "A_Get");
        assert_eq!(doc["paths"]["/b"]["get"]["operationId"], "B_GetAsync");
        assert_eq!(doc["paths"]["/b"]["post"]["operationId"], "B_Get");
        assert_eq!(report.renamed_operations, 1);
    }

    #[test]
    fn request_body_keeps_json_or_becomes_an_upload() {
        let mut doc = doc_with(
            json!({
                "/j": { "post": { "operationId": "J", "responses": {},
                    "requestBody": { "content": {
                        "application/*+json": { "schema": { "type": "string" } },
                        "application/json": { "schema": { "type": "integer" } },
                        "text/json": { "schema": { "type": "string" } } } } } },
                "/u": { "post": { "operationId": "U", "responses": {},
                    "requestBody": { "content": {
                        "application/octet-stream": { "schema": { "type": "string" } },
                        "multipart/form-data": { "schema": { "type": "object" } } } } } }
            }),
            json!({}),
        );
        let report = normalize(&mut doc);
        let j = doc["paths"]["/j"]["post"]["requestBody"]["content"]
            .as_object()
            .unwrap();
        assert_eq!(j.keys().collect::<Vec<_>>(), ["application/json"]);
        assert_eq!(j["application/json"]["schema"]["type"], "integer");
        let u = &doc["paths"]["/u"]["post"]["requestBody"]["content"];
        assert_eq!(
            u,
            &json!({ "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } })
        );
        assert_eq!(report.request_bodies_reduced, 2);
        assert_eq!(report.uploads, 1);
    }

    #[test]
    fn downloads_errors_and_mixed_success_responses() {
        let api_error = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/ApiError" } } });
        let mut doc = doc_with(
            json!({
                "/d": { "get": { "operationId": "D", "responses": {
                    "200": { "description": "ok", "content": {
                        "application/json": { "schema": { "type": "string" } },
                        "application/octet-stream": { "schema": { "type": "string" } } } },
                    "404": { "description": "gone" } } } },
                "/t": { "get": { "operationId": "T", "responses": {
                    "200": { "description": "ok", "content": {
                        "application/json": { "schema": { "type": "integer" } },
                        "text/csv": { "schema": { "type": "integer" } } } },
                    "400": { "description": "bad", "content": api_error.clone() },
                    "403": { "description": "no" } } } },
                "/m": { "post": { "operationId": "M", "responses": {
                    "200": { "description": "ok", "content": {
                        "application/json": { "schema": { "type": "integer" } } } },
                    "204": { "description": "none" } } } }
            }),
            json!({ "ApiError": { "type": "object" } }),
        );
        let report = normalize(&mut doc);
        let binary = json!({ "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } });
        assert_eq!(
            doc["paths"]["/d"]["get"]["responses"]["200"]["content"],
            binary
        );
        assert!(doc["paths"]["/d"]["get"]["responses"].get("404").is_none());
        let t = &doc["paths"]["/t"]["get"]["responses"];
        assert_eq!(t.as_object().unwrap().len(), 1);
        assert_eq!(
            t["200"]["content"],
            json!({ "application/json": { "schema": { "type": "integer" } } })
        );
        let m = &doc["paths"]["/m"]["post"]["responses"];
        assert_eq!(m["200"]["content"], binary);
        assert_eq!(m["204"]["content"], binary);
        assert_eq!(report.error_responses_removed, 3);
        assert_eq!(report.downloads, 1);
        assert_eq!(
            report.raw_operations.iter().collect::<Vec<_>>(),
            [&"M".to_owned()]
        );
    }

    #[test]
    fn schemas_are_opened_unvalidated_optional_and_lenient() {
        let mut doc = doc_with(
            json!({}),
            json!({
                "User": {
                    "type": "object",
                    "required": ["Name"],
                    "additionalProperties": false,
                    "properties": {
                        "Name": { "type": "string", "maxLength": 255, "minLength": 1, "maximum": 255, "pattern": "^[a-z]+$" },
                        "pattern": { "type": "string" },
                        "Created": { "type": "string", "format": "date-time" },
                        "Guid": { "type": "string", "format": "uuid" },
                        "Tags": { "type": "array", "items": { "type": "string" }, "uniqueItems": true, "maxItems": 3 }
                    }
                }
            }),
        );
        let report = normalize(&mut doc);
        let user = &doc["components"]["schemas"]["User"];
        assert!(user.get("required").is_none());
        assert!(user.get("additionalProperties").is_none());
        assert_eq!(user["properties"]["Name"], json!({ "type": "string" }));
        // A property *named* like a keyword survives.
        assert_eq!(user["properties"]["pattern"], json!({ "type": "string" }));
        assert_eq!(
            user["properties"]["Created"]["x-rust-type"]["path"],
            DATE_TIME_RUST_TYPE
        );
        assert!(user["properties"]["Created"].get("format").is_none());
        assert_eq!(
            user["properties"]["Tags"],
            json!({ "type": "array", "items": { "type": "string" } })
        );
        assert_eq!(report.validations_removed, 6);
        assert_eq!(report.required_lists_removed, 1);
        assert_eq!(report.closed_objects_opened, 1);
        assert_eq!(user["properties"]["Guid"], json!({ "type": "string" }));
        assert_eq!(report.date_times, 2);
    }

    #[test]
    fn required_non_nullable_arrays_are_recorded() {
        let mut doc = doc_with(
            json!({ "/g": { "post": { "operationId": "G", "responses": {},
                "requestBody": { "content": { "application/json": { "schema": {
                    "type": "object", "required": ["Ids"],
                    "properties": { "Ids": { "type": "array", "items": { "type": "integer" } } } } } } } } } }),
            json!({
                "Group": {
                    "type": "object",
                    "required": ["Children", "Name", "Notes", "Absent"],
                    "properties": {
                        "Children": { "type": "array", "items": { "$ref": "#/components/schemas/Group" } },
                        "Tags": { "type": "array", "items": { "type": "string" } },
                        "Notes": { "type": "array", "items": { "type": "string" }, "nullable": true },
                        "Name": { "type": "string" }
                    }
                }
            }),
        );
        let report = normalize(&mut doc);
        let found: Vec<(&str, &str)> = report
            .required_arrays
            .iter()
            .map(|(t, p)| (t.as_str(), p.as_str()))
            .collect();
        assert_eq!(found, [("GBody", "Ids"), ("Group", "Children")]);
        assert_eq!(report.required_lists_removed, 2);
        assert!(report
            .lines()
            .contains(&"rule 9 required arrays sent even when empty: 2".to_owned()));
    }

    #[test]
    fn string_enums_become_known_or_other() {
        let mut doc = doc_with(
            json!({}),
            json!({
                "Role": { "enum": ["Requester", "Approver"], "type": "string", "format": "string", "description": "d" },
                "Level": { "enum": [1, 2], "type": "integer" }
            }),
        );
        let report = normalize(&mut doc);
        let role = &doc["components"]["schemas"]["Role"];
        assert_eq!(role["description"], "d");
        assert_eq!(role["oneOf"][0]["title"], "RoleKnown");
        assert_eq!(role["oneOf"][0]["enum"], json!(["Requester", "Approver"]));
        assert_eq!(
            role["oneOf"][1],
            json!({ "title": "RoleOther", "type": "string" })
        );
        assert!(role.get("enum").is_none());
        // Non-string enums are left alone.
        assert_eq!(doc["components"]["schemas"]["Level"]["enum"], json!([1, 2]));
        assert_eq!(report.tolerant_enums, 1);
        assert_eq!(report.tolerant_enum_components, ["Role"]);
        assert!(is_tolerant_enum(role));
    }

    #[test]
    fn component_named_like_a_generated_type_is_renamed_everywhere() {
        let mut doc = doc_with(
            json!({
                "/x": { "get": { "operationId": "Things_GetAsync", "responses": {
                    "200": { "description": "ok", "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/ThingsGetResponse" } } } } } } }
            }),
            json!({ "ThingsGetResponse": { "type": "object" } }),
        );
        let report = normalize(&mut doc);
        assert!(doc["components"]["schemas"]
            .get("ThingsGetResponseSchema")
            .is_some());
        assert!(doc["components"]["schemas"]
            .get("ThingsGetResponse")
            .is_none());
        assert_eq!(
            doc["paths"]["/x"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                ["$ref"],
            "#/components/schemas/ThingsGetResponseSchema"
        );
        assert_eq!(report.renamed_schemas.len(), 1);
    }

    #[test]
    fn descriptions_never_read_as_code() {
        let mut doc = doc_with(
            json!({ "/k": { "get": { "operationId": "K", "summary": "Gets keys",
                "parameters": [ { "name": "keyFormat", "in": "query", "schema": { "type": "string" },
                    "description": "The format:\n\n            - OpenSsh - legacy PEM\n            - Putty" } ],
                "responses": {} } } }),
            json!({ "P": { "type": "object", "properties": {
                "description": { "type": "string", "description": "```\nlet x = 1;\n```\nand\n```rust\nok\n```" } } } }),
        );
        let report = normalize(&mut doc);
        assert_eq!(
            doc["paths"]["/k"]["get"]["parameters"][0]["description"],
            "The format:\n\n- OpenSsh - legacy PEM\n- Putty"
        );
        let prop = &doc["components"]["schemas"]["P"]["properties"]["description"];
        // A property *named* description keeps its schema.
        assert_eq!(prop["type"], "string");
        assert_eq!(
            prop["description"],
            "```text\nlet x = 1;\n```\nand\n```text\nok\n```"
        );
        assert_eq!(report.descriptions_tidied, 2);
    }

    #[test]
    fn pascal_matches_typify_style() {
        assert_eq!(pascal("Users_GetUsers-response"), "UsersGetUsersResponse");
        assert_eq!(pascal("asset-account"), "AssetAccount");
    }
}
