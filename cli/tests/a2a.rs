//! The handwritten A2A commands: retrieval and setting of passwords, SSH
//! keys and API key secrets with a client certificate (PEM or PKCS#12) and
//! an API key from the environment, a file or stdin; the registrations; a
//! brokered access request; and `a2a watch` following a rotation.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::Emu;
use serde_json::json;

struct A2a {
    emu: Emu,
    cert: String,
    key: String,
    password_key: String,
    ssh_key: String,
}

fn setup() -> A2a {
    let emu = Emu::start();
    let files = emu.emu.client_cert().clone();
    let a2a = emu.emu.connection().spp.a2a.clone();
    A2a {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        password_key: a2a.password_api_key,
        ssh_key: a2a.ssh_key_api_key,
        emu,
    }
}

impl A2a {
    fn args<'a>(&'a self, command: &'a str, ca: &'a str, host: &'a str) -> Vec<&'a str> {
        vec![
            "--host", host, "--ca", ca, "a2a", command, "--cert", &self.cert, "--key", &self.key,
        ]
    }
}

#[test]
fn passwords_keys_and_api_key_secrets_are_retrieved_and_set() {
    let t = setup();
    let (ca, host) = (t.emu.ca().display().to_string(), t.emu.host());
    // The API key from the environment.
    let out = t
        .emu
        .cmd(&t.args("get-password", &ca, &host))
        .env("SAFEGUARD_A2A_KEY", &t.password_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Initial-Password-1\n");

    // From a file.
    let key_file = t.emu.config_dir().join("ssh.key");
    std::fs::write(&key_file, format!("{}\n", t.ssh_key)).unwrap();
    let mut args = t.args("get-private-key", &ca, &host);
    let kf = key_file.display().to_string();
    args.extend(["--api-key-file", &kf, "--format", "openssh"]);
    let pk = t.emu.run(&args).ok().to_owned();
    assert!(pk.starts_with("-----BEGIN"), "{pk}");

    // From stdin.
    let mut args = t.args("get-api-key", &ca, &host);
    args.push("--api-key-stdin");
    let secrets = t
        .emu
        .run_with_stdin(&args, &format!("{}\n", t.password_key))
        .json();
    assert!(
        secrets.as_array().is_some_and(|s| !s.is_empty()),
        "{secrets}"
    );

    // Set the password from a file, read it back.
    let pw_file = t.emu.config_dir().join("new-password.txt");
    std::fs::write(&pw_file, "Rotated-By-Cli-1\n").unwrap();
    let mut args = t.args("set-password", &ca, &host);
    let pf = pw_file.display().to_string();
    args.extend(["--password-file", &pf, "--api-key-stdin"]);
    t.emu.run_with_stdin(&args, &t.password_key).ok();
    assert_eq!(
        t.emu
            .control()
            .account_password(t.emu.control().password_account_id())
            .as_deref(),
        Some("Rotated-By-Cli-1")
    );

    // Set the SSH key to the one retrieved (a valid key), in OpenSSH format.
    let pk_file = t.emu.config_dir().join("id_rsa");
    std::fs::write(&pk_file, &pk).unwrap();
    let mut args = t.args("set-private-key", &ca, &host);
    let pkf = pk_file.display().to_string();
    args.extend(["--private-key-file", &pkf, "--api-key-file", &kf]);
    t.emu.run(&args).ok();

    // A wrong key: not authorized.
    let mut args = t.args("get-password", &ca, &host);
    args.push("--api-key-stdin");
    t.emu.run_with_stdin(&args, "wrong-key\n").fails_with(4);
}

#[test]
fn pkcs12_registrations_and_a_brokered_request() {
    let t = setup();
    let (ca, host) = (t.emu.ca().display().to_string(), t.emu.host());
    let files = t.emu.emu.client_cert().clone();
    let pfx = files.pfx.display().to_string();
    let out = t
        .emu
        .cmd(&[
            "--host", &host, "--ca", &ca, "a2a", "accounts", "--pfx", &pfx,
        ])
        .env("SAFEGUARD_PFX_PASSWORD", &files.pfx_password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["AccountName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"svc-password") && names.contains(&"svc-sshkey"),
        "{rows}"
    );
    // API keys only when asked for.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&t.password_key));
    let mut args = t.args("accounts", &ca, &host);
    args.push("--show-api-keys");
    assert!(t.emu.run(&args).ok().contains(&t.password_key));

    // Broker an access request for Auditor on the password account.
    let auditor = t.emu.control().user_id("Auditor").unwrap();
    let body = t.emu.config_dir().join("broker.json");
    std::fs::write(
        &body,
        json!({
            "ForUserId": auditor,
            "AccountId": t.emu.control().password_account_id(),
            "AccessRequestType": "Password",
        })
        .to_string(),
    )
    .unwrap();
    let mut args = t.args("broker", &ca, &host);
    let b = body.display().to_string();
    args.extend(["--body", &b, "--api-key-stdin"]);
    let created = t
        .emu
        .run_with_stdin(&args, &t.emu.control().broker_api_key())
        .json();
    assert!(
        created["Id"].is_string() || created["Id"].is_number(),
        "{created}"
    );
}

#[test]
fn watch_prints_the_password_and_each_rotation() {
    let t = setup();
    let (ca, host) = (t.emu.ca().display().to_string(), t.emu.host());
    let mut args = t.args("watch", &ca, &host);
    args.extend(["--count", "2"]);
    let mut child = t
        .emu
        .cmd(&args)
        .env("SAFEGUARD_A2A_KEY", &t.password_key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first, json!({"Version": 1, "Value": "Initial-Password-1"}));
    // Rotate through the appliance as an administrator.
    t.emu.login_admin();
    let account = t.emu.control().password_account_id().to_string();
    t.emu
        .run_with_stdin(
            &[
                "core",
                "asset-accounts",
                "set-password",
                "--id",
                &account,
                "--body",
                "-",
            ],
            "Rotated-Password-2",
        )
        .ok();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second, json!({"Version": 2, "Value": "Rotated-Password-2"}));
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_generated_a2a_commands_go_through_the_a2a_context() {
    let t = setup();
    let (ca, host) = (t.emu.ca().display().to_string(), t.emu.host());
    let id = ["--cert", t.cert.as_str(), "--key", t.key.as_str()];
    let mut args = vec![
        "--host",
        host.as_str(),
        "--ca",
        ca.as_str(),
        "a2a",
        "credentials",
        "get-credential",
    ];
    args.extend(id);
    args.extend(["--type", "password", "--api-key-stdin"]);
    assert_eq!(
        t.emu.run_with_stdin(&args, &t.password_key).ok(),
        "Initial-Password-1\n"
    );

    let pw = t.emu.config_dir().join("pw.json");
    std::fs::write(&pw, "Set-Through-Generated-1").unwrap();
    let mut args = vec![
        "--host",
        host.as_str(),
        "--ca",
        ca.as_str(),
        "a2a",
        "credentials",
        "set-password",
    ];
    args.extend(id);
    let p = pw.display().to_string();
    args.extend(["--body", &p, "--api-key-stdin"]);
    t.emu.run_with_stdin(&args, &t.password_key).ok();
    assert_eq!(
        t.emu
            .control()
            .account_password(t.emu.control().password_account_id())
            .as_deref(),
        Some("Set-Through-Generated-1")
    );

    // No secret member becomes a flag.
    let help = t.emu.run(&["a2a", "credentials", "set-ssh-key", "--help"]);
    assert!(
        !help.ok().contains("--private-key") && !help.stdout.contains("--passphrase"),
        "{}",
        help.stdout
    );
    let mut args = vec![
        "--host",
        host.as_str(),
        "--ca",
        ca.as_str(),
        "a2a",
        "credentials",
        "get-credential",
    ];
    args.extend(id);
    args.extend([
        "--type",
        "privatekey",
        "--key-format",
        "putty",
        "--api-key-stdin",
    ]);
    assert!(t
        .emu
        .run_with_stdin(&args, &t.ssh_key)
        .ok()
        .starts_with("PuTTY-User-Key-File"));
}
