//! A blocking facade over [`super::SpsClient`], running its own tokio runtime
//! (one worker thread, like every blocking facade: see [`crate::blocking`]).
//!
//! Inside an async runtime every call is refused with
//! [`Error::BlockingInsideRuntime`] (blocking there would stall that
//! runtime's thread); use the async [`super::SpsClient`] there.
//!
//! ```no_run
//! use safeguard_sdk::sps::blocking::SpsClient;
//! let client = SpsClient::builder("sps.example.com")
//!     .credentials("admin", "secret".to_string())
//!     .build()?;
//! let key = client.transaction(|tx| {
//!     tx.set_commit_message("add a time policy");
//!     tx.create("configuration/policies/time_policies", &serde_json::json!({"name": "tp", "days": []}))
//! })?;
//! # let _ = key;
//! # Ok::<(), safeguard_sdk::Error>(())
//! ```

use std::io::Write;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::audit::SessionSearch;
use super::error::SpsError;
use super::model::{Change, ListItem, LoginMethod, SpsPage, SpsResponse, TransactionStatus};
use crate::blocking::runtime::BlockingRuntime;
use crate::tls::{ClientIdentity, TlsOptions};
use crate::{Error, Result};

/// Configures a blocking [`SpsClient`].
#[derive(Debug, Clone)]
pub struct SpsClientBuilder(super::SpsClientBuilder);

impl SpsClientBuilder {
    /// See [`super::SpsClientBuilder::credentials`].
    pub fn credentials(self, user: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Self(self.0.credentials(user, password))
    }

    /// See [`super::SpsClientBuilder::login_method`].
    pub fn login_method(self, method: impl Into<String>) -> Self {
        Self(self.0.login_method(method))
    }

    /// See [`super::SpsClientBuilder::client_certificate`].
    pub fn client_certificate(self, identity: ClientIdentity) -> Self {
        Self(self.0.client_certificate(identity))
    }

    /// See [`super::SpsClientBuilder::tls`].
    pub fn tls(self, tls: TlsOptions) -> Self {
        Self(self.0.tls(tls))
    }

    /// See [`super::SpsClientBuilder::user_agent`].
    pub fn user_agent(self, agent: impl Into<String>) -> Self {
        Self(self.0.user_agent(agent))
    }

    /// See [`super::SpsClientBuilder::timeout`].
    pub fn timeout(self, timeout: Duration) -> Self {
        Self(self.0.timeout(timeout))
    }

    /// See [`super::SpsClientBuilder::limits`].
    pub fn limits(self, limits: crate::limits::Limits) -> Self {
        Self(self.0.limits(limits))
    }

    /// See [`super::SpsClientBuilder::proxy`].
    pub fn proxy(self, proxy: crate::proxy::Proxy) -> Self {
        Self(self.0.proxy(proxy))
    }

    /// Builds the client and its runtime (one worker thread).
    pub fn build(self) -> Result<SpsClient> {
        let rt = Arc::new(BlockingRuntime::new(
            "safeguard-sps",
            "safeguard_sdk::sps::SpsClient",
        )?);
        let inner = {
            let _enter = rt.enter();
            self.0.build()?
        };
        Ok(SpsClient { rt, inner })
    }
}

/// The blocking SPS client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SpsClient {
    rt: Arc<BlockingRuntime>,
    inner: super::SpsClient,
}

/// An open transaction of the blocking client (see [`super::Transaction`]).
#[derive(Debug)]
pub struct Transaction {
    rt: Arc<BlockingRuntime>,
    inner: Option<super::Transaction>,
}

impl SpsClient {
    /// Starts configuring a client; see [`super::SpsClient::builder`].
    pub fn builder(host: impl Into<String>) -> SpsClientBuilder {
        SpsClientBuilder(super::SpsClient::builder(host))
    }

    /// The async client underneath.
    pub fn async_client(&self) -> &super::SpsClient {
        &self.inner
    }

    fn run<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        self.rt.run(f)
    }

    /// See [`super::SpsClient::login_methods`].
    pub fn login_methods(&self) -> Result<Vec<LoginMethod>> {
        self.run(self.inner.login_methods())
    }

    /// See [`super::SpsClient::sign_in`].
    pub fn sign_in(&self) -> Result<()> {
        self.run(self.inner.sign_in())
    }

    /// See [`super::SpsClient::sign_out`].
    pub fn sign_out(&self) -> Result<()> {
        self.run(self.inner.sign_out())
    }

    /// See [`super::SpsClient::get`].
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<SpsResponse<T>> {
        self.run(self.inner.get(path))
    }

    /// See [`super::SpsClient::get_json`].
    pub fn get_json(&self, path: &str) -> Result<Value> {
        self.run(self.inner.get_json(path))
    }

    /// See [`super::SpsClient::join_spp`]: joins this SPS to the SPP cluster
    /// the blocking `spp` client is signed in to.
    pub fn join_spp(
        &self,
        spp: &crate::blocking::SafeguardClient,
        options: super::JoinOptions,
    ) -> Result<super::JoinReport> {
        self.run(self.inner.join_spp(spp.inner(), options))
    }

    /// See [`super::SpsClient::post`].
    pub fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SpsResponse<T>> {
        self.run(self.inner.post(path, body))
    }

    /// See [`super::SpsClient::put`].
    pub fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SpsResponse<T>> {
        self.run(self.inner.put(path, body))
    }

    /// See [`super::SpsClient::delete`].
    pub fn delete(&self, path: &str) -> Result<SpsResponse<Value>> {
        self.run(self.inner.delete(path))
    }

    /// See [`super::SpsClient::page`].
    pub fn page(&self, path: &str) -> Result<SpsPage> {
        self.run(self.inner.page(path))
    }

    /// Every item of a list, across pages (see [`super::SpsClient::items`]).
    pub fn children(&self, path: &str) -> Result<Vec<ListItem>> {
        self.run(self.inner.children(path))
    }

    /// See [`super::SpsClient::fetch_for_write`].
    pub fn fetch_for_write(&self, path: &str) -> Result<Value> {
        self.run(self.inner.fetch_for_write(path))
    }

    /// See [`super::SpsClient::create`].
    pub fn create<B: Serialize + ?Sized>(&self, parent: &str, object: &B) -> Result<String> {
        self.run(self.inner.create(parent, object))
    }

    /// See [`super::SpsClient::replace`].
    pub fn replace<B: Serialize + ?Sized>(
        &self,
        path: &str,
        object: &B,
    ) -> Result<SpsResponse<Value>> {
        self.run(self.inner.replace(path, object))
    }

    /// See [`super::SpsClient::transaction_status`].
    pub fn transaction_status(&self) -> Result<TransactionStatus> {
        self.run(self.inner.transaction_status())
    }

    /// See [`super::SpsClient::changes`].
    pub fn changes(&self) -> Result<Vec<Change>> {
        self.run(self.inner.changes())
    }

    /// See [`super::SpsClient::open`]. Dropping the guard while open rolls back.
    pub fn open(&self) -> Result<Transaction> {
        let tx = self.run(self.inner.open())?;
        Ok(Transaction {
            rt: self.rt.clone(),
            inner: Some(tx),
        })
    }

    /// Rolls back whatever transaction the session has open, without a
    /// guard (see [`super::SpsClient::rollback`]).
    pub fn rollback(&self) -> Result<()> {
        self.run(self.inner.rollback())
    }

    /// Runs `work` in a new transaction: commits on `Ok` (with the message of
    /// [`Transaction::set_commit_message`]), rolls back on `Err` or panic.
    pub fn transaction<T, E, F>(&self, work: F) -> std::result::Result<T, E>
    where
        F: FnOnce(&Transaction) -> std::result::Result<T, E>,
        E: From<Error>,
    {
        let tx = self.open().map_err(E::from)?;
        let outcome = catch_unwind(AssertUnwindSafe(|| work(&tx)));
        match outcome {
            Ok(Ok(value)) => {
                let message = tx.message();
                match tx.commit(message.as_deref()) {
                    Ok(()) => Ok(value),
                    Err(e) => {
                        let _ = tx.rollback();
                        Err(E::from(e))
                    }
                }
            }
            Ok(Err(e)) => {
                let _ = tx.rollback();
                Err(e)
            }
            Err(panic) => {
                let _ = tx.rollback();
                resume_unwind(panic)
            }
        }
    }

    /// Runs `work` in a transaction and redoes it after a mid-air collision
    /// or a configuration lock, up to `max_attempts` times in all.
    pub fn transaction_with_retry<T, F>(
        &self,
        max_attempts: u32,
        message: Option<&str>,
        mut work: F,
    ) -> Result<T>
    where
        F: FnMut(&Transaction) -> Result<T>,
    {
        let attempts = max_attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let r = self.transaction(|tx| {
                if let Some(m) = message {
                    tx.set_commit_message(m);
                }
                work(tx)
            });
            match r {
                Err(
                    e @ Error::Sps(
                        SpsError::MidAirCollision(_) | SpsError::WebGuiOrRpcApiConfigInProgress(_),
                    ),
                ) if n < attempts => {
                    tracing::debug!(target: "safeguard_sdk::sps", "transaction attempt {n} collided: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100 * u64::from(n)));
                }
                other => return other,
            }
        }
    }

    /// Every recorded session matching `search`.
    pub fn audit_sessions(&self, search: &SessionSearch) -> Result<Vec<ListItem>> {
        self.run(self.inner.audit_sessions(search).try_collect())
    }

    /// See [`super::SpsClient::audit_session`].
    pub fn audit_session(&self, id: &str) -> Result<SpsResponse<Value>> {
        self.run(self.inner.audit_session(id))
    }

    /// See [`super::SpsClient::search_session_content`].
    pub fn search_session_content(&self, id: &str, q: &str) -> Result<Vec<Value>> {
        self.run(self.inner.search_session_content(id, q))
    }

    /// Writes the audit trail of a recorded session into `out`; returns the
    /// number of bytes.
    pub fn download_audit_trail_to<W: Write>(&self, id: &str, out: &mut W) -> Result<u64> {
        self.run(async {
            let stream = self.inner.download_audit_trail(id).await?;
            futures::pin_mut!(stream);
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                out.write_all(&chunk)?;
                n = n.saturating_add(chunk.len() as u64);
            }
            out.flush()?;
            Ok(n)
        })
    }
}

impl Transaction {
    fn tx(&self) -> Result<&super::Transaction> {
        self.inner
            .as_ref()
            .ok_or(Error::Sps(SpsError::TransactionClosed))
    }

    fn message(&self) -> Option<String> {
        self.inner
            .as_ref()
            .and_then(super::Transaction::commit_message)
    }

    /// Sets the message [`SpsClient::transaction`] commits with.
    pub fn set_commit_message(&self, message: impl Into<String>) {
        if let Some(t) = &self.inner {
            t.set_commit_message(message);
        }
    }

    /// See [`super::Transaction::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(super::Transaction::is_closed)
    }

    /// See [`super::Transaction::get`].
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<SpsResponse<T>> {
        let tx = self.tx()?;
        self.rt.run(tx.get(path))
    }

    /// See [`super::Transaction::get_json`].
    pub fn get_json(&self, path: &str) -> Result<Value> {
        let tx = self.tx()?;
        self.rt.run(tx.get_json(path))
    }

    /// See [`super::Transaction::post`].
    pub fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SpsResponse<T>> {
        let tx = self.tx()?;
        self.rt.run(tx.post(path, body))
    }

    /// See [`super::Transaction::put`].
    pub fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SpsResponse<T>> {
        let tx = self.tx()?;
        self.rt.run(tx.put(path, body))
    }

    /// See [`super::Transaction::page`].
    pub fn page(&self, path: &str) -> Result<SpsPage> {
        let tx = self.tx()?;
        self.rt.run(tx.page(path))
    }

    /// Every item of a list, across pages (see [`super::Transaction::items`]).
    pub fn children(&self, path: &str) -> Result<Vec<ListItem>> {
        let tx = self.tx()?;
        self.rt.run(tx.children(path))
    }

    /// See [`super::Transaction::fetch_for_write`].
    pub fn fetch_for_write(&self, path: &str) -> Result<Value> {
        let tx = self.tx()?;
        self.rt.run(tx.fetch_for_write(path))
    }

    /// See [`super::Transaction::create`].
    pub fn create<B: Serialize + ?Sized>(&self, parent: &str, object: &B) -> Result<String> {
        let tx = self.tx()?;
        self.rt.run(tx.create(parent, object))
    }

    /// See [`super::Transaction::replace`].
    pub fn replace<B: Serialize + ?Sized>(
        &self,
        path: &str,
        object: &B,
    ) -> Result<SpsResponse<Value>> {
        let tx = self.tx()?;
        self.rt.run(tx.replace(path, object))
    }

    /// See [`super::Transaction::modify`].
    pub fn modify(&self, path: &str, edit: impl FnOnce(&mut Value)) -> Result<SpsResponse<Value>> {
        let tx = self.tx()?;
        self.rt.run(tx.modify(path, edit))
    }

    /// See [`super::Transaction::reorder`].
    pub fn reorder(&self, list: &str, keys: &[String]) -> Result<SpsResponse<Value>> {
        let tx = self.tx()?;
        self.rt.run(tx.reorder(list, keys))
    }

    /// See [`super::Transaction::delete`].
    pub fn delete(&self, path: &str) -> Result<SpsResponse<Value>> {
        let tx = self.tx()?;
        self.rt.run(tx.delete(path))
    }

    /// The transaction's status.
    pub fn status(&self) -> Result<TransactionStatus> {
        let tx = self.tx()?;
        self.rt.run(tx.status())
    }

    /// The changelog so far.
    pub fn changes(&self) -> Result<Vec<Change>> {
        let tx = self.tx()?;
        self.rt.run(tx.changes())
    }

    /// Commits (see [`super::Transaction::commit`]).
    pub fn commit(&self, message: Option<&str>) -> Result<()> {
        let tx = self.tx()?;
        self.rt.run(tx.commit(message))
    }

    /// Rolls back (see [`super::Transaction::rollback`]).
    pub fn rollback(&self) -> Result<()> {
        let tx = self.tx()?;
        self.rt.run(tx.rollback())
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(tx) = self.inner.take() {
            if !tx.is_closed() {
                tracing::warn!(target: "safeguard_sdk::sps", "a blocking SPS transaction was dropped while open; rolling back");
                if crate::blocking::runtime::check_outside_runtime("").is_ok() {
                    let _ = self.rt.run(tx.rollback());
                } else {
                    // Dropped inside an async runtime, where blocking is
                    // refused: roll back on the client's worker instead.
                    self.rt.spawn(async move {
                        let _ = tx.rollback().await;
                    });
                }
            }
        }
    }
}
