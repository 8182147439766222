//! Sign in with PKCE, print `Me`, list users through the typed client, sign out.
//!
//! With no arguments it runs against an emulator started in-process, so it
//! works anywhere:
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! Against a real appliance, set `SAFEGUARD_HOST`, `SAFEGUARD_USER`,
//! `SAFEGUARD_PASSWORD`, and optionally `SAFEGUARD_PROVIDER` (default
//! `local`) and `SAFEGUARD_CA` (a PEM file; default: the system's roots).

use futures::TryStreamExt;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::{SafeguardClient, Service};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keeps the embedded emulator alive for the whole example.
    let mut _embedded = None;
    let client = match std::env::var("SAFEGUARD_HOST") {
        Ok(host) => {
            let user = std::env::var("SAFEGUARD_USER")?;
            let password = std::env::var("SAFEGUARD_PASSWORD")?;
            let provider = std::env::var("SAFEGUARD_PROVIDER").unwrap_or_else(|_| "local".into());
            let mut builder =
                SafeguardClient::builder(host).auth(PkceAuth::new(provider, user, password));
            if let Ok(ca) = std::env::var("SAFEGUARD_CA") {
                builder = builder.ca_file(ca)?;
            }
            builder.build()?
        }
        Err(_) => {
            let emulator = safeguard_emulator::Emulator::start(Default::default()).await?;
            println!("Started an embedded emulator at {}", emulator.spp_host());
            let admin = &emulator.connection().spp.admin;
            let client = SafeguardClient::builder(emulator.spp_host())
                .ca_pem(emulator.ca_pem())?
                .auth(PkceAuth::new(
                    "local",
                    admin.user.clone(),
                    admin.password.clone(),
                ))
                .build()?;
            _embedded = Some(emulator);
            client
        }
    };

    client.login().await?;
    let me: serde_json::Value = client
        .get(Service::Core, "Me")
        .query(&[("fields", "Name,DisplayName")])?
        .send_json()
        .await?;
    println!(
        "Connected to Safeguard as {}",
        me["DisplayName"]
            .as_str()
            .or(me["Name"].as_str())
            .unwrap_or("?")
    );
    if let Some(minutes) = client.token_lifetime_remaining().await? {
        println!("The token has {minutes} minutes left");
    }

    // A typed call from the generated core client.
    let users = client
        .core()
        .users_get_users()
        .orderby("Name")
        .limit(10)
        .send()
        .await?;
    println!("First {} users:", users.len());
    for user in users.iter() {
        println!(
            "  {:>4}  {}",
            user.id.unwrap_or_default(),
            user.name.as_deref().unwrap_or("")
        );
    }

    // Every user, page by page, as a stream.
    let all: Vec<serde_json::Value> = client
        .paginate(
            Service::Core,
            "Users",
            100,
            vec![("fields".into(), "Id".into())],
        )
        .try_collect()
        .await?;
    println!("{} users in all", all.len());

    client.logout().await?;
    println!("Signed out");
    Ok(())
}
