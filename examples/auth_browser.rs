//! PKCE sign-in in the system browser with a loopback redirect: for people
//! at a desktop, and for providers (SAML, MFA pages) that need the real page.
//! It needs a real appliance and a browser:
//!
//! `SAFEGUARD_HOST=... SAFEGUARD_CA=ca.pem cargo run --example auth_browser`

use safeguard_sdk::auth::BrowserPkceAuth;
use safeguard_sdk::{SafeguardClient, Service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(host) = std::env::var("SAFEGUARD_HOST") else {
        eprintln!(
            "Set SAFEGUARD_HOST (and SAFEGUARD_CA) to sign in to a real appliance in your browser."
        );
        std::process::exit(2);
    };
    // Opens the system browser (xdg-open, open, start); `.opener(..)` changes how.
    let mut builder = SafeguardClient::builder(host).auth(BrowserPkceAuth::new());
    if let Ok(ca) = std::env::var("SAFEGUARD_CA") {
        builder = builder.ca_file(ca)?;
    }
    let client = builder.build()?;
    client.login().await?;
    let me: serde_json::Value = client.get(Service::Core, "Me").send_json().await?;
    println!("Signed in in the browser as {}", me["Name"]);
    client.logout().await?;
    Ok(())
}
