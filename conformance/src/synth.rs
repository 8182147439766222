//! Valid values for an operation's parameters and body, synthesized from the
//! appliance's original OpenAPI document (as served, not the SDK's
//! normalized copy): required members present with the right types, the
//! first value of each enum, the formats the document names, and strings
//! unique per call (`conf-<n>-<member>`) so that uniqueness rules of the
//! appliance (names of users, assets, ...) never collide.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// How deep nested objects are filled before only `null` is given.
const MAX_DEPTH: usize = 8;

/// Makes values from the schemas of one document.
pub struct Synth<'d> {
    doc: &'d Value,
    counter: u64,
    /// Known values by member name: existing entities by the member name
    /// that references them
    /// (`PlatformId` -> the first platform's `Id`, `Asset` -> `{"Id": ..}`
    /// of the first asset): a member of that name whose schema has the
    /// value's type takes it instead of a made-up value.
    pub known: HashMap<String, Value>,
}

impl<'d> Synth<'d> {
    /// A synthesizer over `doc`, its unique strings numbered from `first`.
    pub fn new(doc: &'d Value, first: u64) -> Self {
        Synth {
            doc,
            counter: first,
            known: HashMap::new(),
        }
    }

    /// The next number of the unique strings.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// `schema` with `$ref`s followed (at most 16 in a row); an unresolvable
    /// reference reads as an empty schema.
    pub fn resolve<'s>(&self, schema: &'s Value) -> &'s Value
    where
        'd: 's,
    {
        let mut current = schema;
        for _ in 0..16 {
            let Some(reference) = current.get("$ref").and_then(Value::as_str) else {
                return current;
            };
            let pointer = reference.trim_start_matches('#');
            match self.doc.pointer(pointer) {
                Some(target) => current = target,
                None => return &Value::Null,
            }
        }
        current
    }

    /// A valid value for the parameter object `param` of an operation.
    pub fn parameter(&mut self, param: &Value) -> Value {
        let name = param.get("name").and_then(Value::as_str).unwrap_or("param");
        let schema = param.get("schema").unwrap_or(&Value::Null);
        self.value(schema, name, 0)
    }

    /// The JSON schema of an operation's request body and its media type:
    /// `application/json` when offered, else the first listed.
    pub fn body_schema<'s>(&self, op: &'s Value) -> Option<(&'s str, &'s Value)>
    where
        'd: 's,
    {
        let content = self
            .resolve(op.get("requestBody")?)
            .get("content")?
            .as_object()?;
        content
            .iter()
            .find(|(media, _)| media.starts_with("application/json"))
            .or_else(|| content.iter().next())
            .map(|(media, m)| (media.as_str(), m.get("schema").unwrap_or(&Value::Null)))
    }

    /// A valid value for `schema`, standing as `member` (a property or
    /// parameter name, used in unique strings and to find known ids).
    pub fn value(&mut self, schema: &Value, member: &str, depth: usize) -> Value {
        let schema = self.resolve(schema);
        if depth > MAX_DEPTH {
            return Value::Null;
        }
        if let Some(first) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            return first.clone();
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            if let Some(parts) = schema.get(key).and_then(Value::as_array) {
                if key == "allOf" {
                    let mut merged = Map::new();
                    for part in parts {
                        match self.value(part, member, depth + 1) {
                            Value::Object(m) => merged.extend(m),
                            other if parts.len() == 1 => return other,
                            _ => {}
                        }
                    }
                    return Value::Object(merged);
                }
                if let Some(first) = parts.first() {
                    return self.value(first, member, depth + 1);
                }
            }
        }
        let ty = schema.get("type").and_then(Value::as_str);
        if let Some(known) = self.known.get(member).cloned() {
            let fits = match ty {
                Some("integer") => known.is_i64(),
                Some("string") => known.is_string(),
                Some("object") | None => known.is_object(),
                _ => false,
            };
            if fits {
                // A reference to an existing entity still carries the
                // members its schema requires (`ShareWithUser.Name`).
                if let (Value::Object(k), true) = (&known, schema.get("properties").is_some()) {
                    if let Value::Object(mut base) = self.object(schema, depth) {
                        base.extend(k.clone());
                        return Value::Object(base);
                    }
                }
                return known;
            }
        }
        let format = schema.get("format").and_then(Value::as_str);
        match ty {
            Some("string") => self.string(schema, member, format),
            Some("integer") => json!(integer(schema)),
            Some("number") => json!(integer(schema) as f64),
            Some("boolean") => json!(false),
            Some("array") => {
                let n = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let items = schema.get("items").unwrap_or(&Value::Null);
                Value::Array(
                    (0..n)
                        .map(|_| self.value(items, member, depth + 1))
                        .collect(),
                )
            }
            Some("object") | None if schema.get("properties").is_some() => {
                self.object(schema, depth)
            }
            Some("object") => json!({}),
            // A member of any type (the appliance's `Setting.Value`): a
            // string.
            None if schema.is_object() => self.string(schema, member, format),
            _ => Value::Null,
        }
    }

    /// An object with its required members, and `Name` and the members
    /// referencing a known entity when it has them; read-only members are
    /// left out.
    fn object(&mut self, schema: &Value, depth: usize) -> Value {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut out = Map::new();
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return Value::Object(out);
        };
        for (name, prop) in props {
            let wanted = required.contains(&name.as_str())
                || name == "Name"
                || self.known.contains_key(name);
            if !wanted || (is_read_only(self.resolve(prop)) && !required.contains(&name.as_str())) {
                continue;
            }
            let v = self.value(prop, name, depth + 1);
            out.insert(name.clone(), v);
        }
        Value::Object(out)
    }

    fn string(&mut self, schema: &Value, member: &str, format: Option<&str>) -> Value {
        self.counter += 1;
        let n = self.counter;
        let text = match format {
            Some("date-time") => "2026-01-01T00:00:00Z".to_owned(),
            Some("date") => "2026-01-01".to_owned(),
            Some("uuid") => format!("00000000-0000-4000-8000-{n:012x}"),
            Some("byte") => "Y29uZm9ybWFuY2U=".to_owned(),
            Some("email") => format!("conf-{n}@example.com"),
            Some("ipv4") => "192.0.2.1".to_owned(),
            Some("ipv6") => "2001:db8::1".to_owned(),
            Some("uri") => format!("https://example.com/conf-{n}"),
            // .NET TimeSpan, as the appliance writes it (d.hh:mm:ss).
            Some("date-span") => "1.00:00:00".to_owned(),
            _ => {
                let mut s = format!("conf-{n}-{member}");
                let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
                let max = schema
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .map(|m| m as usize);
                while s.len() < min {
                    s.push('x');
                }
                if let Some(max) = max {
                    s.truncate(max.max(min));
                }
                s
            }
        };
        Value::String(text)
    }
}

/// Whether a member is read-only: `readOnly`, or the appliance's
/// "(Read-only)" in its description (its documents mark most read-only
/// members only there).
pub fn is_read_only(schema: &Value) -> bool {
    schema.get("readOnly").and_then(Value::as_bool) == Some(true)
        || schema
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| d.contains("(Read-only)") || d.contains("(Read-only."))
}

/// 1, or the schema's `minimum` when above it and its `maximum` when below.
fn integer(schema: &Value) -> i64 {
    let mut v = 1;
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if (min as i64) > v {
            v = min as i64;
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if (max as i64) < v {
            v = max as i64;
        }
    }
    v
}
