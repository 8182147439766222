//! A persistent event listener for programs without an async runtime: it
//! runs on its own thread (with its own small runtime); handlers are called
//! on a handler thread of that runtime, never on the caller's.
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
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{
    Event, EventsError, HandlerId, HandlerOutcome, ListenerOptions, ListenerState,
    PersistentEventListener, ReconnectPolicy, StateChange,
};
use crate::{Error, Result};

struct Running {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// A [`PersistentEventListener`] running on a thread of its own.
pub struct BlockingEventListener {
    listener: PersistentEventListener,
    state: Arc<(Mutex<ListenerState>, Condvar)>,
    running: Option<Running>,
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

    /// Starts the listener's thread, which connects and reconnects until
    /// [`stop`](Self::stop). Returns at once.
    pub fn start(&mut self) -> Result<()> {
        if self
            .running
            .as_ref()
            .is_some_and(|r| !r.thread.is_finished())
        {
            return Err(EventsError::AlreadyRunning.into());
        }
        self.join();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the listener's runtime: {e}")))?;
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<Result<()>>();
        let listener = self.listener.clone();
        let thread = std::thread::Builder::new()
            .name("safeguard-events".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let started = listener.start().await;
                    let ok = started.is_ok();
                    let _ = started_tx.send(started);
                    if ok {
                        let _ = stop_rx.await;
                        listener.stop().await;
                    }
                });
            })
            .map_err(|e| Error::Config(format!("cannot start the listener's thread: {e}")))?;
        let started = started_rx.recv().unwrap_or_else(|_| {
            Err(Error::Config(
                "the listener's thread ended before starting".into(),
            ))
        });
        self.running = Some(Running { stop, thread });
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

    /// Stops the listener and waits for its thread to end.
    pub fn stop(&mut self) {
        self.join();
    }

    fn join(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop.send(());
            let _ = r.thread.join();
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
