//! Handlers, event streams and state reporting shared by the listeners.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use super::queue::{self, Push};
use super::{Event, EventStream, HandlerId, HandlerOutcome, ListenerState, StateChange};

type HandlerFn = Arc<dyn Fn(&Event) -> Result<(), String> + Send + Sync>;
type StateFn = Arc<dyn Fn(&StateChange) + Send + Sync>;

struct Entry {
    id: u64,
    /// Lower-case event name; `None` for catch-all handlers.
    name: Option<String>,
    handler: HandlerFn,
}

/// The handlers and event streams of one listener. Shared by every
/// connection the listener makes, so handlers survive reconnects.
pub(crate) struct Registry {
    next_id: AtomicU64,
    handlers: RwLock<Vec<Entry>>,
    streams: Mutex<Vec<queue::Sender<Event>>>,
    stream_capacity: AtomicU64,
    stream_bytes: AtomicU64,
}

impl Registry {
    pub(crate) fn new(stream_capacity: usize, stream_bytes: usize) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            handlers: RwLock::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            stream_capacity: AtomicU64::new(stream_capacity as u64),
            stream_bytes: AtomicU64::new(stream_bytes as u64),
        }
    }

    /// The bounds of the streams made from now on.
    pub(crate) fn set_stream_limits(&self, capacity: usize, bytes: usize) {
        self.stream_capacity
            .store(capacity.max(1) as u64, Ordering::Relaxed);
        self.stream_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn add<F, R>(&self, name: Option<&str>, handler: F) -> HandlerId
    where
        F: Fn(&Event) -> R + Send + Sync + 'static,
        R: HandlerOutcome,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            id,
            name: name.map(|n| n.trim().to_ascii_lowercase()),
            handler: Arc::new(move |e: &Event| handler(e).into_outcome()),
        };
        write(&self.handlers).push(entry);
        HandlerId(id)
    }

    pub(crate) fn remove(&self, id: HandlerId) -> bool {
        let mut handlers = write(&self.handlers);
        let before = handlers.len();
        handlers.retain(|e| e.id != id.0);
        handlers.len() != before
    }

    pub(crate) fn handler_count(&self) -> usize {
        read(&self.handlers).len()
    }

    pub(crate) fn stream(&self) -> EventStream {
        let capacity = usize::try_from(self.stream_capacity.load(Ordering::Relaxed))
            .unwrap_or(usize::MAX)
            .max(1);
        let bytes =
            usize::try_from(self.stream_bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let (tx, rx) = queue::bounded(capacity, bytes, Arc::default(), "an event stream");
        lock(&self.streams).push(tx);
        EventStream { rx }
    }

    /// Tells every stream that `n` events were lost before the handlers.
    pub(crate) fn lost(&self, n: u64) {
        let mut streams = lock(&self.streams);
        streams.retain(|tx| {
            tx.add_lag(n);
            !tx.is_closed()
        });
    }

    /// Runs every matching handler (a failing or panicking one is logged and
    /// the others still run), then feeds the streams (`size` is the event's
    /// [`approx_size`](Event::approx_size)).
    pub(crate) fn dispatch(&self, event: &Event, size: usize) {
        let matching: Vec<HandlerFn> = read(&self.handlers)
            .iter()
            .filter(|e| {
                e.name
                    .as_deref()
                    .is_none_or(|n| n.eq_ignore_ascii_case(&event.name))
            })
            .map(|e| e.handler.clone())
            .collect();
        for handler in matching {
            match catch_unwind(AssertUnwindSafe(|| handler(event))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(event = %event.name, error = %e, "event handler failed")
                }
                Err(panic) => tracing::error!(
                    event = %event.name,
                    panic = %panic_text(&panic),
                    "event handler panicked"
                ),
            }
        }
        let mut streams = lock(&self.streams);
        streams.retain(|tx| tx.push_with(size, || event.clone()) != Push::Closed);
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".to_owned()
    }
}

/// The current state as a watch channel plus callbacks.
pub(crate) struct StateReporter {
    tx: watch::Sender<ListenerState>,
    callbacks: RwLock<Vec<StateFn>>,
}

impl StateReporter {
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::Sender::new(ListenerState::Idle),
            callbacks: RwLock::new(Vec::new()),
        }
    }

    pub(crate) fn get(&self) -> ListenerState {
        *self.tx.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<ListenerState> {
        self.tx.subscribe()
    }

    pub(crate) fn add_callback(&self, f: impl Fn(&StateChange) + Send + Sync + 'static) {
        write(&self.callbacks).push(Arc::new(f));
    }

    pub(crate) fn set(
        &self,
        state: ListenerState,
        reason: Option<Arc<crate::Error>>,
        retry_in: Option<Duration>,
    ) {
        self.tx.send_replace(state);
        match &reason {
            Some(r) => tracing::info!(?state, reason = %r, "event listener state"),
            None => tracing::debug!(?state, "event listener state"),
        }
        let change = StateChange {
            state,
            reason,
            retry_in,
        };
        let callbacks: Vec<StateFn> = read(&self.callbacks).clone();
        for cb in callbacks {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| cb(&change))) {
                tracing::error!(panic = %panic_text(&panic), "state callback panicked");
            }
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    fn event(name: &str) -> Event {
        Event {
            name: name.into(),
            body: json!({}),
            raw: json!({"Name": name}),
        }
    }

    #[test]
    fn handlers_match_case_insensitively_and_survive_failures() {
        let r = Registry::new(4, 1 << 20);
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        r.add(Some("UserCreated"), move |_: &Event| {
            h.fetch_add(1, Ordering::SeqCst);
        });
        r.add(Some("usercreated"), |_: &Event| -> Result<(), String> {
            Err("nope".into())
        });
        r.add(Some("USERCREATED"), |_: &Event| -> Result<(), String> {
            panic!("boom")
        });
        let h = hits.clone();
        r.add(Some("usercreated"), move |_: &Event| {
            h.fetch_add(10, Ordering::SeqCst);
        });
        let h = hits.clone();
        let any = r.add(None, move |_: &Event| {
            h.fetch_add(100, Ordering::SeqCst);
        });
        r.dispatch(&event("UserCreated"), 10);
        assert_eq!(hits.load(Ordering::SeqCst), 111);
        r.dispatch(&event("AssetCreated"), 10);
        assert_eq!(hits.load(Ordering::SeqCst), 211);
        assert!(r.remove(any));
        assert!(!r.remove(any));
        r.dispatch(&event("AssetCreated"), 10);
        assert_eq!(hits.load(Ordering::SeqCst), 211);
        assert_eq!(r.handler_count(), 4);
    }

    #[test]
    fn streams_get_events_and_full_ones_drop() {
        fn next(
            s: &mut EventStream,
        ) -> std::task::Poll<Option<Result<Event, crate::events::Lagged>>> {
            s.rx.poll_recv(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        }
        use crate::events::Lagged;
        use std::task::Poll;
        // Two events by count.
        let r = Registry::new(2, 1000);
        let mut s = r.stream();
        for _ in 0..3 {
            r.dispatch(&event("A"), 10);
        }
        assert!(matches!(next(&mut s), Poll::Ready(Some(Ok(_)))));
        assert!(matches!(next(&mut s), Poll::Ready(Some(Ok(_)))));
        assert_eq!(next(&mut s), Poll::Ready(Some(Err(Lagged(1)))));
        assert_eq!(next(&mut s), Poll::Pending);
        // Losses before the handlers reach the streams.
        r.lost(5);
        assert_eq!(next(&mut s), Poll::Ready(Some(Err(Lagged(5)))));
        assert_eq!(s.dropped(), 6);
        drop(s);
        r.dispatch(&event("A"), 10);
        assert!(lock(&r.streams).is_empty());
        // Three events by bytes.
        r.set_stream_limits(100, 300);
        let mut s = r.stream();
        for _ in 0..5 {
            r.dispatch(&event("A"), 100);
        }
        for _ in 0..3 {
            assert!(matches!(next(&mut s), Poll::Ready(Some(Ok(_)))));
        }
        assert_eq!(next(&mut s), Poll::Ready(Some(Err(Lagged(2)))));
    }

    #[test]
    fn state_callbacks_see_changes() {
        let s = StateReporter::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let v = seen.clone();
        s.add_callback(move |c| lock(&v).push(c.state));
        s.add_callback(|_| panic!("bad callback"));
        let rx = s.subscribe();
        s.set(ListenerState::Connecting, None, None);
        s.set(ListenerState::Connected, None, None);
        assert_eq!(*rx.borrow(), ListenerState::Connected);
        assert_eq!(s.get(), ListenerState::Connected);
        assert_eq!(
            *lock(&seen),
            vec![ListenerState::Connecting, ListenerState::Connected]
        );
    }
}
