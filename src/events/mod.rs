//! Safeguard events over SignalR: react at once when users, assets, accounts,
//! access requests or A2A credentials change.
//!
//! - [`EventListener`]: one connection to the user event hub
//!   (`/service/event/signalr`, bearer token) from a signed-in
//!   [`SafeguardClient`] ([`SafeguardClient::event_listener`]). It ends when
//!   the connection ends.
//! - [`PersistentEventListener`]: the same, reconnecting after every drop
//!   with exponential backoff and jitter, signing in again first when the hub
//!   answers 401, keeping every handler. Use this in services. It stops for
//!   good when the hub closes with `allowReconnect: false`
//!   ([`EventsError::ClosedByHub`]).
//! - A2A events (`/service/a2a/signalr`, `Authorization: A2A key1 key2 ...`
//!   and the client certificate): `A2aContext::event_listener(&[keys])` and
//!   `A2aContext::persistent_event_listener(&[keys])` (feature `a2a`) deliver
//!   the [`A2A_EVENTS`] of the accounts of those keys; [`Event::as_a2a`]
//!   reads one as an [`A2aEvent`] (its [`A2aEventKind`], account and asset).
//! - [`blocking::BlockingEventListener`]: a persistent listener on its own
//!   thread, for programs without an async runtime.
//! - [`signalr`]: the pure codec of the SignalR JSON hub protocol.
//!
//! Handlers are registered per event name (matched case-insensitively,
//! several per name) or for every event, and receive an [`Event`]. A handler
//! may return `()` or `Result<(), E>`; an error or a panic is logged with
//! `tracing` and the listener carries on. Handlers are closures
//! ([`EventListener::on`]) or async closures ([`EventListener::on_async`],
//! awaited on the listener's runtime). A listener's handlers run one at a
//! time, in the order events arrive and handlers were registered, on a
//! handler thread apart from the connection. Async code can also take events
//! as a [`Stream`](futures::Stream) with [`EventListener::events`].
//!
//! # Memory: bounded queues that drop the newest events
//!
//! The connection never waits for the application: it keeps reading (so
//! pings and the dead-connection timer keep working however slow the
//! handlers are) and hands events to bounded queues. Events wait in one
//! queue before the handlers (their thread also feeds the streams) and in one
//! queue per [`EventStream`]. Each queue holds at most
//! [`ListenerOptions::queue_bytes`] (default 16 MiB, the approximate
//! in-memory size of the waiting events) and a number of events (8,192
//! before the handlers, [`ListenerOptions::stream_capacity`] per stream). A
//! queue that is full drops the events that arrive (the newest are lost, the
//! ones already waiting are kept), so a listener holds at most
//! `queue_bytes` per queue plus the event being handled, whatever the hub
//! sends and however long a handler stalls. Losses are never silent:
//!
//! - handlers: [`EventListener::dropped_events`] counts the events dropped
//!   before the handlers (and a warning is logged);
//! - streams: [`EventStream::recv`] yields [`Missed::Dropped(n)`](Missed) in
//!   the place of the `n` events the stream lost (those dropped before the
//!   handlers included), and [`EventStream::dropped`] counts them.
//!
//! # Gaps: what a reconnect may have missed
//!
//! The hub does not replay what it sent while a listener was disconnected.
//! After every reconnect a [`PersistentEventListener`] reports the outage as
//! a [`Gap`] (when the connection was lost, when it was back): in the
//! `Connected` [`StateChange`] ([`StateChange::gap`]) and, in its place
//! among the events, as [`Missed::Disconnected`] from [`EventStream::recv`].
//! Re-read what you care about when you see one.
//!
//! ```no_run
//! use safeguard_sdk::{auth::PkceAuth, SafeguardClient};
//! use safeguard_sdk::events::ListenerState;
//! # async fn run() -> safeguard_sdk::Result<()> {
//! let client = SafeguardClient::builder("safeguard.example.com")
//!     .auth(PkceAuth::new("local", "Admin", "Admin123"))
//!     .ca_file("ca.pem")?
//!     .build()?;
//! client.login().await?;
//! let listener = client.persistent_event_listener();
//! listener.on("AssetCreated", |e| println!("asset created: {}", e.body));
//! listener.on_state_change(|s| println!("listener is {:?}", s.state));
//! listener.start().await?;
//! // ... until the service stops:
//! listener.stop().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;

mod a2a_event;
mod a2a_hub;
pub mod blocking;
mod connection;
mod listener;
mod persistent;
mod queue;
mod registry;
pub mod signalr;

pub use a2a_event::{A2aEvent, A2aEventKind};
pub use a2a_hub::A2A_EVENTS;
pub use listener::EventListener;
pub use persistent::{PersistentEventListener, ReconnectPolicy};
pub use signalr::ProtocolError;

use crate::SafeguardClient;

/// The path of the user event hub.
pub const USER_HUB_PATH: &str = "/service/event/signalr";
/// The path of the A2A event hub.
pub const A2A_HUB_PATH: &str = "/service/a2a/signalr";

/// One event pushed by the appliance.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event's name (`UserCreated`, `AssetAccountPasswordUpdated`, ...).
    /// When the appliance sends a numeric `Name` (older builds), this is
    /// `Data.EventName`.
    pub name: String,
    /// The event's `Data` object (`Value::Null` when there is none).
    pub body: Value,
    /// The whole invocation argument as received (`{"Name", "Data", ...}`).
    pub raw: Value,
}

impl Event {
    /// The approximate memory the event holds (what a queue counts against
    /// [`ListenerOptions::queue_bytes`]).
    pub(crate) fn approx_size(&self) -> usize {
        std::mem::size_of::<Event>()
            + self.name.capacity()
            + json_heap_size(&self.body)
            + json_heap_size(&self.raw)
    }

    /// Whether this event has `name`, ignoring case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// Reads the events of one invocation: its target must be
    /// `NotifyEventAsync` or `ReceiveMessage` (any case); each argument that
    /// is an event object (or a JSON string holding one) gives an event.
    pub fn from_invocation(target: &str, arguments: &[Value]) -> Vec<Event> {
        if !(target.eq_ignore_ascii_case("NotifyEventAsync")
            || target.eq_ignore_ascii_case("ReceiveMessage"))
        {
            return Vec::new();
        }
        arguments.iter().filter_map(Event::from_argument).collect()
    }

    /// Reads one event object: `Name` when it is a non-numeric string, else
    /// `Data.EventName`, else the numeric name as text.
    pub fn from_argument(argument: &Value) -> Option<Event> {
        let raw = match argument {
            Value::Object(_) => argument.clone(),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => v,
                _ => return None,
            },
            _ => return None,
        };
        let body = raw.get("Data").cloned().unwrap_or(Value::Null);
        let data_name = body
            .get("EventName")
            .and_then(Value::as_str)
            .filter(|n| !n.trim().is_empty())
            .map(str::to_owned);
        let name = match raw.get("Name") {
            Some(Value::String(n)) if !n.trim().is_empty() && !is_numeric(n) => n.clone(),
            Some(Value::String(n)) if !n.trim().is_empty() => {
                data_name.unwrap_or_else(|| n.clone())
            }
            Some(Value::Number(n)) => data_name.unwrap_or_else(|| n.to_string()),
            _ => data_name?,
        };
        Some(Event { name, body, raw })
    }
}

/// The heap memory of a JSON value, approximately: string and array
/// buffers, map entries with their share of the tree nodes, and some
/// allocator overhead per allocation. Walks without recursion.
fn json_heap_size(value: &Value) -> usize {
    const PER_ALLOCATION: usize = 16;
    const PER_ENTRY: usize = 2 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>());
    let mut total = 0usize;
    let mut todo = vec![value];
    while let Some(v) = todo.pop() {
        let here = match v {
            Value::String(s) => s.capacity() + PER_ALLOCATION,
            Value::Array(a) => {
                todo.extend(a.iter());
                a.capacity() * std::mem::size_of::<Value>() + PER_ALLOCATION
            }
            Value::Object(m) => {
                todo.extend(m.values());
                m.keys()
                    .map(|k| k.capacity() + PER_ALLOCATION + PER_ENTRY)
                    .sum::<usize>()
                    + PER_ALLOCATION
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        };
        total = total.saturating_add(here);
    }
    total
}

/// Events lost by a consumer that fell behind, counted by a queue: stands
/// in the place of that many dropped events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Lagged(pub(crate) u64);

/// A time a listener was not connected to its hub: the events the hub sent
/// meanwhile were not delivered and will not be (see the [module](self)
/// docs). Times are the listener's wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gap {
    /// When the connection was found lost.
    pub since: std::time::SystemTime,
    /// When the listener was connected again.
    pub until: std::time::SystemTime,
}

impl Gap {
    /// How long the listener was disconnected.
    pub fn duration(&self) -> Duration {
        self.until.duration_since(self.since).unwrap_or_default()
    }
}

/// Events a stream did not deliver, in their place among the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Missed {
    /// This many events were dropped because a consumer fell behind.
    #[error("{0} events were dropped because their consumer fell behind")]
    Dropped(u64),
    /// The listener was disconnected for a while: whatever happened then was
    /// not delivered.
    #[error("the listener was disconnected for {:?}; events may have been missed", .0.duration())]
    Disconnected(Gap),
}

/// What travels through a listener's queues: an event (with its
/// [`approx_size`](Event::approx_size)) or the mark of a reconnect.
#[derive(Clone, Debug)]
pub(crate) enum Delivery {
    Event(Event, usize),
    Gap(Gap),
}

/// The queue size of a [`Delivery::Gap`].
pub(crate) const GAP_SIZE: usize = std::mem::size_of::<Gap>();

fn is_numeric(s: &str) -> bool {
    let t = s.trim();
    let t = t.strip_prefix('-').unwrap_or(t);
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

/// Identifies a registered handler, to remove it with `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

/// What a handler may return: `()`, or a `Result` whose error is logged.
pub trait HandlerOutcome {
    /// `Err` with the error's text when the handler failed.
    fn into_outcome(self) -> Result<(), String>;
}

impl HandlerOutcome for () {
    fn into_outcome(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: fmt::Display> HandlerOutcome for Result<(), E> {
    fn into_outcome(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// The life of a listener's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListenerState {
    /// Not started yet.
    Idle,
    /// Negotiating, opening the websocket and waiting for the handshake answer.
    Connecting,
    /// The hub answered the handshake; events flow.
    Connected,
    /// The connection ended (a persistent listener will reconnect).
    Disconnected,
    /// A persistent listener is waiting or trying to connect again.
    Reconnecting,
    /// Stopped on request, or given up for good.
    Stopped,
}

/// A state change as reported to [`on_state_change`](EventListener::on_state_change) callbacks.
#[derive(Clone, Debug)]
pub struct StateChange {
    /// The new state.
    pub state: ListenerState,
    /// Why, for `Disconnected` and for a `Stopped` that was not requested.
    pub reason: Option<Arc<crate::Error>>,
    /// For `Reconnecting`: how long the listener waits before the attempt.
    pub retry_in: Option<Duration>,
    /// For a `Connected` after a reconnect: the time the listener was not
    /// connected, whose events were not delivered.
    pub gap: Option<Gap>,
}

/// Errors of the event listeners beyond transport, TLS and authentication.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// The hub spoke the SignalR protocol wrongly (or refused the handshake).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The TCP connection to the appliance could not be opened.
    #[error("cannot connect to {0}")]
    Connect(String),
    /// The websocket failed (upgrade refused, connection reset, ...).
    #[error("websocket: {0}")]
    WebSocket(String),
    /// The hub closed the connection with a close message.
    #[error("the hub closed the connection{}", .error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    ClosedByHub {
        /// The hub's reason, when given.
        error: Option<String>,
        /// Whether the hub allows reconnecting: `false` only when it sent
        /// `allowReconnect: false` (a persistent listener then stops).
        allow_reconnect: bool,
    },
    /// The websocket ended without a close message.
    #[error("the connection to the hub ended")]
    ConnectionLost,
    /// Nothing arrived from the hub for this long: the connection is dead.
    #[error("no message from the hub for {0:?}: the connection is dead")]
    ServerTimeout(Duration),
    /// The listener is not running (never started, or stopped).
    #[error("the listener is not running")]
    NotRunning,
    /// The listener is already running.
    #[error("the listener is already running")]
    AlreadyRunning,
}

impl From<ProtocolError> for crate::Error {
    fn from(e: ProtocolError) -> Self {
        crate::Error::Events(EventsError::Protocol(e))
    }
}

/// Connection settings shared by both listeners.
#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// How often the client pings the hub (default 15 s).
    pub ping_interval: Duration,
    /// Silence after which the connection counts as dead (default 30 s).
    pub server_timeout: Duration,
    /// Limit on negotiating, opening the websocket and the handshake
    /// together (default 30 s). The websocket part (TCP, TLS, upgrade and
    /// handshake answer) is also bounded by the client's
    /// [`Limits::connect_timeout`](crate::limits::Limits::connect_timeout), and the
    /// negotiate by its other [`Limits`](crate::limits::Limits).
    pub connect_timeout: Duration,
    /// The largest accepted SignalR record (default 1 MiB).
    pub max_record_size: usize,
    /// Events buffered per [`EventStream`] before new ones are dropped
    /// (default 4096).
    pub stream_capacity: usize,
    /// Bytes of waiting events each queue holds at most: the queue before
    /// the handlers and the queue of each [`EventStream`] (default
    /// [`DEFAULT_QUEUE_BYTES`], 16 MiB). Counted as the approximate memory of
    /// the events; when a queue is full, arriving events are dropped and
    /// reported (see the [module](self) docs). One event larger than this is
    /// still queued when its queue is empty.
    pub queue_bytes: usize,
}

/// The default [`ListenerOptions::queue_bytes`]: 16 MiB per queue.
pub const DEFAULT_QUEUE_BYTES: usize = 16 * 1024 * 1024;

impl Default for ListenerOptions {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(15),
            server_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            max_record_size: signalr::DEFAULT_MAX_RECORD,
            stream_capacity: 4096,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

impl ListenerOptions {
    /// Sets the client ping interval and the silence that means dead.
    pub fn keepalive(mut self, ping_interval: Duration, server_timeout: Duration) -> Self {
        self.ping_interval = ping_interval.max(Duration::from_millis(1));
        self.server_timeout = server_timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets the connect limit.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the largest accepted record.
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_size = bytes;
        self
    }

    /// Sets the buffer of each event stream.
    pub fn stream_capacity(mut self, events: usize) -> Self {
        self.stream_capacity = events.max(1);
        self
    }

    /// Sets the bytes each event queue holds at most.
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue_bytes = bytes;
        self
    }
}

/// Events of a listener as an async [`Stream`](futures::Stream). It ends when
/// the listener is dropped. A consumer that falls more than
/// [`ListenerOptions::stream_capacity`] events or
/// [`ListenerOptions::queue_bytes`] behind loses the newest events; handlers
/// are not affected. [`recv`](Self::recv) reports the losses and the gaps
/// of a reconnect in place as [`Missed`]; the [`Stream`](futures::Stream)
/// and [`next_event`](Self::next_event) skip those notices (they are logged;
/// losses are counted by [`dropped`](Self::dropped)).
pub struct EventStream {
    rx: queue::Receiver<Delivery>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next event, or `None` once the listener is gone (lost events are
    /// skipped; see [`recv`](Self::recv)).
    pub async fn next_event(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next event; or, in its place, what was missed there: `n` events
    /// this stream lost ([`Missed::Dropped`]: it was full, or the handlers'
    /// queue was) or the time a persistent listener was disconnected
    /// ([`Missed::Disconnected`]); or `None` once the listener is gone.
    pub async fn recv(&mut self) -> Option<Result<Event, Missed>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Event, Missed>>> {
        self.rx.poll_recv(cx).map(|item| {
            item.map(|d| match d {
                Ok(Delivery::Event(e, _)) => Ok(e),
                Ok(Delivery::Gap(gap)) => Err(Missed::Disconnected(gap)),
                Err(Lagged(n)) => Err(Missed::Dropped(n)),
            })
        })
    }

    /// Events this stream has lost since it was made.
    pub fn dropped(&self) -> u64 {
        self.rx.dropped()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match self.poll_recv(cx) {
                Poll::Ready(Some(Err(Missed::Dropped(n)))) => {
                    tracing::warn!(lost = n, "an event stream fell behind and lost events");
                }
                Poll::Ready(Some(Err(Missed::Disconnected(gap)))) => {
                    tracing::warn!(
                        disconnected_for = ?gap.duration(),
                        "events sent while the listener was disconnected were missed"
                    );
                }
                Poll::Ready(Some(Ok(e))) => return Poll::Ready(Some(e)),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.poll_event(cx)
    }
}

impl SafeguardClient {
    /// A listener of the user event hub with this client's token and TLS
    /// settings. It connects on [`EventListener::start`].
    pub fn event_listener(&self) -> EventListener {
        EventListener::with_connector(connection::UserHub::new(self.clone()))
    }

    /// A listener of the user event hub that reconnects after every drop.
    pub fn persistent_event_listener(&self) -> PersistentEventListener {
        PersistentEventListener::with_connector(connection::UserHub::new(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_from_named_and_numeric_names() {
        let args = vec![
            json!({"Name": "UserCreated", "Data": {"UserId": 5}}),
            json!({"Name": 1234, "Data": {"EventName": "AssetCreated"}}),
            json!({"Name": "1234", "Data": {"EventName": "AssetDeleted"}}),
            json!({"Name": 77, "Data": {}}),
            json!({"Data": {"EventName": "AccessRequestApproved"}}),
            json!("{\"Name\":\"FromString\"}"),
            json!({"Data": {}}),
            json!(42),
            json!("not json"),
        ];
        let events = Event::from_invocation("notifyeventasync", &args);
        let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "UserCreated",
                "AssetCreated",
                "AssetDeleted",
                "77",
                "AccessRequestApproved",
                "FromString"
            ]
        );
        assert_eq!(events[0].body, json!({"UserId": 5}));
        assert_eq!(events[0].raw, args[0]);
        assert!(events[0].is("usercreated"));
        assert_eq!(events[5].body, Value::Null);
        assert_eq!(
            Event::from_invocation("ReceiveMessage", &args[..1]).len(),
            1
        );
        assert!(Event::from_invocation("Other", &args).is_empty());
    }

    #[test]
    fn default_options_are_the_protocol_defaults() {
        let o = ListenerOptions::default();
        assert_eq!(o.ping_interval, Duration::from_secs(15));
        assert_eq!(o.server_timeout, Duration::from_secs(30));
        let o = o
            .keepalive(Duration::ZERO, Duration::ZERO)
            .stream_capacity(0);
        assert!(o.ping_interval > Duration::ZERO && o.server_timeout > Duration::ZERO);
        assert_eq!(o.stream_capacity, 1);
        assert_eq!(o.queue_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn event_sizes_follow_their_memory() {
        let small = Event::from_argument(&json!({"Name": "A", "Data": {"X": 1}})).unwrap();
        let blob = "x".repeat(100_000);
        let big = Event::from_argument(&json!({"Name": "A", "Data": {"Blob": blob}})).unwrap();
        assert!(small.approx_size() < 2_000, "{}", small.approx_size());
        // The body and the raw argument each hold the blob.
        assert!(big.approx_size() >= 200_000, "{}", big.approx_size());
        assert!(big.approx_size() < 202_000, "{}", big.approx_size());
        let nested = (0..100).fold(json!(1), |v, _| json!([v, {"k": "v"}]));
        let deep = Event::from_argument(&json!({"Name": "A", "Data": nested})).unwrap();
        assert!(deep.approx_size() > 100 * std::mem::size_of::<Value>());
    }

    #[test]
    fn handler_outcomes() {
        assert_eq!(().into_outcome(), Ok(()));
        assert_eq!(Ok::<(), String>(()).into_outcome(), Ok(()));
        assert_eq!(Err::<(), _>("bad").into_outcome(), Err("bad".to_owned()));
    }
}
