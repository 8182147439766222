//! `safeguard events listen`: the appliance's events as JSON lines,
//! filtered by name, through a dropped connection; and the A2A hub's.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Emu;
use serde_json::json;

/// Emits `name` until the listener printed a line (it may not be connected
/// yet when the first one goes out).
fn emit_until_line(
    emu: &Emu,
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    name: &str,
    data: serde_json::Value,
) -> serde_json::Value {
    let (tx, rx) = std::sync::mpsc::channel();
    let control = emu.control();
    let (name2, data2) = (name.to_owned(), data.clone());
    let emitter = std::thread::spawn(move || {
        let start = Instant::now();
        while rx.recv_timeout(Duration::from_millis(200)).is_err()
            && start.elapsed() < Duration::from_secs(20)
        {
            control.emit_event(&name2, data2.clone());
        }
    });
    let line = lines.next().expect("a line").expect("readable");
    let _ = tx.send(());
    emitter.join().unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn events_arrive_as_json_lines_filtered_by_name_across_a_drop() {
    let emu = Emu::start();
    emu.login_admin();
    let mut child = emu
        .cmd(&["events", "listen", "--name", "usercreated", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Other events are left out; names match in any case.
    emu.control()
        .emit_event("AssetCreated", json!({"AssetId": 1}));
    let first = emit_until_line(&emu, &mut lines, "UserCreated", json!({"UserId": 41}));
    assert_eq!(first["Name"], "UserCreated");
    assert_eq!(first["Data"]["UserId"], 41);
    // The connection drops; the listener reconnects and goes on.
    emu.control().drop_websockets();
    let second = emit_until_line(&emu, &mut lines, "UserCreated", json!({"UserId": 42}));
    assert_eq!(second["Data"]["UserId"], 42);
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("listening"), "{stderr}");
}

#[test]
fn a2a_events_with_a_certificate_and_an_api_key() {
    let emu = Emu::start();
    let files = emu.emu.client_cert().clone();
    let key = emu.emu.connection().spp.a2a.password_api_key.clone();
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    let (cert, k) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let mut child = emu
        .cmd(&[
            "--host", &host, "--ca", &ca, "events", "listen", "--a2a", "--cert", &cert, "--key",
            &k, "--count", "1",
        ])
        .env("SAFEGUARD_A2A_KEY", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let account = emu.control().password_account_id();
    let (tx, rx) = std::sync::mpsc::channel();
    let control = emu.control();
    let emitter = std::thread::spawn(move || {
        let start = Instant::now();
        while rx.recv_timeout(Duration::from_millis(200)).is_err()
            && start.elapsed() < Duration::from_secs(20)
        {
            control.emit_a2a_event("AssetAccountPasswordUpdated", account, json!({}));
        }
    });
    let line = lines.next().expect("a line").unwrap();
    let _ = tx.send(());
    emitter.join().unwrap();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["Name"], "AssetAccountPasswordUpdated");
    assert!(child.wait().unwrap().success());
}
