//! Exit codes by error class: 3 authentication, 4 authorization, 5 not
//! found, 6 invalid request, 7 transport, 2 usage.

mod common;

use common::Emu;

#[test]
fn each_error_class_has_its_exit_code() {
    let emu = Emu::start();
    emu.login_admin();

    // 3: a token the appliance does not know.
    let out = emu
        .cmd(&["core", "users", "get-users"])
        .env("SAFEGUARD_HOST", emu.host())
        .env("SAFEGUARD_CA", emu.ca())
        .env("SAFEGUARD_TOKEN", "bad-token")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 5: an unknown id.
    let r = emu.run(&["core", "users", "get-user-by-id", "--id", "987654"]);
    r.fails_with(5);
    assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    assert!(r.stdout.is_empty());

    // 6: a body the appliance refuses.
    let body = emu.config_dir().join("bad.json");
    std::fs::write(&body, r#"{"PrimaryAuthenticationProvider": {"Id": -1}}"#).unwrap();
    emu.run(&[
        "core",
        "users",
        "create-user",
        "--body",
        body.to_str().unwrap(),
    ])
    .fails_with(6);

    // 4: a user without the role.
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    emu.run_with_stdin(
        &[
            "--profile",
            "auditor",
            "login",
            "--host",
            &host,
            "--ca",
            &ca,
            "--user",
            "Auditor",
            "--password-stdin",
        ],
        "Auditor1!\n",
    )
    .ok();
    let user = emu.config_dir().join("user.json");
    std::fs::write(
        &user,
        r#"{"Name": "not-allowed", "PrimaryAuthenticationProvider": {"Id": -1}}"#,
    )
    .unwrap();
    emu.run(&[
        "--profile",
        "auditor",
        "core",
        "users",
        "create-user",
        "--body",
        user.to_str().unwrap(),
    ])
    .fails_with(4);

    // 7: nothing listens there.
    let out = emu
        .cmd(&["api", "GET", "core/Me"])
        .env("SAFEGUARD_HOST", "127.0.0.1:1")
        .env("SAFEGUARD_TOKEN", "x")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 2: usage errors, by clap and by the tool.
    emu.run(&["core", "users", "get-user-by-id"]).fails_with(2);
    emu.run(&["api", "GET", "nowhere"]).fails_with(2);
    emu.run(&["api", "GET", "core/Users", "-q", "novalue"])
        .fails_with(2);
    emu.run(&[
        "core",
        "users",
        "create-user",
        "--body",
        "/no/such/file.json",
    ])
    .fails_with(2);
    emu.run(&["--profile", "../etc", "profiles"]).ok();
    emu.run(&["--profile", "../etc", "api", "GET", "core/Me"])
        .fails_with(2);

    // 3: a profile that does not exist, with a clear next step.
    let r = emu.run(&["--profile", "nobody", "api", "GET", "core/Me"]);
    r.fails_with(3);
    assert!(
        r.stderr.contains("safeguard login --profile nobody"),
        "{}",
        r.stderr
    );
}
