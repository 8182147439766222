//! What the generated schema types of One Identity Safeguard's services
//! share: the lenient [`Timestamp`] of their date-time fields, and the
//! helpers their `Deserialize` impls call.
//!
//! This crate stays free of the HTTP stack, so that a service's types
//! (`safeguard-api-core-types`) compile while reqwest, rustls and the rest
//! of the client side are still being built. Use the types through
//! `safeguard-sdk` (`safeguard_sdk::api::core::types`).

#[doc(hidden)]
pub mod de;
mod timestamp;

pub use timestamp::Timestamp;

/// The body of a generated types crate (`safeguard-api-core-types`): the
/// schema types its build script generated, with their lint allowances.
#[doc(hidden)]
#[macro_export]
macro_rules! generated_types {
    () => {
        #[allow(
            missing_docs,
            unused_imports,
            clippy::all,
            clippy::pedantic,
            rustdoc::all,
            rustdoc::broken_intra_doc_links,
            rustdoc::bare_urls,
            rustdoc::invalid_html_tags
        )]
        mod generated {
            include!(concat!(env!("SAFEGUARD_GENERATED_DIR"), "/types.rs"));
        }

        pub use generated::*;

        /// The build's code generation report for this service: the
        /// operations kept, those returning raw bytes, and the normalization
        /// rules applied.
        pub const CODEGEN_REPORT: &str = include_str!(concat!(
            env!("SAFEGUARD_GENERATED_DIR"),
            "/codegen-report.txt"
        ));
    };
}
