//! The fake Safeguard for Privileged Sessions (SPS) REST API.
//!
//! Owned by the SPS work; the SPP side mounts [`SpsEmulator::router`] on the
//! SPS port.
//!
//! What it models, after the vendor's REST API guide:
//!
//! * `GET /api/authentication` with HTTP Basic credentials (UTF-8), optional
//!   `?login_method=local|ldap`, or `?type=x509` with the client certificate of
//!   the TLS connection (mapped to a user by thumbprint, see
//!   [`SpsEmulator::add_certificate_user`], or by a subject `CN` equal to a user
//!   name); `GET /api/authentication/login_methods` anonymously;
//!   `DELETE /api/authentication` signs out. Success sets the `session_id`
//!   cookie, which expires after 20 minutes idle
//!   ([`SpsEmulator::set_session_idle_timeout`]).
//! * `/api/configuration`: branches, keyed lists of objects and settings nodes
//!   (`management/change_management`, `passwords` (write-only),
//!   `policies/{time_policies,content_policies,local_user_databases}`,
//!   `{rdp,ssh}/{channel_policies,options}`), with the built-in time policy
//!   `-100` and channel policies `-20100` (RDP) and `-10000` (SSH). References
//!   are shown as `{key, meta}` and accepted only as bare keys; every field
//!   must be sent (empty lists too); built-in and referenced objects cannot be
//!   deleted. `PUT` on a list with the list of its keys reorders it. Lists page
//!   with `limit` (default 500) and `offset`.
//! * `/api/transaction`: `POST` opens (a body or `Content-Length` is required,
//!   else 411), `GET` shows the status (new shape, or the old
//!   `{"transaction": {"status"}}` with [`SpsEmulator::set_legacy_transaction_status`]),
//!   `GET /api/transaction/changes` the changelog, `PUT {"status": "commit",
//!   "message"}` commits, `PUT {"status": "rollback"}` or `DELETE` rolls back.
//!   A transaction times out ([`SpsEmulator::set_transaction_timeout`], 10
//!   minutes by default; `meta.remaining_seconds`). The first change of a
//!   transaction locks the configuration until it ends: other sessions then
//!   get `WebGuiOrRpcApiConfigInProgress` when they open a transaction or
//!   change something (as they do while the web GUI lock is simulated,
//!   [`SpsEmulator::set_web_gui_lock`]). A commit whose transaction started
//!   before another session's commit is replayed on the new configuration:
//!   `MidAirCollision` when both touched the same object (or list order),
//!   `MidAirCollisionSemanticError` when the replay is inconsistent.
//! * `/api/audit/sessions`: list (`q` in a Lucene subset over `protocol`,
//!   `user`, `client_ip`, `server_ip`, `verdict`, `session_id`; `fields`),
//!   details, `/content/?q=` search (missing or empty `q` answers an empty
//!   list, as the guide says), `/events`, `/audit_trail` (streamed download),
//!   `POST /api/audit/sessions/_snapshot` and `GET .../_snapshot/{id}`.
//! * `/api/info`, `/api/user_info`.
//! * Joining SPS to SPP (`join`): `configuration/local_services/cluster`,
//!   `configuration/network/nics/nic{1,2,3}`, `GET /api/cluster/status`,
//!   `POST /api/cluster/promote` (in a transaction, effective on commit),
//!   `POST /api/cluster/spp`, checked against the SPP side of the process
//!   (`SpsEmulator::link_spp`: its members, certificate and tokens) and
//!   recorded in SPP's `Cluster/SessionModules`;
//!   [`SpsEmulator::set_promotable`] and
//!   [`SpsFault::ClusterStatusUnavailable`] make steps fail.
//! * Every error code of the guide, with its status and the body
//!   `{"error": {"type", "message", "details"}, "meta"}`; internal errors
//!   (`ConfigTreeNotAvailable`, `AuthorizationError`,
//!   `TransactionCommitError`) through [`SpsEmulator::inject_fault`]; any
//!   `Expect:` header gets 417, like the appliance's front end.

mod audit;
mod config;
mod error;
mod join;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use self::audit::{AuditSession, Query};
use self::config::{ChangeOp, Config, NodeKind, Schema, WriteError};
use self::error::ApiError;
pub use self::error::SpsErrorCode;
pub(crate) use self::join::SppLink;
use crate::tls::PeerCertificate;

/// Settings of the fake SPS.
#[derive(Clone, Debug)]
pub struct SpsConfig {
    /// The seeded administrator's user name.
    pub user: String,
    /// The seeded administrator's password.
    pub password: String,
}

impl Default for SpsConfig {
    fn default() -> Self {
        Self {
            user: "admin".into(),
            password: "Sps-Admin1!".into(),
        }
    }
}

/// What a user of the fake SPS may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpsRole {
    /// Everything.
    Admin,
    /// Read the configuration; no changes, no transaction, no audit data
    /// (those answer 403 `Unauthorized`).
    ReadOnly,
}

/// A one-shot internal failure, for the error codes no valid request causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpsFault {
    /// The next `/api/configuration` request gets 400 `ConfigTreeNotAvailable`.
    ConfigTreeNotAvailable,
    /// The next authenticated request gets 500 `AuthorizationError`.
    AuthorizationError,
    /// The next commit gets 500 `TransactionCommitError` (the transaction stays open).
    TransactionCommitError,
    /// The next `GET /api/cluster/status` gets 400 `ConfigTreeNotAvailable`.
    ClusterStatusUnavailable,
}

const DEFAULT_LIMIT: usize = 500;
const MAX_BODY: usize = 8 * 1024 * 1024;
const TRAIL_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
struct UserRec {
    password: String,
    role: SpsRole,
}

#[derive(Debug)]
struct Txn {
    working: Config,
    base_version: u64,
    changes: Vec<ChangeOp>,
    deadline: Instant,
    /// `POST /api/cluster/promote` ran in this transaction: the node becomes
    /// the central management node when it commits.
    promote: bool,
}

#[derive(Debug)]
struct Session {
    user: String,
    role: SpsRole,
    login_method: String,
    last_seen: Instant,
    txn: Option<Txn>,
}

#[derive(Debug)]
struct State {
    users: HashMap<String, UserRec>,
    cert_users: HashMap<String, String>,
    sessions: HashMap<String, Session>,
    committed: Config,
    version: u64,
    modified: HashMap<String, u64>,
    lock: Option<String>,
    gui_lock: bool,
    clock_offset: Duration,
    idle_timeout: Duration,
    txn_timeout: Duration,
    legacy_status: bool,
    implicit_txn: bool,
    faults: Vec<SpsFault>,
    audit: Vec<AuditSession>,
    snapshots: HashMap<String, Vec<usize>>,
    logins: u64,
    /// This node's id in an SPS cluster.
    node_id: String,
    /// This node is the central management node (promoted).
    promoted: bool,
    /// `POST /api/cluster/promote` is accepted ([`SpsEmulator::set_promotable`]).
    promotable: bool,
    /// The SPP address this node was joined to.
    joined_spp: Option<String>,
}

impl State {
    /// Whether clustering is on in the committed configuration
    /// (`local_services/cluster`).
    fn clustering_enabled(&self) -> bool {
        self.committed
            .settings
            .get("local_services/cluster")
            .and_then(|c| c.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// The fake SPS state.
#[derive(Debug)]
pub struct SpsEmulator {
    config: SpsConfig,
    schema: Schema,
    state: Mutex<State>,
    /// The SPP side of the same process, for `POST /api/cluster/spp`.
    spp: OnceLock<SppLink>,
}

/// A parsed request.
struct Ctx {
    method: Method,
    path: String,
    segs: Vec<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
    peer: Option<PeerCertificate>,
}

impl Ctx {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn seg(&self, i: usize) -> Option<&str> {
        self.segs.get(i).map(String::as_str)
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Err(ApiError::new(
                SpsErrorCode::InvalidRequestBody,
                "The request body is empty; a JSON value is expected",
            )
            .path(&self.path));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::new(
                SpsErrorCode::InvalidRequestBody,
                format!("The request body is not a properly encoded JSON value: {e}"),
            )
            .path(&self.path)
        })
    }
}

fn parent_of(path: &str) -> Value {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) | None => Value::Null,
        Some(i) => Value::String(trimmed[..i].to_string()),
    }
}

fn method_error(method: &Method, path: &str) -> ApiError {
    let (code, what) = match *method {
        Method::GET => (SpsErrorCode::GetNotAllowed, "Querying"),
        Method::POST => (SpsErrorCode::PostNotAllowed, "Posting to"),
        Method::PUT => (SpsErrorCode::PutNotAllowed, "Replacing"),
        Method::DELETE => (SpsErrorCode::DeleteNotAllowed, "Deleting"),
        _ => return unsupported(method, path),
    };
    ApiError::new(code, format!("{what} {path} is not supported")).path(path)
}

fn unsupported(method: &Method, path: &str) -> ApiError {
    ApiError::new(
        SpsErrorCode::UnsupportedMethod,
        format!("The method {method} is not supported on {path}"),
    )
    .details(json!({"method": method.as_str(), "path": path}))
}

fn json_resp(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

impl SpsEmulator {
    /// Creates the fake SPS with its factory configuration and a few recorded
    /// sessions.
    pub fn new(config: SpsConfig) -> Arc<Self> {
        let schema = Schema::new();
        let committed = Config::factory(&schema);
        let mut users = HashMap::new();
        users.insert(
            config.user.clone(),
            UserRec {
                password: config.password.clone(),
                role: SpsRole::Admin,
            },
        );
        let state = State {
            users,
            cert_users: HashMap::new(),
            sessions: HashMap::new(),
            committed,
            version: 1,
            modified: HashMap::new(),
            lock: None,
            gui_lock: false,
            clock_offset: Duration::ZERO,
            idle_timeout: Duration::from_secs(20 * 60),
            txn_timeout: Duration::from_secs(10 * 60),
            legacy_status: false,
            implicit_txn: false,
            faults: Vec::new(),
            audit: (0..5).map(AuditSession::seeded).collect(),
            snapshots: HashMap::new(),
            logins: 0,
            node_id: uuid::Uuid::new_v4().to_string(),
            promoted: false,
            promotable: true,
            joined_spp: None,
        };
        Arc::new(Self {
            config,
            schema,
            state: Mutex::new(state),
            spp: OnceLock::new(),
        })
    }

    /// The seeded administrator's user name.
    pub fn user(&self) -> &str {
        &self.config.user
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) a user.
    pub fn add_user(&self, user: &str, password: &str, role: SpsRole) {
        self.lock().users.insert(
            user.to_string(),
            UserRec {
                password: password.to_string(),
                role,
            },
        );
    }

    /// Lets the client certificate with this SHA-1 thumbprint (hex, any case)
    /// sign in with `type=x509` as `user`.
    pub fn add_certificate_user(&self, thumbprint: &str, user: &str) {
        self.lock()
            .cert_users
            .insert(thumbprint.to_ascii_uppercase(), user.to_string());
    }

    /// Sets the idle time after which a `session_id` stops working (20 minutes by default).
    pub fn set_session_idle_timeout(&self, timeout: Duration) {
        self.lock().idle_timeout = timeout;
    }

    /// Sets how long a transaction may stay open (10 minutes by default).
    pub fn set_transaction_timeout(&self, timeout: Duration) {
        self.lock().txn_timeout = timeout;
    }

    /// Moves the emulator's clock forward (session and transaction expiry).
    pub fn advance_clock(&self, by: Duration) {
        self.lock().clock_offset += by;
    }

    /// Simulates a configuration change in progress in the web GUI: opening a
    /// transaction or changing anything gets `WebGuiOrRpcApiConfigInProgress`.
    pub fn set_web_gui_lock(&self, locked: bool) {
        self.lock().gui_lock = locked;
    }

    /// Answers `GET /api/transaction` in the older firmware's shape
    /// `{"transaction": {"status": ..}}`.
    pub fn set_legacy_transaction_status(&self, legacy: bool) {
        self.lock().legacy_status = legacy;
    }

    /// Opens a transaction implicitly on the first change (newer firmware)
    /// instead of answering `NoTransaction`.
    pub fn set_implicit_transactions(&self, implicit: bool) {
        self.lock().implicit_txn = implicit;
    }

    /// Sets the committed `require_commitlog` switch directly.
    pub fn set_require_commit_message(&self, required: bool) {
        let mut st = self.lock();
        st.committed.settings.insert(
            "management/change_management".into(),
            json!({ "require_commitlog": required }),
        );
        st.version += 1;
    }

    /// Arms a one-shot internal failure.
    pub fn inject_fault(&self, fault: SpsFault) {
        self.lock().faults.push(fault);
    }

    /// Connects the SPP side of the same process (done once by the crate
    /// root): `POST /api/cluster/spp` checks the token, the address and the
    /// chain against it and records the session module there.
    pub(crate) fn link_spp(&self, link: SppLink) {
        let _ = self.spp.set(link);
    }

    /// Whether `POST /api/cluster/promote` is accepted (default true); when
    /// false it answers 400 `SemanticError`, as a node that cannot become
    /// the central management node.
    pub fn set_promotable(&self, promotable: bool) {
        self.lock().promotable = promotable;
    }

    /// This node is the central management node of its SPS cluster.
    pub fn is_promoted(&self) -> bool {
        self.lock().promoted
    }

    /// Whether clustering is enabled in the committed configuration
    /// (`local_services/cluster`).
    pub fn clustering_enabled(&self) -> bool {
        self.lock().clustering_enabled()
    }

    /// The SPP address this node was joined to (`POST /api/cluster/spp`).
    pub fn joined_spp(&self) -> Option<String> {
        self.lock().joined_spp.clone()
    }

    /// This node's id in its SPS cluster (the `NodeId` SPP lists).
    pub fn node_id(&self) -> String {
        self.lock().node_id.clone()
    }

    /// Adds `count` objects named `{prefix}-{n}` to a list of the committed
    /// configuration (`list` relative to `/api/configuration`, e.g.
    /// `policies/time_policies`), for paging tests. Returns false when the
    /// list does not exist or only takes objects this helper cannot make.
    pub fn seed_objects(&self, list: &str, prefix: &str, count: usize) -> bool {
        let body = |name: String| match list {
            "policies/time_policies" => Some(json!({"name": name, "days": []})),
            "policies/content_policies" => Some(json!({"name": name, "rules": []})),
            "policies/local_user_databases" => Some(json!({"name": name, "users": []})),
            "rdp/channel_policies" | "ssh/channel_policies" => {
                Some(json!({"name": name, "rules": []}))
            }
            _ => None,
        };
        if !matches!(self.schema.node(list), Some(NodeKind::List { .. })) {
            return false;
        }
        let mut st = self.lock();
        let mut objects = Vec::with_capacity(count);
        for n in 0..count {
            match body(format!("{prefix}-{n}")) {
                Some(b) => objects.push((uuid::Uuid::new_v4().to_string(), b)),
                None => return false,
            }
        }
        st.committed.list_mut(list).extend(objects);
        st.version += 1;
        let version = st.version;
        st.modified.insert(list.to_string(), version);
        true
    }

    /// Adds `count` more recorded sessions (there are 5 at start).
    pub fn seed_audit_sessions(&self, count: usize) {
        let mut st = self.lock();
        let start = st.audit.len() as u64;
        for n in start..start + count as u64 {
            st.audit.push(AuditSession::seeded(n));
        }
    }

    /// The ids of the recorded sessions, in list order.
    pub fn audit_session_ids(&self) -> Vec<String> {
        self.lock().audit.iter().map(|s| s.id.clone()).collect()
    }

    /// How many successful sign-ins there have been.
    pub fn login_count(&self) -> u64 {
        self.lock().logins
    }

    /// How many sessions are signed in (not expired).
    pub fn active_sessions(&self) -> usize {
        let mut st = self.lock();
        let now = Instant::now() + st.clock_offset;
        housekeeping(&mut st, now);
        st.sessions.len()
    }

    /// The committed configuration object at `path` (relative to
    /// `/api/configuration`, e.g. `rdp/channel_policies/<key>`), in its stored
    /// bare-key form; `None` when absent.
    pub fn committed_object(&self, path: &str) -> Option<Value> {
        let st = self.lock();
        if let Some(v) = st.committed.settings.get(path) {
            return Some(v.clone());
        }
        let (list, key) = path.rsplit_once('/')?;
        st.committed.object(list, key).cloned()
    }

    /// The routes under `/api/`, plus the HTTP face of the test controls
    /// under `/emulator/sps/` (see [`SpsEmulator::control`]).
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/api", any(handle))
            .route("/api/", any(handle))
            .route("/api/{*rest}", any(handle))
            .route("/emulator/sps/{action}", any(control_handle))
            .with_state(self.clone())
    }

    /// Applies a test control by name, as `POST /emulator/sps/{action}` with
    /// a JSON body does, so that an out-of-process emulator can be driven:
    ///
    /// | action | body |
    /// |---|---|
    /// | `advance_clock` | `{"seconds": n}` |
    /// | `session_idle_timeout` | `{"seconds": n}` |
    /// | `transaction_timeout` | `{"seconds": n}` |
    /// | `web_gui_lock` | `{"locked": bool}` |
    /// | `legacy_transaction_status` | `{"enabled": bool}` |
    /// | `implicit_transactions` | `{"enabled": bool}` |
    /// | `require_commit_message` | `{"required": bool}` |
    /// | `fault` | `{"fault": "ConfigTreeNotAvailable" \| "AuthorizationError" \| "TransactionCommitError" \| "ClusterStatusUnavailable"}` |
    /// | `promotable` | `{"enabled": bool}` |
    /// | `seed_objects` | `{"list": "policies/time_policies", "prefix": "p", "count": n}` |
    /// | `seed_audit_sessions` | `{"count": n}` |
    /// | `add_user` | `{"user", "password", "role": "admin" \| "read_only"}` |
    /// | `add_certificate_user` | `{"thumbprint", "user"}` |
    /// | `state` | (any) → `{"login_count", "active_sessions", "audit_session_ids"}` |
    pub fn control(&self, action: &str, body: &Value) -> Result<Value, String> {
        let secs = || {
            body.get("seconds")
                .and_then(Value::as_u64)
                .map(Duration::from_secs)
                .ok_or_else(|| "seconds (an integer) is required".to_string())
        };
        let flag = |name: &str| {
            body.get(name)
                .and_then(Value::as_bool)
                .ok_or_else(|| format!("{name} (a boolean) is required"))
        };
        let text = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("{name} (a string) is required"))
        };
        match action {
            "advance_clock" => self.advance_clock(secs()?),
            "session_idle_timeout" => self.set_session_idle_timeout(secs()?),
            "transaction_timeout" => self.set_transaction_timeout(secs()?),
            "web_gui_lock" => self.set_web_gui_lock(flag("locked")?),
            "legacy_transaction_status" => self.set_legacy_transaction_status(flag("enabled")?),
            "implicit_transactions" => self.set_implicit_transactions(flag("enabled")?),
            "require_commit_message" => self.set_require_commit_message(flag("required")?),
            "promotable" => self.set_promotable(flag("enabled")?),
            "fault" => {
                let fault = match text("fault")?.as_str() {
                    "ConfigTreeNotAvailable" => SpsFault::ConfigTreeNotAvailable,
                    "AuthorizationError" => SpsFault::AuthorizationError,
                    "TransactionCommitError" => SpsFault::TransactionCommitError,
                    "ClusterStatusUnavailable" => SpsFault::ClusterStatusUnavailable,
                    other => return Err(format!("unknown fault {other:?}")),
                };
                self.inject_fault(fault);
            }
            "seed_objects" => {
                let count = body.get("count").and_then(Value::as_u64).unwrap_or(0);
                let count = usize::try_from(count.min(100_000)).unwrap_or(0);
                if !self.seed_objects(&text("list")?, &text("prefix")?, count) {
                    return Err("unknown list".into());
                }
            }
            "seed_audit_sessions" => {
                let count = body.get("count").and_then(Value::as_u64).unwrap_or(0);
                self.seed_audit_sessions(usize::try_from(count.min(100_000)).unwrap_or(0));
            }
            "add_user" => {
                let role = match body.get("role").and_then(Value::as_str) {
                    Some("read_only") => SpsRole::ReadOnly,
                    _ => SpsRole::Admin,
                };
                self.add_user(&text("user")?, &text("password")?, role);
            }
            "add_certificate_user" => {
                self.add_certificate_user(&text("thumbprint")?, &text("user")?)
            }
            "state" => {}
            other => return Err(format!("unknown action {other:?}")),
        }
        Ok(json!({
            "login_count": self.login_count(),
            "active_sessions": self.active_sessions(),
            "audit_session_ids": self.audit_session_ids(),
        }))
    }
}

fn housekeeping(st: &mut State, now: Instant) {
    let idle = st.idle_timeout;
    let mut released = Vec::new();
    st.sessions.retain(|sid, s| {
        let alive = now.saturating_duration_since(s.last_seen) < idle;
        if !alive {
            released.push(sid.clone());
        }
        alive
    });
    for (sid, s) in st.sessions.iter_mut() {
        if let Some(t) = &s.txn {
            if now >= t.deadline {
                s.txn = None;
                released.push(sid.clone());
            }
        }
    }
    if let Some(holder) = &st.lock {
        let holder_active = st
            .sessions
            .get(holder)
            .and_then(|s| s.txn.as_ref())
            .is_some();
        if released.contains(holder) || !holder_active {
            st.lock = None;
        }
    }
}

async fn handle(AxState(emu): AxState<Arc<SpsEmulator>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if parts.headers.contains_key(header::EXPECT) {
        return ApiError::new(
            SpsErrorCode::ExpectationFailed,
            "Expectation Failed: the Expect header is not supported; send the request without it",
        )
        .into_response();
    }
    let path = parts.uri.path().to_string();
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let mut segs: Vec<String> = segs.into_iter().skip(1).collect();
    if segs.last().is_some_and(String::is_empty) {
        segs.pop();
    }
    // Recorded sessions have mixed-case ids (`/api/audit/sessions/rUhhQZ3...`);
    // everywhere else path components are lower case.
    let mixed_case = segs.first().map(String::as_str) == Some("audit");
    for s in &segs {
        let ok = !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'_'
                    || (mixed_case && b.is_ascii_uppercase())
            });
        if !ok {
            return ApiError::new(
                SpsErrorCode::InvalidPath,
                "Path components may contain only lowercase alphanumeric characters, '-' and '_'",
            )
            .path(&path)
            .into_response();
        }
    }
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let method = parts.method.clone();
    if matches!(method, Method::POST | Method::PUT)
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
        && !parts.headers.contains_key(header::TRANSFER_ENCODING)
    {
        return ApiError::new(
            SpsErrorCode::LengthRequired,
            "Length Required: send a request body with a Content-Length",
        )
        .path(&path)
        .into_response();
    }
    let mut peer = parts.extensions.get::<PeerCertificate>().cloned();
    let wants_x509 = segs.first().map(String::as_str) == Some("authentication")
        && query.iter().any(|(k, v)| k == "type" && v == "x509");
    if peer.is_none() && wants_x509 {
        if let Some(conn) = parts.extensions.get::<crate::tls::ConnHandle>() {
            peer = conn.request_client_certificate().await;
        }
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                SpsErrorCode::InvalidRequestBody,
                "The request body could not be read or is too large",
            )
            .path(&path)
            .into_response()
        }
    };
    let ctx = Ctx {
        method,
        path,
        segs,
        query,
        headers: parts.headers,
        body,
        peer,
    };
    emu.dispatch(&ctx)
}

async fn control_handle(
    AxState(emu): AxState<Arc<SpsEmulator>>,
    axum::extract::Path(action): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let value: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return json_resp(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
        }
    };
    match emu.control(&action, &value) {
        Ok(v) => json_resp(StatusCode::OK, v),
        Err(e) => json_resp(StatusCode::BAD_REQUEST, json!({"error": e})),
    }
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(s) = value.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k.trim() == "session_id" {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// What a configuration path designates.
enum Target {
    Node(String),
    Object { list: String, key: String },
}

impl SpsEmulator {
    fn now(st: &State) -> Instant {
        Instant::now() + st.clock_offset
    }

    fn dispatch(&self, ctx: &Ctx) -> Response {
        match self.dispatch_inner(ctx) {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    }

    fn dispatch_inner(&self, ctx: &Ctx) -> Result<Response, ApiError> {
        if ctx.seg(0) == Some("authentication") {
            return self.authentication(ctx);
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        let now = Self::now(st);
        housekeeping(st, now);
        let sid = cookie_session(&ctx.headers)
            .filter(|s| st.sessions.contains_key(s))
            .ok_or_else(|| {
                ApiError::new(
                    SpsErrorCode::Unauthenticated,
                    "Authentication is required: sign in at /api/authentication and send the session_id cookie",
                )
                .path(&ctx.path)
            })?;
        if let Some(s) = st.sessions.get_mut(&sid) {
            s.last_seen = now;
        }
        if take_fault(st, SpsFault::AuthorizationError) {
            return Err(ApiError::new(
                SpsErrorCode::AuthorizationError,
                "The request could not be authorized due to an unexpected internal error",
            )
            .path(&ctx.path));
        }
        if matches!(ctx.method, Method::POST | Method::PUT | Method::DELETE) {
            let browser = ctx
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ua| ua.contains("Mozilla"));
            let token_ok = ctx
                .headers
                .get("x-token")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t == sid);
            if browser && !token_ok {
                return Err(ApiError::new(
                    SpsErrorCode::Unauthorized,
                    "Browser-like clients must send the X-Token header on requests that change data",
                )
                .path(&ctx.path));
            }
        }
        let mut env = Env {
            st,
            sid: &sid,
            now,
            schema: &self.schema,
        };
        match ctx.seg(0) {
            None => env.root(ctx),
            Some("configuration") => env.configuration(ctx),
            Some("transaction") => env.transaction(ctx),
            Some("audit") => env.audit(ctx),
            Some("info") => env.info(ctx),
            Some("user_info") => env.user_info(ctx),
            Some("cluster") => env.cluster(ctx, self.spp.get()),
            Some(_) => Err(ApiError::new(
                SpsErrorCode::NodeNotFound,
                format!("The endpoint {} does not exist", ctx.path),
            )
            .path(&ctx.path)),
        }
    }

    fn authentication(&self, ctx: &Ctx) -> Result<Response, ApiError> {
        let path = &ctx.path;
        match ctx.seg(1) {
            Some("login_methods") if ctx.segs.len() == 2 => {
                if ctx.method != Method::GET {
                    return Err(unsupported(&ctx.method, path));
                }
                let items = [
                    ("local", "Local users", "password"),
                    ("ldap", "LDAP directory", "password"),
                    ("x509", "X.509 client certificate", "certificate"),
                ]
                .iter()
                .map(|(k, name, kind)| {
                    json!({"key": k, "body": {"name": name, "type": kind},
                           "meta": {"href": format!("/api/authentication?login_method={k}")}})
                })
                .collect::<Vec<_>>();
                Ok(json_resp(
                    StatusCode::OK,
                    json!({"items": items, "meta": {"href": "/api/authentication/login_methods", "parent": "/api/authentication"}}),
                ))
            }
            Some(_) => {
                Err(ApiError::new(SpsErrorCode::NodeNotFound, "No such endpoint").path(path))
            }
            None => match ctx.method {
                Method::GET => self.sign_in(ctx),
                Method::DELETE => {
                    let mut st = self.lock();
                    let now = Self::now(&st);
                    housekeeping(&mut st, now);
                    let sid = cookie_session(&ctx.headers)
                        .filter(|s| st.sessions.contains_key(s))
                        .ok_or_else(|| {
                            ApiError::new(SpsErrorCode::Unauthenticated, "Not signed in").path(path)
                        })?;
                    st.sessions.remove(&sid);
                    if st.lock.as_deref() == Some(sid.as_str()) {
                        st.lock = None;
                    }
                    let mut resp = json_resp(
                        StatusCode::OK,
                        json!({"meta": {"href": "/api/authentication", "parent": "/api"}}),
                    );
                    resp.headers_mut().insert(
                        header::SET_COOKIE,
                        HeaderValue::from_static(
                            "session_id=; Path=/api; Max-Age=0; Secure; HttpOnly",
                        ),
                    );
                    Ok(resp)
                }
                _ => Err(unsupported(&ctx.method, path)),
            },
        }
    }

    fn sign_in(&self, ctx: &Ctx) -> Result<Response, ApiError> {
        let fail = |msg: &str| {
            ApiError::new(SpsErrorCode::AuthenticationFailure, msg).path("/api/authentication")
        };
        let mut st = self.lock();
        let (user, method) = match ctx.param("type") {
            Some("x509") => {
                let cert = ctx
                    .peer
                    .as_ref()
                    .ok_or_else(|| fail("No client certificate was presented on the connection"))?;
                let by_thumb = st
                    .cert_users
                    .get(&cert.thumbprint.to_ascii_uppercase())
                    .cloned();
                let by_cn = cert
                    .subject
                    .split(',')
                    .filter_map(|p| p.trim().strip_prefix("CN="))
                    .map(str::to_string)
                    .find(|cn| st.users.contains_key(cn));
                let user = by_thumb
                    .or(by_cn)
                    .ok_or_else(|| fail("The client certificate is not mapped to any user"))?;
                (user, "x509".to_string())
            }
            Some(other) => {
                return Err(fail(&format!("Unknown authentication type '{other}'"))
                    .details(json!({"type": other})))
            }
            None => {
                let method = ctx.param("login_method").unwrap_or("local").to_string();
                if method != "local" && method != "ldap" {
                    return Err(fail(&format!("Unknown login method '{method}'"))
                        .details(json!({"login_method": method})));
                }
                let header = ctx
                    .headers
                    .get(header::AUTHORIZATION)
                    .ok_or_else(|| fail("HTTP Basic credentials are required"))?;
                let raw = header.as_bytes();
                let encoded = raw
                    .get(..6)
                    .filter(|p| p.eq_ignore_ascii_case(b"basic "))
                    .map(|_| &raw[6..])
                    .ok_or_else(|| fail("Only HTTP Basic authentication is supported"))?;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim_ascii())
                    .map_err(|_| fail("The Basic credentials are not valid base64"))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| fail("The Basic credentials are not valid UTF-8"))?;
                let (user, password) = text
                    .split_once(':')
                    .ok_or_else(|| fail("The Basic credentials lack a ':'"))?;
                match st.users.get(user) {
                    Some(u) if u.password == password => {}
                    _ => return Err(fail("Invalid user name or password")),
                }
                (user.to_string(), method)
            }
        };
        let role = st
            .users
            .get(&user)
            .map(|u| u.role)
            .ok_or_else(|| fail("Unknown user"))?;
        let sid = hex::encode(rand::random::<[u8; 20]>());
        let now = Self::now(&st);
        housekeeping(&mut st, now);
        st.sessions.insert(
            sid.clone(),
            Session {
                user: user.clone(),
                role,
                login_method: method.clone(),
                last_seen: now,
                txn: None,
            },
        );
        st.logins += 1;
        let mut resp = json_resp(
            StatusCode::OK,
            json!({
                "key": "authentication",
                "body": {"user": user, "login_method": method},
                "meta": {"href": "/api/authentication", "parent": "/api"}
            }),
        );
        if let Ok(v) = HeaderValue::from_str(&format!(
            "session_id={sid}; Path=/api; Secure; HttpOnly; SameSite=Strict"
        )) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        Ok(resp)
    }
}

fn take_fault(st: &mut State, fault: SpsFault) -> bool {
    match st.faults.iter().position(|f| *f == fault) {
        Some(i) => {
            st.faults.remove(i);
            true
        }
        None => false,
    }
}

/// The state of one authenticated request.
struct Env<'a> {
    st: &'a mut State,
    sid: &'a str,
    now: Instant,
    schema: &'a Schema,
}

impl Env<'_> {
    fn session(&self) -> Option<&Session> {
        self.st.sessions.get(self.sid)
    }

    fn session_mut(&mut self) -> Option<&mut Session> {
        self.st.sessions.get_mut(self.sid)
    }

    fn role(&self) -> SpsRole {
        self.session().map(|s| s.role).unwrap_or(SpsRole::ReadOnly)
    }

    fn txn(&self) -> Option<&Txn> {
        self.session().and_then(|s| s.txn.as_ref())
    }

    fn remaining(&self) -> Option<u64> {
        self.txn()
            .map(|t| t.deadline.saturating_duration_since(self.now).as_secs())
    }

    /// The configuration this session sees.
    fn view(&self) -> &Config {
        match self.txn() {
            Some(t) => &t.working,
            None => &self.st.committed,
        }
    }

    fn meta(&self, href: &str, extra: Value) -> Value {
        let mut m = Map::new();
        m.insert("href".into(), Value::String(href.to_string()));
        m.insert("parent".into(), parent_of(href));
        m.insert("transaction".into(), json!("/api/transaction"));
        if let Some(r) = self.remaining() {
            m.insert("remaining_seconds".into(), json!(r));
        }
        if let Value::Object(extra) = extra {
            m.extend(extra);
        }
        Value::Object(m)
    }

    fn err(&self, e: ApiError, href: &str) -> ApiError {
        let meta = self.meta(href, json!({}));
        e.meta(meta)
    }

    fn unauthorized(&self, path: &str) -> ApiError {
        self.err(
            ApiError::new(
                SpsErrorCode::Unauthorized,
                "You are not authorized to access this resource",
            )
            .path(path),
            path,
        )
    }

    fn branch(&self, href: &str, children: &[&str]) -> Response {
        let items: Vec<Value> = children
            .iter()
            .map(|c| json!({"key": c, "meta": {"href": format!("{href}/{c}")}}))
            .collect();
        let meta = self.meta(
            href,
            json!({"first": href, "last": href, "next": null, "previous": null}),
        );
        json_resp(StatusCode::OK, json!({"items": items, "meta": meta}))
    }

    fn root(&mut self, ctx: &Ctx) -> Result<Response, ApiError> {
        if ctx.method != Method::GET {
            return Err(method_error(&ctx.method, "/api"));
        }
        Ok(self.branch(
            "/api",
            &[
                "audit",
                "authentication",
                "configuration",
                "info",
                "transaction",
                "user_info",
            ],
        ))
    }

    fn info(&mut self, ctx: &Ctx) -> Result<Response, ApiError> {
        if ctx.segs.len() > 1 {
            return Err(
                ApiError::new(SpsErrorCode::NodeNotFound, "No such endpoint").path(&ctx.path),
            );
        }
        if ctx.method != Method::GET {
            return Err(method_error(&ctx.method, &ctx.path));
        }
        Ok(json_resp(
            StatusCode::OK,
            json!({"key": "info", "body": {
                "product": "One Identity Safeguard for Privileged Sessions (emulated)",
                "firmware_version": "7.5.0",
                "api_version": "7.5"
            }, "meta": self.meta("/api/info", json!({}))}),
        ))
    }

    fn user_info(&mut self, ctx: &Ctx) -> Result<Response, ApiError> {
        if ctx.segs.len() > 1 {
            return Err(
                ApiError::new(SpsErrorCode::NodeNotFound, "No such endpoint").path(&ctx.path),
            );
        }
        if ctx.method != Method::GET {
            return Err(method_error(&ctx.method, &ctx.path));
        }
        let (user, method, role) = match self.session() {
            Some(s) => (s.user.clone(), s.login_method.clone(), s.role),
            None => (String::new(), String::new(), SpsRole::ReadOnly),
        };
        let privileges = match role {
            SpsRole::Admin => json!(["configuration:read", "configuration:write", "audit:read"]),
            SpsRole::ReadOnly => json!(["configuration:read"]),
        };
        Ok(json_resp(
            StatusCode::OK,
            json!({"key": "user_info", "body": {"user": user, "login_method": method, "privileges": privileges},
                   "meta": self.meta("/api/user_info", json!({}))}),
        ))
    }

    // ---- configuration -------------------------------------------------

    fn resolve(&self, ctx: &Ctx) -> Result<Target, ApiError> {
        let segs: Vec<&str> = ctx.segs.iter().skip(1).map(String::as_str).collect();
        let rel = segs.join("/");
        if self.schema.node(&rel).is_some() {
            return Ok(Target::Node(rel));
        }
        let not_found = || {
            ApiError::new(
                SpsErrorCode::NodeNotFound,
                format!(
                    "The endpoint {} does not exist in the configuration",
                    ctx.path
                ),
            )
            .path(&ctx.path)
        };
        for k in (1..segs.len()).rev() {
            let prefix = segs[..k].join("/");
            match self.schema.node(&prefix) {
                Some(NodeKind::List { .. }) => {
                    let key = segs[k];
                    let Some(obj) = self.view().object(&prefix, key) else {
                        return Err(not_found());
                    };
                    if k + 1 == segs.len() {
                        return Ok(Target::Object {
                            list: prefix,
                            key: key.to_string(),
                        });
                    }
                    if config::has_field(obj, &segs[k + 1..]) {
                        return Err(ApiError::new(
                            SpsErrorCode::NodeNotAvailable,
                            format!("{} is part of an object and is not available directly; use the object", ctx.path),
                        )
                        .path(&ctx.path));
                    }
                    return Err(not_found());
                }
                Some(NodeKind::Settings(_)) => {
                    let exists = self
                        .view()
                        .settings
                        .get(&prefix)
                        .is_some_and(|v| config::has_field(v, &segs[k..]));
                    if exists {
                        return Err(ApiError::new(
                            SpsErrorCode::NodeNotAvailable,
                            format!(
                                "{} is part of a settings node and is not available directly",
                                ctx.path
                            ),
                        )
                        .path(&ctx.path));
                    }
                    return Err(not_found());
                }
                Some(NodeKind::Branch(_)) => return Err(not_found()),
                None => continue,
            }
        }
        Err(not_found())
    }

    fn configuration(&mut self, ctx: &Ctx) -> Result<Response, ApiError> {
        if take_fault(self.st, SpsFault::ConfigTreeNotAvailable) {
            return Err(ApiError::new(
                SpsErrorCode::ConfigTreeNotAvailable,
                "An error occurred while preparing the configuration tree",
            ));
        }
        let target = self.resolve(ctx).map_err(|e| self.err(e, &ctx.path))?;
        let href = ctx.path.trim_end_matches('/').to_string();
        let r = match ctx.method {
            Method::GET => self.config_get(ctx, &target, &href),
            Method::POST | Method::PUT | Method::DELETE => self.config_write(ctx, &target, &href),
            _ => Err(unsupported(&ctx.method, &href)),
        };
        r.map_err(|e| self.err(e, &href))
    }

    fn config_get(&self, ctx: &Ctx, target: &Target, href: &str) -> Result<Response, ApiError> {
        match target {
            Target::Node(rel) => match self.schema.node(rel) {
                Some(NodeKind::Branch(children)) => Ok(self.branch(href, children)),
                Some(NodeKind::List { .. }) => {
                    let keys: Vec<&String> = self.view().list(rel).iter().map(|(k, _)| k).collect();
                    let (offset, limit, paging) = page(ctx, href, keys.len())?;
                    let items: Vec<Value> = keys
                        .iter()
                        .skip(offset)
                        .take(limit)
                        .map(|k| json!({"key": k, "meta": {"href": format!("{href}/{k}")}}))
                        .collect();
                    Ok(json_resp(
                        StatusCode::OK,
                        json!({"items": items, "meta": self.meta(href, paging)}),
                    ))
                }
                Some(NodeKind::Settings(ty)) => {
                    let value = self.view().settings.get(rel).cloned().unwrap_or(json!({}));
                    let key = rel.rsplit('/').next().unwrap_or(rel);
                    Ok(json_resp(
                        StatusCode::OK,
                        json!({"key": key, "body": config::render(ty, &value), "meta": self.meta(href, json!({}))}),
                    ))
                }
                None => Err(ApiError::new(SpsErrorCode::NodeNotFound, "No such node").path(href)),
            },
            Target::Object { list, key } => {
                let Some(NodeKind::List { schema, write_only }) = self.schema.node(list) else {
                    return Err(
                        ApiError::new(SpsErrorCode::NodeNotFound, "No such node").path(href)
                    );
                };
                if *write_only {
                    return Err(ApiError::new(
                        SpsErrorCode::GetNotAllowed,
                        "Querying the specified path is not supported: the value is write-only",
                    )
                    .path(href));
                }
                let value = self
                    .view()
                    .object(list, key)
                    .cloned()
                    .unwrap_or(Value::Null);
                let siblings = self.siblings(list, key);
                Ok(json_resp(
                    StatusCode::OK,
                    json!({"key": key, "body": config::render(schema, &value), "meta": self.meta(href, siblings)}),
                ))
            }
        }
    }

    fn siblings(&self, list: &str, key: &str) -> Value {
        let keys: Vec<&String> = self.view().list(list).iter().map(|(k, _)| k).collect();
        let base = format!("/api/configuration/{list}");
        let link = |k: Option<&&String>| match k {
            Some(k) => json!(format!("{base}/{k}")),
            None => Value::Null,
        };
        let pos = keys.iter().position(|k| *k == key);
        json!({
            "first": link(keys.first()),
            "last": link(keys.last()),
            "next": link(pos.and_then(|p| keys.get(p + 1))),
            "previous": link(pos.and_then(|p| p.checked_sub(1)).and_then(|p| keys.get(p))),
        })
    }

    /// Checks the session may change the configuration now and returns its
    /// transaction, opening one implicitly when so configured.
    fn begin_change(&mut self, path: &str) -> Result<(), ApiError> {
        if self.role() != SpsRole::Admin {
            return Err(self.unauthorized(path));
        }
        if self.txn().is_none() {
            if self.st.implicit_txn {
                self.open_txn(path)?;
            } else {
                return Err(ApiError::new(
                    SpsErrorCode::NoTransaction,
                    "No open transaction is available: open a transaction (POST /api/transaction) before changing the configuration",
                )
                .path(path));
            }
        }
        if self.st.gui_lock {
            return Err(locked_error(path, "the web GUI"));
        }
        match &self.st.lock {
            Some(holder) if holder != self.sid => {
                let who = self
                    .st
                    .sessions
                    .get(holder)
                    .map(|s| s.user.clone())
                    .unwrap_or_default();
                Err(locked_error(
                    path,
                    &format!("another REST API session of '{who}'"),
                ))
            }
            _ => {
                self.st.lock = Some(self.sid.to_string());
                Ok(())
            }
        }
    }

    fn open_txn(&mut self, path: &str) -> Result<(), ApiError> {
        if self.st.gui_lock {
            return Err(locked_error(path, "the web GUI"));
        }
        if let Some(holder) = &self.st.lock {
            if holder != self.sid {
                let who = self
                    .st
                    .sessions
                    .get(holder)
                    .map(|s| s.user.clone())
                    .unwrap_or_default();
                return Err(locked_error(
                    path,
                    &format!("another REST API session of '{who}'"),
                ));
            }
        }
        let txn = Txn {
            working: self.st.committed.clone(),
            base_version: self.st.version,
            changes: Vec::new(),
            deadline: self.now + self.st.txn_timeout,
            promote: false,
        };
        if let Some(s) = self.session_mut() {
            s.txn = Some(txn);
        }
        Ok(())
    }

    fn config_write(
        &mut self,
        ctx: &Ctx,
        target: &Target,
        href: &str,
    ) -> Result<Response, ApiError> {
        // Method applicability first (405), then transaction and lock (409),
        // then the body (400).
        let kind = match target {
            Target::Node(rel) => self.schema.node(rel).cloned(),
            Target::Object { list, .. } => self.schema.node(list).cloned(),
        };
        let Some(kind) = kind else {
            return Err(ApiError::new(SpsErrorCode::NodeNotFound, "No such node").path(href));
        };
        match (target, &kind, &ctx.method) {
            (Target::Node(_), NodeKind::Branch(_), m) => return Err(method_error(m, href)),
            (Target::Node(_), NodeKind::Settings(_), m) if *m != Method::PUT => {
                return Err(method_error(m, href))
            }
            (Target::Node(_), NodeKind::List { .. }, &Method::DELETE) => {
                return Err(ApiError::new(
                    SpsErrorCode::MethodNotAllowed,
                    "A whole list cannot be deleted; delete its objects one by one",
                )
                .path(href))
            }
            (Target::Object { .. }, _, &Method::POST) => {
                return Err(method_error(&ctx.method, href))
            }
            (Target::Object { key, .. }, _, &Method::DELETE) if config::is_builtin(key) => {
                return Err(ApiError::new(
                    SpsErrorCode::DeleteNotAllowed,
                    "Built-in objects cannot be deleted",
                )
                .path(href))
            }
            _ => {}
        }
        self.begin_change(href)?;
        let result = self.apply_write(ctx, target, &kind, href);
        if self.txn().is_some_and(|t| t.changes.is_empty())
            && self.st.lock.as_deref() == Some(self.sid)
        {
            // Nothing changed yet: do not hold the lock for a failed first write.
            self.st.lock = None;
        }
        result
    }

    fn apply_write(
        &mut self,
        ctx: &Ctx,
        target: &Target,
        kind: &NodeKind,
        href: &str,
    ) -> Result<Response, ApiError> {
        let write_err = |e: WriteError| match e {
            WriteError::Syntactic(p, m) => {
                ApiError::new(SpsErrorCode::SyntacticError, m).details(json!({"path": p}))
            }
            WriteError::Semantic(p, m) => ApiError::new(SpsErrorCode::SemanticError, m.clone())
                .details(json!({"errors": [{"path": p, "message": m}]})),
        };
        let op = match (target, kind, &ctx.method) {
            (Target::Node(rel), NodeKind::List { schema, .. }, &Method::POST) => {
                let body = ctx.json_body()?;
                let key = uuid::Uuid::new_v4().to_string();
                config::validate(
                    schema,
                    &body,
                    &format!("/api/configuration/{rel}/{key}"),
                    self.view(),
                )
                .map_err(write_err)?;
                ChangeOp::Create {
                    list: rel.clone(),
                    key,
                    value: body,
                }
            }
            (Target::Node(rel), NodeKind::List { .. }, &Method::PUT) => {
                let body = ctx.json_body()?;
                let order = match &body {
                    Value::Array(a) => a.clone(),
                    Value::Object(m) => match m.get("items") {
                        Some(Value::Array(a)) if m.len() == 1 => a.clone(),
                        _ => {
                            return Err(ApiError::new(
                                SpsErrorCode::MethodNotAllowed,
                                "A list cannot be replaced as a whole: POST to create, PUT an object to replace, or PUT the list of keys to reorder",
                            )
                            .path(href))
                        }
                    },
                    _ => {
                        return Err(ApiError::new(
                            SpsErrorCode::SyntacticError,
                            "Expected the list of keys in the new order",
                        )
                        .path(href))
                    }
                };
                let new: Vec<String> = order
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        ApiError::new(SpsErrorCode::SyntacticError, "Every key must be a string")
                            .path(href)
                    })?;
                let old: Vec<String> = self
                    .view()
                    .list(rel)
                    .iter()
                    .map(|(k, _)| k.clone())
                    .collect();
                let (mut a, mut b) = (old.clone(), new.clone());
                a.sort();
                b.sort();
                if a != b {
                    return Err(ApiError::new(
                        SpsErrorCode::SyntacticError,
                        "The new order must list every key of the list exactly once",
                    )
                    .path(href));
                }
                ChangeOp::Reorder {
                    list: rel.clone(),
                    old,
                    new,
                }
            }
            (Target::Node(rel), NodeKind::Settings(ty), &Method::PUT) => {
                let body = ctx.json_body()?;
                config::validate(ty, &body, href, self.view()).map_err(write_err)?;
                let old = self
                    .view()
                    .settings
                    .get(rel)
                    .cloned()
                    .unwrap_or(Value::Null);
                ChangeOp::Replace {
                    list: None,
                    path: rel.clone(),
                    key: None,
                    old,
                    new: body,
                }
            }
            (Target::Object { list, key }, NodeKind::List { schema, .. }, &Method::PUT) => {
                let body = ctx.json_body()?;
                config::validate(schema, &body, href, self.view()).map_err(write_err)?;
                let old = self
                    .view()
                    .object(list, key)
                    .cloned()
                    .unwrap_or(Value::Null);
                ChangeOp::Replace {
                    list: Some(list.clone()),
                    path: format!("{list}/{key}"),
                    key: Some(key.clone()),
                    old,
                    new: body,
                }
            }
            (Target::Object { list, key }, NodeKind::List { .. }, &Method::DELETE) => {
                let referrers: Vec<Value> = self
                    .view()
                    .references(self.schema)
                    .into_iter()
                    .filter(|(_, t, k)| t == list && k == key)
                    .map(|(from, _, _)| json!({"path": from, "message": format!("{href} is used by {from}")}))
                    .collect();
                if !referrers.is_empty() {
                    return Err(ApiError::new(
                        SpsErrorCode::SemanticError,
                        "The object is used by other objects and cannot be deleted",
                    )
                    .details(json!({"errors": referrers})));
                }
                let old = self
                    .view()
                    .object(list, key)
                    .cloned()
                    .unwrap_or(Value::Null);
                ChangeOp::Delete {
                    list: list.clone(),
                    key: key.clone(),
                    old,
                }
            }
            _ => return Err(method_error(&ctx.method, href)),
        };
        let remaining = self.remaining();
        let Some(txn) = self.session_mut().and_then(|s| s.txn.as_mut()) else {
            return Err(
                ApiError::new(SpsErrorCode::NoTransaction, "No open transaction").path(href),
            );
        };
        op.apply(&mut txn.working).map_err(|p| {
            ApiError::new(SpsErrorCode::NodeNotFound, "The object no longer exists").path(&p)
        })?;
        txn.changes.push(op.clone());
        let mut meta =
            json!({"href": href, "parent": parent_of(href), "transaction": "/api/transaction"});
        if let Some(r) = remaining {
            meta["remaining_seconds"] = json!(r);
        }
        let resp = match op {
            ChangeOp::Create { list, key, .. } => {
                let href = format!("/api/configuration/{list}/{key}");
                json_resp(
                    StatusCode::CREATED,
                    json!({"key": key, "meta": {"href": href, "parent": format!("/api/configuration/{list}"), "transaction": "/api/transaction"}}),
                )
            }
            ChangeOp::Replace {
                list: Some(list),
                key: Some(key),
                ..
            } => {
                let mut m = meta;
                if let (Value::Object(m), Value::Object(s)) = (&mut m, self.siblings(&list, &key)) {
                    m.extend(s);
                }
                json_resp(StatusCode::CREATED, json!({"key": key, "meta": m}))
            }
            ChangeOp::Delete { list, .. } => {
                let mut m = meta;
                let keys: Vec<String> = self
                    .view()
                    .list(&list)
                    .iter()
                    .map(|(k, _)| k.clone())
                    .collect();
                let base = format!("/api/configuration/{list}");
                m["first"] = keys
                    .first()
                    .map(|k| json!(format!("{base}/{k}")))
                    .unwrap_or(Value::Null);
                m["last"] = keys
                    .last()
                    .map(|k| json!(format!("{base}/{k}")))
                    .unwrap_or(Value::Null);
                json_resp(StatusCode::OK, json!({"meta": m}))
            }
            _ => json_resp(StatusCode::OK, json!({"meta": meta})),
        };
        Ok(resp)
    }

    // ---- transaction ---------------------------------------------------

    fn status_body(&self) -> Value {
        let open = self.txn().is_some();
        let status = if open { "open" } else { "closed" };
        let required = self.view().require_commitlog() || self.st.committed.require_commitlog();
        let mut meta = self.meta(
            "/api/transaction",
            json!({"changes": "/api/transaction/changes"}),
        );
        if let Value::Object(m) = &mut meta {
            m.remove("transaction");
        }
        if self.st.legacy_status {
            json!({"transaction": {"status": status}, "meta": meta})
        } else {
            json!({
                "key": "transaction",
                "body": {"status": status, "commit_message": if required {"required"} else {"optional"}},
                "meta": meta
            })
        }
    }

    fn transaction(&mut self, ctx: &Ctx) -> Result<Response, ApiError> {
        let r = self.transaction_inner(ctx);
        r.map_err(|e| {
            let meta = self.meta("/api/transaction", json!({}));
            e.meta(meta)
        })
    }

    fn transaction_inner(&mut self, ctx: &Ctx) -> Result<Response, ApiError> {
        match ctx.seg(1) {
            None => {}
            Some("changes") if ctx.segs.len() == 2 => {
                if ctx.method != Method::GET {
                    return Err(unsupported(&ctx.method, "/api/transaction/changes"));
                }
                let changes: Vec<Value> = self
                    .txn()
                    .map(|t| t.changes.iter().map(ChangeOp::to_json).collect())
                    .unwrap_or_default();
                return Ok(json_resp(
                    StatusCode::OK,
                    json!({"changes": changes, "meta": self.meta("/api/transaction/changes", json!({}))}),
                ));
            }
            Some(_) => {
                return Err(
                    ApiError::new(SpsErrorCode::NodeNotFound, "No such endpoint").path(&ctx.path),
                )
            }
        }
        let path = "/api/transaction";
        match ctx.method {
            Method::GET => Ok(json_resp(StatusCode::OK, self.status_body())),
            Method::POST => {
                if !ctx.body.is_empty() {
                    ctx.json_body()?;
                }
                if self.role() != SpsRole::Admin {
                    return Err(self.unauthorized(path));
                }
                if self.txn().is_some() {
                    return Err(ApiError::new(
                        SpsErrorCode::DoubleTransaction,
                        "A transaction of this session is already open",
                    )
                    .path(path));
                }
                self.open_txn(path)?;
                Ok(json_resp(StatusCode::OK, self.status_body()))
            }
            Method::PUT => {
                let body = ctx.json_body()?;
                let status = body.get("status").and_then(Value::as_str);
                let message = body.get("message");
                let message = match message {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        return Err(ApiError::new(
                            SpsErrorCode::SyntacticError,
                            "The commit message must be a string",
                        )
                        .path("/api/transaction/message"))
                    }
                };
                match status {
                    Some("commit") => self.commit(message),
                    Some("rollback") => self.rollback(),
                    _ => Err(ApiError::new(
                        SpsErrorCode::SyntacticError,
                        "status must be \"commit\" or \"rollback\"",
                    )
                    .path("/api/transaction/status")),
                }
            }
            Method::DELETE => self.rollback(),
            _ => Err(unsupported(&ctx.method, path)),
        }
    }

    fn rollback(&mut self) -> Result<Response, ApiError> {
        if self.txn().is_none() {
            return Err(no_transaction());
        }
        if let Some(s) = self.session_mut() {
            s.txn = None;
        }
        if self.st.lock.as_deref() == Some(self.sid) {
            self.st.lock = None;
        }
        Ok(json_resp(StatusCode::OK, self.status_body()))
    }

    fn commit(&mut self, message: Option<String>) -> Result<Response, ApiError> {
        let Some(txn) = self.txn() else {
            return Err(no_transaction());
        };
        let required = txn.working.require_commitlog() || self.st.committed.require_commitlog();
        if required && message.as_deref().is_none_or(|m| m.trim().is_empty()) {
            return Err(ApiError::new(
                SpsErrorCode::CommitMessageMissing,
                "A commit message is required for committing a transaction",
            )
            .path("/api/transaction/message"));
        }
        if take_fault(self.st, SpsFault::TransactionCommitError) {
            return Err(ApiError::new(
                SpsErrorCode::TransactionCommitError,
                "Unexpected internal error while committing the transaction",
            ));
        }
        let Some(txn) = self.txn() else {
            return Err(no_transaction());
        };
        let candidate = if txn.base_version == self.st.version {
            txn.working.clone()
        } else {
            let mut conflicts: Vec<String> = txn
                .changes
                .iter()
                .flat_map(ChangeOp::touched)
                .filter(|p| {
                    self.st
                        .modified
                        .get(p)
                        .is_some_and(|v| *v > txn.base_version)
                })
                .map(|p| format!("/api/configuration/{p}"))
                .collect();
            conflicts.dedup();
            if !conflicts.is_empty() {
                return Err(ApiError::new(
                    SpsErrorCode::MidAirCollision,
                    "The configuration has been changed by another client since this transaction started, and these changes would overwrite them: review, roll back, start a new transaction and redo the changes",
                )
                .details(json!({"paths": conflicts})));
            }
            let mut replay = self.st.committed.clone();
            for op in &txn.changes {
                if let Err(p) = op.apply(&mut replay) {
                    return Err(ApiError::new(
                        SpsErrorCode::MidAirCollision,
                        "The configuration has been changed by another client since this transaction started",
                    )
                    .details(json!({"paths": [p]})));
                }
            }
            let errors = replay.semantic_errors(self.schema);
            if !errors.is_empty() {
                return Err(ApiError::new(
                    SpsErrorCode::MidAirCollisionSemanticError,
                    "The configuration has been changed by another client since this transaction started, and these changes would conflict with them semantically",
                )
                .details(json!({"errors": errors})));
            }
            replay
        };
        let errors = candidate.semantic_errors(self.schema);
        if !errors.is_empty() {
            return Err(ApiError::new(
                SpsErrorCode::SemanticError,
                "The configuration contains semantic errors",
            )
            .details(json!({"errors": errors})));
        }
        let changes = txn.changes.clone();
        let promote = txn.promote;
        if promote {
            self.st.promoted = true;
        }
        if !changes.is_empty() {
            self.st.committed = candidate;
            self.st.version += 1;
            let v = self.st.version;
            for op in &changes {
                for m in op.marks() {
                    self.st.modified.insert(m, v);
                }
            }
        }
        if let Some(s) = self.session_mut() {
            s.txn = None;
        }
        if self.st.lock.as_deref() == Some(self.sid) {
            self.st.lock = None;
        }
        Ok(json_resp(StatusCode::OK, self.status_body()))
    }

    // ---- audit ---------------------------------------------------------

    fn audit(&mut self, ctx: &Ctx) -> Result<Response, ApiError> {
        if self.role() != SpsRole::Admin {
            return Err(self.unauthorized(&ctx.path));
        }
        let href = ctx.path.trim_end_matches('/').to_string();
        let segs: Vec<&str> = ctx.segs.iter().map(String::as_str).collect();
        let not_found =
            || ApiError::new(SpsErrorCode::NodeNotFound, "No such endpoint").path(&href);
        let only_get = |ctx: &Ctx| {
            if ctx.method == Method::GET {
                Ok(())
            } else {
                Err(method_error(&ctx.method, &href))
            }
        };
        match segs.as_slice() {
            ["audit"] => {
                only_get(ctx)?;
                Ok(self.branch("/api/audit", &["sessions"]))
            }
            ["audit", "sessions"] => {
                only_get(ctx)?;
                let indices: Vec<usize> = self.filter_sessions(ctx)?;
                self.session_list(ctx, &href, &indices)
            }
            ["audit", "sessions", "_snapshot"] => {
                if ctx.method != Method::POST {
                    return Err(method_error(&ctx.method, &href));
                }
                let indices = self.filter_sessions(ctx)?;
                let id = hex::encode(rand::random::<[u8; 8]>());
                let count = indices.len();
                self.st.snapshots.insert(id.clone(), indices);
                let shref = format!("/api/audit/sessions/_snapshot/{id}");
                Ok(json_resp(
                    StatusCode::CREATED,
                    json!({"key": id, "body": {"match_count": count},
                           "meta": {"href": shref, "parent": "/api/audit/sessions"}}),
                ))
            }
            ["audit", "sessions", "_snapshot", id] => {
                only_get(ctx)?;
                let indices = self.st.snapshots.get(*id).cloned().ok_or_else(not_found)?;
                self.session_list(ctx, &href, &indices)
            }
            ["audit", "sessions", id, rest @ ..] => {
                let session = self
                    .st
                    .audit
                    .iter()
                    .find(|s| s.id == *id)
                    .cloned()
                    .ok_or_else(not_found)?;
                only_get(ctx)?;
                match rest {
                    [] => {
                        let mut body = session.body.clone();
                        let base = format!("/api/audit/sessions/{}", session.id);
                        body["content"] = json!({"href": format!("{base}/content")});
                        body["events"] = json!({"href": format!("{base}/events")});
                        body["audit_trail"] = json!({"href": format!("{base}/audit_trail")});
                        Ok(json_resp(
                            StatusCode::OK,
                            json!({"key": session.id, "body": body, "meta": self.meta(&href, json!({}))}),
                        ))
                    }
                    ["content"] => {
                        let q = ctx.param("q").unwrap_or("").trim();
                        let events: Vec<Value> = if q.is_empty() {
                            Vec::new()
                        } else {
                            let query = audit::parse_query(q).map_err(|m| q_error(&m))?;
                            session
                                .content
                                .iter()
                                .filter(|(_, text)| {
                                    let lower = text.to_lowercase();
                                    query.eval(&|_, pattern| audit::wildcard(pattern, &lower))
                                })
                                .map(|(time, text)| json!({"time": time, "type": "screen", "content": text, "channels_id": "0"}))
                                .collect()
                        };
                        self.flat_list(ctx, &href, events)
                    }
                    ["events"] => {
                        let events: Vec<Value> = session
                            .content
                            .iter()
                            .map(|(time, text)| json!({"time": time, "type": "command", "content": text, "channels_id": "0"}))
                            .collect();
                        self.flat_list(ctx, &href, events)
                    }
                    ["audit_trail"] => Ok(trail_response(session)),
                    _ => Err(not_found()),
                }
            }
            _ => Err(not_found()),
        }
    }

    fn filter_sessions(&self, ctx: &Ctx) -> Result<Vec<usize>, ApiError> {
        let q = ctx.param("q").unwrap_or("").trim();
        let query: Option<Query> = if q.is_empty() {
            None
        } else {
            let query = audit::parse_query(q).map_err(|m| q_error(&m))?;
            if let Some(bad) = query
                .fields()
                .into_iter()
                .find(|f| !audit::LIST_FIELDS.contains(&f.as_str()))
            {
                return Err(q_error(&format!(
                    "Unknown field '{bad}'; searchable fields: {}",
                    audit::LIST_FIELDS.join(", ")
                )));
            }
            Some(query)
        };
        Ok(self
            .st
            .audit
            .iter()
            .enumerate()
            .filter(|(_, s)| query.as_ref().is_none_or(|q| s.matches_meta(q)))
            .map(|(i, _)| i)
            .collect())
    }

    fn session_list(&self, ctx: &Ctx, href: &str, indices: &[usize]) -> Result<Response, ApiError> {
        let fields: Vec<String> = ctx
            .param("fields")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        let (offset, limit, mut paging) = page(ctx, href, indices.len())?;
        paging["fields"] = json!(fields);
        let items: Vec<Value> = indices
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|i| self.st.audit.get(*i))
            .map(|s| {
                let mut item =
                    json!({"key": s.id, "meta": {"href": format!("/api/audit/sessions/{}", s.id)}});
                if !fields.is_empty() {
                    let mut body = Map::new();
                    for f in &fields {
                        if let Some(v) = s.body.get(f) {
                            body.insert(f.clone(), v.clone());
                        }
                    }
                    item["body"] = Value::Object(body);
                }
                item
            })
            .collect();
        Ok(json_resp(
            StatusCode::OK,
            json!({"items": items, "meta": self.meta(href, paging)}),
        ))
    }

    fn flat_list(&self, ctx: &Ctx, href: &str, all: Vec<Value>) -> Result<Response, ApiError> {
        let (offset, limit, paging) = page(ctx, href, all.len())?;
        let items: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
        Ok(json_resp(
            StatusCode::OK,
            json!({"items": items, "meta": self.meta(href, paging)}),
        ))
    }
}

fn q_error(message: &str) -> ApiError {
    ApiError::new(
        SpsErrorCode::SyntacticError,
        format!("Invalid search expression: {message}"),
    )
    .details(json!({"parameter": "q", "reason": message}))
}

fn locked_error(path: &str, by: &str) -> ApiError {
    ApiError::new(
        SpsErrorCode::WebGuiOrRpcApiConfigInProgress,
        format!("The configuration is locked: it is being modified through {by}"),
    )
    .details(json!({"path": path, "locked_by": by}))
}

fn no_transaction() -> ApiError {
    ApiError::new(
        SpsErrorCode::NoTransaction,
        "No open transaction is available",
    )
    .path("/api/transaction")
}

/// Parses `limit`/`offset` and builds the paging part of `meta`.
fn page(ctx: &Ctx, href: &str, total: usize) -> Result<(usize, usize, Value), ApiError> {
    let num = |name: &str, default: usize, min: usize| -> Result<usize, ApiError> {
        match ctx.param(name) {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= min)
                .ok_or_else(|| {
                    ApiError::new(
                        SpsErrorCode::SyntacticError,
                        format!("The parameter '{name}' must be an integer of at least {min}"),
                    )
                    .details(json!({"parameter": name, "value": v}))
                }),
        }
    };
    let limit = num("limit", DEFAULT_LIMIT, 1)?;
    let offset = num("offset", 0, 0)?;
    let link = |off: usize| -> Value {
        let mut params: Vec<(String, String)> = ctx
            .query
            .iter()
            .filter(|(k, _)| k != "limit" && k != "offset")
            .cloned()
            .collect();
        params.insert(0, ("offset".into(), off.to_string()));
        params.insert(0, ("limit".into(), limit.to_string()));
        let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
        json!(format!("{href}?{qs}"))
    };
    let last_offset = if total == 0 {
        0
    } else {
        (total - 1) / limit * limit
    };
    let next = match offset.checked_add(limit) {
        Some(n) if n < total => link(n),
        _ => Value::Null,
    };
    let previous = if offset == 0 {
        Value::Null
    } else {
        link(offset.saturating_sub(limit))
    };
    Ok((
        offset,
        limit,
        json!({
            "first": link(0),
            "last": link(last_offset),
            "next": next,
            "previous": previous,
            "limit": limit,
            "offset": offset,
            "match_count": total,
        }),
    ))
}

fn trail_response(session: AuditSession) -> Response {
    let chunks = session.trail_len.div_ceil(TRAIL_CHUNK);
    let len = session.trail_len;
    let id = session.id.clone();
    let stream = futures::stream::iter(0..chunks)
        .map(move |i| Ok::<_, std::io::Error>(Bytes::from(session.trail_chunk(i, TRAIL_CHUNK))));
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.zat\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

use futures::StreamExt as _;

#[cfg(test)]
mod tests;
