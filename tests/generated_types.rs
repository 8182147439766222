//! The generated types decode what a newer or odder appliance sends:
//! unknown fields, unknown enum values, date-times without an offset, values
//! outside the documents' validations, and `fields=` partial objects.
#![cfg(feature = "core")]

use safeguard_sdk::api::core::types::{
    AdminRoleName, NetworkDiscoveryProperties, TaggingGroupingConditionGroup, User,
};
use serde_json::json;

/// A user as the appliance returns it, with a field this SDK has never seen.
fn realistic_user() -> serde_json::Value {
    json!({
        "Id": 42,
        "Name": "jdoe",
        "DisplayName": "John Doe",
        "Description": null,
        "PrimaryAuthenticationProvider": {
            "Id": -1, "TypeReferenceName": "Local", "Name": "Local", "RstsProviderId": "local", "Identity": null
        },
        "AdminRoles": ["GlobalAdmin", "Auditor"],
        "Disabled": false,
        "Locked": false,
        "CreatedDate": "2024-03-01T10:20:30.1234567Z",
        "LastLoginDate": "2024-03-02T08:00:00",
        "TimeZoneId": "UTC",
        "FieldAddedInSpp9": { "nested": [1, 2, 3] }
    })
}

#[test]
fn unknown_fields_are_ignored() {
    let user: User = serde_json::from_value(realistic_user()).expect("decodes");
    assert_eq!(user.id, Some(42));
    assert_eq!(user.name.as_deref(), Some("jdoe"));
}

#[test]
fn unknown_enum_values_are_kept() {
    let mut v = realistic_user();
    v["AdminRoles"] = json!(["GlobalAdmin", "QuantumAdmin"]);
    let user: User = serde_json::from_value(v).expect("decodes");
    let roles = user.admin_roles.expect("roles");
    assert!(matches!(roles[0], AdminRoleName::Known(_)), "{roles:?}");
    assert!(
        matches!(&roles[1], AdminRoleName::Other(s) if s == "QuantumAdmin"),
        "{roles:?}"
    );
    assert_eq!(roles[0].to_string(), "GlobalAdmin");
    assert_eq!(roles[1].to_string(), "QuantumAdmin");
    // And they are sent back as they came.
    let back = serde_json::to_value(&roles).unwrap();
    assert_eq!(back, json!(["GlobalAdmin", "QuantumAdmin"]));
}

#[test]
fn date_times_without_an_offset_are_accepted() {
    let user: User = serde_json::from_value(realistic_user()).expect("decodes");
    let last = user.last_login_date.expect("a date");
    assert_eq!(last.as_str(), "2024-03-02T08:00:00");
    assert_eq!(
        last.to_utc().unwrap().to_rfc3339(),
        "2024-03-02T08:00:00+00:00"
    );
    let created = user.created_date.expect("a date");
    assert_eq!(created.to_utc().unwrap().timestamp(), 1_709_288_430);
}

#[test]
fn values_outside_the_documents_validations_are_accepted() {
    // The document says Name is 1..=255 characters and WorkPhone at most 30.
    let mut v = realistic_user();
    v["Name"] = json!("x".repeat(1000));
    v["WorkPhone"] = json!("+1 (555) 0100 extension 12345678901234567890");
    v["Description"] = json!("");
    let user: User = serde_json::from_value(v).expect("decodes");
    assert_eq!(user.name.unwrap().len(), 1000);
}

#[test]
fn partial_objects_from_fields_decode() {
    let user: User = serde_json::from_value(json!({ "Id": 7 })).expect("decodes");
    assert_eq!(user.id, Some(7));
    assert!(user.name.is_none());
    let users: Vec<User> =
        serde_json::from_value(json!([{ "Name": "a" }, { "DisplayName": "B" }])).unwrap();
    assert_eq!(users.len(), 2);
}

#[test]
fn generated_types_describe_themselves_as_json_schema() {
    let schema = schemars::schema_for!(User);
    let text = serde_json::to_string(&schema).unwrap();
    assert!(text.contains("AdminRoles"), "{text}");
}

#[test]
#[cfg(all(feature = "appliance", feature = "notification", feature = "a2a"))]
fn the_build_reports_every_operation_kept_and_every_type_decoded_lean() {
    let report = safeguard_sdk::api::codegen_report();
    for line in [
        "core: 962 operations kept",
        "appliance: 100 operations kept",
        "notification: 6 operations kept",
        "a2a: 4 operations kept",
        "sends through the shared future: 962 of 962 operations",
        // Every schema type's Deserialize is the lean one: none kept serde's derive.
        "lean Deserialize: 429 structs, 134 string enums, 134 tolerant enums (0 kept the derive)",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
}

#[test]
fn decoded_types_serialize_back_and_decode_the_same() {
    let user: User = serde_json::from_value(realistic_user()).unwrap();
    let once = serde_json::to_value(&user).unwrap();
    let again: User = serde_json::from_value(once.clone()).unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap(), once);
    assert_eq!(once["AdminRoles"], realistic_user()["AdminRoles"]);
}

#[test]
fn a_field_of_the_wrong_type_is_an_error_naming_what_was_expected() {
    let err = serde_json::from_value::<User>(json!({ "Id": "seven" })).unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
    let err = serde_json::from_value::<User>(json!(["not", "an", "object"])).unwrap_err();
    assert!(err.to_string().contains("a User object"), "{err}");
}

/// An array the document requires (a condition group's `Children`, the
/// discovery properties' `ScanRules`) is sent even when empty, and still
/// decodes when missing.
#[test]
fn required_arrays_are_sent_even_when_empty() {
    let group = TaggingGroupingConditionGroup {
        children: vec![],
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&group).unwrap(),
        json!({ "Children": [] })
    );
    let discovery = NetworkDiscoveryProperties {
        scan_rules: vec![],
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&discovery).unwrap(),
        json!({ "ScanRules": [] })
    );
    let decoded: TaggingGroupingConditionGroup = serde_json::from_value(json!({})).unwrap();
    assert!(decoded.children.is_empty());
    let decoded: NetworkDiscoveryProperties = serde_json::from_value(json!({})).unwrap();
    assert!(decoded.scan_rules.is_empty());
    // The core build found both, and the report says so.
    let report = safeguard_sdk::api::core::CODEGEN_REPORT;
    for line in [
        "rule 9 required arrays sent even when empty: 2",
        "required arrays sent even when empty: 2 of 2 fields",
    ] {
        assert!(report.contains(line), "{line:?} missing from:\n{report}");
    }
    for line in report.lines().filter(|l| l.contains("required arrays")) {
        eprintln!("{line}");
    }
}
