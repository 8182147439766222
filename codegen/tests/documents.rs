//! Every operation of the real appliance documents (and the project's a2a
//! document) generates; none is dropped.

use std::path::PathBuf;

use safeguard_codegen::{generate, read_document, Style};

fn doc_path(file: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        std::env::var_os("SAFEGUARD_OPENAPI_DIR").map(PathBuf::from),
        Some(root.join("openapi")),
        Some(root.join("..").join("shared").join("openapi")),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.join(file))
    .find(|p| p.is_file())
}

#[test]
fn all_operations_generate_and_none_is_dropped() {
    let expected = [
        ("core", 962),
        ("appliance", 100),
        ("notification", 6),
        ("a2a", 4),
    ];
    let mut total = 0;
    for (service, count) in expected {
        let path = doc_path(&format!("{service}.json"))
            .unwrap_or_else(|| panic!("{service}.json is not in any document location"));
        let doc = read_document(&path).unwrap();
        let in_doc = safeguard_codegen::normalize::operations(&doc).count();
        let generated = generate(service, doc, Style::Builder).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            generated.operations_kept, in_doc,
            "{service}: an operation was dropped"
        );
        assert_eq!(in_doc, count, "{service}: the document changed");
        // Every operation has a builder whose `send` goes through the
        // shared sending future.
        let sends = generated.client.matches(" fn send(").count();
        assert_eq!(sends, in_doc, "{service}: generated operation builders");
        assert_eq!(
            generated.shared_sends, in_doc,
            "{service}: a send kept progenitor's own body"
        );
        // ...and sets its api-version header on the request builder, without
        // a header map of its own.
        assert!(
            !generated.client.contains("header_map"),
            "{service}: a request kept progenitor's header map"
        );
        assert_eq!(
            generated
                .client
                .matches("from_static(\"api-version\")")
                .count(),
            in_doc,
            "{service}: every request carries api-version"
        );
        total += in_doc;
        eprint!("{}", generated.summary());
    }
    assert_eq!(total, 1072);
}

/// Every array a document requires is found by rule 9 and sent even when
/// empty by the generated types; the build report counts them per document.
#[test]
fn required_arrays_are_found_and_sent_when_empty() {
    let expected: [(&str, &[(&str, &str)]); 4] = [
        (
            "core",
            &[
                ("NetworkDiscoveryProperties", "ScanRules"),
                ("TaggingGroupingConditionGroup", "Children"),
            ],
        ),
        ("appliance", &[]),
        ("notification", &[]),
        ("a2a", &[]),
    ];
    for (service, fields) in expected {
        let path = doc_path(&format!("{service}.json"))
            .unwrap_or_else(|| panic!("{service}.json is not in any document location"));
        let doc = read_document(&path).unwrap();
        let generated = generate(service, doc, Style::Builder).unwrap_or_else(|e| panic!("{e}"));
        let found: Vec<(&str, &str)> = generated
            .report
            .required_arrays
            .iter()
            .map(|(t, p)| (t.as_str(), p.as_str()))
            .collect();
        assert_eq!(found, fields, "{service}: required arrays");
        let line = format!(
            "rule 9 required arrays sent even when empty: {}",
            fields.len()
        );
        let summary = generated.summary();
        assert!(summary.contains(&line), "{service}: {summary}");
        assert_eq!(
            generated.required_arrays_sent,
            fields.len(),
            "{service}: a required array was not found in the generated types"
        );
        // Those fields keep `default` and lose `skip_serializing_if`.
        let flat: String = generated.types.split_whitespace().collect();
        for (_, prop) in fields {
            let attr = format!(r#"#[serde(rename="{prop}",default)]"#);
            assert!(flat.contains(&attr), "{service}: {attr} missing");
        }
        eprintln!("{service}: {line} {found:?}");
    }
}
