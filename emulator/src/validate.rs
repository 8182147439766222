//! Strict request validation against the appliance's own OpenAPI 3.0
//! documents (as served), before a request reaches a handler.
//!
//! [`validate`] checks one request against one operation: the path and query
//! parameters (presence, types, formats, enums), the body's media type, and a
//! JSON body against its schema (required members, types, enums, formats,
//! maps, `allOf`/`oneOf`/`anyOf`, `$ref`). A refusal is an [`Invalid`]: 415
//! for a media type the operation does not accept, otherwise 400 with the
//! appliance's `ModelState` body naming every offending member.
//!
//! The rules mirror how the appliance binds a request (ASP.NET with
//! Newtonsoft.Json), which makes the check strict but never stricter than the
//! appliance:
//!
//! * Newtonsoft.Json converts between JSON token kinds where it can
//!   (`JsonReader.ReadAsInt32`, `ReadAsBoolean`, `ReadAsDouble`, `ReadAsString`
//!   in JamesNK/Newtonsoft.Json): an integer member takes `5`, `5.0` and `"5"`;
//!   a boolean takes `true`, `"True"` and a number; a plain string member takes
//!   numbers and booleans; an empty string is null for numbers, booleans and
//!   dates. Members are matched case-insensitively and unknown members are
//!   ignored (`additionalProperties: false` in the documents is not enforced
//!   by the serializer).
//! * Enums (Newtonsoft's `StringEnumConverter`, ASP.NET's enum binding)
//!   take names case-insensitively, comma-separated flag combinations, and
//!   integer values.
//! * `readOnly` members are never required and never checked.
//! * `null` counts as absent, so a required member that is `null` is missing.
//! * Query parameter names match case-insensitively; unknown ones are ignored;
//!   a scalar takes the first of repeated values; an empty value is absent.
//! * Not checked: `minLength`/`maxLength`/`minimum`/`maximum` (the documents
//!   carry them, sometimes oddly, such as `maximum: 255` on strings, and
//!   whether the appliance's binder enforces them is not documented), header
//!   and cookie parameters.
//!
//! Documents and bodies are untrusted input: `$ref` chains, `allOf` nesting
//! and `oneOf`/`anyOf` alternatives that do not consume the body are cut off
//! after a fixed number of steps, and every request has a work budget, so no
//! document makes the check loop or recurse without bound. Nothing is cloned
//! from the document; schemas are reached by reference (`$ref` by JSON
//! pointer).

// The router calls `validate` once the lead wires it in; until then only the
// tests do.

use serde_json::{json, Map, Value};

/// What the validator sees of one request.
pub(crate) struct RequestView<'a> {
    /// Path parameters by the template's names, percent-decoded.
    pub path_params: &'a [(&'a str, &'a str)],
    /// Query parameters as received (names match case-insensitively, like ASP.NET Core).
    pub query: &'a [(String, String)],
    /// The Content-Type header, if any.
    pub content_type: Option<&'a str>,
    /// The body bytes (empty when none; empty too for a body that is not
    /// JSON, which is checked for its media type only).
    pub body: &'a [u8],
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Invalid {
    /// 415: the body's media type is not one the operation accepts (its
    /// `type/subtype`, lower-case; empty when the request named none).
    MediaType(String),
    /// 400: ModelState entries (member path, message), in a stable order.
    Model(Vec<(String, String)>),
}

impl Invalid {
    /// The HTTP status of the refusal: 415 or 400.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Invalid::MediaType(_) => 415,
            Invalid::Model(_) => 400,
        }
    }

    /// The appliance's error body: `{Code, Message, InnerError}` (70002) for
    /// 415, plus `ModelState` (70000) for 400, its messages grouped by member
    /// in the order they were found.
    pub(crate) fn body(&self) -> Value {
        match self {
            // The same body as `api::unsupported_media_type`.
            Invalid::MediaType(ct) => json!({
                "Code": 70002,
                "Message": format!(
                    "The request entity's media type '{}' is not supported for this resource.",
                    if ct.is_empty() { "text/plain" } else { ct }
                ),
                "InnerError": Value::Null,
            }),
            Invalid::Model(entries) => {
                let mut order: Vec<(&str, Vec<Value>)> = Vec::new();
                for (member, message) in entries {
                    match order.iter_mut().find(|(m, _)| *m == member.as_str()) {
                        Some((_, list)) => list.push(Value::String(message.clone())),
                        None => order.push((member, vec![Value::String(message.clone())])),
                    }
                }
                let mut state = Map::new();
                for (member, list) in order {
                    state.insert(member.to_owned(), Value::Array(list));
                }
                json!({
                    "Code": 70000,
                    "Message": "The request is invalid.",
                    "InnerError": Value::Null,
                    "ModelState": state,
                })
            }
        }
    }
}

/// The `ModelState` key for the body as a whole (what the handlers use too).
const BODY: &str = "body";
/// The message for a missing body (the handlers' wording).
const BODY_REQUIRED: &str = "The request body is required.";
/// Most `$ref` hops followed from one schema before giving up on it.
const MAX_REF_HOPS: usize = 32;
/// Deepest `allOf` nesting merged.
const MAX_ALL_OF_DEPTH: usize = 16;
/// Most nested `oneOf`/`anyOf` alternatives tried without consuming the body.
const MAX_ALTERNATIVE_DEPTH: u32 = 16;
/// Schema checks allowed per request (bounds `oneOf`/`anyOf` fan-out).
const BUDGET: usize = 200_000;
/// Most ModelState entries reported.
const MAX_ERRORS: usize = 100;

/// Validates against `operation` (an OpenAPI 3.0 operation object) of `document` (the whole document, for `$ref` resolution under #/components/...), with `path_item`'s path-level parameters. Returns the parsed JSON body when there is one.
pub(crate) fn validate(
    document: &Value,
    path_item: &Value,
    operation: &Value,
    req: &RequestView,
) -> Result<Option<Value>, Invalid> {
    let request_body = operation
        .get("requestBody")
        .and_then(|rb| resolve(document, rb));
    let content = request_body.and_then(|rb| rb.get("content")?.as_object());
    let body_required = request_body
        .and_then(|rb| rb.get("required")?.as_bool())
        .unwrap_or(false);

    // The media type first: ASP.NET answers 415 before it reports any
    // ModelState error. An empty request without a Content-Type has no body
    // to type.
    let declared_ct = req.content_type.map(str::trim).filter(|ct| !ct.is_empty());
    let mut media: Option<(&str, &Value)> = None;
    if let Some(content) = content {
        if declared_ct.is_some() || !req.body.is_empty() {
            let mt = essence(declared_ct.unwrap_or(""));
            media = content
                .iter()
                .find(|(key, _)| media_matches(key, &mt))
                .map(|(k, v)| (k.as_str(), v));
            if media.is_none() {
                // The message names the media type without its parameters.
                return Err(Invalid::MediaType(mt));
            }
        }
    }

    let mut errors = Vec::new();
    check_parameters(document, path_item, operation, req, &mut errors);

    let mut parsed = None;
    if content.is_some() {
        let text = strip_bom(req.body);
        let blank = text.iter().all(u8::is_ascii_whitespace);
        match media {
            Some((key, media_object)) if is_json_media(key) && !blank => {
                match serde_json::from_slice::<Value>(text) {
                    Err(e) => errors.push((
                        BODY.to_owned(),
                        format!("The request body is not valid JSON: {e}"),
                    )),
                    Ok(Value::Null) => {
                        if body_required {
                            errors.push((BODY.to_owned(), BODY_REQUIRED.to_owned()));
                        }
                        parsed = Some(Value::Null);
                    }
                    Ok(value) => {
                        if let Some(schema) = media_object.get("schema") {
                            let mut checker = Checker::new(document);
                            checker.check(schema, &value, 0);
                            errors.extend(checker.errors);
                        }
                        parsed = Some(value);
                    }
                }
            }
            // A body of another media type (an upload) is not read for
            // validation: the caller hands it over empty.
            Some((key, _)) if !is_json_media(key) => {}
            _ => {
                if blank && body_required {
                    errors.push((BODY.to_owned(), BODY_REQUIRED.to_owned()));
                }
            }
        }
    }

    if errors.is_empty() {
        Ok(parsed)
    } else {
        errors.truncate(MAX_ERRORS);
        Err(Invalid::Model(errors))
    }
}

// ---------------------------------------------------------------------------
// Media types

/// `type/subtype` of a media type, lower-case, without parameters.
fn essence(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether the request's media type `mt` (an [`essence`]) is accepted by the
/// content key `key`: equal, or a wildcard (`*/*`, `type/*`,
/// `application/*+json`).
fn media_matches(key: &str, mt: &str) -> bool {
    let key = essence(key);
    if key == mt || key == "*/*" {
        return true;
    }
    let (Some((kt, ks)), Some((mt_t, mt_s))) = (key.split_once('/'), mt.split_once('/')) else {
        return false;
    };
    if kt != mt_t {
        return false;
    }
    if ks == "*" {
        return true;
    }
    // `application/*+json`: any subtype with that suffix.
    match ks.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('+') => {
            mt_s.ends_with(suffix) && mt_s.len() > suffix.len()
        }
        _ => false,
    }
}

/// Whether a content key's body is JSON (ASP.NET's JSON input formatter reads
/// `application/json`, `text/json` and `application/*+json`, which includes
/// `application/json-patch+json`).
fn is_json_media(key: &str) -> bool {
    let key = essence(key);
    key == "application/json" || key == "text/json" || key.ends_with("+json")
}

/// The body without a UTF-8 byte order mark (ASP.NET's reader skips it).
fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(body)
}

// ---------------------------------------------------------------------------
// Schema references

/// Follows `$ref` from `node` (a schema, parameter or request body) to the
/// object it names. `None` when a reference does not resolve, leaves the
/// document, or the chain is longer than [`MAX_REF_HOPS`] (a cycle): the
/// caller then has nothing to check against.
fn resolve<'d>(document: &'d Value, mut node: &'d Value) -> Option<&'d Value> {
    for _ in 0..MAX_REF_HOPS {
        match node.get("$ref") {
            None => return Some(node),
            Some(r) => node = lookup(document, r.as_str()?)?,
        }
    }
    None
}

/// The node a local reference (`#/components/schemas/User`, a JSON pointer
/// after `#`) names. Without `~` escapes (every reference the vendor's
/// documents hold) it walks the document without allocating.
fn lookup<'d>(document: &'d Value, reference: &str) -> Option<&'d Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.contains('~') {
        return document.pointer(pointer);
    }
    if pointer.is_empty() {
        return Some(document);
    }
    let mut node = document;
    for token in pointer.strip_prefix('/')?.split('/') {
        node = match node {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The component name a `$ref` names (`#/components/schemas/User` → `User`),
/// for messages.
fn ref_name(node: &Value) -> Option<&str> {
    node.get("$ref")?.as_str()?.rsplit('/').next()
}

/// Whether a schema (or what its `$ref` or `allOf` names) is `readOnly`.
fn is_read_only(document: &Value, schema: &Value) -> bool {
    let flag = |s: &Value| s.get("readOnly").and_then(Value::as_bool) == Some(true);
    if flag(schema) {
        return true;
    }
    let Some(target) = resolve(document, schema) else {
        return false;
    };
    flag(target)
        || target
            .get("allOf")
            .and_then(Value::as_array)
            .is_some_and(|parts| parts.iter().any(flag))
}

/// Where [`parts_of`] keeps the parts of one schema: one slot for the common
/// schema without `allOf` (no allocation), a vector otherwise.
#[derive(Default)]
struct Parts<'d> {
    /// The resolved schema, when it has no `allOf`.
    single: Option<&'d Value>,
    /// The merged parts, when it has.
    merged: Vec<&'d Value>,
}

/// The parts of `schema` (see [`collect_parts`]), kept in `slots`.
fn parts_of<'d, 's>(
    document: &'d Value,
    schema: &'d Value,
    slots: &'s mut Parts<'d>,
) -> &'s [&'d Value] {
    match resolve(document, schema) {
        None => &[],
        Some(s) if s.get("allOf").is_none() => std::slice::from_ref(slots.single.insert(s)),
        Some(_) => {
            collect_parts(document, schema, &mut slots.merged, 0);
            &slots.merged
        }
    }
}

/// `schema` and, depth-first, every schema its `allOf` merges in, each with
/// its `$ref` resolved. Unresolvable parts are left out.
fn collect_parts<'d>(
    document: &'d Value,
    schema: &'d Value,
    out: &mut Vec<&'d Value>,
    depth: usize,
) {
    if depth > MAX_ALL_OF_DEPTH {
        return;
    }
    let Some(s) = resolve(document, schema) else {
        return;
    };
    // A part met before (an `allOf` cycle, a diamond) adds nothing new.
    if out.iter().any(|seen| std::ptr::eq(*seen, s)) {
        return;
    }
    out.push(s);
    if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
        for part in parts {
            collect_parts(document, part, out, depth + 1);
        }
    }
}

// ---------------------------------------------------------------------------
// Parameters

/// Checks the operation's path and query parameters (path-level ones too,
/// overridden by operation-level ones of the same name and location).
/// Header and cookie parameters are not checked.
fn check_parameters(
    document: &Value,
    path_item: &Value,
    operation: &Value,
    req: &RequestView,
    errors: &mut Vec<(String, String)>,
) {
    let own: Vec<&Value> = operation
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(|p| resolve(document, p)).collect())
        .unwrap_or_default();
    let shared = path_item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| resolve(document, p))
        .filter(|p| {
            !own.iter()
                .any(|o| o.get("name") == p.get("name") && o.get("in") == p.get("in"))
        });
    for param in own.iter().copied().chain(shared) {
        let (Some(name), Some(location)) = (
            param.get("name").and_then(Value::as_str),
            param.get("in").and_then(Value::as_str),
        ) else {
            continue;
        };
        let required = param.get("required").and_then(Value::as_bool) == Some(true);
        let schema = param.get("schema");
        match location {
            "path" => {
                let value = req
                    .path_params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| *v)
                    .filter(|v| !v.is_empty());
                match value {
                    None if required => errors.push((name.to_owned(), required_message(name))),
                    None => {}
                    Some(v) => {
                        if let Some(bad) = schema.and_then(|s| bad_param_value(document, s, &[v])) {
                            errors.push((name.to_owned(), invalid_param(bad, name)));
                        }
                    }
                }
            }
            "query" => {
                let values: Vec<&str> = req
                    .query
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str())
                    .filter(|v| !v.trim().is_empty())
                    .collect();
                if values.is_empty() {
                    if required {
                        errors.push((name.to_owned(), required_message(name)));
                    }
                    continue;
                }
                if let Some(bad) = schema.and_then(|s| bad_param_value(document, s, &values)) {
                    errors.push((name.to_owned(), invalid_param(bad, name)));
                }
            }
            _ => {}
        }
    }
}

/// ASP.NET Core's message for a value that does not convert.
fn invalid_param(value: &str, name: &str) -> String {
    format!("The value '{value}' is not valid for {name}.")
}

/// The DataAnnotations message for a missing required member or parameter.
fn required_message(name: &str) -> String {
    format!("The {name} field is required.")
}

/// The first received value of one parameter that does not convert to its
/// schema, if any. A scalar takes the first value (ASP.NET Core's
/// `FirstValue`); an array takes every value, each split at commas.
fn bad_param_value<'v>(document: &Value, schema: &Value, values: &[&'v str]) -> Option<&'v str> {
    let mut slots = Parts::default();
    let facts = Facts::of(parts_of(document, schema, &mut slots))?;
    if facts.kind() == Some("array") {
        let items = facts.items?;
        return values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .find(|v| !scalar_text_ok(document, items, v));
    }
    values
        .first()
        .copied()
        .filter(|v| !scalar_text_ok(document, schema, v))
}

/// Whether one text value (a path segment, a query value, an array element)
/// converts to the scalar schema `schema` the way ASP.NET's model binding
/// converts it.
fn scalar_text_ok(document: &Value, schema: &Value, text: &str) -> bool {
    let mut slots = Parts::default();
    let Some(facts) = Facts::of(parts_of(document, schema, &mut slots)) else {
        return true;
    };
    let text = text.trim();
    if let Some(options) = facts.enumeration {
        return enum_text_ok(options, text);
    }
    match facts.kind() {
        Some("integer") => parse_integer(text).is_some_and(|n| int_in_range(n, facts.format)),
        Some("number") => parse_number(text).is_some(),
        Some("boolean") => text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false"),
        Some("string") => string_format_ok(facts.format, text),
        _ => true,
    }
}

// ---------------------------------------------------------------------------
// Scalar conversions (what .NET's parsers accept)

/// `int.TryParse(s, NumberStyles.Integer)`: optional sign, decimal digits,
/// surrounding white space.
fn parse_integer(text: &str) -> Option<i128> {
    let t = text.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<i128>().ok()
}

/// `double.TryParse(s, NumberStyles.Float)`: a finite decimal number.
fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    let ok = !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !ok {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// Whether an integer fits the schema's format: `int32`, or 64 bits for
/// `int64` and for an integer without a format (Swashbuckle writes `int32`
/// for every `int`, so an unformatted one is at least as wide).
fn int_in_range(n: i128, format: Option<&str>) -> bool {
    match format {
        Some("int32") => i32::try_from(n).is_ok(),
        _ => i64::try_from(n).is_ok(),
    }
}

/// .NET's name of the integer type a format stands for, for messages.
fn int_type_name(format: Option<&str>) -> &'static str {
    match format {
        Some("int32") => "Int32",
        _ => "Int64",
    }
}

/// Whether a string satisfies a string format the appliance's binder parses
/// (`date-time`, `uuid`, `byte`, `date-span`); other formats constrain nothing.
fn string_format_ok(format: Option<&str>, text: &str) -> bool {
    match format {
        Some("date-time") => is_date_time(text),
        Some("uuid") => is_guid(text),
        Some("byte") => is_base64(text) || is_guid(text),
        Some("date-span") => is_time_span(text),
        _ => true,
    }
}

/// An RFC 3339 timestamp or an ISO 8601 date, date and time, or date and time
/// without an offset (`2024-05-01`, `2024-05-01T10:00`,
/// `2024-05-01T10:00:00.123`, `2024-05-01 10:00:00Z`), what .NET's
/// `DateTime` parsing takes from these documents' clients.
fn is_date_time(text: &str) -> bool {
    use chrono::{NaiveDate, NaiveTime};
    let t = text.trim();
    if chrono::DateTime::parse_from_rfc3339(t).is_ok() {
        return true;
    }
    if t.len() < 10 || !t.is_char_boundary(10) {
        return false;
    }
    let (date, rest) = t.split_at(10);
    let b = date.as_bytes();
    let shape = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    if !shape || NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
        return false;
    }
    if rest.is_empty() {
        return true;
    }
    let Some(time) = rest.strip_prefix(['T', 't', ' ']) else {
        return false;
    };
    // An offset: `Z`, or `±hh:mm`, `±hhmm`, `±hh`.
    let time = if let Some(t) = time.strip_suffix(['Z', 'z']) {
        t
    } else if let Some(pos) = time.rfind(['+', '-']) {
        let offset = &time[pos + 1..];
        let ob = offset.as_bytes();
        let offset_ok = match ob.len() {
            2 => ob.iter().all(u8::is_ascii_digit),
            4 => ob.iter().all(u8::is_ascii_digit),
            5 => ob[2] == b':' && [0, 1, 3, 4].iter().all(|&i| ob[i].is_ascii_digit()),
            _ => false,
        };
        if !offset_ok {
            return false;
        }
        &time[..pos]
    } else {
        time
    };
    let tb = time.as_bytes();
    let fixed = tb.len() >= 5
        && tb[0].is_ascii_digit()
        && tb[1].is_ascii_digit()
        && tb[2] == b':'
        && tb[3].is_ascii_digit()
        && tb[4].is_ascii_digit();
    fixed
        && (NaiveTime::parse_from_str(time, "%H:%M:%S%.f").is_ok()
            || NaiveTime::parse_from_str(time, "%H:%M").is_ok())
}

/// `Guid.TryParse`: 32 hex digits, plain (`N`), hyphenated (`D`), or
/// hyphenated in braces or parentheses (`B`, `P`).
fn is_guid(text: &str) -> bool {
    let t = text.trim();
    let inner = if let Some(x) = t.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
        x
    } else if let Some(x) = t.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        x
    } else {
        t
    };
    let b = inner.as_bytes();
    match b.len() {
        32 => b.iter().all(u8::is_ascii_hexdigit) && inner.len() == t.len(),
        36 => b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// `Convert.FromBase64String`: base64 with padding (white space ignored).
fn is_base64(text: &str) -> bool {
    let mut count = 0usize;
    let mut padding = 0usize;
    for c in text.bytes() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            padding += 1;
        } else if padding > 0 || !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/') {
            return false;
        }
        count += 1;
    }
    count.is_multiple_of(4) && padding <= 2
}

/// `TimeSpan.Parse`: `[-]d` or `[-][d.]hh:mm[:ss[.fffffff]]`.
fn is_time_span(text: &str) -> bool {
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let t = text.trim();
    let t = t.strip_prefix('-').unwrap_or(t);
    if digits(t, 8) {
        return true;
    }
    // Days come before a `.` that precedes every `:`.
    let clock = match t.split_once('.') {
        Some((days, rest)) if !days.contains(':') => {
            if !digits(days, 8) {
                return false;
            }
            rest
        }
        _ => t,
    };
    let fields: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&fields.len()) {
        return false;
    }
    let mut fields = fields;
    if fields.len() == 3 {
        if let Some((seconds, fraction)) = fields[2].split_once('.') {
            if !digits(fraction, 7) {
                return false;
            }
            fields[2] = seconds;
        }
    }
    fields
        .iter()
        .zip([23u32, 59, 59])
        .all(|(f, max)| digits(f, 2) && f.parse::<u32>().is_ok_and(|n| n <= max))
}

/// Whether a text value names a member of `options` (a string enum):
/// a name (case-insensitive), a comma-separated combination of names (flags),
/// or an integer value (Newtonsoft's `StringEnumConverter` and ASP.NET's enum
/// binding both accept the numeric value). For a non-string enum, equality
/// with one of the options' text.
fn enum_text_ok(options: &[Value], text: &str) -> bool {
    let t = text.trim();
    let names = options.iter().filter_map(Value::as_str);
    if options.iter().any(Value::is_string) {
        if parse_integer(t).is_some_and(|n| i32::try_from(n).is_ok()) {
            return true;
        }
        let is_name = |part: &str| names.clone().any(|n| n.eq_ignore_ascii_case(part.trim()));
        return !t.is_empty() && t.split(',').all(is_name);
    }
    options.iter().any(|o| match o {
        Value::Number(n) => parse_number(t).is_some_and(|x| n.as_f64() == Some(x)),
        Value::Bool(b) => t.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        _ => false,
    })
}

// ---------------------------------------------------------------------------
// JSON bodies

/// What the merged parts (`allOf`) of one schema say.
struct Facts<'d> {
    /// `type`, from the first part that has one.
    kind: Option<&'d str>,
    /// `format`, from the first part that has one.
    format: Option<&'d str>,
    /// `enum`, from the first part that has one.
    enumeration: Option<&'d [Value]>,
    /// `items`, from the first part that has one.
    items: Option<&'d Value>,
    /// Whether some part has `properties`, `required` or an
    /// `additionalProperties` schema.
    object_like: bool,
    /// Whether some part has `oneOf` or `anyOf`.
    alternatives: bool,
}

impl<'d> Facts<'d> {
    /// The facts of `parts`; `None` when there are no parts (nothing to check).
    /// One pass over each part's keywords: this runs for every value of
    /// every request.
    fn of(parts: &[&'d Value]) -> Option<Self> {
        if parts.is_empty() {
            return None;
        }
        let mut facts = Facts {
            kind: None,
            format: None,
            enumeration: None,
            items: None,
            object_like: false,
            alternatives: false,
        };
        for (key, value) in parts.iter().filter_map(|p| p.as_object()).flatten() {
            match key.as_str() {
                "type" if facts.kind.is_none() => facts.kind = value.as_str(),
                "format" if facts.format.is_none() => facts.format = value.as_str(),
                "enum" if facts.enumeration.is_none() => {
                    facts.enumeration = value.as_array().map(Vec::as_slice)
                }
                "items" if facts.items.is_none() => facts.items = Some(value),
                "properties" | "required" => facts.object_like = true,
                "additionalProperties" if value.is_object() => facts.object_like = true,
                "oneOf" | "anyOf" => facts.alternatives = true,
                _ => {}
            }
        }
        Some(facts)
    }

    /// The effective type: `type`, or `object` for a schema with members
    /// (see `object_like`),
    /// `array` for one with `items`.
    fn kind(&self) -> Option<&'d str> {
        self.kind.or(if self.object_like {
            Some("object")
        } else if self.items.is_some() {
            Some("array")
        } else {
            None
        })
    }
}

/// The JSON token kind Newtonsoft names in "Unexpected token" messages.
fn token_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Array(_) => "StartArray",
        Value::Object(_) => "StartObject",
    }
}

/// A JSON value for a message: strings as is, the rest as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Checks one JSON body against a schema, collecting ModelState entries.
struct Checker<'d> {
    /// The whole document, for `$ref`.
    document: &'d Value,
    /// The member path being checked (`Children[0].Name`; empty at the root).
    path: String,
    /// What was found.
    errors: Vec<(String, String)>,
    /// Schema checks left.
    budget: usize,
}

impl<'d> Checker<'d> {
    /// A checker with an empty path and a full budget.
    fn new(document: &'d Value) -> Self {
        Checker {
            document,
            path: String::new(),
            errors: Vec::new(),
            budget: BUDGET,
        }
    }

    /// Records an entry at the current path (`body` at the root).
    fn fail(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS {
            let key = if self.path.is_empty() {
                BODY.to_owned()
            } else {
                self.path.clone()
            };
            self.errors.push((key, message));
        }
    }

    /// Records a Newtonsoft-style conversion error, which names its path.
    fn fail_at(&mut self, message: &str) {
        let message = format!("{message} Path '{}'.", self.path);
        self.fail(message);
    }

    /// Appends a member name to the path the way Newtonsoft.Json writes it
    /// (`JsonPosition.WriteTo`): `A.B`, or `A['odd name']` for a name with
    /// a character of its list (`.`, space, quotes, `/`, backslash, brackets,
    /// parentheses, line breaks), quotes and backslashes escaped. Returns the
    /// length to truncate back to.
    fn push_member(&mut self, name: &str) -> usize {
        let len = self.path.len();
        let special = |c: char| {
            matches!(
                c,
                '.' | ' '
                    | '\''
                    | '/'
                    | '"'
                    | '['
                    | ']'
                    | '('
                    | ')'
                    | '\t'
                    | '\n'
                    | '\r'
                    | '\u{c}'
                    | '\u{8}'
                    | '\\'
                    | '\u{85}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
        };
        if name.contains(special) {
            self.path.push_str("['");
            for c in name.chars() {
                if c == '\'' || c == '\\' {
                    self.path.push('\\');
                }
                self.path.push(c);
            }
            self.path.push_str("']");
        } else {
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(name);
        }
        len
    }

    /// Appends an array index to the path.
    fn push_index(&mut self, index: usize) -> usize {
        let len = self.path.len();
        self.path.push('[');
        self.path.push_str(&index.to_string());
        self.path.push(']');
        len
    }

    /// Checks `value` against `schema`. `alternatives` counts the nested
    /// `oneOf`/`anyOf` levels entered without consuming the value.
    fn check(&mut self, schema: &'d Value, value: &Value, alternatives: u32) {
        if self.budget == 0 {
            return;
        }
        if alternatives > MAX_ALTERNATIVE_DEPTH {
            // Alternatives nested this deep without consuming the value only
            // come from a `oneOf`/`anyOf` that refers to itself: that branch
            // can never match.
            self.fail("The value does not match the schema.".to_owned());
            return;
        }
        self.budget -= 1;
        // Null is an absent value; whether it may be absent is the parent's
        // `required` (see the module docs).
        if value.is_null() {
            return;
        }
        let type_name = ref_name(schema);
        let mut slots = Parts::default();
        let parts = parts_of(self.document, schema, &mut slots);
        let Some(facts) = Facts::of(parts) else {
            return;
        };

        // oneOf / anyOf of every part: some alternative must accept the value.
        for part in parts.iter().filter(|_| facts.alternatives) {
            for key in ["oneOf", "anyOf"] {
                if let Some(options) = part.get(key).and_then(Value::as_array) {
                    self.check_alternatives(options, value, alternatives + 1);
                }
            }
        }

        if let Some(options) = facts.enumeration {
            self.check_enum(options, value, type_name);
            return;
        }
        match facts.kind() {
            Some("object") => self.check_object(parts, value, type_name),
            Some("array") => match value {
                Value::Array(items) => {
                    if let Some(item_schema) = facts.items {
                        for (i, item) in items.iter().enumerate() {
                            if self.budget == 0 {
                                break;
                            }
                            let len = self.push_index(i);
                            self.check(item_schema, item, 0);
                            self.path.truncate(len);
                        }
                    }
                }
                Value::Object(_) => self.fail_at(
                    "Cannot deserialize the current JSON object (e.g. {\"name\":\"value\"}) into a collection because the type requires a JSON array (e.g. [1,2,3]) to deserialize correctly.",
                ),
                other => self.fail_at(&format!("Error converting value {} to a collection.", quoted(other))),
            },
            Some("integer") => self.check_integer(value, facts.format),
            Some("number") => match value {
                Value::Number(_) => {}
                Value::String(s) if s.is_empty() || parse_number(s).is_some() => {}
                Value::String(s) => self.fail_at(&format!("Could not convert string to double: {s}.")),
                other => self.fail_at(&format!("Error reading double. Unexpected token: {}.", token_name(other))),
            },
            Some("boolean") => match value {
                Value::Bool(_) | Value::Number(_) => {}
                Value::String(s)
                    if s.is_empty()
                        || s.trim().eq_ignore_ascii_case("true")
                        || s.trim().eq_ignore_ascii_case("false") => {}
                Value::String(s) => self.fail_at(&format!("Could not convert string to boolean: {s}.")),
                other => self.fail_at(&format!("Error reading boolean. Unexpected token: {}.", token_name(other))),
            },
            Some("string") => self.check_string(value, facts.format),
            _ => {}
        }
    }

    /// `oneOf`/`anyOf`: the value passes when one alternative accepts it;
    /// otherwise the entries of the first alternative are reported.
    fn check_alternatives(&mut self, options: &'d [Value], value: &Value, depth: u32) {
        let mut first_errors = None;
        for option in options {
            let saved = std::mem::take(&mut self.errors);
            self.check(option, value, depth);
            let found = std::mem::replace(&mut self.errors, saved);
            if found.is_empty() {
                return;
            }
            first_errors.get_or_insert(found);
        }
        if let Some(found) = first_errors {
            for entry in found {
                if self.errors.len() < MAX_ERRORS {
                    self.errors.push(entry);
                }
            }
        }
    }

    /// An enum member: names case-insensitively (flags comma-separated),
    /// integers for string enums (Newtonsoft's `StringEnumConverter` with
    /// `AllowIntegerValues`, its default), exact values otherwise.
    fn check_enum(&mut self, options: &[Value], value: &Value, type_name: Option<&str>) {
        let ok = match value {
            Value::String(s) => enum_text_ok(options, s),
            Value::Number(n) if options.iter().any(Value::is_string) => {
                n.as_i64().is_some_and(|i| i32::try_from(i).is_ok())
            }
            other => options.iter().any(|o| o == other),
        };
        if !ok {
            self.fail_at(&format!(
                "Error converting value {} to type '{}'.",
                quoted(value),
                type_name.unwrap_or("Enum")
            ));
        }
    }

    /// An object: every required member (that is not `readOnly`) present and
    /// not null; every known member (not `readOnly`) valid; map values
    /// (`additionalProperties` schemas) valid; unknown members ignored.
    fn check_object(&mut self, parts: &[&'d Value], value: &Value, type_name: Option<&str>) {
        let members = match value {
            Value::Object(m) => m,
            Value::Array(_) => {
                self.fail_at(&format!(
                    "Cannot deserialize the current JSON array (e.g. [1,2,3]) into type '{}' because the type requires a JSON object (e.g. {{\"name\":\"value\"}}) to deserialize correctly.",
                    type_name.unwrap_or("Object")
                ));
                return;
            }
            other => {
                self.fail_at(&format!(
                    "Error converting value {} to type '{}'.",
                    quoted(other),
                    type_name.unwrap_or("Object")
                ));
                return;
            }
        };
        let property = |name: &str| -> Option<(&'d str, &'d Value)> {
            let props = || {
                parts
                    .iter()
                    .filter_map(|p| p.get("properties")?.as_object())
            };
            props()
                .find_map(|m| m.get_key_value(name))
                .or_else(|| {
                    props().find_map(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
                })
                .map(|(k, v)| (k.as_str(), v))
        };

        // Required members, in the document's order.
        for part in parts {
            let Some(required) = part.get("required").and_then(Value::as_array) else {
                continue;
            };
            for name in required.iter().filter_map(Value::as_str) {
                if property(name).is_some_and(|(_, s)| is_read_only(self.document, s)) {
                    continue;
                }
                let present = members
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_null());
                if !present {
                    let len = self.push_member(name);
                    self.fail(required_message(name));
                    self.path.truncate(len);
                }
            }
        }

        let map_values = parts
            .iter()
            .find_map(|p| p.get("additionalProperties").filter(|a| a.is_object()));
        for (key, member) in members {
            if self.budget == 0 {
                break;
            }
            let schema = match property(key) {
                Some((_, s)) if is_read_only(self.document, s) => continue,
                Some((_, s)) => s,
                None => match map_values {
                    Some(s) => s,
                    None => continue,
                },
            };
            let len = self.push_member(key);
            self.check(schema, member, 0);
            self.path.truncate(len);
        }
    }

    /// An integer (`int32` unless `int64`): JSON numbers that round into range
    /// (Newtonsoft converts floats with `Convert.ToInt32`), numeric strings,
    /// the empty string (null).
    fn check_integer(&mut self, value: &Value, format: Option<&str>) {
        let type_name = int_type_name(format);
        match value {
            Value::Number(n) => {
                let in_range = if let Some(i) = n.as_i64() {
                    int_in_range(i128::from(i), format)
                } else if let Some(u) = n.as_u64() {
                    int_in_range(i128::from(u), format)
                } else {
                    // Within ±2^63 the cast is exact for the rounded value;
                    // beyond it `int_in_range` refuses either way.
                    n.as_f64()
                        .map(f64::round_ties_even)
                        .filter(|f| f.is_finite() && f.abs() < 9.3e18)
                        .is_some_and(|f| int_in_range(f as i128, format))
                };
                if !in_range {
                    if n.is_f64() {
                        self.fail_at(&format!("Could not convert to integer: {n}."));
                    } else {
                        self.fail_at(&format!(
                            "JSON integer {n} is too large or small for an {type_name}."
                        ));
                    }
                }
            }
            Value::String(s) if s.is_empty() => {}
            Value::String(s) => {
                if !parse_integer(s).is_some_and(|n| int_in_range(n, format)) {
                    self.fail_at(&format!("Could not convert string to integer: {s}."));
                }
            }
            other => self.fail_at(&format!(
                "Error reading integer. Unexpected token: {}.",
                token_name(other)
            )),
        }
    }

    /// A string: formatted strings (`date-time`, `uuid`, `byte`,
    /// `date-span`) must parse and be strings; plain strings also take
    /// numbers and booleans (Newtonsoft's `ReadAsString`).
    fn check_string(&mut self, value: &Value, format: Option<&str>) {
        let formatted = matches!(format, Some("date-time" | "uuid" | "byte" | "date-span"));
        match value {
            Value::String(s) if s.is_empty() || string_format_ok(format, s) => {}
            Value::String(s) => {
                let message = match format {
                    Some("date-time") => format!("Could not convert string to DateTime: {s}."),
                    Some("uuid") => format!("Error converting value \"{s}\" to type 'System.Guid'."),
                    Some("date-span") => format!("Error converting value \"{s}\" to type 'System.TimeSpan'."),
                    _ => "The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding characters, or an illegal character among the padding characters.".to_owned(),
                };
                self.fail_at(&message);
            }
            Value::Number(_) | Value::Bool(_) if !formatted => {}
            other => {
                let reading = match format {
                    Some("date-time") => "date",
                    Some("byte") => "bytes",
                    _ => "string",
                };
                self.fail_at(&format!(
                    "Error reading {reading}. Unexpected token: {}.",
                    token_name(other)
                ));
            }
        }
    }
}

/// A value as Newtonsoft quotes it in "Error converting value" messages:
/// strings in double quotes, the rest as JSON.
fn quoted(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        Value::Array(_) => "[...]".to_owned(),
        Value::Object(_) => "{...}".to_owned(),
        other => shown(other),
    }
}

#[cfg(test)]
mod tests;
