//! SPS transactions: open a transaction, create an RDP channel policy that
//! references the built-in time policy `-100`, print the changelog, commit
//! with a message.
//!
//! ```text
//! cargo run --no-default-features --example sps                       # embedded emulator
//! cargo run --no-default-features --example sps -- HOST USER PASSWORD [CA.pem]
//! ```
//!
//! The password may also come from `SPS_PASSWORD`.

use safeguard_sdk::sps::{ChangeKind, SpsClient, SpsError};
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::Error;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Without a host, run against the embedded emulator.
    let mut _emulator = None;
    let (host, user, password, tls) = match args.as_slice() {
        [host, user, rest @ ..] => {
            let password = match rest.first() {
                Some(p) => p.clone(),
                None => std::env::var("SPS_PASSWORD")?,
            };
            let tls = match rest.get(1) {
                Some(ca) => TlsOptions::default().with_ca_file(ca)?,
                None => TlsOptions::default(),
            };
            (host.clone(), user.clone(), password, tls)
        }
        _ => {
            let emu =
                safeguard_emulator::Emulator::start(safeguard_emulator::EmulatorConfig::default())
                    .await?;
            println!("embedded emulator: SPS at https://{}", emu.sps_host());
            let sps = emu.connection().sps.clone();
            let tls = TlsOptions::default().with_ca_pem(emu.ca_pem())?;
            let host = emu.sps_host();
            _emulator = Some(emu);
            (host, sps.user, sps.password, tls)
        }
    };

    let client = SpsClient::builder(host)
        .credentials(user, password)
        .tls(tls)
        .build()?;
    for m in client.login_methods().await? {
        println!(
            "login method: {} ({})",
            m.key,
            m.kind.as_deref().unwrap_or("?")
        );
    }

    let tx = client.open().await?;
    let status = tx.status().await?;
    println!(
        "transaction open; commit message {}; {} s left",
        if status.commit_message_required() {
            "required"
        } else {
            "optional"
        },
        status.remaining_seconds.unwrap_or_default()
    );
    let policy = json!({
        "name": "drawing-only",
        "rules": [{
            "channel": "#drawing",
            "actions": {"audit": true, "content_policy": null, "four_eyes": false, "ids": false},
            "allowed_for": {
                "clients": [], "gateway_groups": [], "remote_groups": [], "servers": [],
                // A reference is written as the bare key of the built-in "All time" policy.
                "time_policy": "-100"
            }
        }]
    });
    let key = match tx
        .create("configuration/rdp/channel_policies", &policy)
        .await
    {
        Ok(key) => key,
        Err(e) => {
            tx.rollback().await?;
            return Err(e.into());
        }
    };
    println!("created RDP channel policy {key}");

    for change in tx.changes().await? {
        let what = match change.kind {
            ChangeKind::Create => "create",
            ChangeKind::Delete => "delete",
            ChangeKind::Replace => "replace",
            ChangeKind::Reorder => "reorder",
            ChangeKind::Other(ref k) => k.as_str(),
        };
        println!("  {what:8} {}", change.path);
        if let Some(v) = &change.new_value {
            println!("           {v}");
        }
    }

    match tx
        .commit(Some("Add the drawing-only RDP channel policy"))
        .await
    {
        Ok(()) => println!("committed"),
        Err(e @ Error::Sps(SpsError::MidAirCollision(_))) => {
            tx.rollback().await?;
            return Err(format!("someone else committed first: {e}").into());
        }
        Err(e) => {
            tx.rollback().await?;
            return Err(e.into());
        }
    }

    // Read it back: the reference comes back as {key, meta}.
    let saved = client
        .get::<serde_json::Value>(&format!("configuration/rdp/channel_policies/{key}"))
        .await?;
    println!(
        "time policy of the saved rule: {}",
        saved.body["rules"][0]["allowed_for"]["time_policy"]
    );
    client.sign_out().await?;
    Ok(())
}
