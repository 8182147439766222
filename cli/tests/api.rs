//! `safeguard api METHOD SERVICE/PATH`: query pairs, headers, bodies from a
//! file or stdin, `--raw`, and the anonymous notification and management
//! services.

mod common;

use common::Emu;
use serde_json::json;

#[test]
fn any_endpoint_with_query_headers_and_bodies() {
    let emu = Emu::start();
    emu.login_admin();
    let me = emu
        .run(&["api", "GET", "core/Me", "-q", "fields=Id,Name"])
        .json();
    assert_eq!(me, json!({"Id": 1, "Name": "Admin"}));

    // A query in the target and with -q; a filter with spaces and quotes.
    let users = emu
        .run(&[
            "api",
            "get",
            "core/Users?fields=Name",
            "-q",
            "filter=Name eq 'Admin'",
        ])
        .json();
    assert_eq!(users, json!([{"Name": "Admin"}]));

    // A body from stdin, then from a file.
    let created = emu
        .run_with_stdin(
            &[
                "api",
                "POST",
                "core/Users",
                "--body",
                "-",
                "-H",
                "X-Trace: cli-test",
            ],
            &json!({"Name": "api-user", "PrimaryAuthenticationProvider": {"Id": -1}}).to_string(),
        )
        .json();
    assert_eq!(created["Name"], "api-user");
    let id = created["Id"].as_i64().unwrap();
    let file = emu.config_dir().join("update.json");
    let mut user = created.clone();
    user["Description"] = json!("via api");
    std::fs::write(&file, user.to_string()).unwrap();
    let updated = emu
        .run(&[
            "api",
            "PUT",
            &format!("core/Users/{id}"),
            "--body",
            file.to_str().unwrap(),
        ])
        .json();
    assert_eq!(updated["Description"], "via api");

    // --raw: the bytes as the appliance sent them, even on a terminal.
    let raw = emu.run(&[
        "api",
        "GET",
        &format!("core/Users/{id}"),
        "--raw",
        "-q",
        "fields=Description",
    ]);
    assert_eq!(raw.ok(), r#"{"Description":"via api"}"#);

    let deleted = emu.run(&["api", "DELETE", &format!("core/Users/{id}")]);
    assert_eq!(deleted.ok(), "");
    emu.run(&["api", "GET", &format!("core/Users/{id}")])
        .fails_with(5);
}

#[test]
fn the_notification_service_needs_no_sign_in() {
    let emu = Emu::start();
    let ca = emu.ca().display().to_string();
    let status = emu
        .run(&[
            "--host",
            &emu.host(),
            "--ca",
            &ca,
            "notification",
            "status",
            "get",
        ])
        .json();
    assert!(status.is_object(), "{status}");
    let state = emu
        .run(&[
            "--host",
            &emu.host(),
            "--ca",
            &ca,
            "api",
            "GET",
            "notification/Status/State",
        ])
        .ok()
        .to_owned();
    assert!(!state.is_empty());
}

#[test]
fn the_management_service_needs_no_sign_in() {
    let emu = Emu::start();
    let ca = emu.ca().display().to_string();
    let status = emu
        .run(&[
            "--host",
            &emu.host(),
            "--ca",
            &ca,
            "api",
            "GET",
            "management/ApplianceStatus",
        ])
        .json();
    assert_eq!(status["ApplianceCurrentState"], "Online", "{status}");
}
