//! The generated clients, one module per appliance service.
//!
//! Each module is generated at build time by `build.rs` from the appliance's
//! own OpenAPI document (see `openapi/README.md`) and compiled only with its
//! cargo feature. A module holds a `Client` with one builder method per
//! operation, `types` with every schema (all deriving `serde` and
//! `schemars::JsonSchema`), and re-exports `ResponseValue` and `ByteStream`.
//!
//! Get the clients from a signed-in [`SafeguardClient`](crate::SafeguardClient)
//! (`client.core()`, ...) so that they share its connection pool and its
//! current token; every call's error converts into [`crate::Error`] with `?`.
//!
//! Generated code is walled off here: nothing handwritten lives in these
//! modules, and the only coupling is [`Transport`](crate::transport::Transport),
//! which the `ClientHooks` implementations below use to send each request.

macro_rules! service {
    ($(#[$attr:meta])* $feature:literal, $name:ident, $file:literal) => {
        $(#[$attr])*
        #[cfg(feature = $feature)]
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

            impl progenitor_client::ClientHooks<crate::transport::Transport> for Client {
                async fn exec(
                    &self,
                    request: reqwest::Request,
                    _info: &progenitor_client::OperationInfo,
                ) -> reqwest::Result<reqwest::Response> {
                    self.inner.exec_for_generated(request).await
                }
            }

            impl Client {
                /// Creates the client over `transport` (normally obtained from
                /// a [`SafeguardClient`](crate::SafeguardClient) instead).
                pub fn with_transport(
                    baseurl: &str,
                    http: reqwest::Client,
                    transport: crate::transport::Transport,
                ) -> Self {
                    Self::new_with_client(baseurl, http, transport)
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
