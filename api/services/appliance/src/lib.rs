//! The appliance service (`/service/appliance/v4`) of One Identity Safeguard
//! for Privileged Passwords: networking, time, backups, patches, support
//! bundles, appliance state.
//!
//! Generated at build time from the appliance's OpenAPI document: a
//! [`Client`] with one builder method per operation and [`types`] with every
//! schema. Use it through `safeguard-sdk` (`client.appliance()`).

safeguard_api::generated_service!();
