//! Tests of the request validator: small inline documents for each rule, the
//! vendor's real documents for real operations, and property tests that no
//! document or body makes it panic or run away.

use super::*;
use proptest::prelude::*;
use std::sync::OnceLock;

/// A request with the given pieces.
fn request<'a>(
    path_params: &'a [(&'a str, &'a str)],
    query: &'a [(String, String)],
    content_type: Option<&'a str>,
    body: &'a [u8],
) -> RequestView<'a> {
    RequestView {
        path_params,
        query,
        content_type,
        body,
    }
}

/// Query pairs from `(name, value)` literals.
fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// Validates a JSON body (`application/json`) against `document`'s
/// `path`/`method`.
fn body_result(
    document: &Value,
    path: &str,
    method: &str,
    body: &str,
) -> Result<Option<Value>, Invalid> {
    let path_item = &document["paths"][path];
    let operation = &path_item[method];
    assert!(operation.is_object(), "no {method} {path}");
    validate(
        document,
        path_item,
        operation,
        &request(
            &[("id", "1")],
            &[],
            Some("application/json; charset=utf-8"),
            body.as_bytes(),
        ),
    )
}

/// The ModelState entries of a refusal (panics on anything else).
fn model(result: Result<Option<Value>, Invalid>) -> Vec<(String, String)> {
    match result {
        Err(Invalid::Model(entries)) => entries,
        other => panic!("expected a 400, got {other:?}"),
    }
}

/// The ModelState member names of a refusal.
fn members(result: Result<Option<Value>, Invalid>) -> Vec<String> {
    model(result).into_iter().map(|(m, _)| m).collect()
}

/// A small document exercising every rule.
fn inline() -> Value {
    json!({
        "openapi": "3.0.1",
        "paths": {
            "/v4/Things/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int32"}}
                ],
                "get": {
                    "parameters": [
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "format": "int32"}},
                        {"name": "big", "in": "query", "schema": {"type": "integer", "format": "int64"}},
                        {"name": "count", "in": "query", "schema": {"type": "boolean"}},
                        {"name": "ratio", "in": "query", "schema": {"type": "number", "format": "double"}},
                        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "key", "in": "query", "schema": {"type": "string", "format": "uuid"}},
                        {"name": "color", "in": "query", "schema": {"$ref": "#/components/schemas/Color"}},
                        {"name": "ids", "in": "query", "schema": {"type": "array", "items": {"type": "integer", "format": "int32"}}},
                        {"name": "must", "in": "query", "required": true, "schema": {"type": "string"}}
                    ]
                },
                "put": {
                    "parameters": [
                        {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}
                    ],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}
                },
                "post": {
                    "requestBody": {"$ref": "#/components/requestBodies/Things"}
                },
                "patch": {
                    "requestBody": {"content": {
                        "application/json-patch+json": {"schema": {"$ref": "#/components/schemas/Thing"}},
                        "application/*+json": {"schema": {"$ref": "#/components/schemas/Thing"}},
                        "text/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                    }}
                },
                "delete": {
                    "requestBody": {"content": {
                        "multipart/form-data": {"schema": {"type": "object", "properties": {"fileData": {"type": "string", "format": "binary"}}}},
                        "application/octet-stream": {"schema": {"type": "object"}}
                    }}
                }
            }
        },
        "components": {
            "requestBodies": {
                "Things": {"content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}}}}
            },
            "schemas": {
                "Color": {"enum": ["Red", "Green", "Blue"], "type": "string"},
                "Thing": {
                    "type": "object",
                    "required": ["Name", "Id"],
                    "additionalProperties": false,
                    "properties": {
                        "Id": {"type": "integer", "format": "int32", "readOnly": true},
                        "Name": {"type": "string"},
                        "Count": {"type": "integer", "format": "int32"},
                        "Big": {"type": "integer", "format": "int64"},
                        "Ratio": {"type": "number"},
                        "Flag": {"type": "boolean"},
                        "When": {"type": "string", "format": "date-time", "nullable": true},
                        "Key": {"type": "string", "format": "uuid"},
                        "Blob": {"type": "string", "format": "byte"},
                        "Span": {"type": "string", "format": "date-span"},
                        "Color": {"$ref": "#/components/schemas/Color"},
                        "Colors": {"type": "array", "items": {"$ref": "#/components/schemas/Color"}},
                        "Children": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}},
                        "Labels": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "Created": {"type": "string", "format": "date-time", "readOnly": true}
                    }
                },
                "Loop": {"$ref": "#/components/schemas/Loop"},
                "Ping": {"$ref": "#/components/schemas/Pong"},
                "Pong": {"$ref": "#/components/schemas/Ping"},
                "SelfAll": {"allOf": [{"$ref": "#/components/schemas/SelfAll"}], "required": ["A"]},
                "SelfOne": {"oneOf": [{"$ref": "#/components/schemas/SelfOne"}, {"type": "object", "required": ["B"]}]},
                "Merged": {"allOf": [
                    {"type": "object", "required": ["A"], "properties": {"A": {"type": "integer"}}},
                    {"type": "object", "required": ["B"], "properties": {"B": {"type": "string", "readOnly": true}, "C": {"type": "boolean"}}}
                ]},
                "Either": {"oneOf": [{"type": "integer"}, {"type": "object", "required": ["X"], "properties": {"X": {"type": "string"}}}]},
                "Tree": {"type": "object", "required": ["Kids"], "properties": {"Kids": {"type": "array", "items": {"$ref": "#/components/schemas/Tree"}}}}
            }
        }
    })
}

/// Validates a query against the inline GET, with `must` supplied.
fn inline_query(pairs: &[(&str, &str)]) -> Result<Option<Value>, Invalid> {
    let doc = inline();
    let mut all = vec![("must", "x")];
    all.extend_from_slice(pairs);
    let query = q(&all);
    let item = &doc["paths"]["/v4/Things/{id}"];
    validate(
        &doc,
        item,
        &item["get"],
        &request(&[("id", "7")], &query, None, b""),
    )
}

/// Validates `body` against the inline PUT (one `Thing`).
fn thing(body: &str) -> Result<Option<Value>, Invalid> {
    body_result(&inline(), "/v4/Things/{id}", "put", body)
}

/// Validates `value` against the inline component schema `name`.
fn against(name: &str, value: Value) -> Vec<(String, String)> {
    let doc = inline();
    let schema = json!({"$ref": format!("#/components/schemas/{name}")});
    let mut checker = Checker::new(&doc);
    checker.check(&schema, &value, 0);
    checker.errors
}

#[test]
fn query_parameters_convert_like_aspnet() {
    let ok = [
        ("limit", "10"),
        ("LIMIT", " -5 "),
        ("big", "9000000000"),
        ("count", "TRUE"),
        ("count", "false"),
        ("ratio", "1.5e3"),
        ("since", "2024-05-01T10:00:00Z"),
        ("since", "2024-05-01T10:00:00.1234567"),
        ("since", "2024-05-01"),
        ("since", "2024-05-01 10:00"),
        ("since", "2024-05-01T10:00:00+02:00"),
        ("key", "0f8fad5b-d9cb-469f-a165-70867728950e"),
        ("key", "{0f8fad5b-d9cb-469f-a165-70867728950e}"),
        ("key", "0f8fad5bd9cb469fa16570867728950e"),
        ("color", "green"),
        ("color", "2"),
        ("color", "Red,Blue"),
        ("ids", "1,2,3"),
        ("unknown", "anything"),
        ("limit", ""),
    ];
    for pair in ok {
        assert_eq!(inline_query(&[pair]), Ok(None), "{pair:?}");
    }
    // Repeated array values, and a scalar takes the first of repeated values.
    assert_eq!(inline_query(&[("ids", "1"), ("ids", "2,3")]), Ok(None));
    assert_eq!(inline_query(&[("limit", "1"), ("limit", "x")]), Ok(None));

    let bad = [
        ("limit", "ten"),
        ("limit", "2147483648"),
        ("limit", "1.5"),
        ("big", "9223372036854775808"),
        ("count", "yes"),
        ("count", "1"),
        ("ratio", "NaN"),
        ("since", "yesterday"),
        ("since", "2024-02-30"),
        ("since", "2024-05-01T25:00"),
        ("key", "not-a-guid"),
        ("color", "Purple"),
        ("color", "Red,Purple"),
    ];
    for (name, value) in bad {
        let entries = model(inline_query(&[(name, value)]));
        assert_eq!(
            entries,
            vec![(
                name.to_owned(),
                format!("The value '{value}' is not valid for {name}.")
            )],
            "{name}={value}"
        );
    }
    // The offending element of an array, the offending first value.
    assert_eq!(
        model(inline_query(&[("ids", "1, x,y")])),
        vec![(
            "ids".to_owned(),
            "The value 'x' is not valid for ids.".to_owned()
        )]
    );
    assert_eq!(
        model(inline_query(&[("ids", "1"), ("ids", "2,z")])),
        vec![(
            "ids".to_owned(),
            "The value 'z' is not valid for ids.".to_owned()
        )]
    );
    assert_eq!(
        model(inline_query(&[("count", "maybe"), ("count", "true")])),
        vec![(
            "count".to_owned(),
            "The value 'maybe' is not valid for count.".to_owned()
        )]
    );
    // Case-insensitive names keep the document's name in ModelState.
    assert_eq!(members(inline_query(&[("Limit", "x")])), ["limit"]);
}

#[test]
fn required_and_path_parameters() {
    let doc = inline();
    let item = &doc["paths"]["/v4/Things/{id}"];
    let none = q(&[]);
    let entries = model(validate(
        &doc,
        item,
        &item["get"],
        &request(&[("id", "abc")], &none, None, b""),
    ));
    assert_eq!(
        entries,
        vec![
            ("must".to_owned(), "The must field is required.".to_owned()),
            (
                "id".to_owned(),
                "The value 'abc' is not valid for id.".to_owned()
            ),
        ]
    );
    // A path-level parameter is overridden by the operation's own (a string).
    let body = br#"{"Name": "n"}"#;
    assert!(validate(
        &doc,
        item,
        &item["put"],
        &request(&[("id", "abc")], &none, Some("application/json"), body)
    )
    .is_ok());
    // Missing path parameter.
    assert_eq!(
        members(validate(
            &doc,
            item,
            &item["get"],
            &request(&[], &q(&[("must", "x")]), None, b"")
        )),
        ["id"]
    );
}

#[test]
fn content_types() {
    let doc = inline();
    let item = &doc["paths"]["/v4/Things/{id}"];
    let none = q(&[]);
    let body = br#"{"Name": "n"}"#;
    let put = |ct: Option<&str>, body: &[u8]| {
        validate(
            &doc,
            item,
            &item["put"],
            &request(&[("id", "1")], &none, ct, body),
        )
    };
    assert!(put(Some("Application/JSON; charset=utf-8"), body).is_ok());
    assert_eq!(
        put(Some("Text/Plain; charset=utf-8"), body),
        Err(Invalid::MediaType("text/plain".into()))
    );
    assert_eq!(put(None, body), Err(Invalid::MediaType(String::new())));
    // Only the listed media types: text/json is JSON but not listed here.
    assert_eq!(
        put(Some("text/json"), body),
        Err(Invalid::MediaType("text/json".into()))
    );
    // A required body that is missing, empty, blank or `null`.
    for empty in [&b""[..], b"  \r\n", b"null"] {
        assert_eq!(
            model(put(Some("application/json"), empty)),
            vec![(
                "body".to_owned(),
                "The request body is required.".to_owned()
            )]
        );
    }
    assert_eq!(members(put(None, b"")), ["body"]);
    // Not JSON; a byte order mark is fine.
    let entries = model(put(Some("application/json"), b"{\"Name\": "));
    assert_eq!(entries[0].0, "body");
    assert!(
        entries[0]
            .1
            .starts_with("The request body is not valid JSON"),
        "{entries:?}"
    );
    assert!(put(Some("application/json"), b"\xEF\xBB\xBF{\"Name\": \"n\"}").is_ok());

    // Wildcards and the other JSON media types.
    let patch = |ct: &str, body: &[u8]| {
        validate(
            &doc,
            item,
            &item["patch"],
            &request(&[("id", "1")], &none, Some(ct), body),
        )
    };
    assert_eq!(
        patch("application/vnd.safeguard+json", body).unwrap(),
        Some(json!({"Name": "n"}))
    );
    assert!(patch("application/json-patch+json", body)
        .unwrap()
        .is_some());
    assert!(patch("text/json", body).unwrap().is_some());
    assert_eq!(members(patch("text/json", b"{}")), ["Name"]);
    assert_eq!(
        patch("application/json", body),
        Err(Invalid::MediaType("application/json".into()))
    );
    assert_eq!(
        patch("application/+json", body),
        Err(Invalid::MediaType("application/+json".into()))
    );
    // Optional body: absent is fine.
    assert_eq!(
        validate(
            &doc,
            item,
            &item["patch"],
            &request(&[("id", "1")], &none, None, b"")
        ),
        Ok(None)
    );

    // Files: media type only.
    let delete = |ct: &str, body: &[u8]| {
        validate(
            &doc,
            item,
            &item["delete"],
            &request(&[("id", "1")], &none, Some(ct), body),
        )
    };
    assert_eq!(
        delete("multipart/form-data; boundary=xyz", b"--xyz\r\n...not json"),
        Ok(None)
    );
    assert_eq!(delete("application/octet-stream", b"\x00\x01"), Ok(None));
    assert_eq!(
        delete("application/json", b"{}"),
        Err(Invalid::MediaType("application/json".into()))
    );
}

#[test]
fn bodies_parse_and_return() {
    assert_eq!(thing(r#"{"name": "n"}"#), Ok(Some(json!({"name": "n"}))));
    // readOnly members: not required, not checked.
    assert!(thing(r#"{"Name": "n", "Id": "not a number", "Created": 5}"#).is_ok());
    // Unknown members are ignored despite additionalProperties: false.
    assert!(thing(r#"{"Name": "n", "Whatever": [1, {"x": null}]}"#).is_ok());
    // Newtonsoft's conversions.
    let lenient = r#"{"Name": 12, "Count": "42", "Big": 9000000000, "Ratio": "2.5", "Flag": "True",
        "When": "2024-05-01T10:00:00", "Key": "0F8FAD5B-D9CB-469F-A165-70867728950E",
        "Blob": "aGVsbG8=", "Span": "1.02:03:04.5", "Color": "blue", "Colors": ["RED", 1],
        "Labels": {"a": 1, "b": "2"}, "Children": []}"#;
    assert!(thing(lenient).is_ok(), "{:?}", thing(lenient));
    assert!(thing(r#"{"Name": "n", "Count": 3.0, "Flag": 1, "When": null, "Count": ""}"#).is_ok());
    assert!(thing(r#"{"Name": true}"#).is_ok());
    // An integer without a format is 64 bits wide.
    assert!(thing(r#"{"Name": "n", "Labels": {"a": 9000000000}}"#).is_ok());
    assert_eq!(
        model(thing(
            r#"{"Name": "n", "Labels": {"a": 9223372036854775808}}"#
        )),
        vec![(
            "Labels.a".to_owned(),
            "JSON integer 9223372036854775808 is too large or small for an Int64. Path 'Labels.a'."
                .to_owned()
        )]
    );
}

#[test]
fn body_errors_name_the_member() {
    let cases: &[(&str, &str, &str)] = &[
        (r#"{}"#, "Name", "The Name field is required."),
        (r#"{"Name": null}"#, "Name", "The Name field is required."),
        (r#"{"Name": "n", "Count": "x"}"#, "Count", "Could not convert string to integer: x. Path 'Count'."),
        (r#"{"Name": "n", "Count": 2147483648}"#, "Count", "JSON integer 2147483648 is too large or small for an Int32. Path 'Count'."),
        (r#"{"Name": "n", "Count": 1e20}"#, "Count", "Could not convert to integer: 1e+20. Path 'Count'."),
        (r#"{"Name": "n", "Count": true}"#, "Count", "Error reading integer. Unexpected token: Boolean. Path 'Count'."),
        (r#"{"Name": "n", "Big": "9223372036854775808"}"#, "Big", "Could not convert string to integer: 9223372036854775808. Path 'Big'."),
        (r#"{"Name": "n", "Ratio": "x"}"#, "Ratio", "Could not convert string to double: x. Path 'Ratio'."),
        (r#"{"Name": "n", "Ratio": []}"#, "Ratio", "Error reading double. Unexpected token: StartArray. Path 'Ratio'."),
        (r#"{"Name": "n", "Flag": "yes"}"#, "Flag", "Could not convert string to boolean: yes. Path 'Flag'."),
        (r#"{"Name": "n", "Flag": {}}"#, "Flag", "Error reading boolean. Unexpected token: StartObject. Path 'Flag'."),
        (r#"{"Name": {}}"#, "Name", "Error reading string. Unexpected token: StartObject. Path 'Name'."),
        (r#"{"Name": "n", "When": "soon"}"#, "When", "Could not convert string to DateTime: soon. Path 'When'."),
        (r#"{"Name": "n", "When": 5}"#, "When", "Error reading date. Unexpected token: Integer. Path 'When'."),
        (r#"{"Name": "n", "Key": "xyz"}"#, "Key", "Error converting value \"xyz\" to type 'System.Guid'. Path 'Key'."),
        (r#"{"Name": "n", "Blob": "abc"}"#, "Blob", "The input is not a valid Base-64 string as it contains a non-base 64 character, more than two padding characters, or an illegal character among the padding characters. Path 'Blob'."),
        (r#"{"Name": "n", "Blob": 5}"#, "Blob", "Error reading bytes. Unexpected token: Integer. Path 'Blob'."),
        (r#"{"Name": "n", "Span": "25:00"}"#, "Span", "Error converting value \"25:00\" to type 'System.TimeSpan'. Path 'Span'."),
        (r#"{"Name": "n", "Color": "Purple"}"#, "Color", "Error converting value \"Purple\" to type 'Color'. Path 'Color'."),
        (r#"{"Name": "n", "Color": true}"#, "Color", "Error converting value true to type 'Color'. Path 'Color'."),
        (r#"{"Name": "n", "Colors": ["Red", "Green", "Mauve"]}"#, "Colors[2]", "Error converting value \"Mauve\" to type 'Color'. Path 'Colors[2]'."),
        (r#"{"Name": "n", "Colors": "Red"}"#, "Colors", "Error converting value \"Red\" to a collection. Path 'Colors'."),
        (r#"{"Name": "n", "Labels": {"a b": "x"}}"#, "Labels['a b']", "Could not convert string to integer: x. Path 'Labels['a b']'."),
        (r#"{"Name": "n", "Children": [{"Name": "a"}, {"Name": "b"}, {"Count": 1}]}"#, "Children[2].Name", "The Name field is required."),
        (r#"{"Name": "n", "Children": {}}"#, "Children", "Cannot deserialize the current JSON object (e.g. {\"name\":\"value\"}) into a collection because the type requires a JSON array (e.g. [1,2,3]) to deserialize correctly. Path 'Children'."),
        (r#"[1]"#, "body", "Cannot deserialize the current JSON array (e.g. [1,2,3]) into type 'Thing' because the type requires a JSON object (e.g. {\"name\":\"value\"}) to deserialize correctly. Path ''."),
        (r#""text""#, "body", "Error converting value \"text\" to type 'Thing'. Path ''."),
    ];
    for (body, member, message) in cases {
        assert_eq!(
            model(thing(body)),
            vec![((*member).to_owned(), (*message).to_owned())],
            "{body}"
        );
    }
    // Every error is reported, in a stable order.
    let entries = model(thing(r#"{"Count": "x", "Flag": "y"}"#));
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0].0, "Name");
}

#[test]
fn member_paths_like_newtonsoft() {
    let doc = inline();
    let mut checker = Checker::new(&doc);
    for name in ["A", "b-c", "$x", "", "a b", "it's", "x.y", "q\\r"] {
        let len = checker.push_member("Labels");
        checker.push_member(name);
        checker.fail(String::new());
        checker.path.truncate(len);
    }
    let keys: Vec<&str> = checker.errors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "Labels.A",
            "Labels.b-c",
            "Labels.$x",
            "Labels.",
            "Labels['a b']",
            "Labels['it\\'s']",
            "Labels['x.y']",
            "Labels['q\\\\r']"
        ]
    );
    assert_eq!(checker.path, "");
}

#[test]
fn array_bodies_index_from_the_root() {
    let doc = inline();
    let result = body_result(
        &doc,
        "/v4/Things/{id}",
        "post",
        r#"[{"Name": "a"}, {"Name": "b"}, {"Count": "z"}]"#,
    );
    assert_eq!(members(result), ["[2].Name", "[2].Count"]);
}

#[test]
fn combinators_and_cycles() {
    // allOf merges required lists; readOnly in one part exempts a member
    // required by another.
    assert_eq!(against("Merged", json!({"A": 1})), vec![]);
    let e = against("Merged", json!({"A": "x", "C": "maybe"}));
    assert_eq!(
        e.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>(),
        ["A", "C"]
    );
    assert_eq!(
        against("Merged", json!({}))[0],
        ("A".to_owned(), "The A field is required.".to_owned())
    );
    // oneOf: any alternative.
    assert!(against("Either", json!(5)).is_empty());
    assert!(against("Either", json!({"X": "x"})).is_empty());
    assert!(!against("Either", json!(true)).is_empty());
    // Reference cycles accept anything (nothing to check against) and end.
    assert!(against("Loop", json!({"a": 1})).is_empty());
    assert!(against("Ping", json!([1, 2])).is_empty());
    assert_eq!(against("SelfAll", json!({})).len(), 1);
    assert!(against("SelfOne", json!({"B": 1})).is_empty());
    assert!(!against("SelfOne", json!({})).is_empty());
    // A recursive schema follows the body as deep as it goes.
    let mut deep = json!({"Kids": []});
    for _ in 0..60 {
        deep = json!({"Kids": [deep]});
    }
    assert!(against("Tree", deep.clone()).is_empty());
    let mut bad = json!({});
    for _ in 0..3 {
        bad = json!({"Kids": [{"Kids": []}, bad]});
    }
    assert_eq!(
        against("Tree", bad),
        vec![(
            "Kids[1].Kids[1].Kids[1].Kids".to_owned(),
            "The Kids field is required.".to_owned()
        )]
    );
    // A dangling reference checks nothing.
    let doc = inline();
    let (missing, elsewhere) = (
        json!({"$ref": "#/components/schemas/Missing"}),
        json!({"$ref": "http://elsewhere/x"}),
    );
    let mut checker = Checker::new(&doc);
    checker.check(&missing, &json!(1), 0);
    checker.check(&elsewhere, &json!(1), 0);
    assert!(checker.errors.is_empty());
}

#[test]
fn references_resolve_by_pointer() {
    let doc =
        json!({"a/b": {"c": [1, {"d": 2}]}, "x": {"$ref": "#/x"}, "y": {"$ref": "#/a~1b/c/1"}});
    assert_eq!(lookup(&doc, "#/a~1b/c/1/d"), Some(&json!(2)));
    assert_eq!(lookup(&doc, "#"), Some(&doc));
    assert_eq!(lookup(&doc, "#/a~1b/c/7"), None);
    assert_eq!(lookup(&doc, "#/a~1b/c/one"), None);
    assert_eq!(lookup(&doc, "#/x/$ref/deeper"), None);
    assert_eq!(lookup(&doc, "other.json#/x"), None);
    assert_eq!(lookup(&doc, "#x"), None);
    assert_eq!(resolve(&doc, &doc["x"]), None);
    assert_eq!(resolve(&doc, &doc["y"]), Some(&json!({"d": 2})));
}

#[test]
fn error_bodies() {
    let invalid = Invalid::Model(vec![
        ("Name".into(), "one".into()),
        ("Children[0].Name".into(), "two".into()),
        ("Name".into(), "three".into()),
    ]);
    assert_eq!(invalid.status(), 400);
    assert_eq!(
        invalid.body(),
        json!({"Code": 70000, "Message": "The request is invalid.", "InnerError": null,
               "ModelState": {"Name": ["one", "three"], "Children[0].Name": ["two"]}})
    );
    let media = Invalid::MediaType("text/plain".into());
    assert_eq!(media.status(), 415);
    assert_eq!(
        media.body(),
        json!({"Code": 70002, "Message": "The request entity's media type 'text/plain' is not supported for this resource.", "InnerError": null})
    );
    assert_eq!(
        Invalid::MediaType(String::new()).body()["Message"],
        "The request entity's media type 'text/plain' is not supported for this resource."
    );
}

#[test]
fn scalar_parsers() {
    for ok in [
        "00:00",
        "23:59:59",
        "1.00:00:00",
        "-1.02:03:04.1234567",
        "12",
        "00:00:01.5",
    ] {
        assert!(is_time_span(ok), "{ok}");
    }
    for bad in [
        "",
        "24:00",
        "1:2:3:4",
        "a.00:00",
        "00:00:00.12345678",
        "00:60",
        "1.",
    ] {
        assert!(!is_time_span(bad), "{bad}");
    }
    for ok in ["", "aGVsbG8=", "aGVsbA==", "aGVs bG8h"] {
        assert!(is_base64(ok), "{ok}");
    }
    for bad in ["a", "aGVsbG8", "aGVsbG8=x", "a===", "****"] {
        assert!(!is_base64(bad), "{bad}");
    }
    for bad in [
        "2024-05-01T",
        "2024-5-01",
        "2024-05-01T10",
        "2024-05-01T10:00+2",
        "2024-05-01X10:00",
        "é024-05-01",
        "2024-05-01T10:00:00+02:0x",
    ] {
        assert!(!is_date_time(bad), "{bad}");
    }
    assert!(is_date_time("2024-05-01T10:00:00-0500"));
    assert!(!is_guid("(0f8fad5b-d9cb-469f-a165-70867728950e"));
    assert!(is_guid("(0f8fad5b-d9cb-469f-a165-70867728950e)"));
    assert!(!is_guid("{0f8fad5bd9cb469fa16570867728950e}"));
}

// ---------------------------------------------------------------------------
// The vendor's documents

/// One of the vendor's documents from `../shared/openapi/` next to the
/// repository, parsed once; `None` (with a note) when absent.
fn vendor(name: &str) -> Option<&'static Value> {
    static CORE: OnceLock<Option<Value>> = OnceLock::new();
    static APPLIANCE: OnceLock<Option<Value>> = OnceLock::new();
    let cell = match name {
        "core" => &CORE,
        _ => &APPLIANCE,
    };
    cell.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/openapi")
            .join(format!("{name}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => {
                Some(serde_json::from_slice(&bytes).expect("the vendor's document parses"))
            }
            Err(_) => {
                eprintln!(
                    "note: {} is absent; skipping the real-document checks",
                    path.display()
                );
                None
            }
        }
    })
    .as_ref()
}

#[test]
fn real_users_post() {
    let Some(core) = vendor("core") else { return };
    let post = |body: &str| body_result(core, "/v4/Users", "post", body);
    assert!(post(r#"{"Name": "jdoe", "PrimaryAuthenticationProvider": {"Id": -1}}"#).is_ok());
    assert_eq!(
        model(post("{}")),
        vec![("Name".to_owned(), "The Name field is required.".to_owned())]
    );
    // Read-only members are ignored: CloudAssistantApproveEnabled is readOnly.
    assert!(post(r#"{"Name": "jdoe", "CloudAssistantApproveEnabled": "not a bool"}"#).is_ok());
    assert_eq!(
        members(post(
            r#"{"Name": "jdoe", "PrimaryAuthenticationProvider": {}}"#
        )),
        ["PrimaryAuthenticationProvider.Id"]
    );
    assert!(post(r#"{"name": "jdoe", "adminroles": ["auditor", "GlobalAdmin"]}"#).is_ok());
    assert_eq!(
        model(post(
            r#"{"Name": "jdoe", "AdminRoles": ["Auditor", "Janitor"]}"#
        )),
        vec![(
            "AdminRoles[1]".to_owned(),
            "Error converting value \"Janitor\" to type 'AdminRoleName'. Path 'AdminRoles[1]'."
                .to_owned()
        )]
    );
    let mut found = members(post(
        r#"{"Name": "jdoe", "LastLoginDate": "2024-13-01T00:00:00Z", "Disabled": "no"}"#,
    ));
    found.sort();
    assert_eq!(found, ["Disabled", "LastLoginDate"]);
    let core_item = &core["paths"]["/v4/Users"];
    assert_eq!(
        validate(
            core,
            core_item,
            &core_item["post"],
            &request(&[], &[], Some("text/plain"), b"{}")
        ),
        Err(Invalid::MediaType("text/plain".into()))
    );
}

#[test]
fn real_nested_conditions_and_dates() {
    let Some(core) = vendor("core") else { return };
    let group = |children: &str| {
        format!(
            r#"{{"Name": "g", "IsDynamic": true, "GroupingRule": {{"Enabled": true, "RuleConditionGroup": {{"LogicalJoinType": "and", "Children": {children}}}}}}}"#
        )
    };
    let condition = r#"{"TaggingGroupingCondition": {"ObjectAttribute": "Name", "CompareType": "Contains", "CompareValue": "x"}}"#;
    let ok = group(&format!("[{condition}, {condition}]"));
    assert!(
        body_result(core, "/v4/AccountGroups", "post", &ok).is_ok(),
        "{:?}",
        body_result(core, "/v4/AccountGroups", "post", &ok)
    );
    // TaggingGroupingConditionGroup requires Children.
    let no_children =
        r#"{"Name": "g", "GroupingRule": {"RuleConditionGroup": {"LogicalJoinType": "Or"}}}"#;
    assert_eq!(
        model(body_result(core, "/v4/AccountGroups", "post", no_children)),
        vec![(
            "GroupingRule.RuleConditionGroup.Children".to_owned(),
            "The Children field is required.".to_owned()
        )]
    );
    // A bad element deep in the array.
    let bad = group(&format!(
        r#"[{condition}, {condition}, {{"TaggingGroupingCondition": {{"ObjectAttribute": "Name"}}}}]"#
    ));
    assert_eq!(
        members(body_result(core, "/v4/AccountGroups", "post", &bad)),
        ["GroupingRule.RuleConditionGroup.Children[2].TaggingGroupingCondition.CompareType"]
    );
    let bad_join = group("[]").replace("\"and\"", "\"Xor\"");
    assert_eq!(
        members(body_result(core, "/v4/AccountGroups", "post", &bad_join)),
        ["GroupingRule.RuleConditionGroup.LogicalJoinType"]
    );

    // A date-time member, in an array of objects.
    let batch = r#"[{"AssetId": 1, "AccountId": 2, "AccessRequestType": "Password", "RequestedFor": "2024-05-01T10:00:00Z"},
                    {"AssetId": 1, "AccessRequestType": "password", "RequestedFor": null},
                    {"AssetId": 1, "AccessRequestType": "Password", "RequestedFor": "tomorrow"}]"#;
    assert_eq!(
        members(body_result(
            core,
            "/v4/AccessRequests/BatchCreate",
            "post",
            batch
        )),
        ["[2].RequestedFor"]
    );
}

#[test]
fn real_parameters() {
    let Some(core) = vendor("core") else { return };
    let item = &core["paths"]["/v4/Users"];
    let get = |pairs: &[(&str, &str)]| {
        validate(
            core,
            item,
            &item["get"],
            &request(&[], &q(pairs), None, b""),
        )
    };
    assert_eq!(
        get(&[
            ("limit", "10"),
            ("Count", "true"),
            ("filter", "Name eq 'x'"),
            ("x", "y")
        ]),
        Ok(None)
    );
    assert_eq!(
        members(get(&[("limit", "ten"), ("page", "1"), ("count", "maybe")])),
        ["limit", "count"]
    );

    let item = &core["paths"]["/v4/Users/{id}/Roles/{operation}"];
    let op = &item["post"];
    let call = |id: &str, operation: &str| {
        validate(
            core,
            item,
            op,
            &request(
                &[("id", id), ("operation", operation)],
                &[],
                Some("application/json"),
                b"[]",
            ),
        )
    };
    assert!(call("5", "add").is_ok());
    assert_eq!(members(call("x", "Append")), ["id", "operation"]);

    let item = &core["paths"]["/v4/AuditLog/Logins"];
    let get = |since: &str| {
        validate(
            core,
            item,
            &item["get"],
            &request(&[], &q(&[("startDate", since)]), None, b""),
        )
    };
    assert!(get("2024-05-01T00:00:00Z").is_ok());
    assert!(get("2024-05-01").is_ok());
    assert_eq!(members(get("last week")), ["startDate"]);

    let Some(appliance) = vendor("appliance") else {
        return;
    };
    let item = &appliance["paths"]["/v4/Backups"];
    if let Some(op) = item.get("post") {
        // Whatever the operation takes, a request without parameters or body
        // must not panic.
        let _ = validate(appliance, item, op, &request(&[], &[], None, b""));
    }
}

/// A valid text for a parameter of `schema` (a scalar, or an array of them).
fn sample_text(document: &Value, schema: &Value) -> String {
    match sample(document, schema, 0) {
        Value::String(s) => s,
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// A minimal valid value of `schema`: required (not read-only) members only,
/// one element per array, the first enum name, a sample of each format.
fn sample(document: &Value, schema: &Value, depth: usize) -> Value {
    let mut slots = Parts::default();
    let parts = parts_of(document, schema, &mut slots);
    let Some(facts) = Facts::of(parts) else {
        return json!({});
    };
    if let Some(options) = facts.enumeration {
        return options.first().cloned().unwrap_or(Value::Null);
    }
    match facts.kind() {
        Some("object") => {
            let mut out = Map::new();
            for part in parts {
                let required = part
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten();
                for name in required.filter_map(Value::as_str) {
                    let property = parts.iter().find_map(|p| p.get("properties")?.get(name));
                    if let Some(property) = property.filter(|p| !is_read_only(document, p)) {
                        out.insert(name.to_owned(), sample(document, property, depth + 1));
                    } else if property.is_none() {
                        out.insert(name.to_owned(), json!("x"));
                    }
                }
            }
            Value::Object(out)
        }
        Some("array") if depth < 8 => match facts.items {
            Some(items) => json!([sample(document, items, depth + 1)]),
            None => json!([]),
        },
        Some("array") => json!([]),
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some("string") => match facts.format {
            Some("date-time") => json!("2024-05-01T10:00:00Z"),
            Some("uuid") => json!("0f8fad5b-d9cb-469f-a165-70867728950e"),
            Some("byte") => json!("aGVsbG8="),
            Some("date-span") => json!("01:00:00"),
            _ => json!("x"),
        },
        _ => json!({}),
    }
}

/// Every operation of the vendor's documents accepts a request built from its
/// own schemas (every parameter, a minimal body in its first media type), and
/// refuses a non-numeric value for an integer path parameter: the validator
/// is never stricter than the documents.
#[test]
fn real_every_operation_accepts_its_own_sample() {
    let mut checked = 0;
    let mut refused = 0;
    for name in ["core", "appliance"] {
        let Some(doc) = vendor(name) else { return };
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                let params: Vec<&Value> = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .collect();
                let mut path_values = Vec::new();
                let mut query = Vec::new();
                for p in &params {
                    let pname = p["name"].as_str().unwrap();
                    let text = sample_text(doc, &p["schema"]);
                    match p["in"].as_str() {
                        Some("path") => path_values.push((pname.to_owned(), text)),
                        Some("query") => query.push((pname.to_owned(), text)),
                        _ => {}
                    }
                }
                let (ct, body) = match op
                    .get("requestBody")
                    .and_then(|rb| rb["content"].as_object())
                {
                    Some(content) => {
                        let (key, media) = content.iter().next().unwrap();
                        let body = if is_json_media(key) {
                            sample(doc, &media["schema"], 0).to_string().into_bytes()
                        } else {
                            b"raw file bytes".to_vec()
                        };
                        (Some(key.replace("*", "vnd.x")), body)
                    }
                    None => (None, Vec::new()),
                };
                let path_params: Vec<(&str, &str)> = path_values
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let result = validate(
                    doc,
                    item,
                    op,
                    &request(&path_params, &query, ct.as_deref(), &body),
                );
                assert!(
                    result.is_ok(),
                    "{name} {method} {path}: {result:?} for {}",
                    String::from_utf8_lossy(&body)
                );
                checked += 1;

                // An integer path parameter given a word.
                if let Some((pname, _)) = path_values.iter().find(|(n, _)| {
                    params
                        .iter()
                        .any(|p| p["name"] == **n && sample(doc, &p["schema"], 0).is_i64())
                }) {
                    let broken: Vec<(&str, &str)> = path_params
                        .iter()
                        .map(|(n, v)| if n == pname { (*n, "word") } else { (*n, *v) })
                        .collect();
                    let result = validate(
                        doc,
                        item,
                        op,
                        &request(&broken, &query, ct.as_deref(), &body),
                    );
                    assert_eq!(members(result), [pname.as_str()], "{name} {method} {path}");
                    refused += 1;
                }
            }
        }
    }
    if checked > 0 {
        eprintln!("{checked} operations accept their own sample; {refused} refuse a bad integer path parameter");
        assert!(checked > 1000, "{checked}");
        assert!(refused > 500, "{refused}");
    }
}

/// Every operation of the real documents with an empty request, an empty JSON
/// object and garbage: no panic, and a verdict every time.
#[test]
fn real_every_operation_survives() {
    for name in ["core", "appliance"] {
        let Some(doc) = vendor(name) else { return };
        let mut count = 0;
        for (_, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                for (ct, body) in [
                    (None, &b""[..]),
                    (Some("application/json"), b"{}"),
                    (Some("application/json"), b"[{\"Id\": \"x\"}]"),
                ] {
                    let _ = validate(
                        doc,
                        item,
                        op,
                        &request(&[("id", "1")], &q(&[("limit", "x")]), ct, body),
                    );
                }
                count += 1;
            }
        }
        assert!(count > 10, "{name}: {count} operations");
    }
}

// ---------------------------------------------------------------------------
// Property tests

/// Arbitrary JSON values, nested a few levels, with member names from the
/// schemas so that the interesting paths are reached.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9 :.,+{}()\\-]{0,24}".prop_map(Value::String),
        prop::sample::select(vec!["Red", "2024-05-01T10:00:00Z", "aGVsbG8=", "Name", ""])
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        let key = prop_oneof![
            prop::sample::select(vec![
                "Name",
                "Children",
                "Kids",
                "Count",
                "Colors",
                "Labels",
                "GroupingRule",
                "RuleConditionGroup",
                "TaggingGroupingCondition",
                "TaggingGroupingConditionGroup",
                "AdminRoles",
                "PrimaryAuthenticationProvider",
                "Id",
                "X",
                "A",
                "B",
                "$ref",
                "allOf",
                "oneOf",
                "type",
                "items",
                "properties",
                "required",
            ])
            .prop_map(str::to_owned),
            "[a-z]{1,3}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inline_schemas_never_panic(value in arb_json()) {
        for name in ["Thing", "Tree", "Merged", "Either", "Loop", "Ping", "SelfAll", "SelfOne"] {
            let errors = against(name, value.clone());
            prop_assert!(errors.len() <= MAX_ERRORS);
        }
        let text = value.to_string();
        let _ = thing(&text);
        let _ = body_result(&inline(), "/v4/Things/{id}", "post", &text);
    }

    #[test]
    fn real_schemas_never_panic(value in arb_json()) {
        let Some(core) = vendor("core") else { return Ok(()) };
        let text = value.to_string();
        for path in ["/v4/Users", "/v4/AccountGroups", "/v4/AccessRequests/BatchCreate", "/v4/AccessPolicies"] {
            let result = body_result(core, path, "post", &text);
            if let Err(invalid) = result {
                prop_assert_eq!(invalid.status(), 400);
                let body = invalid.body();
                prop_assert!(body["ModelState"].as_object().is_some_and(|m| !m.is_empty()));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_and_parameters_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..64),
        ct in prop_oneof![Just(None), Just(Some("application/json".to_owned())), "[ -~]{0,20}".prop_map(Some)],
        value in "\\PC{0,12}",
    ) {
        let doc = inline();
        let item = &doc["paths"]["/v4/Things/{id}"];
        let query = q(&[("limit", value.as_str()), ("since", value.as_str()), ("color", value.as_str()),
                        ("ids", value.as_str()), ("key", value.as_str()), ("must", value.as_str())]);
        let params = [("id", value.as_str())];
        for method in ["get", "put", "post", "patch", "delete"] {
            let _ = validate(&doc, item, &item[method], &request(&params, &query, ct.as_deref(), &body));
        }
    }

    #[test]
    fn arbitrary_schemas_never_panic(schema in arb_json(), value in arb_json()) {
        // A document whose only schema is arbitrary JSON, referring to itself.
        let doc = json!({"components": {"schemas": {"S": schema.clone()}}});
        let by_ref = json!({"$ref": "#/components/schemas/S"});
        let mut checker = Checker::new(&doc);
        checker.check(&schema, &value, 0);
        checker.check(&by_ref, &value, 0);
        prop_assert!(checker.errors.len() <= MAX_ERRORS);
    }
}

/// Pathological documents: wide `oneOf` fan-out over deep bodies ends within
/// the budget.
#[test]
fn budget_bounds_fan_out() {
    let doc = json!({"components": {"schemas": {
        "F": {"oneOf": [
            {"type": "array", "items": {"$ref": "#/components/schemas/F"}},
            {"type": "array", "items": {"$ref": "#/components/schemas/F"}},
            {"type": "array", "items": {"$ref": "#/components/schemas/F"}},
            {"type": "integer"}
        ]}
    }}});
    let mut value = json!("leaf");
    for _ in 0..40 {
        value = json!([value]);
    }
    let by_ref = json!({"$ref": "#/components/schemas/F"});
    let mut checker = Checker::new(&doc);
    checker.check(&by_ref, &value, 0);
    assert_eq!(checker.budget, 0);
}
