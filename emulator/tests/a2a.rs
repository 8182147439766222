//! A2A credentials, brokered access requests, and the client-certificate
//! modes (in the handshake and after it).

mod common;

use common::*;
use reqwest::StatusCode;
use safeguard_emulator::*;
use serde_json::{json, Value};

fn a2a(emu: &Emulator, path: &str) -> String {
    format!("https://{}/service/a2a/v4/{path}", emu.spp_host())
}

#[tokio::test]
async fn retrieve_and_set_credentials() {
    let emu = start().await;
    let c = cert_client(&emu);
    let keys = emu.connection().spp.a2a.clone();
    let auth = |k: &str| format!("A2A {k}");
    let r = c
        .get(a2a(&emu, "Credentials?type=password"))
        .header("Authorization", auth(&keys.password_api_key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!(PASSWORD_ACCOUNT_PASSWORD)
    );
    for (param, fmt, prefix) in [
        (
            "keyFormat",
            "openssh",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
        ),
        (
            "key_format",
            "ssh2",
            "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----",
        ),
        ("keyFormat", "putty", "PuTTY-User-Key-File-2: ssh-rsa"),
    ] {
        let r = c
            .get(a2a(
                &emu,
                &format!("Credentials?type=privatekey&{param}={fmt}"),
            ))
            .header("Authorization", auth(&keys.ssh_key_api_key))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{fmt}");
        let k: String = r.json().await.unwrap();
        assert!(k.starts_with(prefix), "{fmt}: {k}");
    }
    let r = c
        .get(a2a(&emu, "Credentials?type=apikey"))
        .header("Authorization", auth(&keys.password_api_key))
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    assert!(list.as_array().unwrap()[0]["ClientSecret"].is_string());
    // Bad key: 403.
    let r = c
        .get(a2a(&emu, "Credentials?type=password"))
        .header("Authorization", "A2A nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Set the password: JSON string, then retrievable; raw text is 415.
    let r = c
        .put(a2a(&emu, "Credentials/Password"))
        .header("Authorization", auth(&keys.password_api_key))
        .json(&"New-Secret-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        emu.control()
            .account_password(emu.control().password_account_id())
            .unwrap(),
        "New-Secret-9"
    );
    let r = c
        .put(a2a(&emu, "Credentials/Password"))
        .header("Authorization", auth(&keys.password_api_key))
        .header("Content-Type", "text/plain")
        .body("raw")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Set the SSH key with one we got back, after regenerating through openssl.
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let pem = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
    let r = c
        .put(a2a(&emu, "Credentials/SshKey?keyFormat=openssh"))
        .header("Authorization", auth(&keys.ssh_key_api_key))
        .json(&json!({"PrivateKey": pem, "Passphrase": ""}))
        .send()
        .await
        .unwrap();
    // 204 like the password (openapi/a2a.json); the account holds the key.
    assert_eq!(r.status(), 204);
    let ssh = emu.control().ssh_key_account_id();
    assert!(emu
        .control()
        .account_public_key(ssh)
        .unwrap()
        .starts_with("ssh-rsa "));
    let r = c
        .put(a2a(&emu, "Credentials/SshKey"))
        .header("Authorization", auth(&keys.ssh_key_api_key))
        .json(&json!({"PrivateKey": "garbage", "Passphrase": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Broker an access request for the plain user.
    let r = c
        .post(a2a(&emu, "AccessRequests"))
        .header("Authorization", auth(&emu.control().broker_api_key()))
        .json(&json!({"ForUserName": PLAIN_USER, "AssetName": ASSET_NAME, "AccountName": PASSWORD_ACCOUNT, "AccessRequestType": "Password", "ReasonComment": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["RequesterUsername"], PLAIN_USER);
    assert_eq!(v["AccountName"], PASSWORD_ACCOUNT);
    let r = c
        .post(a2a(&emu, "AccessRequests"))
        .header("Authorization", auth(&keys.password_api_key))
        .json(&json!({"ForUserName": PLAIN_USER, "AccountName": PASSWORD_ACCOUNT}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn no_certificate_is_60094() {
    let emu = start().await;
    let c = client(&emu);
    let r = c
        .get(a2a(&emu, "Credentials?type=password"))
        .header(
            "Authorization",
            format!("A2A {}", emu.connection().spp.a2a.password_api_key),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Code"], 60094);
    assert_eq!(v["Message"], "Authorization is denied.");
}

#[tokio::test]
async fn unregistered_certificate_is_refused() {
    let emu = start().await;
    // A certificate from another emulator's CA: not trusted, not registered.
    let other = start().await;
    let files = other.client_cert();
    let mut pem = std::fs::read(&files.cert).unwrap();
    pem.extend(std::fs::read(&files.key).unwrap());
    let c = builder(&emu)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = c
        .get(a2a(&emu, "Credentials?type=password"))
        .header(
            "Authorization",
            format!("A2A {}", emu.connection().spp.a2a.password_api_key),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&json!({"grant_type": "client_credentials", "scope": "rsts:sts:primaryproviderid:certificate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn post_handshake_mode() {
    let emu = start_with(EmulatorConfig {
        client_cert_mode: ClientCertMode::PostHandshake,
        ..Default::default()
    })
    .await;
    let key = emu.connection().spp.a2a.password_api_key.clone();
    let auth = format!("A2A {key}");
    // rustls (no post-handshake auth) with a certificate: refused.
    let c = cert_client(&emu);
    let r = c
        .get(a2a(&emu, "Credentials?type=password"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["Code"], 60094);
    let r = c
        .post(format!("{}/RSTS/oauth2/token", base(&emu)))
        .json(&json!({"grant_type": "client_credentials", "scope": "rsts:sts:primaryproviderid:certificate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The same client still reaches anonymous endpoints.
    let r = c
        .get(format!("{}/service/notification/v4/Status", base(&emu)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // OpenSSL with post-handshake auth: first an anonymous request, then the
    // certificate is asked for mid-connection and the request succeeds.
    let mut s = openssl_connect(&emu, true, true).await;
    assert!(s.ssl().peer_certificate().is_some());
    let r = raw_request(
        &mut s,
        "GET",
        "/service/notification/v4/Status/State",
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = raw_request(
        &mut s,
        "GET",
        "/service/a2a/v4/Credentials?type=password",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json(), json!(PASSWORD_ACCOUNT_PASSWORD));
    // The connection is still usable afterwards, with the certificate.
    let r = raw_request(
        &mut s,
        "GET",
        "/service/a2a/v4/Credentials?type=password",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let body =
        br#"{"grant_type":"client_credentials","scope":"rsts:sts:primaryproviderid:certificate"}"#;
    let r = raw_request(
        &mut s,
        "POST",
        "/RSTS/oauth2/token",
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(r.status, 200);

    // OpenSSL with post-handshake auth but no certificate: 403 after the client's empty answer.
    let mut s = openssl_connect(&emu, false, true).await;
    let t = std::time::Instant::now();
    let r = raw_request(
        &mut s,
        "GET",
        "/service/a2a/v4/Credentials?type=password",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(4),
        "empty answer detected before the 5 s timeout"
    );
    // OpenSSL without post-handshake support: 403.
    let mut s = openssl_connect(&emu, true, false).await;
    let r = raw_request(
        &mut s,
        "GET",
        "/service/a2a/v4/Credentials?type=password",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);

    // Switching back to in-handshake mode at run time: rustls works again.
    emu.control()
        .set_client_cert_mode(ClientCertMode::InHandshake);
    let c = cert_client(&emu);
    let r = c
        .get(a2a(&emu, "Credentials?type=password"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn renegotiation_mode() {
    let emu = start_with(EmulatorConfig {
        client_cert_mode: ClientCertMode::Renegotiation,
        ..Default::default()
    })
    .await;
    let key = emu.connection().spp.a2a.password_api_key.clone();
    let auth = format!("A2A {key}");
    // rustls cannot renegotiate: it answers the HelloRequest with a
    // no_renegotiation alert, OpenSSL ends the connection with a fatal
    // handshake_failure, and the A2A request has no answer. Anonymous
    // endpoints work.
    let c = cert_client(&emu);
    let r = c
        .get(a2a(&emu, "Credentials?type=password"))
        .header("Authorization", &auth)
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    let r = c
        .get(format!("{}/service/notification/v4/Status", base(&emu)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // OpenSSL (even with post-handshake auth offered): the first handshake
    // is TLS 1.2 and asks for nothing; the certificate comes with the
    // renegotiation the A2A request starts.
    for post_handshake in [false, true] {
        let mut s = openssl_connect(&emu, true, post_handshake).await;
        assert_eq!(s.ssl().version2(), Some(openssl::ssl::SslVersion::TLS1_2));
        assert!(s.ssl().peer_certificate().is_some());
        let r = raw_request(
            &mut s,
            "GET",
            "/service/notification/v4/Status/State",
            &[],
            b"",
        )
        .await;
        assert_eq!(r.status, 200);
        let r = raw_request(
            &mut s,
            "GET",
            "/service/a2a/v4/Credentials?type=password",
            &[("Authorization", &auth)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!(PASSWORD_ACCOUNT_PASSWORD));
        assert_eq!(s.ssl().version2(), Some(openssl::ssl::SslVersion::TLS1_2));
        // The connection keeps the certificate: no second renegotiation.
        let body = br#"{"grant_type":"client_credentials","scope":"rsts:sts:primaryproviderid:certificate"}"#;
        let r = raw_request(
            &mut s,
            "POST",
            "/RSTS/oauth2/token",
            &[("Content-Type", "application/json")],
            body,
        )
        .await;
        assert_eq!(r.status, 200);
    }
    // A request with a body: the body read before the renegotiation is kept.
    let mut s = openssl_connect(&emu, true, false).await;
    let body =
        br#"{"grant_type":"client_credentials","scope":"rsts:sts:primaryproviderid:certificate"}"#;
    let r = raw_request(
        &mut s,
        "POST",
        "/RSTS/oauth2/token",
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));

    // OpenSSL without a certificate: an empty answer, 403 / 60094 at once.
    let mut s = openssl_connect(&emu, false, false).await;
    let t = std::time::Instant::now();
    let r = raw_request(
        &mut s,
        "GET",
        "/service/a2a/v4/Credentials?type=password",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["Code"], 60094);
    assert!(t.elapsed() < std::time::Duration::from_secs(4));

    // Switching modes at run time: new connections follow.
    emu.control()
        .set_client_cert_mode(ClientCertMode::InHandshake);
    let s = openssl_connect(&emu, true, false).await;
    assert_eq!(s.ssl().version2(), Some(openssl::ssl::SslVersion::TLS1_3));
    emu.control()
        .set_client_cert_mode(ClientCertMode::Renegotiation);
    assert_eq!(
        emu.control().client_cert_mode(),
        ClientCertMode::Renegotiation
    );
    let s = openssl_connect(&emu, true, true).await;
    assert_eq!(s.ssl().version2(), Some(openssl::ssl::SslVersion::TLS1_2));
}

#[tokio::test]
async fn peer_certificate_extension_in_handshake_mode() {
    let emu = start().await;
    let mut s = openssl_connect(&emu, true, false).await;
    // In-handshake mode: the certificate is there from the start.
    let r = raw_request(
        &mut s,
        "GET",
        "/service/a2a/v4/Credentials?type=password",
        &[(
            "Authorization",
            &format!("A2A {}", emu.connection().spp.a2a.password_api_key),
        )],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn ed25519_key_set_through_core_and_retrieved_in_every_format() {
    use base64::Engine;
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let id = emu.control().ssh_key_account_id();
    let pkey = openssl::pkey::PKey::generate_ed25519().unwrap();
    let pem = String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let r = c
        .put(core(&emu, &format!("AssetAccounts/{id}/SshKey")))
        .bearer_auth(&t)
        .json(&json!({"PrivateKey": pem, "Comment": "ed@emulator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["KeyType"], "Ed25519");
    assert_eq!(v["KeyLength"], 256);
    // The public key is the one OpenSSL derives.
    let mut blob = vec![0, 0, 0, 11];
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&[0, 0, 0, 32]);
    blob.extend_from_slice(&pkey.raw_public_key().unwrap());
    let expected = format!(
        "ssh-ed25519 {} ed@emulator",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    assert_eq!(v["PublicKey"], expected.as_str());
    let r = c
        .get(core(&emu, &format!("AssetAccounts/{id}/SshKey")))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["KeyType"], "Ed25519");

    let keys = emu.connection().spp.a2a.clone();
    let a2a_client = cert_client(&emu);
    let get = |fmt: &'static str| {
        a2a_client
            .get(a2a(
                &emu,
                &format!("Credentials?type=privatekey&keyFormat={fmt}"),
            ))
            .header("Authorization", format!("A2A {}", keys.ssh_key_api_key))
            .send()
    };
    let openssh: String = get("OpenSsh").await.unwrap().json().await.unwrap();
    assert!(openssh.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    let putty: String = get("Putty").await.unwrap().json().await.unwrap();
    assert!(
        putty.starts_with("PuTTY-User-Key-File-2: ssh-ed25519\n"),
        "{putty}"
    );
    assert!(putty.contains("Comment: ed@emulator\n"));
    // The ssh.com format holds RSA and DSA keys only: a 400 naming keyFormat.
    let r = get("Ssh2").await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["ModelState"]["keyFormat"].is_array(), "{body}");

    // Both retrieved forms set back through A2A: the same public key.
    for text in [openssh, putty] {
        let r = a2a_client
            .put(a2a(&emu, "Credentials/SshKey"))
            .header("Authorization", format!("A2A {}", keys.ssh_key_api_key))
            .json(&json!({"PrivateKey": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let ssh = emu.control().ssh_key_account_id();
        assert_eq!(
            emu.control().account_public_key(ssh).as_deref(),
            Some(expected.as_str())
        );
    }
}

/// Certificate-user calls to core `A2ARegistrations` (no user token), over
/// an OpenSSL connection that answers the emulator's way of asking for the
/// certificate in `mode`.
async fn certificate_user_registrations(mode: ClientCertMode) {
    let emu = start_with(EmulatorConfig {
        client_cert_mode: mode,
        ..Default::default()
    })
    .await;
    let control = emu.control();
    let keys = emu.connection().spp.a2a.clone();
    let post_handshake = mode == ClientCertMode::PostHandshake;
    let mut s = openssl_connect(&emu, true, post_handshake).await;
    let mut get = async |path: &str, auth: Option<&str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        raw_request(
            &mut s,
            "GET",
            &format!("/service/core/v4/{path}"),
            &headers,
            b"",
        )
        .await
    };
    // The certificate alone: the certificate user's registrations (self
    // discovery on) and all their accounts with their API keys, as
    // safeguard-ps' Get-SafeguardA2aRetrievableAccount reads them.
    let r = get("A2ARegistrations", None).await;
    assert_eq!(
        r.status,
        200,
        "{mode:?}: {}",
        String::from_utf8_lossy(&r.body)
    );
    let regs = r.json();
    assert_eq!(regs.as_array().unwrap().len(), 1, "{regs}");
    assert_eq!(regs[0]["AppName"], A2A_APP_NAME);
    let reg = regs[0]["Id"].as_i64().unwrap();
    let r = get(&format!("A2ARegistrations/{reg}"), None).await;
    assert_eq!(r.status, 200);
    let r = get(&format!("A2ARegistrations/{reg}/RetrievableAccounts"), None).await;
    assert_eq!(r.status, 200);
    let accounts = r.json();
    let mut api_keys: Vec<&str> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ApiKey"].as_str().unwrap())
        .collect();
    api_keys.sort();
    let mut seeded = vec![
        keys.password_api_key.as_str(),
        keys.ssh_key_api_key.as_str(),
    ];
    seeded.sort();
    assert_eq!(api_keys, seeded);

    // With an API key: only what that key retrieves.
    let auth = format!("A2A {}", keys.password_api_key);
    let r = get("A2ARegistrations?fields=Id,AppName", Some(&auth)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([{"Id": reg, "AppName": A2A_APP_NAME}]));
    let r = get(
        &format!("A2ARegistrations/{reg}/RetrievableAccounts"),
        Some(&auth),
    )
    .await;
    let listed = r.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["AccountId"], control.password_account_id());
    let pw = control.password_account_id();
    let r = get(
        &format!("A2ARegistrations/{reg}/RetrievableAccounts/{pw}/ApiKey"),
        Some(&auth),
    )
    .await;
    assert_eq!(r.json(), json!(keys.password_api_key));
    let ssh = control.ssh_key_account_id();
    let r = get(
        &format!("A2ARegistrations/{reg}/RetrievableAccounts/{ssh}"),
        Some(&auth),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get("A2ARegistrations", Some("A2A not-a-key")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["Code"], 60096);
    let r = get("A2ARegistrations/999", None).await;
    assert_eq!(r.status, 404);

    // Self discovery off: the certificate user no longer sees it.
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let r = c
        .put(core(&emu, &format!("A2ARegistrations/{reg}")))
        .bearer_auth(&t)
        .json(&json!({"AppName": A2A_APP_NAME, "VisibleToCertificateUsers": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = get("A2ARegistrations", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));
    // A user token still sees it.
    let r = c
        .get(core(&emu, "A2ARegistrations"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        1
    );

    // Without a certificate: 401 (403 / 60094 with an API key).
    let mut s = openssl_connect(&emu, false, post_handshake).await;
    let r = raw_request(&mut s, "GET", "/service/core/v4/A2ARegistrations", &[], b"").await;
    assert_eq!(r.status, 401);
    let r = raw_request(
        &mut s,
        "GET",
        "/service/core/v4/A2ARegistrations",
        &[("Authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["Code"], 60094);
}

#[tokio::test]
async fn certificate_user_registrations_in_handshake_mode() {
    certificate_user_registrations(ClientCertMode::InHandshake).await;
}

#[tokio::test]
async fn certificate_user_registrations_post_handshake() {
    certificate_user_registrations(ClientCertMode::PostHandshake).await;
}

#[tokio::test]
async fn certificate_user_registrations_by_renegotiation() {
    certificate_user_registrations(ClientCertMode::Renegotiation).await;
}

#[tokio::test]
async fn rsa_key_round_trips_through_every_format() {
    let emu = start().await;
    let keys = emu.connection().spp.a2a.clone();
    let c = cert_client(&emu);
    let auth = format!("A2A {}", keys.ssh_key_api_key);
    let mut public = None;
    for fmt in ["Ssh2", "Putty", "OpenSsh"] {
        let text: String = c
            .get(a2a(
                &emu,
                &format!("Credentials?type=privatekey&keyFormat={fmt}"),
            ))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Set back in the same format: the same key.
        let r = c
            .put(a2a(&emu, &format!("Credentials/SshKey?keyFormat={fmt}")))
            .header("Authorization", &auth)
            .json(&json!({"PrivateKey": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{fmt}");
        let ssh = emu.control().ssh_key_account_id();
        let key = emu.control().account_public_key(ssh).unwrap();
        assert!(key.starts_with("ssh-rsa "), "{key}");
        if let Some(p) = &public {
            assert_eq!(&key, p, "{fmt}");
        }
        public = Some(key);
    }
}
