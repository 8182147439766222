//! Shared by the examples: a real appliance from the environment, or an
//! emulator started in-process.
#![allow(dead_code)]

use safeguard_emulator::Emulator;
use safeguard_sdk::SafeguardClientBuilder;

/// Where the examples connect.
pub struct Target {
    /// Keeps an embedded emulator running while the example runs.
    pub emulator: Option<Emulator>,
    /// Host (with port).
    pub host: String,
    /// A CA PEM to trust, if any.
    pub ca_pem: Option<Vec<u8>>,
}

impl Target {
    /// `SAFEGUARD_HOST` (+ optional `SAFEGUARD_CA` PEM file), else an embedded emulator.
    pub async fn from_env() -> Result<Self, Box<dyn std::error::Error>> {
        if let Ok(host) = std::env::var("SAFEGUARD_HOST") {
            let ca_pem = match std::env::var("SAFEGUARD_CA") {
                Ok(path) => Some(std::fs::read(path)?),
                Err(_) => None,
            };
            return Ok(Self {
                emulator: None,
                host,
                ca_pem,
            });
        }
        let emulator = Emulator::start(Default::default()).await?;
        println!("Using an embedded emulator at {}", emulator.spp_host());
        Ok(Self {
            host: emulator.spp_host(),
            ca_pem: Some(emulator.ca_pem().as_bytes().to_vec()),
            emulator: Some(emulator),
        })
    }

    /// A client builder trusting the target's CA.
    pub fn builder(&self) -> Result<SafeguardClientBuilder, Box<dyn std::error::Error>> {
        let builder = safeguard_sdk::SafeguardClient::builder(self.host.clone());
        Ok(match &self.ca_pem {
            Some(pem) => builder.ca_pem(pem)?,
            None => builder,
        })
    }
}

/// An environment variable, or the emulator's value.
pub fn env_or(name: &str, emulated: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| emulated.to_owned())
}
