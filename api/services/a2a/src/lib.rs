//! The A2A service (`/service/a2a/v4`) of One Identity Safeguard for
//! Privileged Passwords: credential retrieval and brokered access requests
//! with a client certificate and an API key.
//!
//! Generated at build time from this project's `openapi/a2a.json`: a
//! [`Client`] with one builder method per operation and [`types`] with every
//! schema. Use it through `safeguard-sdk` (`safeguard_sdk::a2a`).

safeguard_api::generated_service!();
