//! `safeguard sps`: sign-in (kept across commands), the configuration tree,
//! a transaction opened, changed and committed by separate commands, a
//! rollback, and a session search.

mod common;

use common::Emu;
use serde_json::json;

#[test]
fn a_transaction_spans_several_commands() {
    let emu = Emu::start();
    let sps = emu.emu.connection().sps.clone();
    let ca = emu.ca().display().to_string();
    emu.run_with_stdin(
        &[
            "sps",
            "login",
            &sps.host,
            "--ca",
            &ca,
            "--user",
            &sps.user,
            "--password-stdin",
        ],
        &format!("{}\n", sps.password),
    )
    .ok();
    let tree = emu.run(&["sps", "get", "configuration"]).json();
    assert!(
        tree["items"].as_array().is_some_and(|i| !i.is_empty()),
        "{tree}"
    );

    emu.run(&["sps", "transaction", "open"]).ok();
    assert_eq!(
        emu.run(&["sps", "transaction", "status"]).json()["body"]["status"],
        "open"
    );
    let created = emu
        .run_with_stdin(
            &[
                "sps",
                "post",
                "configuration/policies/time_policies",
                "--body",
                "-",
            ],
            &json!({"name": "cli-tp", "days": []}).to_string(),
        )
        .json();
    let key = created["key"].as_str().expect("a key").to_owned();
    let changes = emu.run(&["sps", "transaction", "changes"]).json();
    assert_eq!(changes["changes"][0]["type"], "create", "{changes}");
    emu.run(&["sps", "transaction", "commit", "-m", "add cli-tp"])
        .ok();
    assert_eq!(
        emu.run(&["sps", "transaction", "status"]).json()["body"]["status"],
        "closed"
    );
    let tp = emu
        .run(&[
            "sps",
            "get",
            &format!("configuration/policies/time_policies/{key}"),
        ])
        .json();
    assert_eq!(tp["body"]["name"], "cli-tp");

    // A change rolled back is gone.
    emu.run(&["sps", "transaction", "open"]).ok();
    let file = emu.config_dir().join("tp.json");
    std::fs::write(&file, json!({"name": "cli-tp-2", "days": []}).to_string()).unwrap();
    let other = emu
        .run(&[
            "sps",
            "post",
            "configuration/policies/time_policies",
            "--body",
            file.to_str().unwrap(),
        ])
        .json();
    emu.run(&["sps", "transaction", "rollback"]).ok();
    emu.run(&[
        "sps",
        "get",
        &format!(
            "configuration/policies/time_policies/{}",
            other["key"].as_str().unwrap()
        ),
    ])
    .fails_with(5);

    // A put and a delete, committed.
    emu.run(&["sps", "transaction", "open"]).ok();
    std::fs::write(
        &file,
        json!({"name": "cli-tp-renamed", "days": []}).to_string(),
    )
    .unwrap();
    emu.run(&[
        "sps",
        "put",
        &format!("configuration/policies/time_policies/{key}"),
        "--body",
        file.to_str().unwrap(),
    ])
    .ok();
    emu.run(&["sps", "transaction", "commit", "-m", "rename"])
        .ok();
    let tp = emu
        .run(&[
            "sps",
            "get",
            &format!("configuration/policies/time_policies/{key}"),
        ])
        .json();
    assert_eq!(tp["body"]["name"], "cli-tp-renamed");
    emu.run(&["sps", "transaction", "open"]).ok();
    emu.run(&[
        "sps",
        "delete",
        &format!("configuration/policies/time_policies/{key}"),
    ])
    .ok();
    emu.run(&["sps", "transaction", "commit", "-m", "remove"])
        .ok();
    emu.run(&[
        "sps",
        "get",
        &format!("configuration/policies/time_policies/{key}"),
    ])
    .fails_with(5);

    let sessions = emu
        .run(&["sps", "sessions", "search", "--limit", "2"])
        .json();
    assert!(
        sessions.as_array().is_some_and(|s| !s.is_empty()),
        "{sessions}"
    );
    // A search expression SPS would refuse is refused before any call.
    emu.run(&["sps", "sessions", "search", "--query", "AND"])
        .fails_with(2);

    emu.run(&["sps", "logout"]).ok();
    let r = emu.run(&["sps", "get", "configuration"]);
    r.fails_with(3);
    assert!(r.stderr.contains("sps login"), "{}", r.stderr);
}

/// `safeguard sps join`: the SPS of the SPS session joins the SPP of the
/// profile, and SPP lists it; a join SPP refuses names its step.
#[test]
fn sps_joins_the_profiles_spp() {
    let emu = Emu::start();
    emu.login_admin();
    let sps = emu.emu.connection().sps.clone();
    let ca = emu.ca().display().to_string();
    emu.run_with_stdin(
        &[
            "sps",
            "login",
            &sps.host,
            "--ca",
            &ca,
            "--user",
            &sps.user,
            "--password-stdin",
        ],
        &format!("{}\n", sps.password),
    )
    .ok();
    let report = emu.run(&["sps", "join", "-m", "join SPP"]).json();
    assert_eq!(report["enabled_clustering"], true, "{report}");
    assert_eq!(report["spp_address"], emu.host());
    assert!(report["session_module"].is_object(), "{report}");
    let modules = emu
        .run(&["api", "GET", "core/Cluster/SessionModules"])
        .json();
    assert_eq!(modules.as_array().map(Vec::len), Some(1), "{modules}");
    // Joined already: SPP refuses, and the failure names the step.
    let again = emu.run(&["sps", "join"]);
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains("failed at step join") && again.stderr.contains("already joined"),
        "{}",
        again.stderr
    );
}
