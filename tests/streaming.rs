//! 2 GiB streamed through download, `stream()` and upload with bounded memory.
//!
//! The emulator runs in a child process (this test binary re-executed into
//! the ignored `emulator_process` test), so that this process's peak resident
//! set (`VmHWM`) is the SDK's alone. The child generates the download on the
//! fly and hashes the upload without storing it; when its stdin closes it
//! prints what it received and exits.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use futures::StreamExt;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::{SafeguardClient, Service, UploadSource};
use sha2::{Digest, Sha256};

const SIZE: u64 = 2 * 1024 * 1024 * 1024;
const LIMIT: u64 = 64 * 1024 * 1024;
const SERVE: &str = "SAFEGUARD_STREAMING_TEST_SERVE";

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// The child: serves an emulator until stdin closes.
#[test]
#[ignore = "helper process of two_gib_download_and_upload_stay_under_64_mib"]
fn emulator_process() {
    if std::env::var_os(SERVE).is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let emu = common::emulator().await;
        let backup = emu.control().add_backup(SIZE);
        let hello = serde_json::json!({ "connection": emu.connection(), "backup": backup });
        println!("SERVING {hello}");
        std::io::stdout().flush().unwrap();
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .unwrap();
        let uploads = serde_json::to_string(&emu.control().uploads()).unwrap();
        println!("UPLOADS {uploads}");
        std::io::stdout().flush().unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_download_and_upload_stay_under_64_mib() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "emulator_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SERVE, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // libtest prints `test emulator_process ... ` before the test's own
    // output, so the markers are searched anywhere in a line.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let hello: serde_json::Value = loop {
        let line = lines.next().expect("the emulator process answers").unwrap();
        if let Some((_, json)) = line.split_once("SERVING ") {
            break serde_json::from_str(json).unwrap();
        }
    };
    let spp = &hello["connection"]["spp"];
    let backup = hello["backup"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| hello["backup"].to_string());
    let ca = std::fs::read(spp["ca"].as_str().unwrap()).unwrap();
    let client = SafeguardClient::builder(spp["host"].as_str().unwrap())
        .ca_pem(ca)
        .unwrap()
        .auth(PkceAuth::new(
            "local",
            spp["admin"]["user"].as_str().unwrap(),
            spp["admin"]["password"].as_str().unwrap().to_owned(),
        ))
        .build()
        .unwrap();
    client.login().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.sgb");
    let started = Instant::now();
    let mut last = 0;
    let mut progress = |written: u64, _total: Option<u64>| last = written;
    let written = client
        .download(
            Service::Appliance,
            &format!("Backups/{backup}/Download"),
            &file,
            Some(&mut progress),
        )
        .await
        .unwrap();
    let download_secs = started.elapsed().as_secs_f64();
    assert_eq!(written, SIZE);
    assert_eq!(last, SIZE);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), SIZE);

    // The same content through `stream()`, hashed as it arrives.
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    let mut body = client
        .stream(
            reqwest::Method::GET,
            Service::Appliance,
            &format!("Backups/{backup}/Download"),
        )
        .await
        .unwrap()
        .bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(n, SIZE);
    let downloaded_sha = hex::encode(hasher.finalize());

    let started = Instant::now();
    let response = client
        .upload(
            reqwest::Method::POST,
            Service::Appliance,
            "Backups/Upload",
            UploadSource::File(file.clone()),
            "application/octet-stream",
            None,
        )
        .await
        .unwrap();
    let upload_secs = started.elapsed().as_secs_f64();
    assert!(response.status().is_success());
    let peak = peak_rss_bytes();

    drop(child.stdin.take());
    let uploads: serde_json::Value = loop {
        let line = lines.next().expect("the emulator reports uploads").unwrap();
        if let Some((_, json)) = line.split_once("UPLOADS ") {
            break serde_json::from_str(json).unwrap();
        }
    };
    let _ = child.wait();
    let last_upload = uploads
        .as_array()
        .and_then(|u| u.last())
        .expect("an upload");
    assert_eq!(last_upload["bytes"].as_u64(), Some(SIZE));
    assert_eq!(
        last_upload["sha256"].as_str(),
        Some(downloaded_sha.as_str())
    );

    eprintln!(
        "2 GiB: download {:.0} MB/s, upload {:.0} MB/s, SDK process peak RSS {} MiB",
        SIZE as f64 / 1e6 / download_secs,
        SIZE as f64 / 1e6 / upload_secs,
        peak / 1024 / 1024
    );
    assert!(peak < LIMIT, "peak RSS {} MiB", peak / 1024 / 1024);
}
