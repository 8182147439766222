//! Anonymous calls: the notification service's status needs no sign-in.
//!
//! `cargo run --example auth_anonymous` (or set SAFEGUARD_HOST, SAFEGUARD_CA).

#[path = "support/mod.rs"]
mod support;

use safeguard_sdk::Service;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = support::Target::from_env().await?;
    let client = target.builder()?.build()?;
    let status: serde_json::Value = client
        .get(Service::Notification, "Status")
        .send_json()
        .await?;
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(())
}
