//! Every sign-in strategy against the emulator over real HTTPS.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use safeguard_emulator as emu_consts;
use safeguard_sdk::auth::{CertificateAuth, DeviceCodeAuth, PasswordAuth, PkceAuth, TokenAuth};
use safeguard_sdk::{Error, SafeguardClient, SecretString, Service};

async fn me_name(client: &SafeguardClient) -> String {
    let me: serde_json::Value = client
        .get(Service::Core, "Me")
        .send_json()
        .await
        .expect("Me");
    me["Name"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn pkce_signs_in_and_calls_me() {
    let emu = common::emulator().await;
    let client = common::admin(&emu).await;
    assert_eq!(me_name(&client).await, emu_consts::ADMIN_USER);
    assert_eq!(emu.control().signins("authorization_code"), 1);
    assert_eq!(emu.control().login_response_calls(), 1);
}

#[tokio::test]
async fn pkce_with_mfa_succeeds_with_the_right_one_time_password() {
    let emu = common::emulator().await;
    let (user, password, otp) = emu.control().mfa_user();
    let client = common::client(
        &emu,
        PkceAuth::new("local", user, password).one_time_password(otp),
    );
    client.login().await.expect("MFA sign-in");
    assert_eq!(me_name(&client).await, user);
}

#[tokio::test]
async fn pkce_with_mfa_fails_with_a_wrong_or_missing_one_time_password() {
    let emu = common::emulator().await;
    let (user, password, _) = emu.control().mfa_user();
    let wrong = common::client(
        &emu,
        PkceAuth::new("local", user, password).one_time_password("000000"),
    );
    match wrong.login().await {
        Err(Error::Sts(e)) => assert_eq!(e.error, "mfa_failed", "{e}"),
        other => panic!("expected an MFA failure, got {other:?}"),
    }
    let missing = common::client(&emu, PkceAuth::new("local", user, password));
    assert!(matches!(missing.login().await, Err(Error::Config(_))));
}

#[tokio::test]
async fn pkce_with_a_wrong_password_is_an_sts_error() {
    let emu = common::emulator().await;
    let client = common::client(
        &emu,
        PkceAuth::new("local", emu_consts::ADMIN_USER, "wrong"),
    );
    assert!(matches!(client.login().await, Err(Error::Sts(_))));
}

#[tokio::test]
async fn pkce_to_an_external_provider_by_name() {
    let emu = common::emulator().await;
    let client = common::client(
        &emu,
        PkceAuth::new(
            emu_consts::EXTERNAL_PROVIDER_NAME,
            emu_consts::EXTERNAL_USER,
            emu_consts::EXTERNAL_PASSWORD,
        ),
    );
    client.login().await.expect("external provider sign-in");
    assert_eq!(me_name(&client).await, emu_consts::EXTERNAL_USER);
}

#[tokio::test]
async fn unknown_provider_is_a_configuration_error() {
    let emu = common::emulator().await;
    let client = common::client(&emu, PkceAuth::new("no-such-provider", "a", "b"));
    match client.login().await {
        Err(Error::Config(m)) => assert!(m.contains("no-such-provider"), "{m}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn password_grant_is_refused_until_enabled() {
    let emu = common::emulator().await;
    let auth = PasswordAuth::new("local", emu_consts::ADMIN_USER, emu_consts::ADMIN_PASSWORD);
    let client = common::client(&emu, auth.clone());
    assert!(
        matches!(client.login().await, Err(Error::Sts(_))),
        "password grant is off by default"
    );

    // Enable it through the appliance's own settings API, as an admin would.
    let admin = common::admin(&emu).await;
    let setting: serde_json::Value = admin
        .get(Service::Core, "Settings/Allowed OAuth2 Grant Types")
        .send_json()
        .await
        .unwrap();
    let value = format!(
        "{}, ResourceOwner",
        setting["Value"].as_str().unwrap_or_default()
    );
    admin
        .put(Service::Core, "Settings/Allowed OAuth2 Grant Types")
        .json(&serde_json::json!({ "Value": value }))
        .send()
        .await
        .unwrap();
    let client = common::client(&emu, auth);
    client
        .login()
        .await
        .expect("password grant after enabling it");
    assert_eq!(me_name(&client).await, emu_consts::ADMIN_USER);
    // External provider too.
    let ext = common::client(
        &emu,
        PasswordAuth::new(
            emu_consts::EXTERNAL_PROVIDER_ID,
            emu_consts::EXTERNAL_USER,
            emu_consts::EXTERNAL_PASSWORD,
        ),
    );
    ext.login().await.expect("external provider password grant");
}

fn device_auth(prompts: Arc<Mutex<Vec<String>>>) -> DeviceCodeAuth {
    DeviceCodeAuth::new("local", move |p| {
        assert!(!p.verification_uri.is_empty());
        prompts.lock().unwrap().push(p.user_code.clone());
    })
}

async fn device_emulator() -> safeguard_emulator::Emulator {
    let emu = common::emulator_with(|c| c.device_code_interval = 1).await;
    emu.control()
        .enable_grant("DeviceCode")
        .expect("enable device code");
    emu
}

async fn wait_for_prompt(prompts: &Arc<Mutex<Vec<String>>>) -> String {
    for _ in 0..100 {
        if let Some(code) = prompts.lock().unwrap().last().cloned() {
            return code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no device code prompt");
}

#[tokio::test]
async fn device_code_pending_then_approved() {
    let emu = device_emulator().await;
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let client = common::client(&emu, device_auth(prompts.clone()));
    let login = tokio::spawn({
        let client = client.clone();
        async move { client.login().await }
    });
    let code = wait_for_prompt(&prompts).await;
    // Let at least one poll see "authorization_pending".
    tokio::time::sleep(Duration::from_millis(1500)).await;
    emu.control()
        .approve_device_code(&code, emu_consts::ADMIN_USER)
        .unwrap();
    login.await.unwrap().expect("device code sign-in");
    assert_eq!(me_name(&client).await, emu_consts::ADMIN_USER);
    assert_eq!(emu.control().signins("device_code"), 1);
}

#[tokio::test]
async fn device_code_denied_and_expired_are_typed() {
    let emu = device_emulator().await;
    for outcome in ["denied", "expired"] {
        let prompts = Arc::new(Mutex::new(Vec::new()));
        let client = common::client(&emu, device_auth(prompts.clone()));
        let login = tokio::spawn({
            let client = client.clone();
            async move { client.login().await }
        });
        let code = wait_for_prompt(&prompts).await;
        if outcome == "denied" {
            emu.control().deny_device_code(&code).unwrap();
        } else {
            emu.control().expire_device_code(&code).unwrap();
        }
        match login.await.unwrap() {
            Err(Error::SignInIncomplete(m)) => assert!(m.contains(outcome), "{m}"),
            other => panic!("expected {outcome}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn device_code_can_be_cancelled() {
    let emu = device_emulator().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let client = common::client(&emu, device_auth(prompts.clone()).cancel_on(cancel.clone()));
    let login = tokio::spawn({
        let client = client.clone();
        async move { client.login().await }
    });
    wait_for_prompt(&prompts).await;
    cancel.cancel();
    match login.await.unwrap() {
        Err(Error::SignInIncomplete(m)) => assert!(m.contains("cancelled"), "{m}"),
        other => panic!("expected cancellation, got {other:?}"),
    }
}

#[tokio::test]
async fn device_code_disabled_is_an_sts_error() {
    let emu = common::emulator().await;
    let client = common::client(&emu, device_auth(Arc::new(Mutex::new(Vec::new()))));
    match client.login().await {
        Err(Error::Sts(e)) => {
            assert!(e.to_string().contains("not allowed"), "{e}");
        }
        other => panic!("expected the grant to be refused, got {other:?}"),
    }
}

/// The three ways the emulator asks for the client certificate: in the first
/// handshake, TLS 1.3 post-handshake authentication, TLS 1.2 renegotiation.
const CERT_MODES: [safeguard_emulator::ClientCertMode; 3] = [
    safeguard_emulator::ClientCertMode::InHandshake,
    safeguard_emulator::ClientCertMode::PostHandshake,
    safeguard_emulator::ClientCertMode::Renegotiation,
];

#[tokio::test]
async fn certificate_from_pem_and_from_pkcs12() {
    for mode in CERT_MODES {
        let emu = common::emulator_with(|c| c.client_cert_mode = mode).await;
        let cert = &emu.connection().spp.client_cert;
        let pem = CertificateAuth::from_pem_files(&cert.cert, &cert.key).unwrap();
        let client = common::client(&emu, pem);
        client.login().await.expect("PEM certificate sign-in");
        assert_eq!(me_name(&client).await, emu_consts::CERT_USER, "{mode:?}");

        let pfx = CertificateAuth::from_pkcs12_file(
            &cert.pfx,
            &SecretString::from(cert.pfx_password.clone()),
        )
        .unwrap();
        let client = common::client(&emu, pfx);
        client.login().await.expect("PKCS#12 certificate sign-in");
        assert_eq!(me_name(&client).await, emu_consts::CERT_USER, "{mode:?}");
        assert_eq!(emu.control().signins("client_credentials"), 2, "{mode:?}");
    }
}

#[tokio::test]
async fn pkcs12_with_a_wrong_password_is_a_configuration_error() {
    let emu = common::emulator().await;
    let cert = &emu.connection().spp.client_cert;
    let err = CertificateAuth::from_pkcs12_file(&cert.pfx, &SecretString::from("wrong".to_owned()))
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn token_auth_uses_the_given_token_and_cannot_refresh() {
    let emu = common::emulator().await;
    let admin = common::admin(&emu).await;
    let token = admin.user_token().await.expect("signed in");
    let client = common::client(&emu, TokenAuth::new(token));
    assert_eq!(me_name(&client).await, emu_consts::ADMIN_USER);
    assert!(matches!(
        client.refresh().await,
        Err(Error::CannotRefresh {
            strategy: "token",
            ..
        })
    ));
}

#[tokio::test]
async fn anonymous_calls_anonymous_endpoints_only() {
    let emu = common::emulator().await;
    let client = SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .unwrap()
        .build()
        .unwrap();
    let status: serde_json::Value = client
        .get(Service::Notification, "Status")
        .send_json()
        .await
        .unwrap();
    assert!(status.is_object());
    let err = client.get(Service::Core, "Me").send().await.unwrap_err();
    assert!(matches!(err, Error::Authentication(_)), "{err}");
    assert!(matches!(
        client.refresh().await,
        Err(Error::CannotRefresh { .. })
    ));
}

#[tokio::test]
async fn logout_invalidates_the_token() {
    let emu = common::emulator().await;
    let admin = common::admin(&emu).await;
    let token = admin.user_token().await.expect("signed in");
    admin.logout().await.unwrap();
    assert!(!admin.is_signed_in().await);
    let stale = common::client(&emu, TokenAuth::new(token));
    let err = stale.get(Service::Core, "Me").send().await.unwrap_err();
    assert!(matches!(err, Error::Authentication(_)), "{err}");
}

#[tokio::test]
async fn token_lifetime_is_reported() {
    let emu = common::emulator().await;
    let admin = common::admin(&emu).await;
    let minutes = admin
        .token_lifetime_remaining()
        .await
        .unwrap()
        .expect("a lifetime");
    assert!((1..=60).contains(&minutes), "{minutes}");
}

#[tokio::test]
async fn expired_token_is_refreshed_once_for_a_hundred_concurrent_calls() {
    let emu = common::emulator().await;
    let admin = common::admin(&emu).await;
    let before = emu.control().login_response_calls();
    emu.control().expire_all_tokens();
    let calls = (0..100).map(|_| {
        let c = admin.clone();
        tokio::spawn(async move { me_name(&c).await })
    });
    for name in futures::future::join_all(calls).await {
        assert_eq!(name.unwrap(), emu_consts::ADMIN_USER);
    }
    assert_eq!(
        emu.control().login_response_calls() - before,
        1,
        "exactly one sign-in"
    );
}

#[tokio::test]
async fn nearly_spent_token_is_refreshed_before_the_call() {
    // A lifetime of one minute is inside the default two-minute margin.
    let emu = common::emulator_with(|c| c.token_lifetime = Duration::from_secs(60)).await;
    let admin = common::admin(&emu).await;
    me_name(&admin).await; // reads the lifetime header
    let before = emu.control().login_response_calls();
    me_name(&admin).await;
    assert_eq!(emu.control().login_response_calls() - before, 1);
}

/// Plays the browser: signs in at the login controller with the challenge
/// and redirect the SDK put in the address, then follows the redirect to the
/// SDK's loopback listener, as the rSTS page would.
async fn act_as_browser(emu_host: String, ca: String, address: String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let url = url::Url::parse(&address).unwrap();
    assert_eq!(url.path(), "/RSTS/Login");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    let redirect = q["redirect_uri"].clone();
    let csrf = "browser-csrf-token";
    let mut code_url = String::new();
    for step in [1, 3, 6] {
        let answer: serde_json::Value = http
            .post(format!("https://{emu_host}/RSTS/UserLogin/LoginController"))
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
                ("usernameTextbox", emu_consts::ADMIN_USER),
                ("passwordTextbox", emu_consts::ADMIN_PASSWORD),
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
    assert!(code_url.starts_with(&redirect), "{code_url}");
    let plain = reqwest::Client::new();
    // A stray request first (a favicon), which the listener must survive.
    let _ = plain.get(format!("{redirect}favicon.ico")).send().await;
    let page = plain
        .get(format!("{code_url}&state={}", q["state"]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Signed in"), "{page}");
}

#[tokio::test]
async fn browser_pkce_receives_the_code_on_the_loopback_redirect() {
    use safeguard_sdk::auth::BrowserPkceAuth;
    let emu = common::emulator().await;
    let (host, ca) = (emu.spp_host(), emu.ca_pem().to_owned());
    let auth = BrowserPkceAuth::new()
        .timeout(Duration::from_secs(30))
        .opener(move |address| {
            tokio::spawn(act_as_browser(host.clone(), ca.clone(), address.to_owned()));
            Ok(())
        });
    let client = common::client(&emu, auth);
    client.login().await.expect("browser sign-in");
    assert_eq!(me_name(&client).await, emu_consts::ADMIN_USER);
    assert!(matches!(
        client.refresh().await,
        Err(Error::CannotRefresh { .. })
    ));
}

/// The loopback `redirect_uri` in the address the SDK opens.
fn redirect_of(address: &str) -> url::Url {
    let address = url::Url::parse(address).unwrap();
    let redirect = address
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("a redirect_uri");
    url::Url::parse(&redirect).unwrap()
}

#[tokio::test]
async fn browser_pkce_ignores_an_error_redirect_with_another_state() {
    use safeguard_sdk::auth::BrowserPkceAuth;
    let emu = common::emulator().await;
    let (host, ca) = (emu.spp_host(), emu.ca_pem().to_owned());
    let forged_status = Arc::new(Mutex::new(None::<u16>));
    let seen = forged_status.clone();
    let auth = BrowserPkceAuth::new()
        .timeout(Duration::from_secs(30))
        .opener(move |address| {
            let (host, ca, address, seen) =
                (host.clone(), ca.clone(), address.to_owned(), seen.clone());
            tokio::spawn(async move {
                let _ = rustls::crypto::ring::default_provider().install_default();
                // Another local process tries to abort the sign-in.
                let mut forged = redirect_of(&address);
                forged.set_query(Some("error=access_denied&state=forged"));
                let answer = reqwest::Client::new().get(forged).send().await.unwrap();
                *seen.lock().unwrap() = Some(answer.status().as_u16());
                act_as_browser(host, ca, address).await;
            });
            Ok(())
        });
    let client = common::client(&emu, auth);
    client
        .login()
        .await
        .expect("the forged error redirect does not end the sign-in");
    assert_eq!(me_name(&client).await, emu_consts::ADMIN_USER);
    assert_eq!(*forged_status.lock().unwrap(), Some(400));
}

#[tokio::test]
async fn browser_pkce_is_not_blocked_by_an_idle_connection() {
    use safeguard_sdk::auth::BrowserPkceAuth;
    let emu = common::emulator().await;
    let (host, ca) = (emu.spp_host(), emu.ca_pem().to_owned());
    let auth = BrowserPkceAuth::new()
        // Shorter than the listener's read timeout of one connection: the
        // redirect must be served beside the idle connection, not after it.
        .timeout(Duration::from_secs(8))
        .opener(move |address| {
            let (host, ca, address) = (host.clone(), ca.clone(), address.to_owned());
            tokio::spawn(async move {
                let redirect = redirect_of(&address);
                // A browser's speculative connection: opened first, never used.
                let idle = tokio::net::TcpStream::connect((
                    redirect.host_str().unwrap(),
                    redirect.port().unwrap(),
                ))
                .await
                .unwrap();
                act_as_browser(host, ca, address).await;
                drop(idle);
            });
            Ok(())
        });
    let client = common::client(&emu, auth);
    client
        .login()
        .await
        .expect("the redirect is served while a connection idles");
    assert_eq!(me_name(&client).await, emu_consts::ADMIN_USER);
}

#[tokio::test]
async fn browser_pkce_times_out_without_a_redirect() {
    use safeguard_sdk::auth::BrowserPkceAuth;
    let emu = common::emulator().await;
    let auth = BrowserPkceAuth::new()
        .timeout(Duration::from_millis(300))
        .opener(|_| Ok(()));
    let err = common::client(&emu, auth).login().await.unwrap_err();
    assert!(matches!(err, Error::SignInIncomplete(_)), "{err}");
}

#[tokio::test]
async fn certificate_with_an_encrypted_key() {
    for mode in CERT_MODES {
        let emu = common::emulator_with(|c| c.client_cert_mode = mode).await;
        let files = emu.client_cert();
        // The emulator encrypts the key with the PKCS#12 password.
        let passphrase = SecretString::from(files.pfx_password.clone());
        let auth = CertificateAuth::from_encrypted_pem_files(
            &files.cert,
            &files.encrypted_key,
            &passphrase,
        )
        .unwrap();
        let client = common::client(&emu, auth);
        client
            .login()
            .await
            .expect("encrypted-key certificate sign-in");
        assert_eq!(me_name(&client).await, emu_consts::CERT_USER, "{mode:?}");
    }
    let emu = common::emulator().await;
    let files = emu.client_cert();
    let wrong = CertificateAuth::from_encrypted_pem_files(
        &files.cert,
        &files.encrypted_key,
        &SecretString::from("not-it".to_owned()),
    );
    assert!(matches!(wrong, Err(Error::Config(_))));
}

#[tokio::test]
async fn certificate_sign_in_answers_a_post_handshake_request() {
    // As on a real appliance: the certificate is asked for only after the
    // TLS handshake, when the token request arrives.
    let emu = common::emulator_with(|c| {
        c.client_cert_mode = safeguard_emulator::ClientCertMode::PostHandshake
    })
    .await;
    let cert = &emu.connection().spp.client_cert;
    let client = common::client(
        &emu,
        CertificateAuth::from_pem_files(&cert.cert, &cert.key).unwrap(),
    );
    client
        .login()
        .await
        .expect("certificate sign-in with post-handshake auth");
    assert_eq!(me_name(&client).await, emu_consts::CERT_USER);
    // Refresh works the same way.
    client.refresh().await.unwrap();
    assert_eq!(emu.control().signins("client_credentials"), 2);
}

#[tokio::test]
async fn certificate_sign_in_answers_a_renegotiation() {
    // As on SPP 7 and 8 over TLS 1.2: the certificate is asked for by a
    // renegotiation when the token request arrives.
    let emu = common::emulator_with(|c| {
        c.client_cert_mode = safeguard_emulator::ClientCertMode::Renegotiation
    })
    .await;
    let cert = &emu.connection().spp.client_cert;
    let client = common::client(
        &emu,
        CertificateAuth::from_pem_files(&cert.cert, &cert.key).unwrap(),
    );
    client
        .login()
        .await
        .expect("certificate sign-in with a renegotiation");
    assert_eq!(me_name(&client).await, emu_consts::CERT_USER);
    // Refresh works the same way.
    client.refresh().await.unwrap();
    assert_eq!(emu.control().signins("client_credentials"), 2);
}

#[tokio::test]
async fn device_code_slows_down_when_the_appliance_asks() {
    let emu = device_emulator().await;
    let prompts = Arc::new(Mutex::new(Vec::new()));
    let client = common::client(&emu, device_auth(prompts.clone()));
    let started = std::time::Instant::now();
    let login = tokio::spawn({
        let client = client.clone();
        async move { client.login().await }
    });
    let code = wait_for_prompt(&prompts).await;
    emu.control().slow_down_device_code(&code).unwrap();
    // The first poll (after 1 s) is told to slow down; the client then waits
    // 1 + 5 = 6 s, and the emulator (which now requires 6 s) sees no second
    // slow_down before the approval is picked up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    emu.control()
        .approve_device_code(&code, emu_consts::ADMIN_USER)
        .unwrap();
    login
        .await
        .unwrap()
        .expect("device code sign-in after slow_down");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(7),
        "the client slowed down: {elapsed:?}"
    );
    let info = emu.control().device_codes();
    assert_eq!(info.last().map(|d| d.interval), Some(6), "{info:?}");
    assert_eq!(me_name(&client).await, emu_consts::ADMIN_USER);
}
