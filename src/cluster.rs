//! Clusters: which member of a Safeguard cluster takes a request, and moving
//! to another member when one fails.
//!
//! Production Safeguard runs as a cluster of one primary and up to four
//! replicas. The vendor's administration guide: on a replica the
//! configuration is read-only (objects and security policy cannot be added,
//! changed or deleted), while users still sign in, request access (the whole
//! workflow), check out passwords, run reports and audit. A client built
//! with [`SafeguardClientBuilder::cluster`](crate::SafeguardClientBuilder::cluster)
//! therefore:
//!
//! - learns the members from the anonymous notification service of each
//!   member it knows (`GET Status`: the member's `ApplianceId`,
//!   `IsPrimary`, `ApplianceCurrentState`) and finds the others through
//!   `GET Status/Cluster` (their `IpAddress`, on the port of the addresses
//!   it was given; a found address is used only once it answers with the
//!   member's own id), before its first request, after a failure and
//!   every [`ClusterOptions::refresh_every`] (in the background: no request
//!   waits for it);
//! - sends configuration writes (core requests other than `GET`, except
//!   sign-in, the access-request workflow and promotion) to the primary, and
//!   reads, sign-in and access-request work to a member chosen by
//!   [`ReadRouting`]; the appliance service and the management service
//!   answer for one appliance, so their requests go to the address they name;
//! - moves a request to another member when its member cannot be reached
//!   (the request never left), answers 503, or (for an idempotent request)
//!   breaks after sending; waits and asks again when a write meets a
//!   replica (403 / 60418: the primary moved) or a locked cluster
//!   (400 / 60910: a cluster-wide operation such as a failover runs); never
//!   sends a request that cannot be replayed (a streamed body) twice, and
//!   never replays a `POST` or `PATCH` that may have reached a member;
//! - gives up after [`ClusterOptions::failover_timeout`] with the last
//!   answer or failure, or [`Error::ClusterUnavailable`] when no member
//!   could take the request at all.
//!
//! Every decision is a `tracing` event of target `safeguard_sdk::cluster`:
//! each request's member at `debug`, moves and membership changes at
//! `info`/`warn`.
//!
//! The token is the cluster's: the appliance keeps user tokens in the
//! replicated database, so one sign-in serves every member; a member that
//! answers 401 all the same makes the client sign in again (on a member
//! that answers) and resend, as for an expired token.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::host::Host;
use crate::limits::{self, Limits};

/// 403 from a replica asked for a configuration write: "60418 - This action
/// can only be performed on the primary appliance (not replica)." (core.json,
/// e.g. the 403 of `PUT Cluster/BackupProtectionSettings`).
const NOT_PRIMARY: i64 = 60418;
/// 400 while a cluster-wide operation holds the cluster: "60910 - A pending
/// action on this instance is blocking this action. Wait a few minutes and
/// try again." (core.json, `POST Cluster/Members`).
const CLUSTER_BUSY: i64 = 60910;

/// The first wait between tries when no member can take a request; it
/// doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a cluster client chooses the member for reads (`GET`s, sign-in and
/// the access-request workflow). Writes always go to the primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadRouting {
    /// Everything to the primary while it answers (as a client that knows
    /// only the leader); reads move to a replica only when it does not.
    Primary,
    /// The member that answered the last membership check fastest.
    #[default]
    Nearest,
}

/// How a [`SafeguardClient`](crate::SafeguardClient) uses a cluster (see
/// [`SafeguardClientBuilder::cluster`](crate::SafeguardClientBuilder::cluster)
/// and the [module documentation](self)).
///
/// ```
/// use std::time::Duration;
/// use safeguard_sdk::cluster::{ClusterOptions, ReadRouting};
///
/// let options = ClusterOptions::new()
///     .members(["sg2.example.com", "sg3.example.com"])
///     .reads(ReadRouting::Nearest)
///     .failover_timeout(Duration::from_secs(120));
/// ```
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    members: Vec<String>,
    reads: ReadRouting,
    refresh_every: Duration,
    failover_timeout: Duration,
    probe_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            reads: ReadRouting::default(),
            refresh_every: Duration::from_secs(60),
            failover_timeout: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(5),
        }
    }
}

impl ClusterOptions {
    /// The defaults: no address besides the builder's, [`ReadRouting::Nearest`],
    /// membership checked every 60 s, a request waits up to 60 s for a
    /// member to take it, a member's status check may take 5 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// More member addresses besides the builder's (any member is enough
    /// when all of them listen on the same port: the others are found).
    pub fn members<I, S>(mut self, members: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.members.extend(members.into_iter().map(Into::into));
        self
    }

    /// How reads choose their member (default [`ReadRouting::Nearest`]).
    pub fn reads(mut self, reads: ReadRouting) -> Self {
        self.reads = reads;
        self
    }

    /// How often the membership is checked while requests flow (default
    /// 60 s); it is also checked after every failure.
    pub fn refresh_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
    }

    /// How long a request may wait, in all, for a member to take it
    /// (default 60 s: a failover takes a while).
    pub fn failover_timeout(mut self, timeout: Duration) -> Self {
        self.failover_timeout = timeout;
        self
    }

    /// How long a member's status check may take before the member counts
    /// as unreachable (default 5 s).
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }
}

/// A member's role, as it said at the last check (unknown when it did not
/// answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberRole {
    /// It takes configuration writes.
    Primary,
    /// It serves reads, sign-in, access requests and A2A.
    Replica,
    /// Not known: it did not answer the last check, or none was made yet.
    Unknown,
}

/// What a client knows of one member (see
/// [`SafeguardClient::cluster_members`](crate::SafeguardClient::cluster_members)).
#[derive(Clone, Debug)]
pub struct ClusterMember {
    /// Where the client reaches it.
    pub host: Host,
    /// Its appliance id, once it answered.
    pub id: Option<String>,
    /// Its role, as it last said.
    pub role: MemberRole,
    /// Whether it answered the last check and has not failed a request since.
    pub available: bool,
    /// How long its last status check took.
    pub latency: Option<Duration>,
}

/// Where a request may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A configuration write: the primary only.
    Write,
    /// A read, a sign-in, access-request work: any member that serves.
    Read,
    /// The appliance or management service, or an address not of the
    /// cluster: where the request says.
    Pinned,
}

impl Route {
    fn as_str(self) -> &'static str {
        match self {
            Route::Write => "write",
            Route::Read => "read",
            Route::Pinned => "pinned",
        }
    }
}

/// Where `method` on `path` (a URL path) goes.
pub(crate) fn route(method: &Method, path: &str) -> Route {
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    if first.eq_ignore_ascii_case("RSTS") {
        return Route::Read;
    }
    if !first.eq_ignore_ascii_case("service") {
        return Route::Pinned;
    }
    let service = segments.next().unwrap_or_default().to_ascii_lowercase();
    match service.as_str() {
        "notification" | "a2a" | "event" => Route::Read,
        "core" => {
            if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
                return Route::Read;
            }
            let _version = segments.next();
            let rest: Vec<String> = segments.map(str::to_ascii_lowercase).collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            // What a replica serves besides reads (the administration
            // guide; the emulator's `replica_serves` is the same list):
            // sign-in, the access-request workflow, promoting a member (a
            // failover is started on the replica to promote when the
            // primary is gone: safeguard-ps `Set-SafeguardClusterPrimary`
            // posts `Cluster/Members/{id}/Promote` to the appliance it is
            // connected to) and the running operation's actions.
            match rest.as_slice() {
                ["token", ..]
                | ["accessrequests", ..]
                | ["cluster", "members", _, "promote"]
                | ["cluster", "status", _] => Route::Read,
                _ => Route::Write,
            }
        }
        _ => Route::Pinned,
    }
}

/// The members and when they were last checked.
struct Members {
    list: Vec<ClusterMember>,
    checked: Option<Instant>,
}

/// The routing state a cluster client's session holds.
pub(crate) struct Cluster {
    options: ClusterOptions,
    /// The port of the addresses given: found members are reached on it.
    port: u16,
    api_version: String,
    members: RwLock<Members>,
    /// One membership check at a time.
    checking: tokio::sync::Mutex<()>,
    /// A periodic check runs in the background.
    background_check: AtomicBool,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("members", &self.members())
            .field("reads", &self.options.reads)
            .finish_non_exhaustive()
    }
}

/// The part of the notification service's `Status` a check reads.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Status {
    appliance_id: Option<String>,
    #[serde(default)]
    is_primary: bool,
    #[serde(default)]
    is_maintenance: bool,
    appliance_current_state: Option<String>,
    ip_address: Option<String>,
}

impl Status {
    /// Whether the member takes requests in its state (the document's
    /// `ApplianceState` values in which an appliance serves its API).
    fn serves(&self) -> bool {
        !self.is_maintenance
            && self.appliance_current_state.as_deref().is_none_or(|s| {
                [
                    "Online",
                    "ReplicaWithQuorum",
                    "ReplicaNoQuorum",
                    "PrimaryNoQuorum",
                    "StandaloneReadOnly",
                ]
                .iter()
                .any(|ok| ok.eq_ignore_ascii_case(s))
            })
    }
}

/// What a failed try tells about its member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// Unreachable, unavailable (503) or broken: try another member.
    Down,
    /// A replica refused a write: the primary moved.
    NotPrimary,
    /// A cluster-wide operation holds the cluster: wait.
    Busy,
}

impl Cluster {
    /// The routing state for the builder's `host` and the options' members.
    pub(crate) fn new(host: &Host, options: ClusterOptions, api_version: &str) -> Result<Self> {
        let mut list = vec![ClusterMember::given(host.clone())];
        for given in &options.members {
            let h = Host::parse(given)?;
            if !list.iter().any(|m| m.host == h) {
                list.push(ClusterMember::given(h));
            }
        }
        Ok(Self {
            port: host.port(),
            api_version: api_version.to_owned(),
            options,
            members: RwLock::new(Members {
                list,
                checked: None,
            }),
            checking: tokio::sync::Mutex::new(()),
            background_check: AtomicBool::new(false),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Members> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Members> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }

    /// What the client knows of the members now.
    pub(crate) fn members(&self) -> Vec<ClusterMember> {
        self.read().list.clone()
    }

    /// Whether `url` names a member (requests to other addresses are sent
    /// as they are).
    fn is_member(&self, url: &url::Url) -> bool {
        self.read().list.iter().any(|m| m.host.is_addressed_by(url))
    }

    /// The member to send a `route` request to now, if any can take it.
    pub(crate) fn choose(&self, route: Route) -> Option<Host> {
        let members = self.read();
        let available = || members.list.iter().filter(|m| m.available);
        let primary = available().find(|m| m.role == MemberRole::Primary);
        let chosen = match (route, self.options.reads) {
            (Route::Write, _) => primary,
            (_, ReadRouting::Primary) => primary.or_else(|| available().next()),
            (_, ReadRouting::Nearest) => {
                available().min_by_key(|m| m.latency.unwrap_or(Duration::MAX))
            }
        };
        chosen.map(|m| m.host.clone())
    }

    /// The member for a sign-in or an event hub: a reading member, the
    /// membership checked first when it never was or none is available
    /// (the first address given when still none is).
    pub(crate) async fn reading_member(&self, http: &reqwest::Client, limits: &Limits) -> Host {
        if self.read().checked.is_some() {
            if let Some(member) = self.choose(Route::Read) {
                return member;
            }
        }
        self.check(http, limits).await;
        self.choose(Route::Read)
            .unwrap_or_else(|| self.read().list[0].host.clone())
    }

    /// Marks `host` unavailable until a check finds it again.
    pub(crate) fn failed(&self, host: &Host, why: &str) {
        let mut members = self.write();
        if let Some(m) = members.list.iter_mut().find(|m| &m.host == host) {
            if m.available {
                tracing::warn!(target: "safeguard_sdk::cluster", member = %host, why, "member unavailable");
            }
            m.available = false;
        }
    }

    /// Checks every member's status (one check at a time: a caller that
    /// finds one running waits for it and uses its result), then looks for
    /// members not known yet.
    pub(crate) async fn check(&self, http: &reqwest::Client, limits: &Limits) {
        let Ok(_only) = self.checking.try_lock() else {
            // Another task is checking: its result is this one's.
            let _wait = self.checking.lock().await;
            return;
        };
        let hosts: Vec<Host> = self.read().list.iter().map(|m| m.host.clone()).collect();
        let checks = hosts.iter().map(|h| self.status(http, limits, h));
        let answers = futures::future::join_all(checks).await;
        let mut reporter = None;
        {
            let mut members = self.write();
            for (host, answer) in hosts.iter().zip(answers) {
                let Some(m) = members.list.iter_mut().find(|m| &m.host == host) else {
                    continue;
                };
                let before = (m.role, m.available);
                match answer {
                    Ok((status, latency)) => {
                        // An address that answers as another member than
                        // before was given to another appliance: believe it.
                        m.id = status.appliance_id.clone().or(m.id.take());
                        m.role = if status.is_primary {
                            MemberRole::Primary
                        } else {
                            MemberRole::Replica
                        };
                        m.available = status.serves();
                        m.latency = Some(latency);
                        if reporter.is_none() && m.available {
                            reporter = Some(host.clone());
                        }
                    }
                    Err(e) => {
                        // What it said last may no longer hold (a stopped
                        // primary is replaced): unknown until it answers.
                        m.available = false;
                        m.role = MemberRole::Unknown;
                        m.latency = None;
                        tracing::debug!(target: "safeguard_sdk::cluster", member = %host, error = %e, "status check failed");
                    }
                }
                if before != (m.role, m.available) {
                    tracing::info!(
                        target: "safeguard_sdk::cluster",
                        member = %host,
                        role = ?m.role,
                        available = m.available,
                        "member changed"
                    );
                }
            }
            members.checked = Some(Instant::now());
        }
        if let Some(reporter) = reporter {
            self.discover(http, limits, &reporter).await;
        }
    }

    /// Adds the members `reporter` lists that the client does not know
    /// (`Status/Cluster`), each once its address answers as that member.
    async fn discover(&self, http: &reqwest::Client, limits: &Limits, reporter: &Host) {
        let url = reporter.url(&format!(
            "/service/notification/{}/Status/Cluster",
            self.api_version
        ));
        let Ok(all) = self.get_json::<Vec<Status>>(http, limits, url).await else {
            return;
        };
        let unknown: Vec<(String, Host)> = {
            let members = self.read();
            all.into_iter()
                .filter_map(|s| {
                    let id = s.appliance_id?;
                    let known = members
                        .list
                        .iter()
                        .any(|m| m.id.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(&id)));
                    let address = s.ip_address.filter(|a| !a.is_empty())?;
                    let host = if address.contains(':') {
                        format!("[{address}]:{}", self.port)
                    } else {
                        format!("{address}:{}", self.port)
                    };
                    let host = Host::parse(&host).ok()?;
                    let taken = members.list.iter().any(|m| m.host == host);
                    (!known && !taken).then_some((id, host))
                })
                .collect()
        };
        for (id, host) in unknown {
            match self.status(http, limits, &host).await {
                Ok((status, latency))
                    if status
                        .appliance_id
                        .as_deref()
                        .is_some_and(|a| a.eq_ignore_ascii_case(&id)) =>
                {
                    tracing::info!(target: "safeguard_sdk::cluster", member = %host, id, "member found");
                    let role = if status.is_primary {
                        MemberRole::Primary
                    } else {
                        MemberRole::Replica
                    };
                    self.write().list.push(ClusterMember {
                        host,
                        id: Some(id),
                        role,
                        available: status.serves(),
                        latency: Some(latency),
                    });
                }
                _ => tracing::debug!(
                    target: "safeguard_sdk::cluster",
                    member = %host,
                    id,
                    "a listed member does not answer at its address"
                ),
            }
        }
    }

    /// `GET Status` of the notification service on `host`, anonymously,
    /// within the probe timeout; the answer and how long it took.
    async fn status(
        &self,
        http: &reqwest::Client,
        limits: &Limits,
        host: &Host,
    ) -> Result<(Status, Duration)> {
        let started = Instant::now();
        let url = host.url(&format!(
            "/service/notification/{}/Status",
            self.api_version
        ));
        let status = self.get_json::<Status>(http, limits, url).await?;
        Ok((status, started.elapsed()))
    }

    /// An anonymous `GET` read whole, within the probe timeout and `limits`.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        limits: &Limits,
        url: String,
    ) -> Result<T> {
        let label = "GET notification Status";
        let asked = async {
            let response = http
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(Error::from_reqwest)?;
            let body = limits::read_success(response, label, limits).await?;
            serde_json::from_slice::<T>(&body).map_err(|e| {
                Error::Decode(crate::error::DecodeError::new(
                    Some(StatusCode::OK),
                    e,
                    &body,
                ))
            })
        };
        tokio::time::timeout(self.options.probe_timeout, asked)
            .await
            .map_err(|_| Error::Timeout(format!("{label}: no answer within the probe timeout")))?
    }

    /// Whether the membership was never checked (the first request checks
    /// it before it is sent); when the periodic check is due, starts it in
    /// the background, so that no request waits for it.
    fn first_check_needed(self: &Arc<Self>, http: &reqwest::Client, limits: &Limits) -> bool {
        match self.read().checked {
            None => return true,
            Some(at) if at.elapsed() < self.options.refresh_every => return false,
            Some(_) => {}
        }
        let starting = self
            .background_check
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !starting {
            return false;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let me = Arc::clone(self);
                let (http, limits) = (http.clone(), *limits);
                runtime.spawn(async move {
                    me.check(&http, &limits).await;
                    me.background_check.store(false, Ordering::Release);
                });
            }
            Err(_) => self.background_check.store(false, Ordering::Release),
        }
        false
    }

    /// Sends `request` to the member its route calls for, moving to another
    /// on failure (see the module documentation).
    pub(crate) async fn send(
        self: &Arc<Self>,
        http: &reqwest::Client,
        limits: &Limits,
        request: reqwest::Request,
        streamed: bool,
    ) -> Result<reqwest::Response> {
        let route = route(request.method(), request.url().path());
        if route == Route::Pinned || !self.is_member(request.url()) {
            let server = request.url().authority().to_owned();
            return limits::send_within(http, limits, &server, request, streamed).await;
        }
        if self.first_check_needed(http, limits) {
            self.check(http, limits).await;
        }
        let idempotent = crate::transport::is_idempotent(request.method());
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut request = request;
        let mut tries = 0u32;
        loop {
            let Some(member) = self.choose(route) else {
                if started.elapsed() >= self.options.failover_timeout {
                    return Err(Error::ClusterUnavailable {
                        request: crate::transport::request_label(&request),
                        reason: match route {
                            Route::Write => "no primary answered",
                            _ => "no member answered",
                        },
                    });
                }
                tracing::debug!(target: "safeguard_sdk::cluster", route = route.as_str(), wait = ?backoff, "no member can take the request yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                self.check(http, limits).await;
                continue;
            };
            let replay = request.try_clone();
            member.point(request.url_mut())?;
            tries += 1;
            tracing::debug!(
                target: "safeguard_sdk::cluster",
                member = %member,
                route = route.as_str(),
                method = %request.method(),
                path = request.url().path(),
                tries,
                "routed"
            );
            let (outcome, failure) = match send_once(http, limits, &member, request, streamed).await
            {
                Sent::Answer(response) => judge(route, response, limits).await,
                Sent::NotReached(e) => (Err(e), Some(Failure::Down)),
                Sent::Broken(e) if idempotent => (Err(e), Some(Failure::Down)),
                Sent::Broken(e) => {
                    let label = replay.as_ref().map(crate::transport::request_label);
                    tracing::warn!(
                        target: "safeguard_sdk::cluster",
                        member = %member,
                        request = label.as_deref().unwrap_or("(a streamed body)"),
                        error = %e,
                        "the connection broke after the request was sent: not replayed, it may have been carried out"
                    );
                    return Err(e);
                }
            };
            let Some(failure) = failure else {
                return outcome;
            };
            let Some(again) = replay else {
                // A streamed body cannot be sent twice.
                return outcome;
            };
            if started.elapsed() >= self.options.failover_timeout {
                return outcome;
            }
            // Made on this path only: a request that succeeds pays nothing.
            let label = crate::transport::request_label(&again);
            match failure {
                Failure::Down => self.failed(&member, "it failed a request"),
                Failure::NotPrimary => {
                    tracing::info!(target: "safeguard_sdk::cluster", member = %member, request = %label, "a replica refused a write: looking for the primary");
                    let mut members = self.write();
                    if let Some(m) = members.list.iter_mut().find(|m| m.host == member) {
                        m.role = MemberRole::Replica;
                    }
                }
                Failure::Busy => {
                    tracing::info!(target: "safeguard_sdk::cluster", member = %member, request = %label, wait = ?backoff, "the cluster is locked by a cluster-wide operation: waiting");
                }
            }
            // A move to another member is tried at once; the same member,
            // or a second move, after a wait.
            if failure == Failure::Busy || tries > 1 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            if failure != Failure::Busy {
                self.check(http, limits).await;
            }
            if let Some(next) = self.choose(route) {
                if next != member {
                    tracing::info!(target: "safeguard_sdk::cluster", from = %member, to = %next, request = %label, "moving to another member");
                }
            }
            request = again;
        }
    }
}

impl ClusterMember {
    /// An address given by the caller: not checked yet, tried as available.
    fn given(host: Host) -> Self {
        Self {
            host,
            id: None,
            role: MemberRole::Unknown,
            available: true,
            latency: None,
        }
    }
}

/// How one try ended.
enum Sent {
    /// An answer, of any status.
    Answer(reqwest::Response),
    /// The connection could not be opened: the request never left.
    NotReached(Error),
    /// It failed after the connection was open (reset, timeout): the
    /// member may have carried it out.
    Broken(Error),
}

/// Sends `request` once to `member`.
async fn send_once(
    http: &reqwest::Client,
    limits: &Limits,
    member: &Host,
    request: reqwest::Request,
    streamed: bool,
) -> Sent {
    if streamed {
        return match limits::send_within(http, limits, member.authority(), request, true).await {
            Ok(r) => Sent::Answer(r),
            Err(Error::Transport(t)) if t.is_connect() => Sent::NotReached(Error::Transport(t)),
            Err(e) => Sent::Broken(e),
        };
    }
    match http.execute(request).await {
        Ok(r) => Sent::Answer(r),
        // reqwest: `is_connect` covers DNS, refusal, the connect timeout
        // and the TLS handshake, all before the request is written.
        Err(e) if e.is_connect() => Sent::NotReached(Error::from_reqwest(e)),
        Err(e) => Sent::Broken(Error::from_reqwest(e)),
    }
}

/// What an answer says about its member: 503 is a member that does not
/// serve; a write's 403 / 60418 a replica; a write's 400 / 60910 a locked
/// cluster. The answer is given back as it came (its body, when read to
/// tell, put back).
async fn judge(
    route: Route,
    response: reqwest::Response,
    limits: &Limits,
) -> (Result<reqwest::Response>, Option<Failure>) {
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return (Ok(response), Some(Failure::Down));
    }
    let may_tell =
        route == Route::Write && matches!(status, StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST);
    if !may_tell {
        return (Ok(response), None);
    }
    let (rebuilt, body) =
        crate::transport::read_error_answer(response, limits.max_error_bytes).await;
    let failure = match (status, appliance_code(status, body)) {
        (StatusCode::FORBIDDEN, Some(NOT_PRIMARY)) => Some(Failure::NotPrimary),
        (StatusCode::BAD_REQUEST, Some(CLUSTER_BUSY)) => Some(Failure::Busy),
        _ => None,
    };
    (Ok(reqwest::Response::from(rebuilt)), failure)
}

/// The appliance's `Code` in an error body (read as every error answer is).
fn appliance_code(status: StatusCode, body: Bytes) -> Option<i64> {
    crate::error::ApiError::from_parts(status, String::new(), body).code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_go_to_the_primary_and_replica_work_anywhere() {
        let r = |m: Method, p: &str| route(&m, p);
        assert_eq!(r(Method::GET, "/service/core/v4/Users"), Route::Read);
        assert_eq!(r(Method::POST, "/service/core/v4/Users"), Route::Write);
        assert_eq!(r(Method::PUT, "/service/core/v4/Users/5"), Route::Write);
        assert_eq!(r(Method::DELETE, "/service/core/v4/Assets/5"), Route::Write);
        assert_eq!(
            r(Method::POST, "/service/core/v4/Me/Certificates"),
            Route::Write
        );
        assert_eq!(
            r(Method::POST, "/service/core/v4/AccessRequests"),
            Route::Read
        );
        assert_eq!(
            r(
                Method::POST,
                "/service/core/v4/accessrequests/5/CheckOutPassword"
            ),
            Route::Read
        );
        assert_eq!(
            r(Method::POST, "/service/core/v3/Token/LoginResponse"),
            Route::Read
        );
        assert_eq!(
            r(Method::POST, "/service/core/v4/Cluster/Members/A1/Promote"),
            Route::Read
        );
        assert_eq!(
            r(Method::POST, "/service/core/v4/Cluster/Members"),
            Route::Write
        );
        assert_eq!(r(Method::POST, "/RSTS/oauth2/token"), Route::Read);
        assert_eq!(
            r(Method::GET, "/service/notification/v4/Status"),
            Route::Read
        );
        assert_eq!(r(Method::GET, "/service/a2a/v4/Credentials"), Route::Read);
        assert_eq!(
            r(Method::POST, "/service/appliance/v4/Backups"),
            Route::Pinned
        );
        assert_eq!(
            r(Method::GET, "/service/management/v4/ApplianceStatus"),
            Route::Pinned
        );
        assert_eq!(r(Method::GET, "/elsewhere"), Route::Pinned);
        assert_eq!(r(Method::GET, ""), Route::Pinned);
    }

    fn cluster(reads: ReadRouting) -> Cluster {
        let host = Host::parse("a:8443").unwrap();
        Cluster::new(
            &host,
            ClusterOptions::new()
                .members(["b:8443", "c:8443", "a:8443"])
                .reads(reads),
            "v4",
        )
        .unwrap()
    }

    fn set(c: &Cluster, i: usize, role: MemberRole, available: bool, ms: u64) {
        let mut m = c.write();
        let m = &mut m.list[i];
        m.role = role;
        m.available = available;
        m.latency = Some(Duration::from_millis(ms));
    }

    #[test]
    fn the_members_given_are_known_once_each() {
        let c = cluster(ReadRouting::Nearest);
        let hosts: Vec<String> = c.members().iter().map(|m| m.host.to_string()).collect();
        assert_eq!(hosts, ["a:8443", "b:8443", "c:8443"]);
        assert!(Cluster::new(
            &Host::parse("a").unwrap(),
            ClusterOptions::new().members(["bad/host"]),
            "v4"
        )
        .is_err());
    }

    #[test]
    fn choices_follow_roles_availability_and_latency() {
        let c = cluster(ReadRouting::Nearest);
        set(&c, 0, MemberRole::Primary, true, 30);
        set(&c, 1, MemberRole::Replica, true, 5);
        set(&c, 2, MemberRole::Replica, true, 10);
        let name = |h: Option<Host>| h.map(|h| h.to_string());
        assert_eq!(name(c.choose(Route::Write)).as_deref(), Some("a:8443"));
        assert_eq!(name(c.choose(Route::Read)).as_deref(), Some("b:8443"));
        c.failed(&Host::parse("b:8443").unwrap(), "test");
        assert_eq!(name(c.choose(Route::Read)).as_deref(), Some("c:8443"));
        c.failed(&Host::parse("a:8443").unwrap(), "test");
        assert_eq!(c.choose(Route::Write), None, "no write goes to a replica");
        assert_eq!(name(c.choose(Route::Read)).as_deref(), Some("c:8443"));

        let p = cluster(ReadRouting::Primary);
        set(&p, 0, MemberRole::Replica, true, 1);
        set(&p, 1, MemberRole::Primary, true, 50);
        set(&p, 2, MemberRole::Replica, true, 2);
        assert_eq!(name(p.choose(Route::Read)).as_deref(), Some("b:8443"));
        p.failed(&Host::parse("b:8443").unwrap(), "test");
        assert_eq!(name(p.choose(Route::Read)).as_deref(), Some("a:8443"));
    }

    #[test]
    fn states_that_serve() {
        let s = |state: &str, maintenance: bool| Status {
            appliance_id: None,
            is_primary: false,
            is_maintenance: maintenance,
            appliance_current_state: Some(state.into()),
            ip_address: None,
        };
        assert!(s("Online", false).serves());
        assert!(s("ReplicaWithQuorum", false).serves());
        assert!(!s("Online", true).serves());
        assert!(!s("Maintenance", false).serves());
        assert!(!s("ShuttingDown", false).serves());
        assert!(!s("Quarantine", false).serves());
    }

    proptest::proptest! {
        /// Any error body: a code or none, never a panic.
        #[test]
        fn any_error_body_is_read_without_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = appliance_code(StatusCode::BAD_REQUEST, Bytes::from(body));
        }

        /// Any path routes somewhere without a panic.
        #[test]
        fn any_path_routes(path in "\\PC{0,60}") {
            let _ = route(&Method::POST, &path);
        }
    }

    #[test]
    fn codes_are_read_from_appliance_errors() {
        let code =
            |body: &'static [u8]| appliance_code(StatusCode::FORBIDDEN, Bytes::from_static(body));
        assert_eq!(code(br#"{"Code":60418,"Message":"x"}"#), Some(60418));
        assert_eq!(code(b"not json"), None);
        assert_eq!(code(br#"{"Message":"x"}"#), None);
    }
}
