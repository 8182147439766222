//! The typed clients of One Identity Safeguard's services, generated at build
//! time from the appliance's own OpenAPI documents.
//!
//! Use them through `safeguard-sdk`, which re-exports every module here as
//! `safeguard_sdk::api` and hands out clients that share a signed-in
//! session (`client.core()`, ...). This crate holds only generated code and
//! the seam it sends requests through, so that an edit to the SDK's
//! handwritten modules never recompiles the ~1,000 generated operations.
//!
//! `build.rs` finds the documents (`$SAFEGUARD_OPENAPI_DIR`, then the
//! workspace's `openapi/`, then `../shared/openapi/`), normalizes them and
//! runs progenitor through `safeguard-codegen`. Each module holds a `Client`
//! with one builder method per operation, `types` with every schema (all
//! deriving `serde` and `schemars::JsonSchema`), and re-exports
//! `ResponseValue` and `ByteStream`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

// The generated types name the date-time type by its absolute path.
extern crate self as safeguard_api;

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

macro_rules! service {
    ($(#[$attr:meta])* $feature:literal, $name:ident, $file:literal) => {
        $(#[$attr])*
        // The crate's own unit tests cover the handwritten glue only; the
        // generated code is exercised through safeguard-sdk's tests, so
        // `cargo test` does not compile it a second time as a test harness.
        #[cfg(all(feature = $feature, not(test)))]
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
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));

            impl progenitor_client::ClientHooks<crate::Inner> for Client {
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
                    inner: crate::Inner,
                ) -> Self {
                    Self::new_with_client(baseurl, http, inner)
                }
            }
        }
    };
}

service!(
    /// The core service (`/service/core/v4`): users, assets, accounts,
    /// policies, access requests, A2A registrations, settings: most of the
    /// product.
    "core", core, "core.rs"
);
service!(
    /// The appliance service (`/service/appliance/v4`): networking, time,
    /// backups, patches, support bundles, appliance state.
    "appliance", appliance, "appliance.rs"
);
service!(
    /// The notification service (`/service/notification/v4`): anonymous,
    /// read-only status, available even when the appliance is not online.
    "notification", notification, "notification.rs"
);
service!(
    /// The A2A service (`/service/a2a/v4`): credential retrieval and brokered
    /// access requests with a client certificate and an API key.
    "a2a", a2a, "a2a.rs"
);

/// The build's code generation report: per document, the operations kept,
/// those returning raw bytes, and the normalization rules applied.
pub const CODEGEN_REPORT: &str = include_str!(concat!(env!("OUT_DIR"), "/codegen-report.txt"));
