//! Transactions: explicit calls, the [`Transaction`] guard, the closure style
//! that commits on `Ok` and rolls back on `Err` or panic, and the retry helper
//! for mid-air collisions.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use futures::FutureExt;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::client::SpsClient;
use super::error::SpsError;
use super::model::{self, Change, ListItem, SpsPage, SpsResponse, TransactionStatus};
use crate::{Error, Result};

impl SpsClient {
    /// `GET /api/transaction`, from the current or the older answer shape.
    pub async fn transaction_status(&self) -> Result<TransactionStatus> {
        let b = self.execute(Method::GET, "transaction", None).await?;
        model::parse_transaction_status(&b)
    }

    /// The changelog of the session's open transaction.
    pub async fn changes(&self) -> Result<Vec<Change>> {
        let b = self
            .execute(Method::GET, "transaction/changes", None)
            .await?;
        model::parse_changes(&b)
    }

    /// Opens a transaction (`POST /api/transaction`, with a body so that SPS
    /// does not answer 411). Close it with [`Transaction::commit`] or
    /// [`Transaction::rollback`]; a guard dropped while open rolls back in
    /// the background, and the next `open` of the client rolls it back first
    /// if that has not happened yet (prefer the explicit calls or
    /// [`transaction`](Self::transaction)).
    ///
    /// A session has one transaction at a time: while one is open SPS
    /// answers [`SpsError::DoubleTransaction`].
    pub async fn open(&self) -> Result<Transaction> {
        let _calls = self.inner.tx_calls.lock().await;
        let orphan = {
            let t = self.tx_track();
            t.open.filter(|_| t.orphaned)
        };
        if let Some(generation) = orphan {
            self.rollback_generation(generation).await?;
        }
        self.execute(Method::POST, "transaction", Some(&json!({})))
            .await?;
        let generation = {
            let mut t = self.tx_track();
            t.last += 1;
            t.open = Some(t.last);
            t.orphaned = false;
            t.last
        };
        Ok(Transaction {
            client: self.clone(),
            state: Arc::new(TxState {
                generation,
                outcome: AtomicU8::new(OPEN),
                message: Mutex::new(None),
            }),
        })
    }

    /// Rolls back whatever transaction the session has open
    /// (`DELETE /api/transaction`), without a [`Transaction`] guard: a
    /// recovery for a transaction the client holds no guard of (SPS answers
    /// [`SpsError::DoubleTransaction`] to [`open`](Self::open)). The guard of
    /// a transaction rolled back this way is closed: its calls fail with
    /// [`SpsError::TransactionClosed`]. Prefer [`Transaction::rollback`].
    pub async fn rollback(&self) -> Result<()> {
        let _calls = self.inner.tx_calls.lock().await;
        let r = self.execute(Method::DELETE, "transaction", None).await;
        self.end_tracking();
        r.map(|_| ())
    }

    /// `DELETE /api/transaction` for the transaction `generation`, if it is
    /// still the open one; its end (or its absence on the server) is
    /// recorded. The caller holds `tx_calls`.
    async fn rollback_generation(&self, generation: u64) -> Result<()> {
        if self.tx_track().open != Some(generation) {
            return Ok(());
        }
        match self.execute(Method::DELETE, "transaction", None).await {
            Ok(_)
            | Err(Error::Sps(
                SpsError::NoTransaction(_) | SpsError::SessionExpiredInTransaction(_),
            )) => {
                self.end_tracking_of(generation);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Commits the transaction `generation` if it is still the open one.
    /// Without a message, first asks the transaction status and fails with
    /// [`SpsError::CommitMessageRequired`] (sending nothing) when SPS
    /// requires one.
    async fn commit_generation(&self, generation: u64, message: Option<&str>) -> Result<()> {
        let _calls = self.inner.tx_calls.lock().await;
        if self.tx_track().open != Some(generation) {
            return Err(SpsError::TransactionClosed.into());
        }
        let message = message.map(str::trim).filter(|m| !m.is_empty());
        if message.is_none() {
            let status = self.transaction_status().await?;
            if status.commit_message_required() {
                return Err(SpsError::CommitMessageRequired.into());
            }
        }
        let mut body = json!({"status": "commit"});
        if let Some(m) = message {
            body["message"] = json!(m);
        }
        self.execute(Method::PUT, "transaction", Some(&body))
            .await?;
        self.end_tracking_of(generation);
        Ok(())
    }

    /// Runs `work` inside a new transaction: commits when it returns `Ok`
    /// (with the message set by [`Transaction::set_commit_message`], if
    /// any), rolls back when it returns `Err` or panics (the panic then
    /// continues). A failed commit is rolled back too.
    ///
    /// ```no_run
    /// # async fn f(client: safeguard_sdk::sps::SpsClient) -> safeguard_sdk::Result<()> {
    /// let key = client
    ///     .transaction(|tx| async move {
    ///         tx.set_commit_message("add a time policy");
    ///         tx.create("configuration/policies/time_policies", &serde_json::json!({"name": "tp", "days": []}))
    ///             .await
    ///     })
    ///     .await?;
    /// # let _ = key; Ok(()) }
    /// ```
    pub async fn transaction<F, Fut, T, E>(&self, work: F) -> std::result::Result<T, E>
    where
        F: FnOnce(Transaction) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: From<Error>,
    {
        let tx = self.open().await.map_err(E::from)?;
        let outcome = AssertUnwindSafe(work(tx.clone())).catch_unwind().await;
        match outcome {
            Ok(Ok(value)) => {
                let message = tx.commit_message();
                match tx.commit(message.as_deref()).await {
                    Ok(()) => Ok(value),
                    Err(e) => {
                        tx.rollback_quietly().await;
                        Err(E::from(e))
                    }
                }
            }
            Ok(Err(e)) => {
                tx.rollback_quietly().await;
                Err(e)
            }
            Err(panic) => {
                tx.rollback_quietly().await;
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Like [`transaction`](Self::transaction), with a commit message.
    pub async fn transaction_with_message<F, Fut, T, E>(
        &self,
        message: &str,
        work: F,
    ) -> std::result::Result<T, E>
    where
        F: FnOnce(Transaction) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: From<Error>,
    {
        let message = message.to_string();
        self.transaction(move |tx| {
            tx.set_commit_message(message);
            work(tx)
        })
        .await
    }

    /// Runs `work` in a transaction, and when another client got in first
    /// (`MidAirCollision`, or the configuration lock
    /// `WebGuiOrRpcApiConfigInProgress`), rolls back, reopens and runs it
    /// again, up to `max_attempts` times in all. `work` must redo everything
    /// from fresh reads.
    pub async fn transaction_with_retry<F, Fut, T>(
        &self,
        max_attempts: u32,
        message: Option<&str>,
        mut work: F,
    ) -> Result<T>
    where
        F: FnMut(Transaction) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let attempts = max_attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let msg = message.map(str::to_string);
            let result = self
                .transaction(|tx| {
                    if let Some(m) = msg {
                        tx.set_commit_message(m);
                    }
                    work(tx)
                })
                .await;
            match result {
                Err(e) if n < attempts && is_collision(&e) => {
                    tracing::debug!(target: "safeguard_sdk::sps", "transaction attempt {n} collided: {e}; retrying");
                    if matches!(e, Error::Sps(SpsError::WebGuiOrRpcApiConfigInProgress(_))) {
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(n))).await;
                    }
                }
                other => return other,
            }
        }
    }
}

fn is_collision(e: &Error) -> bool {
    matches!(
        e,
        Error::Sps(SpsError::MidAirCollision(_) | SpsError::WebGuiOrRpcApiConfigInProgress(_))
    )
}

/// The guard's transaction is open (as far as the guard knows).
const OPEN: u8 = 0;
/// Committed by this guard.
const COMMITTED: u8 = 1;
/// Rolled back, timed out, or discarded with its session.
const ENDED: u8 = 2;

#[derive(Debug)]
struct TxState {
    /// Which of the client's transactions this is.
    generation: u64,
    outcome: AtomicU8,
    message: Mutex<Option<String>>,
}

/// An open transaction: the calls that may run inside it.
///
/// Reads, writes and listings ([`get`](Self::get), [`create`](Self::create),
/// [`replace`](Self::replace), [`modify`](Self::modify),
/// [`delete`](Self::delete), [`items`](Self::items), ...), the
/// [`changes`](Self::changes) and [`status`](Self::status), then
/// [`commit`](Self::commit) or [`rollback`](Self::rollback). A transaction
/// cannot open, commit or roll back anything but itself: it hands out no
/// [`SpsClient`], and every call checks that this transaction is still the
/// open one of the client, failing with [`SpsError::TransactionClosed`]
/// (nothing sent) once it has ended, even when a later transaction of the
/// same session is open.
///
/// ```compile_fail,E0599
/// # async fn f(tx: safeguard_sdk::sps::Transaction) {
/// // A transaction cannot open another one (no `Deref` to the client).
/// let _ = tx.open().await;
/// # }
/// ```
///
/// Clones share the transaction. When the last clone is dropped while the
/// transaction is still open, a warning is logged and the transaction is
/// rolled back: in the background inside a tokio runtime, and in any case
/// by the client's next [`open`](SpsClient::open) if it is still open then.
/// The rollback happens only while this transaction is the open one: the
/// guard of a transaction that already ended never rolls back a later one.
#[derive(Debug, Clone)]
pub struct Transaction {
    client: SpsClient,
    state: Arc<TxState>,
}

impl Transaction {
    /// Sets the message the closure-style [`SpsClient::transaction`] commits with.
    pub fn set_commit_message(&self, message: impl Into<String>) {
        if let Ok(mut m) = self.state.message.lock() {
            *m = Some(message.into());
        }
    }

    pub(crate) fn commit_message(&self) -> Option<String> {
        self.state.message.lock().ok().and_then(|m| m.clone())
    }

    /// Whether this transaction is over: committed, rolled back, timed out,
    /// or discarded with its session.
    pub fn is_closed(&self) -> bool {
        self.state.outcome.load(Ordering::SeqCst) != OPEN
            || self.client.tx_track().open != Some(self.state.generation)
    }

    /// Fails with [`SpsError::TransactionClosed`] unless this transaction is
    /// the client's open one.
    fn check(&self) -> Result<()> {
        if self.state.outcome.load(Ordering::SeqCst) != OPEN {
            return Err(SpsError::TransactionClosed.into());
        }
        if self.client.tx_track().open != Some(self.state.generation) {
            let _ = self.state.outcome.compare_exchange(
                OPEN,
                ENDED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            return Err(SpsError::TransactionClosed.into());
        }
        Ok(())
    }

    /// The transaction's status (`remaining_seconds` tells its timeout).
    pub async fn status(&self) -> Result<TransactionStatus> {
        self.check()?;
        self.client.transaction_status().await
    }

    /// The changelog so far.
    pub async fn changes(&self) -> Result<Vec<Change>> {
        self.check()?;
        self.client.changes().await
    }

    /// See [`SpsClient::get`].
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<SpsResponse<T>> {
        self.check()?;
        self.client.get(path).await
    }

    /// See [`SpsClient::get_json`].
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        self.check()?;
        self.client.get_json(path).await
    }

    /// See [`SpsClient::follow`].
    pub async fn follow(&self, href: &str) -> Result<Value> {
        self.check()?;
        self.client.follow(href).await
    }

    /// See [`SpsClient::post`].
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SpsResponse<T>> {
        self.check()?;
        self.client.post(path, body).await
    }

    /// See [`SpsClient::put`].
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<SpsResponse<T>> {
        self.check()?;
        self.client.put(path, body).await
    }

    /// See [`SpsClient::delete`].
    pub async fn delete(&self, path: &str) -> Result<SpsResponse<Value>> {
        self.check()?;
        self.client.delete(path).await
    }

    /// See [`SpsClient::page`].
    pub async fn page(&self, path: &str) -> Result<SpsPage> {
        self.check()?;
        self.client.page(path).await
    }

    /// See [`SpsClient::pages`]; each page is checked to be read while this
    /// transaction is open.
    pub fn pages(&self, path: &str) -> impl Stream<Item = Result<SpsPage>> + Send + 'static {
        if let Err(e) = self.check() {
            return stream::once(async move { Err::<SpsPage, Error>(e) }).left_stream();
        }
        let tx = self.clone();
        self.client
            .pages(path)
            .and_then(move |page| {
                let open = tx.check();
                async move { open.map(|()| page) }
            })
            .right_stream()
    }

    /// See [`SpsClient::items`].
    pub fn items(&self, path: &str) -> impl Stream<Item = Result<ListItem>> + Send + 'static {
        super::client::items_of(self.pages(path))
    }

    /// See [`SpsClient::children`].
    pub async fn children(&self, path: &str) -> Result<Vec<ListItem>> {
        self.items(path).try_collect().await
    }

    /// See [`SpsClient::fetch_for_write`].
    pub async fn fetch_for_write(&self, path: &str) -> Result<Value> {
        self.check()?;
        self.client.fetch_for_write(path).await
    }

    /// See [`SpsClient::create`]: returns the new object's key.
    pub async fn create<B: Serialize + ?Sized>(&self, parent: &str, object: &B) -> Result<String> {
        self.check()?;
        self.client.create(parent, object).await
    }

    /// See [`SpsClient::replace`].
    pub async fn replace<B: Serialize + ?Sized>(
        &self,
        path: &str,
        object: &B,
    ) -> Result<SpsResponse<Value>> {
        self.check()?;
        self.client.replace(path, object).await
    }

    /// See [`SpsClient::modify`].
    pub async fn modify(
        &self,
        path: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<SpsResponse<Value>> {
        self.check()?;
        self.client.modify(path, edit).await
    }

    /// See [`SpsClient::reorder`].
    pub async fn reorder(&self, list: &str, keys: &[String]) -> Result<SpsResponse<Value>> {
        self.check()?;
        self.client.reorder(list, keys).await
    }

    /// Commits. A message is required when the status says so: without one
    /// this fails with [`SpsError::CommitMessageRequired`] before any call.
    /// On a failed commit the transaction stays open (roll back, or retry),
    /// unless SPS no longer has it ([`SpsError::NoTransaction`]: it timed
    /// out; [`SpsError::SessionExpiredInTransaction`]).
    pub async fn commit(&self, message: Option<&str>) -> Result<()> {
        self.check()?;
        let r = self
            .client
            .commit_generation(self.state.generation, message)
            .await;
        let outcome = match &r {
            Ok(()) => COMMITTED,
            Err(Error::Sps(
                SpsError::NoTransaction(_)
                | SpsError::SessionExpiredInTransaction(_)
                | SpsError::TransactionClosed,
            )) => ENDED,
            Err(_) => return r,
        };
        let _ =
            self.state
                .outcome
                .compare_exchange(OPEN, outcome, Ordering::SeqCst, Ordering::SeqCst);
        r
    }

    /// Rolls back (`DELETE /api/transaction`). Succeeds, sending nothing,
    /// when the transaction already ended without a commit (timed out,
    /// discarded with its session, rolled back); fails with
    /// [`SpsError::TransactionClosed`] after a commit. When the rollback
    /// fails the transaction stays open: retry, or drop the guard.
    pub async fn rollback(&self) -> Result<()> {
        match self.state.outcome.load(Ordering::SeqCst) {
            COMMITTED => return Err(SpsError::TransactionClosed.into()),
            ENDED => return Ok(()),
            _ => {}
        }
        let r = {
            let _calls = self.client.inner.tx_calls.lock().await;
            self.client.rollback_generation(self.state.generation).await
        };
        if r.is_ok() {
            let _ = self.state.outcome.compare_exchange(
                OPEN,
                ENDED,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        r
    }

    async fn rollback_quietly(&self) {
        if let Err(e) = self.rollback().await {
            tracing::warn!(target: "safeguard_sdk::sps", "rollback failed: {e}");
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if Arc::strong_count(&self.state) != 1 || self.state.outcome.load(Ordering::SeqCst) != OPEN
        {
            return;
        }
        self.state.outcome.store(ENDED, Ordering::SeqCst);
        let generation = self.state.generation;
        {
            let mut t = self.client.tx_track();
            if t.open != Some(generation) {
                // It ended already; a later transaction may be open now.
                return;
            }
            t.orphaned = true;
        }
        tracing::warn!(target: "safeguard_sdk::sps", "an SPS transaction was dropped while open; rolling back");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            handle.spawn(async move {
                let _calls = client.inner.tx_calls.lock().await;
                if let Err(e) = client.rollback_generation(generation).await {
                    tracing::warn!(target: "safeguard_sdk::sps", "rollback of a dropped transaction failed: {e}");
                }
            });
        }
    }
}
