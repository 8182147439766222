//! Output formats (json, jsonl, table, csv, yaml), `--fields` passed to the
//! appliance, and `--all` walking every page.

mod common;

use common::Emu;

#[test]
fn each_output_format_prints_the_same_listing() {
    let emu = Emu::start();
    emu.login_admin();
    let base = [
        "core",
        "users",
        "get-users",
        "--fields",
        "Id,Name",
        "--orderby",
        "Id",
        "--limit",
        "3",
    ];
    let run = |format: &str| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["--output", format]);
        emu.run(&args).ok().to_owned()
    };
    // JSON in a pipe: compact, one document.
    let json = run("json");
    assert_eq!(json.lines().count(), 1, "{json}");
    let users: serde_json::Value = serde_json::from_str(&json).unwrap();
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 3);
    // `fields` went to the appliance: only Id and Name came back.
    for u in users {
        let keys: Vec<&String> = u.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["Id", "Name"], "{u}");
    }
    let (first, second) = (
        users[0]["Name"].as_str().unwrap(),
        users[1]["Name"].as_str().unwrap(),
    );
    let first_id = users[0]["Id"].to_string();

    let jsonl = run("jsonl");
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["Name"], second);

    let table = run("table");
    let mut rows = table.lines();
    let header: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["Id", "Name"]);
    let row: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(row, [first_id.as_str(), first]);

    let csv = run("csv");
    assert_eq!(csv.lines().next(), Some("Id,Name"));
    assert_eq!(
        csv.lines().nth(1),
        Some(format!("{first_id},{first}").as_str())
    );
    assert_eq!(csv.lines().count(), 4);

    let yaml = run("yaml");
    assert!(
        yaml.starts_with(&format!("- Id: {first_id}\n  Name: \"{first}\"\n")),
        "{yaml}"
    );
    assert_eq!(yaml.matches("- Id: ").count(), 3);

    // The environment and the global option mix with any command.
    let r = emu.run(&["-o", "table", "api", "GET", "core/Me", "--fields", "Name"]);
    assert_eq!(r.ok(), "Name\nAdmin\n");
}

#[test]
fn all_walks_every_page() {
    let emu = Emu::start();
    emu.login_admin();
    let before = emu.control().user_count();
    emu.control().seed_users(23);
    let all = emu
        .run(&[
            "core",
            "users",
            "get-users",
            "--all",
            "--page-size",
            "5",
            "--fields",
            "Id",
        ])
        .json();
    let ids: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["Id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), before + 23);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no page repeated");
    // The same through `api`.
    let via_api = emu
        .run(&[
            "api",
            "GET",
            "core/Users",
            "--all",
            "--page-size",
            "7",
            "--fields",
            "Id",
        ])
        .json();
    assert_eq!(via_api.as_array().unwrap().len(), before + 23);
    // One page without --all.
    let page = emu
        .run(&[
            "core",
            "users",
            "get-users",
            "--limit",
            "5",
            "--page",
            "1",
            "--fields",
            "Id",
        ])
        .json();
    assert_eq!(page.as_array().unwrap().len(), 5);
}
