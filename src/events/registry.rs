//! Handlers, event streams and state reporting shared by the listeners.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::queue::{self, Push};
use super::{
    Delivery, Event, EventStream, Gap, HandlerId, HandlerOutcome, ListenerState, StateChange,
    GAP_SIZE,
};

type HandlerFn = Arc<dyn Fn(&Event) -> Result<(), String> + Send + Sync>;
type AsyncHandlerFn = Arc<dyn Fn(Event) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A handler: a closure called on the handler thread, or an async one
/// whose future the handler thread drives to completion.
#[derive(Clone)]
enum Handler {
    Sync(HandlerFn),
    Async(AsyncHandlerFn),
}
type StateFn = Arc<dyn Fn(&StateChange) + Send + Sync>;

struct Entry {
    id: u64,
    /// Lower-case event name; `None` for catch-all handlers.
    name: Option<String>,
    handler: Handler,
}

/// The handlers and event streams of one listener. Shared by every
/// connection the listener makes, so handlers survive reconnects.
pub(crate) struct Registry {
    next_id: AtomicU64,
    handlers: RwLock<Vec<Entry>>,
    streams: Mutex<Vec<queue::Sender<Delivery>>>,
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
        self.insert(
            name,
            Handler::Sync(Arc::new(move |e: &Event| handler(e).into_outcome())),
        )
    }

    pub(crate) fn add_async<F, Fut, R>(&self, name: Option<&str>, handler: F) -> HandlerId
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: HandlerOutcome + 'static,
    {
        self.insert(
            name,
            Handler::Async(Arc::new(move |e: Event| {
                handler(e).map(HandlerOutcome::into_outcome).boxed()
            })),
        )
    }

    fn insert(&self, name: Option<&str>, handler: Handler) -> HandlerId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            id,
            name: name.map(|n| n.trim().to_ascii_lowercase()),
            handler,
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

    /// Runs every matching handler one at a time in registration order (a
    /// failing or panicking one is logged and the others still run), then
    /// feeds the streams (`size` is the event's
    /// [`approx_size`](Event::approx_size)). An async handler's future is
    /// driven to completion here, with `rt` (else a local executor): call
    /// from a thread that may block, never from a runtime worker.
    pub(crate) fn dispatch(&self, event: &Event, size: usize, rt: Option<&Handle>) {
        let matching: Vec<Handler> = read(&self.handlers)
            .iter()
            .filter(|e| {
                e.name
                    .as_deref()
                    .is_none_or(|n| n.eq_ignore_ascii_case(&event.name))
            })
            .map(|e| e.handler.clone())
            .collect();
        for handler in matching {
            let outcome = match handler {
                // This thread may block (see above), though a runtime is
                // current here: a handler may call the blocking clients.
                Handler::Sync(f) => catch_unwind(AssertUnwindSafe(|| {
                    crate::blocking::runtime::allow_blocking(|| f(event))
                })),
                Handler::Async(f) => {
                    let run = async {
                        match catch_unwind(AssertUnwindSafe(|| f(event.clone()))) {
                            Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                            Err(panic) => Err(panic),
                        }
                    };
                    match rt {
                        Some(rt) => rt.block_on(run),
                        None => futures::executor::block_on(run),
                    }
                }
            };
            match outcome {
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
        streams.retain(|tx| {
            tx.push_with(size, || Delivery::Event(event.clone(), size)) != Push::Closed
        });
    }

    /// Tells every stream, in its place among the events, that the listener
    /// was disconnected for `gap`.
    pub(crate) fn gap(&self, gap: Gap) {
        let mut streams = lock(&self.streams);
        streams.retain(|tx| tx.push(Delivery::Gap(gap), GAP_SIZE) != Push::Closed);
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
        self.publish(StateChange {
            state,
            reason,
            retry_in,
            gap: None,
        });
    }

    /// Sets the state and tells every callback of `change`.
    pub(crate) fn publish(&self, change: StateChange) {
        let state = change.state;
        self.tx.send_replace(state);
        match (&change.reason, &change.gap) {
            (Some(r), _) => tracing::info!(?state, reason = %r, "event listener state"),
            (None, Some(gap)) => tracing::warn!(
                ?state,
                disconnected_for = ?gap.duration(),
                "event listener reconnected; events of the outage were missed"
            ),
            (None, None) => tracing::debug!(?state, "event listener state"),
        }
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
        r.dispatch(&event("UserCreated"), 10, None);
        assert_eq!(hits.load(Ordering::SeqCst), 111);
        r.dispatch(&event("AssetCreated"), 10, None);
        assert_eq!(hits.load(Ordering::SeqCst), 211);
        assert!(r.remove(any));
        assert!(!r.remove(any));
        r.dispatch(&event("AssetCreated"), 10, None);
        assert_eq!(hits.load(Ordering::SeqCst), 211);
        assert_eq!(r.handler_count(), 4);
    }

    /// Async handlers run one at a time, in arrival order then registration
    /// order, interleaved with the synchronous ones; a failing or panicking
    /// future is logged and the others still run.
    #[test]
    fn async_handlers_run_one_at_a_time_in_order() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let r = Arc::new(Registry::new(16, 1 << 20));
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let busy = Arc::new(AtomicUsize::new(0));
        let max_busy = Arc::new(AtomicUsize::new(0));
        let (l, b, m) = (log.clone(), busy.clone(), max_busy.clone());
        r.add_async(Some("tick"), move |e: Event| {
            let (l, b, m) = (l.clone(), b.clone(), m.clone());
            async move {
                let n = b.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(n, Ordering::SeqCst);
                let seq = e.body["Seq"].as_u64().unwrap();
                // Later events sleep less: concurrency would reorder them.
                tokio::time::sleep(Duration::from_millis(5 * (10 - seq))).await;
                lock(&l).push(format!("a{seq}"));
                b.fetch_sub(1, Ordering::SeqCst);
            }
        });
        let l = log.clone();
        r.add(Some("tick"), move |e: &Event| {
            lock(&l).push(format!("s{}", e.body["Seq"]));
        });
        r.add_async(None, |_: Event| async { Err::<(), _>("async failure") });
        r.add_async(None, |_: Event| async { panic!("async boom") as () });
        let l = log.clone();
        r.add_async(None, move |e: Event| {
            let l = l.clone();
            async move { lock(&l).push(format!("any{}", e.body["Seq"])) }
        });
        let mut stream = r.stream();
        let handle = rt.handle().clone();
        let reg = r.clone();
        rt.block_on(rt.spawn_blocking(move || {
            for seq in 0..10u64 {
                let e = Event {
                    name: "Tick".into(),
                    body: json!({"Seq": seq}),
                    raw: json!({}),
                };
                reg.dispatch(&e, 10, Some(&handle));
            }
        }))
        .unwrap();
        let expected: Vec<String> = (0..10)
            .flat_map(|i| [format!("a{i}"), format!("s{i}"), format!("any{i}")])
            .collect();
        assert_eq!(*lock(&log), expected);
        assert_eq!(max_busy.load(Ordering::SeqCst), 1);
        // The streams still get every event, after the handlers.
        let cx = &mut std::task::Context::from_waker(std::task::Waker::noop());
        for seq in 0..10u64 {
            match stream.poll_recv(cx) {
                std::task::Poll::Ready(Some(Ok(e))) => assert_eq!(e.body["Seq"], seq),
                other => panic!("{other:?}"),
            }
        }
        // Without a runtime handle, a local executor drives the futures.
        r.dispatch(
            &Event {
                name: "Other".into(),
                body: json!({"Seq": 99}),
                raw: json!({}),
            },
            10,
            None,
        );
        assert_eq!(lock(&log).last().unwrap(), "any99");
    }

    #[test]
    fn streams_get_events_and_full_ones_drop() {
        fn next(s: &mut EventStream) -> std::task::Poll<Option<Result<Event, Missed>>> {
            s.poll_recv(&mut std::task::Context::from_waker(std::task::Waker::noop()))
        }
        use crate::events::Missed::{self, Disconnected, Dropped};
        use std::task::Poll;
        // Two events by count.
        let r = Registry::new(2, 1000);
        let mut s = r.stream();
        for _ in 0..3 {
            r.dispatch(&event("A"), 10, None);
        }
        assert!(matches!(next(&mut s), Poll::Ready(Some(Ok(_)))));
        assert!(matches!(next(&mut s), Poll::Ready(Some(Ok(_)))));
        assert_eq!(next(&mut s), Poll::Ready(Some(Err(Dropped(1)))));
        assert_eq!(next(&mut s), Poll::Pending);
        // Losses before the handlers reach the streams.
        r.lost(5);
        assert_eq!(next(&mut s), Poll::Ready(Some(Err(Dropped(5)))));
        assert_eq!(s.dropped(), 6);
        drop(s);
        r.dispatch(&event("A"), 10, None);
        assert!(lock(&r.streams).is_empty());
        // Three events by bytes.
        r.set_stream_limits(100, 300);
        let mut s = r.stream();
        for _ in 0..5 {
            r.dispatch(&event("A"), 100, None);
        }
        for _ in 0..3 {
            assert!(matches!(next(&mut s), Poll::Ready(Some(Ok(_)))));
        }
        assert_eq!(next(&mut s), Poll::Ready(Some(Err(Dropped(2)))));
        // A gap takes its place among the events.
        let gap = Gap {
            since: std::time::UNIX_EPOCH,
            until: std::time::UNIX_EPOCH + Duration::from_secs(3),
        };
        r.gap(gap);
        r.dispatch(&event("B"), 100, None);
        assert_eq!(next(&mut s), Poll::Ready(Some(Err(Disconnected(gap)))));
        assert!(matches!(next(&mut s), Poll::Ready(Some(Ok(e))) if e.name == "B"));
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
