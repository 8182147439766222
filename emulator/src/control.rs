//! [`Control`]: the test handle to the emulator's state and fault switches.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{ClientCertMode, MFA_OTP, MFA_PASSWORD, MFA_USER};
use crate::state::*;

/// Sign-in counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Successful `/RSTS/oauth2/token` answers per grant type (`password`,
    /// `client_credentials`, `authorization_code`, `device_code`).
    pub signins: BTreeMap<String, u64>,
    /// Calls of `core/v4/Token/LoginResponse` (successful or not).
    pub login_responses: u64,
}

/// A pending or finished device-code login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCodeInfo {
    /// The code a user would type at the verification page.
    pub user_code: String,
    /// `pending`, `approved`, `denied`, `redeemed` or `expired`.
    pub status: String,
    /// Current polling interval in seconds (grows with `slow_down`).
    pub interval: u64,
}

/// One backup upload as the emulator received it (content is counted and
/// hashed, never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Id of the backup entry created for it.
    pub id: String,
    /// Bytes received (file content only, multipart framing excluded).
    pub bytes: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

/// A cloneable handle to a running emulator's state and fault injection.
#[derive(Clone)]
pub struct Control {
    app: Arc<App>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("host", &self.app.host)
            .finish()
    }
}

impl Control {
    pub(crate) fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    pub(crate) fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Delays every SPP request (except `/emulator/...`) by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.app
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Puts the appliance in maintenance (`true`) or takes it out: while
    /// on, the core, appliance and a2a services answer 503 and the
    /// notification service reports the `Maintenance` state; the management
    /// service keeps answering.
    pub fn set_maintenance(&self, on: bool) {
        self.app.maintenance.store(on, Ordering::SeqCst);
    }

    /// Whether the appliance is in maintenance.
    pub fn maintenance(&self) -> bool {
        self.app.maintenance.load(Ordering::SeqCst)
    }

    /// Turns strict request validation on or off (see
    /// [`EmulatorConfig::strict_validation`](crate::model::EmulatorConfig)).
    pub fn set_strict_validation(&self, strict: bool) {
        self.app.strict_validation.store(strict, Ordering::SeqCst);
    }

    /// Whether requests are validated against the documents.
    pub fn strict_validation(&self) -> bool {
        self.app.strict_validation.load(Ordering::SeqCst)
    }

    /// Answers the next `count` SPP requests with `status` (a 5xx) and the
    /// appliance's error body.
    pub fn fail_next(&self, count: u64, status: u16) {
        self.app.fail_status.store(status as u32, Ordering::SeqCst);
        self.app.fail_remaining.store(count, Ordering::SeqCst);
    }

    /// How many injected failures are still to come.
    pub fn pending_failures(&self) -> u64 {
        self.app.fail_remaining.load(Ordering::SeqCst)
    }

    /// Closes every SignalR websocket abruptly (no close frame).
    pub fn drop_websockets(&self) {
        self.app.ws_drop.send_modify(|g| *g += 1);
    }

    /// Closes every SignalR hub connection with a close message
    /// `{"type":7,"error":error,"allowReconnect":..}` (the field omitted when
    /// `allow_reconnect` is `None`), then a websocket close frame.
    pub fn close_websockets(&self, error: &str, allow_reconnect: Option<bool>) {
        let mut msg = serde_json::json!({"type": 7, "error": error});
        if let Some(allow) = allow_reconnect {
            msg["allowReconnect"] = serde_json::Value::Bool(allow);
        }
        self.app.ws_close.send_modify(|(g, m)| {
            *g += 1;
            *m = msg;
        });
    }

    /// An outage of the A2A hub (`/service/a2a/signalr`) for `duration` from
    /// now, as when the appliance's A2A event service is down: the hub's
    /// open connections drop at once (no close frame, like
    /// [`drop_websockets`](Self::drop_websockets), but only the A2A hub's),
    /// and until the outage ends its negotiate answers 503 and its websocket
    /// upgrades are refused with 503. Everything else keeps working: the
    /// user event hub, core (rotations, which publish their A2A events to
    /// no one during the outage) and A2A credential retrieval. The outage
    /// ends by itself; a new call replaces the end (`Duration::ZERO` ends it
    /// now). Over HTTP: `POST /emulator/a2a-hub/outage {"ms": 10000}`.
    pub fn a2a_hub_outage(&self, duration: Duration) {
        let until = (!duration.is_zero()).then(|| Instant::now() + duration);
        *self
            .app
            .a2a_hub_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = until;
        if until.is_some() {
            self.app.a2a_hub_drop.send_modify(|g| *g += 1);
        }
    }

    /// Number of SPP cluster members.
    pub fn cluster_size(&self) -> usize {
        self.app.cluster().members.len()
    }

    /// How many configuration writes replicas refused (403 / 60418) since
    /// the start: a client that routes writes to the primary keeps it at 0.
    pub fn replica_write_refusals(&self) -> u64 {
        self.app
            .replica_refusals
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Index of the cluster's primary.
    pub fn cluster_primary(&self) -> usize {
        self.app.cluster().leader
    }

    /// Stops (`false`) or starts (`true`) cluster member `index`'s
    /// listener; the change happens right after this returns (a stopped
    /// member refuses connections and its open ones close once answered). Prefer
    /// `Emulator::stop_member`, which waits for it.
    pub fn set_member_running(&self, index: usize, running: bool) -> Result<(), String> {
        let mut cluster = self.app.cluster();
        let member = cluster
            .members
            .get_mut(index)
            .ok_or_else(|| format!("no cluster member {index}"))?;
        member.running = running;
        drop(cluster);
        self.app.cluster_changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Locks the cluster for `duration`, as a cluster-wide operation does
    /// (`operation` is a `ClusterOperation` value such as `"Patch"`):
    /// `Cluster/Status` reports it, and core configuration writes on every
    /// member answer 400 / 60910 until it ends. A zero duration unlocks.
    pub fn lock_cluster(&self, operation: &str, duration: Duration) {
        let mut cluster = self.app.cluster();
        if duration.is_zero() {
            cluster.lock = None;
        } else {
            cluster.lock_for(operation, duration);
        }
    }

    /// What is left of the A2A hub's outage (`None` when the hub is up).
    pub fn a2a_hub_outage_remaining(&self) -> Option<Duration> {
        self.app.a2a_hub_outage_left()
    }

    /// When `true`, hubs stop sending pings and events and ignore what
    /// clients send, keeping the connections open (a dead connection).
    pub fn set_silent(&self, silent: bool) {
        self.app.silent.store(silent, Ordering::SeqCst);
    }

    /// TLS handshakes completed on the SPP port so far: `(full, resumed)`,
    /// where `resumed` counts connections that resumed an earlier session.
    pub fn tls_handshakes(&self) -> (u64, u64) {
        let h = &self.app.handshakes;
        (
            h.full.load(Ordering::SeqCst),
            h.resumed.load(Ordering::SeqCst),
        )
    }

    /// Open SignalR websockets (after the handshake).
    pub fn websocket_count(&self) -> usize {
        self.app.websockets.load(Ordering::SeqCst)
    }

    /// Interval of server pings for websockets opened from now on.
    pub fn set_ping_interval(&self, interval: Duration) {
        self.app
            .ping_interval_ms
            .store(interval.as_millis() as u64, Ordering::SeqCst);
    }

    /// How long SignalR long polls wait from now on before answering 200
    /// with an empty body.
    pub fn set_long_poll_timeout(&self, timeout: Duration) {
        self.app
            .long_poll_timeout_ms
            .store(timeout.as_millis() as u64, Ordering::SeqCst);
    }

    /// SignalR connections over Server-Sent Events or long polling whose hub
    /// is running.
    pub fn http_hub_connection_count(&self) -> usize {
        self.app
            .hub_http
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|c| !c.ended.load(Ordering::SeqCst))
            .count()
    }

    /// Forces negotiate to answer version 0 (`connectionId` only) even when
    /// the client asks for version 1.
    pub fn set_negotiate_v0(&self, v0: bool) {
        self.app.negotiate_v0.store(v0, Ordering::SeqCst);
    }

    /// Expires every user token and rSTS access token now (they answer 401).
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        let mut db = self.app.db();
        for t in db.tokens.values_mut() {
            t.expires = now;
        }
        for t in db.sts_tokens.values_mut() {
            t.expires = now;
        }
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self
            .app
            .token_lifetime
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = lifetime;
    }

    /// The lifetime of new tokens.
    pub fn token_lifetime(&self) -> Duration {
        self.app.token_lifetime()
    }

    /// Switches how new SPP connections ask for client certificates.
    pub fn set_client_cert_mode(&self, mode: ClientCertMode) {
        self.app
            .cert_mode
            .store(crate::tls::mode_to_u8(mode), Ordering::SeqCst);
    }

    /// The current client-certificate mode.
    pub fn client_cert_mode(&self) -> ClientCertMode {
        crate::tls::mode_from_u8(self.app.cert_mode.load(Ordering::SeqCst))
    }

    /// Sets the `Allowed OAuth2 Grant Types` setting (names such as
    /// `AuthorizationCode`, `ClientCredentials`, `ResourceOwner`, `DeviceCode`,
    /// `Implicit`). Unknown names are rejected.
    pub fn set_allowed_grant_types(&self, grants: &[&str]) -> Result<(), String> {
        for g in grants {
            if !GRANT_NAMES.iter().any(|n| n.eq_ignore_ascii_case(g)) {
                return Err(format!("unknown grant type {g}"));
            }
        }
        let value = grants.join(", ");
        let mut db = self.app.db();
        if let Some(s) = db
            .settings
            .iter_mut()
            .find(|s| s["Name"].as_str() == Some(GRANT_SETTING))
        {
            s["Value"] = Value::String(value);
        }
        Ok(())
    }

    /// Adds one grant type to the setting.
    pub fn enable_grant(&self, grant: &str) -> Result<(), String> {
        let mut current = self.allowed_grant_types();
        if !current.iter().any(|g| g.eq_ignore_ascii_case(grant)) {
            current.push(grant.to_string());
        }
        let refs: Vec<&str> = current.iter().map(String::as_str).collect();
        self.set_allowed_grant_types(&refs)
    }

    /// Removes one grant type from the setting.
    pub fn disable_grant(&self, grant: &str) {
        let current: Vec<String> = self
            .allowed_grant_types()
            .into_iter()
            .filter(|g| !g.eq_ignore_ascii_case(grant))
            .collect();
        let refs: Vec<&str> = current.iter().map(String::as_str).collect();
        let _ = self.set_allowed_grant_types(&refs);
    }

    /// The grant types currently allowed, as the setting spells them.
    pub fn allowed_grant_types(&self) -> Vec<String> {
        let db = self.app.db();
        db.setting(GRANT_SETTING)
            .and_then(|s| s["Value"].as_str())
            .map(|v| {
                v.split([',', ';', ' '])
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .filter_map(|g| {
                        GRANT_NAMES
                            .iter()
                            .find(|n| n.eq_ignore_ascii_case(g))
                            .map(|n| n.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sign-in counters.
    pub fn counters(&self) -> Counters {
        Counters {
            signins: self
                .app
                .signins
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            login_responses: self.app.login_responses.load(Ordering::SeqCst),
        }
    }

    /// Successful token answers of one grant type (`password`,
    /// `client_credentials`, `authorization_code`, `device_code`).
    pub fn signins(&self, grant: &str) -> u64 {
        self.counters().signins.get(grant).copied().unwrap_or(0)
    }

    /// Successful token answers over all grant types.
    pub fn total_signins(&self) -> u64 {
        self.counters().signins.values().sum()
    }

    /// Calls of `Token/LoginResponse`.
    pub fn login_response_calls(&self) -> u64 {
        self.app.login_responses.load(Ordering::SeqCst)
    }

    /// Sets every counter back to zero.
    pub fn reset_counters(&self) {
        self.app
            .signins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.app.login_responses.store(0, Ordering::SeqCst);
    }

    /// Publishes an event to the hubs as `{"Name": name, "Data": data}`.
    pub fn emit_event(&self, name: &str, data: Value) {
        self.app.emit(name, data, None);
    }

    /// Publishes an A2A event concerning one account (the A2A hub forwards it
    /// to listeners whose keys cover that account).
    pub fn emit_a2a_event(&self, name: &str, account_id: i64, data: Value) {
        self.app.emit(name, data, Some(account_id));
    }

    /// Creates `count` local users named `SeedUser00001`, ... (password
    /// `SeedPassword1!`) and returns their ids. No events are published.
    pub fn seed_users(&self, count: usize) -> Vec<i64> {
        let mut db = self.app.db();
        let start = db.users.len();
        (0..count)
            .map(|i| {
                let id = db.id();
                let name = format!("SeedUser{:05}", start + i + 1);
                let mut u = new_user(id, &name, LOCAL_PROVIDER, &name, &[]);
                u["EmailAddress"] = Value::String(format!("{}@example.com", name.to_lowercase()));
                u["Disabled"] = Value::Bool(i % 7 == 6);
                db.users.insert(id, u);
                db.passwords.insert(id, "SeedPassword1!".to_string());
                id
            })
            .collect()
    }

    /// Id of a user by name (any provider).
    pub fn user_id(&self, name: &str) -> Option<i64> {
        self.app.db().users.iter().find_map(|(id, u)| {
            u["Name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
                .then_some(*id)
        })
    }

    /// An rSTS access token for the user `name` (local provider), as a
    /// sign-in of that user would hand out: what `Token/LoginResponse`
    /// exchanges for a user token. For tests that call that exchange
    /// themselves; `None` for an unknown user.
    pub fn issue_sts_token(&self, name: &str) -> Option<String> {
        let user_id = self.user_id(name)?;
        Some(self.app.issue_sts_token(user_id, "local").0)
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.app.db().users.len()
    }

    /// Sets a user's password directly.
    pub fn set_user_password(&self, name: &str, password: &str) -> bool {
        match self.user_id(name) {
            Some(id) => {
                self.app.db().passwords.insert(id, password.to_string());
                true
            }
            None => false,
        }
    }

    /// The MFA user's name, password and one-time password.
    pub fn mfa_user(&self) -> (&'static str, &'static str, &'static str) {
        (MFA_USER, MFA_PASSWORD, MFA_OTP)
    }

    /// Id of the seeded password account.
    pub fn password_account_id(&self) -> i64 {
        self.app.password_account_id
    }

    /// Id of the seeded SSH-key account.
    pub fn ssh_key_account_id(&self) -> i64 {
        self.app.ssh_account_id
    }

    /// Id of the seeded A2A registration.
    pub fn a2a_registration_id(&self) -> i64 {
        self.app.registration_id
    }

    /// The seeded registration's access-request broker API key.
    pub fn broker_api_key(&self) -> String {
        self.app
            .db()
            .brokers
            .get(&self.app.registration_id)
            .and_then(|b| b["ApiKey"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Ends the release window of every pending or available access request
    /// now, as if its duration had passed: each moves to `Expired` (with
    /// `WasExpired` and `NeedsAcknowledgement`) and `AccessRequestExpired` is
    /// published. Returns how many expired.
    pub fn expire_access_requests(&self) -> usize {
        let past = (chrono::Utc::now() - chrono::Duration::seconds(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        {
            let mut db = self.app.db();
            for r in db.access_requests.values_mut() {
                if EXPIRING_STATES.contains(&r["State"].as_str().unwrap_or_default()) {
                    r["ExpiresOn"] = serde_json::json!(past);
                }
            }
        }
        self.app.expire_access_requests()
    }

    /// The current password of an account.
    pub fn account_password(&self, account_id: i64) -> Option<String> {
        self.app.db().account_passwords.get(&account_id).cloned()
    }

    /// The public key (`ssh-rsa ...`) of an account's SSH key.
    pub fn account_public_key(&self, account_id: i64) -> Option<String> {
        self.app
            .db()
            .account_ssh_keys
            .get(&account_id)
            .map(|k| k.key.public_key())
    }

    /// Device-code logins, newest last.
    pub fn device_codes(&self) -> Vec<DeviceCodeInfo> {
        let now = Instant::now();
        self.app
            .db()
            .device_codes
            .values()
            .map(|d| DeviceCodeInfo {
                user_code: d.user_code.clone(),
                status: if d.expires <= now && d.status == DeviceStatus::Pending {
                    "expired".into()
                } else {
                    match d.status {
                        DeviceStatus::Pending => "pending".into(),
                        DeviceStatus::Approved(_) => "approved".into(),
                        DeviceStatus::Denied => "denied".into(),
                        DeviceStatus::Redeemed => "redeemed".into(),
                    }
                },
                interval: d.interval,
            })
            .collect()
    }

    /// Approves a pending device code as `user` (a user of the provider named
    /// in the device login's scope).
    pub fn approve_device_code(&self, user_code: &str, user: &str) -> Result<(), String> {
        let mut db = self.app.db();
        let (key, provider) = db
            .device_codes
            .iter()
            .find(|(_, d)| d.user_code.eq_ignore_ascii_case(user_code))
            .map(|(k, d)| (k.clone(), d.provider.clone()))
            .ok_or_else(|| format!("no device code {user_code}"))?;
        let provider_id = provider_by_rsts_id(&provider).unwrap_or(LOCAL_PROVIDER);
        let uid = db
            .find_user(provider_id, user)
            .ok_or_else(|| format!("no user {user} in provider {provider}"))?;
        let d = db.device_codes.get_mut(&key).expect("present");
        if d.status != DeviceStatus::Pending {
            return Err(format!("device code {user_code} is not pending"));
        }
        d.status = DeviceStatus::Approved(uid);
        Ok(())
    }

    /// Denies a pending device code.
    pub fn deny_device_code(&self, user_code: &str) -> Result<(), String> {
        let mut db = self.app.db();
        let d = db
            .device_codes
            .values_mut()
            .find(|d| d.user_code.eq_ignore_ascii_case(user_code))
            .ok_or_else(|| format!("no device code {user_code}"))?;
        if d.status != DeviceStatus::Pending {
            return Err(format!("device code {user_code} is not pending"));
        }
        d.status = DeviceStatus::Denied;
        Ok(())
    }

    /// Makes the next poll of a device code answer `slow_down` (and raise
    /// the code's interval by 5 s), as an appliance under load would.
    pub fn slow_down_device_code(&self, user_code: &str) -> Result<(), String> {
        let mut db = self.app.db();
        let d = db
            .device_codes
            .values_mut()
            .find(|d| d.user_code.eq_ignore_ascii_case(user_code))
            .ok_or_else(|| format!("no device code {user_code}"))?;
        d.slow_down_next = true;
        Ok(())
    }

    /// Expires a device code now.
    pub fn expire_device_code(&self, user_code: &str) -> Result<(), String> {
        let mut db = self.app.db();
        let d = db
            .device_codes
            .values_mut()
            .find(|d| d.user_code.eq_ignore_ascii_case(user_code))
            .ok_or_else(|| format!("no device code {user_code}"))?;
        d.expires = Instant::now();
        Ok(())
    }

    /// Polling interval (seconds) announced by device logins from now on.
    pub fn set_device_code_interval(&self, seconds: u64) {
        self.app.device_interval.store(seconds, Ordering::SeqCst);
    }

    /// Adds a backup of `size` bytes (content generated on download) and
    /// returns its id.
    pub fn add_backup(&self, size: u64) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let meta = backup_json(&id, size, "Complete", self.app.admin_id);
        self.app.db().backups.insert(
            id.clone(),
            Backup {
                meta,
                size,
                seed: rand::random(),
            },
        );
        id
    }

    /// SHA-256 (hex) of what downloading the backup yields; generates the
    /// content, so mind the size.
    pub fn backup_sha256(&self, id: &str) -> Option<String> {
        let b = self.app.db().backups.get(id).cloned()?;
        let mut state = b.seed | 1;
        let mut left = b.size;
        let mut h = Sha256::new();
        while left > 0 {
            let n = left.min(1 << 20) as usize;
            h.update(crate::state::backup_chunk(&mut state, n));
            left -= n as u64;
        }
        Some(hex::encode(h.finalize()))
    }

    /// Ids of all backups.
    pub fn backup_ids(&self) -> Vec<String> {
        self.app.db().backups.keys().cloned().collect()
    }

    /// Backup uploads received so far.
    pub fn uploads(&self) -> Vec<UploadRecord> {
        self.app
            .uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|u| UploadRecord {
                id: u.id.clone(),
                bytes: u.bytes,
                sha256: u.sha256.clone(),
            })
            .collect()
    }
}
