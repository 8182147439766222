//! Credentials that stay current: a [`CredentialWatch`] holds the value of
//! each credential it watches and pulls it again whenever it may have
//! changed.
//!
//! A pull happens: at [`start`](CredentialWatch::start) (which returns once
//! every credential has a value); on every A2A event of the credential's kind
//! (`AssetAccountPasswordUpdated` for passwords, `AssetAccountSshKeyUpdated`
//! for private keys, `AccountApiKeySecretUpdated` for API key secrets); on
//! every connection of the A2A hub, the first one included, since the hub
//! does not replay what it sent while the listener was away (and a
//! rotation between the first pull and the first connection would
//! otherwise be missed); and every [`safety_interval`](CredentialWatch::safety_interval)
//! without an event, in case events are lost on the way. One listener and
//! one connection serve every credential of a watch; pulls run one at a
//! time, so a value is never followed by an older one.
//!
//! A pull that finds the same value notifies no one. A pull that fails keeps
//! the last good value and reports the error and the value's age in
//! [`Watched::status`] (and a warning in the log). Values are
//! [`SecretString`]s (wiped when dropped, redacted in `Debug`), replaced
//! whole on change.
//!
//! ```no_run
//! # async fn run(a2a: safeguard_sdk::a2a::A2aContext) -> safeguard_sdk::Result<()> {
//! use safeguard_sdk::ExposeSecret;
//! let watch = a2a.credential_watch();
//! let db = watch.password("db-api-key");
//! watch.start().await?;
//! db.on_change(|new| println!("rotated: {} characters", new.value.expose_secret().len()))?;
//! let current = db.current().expect("start pulled it");
//! # let _ = current; Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::Stream;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::{A2aContext, ApiKey, ApiKeySecret, KeyFormat};
use crate::events::{ListenerState, PersistentEventListener};
use crate::{Error, Result};

/// The default [`CredentialWatch::safety_interval`]: 5 minutes.
pub const DEFAULT_SAFETY_INTERVAL: Duration = Duration::from_secs(300);

const PASSWORDS: u8 = 1;
const PRIVATE_KEYS: u8 = 2;
const API_KEY_SECRETS: u8 = 4;
const ALL: u8 = PASSWORDS | PRIVATE_KEYS | API_KEY_SECRETS;

/// The kinds of credential an A2A event may have changed.
fn kinds_of(event: &str) -> u8 {
    if event.eq_ignore_ascii_case("AssetAccountPasswordUpdated") {
        PASSWORDS
    } else if event.eq_ignore_ascii_case("AssetAccountSshKeyUpdated") {
        PRIVATE_KEYS
    } else if event.eq_ignore_ascii_case("AccountApiKeySecretUpdated") {
        API_KEY_SECRETS
    } else {
        0
    }
}

/// A credential a [`CredentialWatch`] can hold: a password or private key
/// ([`SecretString`]) or an account's API key secrets.
pub trait Credential: Clone + Send + Sync + 'static + sealed::Sealed {}
impl Credential for SecretString {}
impl Credential for Vec<ApiKeySecret> {}

mod sealed {
    use super::*;

    type Pulled<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

    /// How a credential is retrieved and compared.
    pub trait Sealed: Sized {
        fn retrieve<'a>(
            context: &'a A2aContext,
            api_key: &'a SecretString,
            format: KeyFormat,
            kind: u8,
        ) -> Pulled<'a, Self>;
        /// The same credential: `kind` says which ([`PRIVATE_KEYS`]: see
        /// [`same_private_key`]).
        fn same(&self, other: &Self, kind: u8) -> bool;
    }

    impl Sealed for SecretString {
        fn retrieve<'a>(
            context: &'a A2aContext,
            api_key: &'a SecretString,
            format: KeyFormat,
            kind: u8,
        ) -> Pulled<'a, Self> {
            Box::pin(async move {
                if kind == PRIVATE_KEYS {
                    context.retrieve_private_key(api_key, format).await
                } else {
                    context.retrieve_password(api_key).await
                }
            })
        }

        fn same(&self, other: &Self, kind: u8) -> bool {
            let (a, b) = (self.expose_secret(), other.expose_secret());
            a == b || (kind == PRIVATE_KEYS && same_private_key(a, b))
        }
    }

    impl Sealed for Vec<ApiKeySecret> {
        fn retrieve<'a>(
            context: &'a A2aContext,
            api_key: &'a SecretString,
            _: KeyFormat,
            _: u8,
        ) -> Pulled<'a, Self> {
            Box::pin(context.retrieve_api_key_secret(api_key))
        }

        fn same(&self, other: &Self, _: u8) -> bool {
            let secret = |s: &ApiKeySecret| {
                s.client_secret
                    .as_ref()
                    .map(|c| c.expose_secret().to_owned())
            };
            self.len() == other.len()
                && self.iter().zip(other).all(|(a, b)| {
                    a.id == b.id
                        && a.client_id == b.client_id
                        && a.client_secret_id == b.client_secret_id
                        && secret(a) == secret(b)
                })
        }
    }
}

/// Whether two OpenSSH private keys (`openssh-key-v1`) are the same key
/// exported twice: an export carries random "check" numbers (and, when
/// encrypted, a random salt), so the same key never reads the same twice
/// (`ssh-keygen` does this, and so does the appliance at each retrieval).
/// Unencrypted: the same but for the check numbers. Encrypted: the same
/// public keys (a rotation makes a new key pair; a new passphrase alone is
/// not seen). Anything else compares byte for byte elsewhere.
fn same_private_key(a: &str, b: &str) -> bool {
    match (openssh_identity(a), openssh_identity(b)) {
        (Some(a), Some(b)) => *a == *b,
        _ => false,
    }
}

/// What stays of an `openssh-key-v1` key from one export to the next: the
/// whole binary with the check numbers zeroed when unencrypted, the part
/// before the private section (names, options, public keys) when
/// encrypted; `None` for anything else. Wiped when dropped.
fn openssh_identity(key: &str) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    use base64::Engine as _;
    const MAGIC: &[u8] = b"openssh-key-v1\0";
    let body = key
        .trim()
        .strip_prefix("-----BEGIN OPENSSH PRIVATE KEY-----")?
        .strip_suffix("-----END OPENSSH PRIVATE KEY-----")?;
    let text = zeroize::Zeroizing::new(
        body.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>(),
    );
    let mut blob = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .ok()?,
    );
    if !blob.starts_with(MAGIC) {
        return None;
    }
    // The bounds of the length-prefixed string at `at`.
    let string = |blob: &[u8], at: usize| -> Option<(usize, usize)> {
        let len: [u8; 4] = blob.get(at..at.checked_add(4)?)?.try_into().ok()?;
        let start = at + 4;
        let end = start.checked_add(usize::try_from(u32::from_be_bytes(len)).ok()?)?;
        (end <= blob.len()).then_some((start, end))
    };
    let (cipher, cipher_end) = string(&blob, MAGIC.len())?;
    let encrypted = &blob[cipher..cipher_end] != b"none";
    let mut at = string(&blob, cipher_end)?.1; // kdf name
    at = string(&blob, at)?.1; // kdf options
    let count: [u8; 4] = blob.get(at..at.checked_add(4)?)?.try_into().ok()?;
    at += 4;
    for _ in 0..u32::from_be_bytes(count) {
        at = string(&blob, at)?.1; // a public key
    }
    let (private, end) = string(&blob, at)?;
    if encrypted {
        blob.truncate(at);
    } else {
        blob.get_mut(private..private.checked_add(8).filter(|e| *e <= end)?)?
            .fill(0);
    }
    Some(blob)
}

/// A credential's value as last pulled.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Current<T> {
    /// The value.
    pub value: T,
    /// Counts the changes seen: 1 for the first value, one more for each
    /// different value after it.
    pub version: u64,
    /// When this value was last confirmed by a pull.
    pub confirmed_at: SystemTime,
}

/// How a watched credential's pulls are going.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct WatchStatus {
    /// The error of the last pull, if it failed (cleared by a good one).
    pub last_error: Option<Arc<Error>>,
    /// Since when pulls have been failing.
    pub failing_since: Option<SystemTime>,
    /// How long ago the value was last confirmed by a pull.
    pub age: Option<Duration>,
    /// Pulls made, good or not.
    pub pulls: u64,
}

/// One watched credential: its channel and its pull record.
struct Entry<T: Credential> {
    api_key: SecretString,
    format: KeyFormat,
    kind: u8,
    tx: watch::Sender<Option<Current<T>>>,
    status: Mutex<WatchStatus>,
}

impl<T: Credential> Entry<T> {
    fn status(&self) -> std::sync::MutexGuard<'_, WatchStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the engine needs of an entry, whatever its credential.
trait Pull: Send + Sync {
    fn kind(&self) -> u8;
    fn pull<'a>(
        &'a self,
        context: &'a A2aContext,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
}

impl<T: Credential> Pull for Entry<T> {
    fn kind(&self) -> u8 {
        self.kind
    }

    fn pull<'a>(
        &'a self,
        context: &'a A2aContext,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let pulled = T::retrieve(context, &self.api_key, self.format, self.kind).await;
            let now = SystemTime::now();
            let mut status = self.status();
            status.pulls += 1;
            match pulled {
                Ok(value) => {
                    status.last_error = None;
                    status.failing_since = None;
                    drop(status);
                    self.tx.send_if_modified(|held| match held {
                        Some(current) if current.value.same(&value, self.kind) => {
                            current.confirmed_at = now;
                            false
                        }
                        _ => {
                            let version = held.as_ref().map_or(1, |c| c.version + 1);
                            *held = Some(Current {
                                value,
                                version,
                                confirmed_at: now,
                            });
                            true
                        }
                    });
                    Ok(())
                }
                Err(e) => {
                    let age = self
                        .tx
                        .borrow()
                        .as_ref()
                        .map(|c| now.duration_since(c.confirmed_at).unwrap_or_default());
                    tracing::warn!(error = %e, ?age, "an A2A credential could not be pulled; keeping the last value");
                    status.failing_since.get_or_insert(now);
                    let shared = Arc::new(e.clone());
                    status.last_error = Some(shared);
                    Err(e)
                }
            }
        })
    }
}

/// A credential held current by a [`CredentialWatch`]; cheap to clone.
pub struct Watched<T: Credential> {
    entry: Arc<Entry<T>>,
}

impl<T: Credential> Clone for Watched<T> {
    fn clone(&self) -> Self {
        Self {
            entry: self.entry.clone(),
        }
    }
}

impl<T: Credential> fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self.entry.tx.borrow().as_ref().map(|c| c.version);
        f.debug_struct("Watched")
            .field("version", &version)
            .finish_non_exhaustive()
    }
}

impl<T: Credential> Watched<T> {
    /// The value as last pulled (`None` before the first good pull).
    pub fn current(&self) -> Option<Current<T>> {
        self.entry.tx.borrow().clone()
    }

    /// A receiver of every change (`changed().await`, `borrow()`); it also
    /// sees the value at the time it is made.
    pub fn subscribe(&self) -> watch::Receiver<Option<Current<T>>> {
        self.entry.tx.subscribe()
    }

    /// The values that replace the present one, as they arrive; the stream
    /// ends when the watch is dropped. A consumer that falls behind sees
    /// the newest value, never an older one after a newer.
    pub fn changes(&self) -> impl Stream<Item = Current<T>> + Send + 'static {
        let mut rx = self.subscribe();
        rx.mark_unchanged();
        futures::stream::unfold(rx, |mut rx| async move {
            loop {
                rx.changed().await.ok()?;
                let current = rx.borrow_and_update().clone();
                if let Some(current) = current {
                    return Some((current, rx));
                }
            }
        })
    }

    /// Calls `handler` with each value that replaces the present one, on a
    /// task of the current tokio runtime, until the watch is dropped (abort
    /// the handle to stop sooner). Outside a runtime: [`Error::Config`].
    pub fn on_change(
        &self,
        handler: impl Fn(&Current<T>) + Send + 'static,
    ) -> Result<JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config(
                "on_change runs its handler on a tokio runtime; call it inside one".into(),
            )
        })?;
        let mut rx = self.subscribe();
        rx.mark_unchanged();
        Ok(runtime.spawn(async move {
            while rx.changed().await.is_ok() {
                let current = rx.borrow_and_update().clone();
                if let Some(current) = current {
                    handler(&current);
                }
            }
        }))
    }

    /// How its pulls are going: the last error and the value's age.
    pub fn status(&self) -> WatchStatus {
        let mut status = self.entry.status().clone();
        status.age = self.entry.tx.borrow().as_ref().map(|c| {
            SystemTime::now()
                .duration_since(c.confirmed_at)
                .unwrap_or_default()
        });
        status
    }
}

/// Holds A2A credentials current (see the [module](self) docs). Cheap to
/// clone; clones share the credentials and the listener. Dropping the last
/// clone stops it (the values its [`Watched`] handles hold stay).
#[derive(Clone)]
pub struct CredentialWatch {
    handle: Arc<Handle>,
}

/// What the clones of a watch share; the engine holds only [`Inner`], so
/// dropping the last clone drops the stop signal and ends the engine.
struct Handle {
    inner: Arc<Inner>,
    running: tokio::sync::Mutex<Option<Running>>,
}

struct Inner {
    context: A2aContext,
    entries: Mutex<Vec<Arc<dyn Pull>>>,
    api_keys: Mutex<Vec<SecretString>>,
    /// Kinds to pull at the engine's next turn.
    pending: Arc<AtomicU8>,
    wake: Arc<Notify>,
    /// Credentials were added while running: restart the listener.
    keys_changed: AtomicBool,
    safety_interval: Mutex<Duration>,
    reconnect: Mutex<crate::events::ReconnectPolicy>,
    listener: Mutex<Option<PersistentEventListener>>,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl fmt::Debug for CredentialWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialWatch")
            .field("credentials", &lock(&self.handle.inner.entries).len())
            .field(
                "safety_interval",
                &*lock(&self.handle.inner.safety_interval),
            )
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl A2aContext {
    /// A watch of A2A credentials over this context (see
    /// [`CredentialWatch`]).
    pub fn credential_watch(&self) -> CredentialWatch {
        CredentialWatch {
            handle: Arc::new(Handle {
                inner: Arc::new(Inner {
                    context: self.clone(),
                    entries: Mutex::default(),
                    api_keys: Mutex::default(),
                    pending: Arc::default(),
                    wake: Arc::default(),
                    keys_changed: AtomicBool::new(false),
                    safety_interval: Mutex::new(DEFAULT_SAFETY_INTERVAL),
                    reconnect: Mutex::default(),
                    listener: Mutex::new(None),
                }),
                running: tokio::sync::Mutex::new(None),
            }),
        }
    }
}

impl CredentialWatch {
    /// Watches the password of the account `api_key` is registered for.
    pub fn password(&self, api_key: impl ApiKey) -> Watched<SecretString> {
        self.add(api_key, KeyFormat::default(), PASSWORDS)
    }

    /// Watches the SSH private key of the account `api_key` is registered
    /// for, in `format`.
    pub fn private_key(&self, api_key: impl ApiKey, format: KeyFormat) -> Watched<SecretString> {
        self.add(api_key, format, PRIVATE_KEYS)
    }

    /// Watches the API key secrets of the account `api_key` is registered for.
    pub fn api_key_secret(&self, api_key: impl ApiKey) -> Watched<Vec<ApiKeySecret>> {
        self.add(api_key, KeyFormat::default(), API_KEY_SECRETS)
    }

    /// Pulls every credential this often when no event arrives (default
    /// [`DEFAULT_SAFETY_INTERVAL`]); from the next start on.
    pub fn safety_interval(self, every: Duration) -> Self {
        *lock(&self.handle.inner.safety_interval) = every.max(Duration::from_millis(10));
        self
    }

    /// How the A2A listener waits between reconnection attempts (default
    /// [`ReconnectPolicy::default`](crate::events::ReconnectPolicy), 1 s
    /// doubling to 60 s): what a watch takes to converge after an outage;
    /// from the next start on.
    pub fn reconnect_policy(self, policy: crate::events::ReconnectPolicy) -> Self {
        *lock(&self.handle.inner.reconnect) = policy;
        self
    }

    fn add<T: Credential>(&self, api_key: impl ApiKey, format: KeyFormat, kind: u8) -> Watched<T> {
        let api_key = SecretString::from(api_key.expose_api_key().trim().to_owned());
        let entry = Arc::new(Entry {
            api_key: api_key.clone(),
            format,
            kind,
            tx: watch::Sender::new(None),
            status: Mutex::default(),
        });
        let inner = &self.handle.inner;
        lock(&inner.entries).push(entry.clone() as Arc<dyn Pull>);
        let mut keys = lock(&inner.api_keys);
        if !keys
            .iter()
            .any(|k| k.expose_secret() == api_key.expose_secret())
        {
            keys.push(api_key);
            inner.keys_changed.store(true, Ordering::SeqCst);
        }
        drop(keys);
        // Pulled at once when running.
        inner.pending.fetch_or(kind, Ordering::SeqCst);
        inner.wake.notify_one();
        Watched { entry }
    }

    /// Pulls every credential, then keeps them current in the background.
    /// Returns the first failure of those pulls (nothing is left running
    /// then), or an error when it is running already.
    pub async fn start(&self) -> Result<()> {
        let inner = &self.handle.inner;
        let mut running = self.handle.running.lock().await;
        if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
            return Err(crate::events::EventsError::AlreadyRunning.into());
        }
        let entries: Vec<Arc<dyn Pull>> = lock(&inner.entries).clone();
        for entry in &entries {
            entry.pull(&inner.context).await?;
        }
        inner.pending.store(0, Ordering::SeqCst);
        inner.keys_changed.store(true, Ordering::SeqCst);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(inner.clone(), stop_rx));
        *running = Some(Running { stop, task });
        Ok(())
    }

    /// Stops the listener and the pulls; the values stay as they were.
    pub async fn stop(&self) {
        if let Some(r) = self.handle.running.lock().await.take() {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }

    /// The state of the A2A event listener (`Idle` when not running).
    pub fn listener_state(&self) -> ListenerState {
        lock(&self.handle.inner.listener)
            .as_ref()
            .map_or(ListenerState::Idle, PersistentEventListener::state)
    }

    /// The listener of the A2A hub while running (to watch its state or
    /// count its reconnects; its handlers belong to the watch).
    pub fn listener(&self) -> Option<PersistentEventListener> {
        lock(&self.handle.inner.listener).clone()
    }
}

/// A persistent listener of the A2A hub for `keys` that marks what to pull.
async fn listen(inner: &Inner) -> PersistentEventListener {
    let keys = lock(&inner.api_keys).clone();
    let listener = inner
        .context
        .persistent_event_listener(&keys)
        .with_reconnect_policy(lock(&inner.reconnect).clone());
    let (pending, wake) = (inner.pending.clone(), inner.wake.clone());
    listener.on_any(move |event: &crate::events::Event| {
        let kinds = kinds_of(&event.name);
        if kinds != 0 {
            pending.fetch_or(kinds, Ordering::SeqCst);
            wake.notify_one();
        }
    });
    let (pending, wake) = (inner.pending.clone(), inner.wake.clone());
    listener.on_state_change(move |change| {
        // Every connection, the first included: what happened while the
        // listener was away is not replayed.
        if change.state == ListenerState::Connected {
            pending.fetch_or(ALL, Ordering::SeqCst);
            wake.notify_one();
        }
    });
    // Fails only when already running, which a new listener is not.
    let _ = listener.start().await;
    listener
}

/// The engine: pulls what is pending, one credential at a time.
async fn run(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let every = *lock(&inner.safety_interval);
    let mut safety = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if inner.keys_changed.swap(false, Ordering::SeqCst) {
            let old = lock(&inner.listener).take();
            if let Some(old) = old {
                old.stop().await;
            }
            let listener = listen(&inner).await;
            *lock(&inner.listener) = Some(listener);
        }
        tokio::select! {
            biased;
            // Stopped, or every clone of the watch dropped.
            _ = stop.wait_for(|s| *s) => break,
            _ = inner.wake.notified() => {}
            _ = safety.tick() => {
                inner.pending.fetch_or(ALL, Ordering::SeqCst);
            }
        }
        let kinds = inner.pending.swap(0, Ordering::SeqCst);
        if kinds == 0 {
            continue;
        }
        let entries: Vec<Arc<dyn Pull>> = lock(&inner.entries).clone();
        for entry in entries.iter().filter(|e| e.kind() & kinds != 0) {
            // A failure is kept in the entry's status and logged.
            let _ = entry.pull(&inner.context).await;
        }
        if kinds == ALL {
            safety.reset();
        }
    }
    let listener = lock(&inner.listener).take();
    if let Some(listener) = listener {
        listener.stop().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_change_outside_a_runtime_is_an_error_not_a_panic() {
        let entry = Arc::new(Entry::<SecretString> {
            api_key: SecretString::from("k"),
            format: KeyFormat::default(),
            kind: PASSWORDS,
            tx: watch::Sender::new(None),
            status: Mutex::default(),
        });
        let watched = Watched { entry };
        assert!(matches!(watched.on_change(|_| {}), Err(Error::Config(_))));
    }

    #[test]
    fn events_name_the_kinds_they_change() {
        assert_eq!(kinds_of("AssetAccountPasswordUpdated"), PASSWORDS);
        assert_eq!(kinds_of("assetaccountsshkeyupdated"), PRIVATE_KEYS);
        assert_eq!(kinds_of("AccountApiKeySecretUpdated"), API_KEY_SECRETS);
        assert_eq!(kinds_of("UserCreated"), 0);
    }

    #[test]
    fn api_key_secrets_compare_by_their_secrets() {
        use sealed::Sealed;
        let secret = |id: i64, s: &str| -> ApiKeySecret {
            serde_json::from_value(
                serde_json::json!({"Id": id, "ClientId": "c", "ClientSecret": s}),
            )
            .unwrap()
        };
        let a = vec![secret(1, "x")];
        assert!(a.same(&vec![secret(1, "x")], API_KEY_SECRETS));
        assert!(!a.same(&vec![secret(1, "y")], API_KEY_SECRETS));
        assert!(!a.same(&vec![secret(2, "x")], API_KEY_SECRETS));
        assert!(!a.same(&vec![], API_KEY_SECRETS));
        assert!(SecretString::from("p").same(&SecretString::from("p"), PASSWORDS));
        assert!(!SecretString::from("p").same(&SecretString::from("q"), PASSWORDS));
    }

    /// An `openssh-key-v1` key: `cipher`, one public key, and a private
    /// section beginning with the check numbers `check`.
    fn openssh(cipher: &str, public: &[u8], check: u32, private: &[u8]) -> String {
        use base64::Engine as _;
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        let mut section = Vec::new();
        section.extend_from_slice(&check.to_be_bytes());
        section.extend_from_slice(&check.to_be_bytes());
        section.extend_from_slice(private);
        let mut blob = b"openssh-key-v1\0".to_vec();
        put(&mut blob, cipher.as_bytes());
        put(
            &mut blob,
            if cipher == "none" { b"none" } else { b"bcrypt" },
        );
        put(&mut blob, b"");
        blob.extend_from_slice(&1u32.to_be_bytes());
        put(&mut blob, public);
        put(&mut blob, &section);
        let text = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{text}\n-----END OPENSSH PRIVATE KEY-----\n")
    }

    #[test]
    fn the_same_openssh_key_exported_twice_is_no_change() {
        use sealed::Sealed;
        let key = |s: String| SecretString::from(s);
        let same = |a: String, b: String| key(a).same(&key(b), PRIVATE_KEYS);
        // Unencrypted: only the check numbers differ.
        assert!(same(
            openssh("none", b"pub", 1, b"priv"),
            openssh("none", b"pub", 2, b"priv")
        ));
        assert!(!same(
            openssh("none", b"pub", 1, b"priv"),
            openssh("none", b"pub", 1, b"other")
        ));
        assert!(!same(
            openssh("none", b"pub", 1, b"priv"),
            openssh("none", b"new", 1, b"priv")
        ));
        // Encrypted: the public key decides.
        assert!(same(
            openssh("aes256-ctr", b"pub", 1, b"x"),
            openssh("aes256-ctr", b"pub", 9, b"y")
        ));
        assert!(!same(
            openssh("aes256-ctr", b"pub", 1, b"x"),
            openssh("aes256-ctr", b"new", 1, b"x")
        ));
        // Not OpenSSH: byte for byte; and a password is never compared as a key.
        assert!(!same("PuTTY-A".into(), "PuTTY-B".into()));
        let (a, b) = (
            openssh("none", b"pub", 1, b"p"),
            openssh("none", b"pub", 2, b"p"),
        );
        assert!(!key(a).same(&key(b), PASSWORDS));
    }

    proptest::proptest! {
        /// Any text, OpenSSH-looking or not, compares without a panic.
        #[test]
        fn comparing_keys_never_panics(a in "\\PC{0,200}", noise in proptest::collection::vec(0u8..=255, 0..200)) {
            use base64::Engine as _;
            let b = format!(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA{}\n-----END OPENSSH PRIVATE KEY-----",
                base64::engine::general_purpose::STANDARD.encode(&noise)
            );
            let _ = same_private_key(&a, &b);
            let _ = same_private_key(&b, &b);
        }
    }
}
