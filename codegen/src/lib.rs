//! Code generation for `safeguard-sdk`.
//!
//! The appliance's OpenAPI documents do not go through progenitor as shipped
//! (several media types per body, mixed typed/empty success responses, error
//! responses with and without bodies, strict enums, validations that reject
//! real server data). [`normalize`](mod@normalize) rewrites them with generic rules, then
//! [`generate()`] drives progenitor and names any operation it still fails on.
//! [`diff`] compares two document sets for the upgrade workflow.
//!
//! Past progenitor, [`required_arrays`] keeps the arrays a document requires
//! on the wire when empty, and passes cut what the generated code costs to
//! compile:
//! [`slim`] (typify's struct builders), [`sending`] (one shared sending
//! future), [`setters`] (shared parameter conversions) and [`lean_serde`]
//! (smaller `Deserialize` impls).
//!
//! The crate is the build-dependency of each generated service crate
//! (`safeguard-api-appliance`, ...: their `build.rs` is one call to
//! [`build_script::run`]; core's types crate runs it and hands the client
//! half to `safeguard-api-core` through [`build_script::run_client`]) and a
//! command-line tool:
//! `cargo run -p safeguard-codegen -- --help`.

pub mod build_script;
pub mod diff;
pub mod generate;
pub mod lean_serde;
pub mod locate;
pub mod normalize;
pub mod required_arrays;
pub mod sending;
pub mod setters;
pub mod slim;

pub use generate::{generate, Generated, Style};
pub use locate::{locate_documents, DocumentSource, SERVICES};

/// What can go wrong while reading documents or generating code.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// A document could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A document is not JSON.
    #[error("{path} is not valid JSON: {source}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// No location holds a document the build needs.
    #[error("{0}")]
    Missing(String),
    /// progenitor failed on the document.
    #[error("generating the {service} client failed: {message}{}", list_operations(.operations))]
    Generation {
        /// The service.
        service: String,
        /// progenitor's message (or its panic's).
        message: String,
        /// The operations that fail when generated one by one.
        operations: Vec<String>,
    },
}

fn list_operations(ops: &[String]) -> String {
    if ops.is_empty() {
        String::new()
    } else {
        format!("; failing operations: {}", ops.join(", "))
    }
}

/// Reads a JSON document.
pub fn read_document(path: &std::path::Path) -> Result<serde_json::Value, CodegenError> {
    let text = std::fs::read_to_string(path).map_err(|source| CodegenError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| CodegenError::Parse {
        path: path.to_owned(),
        source,
    })
}
