//! A2A retrievals per second against the in-process emulator (certificate
//! asked for in the handshake, since reqwest + rustls cannot answer a later
//! request): this SDK and raw reqwest doing the same request, each on one
//! reused connection and with a new connection (TLS handshake) per call.
//!
//! `cargo bench --bench a2a --no-default-features --features a2a`
//! (`A2A_BENCH_RUNS`, `A2A_BENCH_CALLS` and `A2A_BENCH_FRESH_CALLS` adjust
//! the number of runs, and of calls per run on a reused and on new connections.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use safeguard_emulator::{ClientCertMode, Emulator, EmulatorConfig, PASSWORD_ACCOUNT_PASSWORD};
use safeguard_sdk::a2a::A2aContext;
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{ExposeSecret, SecretString};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

fn sdk(emu: &Emulator, reuse: bool) -> A2aContext {
    let c = &emu.connection().spp.client_cert;
    let mut b = A2aContext::builder(emu.spp_host())
        .pem_files(&c.cert, &c.key)
        .tls(
            TlsOptions::default()
                .with_ca_pem(emu.ca_pem())
                .expect("CA parses"),
        );
    if !reuse {
        b = b.max_idle_connections(0);
    }
    b.build().expect("context builds")
}

fn raw(emu: &Emulator, reuse: bool) -> reqwest::Client {
    let c = &emu.connection().spp.client_cert;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(emu.ca_pem().as_bytes()) {
        roots.add(ca.expect("CA parses")).expect("CA is usable");
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .expect("certificate file")
        .map(|c| c.expect("certificate parses"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&c.key).expect("key parses");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .expect("client certificate");
    let mut b = reqwest::Client::builder()
        .http1_only()
        .tls_backend_preconfigured(config);
    if !reuse {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().expect("reqwest client builds")
}

async fn sdk_calls(a2a: &A2aContext, key: &SecretString, calls: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..calls {
        let p = a2a.retrieve_password(key).await.expect("SDK retrieval");
        assert_eq!(p.expose_secret(), PASSWORD_ACCOUNT_PASSWORD);
    }
    start.elapsed()
}

async fn raw_calls(http: &reqwest::Client, url: &str, auth: &str, calls: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..calls {
        let answer = http
            .get(url)
            .header("Authorization", auth)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("raw request");
        assert!(answer.status().is_success());
        let p: String = answer.json().await.expect("raw body");
        assert_eq!(p, PASSWORD_ACCOUNT_PASSWORD);
    }
    start.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let runs = env_number("A2A_BENCH_RUNS", 7);
    let calls = env_number("A2A_BENCH_CALLS", 400);
    let fresh_calls = env_number("A2A_BENCH_FRESH_CALLS", 100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let emu = Emulator::start(EmulatorConfig {
            client_cert_mode: ClientCertMode::InHandshake,
            ..EmulatorConfig::default()
        })
        .await
        .expect("emulator starts");
        let key = SecretString::from(emu.connection().spp.a2a.password_api_key.clone());
        let url = format!(
            "https://{}/service/a2a/v4/Credentials?type=password",
            emu.spp_host()
        );
        let auth = format!("A2A {}", key.expose_secret());

        let sdk_reused = sdk(&emu, true);
        let sdk_fresh = sdk(&emu, false);
        let raw_reused = raw(&emu, true);
        let raw_fresh = raw(&emu, false);

        // Warm-up: connections, caches, allocator.
        sdk_calls(&sdk_reused, &key, 50).await;
        sdk_calls(&sdk_fresh, &key, 10).await;
        raw_calls(&raw_reused, &url, &auth, 50).await;
        raw_calls(&raw_fresh, &url, &auth, 10).await;

        let mut results: [Vec<f64>; 4] = Default::default();
        let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
        for _ in 0..runs {
            // Interleaved so that drift on a shared machine hits all four alike.
            results[0].push(rate(calls, sdk_calls(&sdk_reused, &key, calls).await));
            results[1].push(rate(
                calls,
                raw_calls(&raw_reused, &url, &auth, calls).await,
            ));
            results[2].push(rate(
                fresh_calls,
                sdk_calls(&sdk_fresh, &key, fresh_calls).await,
            ));
            results[3].push(rate(
                fresh_calls,
                raw_calls(&raw_fresh, &url, &auth, fresh_calls).await,
            ));
        }
        let [sdk_r, raw_r, sdk_f, raw_f] = results.map(median);
        println!("A2A password retrievals per second, median of {runs} runs after warm-up");
        println!("(in-process emulator, certificate in the handshake, sequential calls)");
        println!();
        println!(
            "{:<28}{:>14}{:>14}{:>10}",
            "", "SDK", "raw reqwest", "SDK/raw"
        );
        println!(
            "{:<28}{:>14.0}{:>14.0}{:>9.1}%",
            format!("reused connection ({calls})"),
            sdk_r,
            raw_r,
            100.0 * sdk_r / raw_r
        );
        println!(
            "{:<28}{:>14.0}{:>14.0}{:>9.1}%",
            format!("new connection ({fresh_calls})"),
            sdk_f,
            raw_f,
            100.0 * sdk_f / raw_f
        );
        emu.shutdown().await;
    });
}
