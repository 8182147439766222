//! The one way every blocking facade runs async code.
//!
//! [`crate::blocking::SafeguardClient`], [`crate::a2a::blocking::A2aContext`],
//! [`crate::events::blocking::BlockingEventListener`] and
//! [`crate::sps::blocking::SpsClient`] each own one [`BlockingRuntime`]
//! (shared by the facade's clones, its requests, answers and transactions)
//! and run every call through [`BlockingRuntime::run`].
//!
//! # The runtime: multi-thread, one worker
//!
//! A tokio multi-thread runtime with a single worker thread, per facade:
//!
//! - the worker drives the I/O driver, the timers and the spawned tasks
//!   (pooled connections, the event listener's connection, its reconnection
//!   timers) all the time, also between two calls; a current-thread runtime
//!   would leave them still until the next call (an idle pooled connection
//!   closed by the server is not noticed, an event listener does not run at
//!   all) and would need a thread of its own for the listener;
//! - a call runs its future on the caller's thread (`block_on`), so several
//!   threads may call one facade at once and the futures need not be `Send`;
//! - one worker is enough for a blocking program (the callers' threads do the
//!   calls' work) and costs one thread per facade.
//!
//! # Inside an async runtime: a typed error, never a panic
//!
//! Where the calling thread drives async tasks (an async task, a
//! `block_on`), blocking would stall that runtime, and tokio panics when a
//! runtime is entered there. [`BlockingRuntime::run`] refuses instead,
//! before anything is sent, with [`Error::BlockingInsideRuntime`] naming the
//! async client to use. A thread where tokio allows blocking although a
//! runtime is current (`spawn_blocking`, the SDK's own event handlers, see
//! [`allow_blocking`]) may use the facades (see [`may_block`]).
//!
//! Dropping the last handle of a facade inside an async runtime does not
//! panic either: the runtime is then shut down in the background instead of
//! waiting for its worker.

use std::cell::Cell;
use std::future::Future;

use crate::error::{Error, Result};

thread_local! {
    /// Set while the SDK runs code on a thread it knows may block although
    /// a runtime is current there (its event handlers).
    static BLOCKING_ALLOWED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` marked as allowed to block: the blocking facades called inside
/// it run even though a runtime handle is current. Only for threads that are
/// never a runtime's worker nor inside its `block_on` (the event
/// dispatcher's thread, which calls synchronous handlers).
pub(crate) fn allow_blocking<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let was = self.0;
            BLOCKING_ALLOWED.with(|b| b.set(was));
        }
    }
    let _reset = Reset(BLOCKING_ALLOWED.with(|b| b.replace(true)));
    f()
}

/// Refuses with [`Error::BlockingInsideRuntime`] where this thread drives
/// async tasks (see [`may_block`]).
pub(crate) fn check_outside_runtime(async_client: &'static str) -> Result<()> {
    if may_block() {
        Ok(())
    } else {
        Err(Error::BlockingInsideRuntime { async_client })
    }
}

/// Whether this thread may block: no tokio runtime is current, or one is
/// but the thread is one tokio lets block (a `spawn_blocking` thread, the
/// SDK's event handlers). Tokio has no query for this: it refuses to block
/// on a thread that drives async tasks with a panic before anything runs,
/// which this catches (tokio's panic message is still printed; with
/// `panic = "abort"` the process ends instead).
pub(crate) fn may_block() -> bool {
    if tokio::runtime::Handle::try_current().is_err() || BLOCKING_ALLOWED.with(Cell::get) {
        return true;
    }
    std::panic::catch_unwind(|| tokio::runtime::Handle::current().block_on(async {})).is_ok()
}

/// The runtime of one blocking facade; see the [module](self).
#[derive(Debug)]
pub(crate) struct BlockingRuntime {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    /// The async client to name in [`Error::BlockingInsideRuntime`].
    async_client: &'static str,
}

impl BlockingRuntime {
    /// Starts the runtime: one worker thread called `thread_name`.
    /// `async_client` is what to use instead inside an async runtime.
    pub(crate) fn new(thread_name: &str, async_client: &'static str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(thread_name)
            .enable_all()
            .build()
            .map_err(Error::from)?;
        Ok(Self {
            runtime: Some(runtime),
            async_client,
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is only taken when dropped")
    }

    /// Makes the runtime current while the guard lives (to build the async
    /// client inside, whose constructors may need a runtime).
    pub(crate) fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.runtime().enter()
    }

    /// Runs `future` to completion on this runtime, blocking the caller;
    /// inside an async runtime, [`Error::BlockingInsideRuntime`] instead
    /// (the future is dropped unpolled).
    pub(crate) fn run<T, E: Into<Error>>(
        &self,
        future: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        self.block_on(future)?.map_err(Into::into)
    }

    /// [`run`](Self::run) for a future whose output is not a `Result`.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> Result<F::Output> {
        check_outside_runtime(self.async_client)?;
        Ok(self.runtime().block_on(future))
    }

    /// Spawns `future` on the runtime's worker without waiting for it.
    pub(crate) fn spawn<F>(&self, future: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        drop(self.runtime().spawn(future));
    }
}

impl Drop for BlockingRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Waiting for the worker here would panic (tokio refuses to
                // block inside a runtime): let it end by itself.
                runtime.shutdown_background();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_outside_a_runtime() {
        let rt = BlockingRuntime::new("test-blocking", "the async one").unwrap();
        assert_eq!(rt.run(async { Ok::<_, Error>(7) }).unwrap(), 7);
        assert_eq!(rt.block_on(async { 8 }).unwrap(), 8);
    }

    #[test]
    fn refuses_inside_a_runtime_and_drops_there_without_panicking() {
        for current_thread in [true, false] {
            let outer = if current_thread {
                tokio::runtime::Builder::new_current_thread().build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .build()
            }
            .unwrap();
            let rt = BlockingRuntime::new("test-blocking", "the async one").unwrap();
            let err = outer
                .block_on(async { rt.run(async { Ok::<_, Error>(()) }) })
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::BlockingInsideRuntime {
                        async_client: "the async one"
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains("use the async client"), "{err}");
            outer.block_on(async move { drop(rt) });
        }
    }

    #[test]
    fn a_blocking_thread_of_a_runtime_may_block() {
        let outer = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let rt = std::sync::Arc::new(BlockingRuntime::new("test-blocking", "x").unwrap());
        let r = rt.clone();
        let (in_spawn_blocking, allowed) = outer
            .block_on(outer.spawn_blocking(move || {
                let plain = r.run(async { Ok::<_, Error>(1) });
                let allowed = allow_blocking(|| r.run(async { Ok::<_, Error>(2) }));
                (plain.unwrap(), allowed.unwrap())
            }))
            .unwrap();
        assert_eq!((in_spawn_blocking, allowed), (1, 2));
        assert!(check_outside_runtime("x").is_ok());
        // An async task of the same runtime may not.
        let r = rt.clone();
        let refused = outer
            .block_on(outer.spawn(async move { r.run(async { Ok::<_, Error>(()) }).is_err() }))
            .unwrap();
        assert!(refused);
    }
}
