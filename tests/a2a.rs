//! A2A against the emulator over real HTTPS, with the client certificate asked
//! for in the first handshake and, like the appliance, only after it (TLS 1.3
//! post-handshake authentication).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use safeguard_emulator::{ClientCertMode, Emulator};
use safeguard_sdk::a2a::{
    A2aContext, A2aFailure, AccessRequestTypeKnown, BrokeredAccessRequest, KeyFormat,
};
use safeguard_sdk::tls::{ClientIdentity, TlsOptions, TlsVersion};
use safeguard_sdk::{Error, ExposeSecret, SecretString};
use serde_json::{json, Value};

const MODES: [ClientCertMode; 3] = [
    ClientCertMode::InHandshake,
    ClientCertMode::PostHandshake,
    ClientCertMode::Renegotiation,
];

async fn emulator(mode: ClientCertMode) -> Emulator {
    common::emulator_with(|c| {
        c.client_cert_mode = mode;
        c.post_handshake_timeout = Duration::from_secs(3);
    })
    .await
}

fn tls(emu: &Emulator) -> TlsOptions {
    TlsOptions::default()
        .with_ca_pem(emu.ca_pem())
        .expect("CA parses")
}

fn context(emu: &Emulator) -> A2aContext {
    let c = &emu.connection().spp.client_cert;
    A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(tls(emu))
        .build()
        .expect("context builds")
}

fn password_key(emu: &Emulator) -> SecretString {
    SecretString::from(emu.connection().spp.a2a.password_api_key.clone())
}

fn ssh_key(emu: &Emulator) -> SecretString {
    SecretString::from(emu.connection().spp.a2a.ssh_key_api_key.clone())
}

/// A self-signed certificate no certificate user is registered for.
fn unregistered_identity() -> ClientIdentity {
    let (cert, key) = common::self_signed("Not Registered");
    ClientIdentity::from_pem(
        &cert.to_pem().unwrap(),
        &key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap()
}

fn assert_failure(err: &Error, expected: A2aFailure) {
    assert_eq!(
        err.a2a_failure(),
        Some(expected),
        "unexpected error: {err:?}"
    );
}

fn api_code(err: &Error) -> Option<i64> {
    err.api_error().and_then(|a| a.code)
}

/// A plain reqwest + rustls client presenting the emulator's client
/// certificate in the handshake: what a client without post-handshake
/// authentication does.
fn rustls_client(emu: &Emulator) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let c = &emu.connection().spp.client_cert;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(emu.ca_pem().as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&c.key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    reqwest::Client::builder()
        .http1_only()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// A signed-in admin's bearer header (password grant enabled for the test).
async fn admin_token(emu: &Emulator) -> String {
    emu.control().enable_grant("ResourceOwner").unwrap();
    let http = rustls_client(emu);
    let base = format!("https://{}", emu.spp_host());
    let sts: Value = http
        .post(format!("{base}/RSTS/oauth2/token"))
        .json(
            &json!({"grant_type": "password", "username": "Admin", "password": "Admin123",
                      "scope": "rsts:sts:primaryproviderid:local"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let login: Value = http
        .post(format!("{base}/service/core/v4/Token/LoginResponse"))
        .json(&json!({"StsAccessToken": sts["access_token"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    format!("Bearer {}", login["UserToken"].as_str().unwrap())
}

/// Changes the seeded registration the way a client does (the appliance's
/// PUT takes the whole entity): read it, change it, write it.
async fn update_registration(emu: &Emulator, change: Value) {
    let token = admin_token(emu).await;
    let url = format!(
        "https://{}/service/core/v4/A2ARegistrations/{}",
        emu.spp_host(),
        emu.control().a2a_registration_id()
    );
    let mut whole: Value = rustls_client(emu)
        .get(&url)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (k, v) in change.as_object().unwrap() {
        whole[k] = v.clone();
    }
    let status = rustls_client(emu)
        .put(url)
        .header("Authorization", token)
        .json(&whole)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "registration update answered {status}");
}

/// `ssh-rsa` public key blob of an RSA key, base64.
fn ssh_rsa_blob(rsa: &Rsa<openssl::pkey::Private>) -> String {
    fn put(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    fn mpint(n: &openssl::bn::BigNumRef) -> Vec<u8> {
        let mut v = n.to_vec();
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        v
    }
    let mut blob = Vec::new();
    put(&mut blob, b"ssh-rsa");
    put(&mut blob, &mpint(rsa.e()));
    put(&mut blob, &mpint(rsa.n()));
    base64::engine::general_purpose::STANDARD.encode(blob)
}

macro_rules! all_modes {
    ($($name:ident),* $(,)?) => {
        mod in_handshake {
            $(#[tokio::test] async fn $name() { super::$name(super::ClientCertMode::InHandshake).await })*
        }
        mod post_handshake {
            $(#[tokio::test] async fn $name() { super::$name(super::ClientCertMode::PostHandshake).await })*
        }
        mod renegotiation {
            $(#[tokio::test] async fn $name() { super::$name(super::ClientCertMode::Renegotiation).await })*
        }
    };
}

all_modes!(
    retrieves_a_password,
    retrieves_private_keys_in_each_format,
    retrieves_api_key_secrets,
    sets_a_password,
    sets_private_keys,
    brokers_an_access_request,
    lists_retrievable_accounts,
    bad_api_key_is_a_typed_403,
    missing_certificate_is_rejected,
    unregistered_certificate_is_rejected,
    disabled_registration_is_not_enabled,
    loads_encrypted_pem_and_pkcs12,
    reuses_one_connection,
    generated_client_works_over_the_cert_transport,
);

async fn retrieves_a_password(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let password = a2a.retrieve_password(&password_key(&emu)).await.unwrap();
    assert_eq!(
        password.expose_secret(),
        safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD
    );
    // &str and String keys work too.
    let key = emu.connection().spp.a2a.password_api_key.clone();
    assert_eq!(
        a2a.retrieve_password(key.as_str())
            .await
            .unwrap()
            .expose_secret(),
        safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD
    );
    assert!(!format!("{a2a:?}").contains(&key));
}

async fn retrieves_private_keys_in_each_format(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let key = ssh_key(&emu);
    let openssh = a2a
        .retrieve_private_key(&key, KeyFormat::OpenSsh)
        .await
        .unwrap();
    assert!(openssh
        .expose_secret()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let ssh2 = a2a
        .retrieve_private_key(&key, KeyFormat::Ssh2)
        .await
        .unwrap();
    assert!(ssh2
        .expose_secret()
        .starts_with("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"));
    let putty = a2a
        .retrieve_private_key(&key, KeyFormat::Putty)
        .await
        .unwrap();
    assert!(putty
        .expose_secret()
        .starts_with("PuTTY-User-Key-File-2: ssh-rsa"));
    // The password account has no SSH key: 404, typed.
    let err = a2a
        .retrieve_private_key(&password_key(&emu), KeyFormat::OpenSsh)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_failure(&err, A2aFailure::NotFound);
}

async fn retrieves_api_key_secrets(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let secrets = a2a
        .retrieve_api_key_secret(&password_key(&emu))
        .await
        .unwrap();
    assert_eq!(secrets.len(), 1);
    let s = &secrets[0];
    assert_eq!(s.name.as_deref(), Some("emulator-api-key"));
    let secret = s.client_secret.as_ref().expect("a client secret");
    assert!(!secret.expose_secret().is_empty());
    assert!(!format!("{secrets:?}").contains(secret.expose_secret()));
    // The SSH-key account has none.
    assert!(a2a
        .retrieve_api_key_secret(&ssh_key(&emu))
        .await
        .unwrap()
        .is_empty());
}

async fn sets_a_password(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let key = password_key(&emu);
    let new = SecretString::from("N3w-Pa55word \"quoted\" ü");
    a2a.set_password(&key, &new).await.unwrap();
    assert_eq!(
        emu.control()
            .account_password(emu.control().password_account_id())
            .as_deref(),
        Some(new.expose_secret())
    );
    assert_eq!(
        a2a.retrieve_password(&key).await.unwrap().expose_secret(),
        new.expose_secret()
    );
    // An empty password is refused by the appliance (400), typed as an API error.
    let err = a2a
        .set_password(&key, &SecretString::from(""))
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(reqwest::StatusCode::BAD_REQUEST),
        "{err:?}"
    );
}

async fn sets_private_keys(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let key = ssh_key(&emu);
    let account = emu.control().ssh_key_account_id();

    let rsa = Rsa::generate(2048).unwrap();
    let pem = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
    a2a.set_private_key(&key, &SecretString::from(pem), None, KeyFormat::OpenSsh)
        .await
        .unwrap();
    let public = emu.control().account_public_key(account).unwrap();
    assert!(public.contains(&ssh_rsa_blob(&rsa)), "{public}");

    let rsa2 = Rsa::generate(2048).unwrap();
    let passphrase = SecretString::from("key-passphrase");
    let encrypted = PKey::from_rsa(rsa2.clone())
        .unwrap()
        .private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"key-passphrase")
        .unwrap();
    a2a.set_private_key(
        &key,
        &SecretString::from(String::from_utf8(encrypted).unwrap()),
        Some(&passphrase),
        KeyFormat::OpenSsh,
    )
    .await
    .unwrap();
    let public = emu.control().account_public_key(account).unwrap();
    assert!(public.contains(&ssh_rsa_blob(&rsa2)), "{public}");

    let err = a2a
        .set_private_key(
            &key,
            &SecretString::from("not a key"),
            None,
            KeyFormat::OpenSsh,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.status(),
        Some(reqwest::StatusCode::BAD_REQUEST),
        "{err:?}"
    );
}

async fn brokers_an_access_request(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let broker = emu.control().broker_api_key();
    let request = BrokeredAccessRequest {
        for_user_name: Some(safeguard_emulator::PLAIN_USER.into()),
        asset_name: Some(safeguard_emulator::ASSET_NAME.into()),
        account_name: Some(safeguard_emulator::PASSWORD_ACCOUNT.into()),
        access_request_type: Some(AccessRequestTypeKnown::Password.into()),
        reason_comment: Some("brokered by the A2A test".into()),
        ..Default::default()
    };
    let created = a2a.broker_access_request(&broker, &request).await.unwrap();
    assert!(
        created.id.as_deref().is_some_and(|id| !id.is_empty()),
        "{created:?}"
    );
    assert_eq!(
        created.account_name.as_deref(),
        Some(safeguard_emulator::PASSWORD_ACCOUNT)
    );
    assert_eq!(
        created.asset_name.as_deref(),
        Some(safeguard_emulator::ASSET_NAME)
    );

    // A retrieval key is not a broker key.
    let err = a2a
        .broker_access_request(&password_key(&emu), &request)
        .await
        .unwrap_err();
    assert_failure(&err, A2aFailure::BadApiKey);
    // The broker may not request for a user it does not serve.
    let mut other = request.clone();
    other.for_user_name = Some(safeguard_emulator::EXTERNAL_USER.into());
    let err = a2a
        .broker_access_request(&broker, &other)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Authorization(_)), "{err:?}");
}

async fn lists_retrievable_accounts(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let registrations = a2a.retrievable_accounts().await.unwrap();
    assert_eq!(registrations.len(), 1, "{registrations:?}");
    let reg = &registrations[0];
    assert_eq!(reg.id, emu.control().a2a_registration_id());
    assert_eq!(reg.app_name, safeguard_emulator::A2A_APP_NAME);
    assert!(!reg.disabled);
    assert_eq!(reg.accounts.len(), 2);
    let keys = &emu.connection().spp.a2a;
    let pw = reg
        .accounts
        .iter()
        .find(|a| a.account_name == safeguard_emulator::PASSWORD_ACCOUNT)
        .unwrap();
    assert_eq!(pw.api_key.expose_secret(), keys.password_api_key);
    assert_eq!(pw.asset_name, safeguard_emulator::ASSET_NAME);
    let ssh = reg
        .accounts
        .iter()
        .find(|a| a.account_name == safeguard_emulator::SSH_KEY_ACCOUNT)
        .unwrap();
    assert_eq!(ssh.api_key.expose_secret(), keys.ssh_key_api_key);
    assert!(!format!("{registrations:?}").contains(&keys.password_api_key));
    // The listed key retrieves.
    assert_eq!(
        a2a.retrieve_password(&pw.api_key)
            .await
            .unwrap()
            .expose_secret(),
        safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD
    );
    assert_eq!(emu.control().signins("client_credentials"), 1);
}

async fn bad_api_key_is_a_typed_403(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let err = a2a.retrieve_password("not-a-real-key").await.unwrap_err();
    assert!(matches!(err, Error::Authorization(_)), "{err:?}");
    assert_eq!(err.status(), Some(reqwest::StatusCode::FORBIDDEN));
    assert_failure(&err, A2aFailure::BadApiKey);
    assert!(err.is_bad_api_key());
    assert!(!err.to_string().contains("not-a-real-key"));
    assert!(!format!("{err:?}").contains("not-a-real-key"));
    for e in [
        a2a.retrieve_private_key("nope", KeyFormat::Putty)
            .await
            .unwrap_err(),
        a2a.retrieve_api_key_secret("nope").await.unwrap_err(),
        a2a.set_password("nope", &SecretString::from("x"))
            .await
            .unwrap_err(),
        a2a.set_private_key("nope", &SecretString::from("x"), None, KeyFormat::Ssh2)
            .await
            .unwrap_err(),
    ] {
        assert_failure(&e, A2aFailure::BadApiKey);
    }
    // A key that cannot be a key never leaves the process.
    let err = a2a.retrieve_password("two words").await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let err = a2a.retrieve_password("").await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

async fn missing_certificate_is_rejected(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    // The SDK refuses to build an A2A context without a certificate.
    let err = A2aContext::builder(emu.spp_host())
        .tls(tls(&emu))
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    // A request without a certificate gets the appliance's 403 / 60094.
    let http = reqwest::Client::builder()
        .http1_only()
        .tls_backend_preconfigured({
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for ca in rustls::pki_types::CertificateDer::pem_slice_iter(emu.ca_pem().as_bytes()) {
                roots.add(ca.unwrap()).unwrap();
            }
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth()
        })
        .build()
        .unwrap();
    let answer = http
        .get(format!(
            "https://{}/service/a2a/v4/Credentials?type=password",
            emu.spp_host()
        ))
        .header(
            "Authorization",
            format!("A2A {}", emu.connection().spp.a2a.password_api_key),
        )
        .send()
        .await;
    if mode == ClientCertMode::Renegotiation {
        // rustls refuses the renegotiation: no answer at all.
        assert!(answer.is_err(), "{answer:?}");
    } else {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::FORBIDDEN);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["Code"], 60094);
    }
    // Over TLS 1.2 the SDK presents its certificate too: in the first
    // handshake, or in the renegotiation the emulator starts. (In its
    // post-handshake mode the emulator asks TLS 1.2 clients in the first
    // handshake.)
    let c = &emu.connection().spp.client_cert;
    let a2a = A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(tls(&emu).max_version(TlsVersion::Tls12))
        .build()
        .unwrap();
    assert!(a2a.retrieve_password(&password_key(&emu)).await.is_ok());
}

async fn unregistered_certificate_is_rejected(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = A2aContext::builder(emu.spp_host())
        .identity(unregistered_identity())
        .tls(tls(&emu))
        .build()
        .unwrap();
    let err = a2a
        .retrieve_password(&password_key(&emu))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Authorization(_)), "{err:?}");
    assert_failure(&err, A2aFailure::CertificateRejected);
    assert_eq!(api_code(&err), Some(60094));
    let err = a2a
        .retrieve_private_key(&ssh_key(&emu), KeyFormat::OpenSsh)
        .await
        .unwrap_err();
    assert_failure(&err, A2aFailure::CertificateRejected);
    // Its certificate sign-in is refused by the STS.
    let err = a2a.retrievable_accounts().await.unwrap_err();
    assert!(matches!(err, Error::Sts(_)), "{err:?}");
}

async fn disabled_registration_is_not_enabled(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    update_registration(&emu, json!({"BidirectionalEnabled": false})).await;
    let err = a2a
        .set_password(&password_key(&emu), &SecretString::from("whatever-1"))
        .await
        .unwrap_err();
    assert_failure(&err, A2aFailure::NotEnabled);
    update_registration(&emu, json!({"Disabled": true})).await;
    let err = a2a
        .retrieve_password(&password_key(&emu))
        .await
        .unwrap_err();
    assert_failure(&err, A2aFailure::NotEnabled);
}

async fn loads_encrypted_pem_and_pkcs12(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let files = emu.client_cert().clone();
    let encrypted = A2aContext::builder(emu.spp_host())
        .encrypted_pem_files(
            &files.cert,
            &files.encrypted_key,
            files.pfx_password.clone(),
        )
        .tls(tls(&emu))
        .build()
        .unwrap();
    let pfx = A2aContext::builder(emu.spp_host())
        .pkcs12_file(&files.pfx, files.pfx_password.clone())
        .tls(tls(&emu))
        .build()
        .unwrap();
    for a2a in [encrypted, pfx] {
        assert_eq!(a2a.thumbprint(), files.thumbprint);
        assert_eq!(
            a2a.retrieve_password(&password_key(&emu))
                .await
                .unwrap()
                .expose_secret(),
            safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD
        );
    }
    let err = A2aContext::builder(emu.spp_host())
        .pkcs12_file(&files.pfx, "wrong password")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let err = A2aContext::builder(emu.spp_host())
        .pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

/// A TCP relay in front of the emulator that counts connections.
async fn counting_relay(target: String) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr.to_string(), count)
}

async fn reuses_one_connection(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let (relay, count) = counting_relay(emu.spp_host()).await;
    let c = &emu.connection().spp.client_cert;
    let a2a = A2aContext::builder(relay.clone())
        .pem_files(&c.cert, &c.key)
        .tls(tls(&emu))
        .build()
        .unwrap();
    let key = password_key(&emu);
    for _ in 0..20 {
        a2a.retrieve_password(&key).await.unwrap();
    }
    a2a.retrieve_private_key(&ssh_key(&emu), KeyFormat::Putty)
        .await
        .unwrap();
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "one TLS connection for 21 calls"
    );

    let fresh = A2aContext::builder(relay)
        .pem_files(&c.cert, &c.key)
        .tls(tls(&emu))
        .max_idle_connections(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        fresh.retrieve_password(&key).await.unwrap();
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        4,
        "a new connection per call without a pool"
    );
    // Each new connection after the first resumes the TLS session handed out
    // on the one before, and still authenticates with the certificate.
    let (full, resumed) = emu.control().tls_handshakes();
    assert_eq!((full, resumed), (2, 2), "(full, resumed) handshakes");
}

async fn generated_client_works_over_the_cert_transport(mode: ClientCertMode) {
    let emu = emulator(mode).await;
    let a2a = context(&emu);
    let api = a2a.api(password_key(&emu)).unwrap();
    let answer = api
        .credentials_get_credential()
        .type_(safeguard_sdk::api::a2a::types::A2aCredentialTypeKnown::Password)
        .send()
        .await
        .unwrap()
        .into_inner();
    match answer {
        safeguard_sdk::api::a2a::types::A2aCredential::Secret(s) => {
            assert_eq!(s, safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD)
        }
        other => panic!("unexpected answer {other:?}"),
    }
    let err: Error = a2a
        .api("bad-key")
        .unwrap()
        .credentials_get_credential()
        .type_(safeguard_sdk::api::a2a::types::A2aCredentialTypeKnown::Password)
        .send()
        .await
        .unwrap_err()
        .into();
    assert_failure(&err, A2aFailure::BadApiKey);
}

/// The point of the post-handshake and renegotiation modes: a client that
/// can only present its certificate in the first handshake (reqwest +
/// rustls) works in the in-handshake mode, fails in the post-handshake mode
/// with the appliance's 403 / 60094 and loses the connection in the
/// renegotiation mode (it refuses to renegotiate), while the SDK passes in all three.
#[tokio::test]
async fn a_client_without_post_handshake_auth_fails_unless_asked_in_the_handshake() {
    for mode in MODES {
        let emu = emulator(mode).await;
        let http = rustls_client(&emu);
        let answer = http
            .get(format!(
                "https://{}/service/a2a/v4/Credentials?type=password",
                emu.spp_host()
            ))
            .header(
                "Authorization",
                format!("A2A {}", emu.connection().spp.a2a.password_api_key),
            )
            .send()
            .await;
        if mode == ClientCertMode::Renegotiation {
            assert!(answer.is_err(), "{answer:?}");
            let sdk = context(&emu).retrieve_password(&password_key(&emu)).await;
            assert_eq!(
                sdk.unwrap().expose_secret(),
                safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD,
                "SDK in {mode:?}"
            );
            continue;
        }
        let answer = answer.unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        match mode {
            ClientCertMode::InHandshake => {
                assert_eq!(status, reqwest::StatusCode::OK);
                assert_eq!(body, json!(safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD));
            }
            ClientCertMode::PostHandshake => {
                assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
                assert_eq!(body["Code"], 60094);
                assert_eq!(body["Message"], "Authorization is denied.");
            }
            ClientCertMode::Renegotiation => unreachable!(),
        }
        let sdk = context(&emu).retrieve_password(&password_key(&emu)).await;
        assert_eq!(
            sdk.unwrap().expose_secret(),
            safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD,
            "SDK in {mode:?}"
        );
    }
}

#[tokio::test]
async fn switching_the_emulator_mode_applies_to_new_connections() {
    let emu = emulator(ClientCertMode::InHandshake).await;
    emu.control()
        .set_client_cert_mode(ClientCertMode::PostHandshake);
    let a2a = context(&emu);
    assert!(a2a.retrieve_password(&password_key(&emu)).await.is_ok());
    let rustls_answer = rustls_client(&emu)
        .get(format!(
            "https://{}/service/a2a/v4/Credentials?type=password",
            emu.spp_host()
        ))
        .header(
            "Authorization",
            format!("A2A {}", emu.connection().spp.a2a.password_api_key),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(rustls_answer.status(), reqwest::StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn untrusted_server_certificate_is_a_tls_error() {
    let emu = emulator(ClientCertMode::InHandshake).await;
    let c = &emu.connection().spp.client_cert;
    let a2a = A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(TlsOptions::default().with_system_roots(true))
        .build()
        .unwrap();
    let err = a2a
        .retrieve_password(&password_key(&emu))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_failure(&err, A2aFailure::Transport);
    // Accepting any certificate (test appliances only) gets through.
    let a2a = A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(TlsOptions::default().danger_accept_invalid_certs(true))
        .build()
        .unwrap();
    assert!(a2a.retrieve_password(&password_key(&emu)).await.is_ok());
}

#[tokio::test]
async fn refused_connection_and_timeout_are_typed() {
    let emu = emulator(ClientCertMode::InHandshake).await;
    let c = &emu.connection().spp.client_cert;
    // Nothing listens on the port of a listener we just closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a2a = A2aContext::builder(format!("127.0.0.1:{port}"))
        .pem_files(&c.cert, &c.key)
        .tls(tls(&emu))
        .build()
        .unwrap();
    let err = a2a.retrieve_password("key").await.unwrap_err();
    assert_failure(&err, A2aFailure::Transport);
    assert!(err.to_string().contains("connect"), "{err}");
    // The same variant a bearer call's refused connection is.
    assert!(
        matches!(&err, Error::Transport(t) if t.is_connect()),
        "{err:?}"
    );
    assert!(err.is_retryable());

    emu.control().set_latency(Duration::from_secs(3));
    let a2a = A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(tls(&emu))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = a2a
        .retrieve_password(&password_key(&emu))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn bad_hosts_are_config_errors() {
    for host in ["http://example.com", "a/b", "host:notaport", ""] {
        let err = A2aContext::builder(host)
            .identity(unregistered_identity())
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{host}: {err:?}");
    }
}

#[tokio::test]
async fn concurrent_retrievals_share_the_pool() {
    let emu = emulator(ClientCertMode::PostHandshake).await;
    let a2a = context(&emu);
    let key = password_key(&emu);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let a2a = a2a.clone();
            let key = key.clone();
            tokio::spawn(async move { a2a.retrieve_password(&key).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap().unwrap().expose_secret(),
            safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD
        );
    }
}

#[test]
fn blocking_facade_does_every_call() {
    use safeguard_sdk::a2a::blocking;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for mode in MODES {
        let emu = runtime.block_on(emulator(mode));
        let c = &emu.connection().spp.client_cert;
        let a2a = blocking::A2aContext::builder(emu.spp_host())
            .pem_files(&c.cert, &c.key)
            .tls(tls(&emu))
            .build()
            .unwrap();
        let key = password_key(&emu);
        assert_eq!(
            a2a.retrieve_password(&key).unwrap().expose_secret(),
            safeguard_emulator::PASSWORD_ACCOUNT_PASSWORD
        );
        for f in [KeyFormat::OpenSsh, KeyFormat::Ssh2, KeyFormat::Putty] {
            assert!(!a2a
                .retrieve_private_key(ssh_key(&emu), f)
                .unwrap()
                .expose_secret()
                .is_empty());
        }
        assert_eq!(a2a.retrieve_api_key_secret(&key).unwrap().len(), 1);
        a2a.set_password(&key, &SecretString::from("Blocking-1"))
            .unwrap();
        assert_eq!(
            a2a.retrieve_password(&key).unwrap().expose_secret(),
            "Blocking-1"
        );
        let pem =
            String::from_utf8(Rsa::generate(2048).unwrap().private_key_to_pem().unwrap()).unwrap();
        a2a.set_private_key(
            ssh_key(&emu),
            &SecretString::from(pem),
            None,
            KeyFormat::OpenSsh,
        )
        .unwrap();
        let request = BrokeredAccessRequest {
            for_user_name: Some(safeguard_emulator::PLAIN_USER.into()),
            asset_name: Some(safeguard_emulator::ASSET_NAME.into()),
            account_name: Some(safeguard_emulator::PASSWORD_ACCOUNT.into()),
            access_request_type: Some(AccessRequestTypeKnown::Password.into()),
            ..Default::default()
        };
        assert!(a2a
            .broker_access_request(emu.control().broker_api_key(), &request)
            .is_ok());
        assert_eq!(a2a.retrievable_accounts().unwrap()[0].accounts.len(), 2);
        let err = a2a.retrieve_password("bad-key").unwrap_err();
        assert!(err.is_bad_api_key(), "{err:?}");
        // Inside an async runtime the blocking context refuses instead of panicking.
        let err = runtime
            .block_on(async { a2a.retrieve_password(&key) })
            .unwrap_err();
        assert!(
            matches!(err, Error::BlockingInsideRuntime { .. }),
            "{err:?}"
        );
        drop(a2a);
        runtime.block_on(emu.shutdown());
    }
}
