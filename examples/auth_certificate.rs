//! Client-certificate sign-in, from PEM files and from a PKCS#12 file.
//!
//! `cargo run --example auth_certificate` (or set SAFEGUARD_HOST, SAFEGUARD_CA,
//! SAFEGUARD_CERT and SAFEGUARD_KEY, or SAFEGUARD_PFX and SAFEGUARD_PFX_PASSWORD).

#[path = "support/mod.rs"]
mod support;

use safeguard_sdk::auth::CertificateAuth;
use safeguard_sdk::{SecretString, Service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = support::Target::from_env().await?;
    let (cert, key, pfx, pfx_password) = match &target.emulator {
        Some(e) => {
            let c = &e.connection().spp.client_cert;
            (
                c.cert.display().to_string(),
                c.key.display().to_string(),
                c.pfx.display().to_string(),
                c.pfx_password.clone(),
            )
        }
        None => (
            std::env::var("SAFEGUARD_CERT").unwrap_or_default(),
            std::env::var("SAFEGUARD_KEY").unwrap_or_default(),
            std::env::var("SAFEGUARD_PFX").unwrap_or_default(),
            std::env::var("SAFEGUARD_PFX_PASSWORD").unwrap_or_default(),
        ),
    };
    let strategies = [
        (
            "PEM",
            (!cert.is_empty()).then(|| CertificateAuth::from_pem_files(&cert, &key)),
        ),
        (
            "PKCS#12",
            (!pfx.is_empty()).then(|| {
                CertificateAuth::from_pkcs12_file(&pfx, &SecretString::from(pfx_password.clone()))
            }),
        ),
    ];
    for (kind, auth) in strategies {
        let Some(auth) = auth else { continue };
        let auth = auth?;
        let client = target.builder()?.auth(auth).build()?;
        client.login().await?;
        let me: serde_json::Value = client.get(Service::Core, "Me").send_json().await?;
        println!("Signed in with a {kind} certificate as {}", me["Name"]);
        client.logout().await?;
    }
    Ok(())
}
