//! `scripts/fetch-openapi` against the emulator, which serves the documents
//! over HTTPS like an appliance.

mod common;

use std::process::Command;

#[tokio::test]
async fn fetches_every_document_over_https_with_the_ca() {
    let emu = common::emulator().await;
    let out = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fetch-openapi");
    let ca = &emu.connection().spp.ca;
    let host = emu.spp_host();
    let outdir = out.path().to_owned();
    let ca2 = ca.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .arg(&host)
            .arg("--ca")
            .arg(&ca2)
            .arg("--out")
            .arg(&outdir)
            .output()
            .expect("runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for service in ["core", "appliance", "notification", "a2a"] {
        let fetched: serde_json::Value = serde_json::from_slice(
            &std::fs::read(out.path().join(format!("{service}.json"))).unwrap(),
        )
        .unwrap();
        assert!(
            fetched["paths"].as_object().is_some_and(|p| !p.is_empty()),
            "{service}"
        );
    }
    // They are exactly the appliance documents the emulator was given.
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/openapi");
    let report = safeguard_codegen::diff::diff_dirs(&shared, out.path()).expect("diff");
    for service in report.services.iter().filter(|s| s.service != "a2a") {
        assert!(service.is_empty(), "{} differs:\n{report}", service.service);
    }
}

#[tokio::test]
async fn refuses_an_untrusted_server() {
    let emu = common::emulator().await;
    let out = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fetch-openapi");
    let host = emu.spp_host();
    let outdir = out.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .arg(&host)
            .arg("--out")
            .arg(&outdir)
            .output()
            .expect("runs")
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    assert!(!out.path().join("core.json").exists());
}
