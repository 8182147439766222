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
/// schema types its build script generated, and the build's report.
#[doc(hidden)]
#[macro_export]
macro_rules! generated_types {
    () => {
        $crate::__generated_module! {
            include!(concat!(env!("SAFEGUARD_GENERATED_DIR"), "/types.rs"));
        }
        $crate::__codegen_report!();
    };
}

/// `mod generated { $items }`, re-exported whole: the lint allowances that
/// every generated crate (types or client) puts on its generated code and
/// on nothing else.
#[doc(hidden)]
#[macro_export]
macro_rules! __generated_module {
    ($($items:tt)*) => {
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
            $($items)*
        }

        pub use generated::*;
    };
}

/// `CODEGEN_REPORT`, from the report the build script wrote beside the code.
#[doc(hidden)]
#[macro_export]
macro_rules! __codegen_report {
    () => {
        /// The build's code generation report for this service: the
        /// operations kept, those returning raw bytes, and the normalization
        /// rules applied.
        pub const CODEGEN_REPORT: &str = include_str!(concat!(
            env!("SAFEGUARD_GENERATED_DIR"),
            "/codegen-report.txt"
        ));
    };
}
