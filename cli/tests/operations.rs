//! Every operation of the four OpenAPI documents has a generated command:
//! counted from the documents themselves at test time, compared with what
//! `safeguard commands` lists, and a sample of the commands parsed.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn documents() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let env_dir = std::env::var_os("SAFEGUARD_OPENAPI_DIR").map(PathBuf::from);
    safeguard_codegen::locate_documents(&safeguard_codegen::SERVICES, env_dir.as_deref(), &root)
        .expect("the documents are found")
        .into_iter()
        .map(|s| {
            let doc = safeguard_codegen::read_document(&s.path).expect("a document");
            (s.service, doc)
        })
        .collect()
}

fn safeguard(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_safeguard"))
        .args(args)
        .env(
            "SAFEGUARD_CONFIG_DIR",
            std::env::temp_dir().join("safeguard-cli-ops-test"),
        )
        .output()
        .expect("safeguard runs")
}

#[test]
fn every_operation_of_the_four_documents_has_a_command() {
    let mut expected = BTreeSet::new();
    for (service, doc) in documents() {
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in METHODS {
                if item.get(method).is_some() {
                    let relative = path.strip_prefix("/v4/").unwrap_or(path);
                    expected.insert(format!(
                        "{} /service/{service}/v4/{relative}",
                        method.to_uppercase()
                    ));
                }
            }
        }
    }
    // The documents of this repository hold 1,072 operations; a fetched set
    // may hold more or fewer, so the count comes from them.
    assert!(
        expected.len() > 1000,
        "only {} operations found",
        expected.len()
    );

    let out = safeguard(&["commands", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let listed: BTreeSet<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["Method"].as_str().unwrap(),
                r["Path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(rows.len(), expected.len(), "one command per operation");
    let missing: Vec<_> = expected.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "operations without a command: {missing:?}"
    );
    let names: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["Command"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), rows.len(), "command names are unique");

    // Every 50th command parses: its --help answers and names its path.
    for row in rows.iter().step_by(50) {
        let command = row["Command"].as_str().unwrap();
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let help = safeguard(&args);
        assert!(
            help.status.success(),
            "{command} --help: {}",
            String::from_utf8_lossy(&help.stderr)
        );
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(
            text.contains(row["Path"].as_str().unwrap()),
            "{command} --help: {text}"
        );
    }
}

#[test]
fn the_main_help_lists_the_command_groups_and_exit_codes() {
    let out = safeguard(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for group in [
        "core",
        "appliance",
        "notification",
        "a2a",
        "api",
        "login",
        "logout",
        "profiles",
        "events",
        "download",
        "upload",
        "sps",
        "openapi",
        "emulator",
        "completions",
    ] {
        assert!(
            text.contains(&format!("\n  {group} ")),
            "--help lacks {group}: {text}"
        );
    }
    assert!(
        text.contains("Exit codes:") && text.contains("7  transport"),
        "{text}"
    );
    let users = safeguard(&["core", "users", "get-users", "--help"]);
    let text = String::from_utf8_lossy(&users.stdout);
    assert!(
        text.contains("--filter") && text.contains("--limit") && text.contains("--all"),
        "{text}"
    );
}

#[test]
fn a_wrong_command_line_is_a_usage_error() {
    assert_eq!(
        safeguard(&["core", "users", "no-such-command"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        safeguard(&["core", "users", "get-users", "--limit", "ten"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        safeguard(&["core", "users", "get-user-by-id"])
            .status
            .code(),
        Some(2),
        "--id is required"
    );
}
