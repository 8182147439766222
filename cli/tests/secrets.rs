//! No secret on the command line, in output, logs or the profile file: the
//! token file is readable by its owner only.

mod common;

use common::Emu;

#[test]
fn no_secret_leaks_and_the_token_file_is_private() {
    let emu = Emu::start();
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    // There is no way to give a password as an argument.
    let r = emu.run(&[
        "login",
        "--host",
        &host,
        "--ca",
        &ca,
        "--user",
        "Admin",
        "--password",
        "Admin123",
    ]);
    r.fails_with(2);
    // Without a terminal and without --password-stdin/--password-file: a
    // clear refusal, nothing read from anywhere else.
    let r = emu.run(&["login", "--host", &host, "--ca", &ca, "--user", "Admin"]);
    r.fails_with(2);
    assert!(
        r.stderr.contains("--password-stdin") || r.stderr.contains("stdin"),
        "{}",
        r.stderr
    );

    let mut outputs = Vec::new();
    let login = emu.run_with_stdin(
        &[
            "login",
            "--host",
            &host,
            "--ca",
            &ca,
            "--user",
            "Admin",
            "--password-stdin",
        ],
        "Admin123\n",
    );
    login.ok();
    outputs.push(login);
    let token_path = emu.config_dir().join("tokens").join("default.token");
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(token.len() > 20);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "token file mode {mode:o}");
        let dir_mode = std::fs::metadata(token_path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700, "token folder mode {dir_mode:o}");
    }
    let profile =
        std::fs::read_to_string(emu.config_dir().join("profiles").join("default.json")).unwrap();
    assert!(
        !profile.contains(token.trim()),
        "the profile holds the token"
    );
    assert!(
        !profile.contains("Admin123"),
        "the profile holds the password"
    );

    // Commands, verbose errors and a logout: neither the token nor the
    // password shows.
    outputs.push(emu.run(&["api", "GET", "core/Me"]));
    outputs.push(emu.run(&["api", "GET", "core/Users/99999"]));
    outputs.push(emu.run(&["profiles"]));
    let out = emu
        .cmd(&["api", "GET", "core/Me"])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    outputs.push(common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        args: "api GET core/Me (RUST_LOG=trace)".into(),
    });
    emu.control().expire_all_tokens();
    outputs.push(emu.run(&["api", "GET", "core/Me"]));
    outputs.push(emu.run(&["logout"]));
    for r in &outputs {
        for secret in [token.trim(), "Admin123"] {
            assert!(
                !r.stdout.contains(secret),
                "{}: stdout shows a secret",
                r.args
            );
            assert!(
                !r.stderr.contains(secret),
                "{}: stderr shows a secret",
                r.args
            );
        }
    }

    // SPS: the session cookie goes to its own 0600 file, not the profile.
    let sps = emu.emu.connection().sps.clone();
    let r = emu.run_with_stdin(
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
    );
    r.ok();
    assert!(!r.stderr.contains(&sps.password));
    let session =
        std::fs::read_to_string(emu.config_dir().join("tokens").join("default.sps-session"))
            .unwrap();
    let profile =
        std::fs::read_to_string(emu.config_dir().join("profiles").join("default.json")).unwrap();
    assert!(!profile.contains(session.trim()) && !profile.contains(&sps.password));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(emu.config_dir().join("tokens").join("default.sps-session"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
}
