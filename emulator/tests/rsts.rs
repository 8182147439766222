//! rSTS sign-in flows, tokens and grant switching (start-up: `startup.rs`).

mod common;

use std::time::Duration;

use common::*;

use safeguard_emulator::*;
use serde_json::{json, Value};

#[tokio::test]
async fn temp_dir_is_removed_on_drop() {
    let emu = start().await;
    let dir = emu.dir().to_path_buf();
    assert!(dir.join("connection.json").is_file());
    drop(emu);
    assert!(!dir.exists());
}

#[tokio::test]
async fn providers_anonymous() {
    let emu = start().await;
    let c = client(&emu);
    let v: Value = c
        .get(core(&emu, "AuthenticationProviders"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["RstsProviderId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["local", "certificate", EXTERNAL_PROVIDER_ID]);
    // Routes are case-insensitive like the appliance.
    let r = c
        .get(format!(
            "{}/service/Core/v4/authenticationproviders",
            base(&emu)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn pkce_admin_me_header_and_logout() {
    let emu = start().await;
    let c = client(&emu);
    let token = admin_token(&c, &emu).await;
    let r = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-tokenlifetimeremaining"], "60");
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["Name"], ADMIN_USER);
    assert_eq!(
        me["PrimaryAuthenticationProvider"]["RstsProviderId"],
        Value::Null
    );
    assert_eq!(me["PrimaryAuthenticationProvider"]["Id"], -1);
    assert!(me["AdminRoles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "GlobalAdmin"));
    let control = emu.control();
    assert_eq!(control.signins("authorization_code"), 1);
    assert_eq!(control.login_response_calls(), 1);
    let r = c
        .post(core(&emu, "Token/Logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["Code"], 60108);
    assert!(e["Message"].is_string());
}

#[tokio::test]
async fn pkce_rejections() {
    let emu = start().await;
    let c = client(&emu);
    let p = Pkce::new();
    let bad_pw = [
        ("directoryComboBox", "local"),
        ("usernameTextbox", ADMIN_USER),
        ("passwordTextbox", "nope"),
    ];
    assert_eq!(p.post(&c, &emu, 1, &bad_pw).await.status(), 200);
    assert_eq!(p.post(&c, &emu, 3, &bad_pw).await.status(), 401);
    assert_eq!(p.post(&c, &emu, 6, &bad_pw).await.status(), 401);
    // CSRF cookie must match the form.
    let r = c
        .post(p.url(&emu, 3))
        .header("Cookie", "CsrfToken=other")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("csrfTokenTextbox={}&directoryComboBox=local&usernameTextbox=Admin&passwordTextbox=Admin123", p.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Wrong verifier at the token endpoint.
    let p = Pkce::new();
    let good = [
        ("directoryComboBox", "local"),
        ("usernameTextbox", ADMIN_USER),
        ("passwordTextbox", ADMIN_PASSWORD),
    ];
    p.post(&c, &emu, 1, &good).await;
    p.post(&c, &emu, 3, &good).await;
    let v: Value = p.post(&c, &emu, 6, &good).await.json().await.unwrap();
    let code = v["RelyingPartyUrl"]
        .as_str()
        .unwrap()
        .split("code=")
        .nth(1)
        .unwrap()
        .to_string();
    let r = c
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&json!({"grant_type": "authorization_code", "redirect_uri": "urn:InstalledApplication", "code": code, "code_verifier": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant");
    assert!(e["error_description"].is_string());
}

#[tokio::test]
async fn pkce_mfa() {
    let emu = start().await;
    let c = client(&emu);
    let (user, pw, otp) = emu.control().mfa_user();
    let sts = pkce_access_token(&c, &emu, "local", user, pw, Some(otp)).await;
    let token = user_token(&c, &emu, &sts).await;
    let me: Value = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["Name"], MFA_USER);
    // Wrong OTP: 203 with a Message, and step 6 refuses.
    let p = Pkce::new();
    let form = [
        ("directoryComboBox", "local"),
        ("usernameTextbox", user),
        ("passwordTextbox", pw),
    ];
    p.post(&c, &emu, 1, &form).await;
    let v: Value = p.post(&c, &emu, 3, &form).await.json().await.unwrap();
    assert!(v["SecondaryProviderID"].is_string());
    let st: Value = p.post(&c, &emu, 7, &form).await.json().await.unwrap();
    let state = st["State"].as_str().unwrap().to_string();
    let mut f = form.to_vec();
    f.push(("secondaryLoginTextbox", "000000"));
    f.push(("secondaryAuthenticationStateTextbox", &state));
    let r = p.post(&c, &emu, 5, &f).await;
    assert_eq!(r.status(), 203);
    let v: Value = r.json().await.unwrap();
    assert!(v["Message"].as_str().unwrap().contains("one-time password"));
    assert_eq!(p.post(&c, &emu, 6, &form).await.status(), 401);
}

#[tokio::test]
async fn external_provider_user() {
    let emu = start().await;
    let c = client(&emu);
    let sts = pkce_access_token(
        &c,
        &emu,
        EXTERNAL_PROVIDER_ID,
        EXTERNAL_USER,
        EXTERNAL_PASSWORD,
        None,
    )
    .await;
    let token = user_token(&c, &emu, &sts).await;
    let me: Value = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["Name"], EXTERNAL_USER);
    assert_eq!(
        me["PrimaryAuthenticationProvider"]["Name"],
        EXTERNAL_PROVIDER_NAME
    );
}

#[tokio::test]
async fn password_grant_switched_by_setting() {
    let emu = start().await;
    let c = client(&emu);
    let body = json!({"grant_type": "password", "username": ADMIN_USER, "password": ADMIN_PASSWORD,
        "scope": "rsts:sts:primaryproviderid:local"});
    let r = c
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "unauthorized_client");
    let admin = admin_token(&c, &emu).await;
    let url = core(&emu, "Settings/Allowed%20OAuth2%20Grant%20Types");
    let v: Value = c
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["Name"], "Allowed OAuth2 Grant Types");
    let value = format!("{}, ResourceOwner", v["Value"].as_str().unwrap());
    let r = c
        .put(&url)
        .bearer_auth(&admin)
        .json(&json!({"Value": value}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(&url)
        .bearer_auth(&admin)
        .json(&json!({"Value": "Bogus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert!(v["expires_in"].as_u64().unwrap() > 0);
    user_token(&c, &emu, v["access_token"].as_str().unwrap()).await;
    // Form-encoded works too; a wrong password is invalid_grant.
    let r = c
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=Admin&password=wrong&scope=rsts%3Asts%3Aprimaryproviderid%3Alocal")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(emu.control().signins("password"), 1);
    // Non-admins cannot change settings.
    let (u, p, _) = (PLAIN_USER, PLAIN_PASSWORD, ());
    let sts = pkce_access_token(&c, &emu, "local", u, p, None).await;
    let plain = user_token(&c, &emu, &sts).await;
    let r = c
        .put(&url)
        .bearer_auth(&plain)
        .json(&json!({"Value": "AuthorizationCode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.json::<Value>().await.unwrap()["Code"].is_number());
}

#[tokio::test]
async fn certificate_grant() {
    let emu = start().await;
    let c = cert_client(&emu);
    let r = c
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&json!({"grant_type": "client_credentials", "scope": "rsts:sts:primaryproviderid:certificate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let token = user_token(&c, &emu, v["access_token"].as_str().unwrap()).await;
    let me: Value = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["Name"], CERT_USER);
    assert_eq!(
        me["PrimaryAuthenticationProvider"]["Identity"],
        emu.connection().spp.client_cert.thumbprint
    );
    assert_eq!(emu.control().signins("client_credentials"), 1);
    // Without a certificate: 403 / 60094.
    let plain = client(&emu);
    let r = plain
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&json!({"grant_type": "client_credentials", "scope": "rsts:sts:primaryproviderid:certificate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["Code"], 60094);
}

#[tokio::test]
async fn device_code_flow() {
    let emu = start_with(EmulatorConfig {
        device_code_interval: 1,
        ..Default::default()
    })
    .await;
    let c = client(&emu);
    let control = emu.control();
    let login = |c: &reqwest::Client| {
        c.post(format!("{}/RSTS/oauth2/DeviceLogin", base(&emu)))
            .json(&json!({"client_id": "", "scope": "rsts:sts:primaryproviderid:local"}))
            .send()
    };
    // Disabled by default: an HTML page.
    let r = login(&c).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("device code grant type is not allowed"));
    control.enable_grant("DeviceCode").unwrap();
    let poll = |code: String| {
        let c = c.clone();
        let url = format!("{}/RSTS/oauth2/token", base(&emu));
        async move {
            let r = c
                .post(url)
                .json(&json!({"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": code, "client_id": ""}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let v: Value = login(&c).await.unwrap().json().await.unwrap();
    for k in [
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
    ] {
        assert!(v[k].is_string(), "{k}");
    }
    assert_eq!(v["interval"], 1);
    let code = v["device_code"].as_str().unwrap().to_string();
    let user_code = v["user_code"].as_str().unwrap().to_string();
    let (s, e) = poll(code.clone()).await;
    assert_eq!(
        (s.as_u16(), e["error"].as_str().unwrap()),
        (400, "authorization_pending")
    );
    let (_, e) = poll(code.clone()).await;
    assert_eq!(e["error"], "slow_down");
    assert_eq!(control.device_codes()[0].interval, 6);
    control.approve_device_code(&user_code, ADMIN_USER).unwrap();
    let (s, v) = poll(code.clone()).await;
    assert_eq!(s, 200);
    user_token(&c, &emu, v["access_token"].as_str().unwrap()).await;
    let (_, e) = poll(code).await;
    assert_eq!(e["error"], "invalid_grant");
    assert_eq!(control.signins("device_code"), 1);
    // Deny.
    let v: Value = login(&c).await.unwrap().json().await.unwrap();
    control
        .deny_device_code(v["user_code"].as_str().unwrap())
        .unwrap();
    let (_, e) = poll(v["device_code"].as_str().unwrap().to_string()).await;
    assert_eq!(e["error"], "access_denied");
    // Expire (also through the admin endpoint).
    let v: Value = login(&c).await.unwrap().json().await.unwrap();
    let r = c
        .post(format!(
            "{}/emulator/device-codes/{}/expire",
            base(&emu),
            v["user_code"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, e) = poll(v["device_code"].as_str().unwrap().to_string()).await;
    assert_eq!(e["error"], "expired_token");
}

#[tokio::test]
async fn tokens_expire_for_real_and_on_demand() {
    let emu = start_with(EmulatorConfig {
        token_lifetime: Duration::from_secs(2),
        ..Default::default()
    })
    .await;
    let c = client(&emu);
    let token = admin_token(&c, &emu).await;
    let r = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-tokenlifetimeremaining"], "1");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let r = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    emu.control().set_token_lifetime(Duration::from_secs(3600));
    let token = admin_token(&c, &emu).await;
    let r = c
        .get(format!("{}/service/appliance/v4/SystemTime", base(&emu)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-tokenlifetimeremaining"], "60");
    emu.control().expire_all_tokens();
    let r = c
        .get(core(&emu, "Me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Bad STS token at LoginResponse.
    let r = c
        .post(core(&emu, "Token/LoginResponse"))
        .json(&json!({"StsAccessToken": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["Code"], 60519);
}
