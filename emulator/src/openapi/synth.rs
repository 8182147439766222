//! Deterministic values that conform to a schema of the documents: the
//! answers of operations the emulator has no state model for, and the
//! defaults of members a stored entity was created without.

use serde_json::{Map, Value};

use super::ServiceSpec;

/// A fixed instant in the documents' date-time format.
const DATE_TIME: &str = "2026-01-01T00:00:00Z";

/// Depth below which optional members are filled; deeper objects carry only
/// their required members, and nothing goes deeper than [`MAX_DEPTH`].
const FULL_DEPTH: usize = 2;
const MAX_DEPTH: usize = 8;

impl ServiceSpec {
    /// A value conforming to `schema`: every member of the top levels,
    /// required members below, empty arrays, the first enum value, fixed
    /// dates. Read-only members are included (answers carry them),
    /// write-only ones are not.
    pub(crate) fn example(&self, schema: &Value) -> Value {
        self.example_at(schema, 0)
    }

    fn example_at(&self, schema: &Value, depth: usize) -> Value {
        let Some(schema) = self.resolve(schema) else {
            return Value::Null;
        };
        if depth > MAX_DEPTH {
            return empty_of(schema);
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            for part in all {
                if let Value::Object(m) = self.example_at(part, depth) {
                    merged.extend(m);
                }
            }
            if let Value::Object(own) = self.object_example(schema, depth) {
                merged.extend(own);
            }
            return Value::Object(merged);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(first) = schema
                .get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                return self.example_at(first, depth);
            }
        }
        if let Some(first) = schema
            .get("enum")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return first.clone();
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("object") | None if schema.get("properties").is_some() => {
                self.object_example(schema, depth)
            }
            Some("object") => Value::Object(Map::new()),
            Some("array") => Value::Array(Vec::new()),
            Some("string") => string_example(schema),
            Some("integer") => Value::from(schema["minimum"].as_i64().unwrap_or(0).max(0)),
            Some("number") => Value::from(schema["minimum"].as_f64().unwrap_or(0.0).max(0.0)),
            Some("boolean") => Value::Bool(false),
            _ => Value::Null,
        }
    }

    fn object_example(&self, schema: &Value, depth: usize) -> Value {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut out = Map::new();
        if let Some(props) = schema["properties"].as_object() {
            for (name, prop) in props {
                let resolved = self.resolve(prop).unwrap_or(prop);
                if resolved["writeOnly"].as_bool() == Some(true)
                    || prop["writeOnly"].as_bool() == Some(true)
                {
                    continue;
                }
                if depth < FULL_DEPTH || required.contains(&name.as_str()) {
                    out.insert(name.clone(), self.example_at(prop, depth + 1));
                }
            }
        }
        Value::Object(out)
    }

    /// The member names of an object schema (following `$ref` and `allOf`)
    /// with their schemas.
    pub(crate) fn members<'a>(&'a self, schema: &'a Value) -> Vec<(&'a str, &'a Value)> {
        let mut out = Vec::new();
        self.collect_members(schema, &mut out, 0);
        out
    }

    fn collect_members<'a>(
        &'a self,
        schema: &'a Value,
        out: &mut Vec<(&'a str, &'a Value)>,
        depth: usize,
    ) {
        let Some(schema) = self.resolve(schema) else {
            return;
        };
        if depth > MAX_DEPTH {
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                self.collect_members(part, out, depth + 1);
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                if !out.iter().any(|(n, _)| *n == name.as_str()) {
                    out.push((name.as_str(), prop));
                }
            }
        }
    }
}

fn string_example(schema: &Value) -> Value {
    let s = match schema.get("format").and_then(Value::as_str) {
        Some("date-time") => DATE_TIME.to_string(),
        Some("date") => DATE_TIME[..10].to_string(),
        Some("uuid") => "00000000-0000-0000-0000-000000000000".to_string(),
        _ => {
            let min = schema["minLength"].as_u64().unwrap_or(0).min(64) as usize;
            "x".repeat(min)
        }
    };
    Value::String(s)
}

fn empty_of(schema: &Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => Value::Array(Vec::new()),
        Some("string") => string_example(schema),
        Some("integer") | Some("number") => Value::from(0),
        Some("boolean") => Value::Bool(false),
        _ => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Spec;

    #[test]
    fn examples_carry_members_enums_and_dates() {
        let core = Spec::get().service("core").unwrap();
        let user = core.example(&json!({"$ref": "#/components/schemas/User"}));
        assert!(user["Name"].is_string(), "{user}");
        assert!(user["Id"].is_i64());
        let asset = core.example(&json!({"$ref": "#/components/schemas/Asset"}));
        assert!(asset.is_object());
        // Every schema of every document yields a value without overflowing
        // the stack (the documents have recursive schemas).
        for svc in &Spec::get().services {
            if let Some(schemas) = svc.document["components"]["schemas"].as_object() {
                for name in schemas.keys() {
                    let v = svc.example(&json!({ "$ref": format!("#/components/schemas/{name}") }));
                    assert!(
                        !v.is_null() || schemas[name].get("type").is_none(),
                        "{name}"
                    );
                }
            }
        }
    }

    #[test]
    fn inline_schemas() {
        let core = Spec::get().service("core").unwrap();
        assert_eq!(
            core.example(&json!({"type": "string", "format": "date-time"})),
            json!("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            core.example(&json!({"type": "string", "enum": ["B", "A"]})),
            json!("B")
        );
        assert_eq!(core.example(&json!({"type": "array"})), json!([]));
        assert_eq!(
            core.example(
                &json!({"allOf": [{"properties": {"A": {"type": "integer"}}},
                                 {"properties": {"B": {"type": "boolean"}}}]})
            ),
            json!({"A": 0, "B": false})
        );
        let secret = core.example(&json!({"type": "object", "properties": {
            "Password": {"type": "string", "writeOnly": true}, "Name": {"type": "string"}}}));
        assert_eq!(secret, json!({"Name": ""}));
    }
}
