//! Rust SDK for One Identity Safeguard.
#![warn(missing_docs)]

extern crate self as safeguard_sdk;

pub mod api;
pub mod error;
mod timestamp;
pub mod transport;

pub use error::{Error, Result};
pub use timestamp::Timestamp;
