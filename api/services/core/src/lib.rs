//! The core service (`/service/core/v4`) of One Identity Safeguard for
//! Privileged Passwords: users, assets, accounts, policies, access requests,
//! A2A registrations, settings: most of the product.
//!
//! Generated at build time from the appliance's OpenAPI document: a
//! [`Client`] with one builder method per operation, and [`types`] with
//! every schema (compiled in `safeguard-api-core-types`, re-exported here).
//! Use it through `safeguard-sdk` (`client.core()`).

safeguard_api::generated_client!(safeguard_api_core_types);
