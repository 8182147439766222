//! The bounded queues between a connection and the handlers, and between
//! the handlers' thread and each [`EventStream`](super::EventStream).
//!
//! A queue holds at most `max_items` items and `max_bytes` bytes (the
//! approximate size given with each item, counted when it is queued and
//! released when it is taken). An item that does not fit is dropped at
//! once: the newest ones are lost, the producer never waits. The consumer
//! learns how many were lost, in their place in the sequence, as a
//! [`Lagged`] notice. One item larger than `max_bytes` is still accepted
//! when the queue is empty, so a big event is delayed by nothing but never
//! starves; the queue then holds that one item only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::Lagged;

struct Slot<T> {
    item: T,
    size: usize,
    /// Items dropped just before this one (reported before it).
    lag_before: u64,
}

struct State<T> {
    items: VecDeque<Slot<T>>,
    bytes: usize,
    /// Items dropped since the last queued one.
    lag: u64,
    sender_gone: bool,
    receiver_gone: bool,
    waker: Option<Waker>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes a receiver blocked in [`Receiver::recv_blocking`].
    ready: Condvar,
    max_items: usize,
    max_bytes: usize,
    /// Every item dropped by this queue, added to a counter the owner reads.
    dropped: Arc<AtomicU64>,
    /// Names the consumer in logs ("the event handlers", "an event stream").
    label: &'static str,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unlocks `state` and wakes the receiver, whether it waits in a task
    /// or blocks in a thread.
    fn wake(&self, mut state: MutexGuard<'_, State<T>>) {
        let waker = state.waker.take();
        drop(state);
        self.ready.notify_one();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The producing side (one per queue; dropping it ends the queue once it
/// is drained).
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The consuming side.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// What [`Sender::push`] did with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued.
    Queued,
    /// Dropped: the queue is full (counted, reported to the consumer).
    Dropped,
    /// The receiver is gone.
    Closed,
}

/// A queue of at most `max_items` items (at least 1) and `max_bytes` bytes;
/// every drop is added to `dropped`.
pub(crate) fn bounded<T>(
    max_items: usize,
    max_bytes: usize,
    dropped: Arc<AtomicU64>,
    label: &'static str,
) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        ready: Condvar::new(),
        state: Mutex::new(State {
            items: VecDeque::new(),
            bytes: 0,
            lag: 0,
            sender_gone: false,
            receiver_gone: false,
            waker: None,
        }),
        max_items: max_items.max(1),
        max_bytes,
        dropped,
        label,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `item` of `size` bytes, or drops it when it does not fit.
    pub(crate) fn push(&self, item: T, size: usize) -> Push {
        self.push_with(size, || item)
    }

    /// Like [`push`](Self::push), making the item only when it fits.
    pub(crate) fn push_with(&self, size: usize, make: impl FnOnce() -> T) -> Push {
        let shared = &*self.shared;
        let mut state = shared.lock();
        if state.receiver_gone {
            return Push::Closed;
        }
        let fits = state.items.is_empty()
            || (state.items.len() < shared.max_items
                && state.bytes.saturating_add(size) <= shared.max_bytes);
        if !fits {
            if state.lag == 0 {
                tracing::warn!(
                    consumer = shared.label,
                    queued = state.items.len(),
                    bytes = state.bytes,
                    "events arrive faster than they are taken; dropping the newest ones"
                );
            }
            state.lag = state.lag.saturating_add(1);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Push::Dropped;
        }
        let lag_before = std::mem::take(&mut state.lag);
        state.bytes = state.bytes.saturating_add(size);
        state.items.push_back(Slot {
            item: make(),
            size,
            lag_before,
        });
        shared.wake(state);
        Push::Queued
    }

    /// Counts `n` items lost before this queue (reported to the consumer
    /// like items this queue dropped).
    pub(crate) fn add_lag(&self, n: u64) {
        if n == 0 {
            return;
        }
        let mut state = self.shared.lock();
        if state.receiver_gone {
            return;
        }
        state.lag = state.lag.saturating_add(n);
        self.shared.dropped.fetch_add(n, Ordering::Relaxed);
        self.shared.wake(state);
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.sender_gone = true;
        self.shared.wake(state);
    }
}

impl<T> Receiver<T> {
    /// The next item, or the number of items lost at this point, or `None`
    /// once the sender is gone and everything has been taken.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Lagged>>> {
        let mut state = self.shared.lock();
        match take(&mut state) {
            Some(ready) => Poll::Ready(ready),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Like [`recv`](Self::recv), blocking the thread (for the handlers'
    /// thread; never call it on an async task).
    pub(crate) fn recv_blocking(&mut self) -> Option<Result<T, Lagged>> {
        let mut state = self.shared.lock();
        loop {
            if let Some(ready) = take(&mut state) {
                return ready;
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    #[cfg(test)]
    /// See [`poll_recv`](Self::poll_recv).
    pub(crate) async fn recv(&mut self) -> Option<Result<T, Lagged>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Items dropped by this queue (and lost before it) in all.
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Items waiting and their bytes.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.items.len(), state.bytes)
    }
}

/// What the receiver gets now: `None` when it must wait.
fn take<T>(state: &mut State<T>) -> Option<Option<Result<T, Lagged>>> {
    if let Some(front) = state.items.front_mut() {
        if front.lag_before > 0 {
            let n = std::mem::take(&mut front.lag_before);
            return Some(Some(Err(Lagged(n))));
        }
    }
    if let Some(slot) = state.items.pop_front() {
        state.bytes = state.bytes.saturating_sub(slot.size);
        return Some(Some(Ok(slot.item)));
    }
    if state.lag > 0 {
        let n = std::mem::take(&mut state.lag);
        return Some(Some(Err(Lagged(n))));
    }
    if state.sender_gone {
        return Some(None);
    }
    None
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        state.bytes = 0;
        let items = std::mem::take(&mut state.items);
        drop(state);
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next<T>(rx: &mut Receiver<T>) -> Poll<Option<Result<T, Lagged>>> {
        let mut cx = Context::from_waker(Waker::noop());
        rx.poll_recv(&mut cx)
    }

    #[test]
    fn full_queues_drop_the_newest_and_say_how_many_in_place() {
        let counter = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = bounded::<u32>(10, 100, counter.clone(), "test");
        assert_eq!(tx.push(1, 60), Push::Queued);
        assert_eq!(tx.push(2, 40), Push::Queued);
        // 100 bytes held: the next ones are dropped, whatever their size.
        assert_eq!(tx.push(3, 1), Push::Dropped);
        assert_eq!(tx.push(4, 50), Push::Dropped);
        assert_eq!(rx.queued(), (2, 100));
        assert_eq!(counter.load(Ordering::Relaxed), 2);
        assert_eq!(next(&mut rx), Poll::Ready(Some(Ok(1))));
        assert_eq!(rx.queued(), (1, 40));
        assert_eq!(tx.push(5, 50), Push::Queued);
        assert_eq!(tx.push(6, 20), Push::Dropped);
        assert_eq!(next(&mut rx), Poll::Ready(Some(Ok(2))));
        assert_eq!(next(&mut rx), Poll::Ready(Some(Err(Lagged(2)))));
        assert_eq!(next(&mut rx), Poll::Ready(Some(Ok(5))));
        assert_eq!(next(&mut rx), Poll::Ready(Some(Err(Lagged(1)))));
        assert_eq!(next(&mut rx), Poll::Pending);
        assert_eq!(rx.dropped(), 3);
        assert_eq!(rx.queued(), (0, 0));
        drop(tx);
        assert_eq!(next(&mut rx), Poll::Ready(None));
    }

    #[test]
    fn the_count_bounds_too_and_one_big_item_passes_alone() {
        let (tx, mut rx) = bounded::<u32>(2, 1000, Arc::default(), "test");
        assert_eq!(tx.push(1, 1), Push::Queued);
        assert_eq!(tx.push(2, 1), Push::Queued);
        assert_eq!(tx.push(3, 1), Push::Dropped);
        assert_eq!(next(&mut rx), Poll::Ready(Some(Ok(1))));
        assert_eq!(next(&mut rx), Poll::Ready(Some(Ok(2))));
        assert_eq!(next(&mut rx), Poll::Ready(Some(Err(Lagged(1)))));
        // Larger than the whole budget: accepted into an empty queue only.
        assert_eq!(tx.push(4, 5000), Push::Queued);
        assert_eq!(tx.push(5, 1), Push::Dropped);
        assert_eq!(next(&mut rx), Poll::Ready(Some(Ok(4))));
        // Lag from upstream is reported like a drop.
        tx.add_lag(7);
        assert_eq!(next(&mut rx), Poll::Ready(Some(Err(Lagged(8)))));
        assert_eq!(rx.dropped(), 9);
        let mut made = false;
        assert_eq!(tx.push(6, 1), Push::Queued);
        assert_eq!(tx.push(7, 1), Push::Queued);
        assert_eq!(
            tx.push_with(1, || {
                made = true;
                8
            }),
            Push::Dropped
        );
        assert!(!made, "a dropped item is never made");
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.push(9, 1), Push::Closed);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = bounded::<u32>(4, 100, Arc::default(), "test");
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = rx.recv().await {
                got.push(item);
            }
            got
        });
        tokio::task::yield_now().await;
        tx.push(1, 1);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        tx.push(2, 1);
        drop(tx);
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("the receiver ends")
            .unwrap();
        assert_eq!(got, vec![Ok(1), Ok(2)]);
    }

    #[test]
    fn a_blocked_receiver_is_woken() {
        let (tx, mut rx) = bounded::<u32>(4, 100, Arc::default(), "test");
        let waiter = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Some(item) = rx.recv_blocking() {
                got.push(item);
            }
            got
        });
        std::thread::sleep(std::time::Duration::from_millis(10));
        tx.push(1, 1);
        tx.add_lag(2);
        std::thread::sleep(std::time::Duration::from_millis(10));
        tx.push(2, 1);
        drop(tx);
        assert_eq!(waiter.join().unwrap(), vec![Ok(1), Err(Lagged(2)), Ok(2)]);
    }
}
