//! [`PersistentEventListener`]: reconnects after every drop.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::RngExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::connection::{self, End, HubConnector};
use super::listener::{registration_methods, Core};
use super::{
    Event, EventStream, EventsError, Gap, HandlerId, HandlerOutcome, ListenerOptions,
    ListenerState, StateChange,
};
use crate::{Error, Result};

/// How long to wait between reconnection attempts: `initial`, multiplied by
/// `multiplier` after every failed attempt up to `max`, each delay scaled by
/// a random factor in `1 ± jitter`. The count starts over after a connection
/// that reached the handshake answer. Defaults: 1 s doubling to 60 s, ±25 %.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconnectPolicy {
    /// The first delay (default 1 s).
    pub initial: Duration,
    /// The largest delay before jitter (default 60 s).
    pub max: Duration,
    /// Growth per failed attempt (default 2).
    pub multiplier: f64,
    /// Relative jitter, 0 to 1 (default 0.25).
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.25,
        }
    }
}

impl ReconnectPolicy {
    /// A policy with these bounds and the default growth and jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            ..Self::default()
        }
    }

    /// Sets the jitter (clamped to 0..=1).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before attempt `attempt` (0 = the first retry) for a random
    /// draw `unit` in `0..=1` (0.5 = no jitter).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let multiplier = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let max = self.max.max(self.initial).as_secs_f64();
        let base =
            (self.initial.as_secs_f64() * multiplier.powi(attempt.min(1024) as i32)).min(max);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let factor = 1.0 - jitter + 2.0 * jitter * unit;
        Duration::try_from_secs_f64(base * factor).unwrap_or(self.max)
    }
}

/// Counts failed attempts for a [`ReconnectPolicy`].
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: ReconnectPolicy,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self { policy, attempt: 0 }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let unit: f64 = rand::rng().random_range(0.0..=1.0);
        let d = self.policy.delay(self.attempt, unit);
        self.attempt = self.attempt.saturating_add(1);
        d
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Inner {
    core: Arc<Core>,
    policy: std::sync::RwLock<ReconnectPolicy>,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// A listener that stays connected: after any drop (network, appliance
/// restart, dead connection, hub close) it reconnects with exponential
/// backoff and jitter ([`ReconnectPolicy`]); when the hub answers 401 it
/// signs in again first ([`SafeguardClient::refresh`](crate::SafeguardClient::refresh)).
/// A hub close with `allowReconnect: false` stops it for good (state
/// `Stopped`, the reason an [`EventsError::ClosedByHub`]).
/// Handlers and streams are kept across reconnects. Cheap to clone; clones
/// share everything.
///
/// States: `Connecting` (first attempt), `Connected`, `Disconnected` (with
/// the reason), `Reconnecting` (with the delay), `Stopped`. Every
/// `Connected` after a reconnect carries the [`Gap`] of the outage (the hub
/// does not replay what it sent meanwhile), and each stream gets it in its
/// place as [`Missed::Disconnected`](super::Missed::Disconnected). A client whose
/// sign-in cannot be refreshed (token or anonymous) stops for good on a 401.
///
/// ```no_run
/// # async fn run(client: safeguard_sdk::SafeguardClient) -> safeguard_sdk::Result<()> {
/// use std::time::{Duration, SystemTime};
/// use safeguard_sdk::events::ListenerState;
/// let listener = client.persistent_event_listener();
/// listener.on("AccessRequestCreated", |e| println!("{}", e.body));
/// listener.start().await?;
/// listener.wait_for_state(ListenerState::Connected, Duration::from_secs(30)).await;
/// // ...
/// listener.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PersistentEventListener {
    inner: Arc<Inner>,
}

impl fmt::Debug for PersistentEventListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentEventListener")
            .field("hub", &self.inner.core.hub.hub_path())
            .field("state", &self.inner.core.state.get())
            .finish_non_exhaustive()
    }
}

impl PersistentEventListener {
    pub(crate) fn with_connector(hub: impl HubConnector) -> Self {
        Self {
            inner: Arc::new(Inner {
                core: Arc::new(Core::new(Arc::new(hub))),
                policy: std::sync::RwLock::new(ReconnectPolicy::default()),
                running: tokio::sync::Mutex::new(None),
            }),
        }
    }

    fn core(&self) -> &Core {
        &self.inner.core
    }

    registration_methods!();

    /// Sets the reconnection delays.
    pub fn with_reconnect_policy(self, policy: ReconnectPolicy) -> Self {
        self.set_reconnect_policy(policy);
        self
    }

    /// Replaces the reconnection delays (from the next [`start`](Self::start) on).
    pub fn set_reconnect_policy(&self, policy: ReconnectPolicy) {
        *self.inner.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// The reconnection delays.
    pub fn reconnect_policy(&self) -> ReconnectPolicy {
        self.inner
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts connecting in the background and returns at once; watch the
    /// state (or [`wait_for_state`](Self::wait_for_state)) to know when
    /// events flow. Fails only when the listener is already running.
    pub async fn start(&self) -> Result<()> {
        let mut running = self.inner.running.lock().await;
        if let Some(r) = running.as_ref() {
            if !r.task.is_finished() {
                return Err(EventsError::AlreadyRunning.into());
            }
        }
        if let Some(old) = running.take() {
            let _ = old.task.await;
        }
        let (stop, stop_rx) = watch::channel(false);
        let core = self.inner.core.clone();
        let policy = self.reconnect_policy();
        let task = tokio::spawn(supervise(core, policy, stop_rx));
        *running = Some(Running { stop, task });
        Ok(())
    }

    /// Whether the background task is running.
    pub async fn is_running(&self) -> bool {
        self.inner
            .running
            .lock()
            .await
            .as_ref()
            .is_some_and(|r| !r.task.is_finished())
    }

    /// Stops: closes the connection, cancels a pending attempt or delay, and
    /// waits until every task of the listener has ended (state `Stopped`).
    pub async fn stop(&self) {
        let mut running = self.inner.running.lock().await;
        if let Some(r) = running.take() {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
        if self.inner.core.state.get() != ListenerState::Stopped {
            self.inner.core.report(ListenerState::Stopped, None, None);
        }
    }
}

/// Runs `fut` unless `stop` turns true (or its sender goes away) first.
async fn unless_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = connection::stopped(stop) => None,
        v = fut => Some(v),
    }
}

fn is_unauthorized(e: &Error) -> bool {
    e.status() == Some(reqwest::StatusCode::UNAUTHORIZED)
}

/// The reconnect loop.
async fn supervise(core: Arc<Core>, policy: ReconnectPolicy, mut stop: watch::Receiver<bool>) {
    let (events, dispatcher) = core.spawn_dispatcher(core.options().queue_bytes);
    let mut backoff = Backoff::new(policy);
    let mut reauth_first = false;
    // When a connection that was up was lost: the start of the next gap.
    let mut lost_at: Option<SystemTime> = None;
    core.report(ListenerState::Connecting, None, None);
    'outer: loop {
        let options: ListenerOptions = core.options();
        let mut reauthed_now = false;
        if reauth_first {
            match unless_stopped(&mut stop, core.hub.reauthenticate()).await {
                None => break 'outer,
                Some(Ok(())) => {
                    tracing::info!("signed in again for the event hub");
                    reauth_first = false;
                    reauthed_now = true;
                }
                Some(Err(e @ (Error::CannotRefresh { .. } | Error::SignedOut))) => {
                    tracing::error!(error = %e, "the event hub refused the token and it cannot be refreshed; giving up");
                    core.report(ListenerState::Stopped, Some(e), None);
                    break 'outer;
                }
                Some(Err(e)) => {
                    core.report(ListenerState::Disconnected, Some(e), None);
                    if !wait_before_retry(&core, &mut backoff, &mut stop).await {
                        break 'outer;
                    }
                    continue 'outer;
                }
            }
        }
        match unless_stopped(&mut stop, connection::connect(core.hub.as_ref(), &options)).await {
            None => break 'outer,
            Some(Ok(conn)) => {
                backoff.reset();
                match lost_at.take() {
                    Some(since) => core.report_reconnected(
                        Gap {
                            since,
                            until: SystemTime::now(),
                        },
                        &events,
                    ),
                    None => core.report(ListenerState::Connected, None, None),
                }
                let ended = conn.run(&options, &events, &mut stop).await;
                lost_at = Some(SystemTime::now());
                match ended {
                    End::Stopped => break 'outer,
                    End::Failed(
                        e @ Error::Events(EventsError::ClosedByHub {
                            allow_reconnect: false,
                            ..
                        }),
                    ) => {
                        tracing::error!(error = %e, "the event hub closed the connection and forbade reconnecting; the listener stops");
                        core.report(ListenerState::Stopped, Some(e), None);
                        break 'outer;
                    }
                    End::Failed(e) => core.report(ListenerState::Disconnected, Some(e), None),
                }
            }
            Some(Err(e @ Error::SignedOut)) => {
                // The client was signed out: only its owner signs in again.
                tracing::error!(error = %e, "the client was signed out; the listener stops");
                core.report(ListenerState::Stopped, Some(e), None);
                break 'outer;
            }
            Some(Err(e)) => {
                let unauthorized = is_unauthorized(&e);
                core.report(ListenerState::Disconnected, Some(e), None);
                if unauthorized {
                    reauth_first = true;
                    if !reauthed_now {
                        // Sign in again and retry at once.
                        core.report(ListenerState::Reconnecting, None, Some(Duration::ZERO));
                        continue 'outer;
                    }
                }
            }
        }
        if !wait_before_retry(&core, &mut backoff, &mut stop).await {
            break 'outer;
        }
    }
    drop(events);
    let _ = dispatcher.await;
    if core.state.get() != ListenerState::Stopped {
        core.report(ListenerState::Stopped, None, None);
    }
}

/// Reports `Reconnecting` and sleeps the next backoff delay; `false` when
/// stopped meanwhile.
async fn wait_before_retry(
    core: &Core,
    backoff: &mut Backoff,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let delay = backoff.next_delay();
    core.report(ListenerState::Reconnecting, None, Some(delay));
    unless_stopped(stop, tokio::time::sleep(delay))
        .await
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_doubles_from_one_second_to_sixty_with_quarter_jitter() {
        let p = ReconnectPolicy::default();
        let secs: Vec<f64> = (0..9).map(|n| p.delay(n, 0.5).as_secs_f64()).collect();
        assert_eq!(secs, vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]);
        assert_eq!(p.delay(0, 0.0), Duration::from_millis(750));
        assert_eq!(p.delay(0, 1.0), Duration::from_millis(1250));
        assert_eq!(p.delay(10, 0.0), Duration::from_secs(45));
        assert_eq!(p.delay(10, 1.0), Duration::from_secs(75));
        assert_eq!(p.delay(u32::MAX, 0.5), Duration::from_secs(60));
        // Nonsense draws and settings do not panic.
        assert_eq!(p.delay(0, f64::NAN), Duration::from_secs(1));
        let odd = ReconnectPolicy {
            multiplier: f64::NAN,
            jitter: 7.0,
            ..ReconnectPolicy::default()
        };
        assert!(odd.delay(3, 1.0) <= Duration::from_secs(2));
    }

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(ReconnectPolicy::default());
        for n in 0..20u32 {
            let d = b.next_delay().as_secs_f64();
            let base = (2f64.powi(n as i32)).min(60.0);
            assert!(
                d >= base * 0.75 - 1e-9 && d <= base * 1.25 + 1e-9,
                "attempt {n}: {d}"
            );
        }
        b.reset();
        let d = b.next_delay().as_secs_f64();
        assert!((0.75..=1.25).contains(&d));
    }
}
