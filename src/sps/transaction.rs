//! Transactions: explicit calls, the [`Transaction`] guard, the closure style
//! that commits on `Ok` and rolls back on `Err` or panic, and the retry helper
//! for mid-air collisions.

use std::future::Future;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use reqwest::Method;
use serde_json::json;

use super::client::SpsClient;
use super::error::{Result, SpsError};
use super::model::{self, Change, TransactionStatus};

impl SpsClient {
    /// `GET /api/transaction`, from the current or the older answer shape.
    pub async fn transaction_status(&self) -> Result<TransactionStatus> {
        let b = self.execute(Method::GET, "transaction", None).await?;
        model::parse_transaction_status(&b)
    }

    /// The changelog of the open transaction.
    pub async fn changes(&self) -> Result<Vec<Change>> {
        let b = self
            .execute(Method::GET, "transaction/changes", None)
            .await?;
        model::parse_changes(&b)
    }

    /// Opens a transaction (`POST /api/transaction`, with a body so that SPS
    /// does not answer 411). Close it with [`Transaction::commit`] or
    /// [`Transaction::rollback`]; a guard dropped while open rolls back in
    /// the background (prefer the explicit calls or [`transaction`](Self::transaction)).
    pub async fn open(&self) -> Result<Transaction> {
        self.execute(Method::POST, "transaction", Some(&json!({})))
            .await?;
        self.inner.in_transaction.store(true, Ordering::SeqCst);
        Ok(Transaction {
            client: self.clone(),
            state: Arc::new(TxState {
                done: AtomicBool::new(false),
                message: Mutex::new(None),
            }),
        })
    }

    /// Commits the open transaction. Without a message, first asks the
    /// transaction status and fails with [`SpsError::CommitMessageRequired`]
    /// (sending nothing) when SPS requires one.
    pub async fn commit(&self, message: Option<&str>) -> Result<()> {
        let message = message.map(str::trim).filter(|m| !m.is_empty());
        if message.is_none() {
            let status = self.transaction_status().await?;
            if status.commit_message_required() {
                return Err(SpsError::CommitMessageRequired);
            }
        }
        let mut body = json!({"status": "commit"});
        if let Some(m) = message {
            body["message"] = json!(m);
        }
        self.execute(Method::PUT, "transaction", Some(&body))
            .await?;
        self.inner.in_transaction.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Rolls the open transaction back (`DELETE /api/transaction`).
    pub async fn rollback(&self) -> Result<()> {
        let r = self.execute(Method::DELETE, "transaction", None).await;
        self.inner.in_transaction.store(false, Ordering::SeqCst);
        r.map(|_| ())
    }

    /// Runs `work` inside a new transaction: commits when it returns `Ok`
    /// (with the message set by [`Transaction::set_commit_message`], if
    /// any), rolls back when it returns `Err` or panics (the panic then
    /// continues). A failed commit is rolled back too.
    ///
    /// ```no_run
    /// # async fn f(client: safeguard_sdk::sps::SpsClient) -> Result<(), safeguard_sdk::sps::SpsError> {
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
        E: From<SpsError>,
    {
        let tx = self.open().await.map_err(E::from)?;
        let outcome = AssertUnwindSafe(work(tx.clone())).catch_unwind().await;
        match outcome {
            Ok(Ok(value)) => {
                let message = tx.commit_message();
                match tx.commit_inner(message.as_deref()).await {
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
        E: From<SpsError>,
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
                    if matches!(e, SpsError::WebGuiOrRpcApiConfigInProgress(_)) {
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(n))).await;
                    }
                }
                other => return other,
            }
        }
    }
}

fn is_collision(e: &SpsError) -> bool {
    matches!(
        e,
        SpsError::MidAirCollision(_) | SpsError::WebGuiOrRpcApiConfigInProgress(_)
    )
}

#[derive(Debug)]
struct TxState {
    done: AtomicBool,
    message: Mutex<Option<String>>,
}

/// An open transaction. Dereferences to the [`SpsClient`], so every call
/// (`tx.create(..)`, `tx.get(..)`) runs inside it.
///
/// Clones share the transaction. When the last clone is dropped while the
/// transaction is still open, a rollback is started in the background (inside
/// a tokio runtime) and a warning is logged.
#[derive(Debug, Clone)]
pub struct Transaction {
    client: SpsClient,
    state: Arc<TxState>,
}

impl Deref for Transaction {
    type Target = SpsClient;

    fn deref(&self) -> &SpsClient {
        &self.client
    }
}

impl Transaction {
    /// The client this transaction runs on.
    pub fn client(&self) -> &SpsClient {
        &self.client
    }

    /// Sets the message the closure-style [`SpsClient::transaction`] commits with.
    pub fn set_commit_message(&self, message: impl Into<String>) {
        if let Ok(mut m) = self.state.message.lock() {
            *m = Some(message.into());
        }
    }

    pub(crate) fn commit_message(&self) -> Option<String> {
        self.state.message.lock().ok().and_then(|m| m.clone())
    }

    /// Whether this transaction was committed or rolled back.
    pub fn is_closed(&self) -> bool {
        self.state.done.load(Ordering::SeqCst)
    }

    /// The transaction's status (`remaining_seconds` tells its timeout).
    pub async fn status(&self) -> Result<TransactionStatus> {
        self.client.transaction_status().await
    }

    /// The changelog so far.
    pub async fn changes(&self) -> Result<Vec<Change>> {
        self.client.changes().await
    }

    async fn commit_inner(&self, message: Option<&str>) -> Result<()> {
        self.client.commit(message).await?;
        self.state.done.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Commits. A message is required when the status says so: without one
    /// this fails with [`SpsError::CommitMessageRequired`] before any call.
    /// On a failed commit the transaction stays open: roll back (or retry).
    pub async fn commit(&self, message: Option<&str>) -> Result<()> {
        self.commit_inner(message).await
    }

    /// Rolls back.
    pub async fn rollback(&self) -> Result<()> {
        let r = self.client.rollback().await;
        self.state.done.store(true, Ordering::SeqCst);
        r
    }

    async fn rollback_quietly(&self) {
        if let Err(e) = self.rollback().await {
            if !matches!(
                e,
                SpsError::NoTransaction(_) | SpsError::SessionExpiredInTransaction(_)
            ) {
                tracing::warn!(target: "safeguard_sdk::sps", "rollback failed: {e}");
            }
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if Arc::strong_count(&self.state) != 1 || self.state.done.load(Ordering::SeqCst) {
            return;
        }
        self.state.done.store(true, Ordering::SeqCst);
        tracing::warn!(target: "safeguard_sdk::sps", "an SPS transaction was dropped while open; rolling back");
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            handle.spawn(async move {
                let _ = client.rollback().await;
            });
        }
    }
}
