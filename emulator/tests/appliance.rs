//! Appliance and notification services, OpenAPI documents, faults, load.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use safeguard_emulator::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn notification_anonymous_and_system_time() {
    let emu = start().await;
    let c = client(&emu);
    let v: Value = c
        .get(format!("{}/service/notification/v4/Status", base(&emu)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["ApplianceCurrentState"], "Online");
    let v: Value = c
        .get(format!(
            "{}/service/notification/v4/Status/State",
            base(&emu)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, "Online");
    let t = admin_token(&c, &emu).await;
    let r = c
        .get(format!("{}/service/appliance/v4/SystemTime", base(&emu)))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-tokenlifetimeremaining"], "60");
    let v: Value = r.json().await.unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(v["CurrentTime"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn backup_download_and_upload_stream() {
    let emu = start().await;
    let c = client(&emu);
    let t = admin_token(&c, &emu).await;
    let size: u64 = 64 * 1024 * 1024 + 13;
    let id = emu.control().add_backup(size);
    let r = c
        .get(format!(
            "{}/service/appliance/v4/Backups/{id}/Download",
            base(&emu)
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    let mut stream = r.bytes_stream();
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    assert_eq!(n, size);
    assert_eq!(
        hex::encode(h.finalize()),
        emu.control().backup_sha256(&id).unwrap()
    );
    // Upload as a stream of chunks (raw octet-stream).
    let chunks =
        futures::stream::iter((0..64).map(|i| Ok::<_, std::io::Error>(vec![i as u8; 1 << 20])));
    let r = c
        .post(format!(
            "{}/service/appliance/v4/Backups/Upload",
            base(&emu)
        ))
        .bearer_auth(&t)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Size"], 64 << 20);
    let mut h = Sha256::new();
    for i in 0..64 {
        h.update(vec![i as u8; 1 << 20]);
    }
    let up = emu.control().uploads();
    assert_eq!(up[0].sha256, hex::encode(h.finalize()));
    assert_eq!(up[0].bytes, 64 << 20);
    // Multipart: only the file content counts.
    let body = b"--B0UND\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.sgb\"\r\nContent-Type: application/octet-stream\r\n\r\nbackup-bytes\r\n--B0UND--\r\n".to_vec();
    let r = c
        .post(format!(
            "{}/service/appliance/v4/Backups/Upload",
            base(&emu)
        ))
        .bearer_auth(&t)
        .header("Content-Type", "multipart/form-data; boundary=B0UND")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["Size"], 12);
    let list: Value = c
        .get(format!("{}/service/appliance/v4/Backups", base(&emu)))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn swagger_documents() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("core.json"),
        br#"{"openapi":"3.0.1","info":{"title":"core"}}"#,
    )
    .unwrap();
    let emu = start_with(EmulatorConfig {
        openapi_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    let c = client(&emu);
    let url = format!("{}/service/core/swagger/v4/swagger.json", base(&emu));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["info"]["title"], "core");
    let r = c
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let z = r.bytes().await.unwrap();
    let mut s = String::new();
    flate2::read::GzDecoder::new(&z[..])
        .read_to_string(&mut s)
        .unwrap();
    assert!(s.contains("\"core\""));
    let r = c
        .get(format!(
            "{}/service/appliance/swagger/v4/swagger.json",
            base(&emu)
        ))
        .send()
        .await
        .unwrap();
    // Not in the configured folder: the document the emulator was built
    // with (and routes by) is served instead.
    assert_eq!(r.status(), 200);
    let doc = r.json::<Value>().await.unwrap();
    assert!(doc["paths"]["/v4/Backups"].is_object(), "{doc:.200}");
}

#[tokio::test]
async fn default_openapi_dir_serves_the_shared_documents() {
    let emu = start().await;
    let dirs = EmulatorConfig::default().openapi_search_path();
    let c = client(&emu);
    let r = c
        .get(format!(
            "{}/service/notification/swagger/v4/swagger.json",
            base(&emu)
        ))
        .send()
        .await
        .unwrap();
    if dirs.iter().any(|d| d.join("notification.json").is_file()) {
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(v["paths"]["/v4/Status"].is_object());
    } else {
        assert_eq!(r.status(), 404);
    }
}

#[tokio::test]
async fn faults_latency_and_5xx() {
    let emu = start().await;
    let c = client(&emu);
    let url = format!("{}/service/notification/v4/Status/State", base(&emu));
    emu.control().fail_next(2, 503);
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert!(r.json::<Value>().await.unwrap()["Code"].is_number());
    }
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    emu.control().set_latency(Duration::from_millis(300));
    let t = Instant::now();
    c.get(&url).send().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    emu.control().set_latency(Duration::ZERO);
    // The same through the admin endpoint.
    let r = c
        .post(format!("{}/emulator/fail", base(&emu)))
        .json(&serde_json::json!({"count": 1, "status": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 500);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    let state: Value = c
        .get(format!("{}/emulator/state", base(&emu)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["client_cert_mode"], "InHandshake");
    let (full, resumed) = emu.control().tls_handshakes();
    assert!(full >= 1, "this client's connection was one full handshake");
    assert_eq!(state["tls_handshakes"]["full"], full);
    assert_eq!(state["tls_handshakes"]["resumed"], resumed);
    let r = c
        .post(format!("{}/emulator/client-cert-mode", base(&emu)))
        .json(&serde_json::json!({"mode": "PostHandshake"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["client_cert_mode"],
        "PostHandshake"
    );
    assert_eq!(
        emu.control().client_cert_mode(),
        ClientCertMode::PostHandshake
    );
    let r = c
        .post(format!("{}/emulator/client-cert-mode", base(&emu)))
        .json(&serde_json::json!({"mode": "Renegotiation"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["client_cert_mode"],
        "Renegotiation"
    );
    assert_eq!(
        emu.control().client_cert_mode(),
        ClientCertMode::Renegotiation
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_requests() {
    let emu = start().await;
    // A fresh connection per request: 1,000 TLS handshakes at once.
    let c = builder(&emu).pool_max_idle_per_host(0).build().unwrap();
    let url = format!("{}/service/notification/v4/Status/State", base(&emu));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move { c.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap().expect("request succeeds");
        assert_eq!(s, 200);
        ok += 1;
    }
    assert_eq!(ok, 1000);
}

/// 2 GiB through the download stream with bounded memory. Slow in debug
/// builds: `cargo test -p safeguard-emulator --test appliance -- --ignored`.
#[tokio::test]
#[ignore]
async fn two_gib_backup_download() {
    let emu = start().await;
    let c = builder(&emu)
        .timeout(Duration::from_secs(1800))
        .build()
        .unwrap();
    let t = admin_token(&c, &emu).await;
    let size: u64 = 2 << 30;
    let id = emu.control().add_backup(size);
    let r = c
        .get(format!(
            "{}/service/appliance/v4/Backups/{id}/Download",
            base(&emu)
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let mut stream = r.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len() as u64;
    }
    assert_eq!(n, size);
    // And 2 GiB up, generated on the fly.
    let chunk = vec![7u8; 1 << 20];
    let chunks =
        futures::stream::iter((0..2048).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = c
        .post(format!(
            "{}/service/appliance/v4/Backups/Upload",
            base(&emu)
        ))
        .bearer_auth(&t)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(emu.control().uploads()[0].bytes, size);
}
