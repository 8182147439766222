//! Rust SDK for One Identity Safeguard: Safeguard for Privileged Passwords
//! (SPP, the appliance) and Safeguard for Privileged Sessions (SPS).
//!
//! - [`SafeguardClient`] signs in ([`auth`]: PKCE, password, certificate,
//!   device code, browser, token), keeps and refreshes the token, and offers
//!   the typed clients generated from the appliance's own OpenAPI documents
//!   ([`api`]) as well as generic verbs, streaming and paging.
//! - [`blocking`] is the same for programs without an async runtime.
//! - [`cluster`]: a client of a cluster sends writes to the primary, reads
//!   to a member that serves, and moves on when a member fails.
//! - [`tls`] holds the TLS settings shared by every connection.
//!
//! ```no_run
//! use safeguard_sdk::{auth::PkceAuth, SafeguardClient};
//! # async fn run() -> safeguard_sdk::Result<()> {
//! let client = SafeguardClient::builder("safeguard.example.com")
//!     .auth(PkceAuth::new("local", "Admin", "Admin123"))
//!     .ca_file("ca.pem")?
//!     .build()?;
//! // A typed call: builder-style parameters, typed answer, `?` into safeguard_sdk::Error.
//! let users = client.core().users_get_users().filter("Disabled eq false").limit(10).send().await?;
//! for user in users.iter() {
//!     println!("{:?} {:?}", user.id, user.name);
//! }
//! # Ok(()) }
//! ```
//!
//! Each service's generated client sits behind a cargo feature of the same
//! name (`core`, `appliance`, `notification`, `a2a`; all on by default).
#![warn(missing_docs)]

#[cfg(feature = "a2a")]
pub mod a2a;
pub mod api;
pub mod auth;
pub mod blocking;
mod call_span;
mod cert_transport;
mod client;
pub mod cluster;
pub mod error;
pub mod events;
mod host;
pub mod limits;
#[cfg(feature = "core")]
pub mod lists;
pub mod paging;
pub mod proxy;
mod secret;
pub mod sps;
pub mod tls;
pub mod transport;

pub use client::{
    ApiResponse, RequestBuilder, SafeguardClient, SafeguardClientBuilder, Service, UploadProgress,
    UploadSource, TOKEN_LIFETIME_HEADER,
};
pub use error::{Error, Result};
pub use host::Host;
pub use safeguard_api::Timestamp;
pub use secrecy::{ExposeSecret, SecretString};
