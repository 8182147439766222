//! The generated clients, one module per appliance service.
//!
//! Each module is a crate of its own (`safeguard-api-core`, ...; the core
//! service's schema types compile in `safeguard-api-core-types`, re-exported
//! as `core::types`), generated at build time from the appliance's own
//! OpenAPI documents (see `openapi/README.md`) and compiled only with its
//! cargo feature. A module holds a `Client` with one builder method per
//! operation, `types` with every schema (all implementing serde's
//! `Serialize` and `Deserialize` and `schemars::JsonSchema`), and re-exports
//! `ResponseValue` and `ByteStream`.
//!
//! Get the clients from a signed-in [`SafeguardClient`](crate::SafeguardClient)
//! (`client.core()`, ...) so that they share its connection pool and its
//! current token. A call fails with [`CallError`]: progenitor's error
//! (`Call`), an answer refused by the [limits](crate::limits) (`Limit`), or
//! the SDK's own failure (`Exec`, a boxed [`crate::Error`], say a sign-in
//! that failed during a refresh); each converts into [`crate::Error`] with
//! `?`, the SDK's own failure as the error it was.
//!
//! Generated code is walled off in crates of its own: nothing handwritten
//! lives in these modules (so an edit to the SDK never recompiles them),
//! they compile in parallel with each other, and the only coupling is
//! [`Transport`](crate::transport::Transport), which sends each of their
//! requests through `safeguard_api::Exec`.

pub use safeguard_api::CallError;
#[cfg(feature = "a2a")]
pub use safeguard_api_a2a as a2a;
#[cfg(feature = "appliance")]
pub use safeguard_api_appliance as appliance;
#[cfg(feature = "core")]
pub use safeguard_api_core as core;
#[cfg(feature = "notification")]
pub use safeguard_api_notification as notification;

/// The build's code generation report for each enabled service: the
/// operations kept, those returning raw bytes, and the normalization rules
/// applied (`cargo run -p safeguard-codegen -- report` prints the same for
/// any set of documents).
pub fn codegen_report() -> String {
    #[allow(unused_mut)]
    let mut report = String::new();
    #[cfg(feature = "core")]
    report.push_str(core::CODEGEN_REPORT);
    #[cfg(feature = "appliance")]
    report.push_str(appliance::CODEGEN_REPORT);
    #[cfg(feature = "notification")]
    report.push_str(notification::CODEGEN_REPORT);
    #[cfg(feature = "a2a")]
    report.push_str(a2a::CODEGEN_REPORT);
    report
}
