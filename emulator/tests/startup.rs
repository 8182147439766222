//! Start-up time and `connection.json`. The only test of its binary, so that
//! no other emulator starts beside it (the tests of one binary run in
//! parallel; certificate generation of a dozen emulators on two cores is what
//! a start-time bound would otherwise measure).

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use safeguard_emulator::*;
use serde_json::Value;

#[tokio::test]
async fn starts_fast_and_writes_connection_json() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let emu = start_with(EmulatorConfig {
        dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "start took {:?}",
        t.elapsed()
    );
    let text = std::fs::read_to_string(dir.path().join("connection.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let info: ConnectionInfo = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(&info, emu.connection());
    // Exactly the documented members.
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&v), ["spp", "sps"]);
    assert_eq!(
        keys(&v["spp"]),
        ["a2a", "admin", "ca", "client_cert", "host", "members"]
    );
    assert_eq!(v["spp"]["members"][0]["host"], v["spp"]["host"]);
    assert_eq!(
        keys(&v["spp"]["client_cert"]),
        ["cert", "key", "pfx", "pfx_password", "thumbprint"]
    );
    assert_eq!(
        keys(&v["spp"]["a2a"]),
        ["password_api_key", "ssh_key_api_key"]
    );
    assert_eq!(keys(&v["sps"]), ["host", "password", "user"]);
    assert!(info.spp.host.starts_with("127.0.0.1:"));
    assert_eq!(info.spp.client_cert.thumbprint.len(), 40);
    for p in [
        &info.spp.ca,
        &info.spp.client_cert.cert,
        &info.spp.client_cert.key,
        &info.spp.client_cert.pfx,
    ] {
        assert!(p.is_file(), "{p:?}");
    }
    assert_eq!(emu.ca_pem(), std::fs::read_to_string(&info.spp.ca).unwrap());
    // The PKCS#12 opens with its password; the encrypted key with the same password.
    let pfx = openssl::pkcs12::Pkcs12::from_der(&std::fs::read(&info.spp.client_cert.pfx).unwrap())
        .unwrap();
    let parsed = pfx.parse2(&info.spp.client_cert.pfx_password).unwrap();
    let der = parsed.cert.unwrap().to_der().unwrap();
    assert_eq!(
        hex::encode_upper(<sha1::Sha1 as sha1::Digest>::digest(&der)),
        info.spp.client_cert.thumbprint
    );
    let enc = std::fs::read(&emu.client_cert().encrypted_key).unwrap();
    openssl::pkey::PKey::private_key_from_pem_passphrase(
        &enc,
        info.spp.client_cert.pfx_password.as_bytes(),
    )
    .unwrap();
    // Human form mentions the hosts.
    assert!(info.to_string().contains(&info.sps.host));
    // SPS port answers over TLS.
    let c = client(&emu);
    let r = c
        .get(format!("https://{}/nothing-here", emu.sps_host()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    emu.shutdown().await;
    // After shutdown nothing listens.
    let r = c
        .get(format!(
            "https://{}/service/notification/v4/Status",
            info.spp.host
        ))
        .send()
        .await;
    assert!(r.is_err());
}
