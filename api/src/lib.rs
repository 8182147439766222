//! What the generated clients of One Identity Safeguard's services share:
//! the seam they send requests through ([`Exec`], [`Inner`]), the lenient
//! [`Timestamp`] of their date-time fields, and the shared sending future
//! of every operation.
//!
//! The clients themselves are one crate per service, generated at build
//! time from the appliance's own OpenAPI documents: `safeguard-api-core`,
//! `safeguard-api-appliance`, `safeguard-api-notification` and
//! `safeguard-api-a2a`. They compile in parallel, and an edit to the SDK's
//! handwritten modules never recompiles them. Use them through
//! `safeguard-sdk`, which re-exports them as `safeguard_sdk::api::core`, ...
//! and hands out clients that share a signed-in session (`client.core()`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

#[doc(hidden)]
pub mod sending;
mod timestamp;

pub use timestamp::Timestamp;

/// A boxed, sendable future, as [`Exec::exec`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends the requests of the generated clients.
///
/// `safeguard-sdk` implements it with authentication, token refresh and its
/// error model; an implementation answers every status with `Ok` and keeps
/// `Err` for failures to send.
pub trait Exec: Send + Sync + 'static {
    /// Sends one request built by a generated operation.
    fn exec(&self, request: reqwest::Request) -> BoxFuture<'_, reqwest::Result<reqwest::Response>>;
}

/// What every generated client holds: a shared [`Exec`].
#[derive(Clone)]
pub struct Inner(Arc<dyn Exec>);

impl Inner {
    /// Wraps `exec`.
    pub fn new(exec: impl Exec) -> Self {
        Self(Arc::new(exec))
    }

    /// Sends `request` through the wrapped [`Exec`].
    pub async fn exec(&self, request: reqwest::Request) -> reqwest::Result<reqwest::Response> {
        self.0.exec(request).await
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Inner")
    }
}

/// The body of a generated service crate (`safeguard-api-core`, ...): its
/// build script's output, the hooks that send through [`Inner`], and the
/// build's code generation report.
///
/// The generated items sit in a private module re-exported whole, so that
/// the lint allowances below cover them and nothing else.
#[doc(hidden)]
#[macro_export]
macro_rules! generated_service {
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
            include!(concat!(env!("OUT_DIR"), "/generated.rs"));

            impl progenitor_client::ClientHooks<$crate::Inner> for Client {
                async fn exec(
                    &self,
                    request: reqwest::Request,
                    _info: &progenitor_client::OperationInfo,
                ) -> reqwest::Result<reqwest::Response> {
                    self.inner.exec(request).await
                }
            }

            impl Client {
                /// Creates the client over `inner` (normally obtained from a
                /// signed-in `safeguard_sdk::SafeguardClient` instead).
                pub fn with_inner(
                    baseurl: &str,
                    http: reqwest::Client,
                    inner: $crate::Inner,
                ) -> Self {
                    Self::new_with_client(baseurl, http, inner)
                }
            }
        }

        pub use generated::*;

        /// The build's code generation report for this service: the
        /// operations kept, those returning raw bytes, and the normalization
        /// rules applied.
        pub const CODEGEN_REPORT: &str =
            include_str!(concat!(env!("OUT_DIR"), "/codegen-report.txt"));
    };
}
