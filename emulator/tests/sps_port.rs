//! The fake SPS served over HTTPS on its own port.

mod common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn sps_basic_and_x509_login() {
    let emu = start().await;
    let sps = emu.connection().sps.clone();
    let c = client(&emu);
    let r = c
        .get(format!(
            "https://{}/api/authentication/login_methods",
            sps.host
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("https://{}/api/authentication", sps.host))
        .basic_auth(&sps.user, Some(&sps.password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("session_id="));
    let r = c
        .get(format!("https://{}/api/authentication", sps.host))
        .basic_auth(&sps.user, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["type"].is_string());
    // The seeded client certificate signs in with type=x509 (the SPS port asks in the handshake).
    let r = cert_client(&emu)
        .get(format!("https://{}/api/authentication?type=x509", sps.host))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(emu.sps().login_count(), 2);
}
