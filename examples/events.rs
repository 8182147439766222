//! Listen to Safeguard events: create a user and print the `UserCreated`
//! event the appliance pushes over SignalR.
//!
//! With no arguments it runs against an emulator started in-process:
//!
//! ```sh
//! cargo run --example events
//! ```
//!
//! Against a real appliance, set `SAFEGUARD_HOST`, `SAFEGUARD_USER`,
//! `SAFEGUARD_PASSWORD`, and optionally `SAFEGUARD_PROVIDER` (default
//! `local`) and `SAFEGUARD_CA` (a PEM file; default: the system's roots).
//! The user needs the UserAdmin role; the example deletes the user again.

use std::time::Duration;

use futures::StreamExt;
use safeguard_sdk::auth::PkceAuth;
use safeguard_sdk::events::ListenerState;
use safeguard_sdk::{SafeguardClient, Service};
use serde_json::json;

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

    // A listener that reconnects by itself; a handler per event name, and
    // the same events as a stream.
    let listener = client.persistent_event_listener();
    listener.on_state_change(|change| match &change.reason {
        Some(reason) => println!("listener: {:?} ({reason})", change.state),
        None => println!("listener: {:?}", change.state),
    });
    listener.on("UserCreated", |event| {
        println!(
            "handler: user {} created (id {})",
            event.body["UserName"], event.body["UserId"]
        )
    });
    let mut events = listener.events();
    listener.start().await?;
    if !listener
        .wait_for_state(ListenerState::Connected, Duration::from_secs(30))
        .await
    {
        return Err(format!("could not connect: {:?}", listener.last_error()).into());
    }

    let name = format!("EventsExample{}", std::process::id());
    let user: serde_json::Value = client
        .post(Service::Core, "Users")
        .json(&json!({"PrimaryAuthenticationProvider": {"Id": -1}, "Name": name}))
        .send_json()
        .await?;
    println!("created user {name} (id {})", user["Id"]);

    let event = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            if event.is("UserCreated") && event.body["UserName"] == name.as_str() {
                return Some(event);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or("no UserCreated event arrived")?;
    println!(
        "event {}: {}",
        event.name,
        serde_json::to_string_pretty(&event.body)?
    );

    client
        .delete(Service::Core, &format!("Users/{}", user["Id"]))
        .send()
        .await?;
    listener.stop().await;
    Ok(())
}
