//! The argument synthesizer: what it makes from a schema.

use safeguard_conformance::synth::Synth;
use serde_json::{json, Value};

fn doc() -> Value {
    json!({ "components": { "schemas": {
        "Kind": { "type": "string", "enum": ["Alpha", "Beta"] },
        "Thing": {
            "type": "object",
            "required": ["Label", "Count", "Kind"],
            "properties": {
                "Id": { "type": "integer", "description": "Database ID (Read-only)." },
                "Label": { "type": "string", "maxLength": 12 },
                "Count": { "type": "integer", "minimum": 3 },
                "Kind": { "$ref": "#/components/schemas/Kind" },
                "When": { "type": "string", "format": "date-time" },
                "Name": { "type": "string" },
                "PlatformId": { "type": "integer" },
                "Optional": { "type": "boolean" }
            }
        }
    } } })
}

#[test]
fn objects_get_required_members_name_and_known_only() {
    let doc = doc();
    let mut s = Synth::new(&doc, 0);
    s.known.insert("PlatformId".into(), json!(521));
    let v = s.value(&json!({ "$ref": "#/components/schemas/Thing" }), "body", 0);
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["Count", "Kind", "Label", "Name", "PlatformId"]);
    assert_eq!(obj["Count"], json!(3));
    assert_eq!(obj["Kind"], json!("Alpha"));
    assert_eq!(obj["PlatformId"], json!(521));
    assert!(obj["Label"].as_str().unwrap().len() <= 12, "{v}");
}

#[test]
fn strings_are_unique_and_formats_are_kept() {
    let doc = doc();
    let mut s = Synth::new(&doc, 0);
    let a = s.value(&json!({ "type": "string" }), "Name", 0);
    let b = s.value(&json!({ "type": "string" }), "Name", 0);
    assert_ne!(a, b);
    assert_eq!(
        s.value(&json!({ "type": "string", "format": "date-time" }), "x", 0),
        json!("2026-01-01T00:00:00Z")
    );
    let uuid = s.value(&json!({ "type": "string", "format": "uuid" }), "x", 0);
    assert_eq!(uuid.as_str().unwrap().len(), 36);
}

#[test]
fn unresolvable_references_and_cycles_end() {
    let doc = json!({ "components": { "schemas": {
        "Loop": { "type": "object", "required": ["Next"],
            "properties": { "Next": { "$ref": "#/components/schemas/Loop" } } }
    } } });
    let mut s = Synth::new(&doc, 0);
    assert_eq!(
        s.value(&json!({ "$ref": "#/components/schemas/Nope" }), "x", 0),
        Value::Null
    );
    let v = s.value(&json!({ "$ref": "#/components/schemas/Loop" }), "x", 0);
    assert!(v.get("Next").is_some());
}
