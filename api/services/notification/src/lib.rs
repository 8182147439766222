//! The notification service (`/service/notification/v4`) of One Identity
//! Safeguard for Privileged Passwords: anonymous, read-only status, available
//! even when the appliance is not online.
//!
//! Generated at build time from the appliance's OpenAPI document: a
//! [`Client`] with one builder method per operation and [`types`] with every
//! schema. Use it through `safeguard-sdk` (`client.notification()`).

safeguard_api::generated_service!();
