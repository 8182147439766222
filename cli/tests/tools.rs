//! `openapi fetch | diff`, `emulator`, `completions` and `commands`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::Emu;

#[test]
fn openapi_documents_are_fetched_and_compared() {
    let emu = Emu::start();
    let out = emu.config_dir().join("docs");
    let ca = emu.ca().display().to_string();
    let r = emu.run(&[
        "openapi",
        "fetch",
        &emu.host(),
        "--ca",
        &ca,
        "--out",
        out.to_str().unwrap(),
    ]);
    r.ok();
    for service in ["core", "appliance", "notification"] {
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{service}.json"))).unwrap())
                .unwrap();
        assert!(doc["paths"].is_object(), "{service}");
    }
    let same = emu.run(&[
        "openapi",
        "diff",
        out.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(!same.ok().contains("removed"), "{}", same.stdout);

    let changed = emu.config_dir().join("changed");
    std::fs::create_dir_all(&changed).unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("notification.json")).unwrap()).unwrap();
    doc["paths"].as_object_mut().unwrap().remove("/v4/Status");
    std::fs::write(changed.join("notification.json"), doc.to_string()).unwrap();
    for s in ["core", "appliance", "a2a"] {
        if out.join(format!("{s}.json")).exists() {
            std::fs::copy(
                out.join(format!("{s}.json")),
                changed.join(format!("{s}.json")),
            )
            .unwrap();
        }
    }
    let diff = emu.run(&[
        "openapi",
        "diff",
        out.to_str().unwrap(),
        changed.to_str().unwrap(),
    ]);
    assert!(diff.ok().contains("GET /v4/Status"), "{}", diff.stdout);
    emu.run(&["openapi", "diff", "/no/such/dir", out.to_str().unwrap()])
        .fails_with(2);
}

#[test]
fn the_emulator_runs_in_process_and_answers_the_tool() {
    let emu = Emu::start();
    let dir = emu.config_dir().join("emu");
    let mut child = emu
        .cmd(&[
            "emulator",
            "--dir",
            dir.to_str().unwrap(),
            "--json",
            "--seconds",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The summary is one JSON document; read until it closes.
    let mut text = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    while serde_json::from_str::<serde_json::Value>(&text).is_err() {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the summary ended early: {text}"
        );
        text.push_str(&line);
    }
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    let host = info["spp"]["host"].as_str().unwrap();
    let ca = info["spp"]["ca"].as_str().unwrap();
    let r = emu.run_with_stdin(
        &[
            "--profile",
            "local",
            "login",
            "--host",
            host,
            "--ca",
            ca,
            "--user",
            "Admin",
            "--password-stdin",
        ],
        "Admin123\n",
    );
    r.ok();
    assert_eq!(
        emu.run(&["--profile", "local", "api", "GET", "core/Me"])
            .json()["Name"],
        "Admin"
    );
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn completions_for_each_shell() {
    let emu = Emu::start();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef safeguard"),
        ("fish", "complete -c safeguard"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let r = emu.run(&["completions", shell]);
        assert!(r.ok().contains(marker), "{shell}");
        assert!(
            r.stdout.contains("get-users"),
            "{shell} completes generated commands"
        );
    }
    emu.run(&["completions", "tcsh"]).fails_with(2);
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let emu = Emu::start();
    let mut child = emu
        .cmd(&["commands", "--output", "jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // stdout is closed now.
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with('{'), "{first}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
