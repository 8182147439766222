//! Device-code sign-in: a person approves the code on another device.
//!
//! Against the embedded emulator the example enables the grant and plays
//! the person approving the code. `cargo run --example auth_device_code`
//! (or set SAFEGUARD_HOST and SAFEGUARD_CA and approve in a browser).

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use safeguard_sdk::auth::DeviceCodeAuth;
use safeguard_sdk::Service;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = support::Target::from_env().await?;
    let (codes_tx, mut codes_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let auth = DeviceCodeAuth::new(
        support::env_or("SAFEGUARD_PROVIDER", "local"),
        move |prompt| {
            println!(
                "To sign in, open {} and enter the code {} (valid {} s)",
                prompt.verification_uri,
                prompt.user_code,
                prompt.expires_in.as_secs()
            );
            let _ = codes_tx.send(prompt.user_code.clone());
        },
    )
    .max_wait(Duration::from_secs(600));
    if let Some(emulator) = &target.emulator {
        let control = emulator.control();
        control.enable_grant("DeviceCode")?;
        control.set_device_code_interval(1);
        tokio::spawn(async move {
            if let Some(code) = codes_rx.recv().await {
                tokio::time::sleep(Duration::from_secs(2)).await;
                println!(
                    "(the emulator approves {code} as {})",
                    safeguard_emulator::ADMIN_USER
                );
                let _ = control.approve_device_code(&code, safeguard_emulator::ADMIN_USER);
            }
        });
    }
    let client = target.builder()?.auth(auth).build()?;
    client.login().await?;
    let me: serde_json::Value = client.get(Service::Core, "Me").send_json().await?;
    println!("Signed in with a device code as {}", me["Name"]);
    client.logout().await?;
    Ok(())
}
