//! Using a user token obtained elsewhere (it cannot be refreshed).
//!
//! `cargo run --example auth_token` (or set SAFEGUARD_HOST, SAFEGUARD_CA and
//! SAFEGUARD_TOKEN).

#[path = "support/mod.rs"]
mod support;

use safeguard_sdk::auth::{PkceAuth, TokenAuth};
use safeguard_sdk::{Error, SecretString, Service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = support::Target::from_env().await?;
    let token: SecretString = match std::env::var("SAFEGUARD_TOKEN") {
        Ok(t) => t.into(),
        Err(_) => {
            // Get one the way another tool would have.
            let other = target
                .builder()?
                .auth(PkceAuth::new(
                    "local",
                    safeguard_emulator::ADMIN_USER,
                    safeguard_emulator::ADMIN_PASSWORD,
                ))
                .build()?;
            other.login().await?;
            other.user_token().await.ok_or("no token")?
        }
    };
    let client = target.builder()?.auth(TokenAuth::new(token)).build()?;
    let me: serde_json::Value = client.get(Service::Core, "Me").send_json().await?;
    println!("The token belongs to {}", me["Name"]);
    match client.refresh().await {
        Err(Error::CannotRefresh { reason, .. }) => {
            println!("As expected, it cannot be refreshed: {reason}")
        }
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
