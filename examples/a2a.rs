//! Fetches a password through A2A and prints its length (never the secret).
//!
//! `cargo run --example a2a` starts the embedded emulator (with the
//! appliance's post-handshake certificate request) and uses its A2A
//! registration. Against a real appliance give the settings as `--name value`
//! arguments or environment variables:
//!
//! | argument | variable | |
//! |---|---|---|
//! | `--host` | `SAFEGUARD_HOST` | appliance, `name[:port]` |
//! | `--cert` | `SAFEGUARD_CERT` | client certificate (PEM) |
//! | `--key` | `SAFEGUARD_KEY` | its private key (PEM) |
//! | `--ca` | `SAFEGUARD_CA` | CA to trust (PEM); system roots otherwise |
//! | `--api-key` | `SAFEGUARD_A2A_API_KEY` | the A2A API key |

use safeguard_emulator::{ClientCertMode, Emulator, EmulatorConfig};
use safeguard_sdk::a2a::A2aContext;
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{ExposeSecret, SecretString};

/// An `--name value` argument, else the environment variable.
fn setting(args: &[String], name: &str, var: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(var).ok())
        .filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut _emulator = None;
    let (a2a, api_key) = match setting(&args, "--host", "SAFEGUARD_HOST") {
        Some(host) => {
            let missing =
                |what: &str| format!("{what} is required with a host (see the example's docs)");
            let cert =
                setting(&args, "--cert", "SAFEGUARD_CERT").ok_or_else(|| missing("--cert"))?;
            let key = setting(&args, "--key", "SAFEGUARD_KEY").ok_or_else(|| missing("--key"))?;
            let api_key = setting(&args, "--api-key", "SAFEGUARD_A2A_API_KEY")
                .ok_or_else(|| missing("--api-key"))?;
            let tls = match setting(&args, "--ca", "SAFEGUARD_CA") {
                Some(ca) => TlsOptions::default().with_ca_file(ca)?,
                None => TlsOptions::default(),
            };
            let a2a = A2aContext::builder(host)
                .pem_files(cert, key)
                .tls(tls)
                .build()?;
            (a2a, SecretString::from(api_key))
        }
        None => {
            let emulator = Emulator::start(EmulatorConfig {
                client_cert_mode: ClientCertMode::PostHandshake,
                ..EmulatorConfig::default()
            })
            .await?;
            println!("embedded emulator at https://{}", emulator.spp_host());
            let spp = &emulator.connection().spp;
            let a2a = A2aContext::builder(emulator.spp_host())
                .pem_files(&spp.client_cert.cert, &spp.client_cert.key)
                .tls(TlsOptions::default().with_ca_pem(emulator.ca_pem())?)
                .build()?;
            let key = SecretString::from(spp.a2a.password_api_key.clone());
            _emulator = Some(emulator);
            (a2a, key)
        }
    };

    println!("certificate {}", a2a.thumbprint());
    match a2a.retrieve_password(&api_key).await {
        Ok(password) => println!(
            "retrieved a password of {} characters",
            password.expose_secret().chars().count()
        ),
        Err(e) => {
            eprintln!("retrieval failed ({:?}): {e}", e.a2a_failure());
            std::process::exit(1);
        }
    }
    Ok(())
}
