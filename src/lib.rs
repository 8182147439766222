//! Rust SDK for One Identity Safeguard.
