//! [`EventListener`]: one connection to an event hub.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::connection::{self, End, HubConnector};
use super::queue;
use super::registry::{Registry, StateReporter};
use super::{
    Event, EventStream, EventsError, HandlerId, HandlerOutcome, Lagged, ListenerOptions,
    ListenerState, StateChange,
};
use crate::{Error, Result};

/// Events the queue between the connection and the handlers holds at most
/// (besides [`ListenerOptions::queue_bytes`]).
pub(crate) const DISPATCH_QUEUE: usize = 8192;

/// The producing side of the queue before the handlers: events with their
/// [`approx_size`](Event::approx_size).
pub(crate) type EventSender = queue::Sender<(Event, usize)>;

/// What both listeners share: the hub, the handlers, the state and the options.
pub(crate) struct Core {
    pub(crate) hub: Arc<dyn HubConnector>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) state: Arc<StateReporter>,
    pub(crate) options: RwLock<ListenerOptions>,
    pub(crate) last_error: Mutex<Option<Arc<Error>>>,
    /// Events dropped before the handlers, in all.
    pub(crate) dropped: Arc<AtomicU64>,
}

impl Core {
    pub(crate) fn new(hub: Arc<dyn HubConnector>) -> Self {
        let options = ListenerOptions::default();
        Self {
            hub,
            registry: Arc::new(Registry::new(options.stream_capacity, options.queue_bytes)),
            state: Arc::new(StateReporter::new()),
            options: RwLock::new(options),
            last_error: Mutex::new(None),
            dropped: Arc::default(),
        }
    }

    pub(crate) fn options(&self) -> ListenerOptions {
        self.options
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_options(&self, options: ListenerOptions) {
        self.registry
            .set_stream_limits(options.stream_capacity, options.queue_bytes);
        *self.options.write().unwrap_or_else(|p| p.into_inner()) = options;
    }

    /// Reports a state, remembering the reason as the last error.
    pub(crate) fn report(
        &self,
        state: ListenerState,
        reason: Option<Error>,
        retry_in: Option<Duration>,
    ) {
        let reason = reason.map(Arc::new);
        if let Some(r) = &reason {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
        }
        self.state.set(state, reason, retry_in);
    }

    pub(crate) fn last_error(&self) -> Option<Arc<Error>> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until the state satisfies `pred`, at most `timeout`.
    pub(crate) async fn wait_for(
        &self,
        pred: impl Fn(ListenerState) -> bool,
        timeout: Duration,
    ) -> Option<ListenerState> {
        let mut rx = self.state.subscribe();
        let wait = async {
            match rx.wait_for(|s| pred(*s)).await {
                Ok(s) => Some(*s),
                Err(_) => None,
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Starts the thread that runs the handlers and feeds the streams,
    /// behind a queue bounded by [`DISPATCH_QUEUE`] events and
    /// `queue_bytes`; it ends when the sender is gone. Handlers run on a
    /// blocking thread of the runtime, never on its workers: a handler that
    /// blocks cannot stall the connection (its reads, pings and timers). The
    /// thread drives async handlers' futures with this runtime's handle.
    pub(crate) fn spawn_dispatcher(&self, queue_bytes: usize) -> (EventSender, JoinHandle<()>) {
        let (tx, mut rx) = queue::bounded(
            DISPATCH_QUEUE,
            queue_bytes,
            self.dropped.clone(),
            "the event handlers",
        );
        let registry = self.registry.clone();
        let rt = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            while let Some(item) = rx.recv_blocking() {
                match item {
                    Ok((event, size)) => registry.dispatch(&event, size, Some(&rt)),
                    Err(Lagged(n)) => {
                        tracing::warn!(lost = n, "events were dropped before the handlers");
                        registry.lost(n);
                    }
                }
            }
        });
        (tx, task)
    }

    pub(crate) fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A copy of an error for state reports (the original goes to the caller).
pub(crate) fn copy_error(e: &Error) -> Error {
    match e {
        Error::Authentication(a) => Error::Authentication(a.clone()),
        Error::Authorization(a) => Error::Authorization(a.clone()),
        Error::NotFound(a) => Error::NotFound(a.clone()),
        Error::Api(a) => Error::Api(a.clone()),
        Error::Sts(s) => Error::Sts(s.clone()),
        Error::CannotRefresh { strategy, reason } => Error::CannotRefresh { strategy, reason },
        Error::SignedOut => Error::SignedOut,
        Error::SignInIncomplete(m) => Error::SignInIncomplete(m.clone()),
        Error::Tls(m) => Error::Tls(m.clone()),
        Error::Timeout(m) => Error::Timeout(m.clone()),
        Error::Decode(d) => Error::Decode(d.clone()),
        Error::Config(m) => Error::Config(m.clone()),
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        Error::Events(ev) => Error::Events(ev.clone()),
        Error::BlockingInsideRuntime { async_client } => {
            Error::BlockingInsideRuntime { async_client }
        }
        #[allow(unreachable_patterns)]
        other => Error::Events(EventsError::Connect(crate::error::error_chain(other))),
    }
}

/// The registration methods both listeners offer.
macro_rules! registration_methods {
    () => {
        /// Calls `handler` for every event called `event_name` (any case).
        /// Several handlers may share a name; they run in registration order
        /// on the listener's handler thread (a blocking thread of the tokio
        /// runtime, so a handler that blocks does not stall the connection
        /// or the runtime's other tasks), and a slow handler delays the
        /// next events: they wait in a queue of at most 8,192 events and
        /// [`ListenerOptions::queue_bytes`], beyond which arriving events
        /// are dropped and counted ([`dropped_events`](Self::dropped_events)).
        /// Hand long work to a task or a thread; for async work see
        /// [`on_async`](Self::on_async). A handler returning `Err` or
        /// panicking is logged and the listener carries on.
        pub fn on<F, R>(&self, event_name: &str, handler: F) -> HandlerId
        where
            F: Fn(&Event) -> R + Send + Sync + 'static,
            R: HandlerOutcome,
        {
            self.core().registry.add(Some(event_name), handler)
        }

        /// Calls `handler` for every event, whatever its name.
        pub fn on_any<F, R>(&self, handler: F) -> HandlerId
        where
            F: Fn(&Event) -> R + Send + Sync + 'static,
            R: HandlerOutcome,
        {
            self.core().registry.add(None, handler)
        }

        /// Calls the async `handler` for every event called `event_name`
        /// (any case) and awaits its future; it may return `()` or
        /// `Result<(), E>`.
        ///
        /// Policy: a listener's handlers, async or not, run one at a time,
        /// in the order events arrive and handlers were registered; the
        /// handler thread awaits each future to completion (on the
        /// listener's tokio runtime, so timers and the SDK's async calls
        /// work) before the next handler or event. The connection is never
        /// held up (pings, keep-alive and reading go on), and events that
        /// arrive meanwhile wait in the bounded queue described at
        /// [`on`](Self::on). For concurrency, spawn tasks from the handler.
        ///
        /// ```no_run
        /// # fn f(listener: &safeguard_sdk::events::EventListener) {
        /// listener.on_async("UserCreated", |event| async move {
        ///     tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        ///     println!("user created: {}", event.body);
        /// });
        /// # }
        /// ```
        pub fn on_async<F, Fut, R>(&self, event_name: &str, handler: F) -> HandlerId
        where
            F: Fn(Event) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = R> + Send + 'static,
            R: HandlerOutcome + 'static,
        {
            self.core().registry.add_async(Some(event_name), handler)
        }

        /// Calls the async `handler` for every event, whatever its name
        /// (same policy as [`on_async`](Self::on_async)).
        pub fn on_any_async<F, Fut, R>(&self, handler: F) -> HandlerId
        where
            F: Fn(Event) -> Fut + Send + Sync + 'static,
            Fut: std::future::Future<Output = R> + Send + 'static,
            R: HandlerOutcome + 'static,
        {
            self.core().registry.add_async(None, handler)
        }

        /// Removes a handler; `false` when it was not registered.
        pub fn off(&self, id: HandlerId) -> bool {
            self.core().registry.remove(id)
        }

        /// Number of registered handlers.
        pub fn handler_count(&self) -> usize {
            self.core().registry.handler_count()
        }

        /// Events the handlers never saw because their queue was full (a
        /// handler too slow for the flow of events), since the listener was
        /// made. Streams report their own losses ([`EventStream::recv`]).
        pub fn dropped_events(&self) -> u64 {
            self.core().dropped_events()
        }

        /// Every event from now on as an async stream (see [`EventStream`]).
        pub fn events(&self) -> EventStream {
            self.core().registry.stream()
        }

        /// Calls `callback` at every state change (on the listener's task;
        /// keep it short).
        pub fn on_state_change(&self, callback: impl Fn(&StateChange) + Send + Sync + 'static) {
            self.core().state.add_callback(callback);
        }

        /// The current state.
        pub fn state(&self) -> ListenerState {
            self.core().state.get()
        }

        /// The state as a watch channel.
        pub fn watch_state(&self) -> watch::Receiver<ListenerState> {
            self.core().state.subscribe()
        }

        /// Waits until the listener is in `state`, at most `timeout`;
        /// `false` on timeout.
        pub async fn wait_for_state(&self, state: ListenerState, timeout: Duration) -> bool {
            self.core()
                .wait_for(|s| s == state, timeout)
                .await
                .is_some()
        }

        /// The reason of the last disconnection or failed attempt.
        pub fn last_error(&self) -> Option<Arc<Error>> {
            self.core().last_error()
        }

        /// The connection settings.
        pub fn options(&self) -> ListenerOptions {
            self.core().options()
        }

        /// Replaces the connection settings (used from the next connection on).
        pub fn set_options(&self, options: ListenerOptions) {
            self.core().set_options(options);
        }

        /// Sets the client ping interval and the silence that counts as a
        /// dead connection (defaults 15 s and 30 s).
        pub fn with_keepalive(self, ping_interval: Duration, server_timeout: Duration) -> Self {
            let options = self.options().keepalive(ping_interval, server_timeout);
            self.core().set_options(options);
            self
        }

        /// Replaces the connection settings.
        pub fn with_options(self, options: ListenerOptions) -> Self {
            self.core().set_options(options);
            self
        }
    };
}
pub(crate) use registration_methods;

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
}

/// A listener of one connection to an event hub: it ends when the
/// connection ends (see [`PersistentEventListener`](super::PersistentEventListener)
/// for one that reconnects).
///
/// ```no_run
/// # async fn run(client: safeguard_sdk::SafeguardClient) -> safeguard_sdk::Result<()> {
/// use futures::StreamExt;
/// let listener = client.event_listener();
/// listener.on("UserCreated", |e| println!("user created: {}", e.body));
/// let mut events = listener.events();
/// listener.start().await?; // returns once the hub answered the handshake
/// while let Some(event) = events.next().await {
///     println!("{} {}", event.name, event.body);
/// }
/// # Ok(()) }
/// ```
pub struct EventListener {
    core: Arc<Core>,
    running: tokio::sync::Mutex<Option<Running>>,
}

impl fmt::Debug for EventListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventListener")
            .field("hub", &self.core.hub.hub_path())
            .field("state", &self.core.state.get())
            .finish_non_exhaustive()
    }
}

impl EventListener {
    pub(crate) fn with_connector(hub: impl HubConnector) -> Self {
        Self {
            core: Arc::new(Core::new(Arc::new(hub))),
            running: tokio::sync::Mutex::new(None),
        }
    }

    fn core(&self) -> &Core {
        &self.core
    }

    registration_methods!();

    /// Connects: negotiate, websocket, handshake. Returns once the hub has
    /// answered the handshake (state `Connected`), or the reason it could
    /// not. Events are then delivered until [`stop`](Self::stop) or until
    /// the connection ends (state `Disconnected`, see [`closed`](Self::closed)).
    pub async fn start(&self) -> Result<()> {
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_ref() {
            if !r.task.is_finished() {
                return Err(EventsError::AlreadyRunning.into());
            }
        }
        if let Some(old) = running.take() {
            let _ = old.task.await;
            let _ = old.dispatcher.await;
        }
        let options = self.core.options();
        self.core.report(ListenerState::Connecting, None, None);
        let conn = match connection::connect(self.core.hub.as_ref(), &options).await {
            Ok(c) => c,
            Err(e) => {
                self.core
                    .report(ListenerState::Stopped, Some(copy_error(&e)), None);
                return Err(e);
            }
        };
        self.core.report(ListenerState::Connected, None, None);
        let (events, dispatcher) = self.core.spawn_dispatcher(options.queue_bytes);
        let (stop, mut stop_rx) = watch::channel(false);
        let core = self.core.clone();
        let task = tokio::spawn(async move {
            match conn.run(&options, &events, &mut stop_rx).await {
                End::Stopped => core.report(ListenerState::Stopped, None, None),
                End::Failed(e) => core.report(ListenerState::Disconnected, Some(e), None),
            }
        });
        *running = Some(Running {
            stop,
            task,
            dispatcher,
        });
        Ok(())
    }

    /// Closes the connection (when open) and waits until the connection and
    /// handler tasks have ended. Handlers stay registered; `start` may be
    /// called again.
    pub async fn stop(&self) {
        let mut running = self.running.lock().await;
        if let Some(r) = running.take() {
            let _ = r.stop.send(true);
            let _ = r.task.await;
            let _ = r.dispatcher.await;
        }
        if self.core.state.get() != ListenerState::Stopped {
            self.core.report(ListenerState::Stopped, None, None);
        }
    }

    /// Waits until the connection ends: `Ok` when stopped on request, the
    /// reason otherwise.
    pub async fn closed(&self) -> std::result::Result<(), Arc<Error>> {
        let ended = self
            .core
            .wait_for(
                |s| {
                    matches!(
                        s,
                        ListenerState::Disconnected | ListenerState::Stopped | ListenerState::Idle
                    )
                },
                Duration::MAX,
            )
            .await;
        match ended {
            Some(ListenerState::Disconnected) => Err(self
                .core
                .last_error()
                .unwrap_or_else(|| Arc::new(EventsError::ConnectionLost.into()))),
            _ => Ok(()),
        }
    }
}
