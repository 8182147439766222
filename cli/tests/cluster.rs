//! `--member` (and `SAFEGUARD_MEMBERS`): the tool as a client of a cluster.
//! A profile signed in with members keeps them; calls move to a live member
//! when the primary stops, and writes reach the promoted one.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::Emu;
use serde_json::{json, Value};

fn stored_members(emu: &Emu, profile: &str) -> Value {
    let file = emu
        .config_dir()
        .join("profiles")
        .join(format!("{profile}.json"));
    let p: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    p["members"].clone()
}

#[test]
fn a_profile_with_members_survives_the_primary_stopping() {
    let emu = Emu::start_with(|c| c.cluster_members = 3);
    let hosts = emu.emu.member_hosts();
    let ca = emu.ca();
    emu.run_with_stdin(
        &[
            "login",
            "--host",
            &hosts[0],
            "--member",
            &hosts[1],
            "--member",
            &hosts[2],
            "--ca",
            ca.to_str().unwrap(),
            "--user",
            "Admin",
            "--password-stdin",
        ],
        "Admin123\n",
    )
    .ok();
    assert_eq!(stored_members(&emu, "default"), json!([hosts[1], hosts[2]]));

    emu.runtime.block_on(emu.emu.stop_member(0)).unwrap();
    // Reads go on at a replica.
    let me = emu.run(&["api", "GET", "core/Me"]).json();
    assert_eq!(me["Name"], "Admin");
    // A replica takes the promotion, then the new primary the write.
    let id = emu.emu.connection().spp.members[1].id.clone();
    emu.run(&["api", "POST", &format!("core/Cluster/Members/{id}/Promote")])
        .ok();
    let created = emu
        .run_with_stdin(
            &["api", "POST", "core/Users", "--body", "-"],
            &json!({"Name": "cli-cluster", "PrimaryAuthenticationProvider": {"Id": -1}})
                .to_string(),
        )
        .json();
    assert_eq!(created["Name"], "cli-cluster");
    assert_eq!(emu.control().replica_write_refusals(), 0);
}

#[test]
fn members_come_from_the_environment_too() {
    let emu = Emu::start_with(|c| c.cluster_members = 2);
    let hosts = emu.emu.member_hosts();
    let ca = emu.ca();
    let mut c = emu.cmd(&[
        "--profile",
        "env",
        "login",
        "--host",
        &hosts[0],
        "--ca",
        ca.to_str().unwrap(),
        "--user",
        "Admin",
        "--password-stdin",
    ]);
    c.env("SAFEGUARD_MEMBERS", format!(" {} ,", hosts[1]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Admin123\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stored_members(&emu, "env"), json!([hosts[1]]));
    emu.runtime.block_on(emu.emu.stop_member(0)).unwrap();
    let me = emu
        .run(&["--profile", "env", "api", "GET", "core/Me"])
        .json();
    assert_eq!(me["Name"], "Admin");
}
