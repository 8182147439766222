//! A persistent event listener for programs without an async runtime: from
//! [`start`](BlockingEventListener::start) to
//! [`stop`](BlockingEventListener::stop) it runs on a small runtime of its own
//! (one worker thread that keeps the connection, like every blocking facade:
//! see [`crate::blocking`]); handlers are called on a handler thread of that
//! runtime, never on the caller's, and may call the blocking clients.
//! Starting it inside an async runtime is refused with
//! [`Error::BlockingInsideRuntime`]; use [`PersistentEventListener`] there.
//!
//! ```no_run
//! use std::time::Duration;
//! use safeguard_sdk::{auth::PkceAuth, blocking::SafeguardClient};
//! # fn run() -> safeguard_sdk::Result<()> {
//! let client = SafeguardClient::builder("safeguard.example.com")
//!     .auth(PkceAuth::new("local", "Admin", "Admin123"))
//!     .ca_file("ca.pem")?
//!     .build()?;
//! client.login()?;
//! let mut listener = client.event_listener();
//! listener.on("UserCreated", |e| println!("user created: {}", e.body));
//! listener.start()?;
//! listener.wait_connected(Duration::from_secs(30));
//! std::thread::sleep(Duration::from_secs(60));
//! listener.stop();
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{
    Event, HandlerId, HandlerOutcome, ListenerOptions, ListenerState, PersistentEventListener,
    ReconnectPolicy, StateChange,
};
use crate::blocking::runtime::BlockingRuntime;
use crate::{Error, Result};

/// What [`Error::BlockingInsideRuntime`] names for this facade.
const ASYNC_CLIENT: &str = "safeguard_sdk::events::PersistentEventListener";

/// A [`PersistentEventListener`] running on a thread of its own.
pub struct BlockingEventListener {
    listener: PersistentEventListener,
    state: Arc<(Mutex<ListenerState>, Condvar)>,
    /// The runtime the listener runs on, from `start` to `stop`.
    running: Option<BlockingRuntime>,
}

impl fmt::Debug for BlockingEventListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingEventListener")
            .field("listener", &self.listener)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl BlockingEventListener {
    /// Wraps a persistent listener (not started yet).
    pub fn new(listener: PersistentEventListener) -> Self {
        let state = Arc::new((Mutex::new(listener.state()), Condvar::new()));
        let s = state.clone();
        listener.on_state_change(move |c: &StateChange| {
            let (lock, cv) = &*s;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = c.state;
            cv.notify_all();
        });
        Self {
            listener,
            state,
            running: None,
        }
    }

    /// The async listener inside (handlers, options and state are shared).
    pub fn inner(&self) -> &PersistentEventListener {
        &self.listener
    }

    /// Calls `handler` (on the listener's handler thread) for every event called
    /// `event_name`, any case. See [`PersistentEventListener::on`].
    pub fn on<F, R>(&self, event_name: &str, handler: F) -> HandlerId
    where
        F: Fn(&Event) -> R + Send + Sync + 'static,
        R: HandlerOutcome,
    {
        self.listener.on(event_name, handler)
    }

    /// Calls `handler` for every event.
    pub fn on_any<F, R>(&self, handler: F) -> HandlerId
    where
        F: Fn(&Event) -> R + Send + Sync + 'static,
        R: HandlerOutcome,
    {
        self.listener.on_any(handler)
    }

    /// Removes a handler.
    pub fn off(&self, id: HandlerId) -> bool {
        self.listener.off(id)
    }

    /// Calls `callback` at every state change.
    pub fn on_state_change(&self, callback: impl Fn(&StateChange) + Send + Sync + 'static) {
        self.listener.on_state_change(callback);
    }

    /// Replaces the connection settings.
    pub fn set_options(&self, options: ListenerOptions) {
        self.listener.set_options(options);
    }

    /// Replaces the reconnection delays.
    pub fn set_reconnect_policy(&self, policy: ReconnectPolicy) {
        self.listener.set_reconnect_policy(policy);
    }

    /// The current state.
    pub fn state(&self) -> ListenerState {
        self.listener.state()
    }

    /// The reason of the last disconnection.
    pub fn last_error(&self) -> Option<Arc<Error>> {
        self.listener.last_error()
    }

    /// Starts the listener on a runtime of its own (its one worker thread
    /// connects and reconnects until [`stop`](Self::stop)). Returns once the
    /// listener started, as [`PersistentEventListener::start`] does.
    /// Refused with [`Error::BlockingInsideRuntime`] inside an async runtime.
    pub fn start(&mut self) -> Result<()> {
        crate::blocking::runtime::check_outside_runtime(ASYNC_CLIENT)?;
        if let Some(runtime) = &self.running {
            // Refused while the listener runs; started again on the same
            // runtime once it ended by itself.
            return runtime.run(self.listener.start());
        }
        let runtime = BlockingRuntime::new("safeguard-events", ASYNC_CLIENT)?;
        let started = runtime.run(self.listener.start());
        self.running = Some(runtime);
        if started.is_err() {
            self.join();
        }
        started
    }

    /// Waits until the listener is connected, at most `timeout`.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.wait_for_state(ListenerState::Connected, timeout)
    }

    /// Waits until the listener is in `state`, at most `timeout`.
    pub fn wait_for_state(&self, state: ListenerState, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.state;
        let mut current = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if *current == state || self.listener.state() == state {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            current = cv
                .wait_timeout(current, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Stops the listener and waits for its thread to end. Inside an async
    /// runtime, where it may not wait, its runtime is shut down without
    /// waiting (the connection is dropped, not closed).
    pub fn stop(&mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(runtime) = self.running.take() {
            // Refused inside an async runtime: dropping the runtime there
            // shuts it down in the background.
            let _ = runtime.block_on(self.listener.stop());
        }
    }
}

impl Drop for BlockingEventListener {
    fn drop(&mut self) {
        self.join();
    }
}

impl crate::blocking::SafeguardClient {
    /// A persistent listener of the user event hub on its own thread.
    pub fn event_listener(&self) -> BlockingEventListener {
        BlockingEventListener::new(self.inner().persistent_event_listener())
    }
}
