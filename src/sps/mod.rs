//! Safeguard for Privileged Sessions (SPS): a client of its REST API
//! (`https://{sps}/api/`) with the transaction workflow.
//!
//! SPS keeps its configuration in a tree (`/api/configuration`) that changes
//! only inside a transaction, signs clients in with a `session_id` cookie, and
//! answers errors with a precise code. This module encodes those rules:
//!
//! * [`SpsClient::builder`]: Basic credentials (optional `login_method`) or a
//!   client certificate (`type=x509`); [`SpsClient::login_methods`]
//!   anonymously. The session cookie is kept secret, sent on every call, and
//!   renewed transparently when it expires (20 minutes idle) outside a
//!   transaction; inside one the call fails with
//!   [`SpsError::SessionExpiredInTransaction`].
//! * Errors: every call returns the SDK's [`Result`](crate::Result). What is
//!   specific to SPS (its error answers by code, the transaction and search
//!   rules) is [`Error::Sps`](crate::Error::Sps)`(`[`SpsError`]`)`; transport,
//!   TLS, timeouts, limits, decoding and configuration are the shared variants
//!   ([`Error::Tls`](crate::Error::Tls), [`Error::Timeout`](crate::Error::Timeout), ...).
//! * Generic verbs relative to `/api/` ([`SpsClient::get`], [`post`](SpsClient::post),
//!   [`put`](SpsClient::put), [`delete`](SpsClient::delete)) returning
//!   [`SpsResponse`]; lists page by page ([`SpsClient::pages`],
//!   [`SpsClient::items`]) following `meta.next`.
//! * Transactions: [`SpsClient::open`] → [`Transaction`] (the calls that run
//!   inside it, each checked to run while it is the open one), the closure style
//!   [`SpsClient::transaction`] (commit on `Ok`, roll back on `Err` or panic),
//!   [`SpsClient::transaction_with_retry`] for mid-air collisions, typed
//!   [`Change`]s and [`TransactionStatus`] (both answer shapes).
//! * Objects: [`SpsClient::create`] (returns the new key), [`SpsClient::replace`],
//!   [`SpsClient::fetch_for_write`] and [`flatten_references`] (references
//!   `{key, meta}` become bare keys, no `body` wrapper, empty lists kept).
//! * Recorded sessions: [`SpsClient::audit_sessions`], [`SpsClient::audit_session`],
//!   [`SpsClient::search_session_content`] (with [`validate_query`]),
//!   [`SpsClient::download_audit_trail`].
//! * Joining SPS to SPP: [`SpsClient::join_spp`] ([`JoinOptions`],
//!   [`JoinReport`]; a failure names its [`JoinStep`] in [`SpsError::Join`]).
//! * [`blocking`]: the same without async.
//!
//! ```no_run
//! use safeguard_sdk::sps::SpsClient;
//! use serde_json::json;
//!
//! # async fn run() -> safeguard_sdk::Result<()> {
//! let sps = SpsClient::builder("sps.example.com")
//!     .credentials("admin", "secret".to_string())
//!     .build()?;
//! let key = sps
//!     .transaction_with_retry(3, Some("drawing-only RDP policy"), |tx| async move {
//!         tx.create(
//!             "configuration/rdp/channel_policies",
//!             &json!({
//!                 "name": "drawing-only",
//!                 "rules": [{
//!                     "channel": "#drawing",
//!                     "actions": {"audit": true, "content_policy": null, "four_eyes": false, "ids": false},
//!                     "allowed_for": {"clients": [], "gateway_groups": [], "remote_groups": [],
//!                                     "servers": [], "time_policy": "-100"}
//!                 }]
//!             }),
//!         )
//!         .await
//!     })
//!     .await?;
//! println!("created {key}");
//! # Ok(()) }
//! ```

mod audit;
pub mod blocking;
mod client;
mod error;
mod join;
mod model;
mod transaction;
mod x509;

pub use audit::{validate_query, SessionSearch, MAX_QUERY_LEN};
pub use client::{session_cookie, SpsClient, SpsClientBuilder, USER_AGENT};
pub use error::{SpsApiError, SpsError};
pub use join::{JoinOptions, JoinReport, JoinStep};
pub use model::{
    flatten_references, parse_changes, parse_login_methods, parse_page, parse_response,
    parse_transaction_status, Change, ChangeKind, CommitMessagePolicy, ListItem, LoginMethod, Meta,
    SpsPage, SpsResponse, TransactionState, TransactionStatus,
};
pub use transaction::Transaction;
