//! No secret (password, one-time password, token, key passphrase) appears in
//! `Display`, `Debug` or logs: every sign-in runs with TRACE logging
//! captured, then every error and configuration type is formatted, and none
//! of the secrets may appear anywhere.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use safeguard_emulator as emu_consts;
use safeguard_sdk::a2a::A2aContext;
use safeguard_sdk::auth::{Auth, DeviceCodeAuth, PasswordAuth, PkceAuth, TokenAuth};
use safeguard_sdk::sps::SpsClient;
use safeguard_sdk::tls::{ClientIdentity, TlsOptions};
use safeguard_sdk::{ExposeSecret, SafeguardClient, SecretString, Service};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_appear_in_logs_display_or_debug() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        // Everything the SDK and its HTTP/TLS stack log; the in-process
        // emulator's own logs are the server's, not the SDK's.
        .with_env_filter("trace,safeguard_emulator=off")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        // Every span's fields as it closes (the calls' spans included).
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .init();

    let emu = common::emulator().await;
    let (mfa_user, mfa_password, otp) = emu.control().mfa_user();
    emu.control().enable_grant("ResourceOwner").unwrap();
    let mut secrets: Vec<String> = vec![
        emu_consts::ADMIN_PASSWORD.into(),
        mfa_password.into(),
        otp.into(),
        emu.connection().spp.client_cert.pfx_password.clone(),
    ];
    let mut formatted = String::new();

    let pkce = PkceAuth::new("local", mfa_user, mfa_password).one_time_password(otp);
    let password = PasswordAuth::new("local", emu_consts::ADMIN_USER, emu_consts::ADMIN_PASSWORD);
    for auth in [Auth::from(pkce.clone()), Auth::from(password.clone())] {
        let client = common::client(&emu, auth.clone());
        client.login().await.unwrap();
        let token = client.user_token().await.unwrap();
        secrets.push(token.expose_secret().to_owned());
        let _: serde_json::Value = client.get(Service::Core, "Me").send_json().await.unwrap();
        let token_client = common::client(&emu, TokenAuth::new(token.clone()));
        formatted += &format!(
            "{token_client:?} {:?} {client:?} {auth:?}\n",
            token_client.auth()
        );
        // An error answer after signing out, with the old token.
        client.logout().await.unwrap();
        let err = token_client
            .get(Service::Core, "Me")
            .send()
            .await
            .unwrap_err();
        formatted += &format!("{err} {err:?}\n");
    }
    // Failed sign-ins: wrong one-time password, wrong password.
    for auth in [
        Auth::from(PkceAuth::new("local", mfa_user, mfa_password).one_time_password("999999")),
        Auth::from(PasswordAuth::new(
            "local",
            emu_consts::ADMIN_USER,
            "Wrong-Password-77",
        )),
    ] {
        let err = common::client(&emu, auth.clone())
            .login()
            .await
            .unwrap_err();
        formatted += &format!("{err} {err:?} {auth:?}\n");
    }
    secrets.push("999999".into());
    secrets.push("Wrong-Password-77".into());

    let cert = &emu.connection().spp.client_cert;
    let identity =
        ClientIdentity::from_pkcs12_file(&cert.pfx, &SecretString::from(cert.pfx_password.clone()))
            .unwrap();
    let key_pem = std::fs::read_to_string(&cert.key).unwrap();
    secrets.push(key_pem.lines().nth(1).unwrap().to_owned());
    formatted += &format!("{identity:?}\n");
    let device = DeviceCodeAuth::new("local", |_| {});
    formatted += &format!("{device:?} {:?}\n", SecretString::from("x".to_owned()));
    let anon = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .build()
        .unwrap();
    formatted += &format!("{anon:?}\n");

    // Calls of every kind (typed, A2A, SPS), their spans logged as they close.
    let admin = common::admin(&emu).await;
    secrets.push(admin.user_token().await.unwrap().expose_secret().to_owned());
    admin.core().me_get_me().send().await.unwrap();
    let tls = TlsOptions::default().with_ca_pem(emu.ca_pem()).unwrap();
    let a2a = A2aContext::builder(emu.spp_host())
        .pem_files(&cert.cert, &cert.key)
        .tls(tls.clone())
        .build()
        .unwrap();
    let api_key = emu.connection().spp.a2a.password_api_key.clone();
    let retrieved = a2a
        .retrieve_password(&SecretString::from(api_key.clone()))
        .await
        .unwrap();
    secrets.push(api_key);
    secrets.push(retrieved.expose_secret().to_owned());
    let s = emu.connection().sps.clone();
    secrets.push(s.password.clone());
    let sps = SpsClient::builder(emu.sps_host())
        .credentials(s.user, s.password)
        .tls(tls)
        .build()
        .unwrap();
    sps.get_json("configuration").await.unwrap();

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("signed in"),
        "the capture works: {}",
        &logs[..logs.len().min(2000)]
    );
    assert!(
        logs.contains("safeguard.call"),
        "the calls' spans are logged"
    );
    // The SPS session cookie (its name never appears, nor its value).
    assert!(
        !logs.contains("session_id="),
        "the SPS cookie appears in the logs"
    );
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appears in the logs"
        );
        assert!(
            !formatted.contains(secret.as_str()),
            "a secret appears in Display/Debug: {formatted}"
        );
    }
}
