//! Shared set-up of the integration tests: an emulator on loopback and
//! clients that trust its CA.
#![allow(dead_code)]

use safeguard_emulator::{Emulator, EmulatorConfig};
use safeguard_sdk::auth::{Auth, PkceAuth};
use safeguard_sdk::SafeguardClient;

/// Starts an emulator with `config` adjusted by `adjust`.
pub async fn emulator_with(adjust: impl FnOnce(&mut EmulatorConfig)) -> Emulator {
    let mut config = EmulatorConfig::default();
    adjust(&mut config);
    Emulator::start(config).await.expect("emulator starts")
}

/// Starts an emulator with the default configuration.
pub async fn emulator() -> Emulator {
    emulator_with(|_| {}).await
}

/// A client of `emu` that trusts its CA and signs in with `auth`.
pub fn client(emu: &Emulator, auth: impl Into<Auth>) -> SafeguardClient {
    SafeguardClient::builder(emu.spp_host())
        .ca_pem(emu.ca_pem())
        .expect("CA parses")
        .auth(auth)
        .build()
        .expect("client builds")
}

/// A client of `emu` signed in as the seeded admin with PKCE.
pub async fn admin(emu: &Emulator) -> SafeguardClient {
    let c = &emu.connection().spp.admin;
    let client = client(
        emu,
        PkceAuth::new("local", c.user.clone(), c.password.clone()),
    );
    client.login().await.expect("admin signs in");
    client
}
