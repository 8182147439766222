//! The generated clients, one module per appliance service.
//!
//! Each module is generated at build time by the `safeguard-api` crate from
//! the appliance's own OpenAPI documents (see `openapi/README.md`) and
//! compiled only with its cargo feature. A module holds a `Client` with one
//! builder method per operation, `types` with every schema (all deriving
//! `serde` and `schemars::JsonSchema`), and re-exports `ResponseValue` and
//! `ByteStream`.
//!
//! Get the clients from a signed-in [`SafeguardClient`](crate::SafeguardClient)
//! (`client.core()`, ...) so that they share its connection pool and its
//! current token; every call's error converts into [`crate::Error`] with `?`.
//!
//! Generated code is walled off in its own crate: nothing handwritten lives
//! in these modules (so an edit to the SDK never recompiles them), and the
//! only coupling is [`Transport`](crate::transport::Transport), which sends
//! each of their requests through `safeguard_api::Exec`.

#[cfg(feature = "a2a")]
pub use safeguard_api::a2a;
#[cfg(feature = "appliance")]
pub use safeguard_api::appliance;
#[cfg(feature = "core")]
pub use safeguard_api::core;
#[cfg(feature = "notification")]
pub use safeguard_api::notification;
pub use safeguard_api::CODEGEN_REPORT;
