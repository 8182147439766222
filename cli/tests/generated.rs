//! A sample of the generated commands against the emulator: a user's
//! whole life (create with a body file and with member flags, list with a
//! filter, get, update, delete) and a backup's download and upload.

mod common;

use common::Emu;
use serde_json::json;

#[test]
fn a_user_is_created_listed_read_updated_and_deleted() {
    let emu = Emu::start();
    emu.login_admin();
    let file = emu.config_dir().join("user.json");
    std::fs::write(
        &file,
        json!({"Name": "cli-alice", "PrimaryAuthenticationProvider": {"Id": -1}}).to_string(),
    )
    .unwrap();
    // A member flag overrides the body's member.
    let created = emu
        .run(&[
            "core",
            "users",
            "create-user",
            "--body",
            file.to_str().unwrap(),
            "--description",
            "from the CLI",
        ])
        .json();
    assert_eq!(created["Name"], "cli-alice");
    assert_eq!(created["Description"], "from the CLI");
    let id = created["Id"].as_i64().unwrap().to_string();

    let listed = emu
        .run(&[
            "core",
            "users",
            "get-users",
            "--filter",
            "Name eq 'cli-alice'",
        ])
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["Id"].to_string(), id);

    let got = emu
        .run(&["core", "users", "get-user-by-id", "--id", &id])
        .json();
    assert_eq!(got["Name"], "cli-alice");

    // Update: the body from stdin, as a whole object.
    let mut user = got.clone();
    user["Description"] = json!("updated");
    let updated = emu
        .run_with_stdin(
            &["core", "users", "update-user", "--id", &id, "--body", "-"],
            &user.to_string(),
        )
        .json();
    assert_eq!(updated["Description"], "updated");
    assert_eq!(
        emu.run(&[
            "core",
            "users",
            "get-user-by-id",
            "--id",
            &id,
            "--fields",
            "Description"
        ])
        .json()["Description"],
        "updated"
    );

    emu.run(&["core", "users", "delete", "--id", &id]).ok();
    emu.run(&["core", "users", "get-user-by-id", "--id", &id])
        .fails_with(5);
    let none = emu
        .run(&[
            "core",
            "users",
            "get-users",
            "--filter",
            "Name eq 'cli-alice'",
        ])
        .json();
    assert_eq!(none, json!([]));
}

#[test]
fn a_flat_body_from_member_flags_alone() {
    let emu = Emu::start();
    emu.login_admin();
    let created = emu
        .run(&[
            "core",
            "users",
            "create-user",
            "--name",
            "cli-bob",
            "--disabled",
        ])
        .json();
    assert_eq!(created["Name"], "cli-bob");
    assert_eq!(created["Disabled"], true);
}

#[test]
fn a_backup_is_downloaded_and_uploaded() {
    let emu = Emu::start_with(|c| c.backup_size = 300_000);
    emu.login_admin();
    let backups = emu
        .run(&["appliance", "backups", "get", "--fields", "Id,Size"])
        .json();
    let id = backups[0]["Id"].as_str().unwrap().to_owned();
    let expected = emu.control().backup_sha256(&id).unwrap();

    let file = emu.config_dir().join("backup.sgb");
    let r = emu.run(&[
        "appliance",
        "backups",
        "download",
        "--id",
        &id,
        "--out",
        file.to_str().unwrap(),
    ]);
    r.ok();
    assert!(r.stdout.is_empty(), "data to the file, messages to stderr");
    assert!(r.stderr.contains("300000 bytes"), "{}", r.stderr);
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len(), 300_000);
    assert_eq!(sha256(&bytes), expected);

    // To stdout when no --out.
    let out = emu
        .cmd(&["appliance", "backups", "download", "--id", &id])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, bytes);

    let uploaded = emu
        .run(&[
            "appliance",
            "backups",
            "upload-backup",
            "--in",
            file.to_str().unwrap(),
        ])
        .json();
    assert_eq!(uploaded["Size"], 300_000);
    let uploads = emu.control().uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].sha256, expected);

    // The handwritten transfer commands, the same way.
    let copy = emu.config_dir().join("copy.sgb");
    emu.run(&[
        "download",
        &format!("appliance/Backups/{id}/Download"),
        copy.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(std::fs::read(&copy).unwrap(), bytes);
    emu.run(&["upload", "appliance/Backups/Upload", copy.to_str().unwrap()])
        .ok();
    assert_eq!(emu.control().uploads().len(), 2);
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
