//! The schema types of the core service (`/service/core/v4`) of One
//! Identity Safeguard for Privileged Passwords, in [`types`].
//!
//! Generated at build time from the appliance's OpenAPI document, together
//! with the client of `safeguard-api-core`, which re-exports them: use them
//! through `safeguard-sdk` (`safeguard_sdk::api::core::types`). They sit in
//! a crate of their own so that they compile in parallel with the HTTP
//! stack the client needs.

safeguard_api_types::generated_types!();
