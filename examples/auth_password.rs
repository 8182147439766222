//! Password (resource-owner) sign-in. Recent appliances disable this grant by
//! default; against the embedded emulator the example enables it first, as an
//! administrator would in the `Allowed OAuth2 Grant Types` setting.
//!
//! `cargo run --example auth_password` (or set SAFEGUARD_HOST, SAFEGUARD_USER,
//! SAFEGUARD_PASSWORD, SAFEGUARD_PROVIDER, SAFEGUARD_CA).

#[path = "support/mod.rs"]
mod support;

use safeguard_sdk::auth::PasswordAuth;
use safeguard_sdk::Service;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = support::Target::from_env().await?;
    if let Some(emulator) = &target.emulator {
        emulator.control().enable_grant("ResourceOwner")?;
    }
    let auth = PasswordAuth::new(
        support::env_or("SAFEGUARD_PROVIDER", "local"),
        support::env_or("SAFEGUARD_USER", safeguard_emulator::ADMIN_USER),
        support::env_or("SAFEGUARD_PASSWORD", safeguard_emulator::ADMIN_PASSWORD),
    );
    let client = target.builder()?.auth(auth).build()?;
    client.login().await?;
    let me: serde_json::Value = client.get(Service::Core, "Me").send_json().await?;
    println!("Signed in with a password as {}", me["Name"]);
    client.logout().await?;
    Ok(())
}
