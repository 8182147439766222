//! Every sign-in strategy the emulator supports, through `safeguard login`,
//! then a call with the stored profile; `profiles`, `logout`, the
//! environment variables of CI, and what happens when a token runs out.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::Emu;

fn me(emu: &Emu, profile: &str) -> serde_json::Value {
    emu.run(&["--profile", profile, "api", "GET", "core/Me"])
        .json()
}

fn base<'a>(emu: &'a Emu, ca: &'a str, host: &'a str, profile: &'a str) -> Vec<&'a str> {
    let _ = emu;
    vec!["--profile", profile, "login", "--host", host, "--ca", ca]
}

#[test]
fn pkce_is_the_default_and_the_profile_is_used_afterwards() {
    let emu = Emu::start();
    emu.login_admin();
    assert_eq!(me(&emu, "default")["Name"], "Admin");
    // The generated command with the same profile, selected by the environment.
    let out = emu
        .cmd(&["core", "me", "get-me"])
        .env("SAFEGUARD_PROFILE", "default")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let profiles = emu.run(&["profiles"]).json();
    assert_eq!(profiles[0]["Name"], "default");
    assert_eq!(profiles[0]["Strategy"], "pkce");
    assert_eq!(profiles[0]["SignedIn"], true);
    assert_eq!(profiles[0]["TokenStore"], "file");
}

#[test]
fn a_wrong_password_fails_with_the_authentication_code() {
    let emu = Emu::start();
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    let mut args = base(&emu, &ca, &host, "default");
    args.extend(["--user", "Admin", "--password-stdin"]);
    let r = emu.run_with_stdin(&args, "wrong\n");
    r.fails_with(3);
    // Nothing was stored.
    emu.run(&["api", "GET", "core/Me"]).fails_with(3);
}

#[test]
fn password_grant_once_the_appliance_allows_it() {
    let emu = Emu::start();
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    let mut args = base(&emu, &ca, &host, "pw");
    args.extend([
        "--method",
        "password",
        "--user",
        "Admin",
        "--password-stdin",
    ]);
    // Off by default, as on a recent appliance.
    emu.run_with_stdin(&args, "Admin123\n").fails_with(3);
    emu.control().enable_grant("ResourceOwner").unwrap();
    emu.run_with_stdin(&args, "Admin123\n").ok();
    assert_eq!(me(&emu, "pw")["Name"], "Admin");
    // The password from a file.
    let file = emu.config_dir().join("pw.txt");
    std::fs::write(&file, "Admin123\n").unwrap();
    let mut args = base(&emu, &ca, &host, "pw2");
    let f = file.display().to_string();
    args.extend([
        "--method",
        "password",
        "--user",
        "Admin",
        "--password-file",
        &f,
    ]);
    emu.run(&args).ok();
    assert_eq!(me(&emu, "pw2")["Name"], "Admin");
}

#[test]
fn certificate_from_pem_files_and_pkcs12_and_unattended_renewal() {
    let emu = Emu::start();
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    let files = emu.emu.client_cert().clone();
    let (cert, key, pfx) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
        files.pfx.display().to_string(),
    );
    let mut args = base(&emu, &ca, &host, "cert");
    args.extend(["--method", "certificate", "--cert", &cert, "--key", &key]);
    emu.run(&args).ok();
    assert_eq!(me(&emu, "cert")["Name"], "A2ACertUser");

    // The appliance forgets every token: the certificate profile signs in
    // again by itself and the call succeeds.
    emu.control().expire_all_tokens();
    let r = emu.run(&["--profile", "cert", "api", "GET", "core/Me"]);
    r.ok();
    assert!(r.stderr.contains("signed in again"), "{}", r.stderr);

    let mut args = base(&emu, &ca, &host, "pfx");
    args.extend(["--method", "certificate", "--pfx", &pfx, "--password-stdin"]);
    emu.run_with_stdin(&args, &format!("{}\n", files.pfx_password))
        .ok();
    assert_eq!(me(&emu, "pfx")["Name"], "A2ACertUser");
    // A PKCS#12 profile cannot sign in by itself (its password is not kept).
    emu.control().expire_all_tokens();
    let r = emu.run(&["--profile", "pfx", "api", "GET", "core/Me"]);
    r.fails_with(3);
    assert!(
        r.stderr.contains("safeguard login --profile pfx"),
        "{}",
        r.stderr
    );
}

#[test]
fn device_code_prints_the_code_and_waits_for_approval() {
    let emu = Emu::start_with(|c| c.device_code_interval = 1);
    emu.control().enable_grant("DeviceCode").unwrap();
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    let mut args = base(&emu, &ca, &host, "device");
    args.extend(["--method", "device-code"]);
    let mut child = emu
        .cmd(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("enter the code"), "{line}");
    let code = line
        .split("enter the code ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a code")
        .to_owned();
    assert!(line.contains("https://"), "{line}");
    emu.control().approve_device_code(&code, "Admin").unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert_eq!(me(&emu, "device")["Name"], "Admin");
    // A device-code profile whose token ran out asks for a new sign-in.
    emu.control().expire_all_tokens();
    let r = emu.run(&["--profile", "device", "api", "GET", "core/Me"]);
    r.fails_with(3);
    assert!(
        r.stderr
            .contains("sign in again: safeguard login --profile device"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_existing_token_from_stdin_and_from_the_environment() {
    let emu = Emu::start();
    emu.login_admin();
    let token_file = emu.config_dir().join("tokens").join("default.token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    let mut args = base(&emu, &ca, &host, "tok");
    args.extend(["--method", "token"]);
    emu.run_with_stdin(&args, &format!("{token}\n")).ok();
    assert_eq!(me(&emu, "tok")["Name"], "Admin");
    // A bad token is refused at login, not stored.
    emu.run_with_stdin(&args, "not-a-token\n").fails_with(3);

    // CI: no profile at all, the token and host in the environment.
    let out = emu
        .cmd(&["api", "GET", "core/Me", "--profile", "nothing-here"])
        .env("SAFEGUARD_HOST", emu.host())
        .env("SAFEGUARD_CA", emu.ca())
        .env("SAFEGUARD_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let me: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["Name"], "Admin");
}

#[test]
fn logout_signs_out_on_the_appliance_and_forgets_the_token() {
    let emu = Emu::start();
    emu.login_admin();
    let token =
        std::fs::read_to_string(emu.config_dir().join("tokens").join("default.token")).unwrap();
    emu.run(&["logout"]).ok();
    assert!(!emu
        .config_dir()
        .join("tokens")
        .join("default.token")
        .exists());
    let r = emu.run(&["api", "GET", "core/Me"]);
    r.fails_with(3);
    assert!(
        r.stderr.contains("safeguard login --profile default"),
        "{}",
        r.stderr
    );
    // The appliance no longer accepts the old token.
    let out = emu
        .cmd(&["api", "GET", "core/Me"])
        .env("SAFEGUARD_HOST", emu.host())
        .env("SAFEGUARD_CA", emu.ca())
        .env("SAFEGUARD_TOKEN", token.trim())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let profiles = emu.run(&["profiles"]).json();
    assert_eq!(profiles[0]["SignedIn"], false);
}

#[test]
fn the_token_expiry_recorded_at_sign_in_is_honoured() {
    // Tokens of one minute: the profile records when it runs out, and a
    // command after that asks for a new sign-in without calling.
    let emu = Emu::start_with(|c| c.token_lifetime = Duration::from_secs(60));
    emu.login_admin();
    let path = emu.config_dir().join("profiles").join("default.json");
    let mut profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let expires = profile["token_expires"].as_u64().expect("an expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(expires > now && expires <= now + 120, "{expires} vs {now}");
    profile["token_expires"] = serde_json::json!(now - 1);
    std::fs::write(&path, serde_json::to_vec(&profile).unwrap()).unwrap();
    let r = emu.run(&["api", "GET", "core/Me"]);
    r.fails_with(3);
    assert!(r.stderr.contains("ran out"), "{}", r.stderr);
}

/// Plays the browser of a browser sign-in: the rSTS login steps as the
/// emulator's login page posts them, then the redirect to the tool's
/// loopback listener.
fn act_as_browser(emu: &Emu, address: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ca = std::fs::read(emu.ca()).unwrap();
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap();
        let url = url::Url::parse(address).unwrap();
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        let redirect = q["redirect_uri"].clone();
        let csrf = "cli-test-csrf";
        let mut code_url = String::new();
        for step in [1, 3, 6] {
            let answer: serde_json::Value = http
                .post(format!(
                    "https://{}/RSTS/UserLogin/LoginController",
                    emu.host()
                ))
                .query(&[
                    ("response_type", "code"),
                    ("code_challenge_method", "S256"),
                    ("code_challenge", q["code_challenge"].as_str()),
                    ("redirect_uri", redirect.as_str()),
                    ("loginRequestStep", &step.to_string()),
                ])
                .header("Cookie", format!("CsrfToken={csrf}"))
                .form(&[
                    ("directoryComboBox", "local"),
                    ("usernameTextbox", "Admin"),
                    ("passwordTextbox", "Admin123"),
                    ("csrfTokenTextbox", csrf),
                ])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
            if step == 6 {
                code_url = answer["RelyingPartyUrl"].as_str().unwrap().to_owned();
            }
        }
        reqwest::Client::new()
            .get(format!("{code_url}&state={}", q["state"]))
            .send()
            .await
            .unwrap();
    });
}

#[test]
fn browser_sign_in_receives_the_code_on_the_loopback_redirect() {
    let emu = Emu::start();
    let (ca, host) = (emu.ca().display().to_string(), emu.host());
    let mut args = base(&emu, &ca, &host, "browser");
    args.extend(["--method", "browser"]);
    let mut child = emu
        .cmd(&args)
        .env("SAFEGUARD_BROWSER", "none")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let address = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("an address: {line}"))
        .to_owned();
    act_as_browser(&emu, &address);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert_eq!(me(&emu, "browser")["Name"], "Admin");
}
