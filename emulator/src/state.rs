//! The emulator's state: entities (as JSON objects shaped like core.json's
//! schemas), credentials, tokens, login sessions, counters and fault switches.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};

use base64::Engine as _;
use openssl::x509::X509;

use crate::certs::{trusted_cert_json, GeneratedCerts};
use crate::model::*;
use crate::sshkey::SshKey;
use crate::tls::ModeCell;

/// Id of the built-in local provider.
pub(crate) const LOCAL_PROVIDER: i64 = -1;
/// Id of the built-in certificate provider.
pub(crate) const CERT_PROVIDER: i64 = -2;
/// Id of the external (directory) provider.
pub(crate) const EXTERNAL_PROVIDER: i64 = 3;
/// RstsProviderId of the one-time-password secondary provider.
pub(crate) const OTP_PROVIDER_ID: &str = "emulator-otp";

/// A state change the SignalR hubs publish.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub name: String,
    pub data: Value,
    /// For A2A events: the account concerned (the A2A hub filters on it).
    pub account_id: Option<i64>,
}

/// A SignalR transport served by plain HTTP requests (ASP.NET Core's
/// "half-transports", each paired with POSTs for what the client sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HttpTransport {
    /// `GET` with `Accept: text/event-stream`, one long response.
    ServerSentEvents,
    /// Repeated `GET`s, each answered with what is pending.
    LongPolling,
}

/// A SignalR connection over Server-Sent Events or long polling. The hub task
/// (in `signalr`) reads what the client POSTs from `incoming` and writes what
/// it sends to the sender half of `outgoing`; the transport requests take it
/// from there.
pub(crate) struct HttpHubConn {
    pub transport: HttpTransport,
    /// Client to hub: the POSTed bodies. `None` once a DELETE ended the connection.
    pub incoming: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// Hub to client. Server-Sent Events take the receiver out once (a second
    /// stream is refused); long polls lock it one at a time.
    pub outgoing: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Bumped by every poll: a poll still waiting when it changes is
    /// superseded (ASP.NET Core answers it 204).
    pub poll_gen: watch::Sender<u64>,
    /// Polls in progress, and when the last one ended (idle connections end).
    pub polls: AtomicUsize,
    pub last_poll: Mutex<Instant>,
    /// Set when the hub ended the connection as broken (dropped, outage):
    /// the transport then breaks its response instead of ending it cleanly.
    pub aborted: AtomicBool,
    /// Set when the hub task has ended.
    pub ended: AtomicBool,
}

pub(crate) struct UserToken {
    pub user_id: i64,
    pub expires: Instant,
}

pub(crate) struct StsToken {
    pub user_id: i64,
    pub expires: Instant,
    pub provider: String,
}

pub(crate) struct AuthCode {
    pub user_id: i64,
    pub challenge: String,
    pub redirect_uri: String,
    pub expires: Instant,
    pub provider: String,
}

#[derive(Default)]
pub(crate) struct PkceSession {
    pub user_id: Option<i64>,
    pub provider: String,
    pub needs_mfa: bool,
    pub mfa_ok: bool,
    pub mfa_state: Option<String>,
    pub created: Option<Instant>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved(i64),
    Denied,
    Redeemed,
}

pub(crate) struct DeviceCode {
    pub user_code: String,
    pub provider: String,
    pub expires: Instant,
    pub interval: u64,
    pub last_poll: Option<Instant>,
    pub status: DeviceStatus,
    /// Answer the next poll with `slow_down` whatever its timing (fault injection).
    pub slow_down_next: bool,
}

/// A backup: metadata and how its content is produced.
#[derive(Clone, Debug)]
pub(crate) struct Backup {
    pub meta: Value,
    pub size: u64,
    pub seed: u64,
}

/// Deterministic content of a backup, generated on the fly (xorshift64*).
pub(crate) fn backup_chunk(state: &mut u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        let mut x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) struct SshKeyEntry {
    pub key: SshKey,
}

/// Everything behind the one state lock.
#[derive(Default)]
pub(crate) struct Db {
    pub next_id: i64,
    pub users: BTreeMap<i64, Value>,
    pub passwords: HashMap<i64, String>,
    pub assets: BTreeMap<i64, Value>,
    pub accounts: BTreeMap<i64, Value>,
    pub account_passwords: HashMap<i64, String>,
    pub account_ssh_keys: HashMap<i64, SshKeyEntry>,
    pub account_api_keys: HashMap<i64, Vec<Value>>,
    pub registrations: BTreeMap<i64, Value>,
    /// (registration id, account id) → RegistrationRetrievableAccount.
    pub retrievable: BTreeMap<(i64, i64), Value>,
    /// registration id → RegistrationAccessRequestBroker.
    pub brokers: BTreeMap<i64, Value>,
    pub trusted_certs: BTreeMap<String, Value>,
    pub settings: Vec<Value>,
    pub access_requests: BTreeMap<i64, Value>,
    /// Roles (entitlements), shaped like core.json's `Role`; `Members` hold
    /// `Identity` objects (re-rendered from the users when answered).
    pub roles: BTreeMap<i64, Value>,
    /// Access policies, shaped like `AccessPolicy`; `ScopeItems` hold
    /// `{Id, ScopeItemType}` and `ApproverSets[].Approvers` / `Reviewers` hold
    /// `{Id, PrincipalKind}` (rendered in full when answered).
    pub policies: BTreeMap<i64, Value>,
    pub backups: BTreeMap<String, Backup>,
    pub login_message: Value,
    pub tokens: HashMap<String, UserToken>,
    pub sts_tokens: HashMap<String, StsToken>,
    pub auth_codes: HashMap<String, AuthCode>,
    pub pkce: HashMap<String, PkceSession>,
    pub device_codes: HashMap<String, DeviceCode>,
    /// SignalR connection ids/tokens handed out by negotiate.
    pub signalr_ids: HashMap<String, Instant>,
    /// The generic layer's collections: lower-cased concrete path
    /// (`core/assets/7/accounts`) → entities in creation order.
    pub generic: BTreeMap<String, Vec<Value>>,
    /// The generic layer's membership sets (`core/roles/3/members`).
    pub members: BTreeMap<String, Vec<Value>>,
}

impl Db {
    /// Whether user `id` holds one of `roles` (`AdminRoles`; GlobalAdmin
    /// holds them all). An unknown user holds none.
    pub(crate) fn holds_role(&self, id: i64, roles: &[&str]) -> bool {
        self.users.get(&id).is_some_and(|u| {
            u["AdminRoles"].as_array().is_some_and(|held| {
                held.iter()
                    .filter_map(|r| r.as_str())
                    .any(|r| r == "GlobalAdmin" || roles.contains(&r))
            })
        })
    }

    pub(crate) fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn find_user(&self, provider: i64, name_or_identity: &str) -> Option<i64> {
        self.users.iter().find_map(|(id, u)| {
            let p = &u["PrimaryAuthenticationProvider"];
            let same_provider = p["Id"].as_i64() == Some(provider);
            let matches = u["Name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name_or_identity))
                || p["Identity"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name_or_identity));
            (same_provider && matches).then_some(*id)
        })
    }

    pub(crate) fn setting(&self, name: &str) -> Option<&Value> {
        self.settings.iter().find(|s| {
            s["Name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }

    /// The grant types the `Allowed OAuth2 Grant Types` setting allows (lower case).
    pub(crate) fn allowed_grants(&self) -> Vec<String> {
        self.setting(GRANT_SETTING)
            .and_then(|s| s["Value"].as_str())
            .map(parse_grant_list)
            .unwrap_or_default()
    }

    /// Which registration/account an A2A API key belongs to.
    pub(crate) fn api_key_owner(&self, key: &str) -> Option<(i64, i64)> {
        self.retrievable.iter().find_map(|((reg, acct), v)| {
            (v["ApiKey"].as_str() == Some(key)).then_some((*reg, *acct))
        })
    }

    /// Which registration's access-request broker an API key belongs to.
    pub(crate) fn broker_key_owner(&self, key: &str) -> Option<i64> {
        self.brokers
            .iter()
            .find_map(|(reg, v)| (v["ApiKey"].as_str() == Some(key)).then_some(*reg))
    }
}

/// Whether a client certificate chains to one of the trusted certificates.
pub(crate) fn is_trusted(db: &Db, der: &[u8]) -> bool {
    let Ok(cert) = X509::from_der(der) else {
        return false;
    };
    db.trusted_certs.values().any(|tc| {
        let Some(data) = tc["Base64CertificateData"].as_str() else {
            return false;
        };
        let Ok(ca_der) = base64::engine::general_purpose::STANDARD.decode(data) else {
            return false;
        };
        if ca_der == der {
            return true;
        }
        let Ok(ca) = X509::from_der(&ca_der) else {
            return false;
        };
        let verified = ca
            .public_key()
            .and_then(|k| cert.verify(&k))
            .unwrap_or(false);
        // A failed verification answers Ok(false) but leaves its error on
        // this thread's OpenSSL error queue, where the next SSL_read served
        // by the same worker thread would take it for its own failure and
        // drop that connection. Drain it.
        drop(openssl::error::ErrorStack::get());
        verified
    })
}

/// Name of the grant types setting.
pub(crate) const GRANT_SETTING: &str = "Allowed OAuth2 Grant Types";
/// The grant type names the setting accepts.
pub(crate) const GRANT_NAMES: [&str; 5] = [
    "Implicit",
    "AuthorizationCode",
    "ClientCredentials",
    "ResourceOwner",
    "DeviceCode",
];

pub(crate) fn parse_grant_list(s: &str) -> Vec<String> {
    s.split([',', ';', ' '])
        .map(|g| g.trim().to_ascii_lowercase())
        .filter(|g| !g.is_empty())
        .collect()
}

/// Record of one backup upload, for tests.
#[derive(Clone, Debug)]
pub(crate) struct Upload {
    pub id: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Shared application state.
pub(crate) struct App {
    db: Mutex<Db>,
    pub events: broadcast::Sender<Event>,
    pub ws_drop: watch::Sender<u64>,
    /// The latest SignalR close message to send to every hub connection
    /// (bumped per request): `(generation, close message)`.
    pub ws_close: watch::Sender<(u64, serde_json::Value)>,
    pub shutdown: watch::Sender<bool>,
    /// Until when the A2A hub is out (`Control::a2a_hub_outage`): it refuses
    /// connections while `Instant::now()` is before this.
    pub a2a_hub_down_until: Mutex<Option<Instant>>,
    /// Bumped at the start of every A2A hub outage: the hub's connections drop.
    pub a2a_hub_drop: watch::Sender<u64>,
    pub silent: AtomicBool,
    pub negotiate_v0: AtomicBool,
    pub latency_ms: AtomicU64,
    /// The appliance is in maintenance (`Control::set_maintenance`): core,
    /// appliance and a2a answer 503, the management service keeps answering.
    pub maintenance: AtomicBool,
    /// Configuration writes a replica refused (403 / 60418).
    pub replica_refusals: AtomicU64,
    /// Requests are validated against the documents.
    pub strict_validation: AtomicBool,
    pub fail_remaining: AtomicU64,
    pub fail_status: AtomicU32,
    pub token_lifetime: Mutex<Duration>,
    pub ping_interval_ms: AtomicU64,
    pub device_interval: AtomicU64,
    pub device_lifetime: Duration,
    pub signins: Mutex<BTreeMap<String, u64>>,
    pub login_responses: AtomicU64,
    pub uploads: Mutex<Vec<Upload>>,
    pub websockets: AtomicUsize,
    /// SignalR connections over Server-Sent Events and long polling, by the
    /// id their requests carry (connectionToken, or connectionId for
    /// negotiate version 0).
    pub hub_http: Mutex<HashMap<String, Arc<HttpHubConn>>>,
    /// How long a long poll waits for a message before answering 200 empty.
    pub long_poll_timeout_ms: AtomicU64,
    pub cert_mode: ModeCell,
    /// TLS handshakes completed on the SPP port.
    pub handshakes: Arc<crate::tls::HandshakeCounts>,
    pub openapi_dirs: Vec<PathBuf>,
    pub host: String,
    pub appliance_id: String,
    /// The emulated cluster: its members, the primary, the lock.
    pub cluster: Mutex<Cluster>,
    /// Bumped when a member's `running` switch changes: the crate root then
    /// stops or starts that member's listener.
    pub cluster_changed: watch::Sender<u64>,
    pub admin_id: i64,
    pub password_account_id: i64,
    pub ssh_account_id: i64,
    pub registration_id: i64,
}

/// Which cluster member a request reached: an extension the member's router
/// adds to every request (absent: member 0, a lone appliance).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemberIndex(pub usize);

/// One appliance of the emulated cluster.
#[derive(Clone, Debug)]
pub(crate) struct ClusterNode {
    /// Appliance id (`ClusterMember.Id`).
    pub id: String,
    pub name: String,
    /// `127.0.0.1:PORT` of its listener.
    pub host: String,
    /// Whether its listener should be up (fault injection stops it).
    pub running: bool,
    pub enrolled: String,
}

/// A cluster-wide operation in progress: the cluster is locked until `until`.
#[derive(Clone, Debug)]
pub(crate) struct ClusterLock {
    /// A `ClusterOperation` value (`Failover`, `Patch`, ...).
    pub operation: String,
    /// The appliance id that owns the operation.
    pub owner: String,
    pub started: String,
    pub until: Instant,
}

/// The emulated cluster. Every member serves the one shared [`App`].
#[derive(Clone, Debug)]
pub(crate) struct Cluster {
    pub members: Vec<ClusterNode>,
    /// Index of the primary in `members`.
    pub leader: usize,
    /// SHA-1 thumbprint of the server certificate (all members share it).
    pub thumbprint: String,
    pub lock: Option<ClusterLock>,
}

impl Cluster {
    /// The lock in force now (an expired lock is dropped).
    pub(crate) fn active_lock(&mut self) -> Option<&ClusterLock> {
        if self
            .lock
            .as_ref()
            .is_some_and(|l| l.until <= Instant::now())
        {
            self.lock = None;
        }
        self.lock.as_ref()
    }

    /// Locks the cluster for `duration` with `operation` (a
    /// `ClusterOperation` value) owned by the primary.
    pub(crate) fn lock_for(&mut self, operation: &str, duration: Duration) {
        self.lock = Some(ClusterLock {
            operation: operation.to_string(),
            owner: self.members[self.leader].id.clone(),
            started: now_string(),
            until: Instant::now() + duration,
        });
    }
}

pub(crate) fn now_string() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut b = vec![0u8; bytes];
    rand::RngExt::fill(&mut rand::rng(), &mut b[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An A2A API key in the appliance's style (base64 of 32 random bytes).
pub(crate) fn api_key() -> String {
    use base64::Engine;
    let b: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub(crate) fn provider_ref(id: i64) -> Value {
    match id {
        LOCAL_PROVIDER => json!({"Id": -1, "Name": "Local", "TypeReferenceName": "Local"}),
        CERT_PROVIDER => {
            json!({"Id": -2, "Name": "Certificate", "TypeReferenceName": "Certificate"})
        }
        EXTERNAL_PROVIDER => {
            json!({"Id": 3, "Name": EXTERNAL_PROVIDER_NAME, "TypeReferenceName": "Ldap"})
        }
        _ => json!({"Id": id, "Name": Value::Null, "TypeReferenceName": "Unknown"}),
    }
}

/// The AuthenticationProviders list.
pub(crate) fn providers() -> Value {
    json!([
        {"Id": -1, "Name": "Local", "TypeReferenceName": "Local", "IdentityProviderId": -1,
         "RstsProviderId": "local", "RstsProviderScope": "rsts:sts:primaryproviderid:local", "ForceAsDefault": false},
        {"Id": -2, "Name": "Certificate", "TypeReferenceName": "Certificate", "IdentityProviderId": -1,
         "RstsProviderId": "certificate", "RstsProviderScope": "rsts:sts:primaryproviderid:certificate", "ForceAsDefault": false},
        {"Id": 3, "Name": EXTERNAL_PROVIDER_NAME, "TypeReferenceName": "Ldap", "IdentityProviderId": 3,
         "RstsProviderId": EXTERNAL_PROVIDER_ID, "RstsProviderScope": format!("rsts:sts:primaryproviderid:{EXTERNAL_PROVIDER_ID}"), "ForceAsDefault": false}
    ])
}

/// Maps an rSTS provider id to the provider's numeric id.
pub(crate) fn provider_by_rsts_id(rsts: &str) -> Option<i64> {
    match rsts.to_ascii_lowercase().as_str() {
        "local" => Some(LOCAL_PROVIDER),
        "certificate" => Some(CERT_PROVIDER),
        p if p == EXTERNAL_PROVIDER_ID => Some(EXTERNAL_PROVIDER),
        _ => None,
    }
}

/// A User object with every property of core.json's `User` schema.
pub(crate) fn new_user(
    id: i64,
    name: &str,
    provider: i64,
    identity: &str,
    roles: &[&str],
) -> Value {
    let mut p = provider_ref(provider);
    p["Identity"] = json!(identity);
    let idp = if provider == EXTERNAL_PROVIDER {
        provider_ref(EXTERNAL_PROVIDER)
    } else {
        provider_ref(LOCAL_PROVIDER)
    };
    let now = now_string();
    json!({
        "Id": id,
        "Name": name,
        "Description": Value::Null,
        "DisplayName": name,
        "FirstName": Value::Null,
        "LastName": Value::Null,
        "EmailAddress": Value::Null,
        "WorkPhone": Value::Null,
        "MobilePhone": Value::Null,
        "AdminRoles": roles,
        "PrimaryAuthenticationProvider": p,
        "SecondaryAuthenticationProvider": {"Id": 0, "Name": Value::Null, "TypeReferenceName": "Unknown", "Identity": Value::Null},
        "IdentityProvider": idp,
        "Disabled": false,
        "Locked": false,
        "TimeZoneId": "UTC",
        "TimeZoneDisplayName": "(UTC) Coordinated Universal Time",
        "TimeZoneIanaName": "Etc/UTC",
        "IsPartitionOwner": false,
        "CloudAssistantApproveEnabled": false,
        "CloudAssistantRecipientId": Value::Null,
        "AllowPersonalAccounts": false,
        "PasswordNeverExpires": true,
        "ChangePasswordAtNextLogin": false,
        "IsSystemOwned": false,
        "IsRequester": true,
        "IsApprover": false,
        "IsReviewer": false,
        "LastLoginDate": Value::Null,
        "LastRequestDate": Value::Null,
        "CreatedDate": now,
        "CreatedByUserId": -2,
        "CreatedByUserDisplayName": "Safeguard Emulator",
        "ModifiedDate": now,
        "ModifiedByUserId": -2,
        "ModifiedByUserDisplayName": "Safeguard Emulator",
        "RequireCertificateAuthentication": false,
        "DirectoryRequireCertificateAuthentication": false,
        "LinkedAccountsCount": 0,
    })
}

/// Every administrator role of the appliance.
pub(crate) const ALL_ROLES: [&str; 8] = [
    "GlobalAdmin",
    "ApplicationAuditor",
    "SystemAuditor",
    "Auditor",
    "AssetAdmin",
    "ApplianceAdmin",
    "PolicyAdmin",
    "UserAdmin",
];

pub(crate) fn new_asset(id: i64, name: &str, address: &str) -> Value {
    json!({
        "Id": id,
        "Name": name,
        "Description": Value::Null,
        "NetworkAddress": address,
        "PlatformId": crate::platforms::OTHER_LINUX,
        "PlatformDisplayName": "Other Linux",
        "IsDirectory": false,
        "ManagedNetworkId": 1,
        "ManagedNetworkName": "Default",
        "AssetPartitionId": -1,
        "AssetPartitionName": "Default Partition",
        "Disabled": false,
        "Tags": [],
        "ManagedBy": [],
        "CreatedDate": now_string(),
        "CreatedByUserId": -2,
        "CreatedByUserDisplayName": "Safeguard Emulator",
        "Platform": crate::platforms::get(crate::platforms::OTHER_LINUX).unwrap_or(Value::Null),
        "ConnectionProperties": {"ServiceAccountCredentialType": "None", "Port": 22},
    })
}

pub(crate) fn new_account(id: i64, name: &str, asset: &Value) -> Value {
    json!({
        "Id": id,
        "Name": name,
        "Description": Value::Null,
        "DistinguishedName": Value::Null,
        "DomainName": Value::Null,
        "AccountNamespace": "Unix",
        "AltLoginName": Value::Null,
        "Disabled": false,
        "IsServiceAccount": false,
        "IsApplicationAccount": false,
        "SharedServiceAccount": false,
        "Tags": [],
        "ManagedBy": [],
        "CreatedDate": now_string(),
        "CreatedByUserId": -2,
        "CreatedByUserDisplayName": "Safeguard Emulator",
        "Asset": {
            "Id": asset["Id"], "Name": asset["Name"], "NetworkAddress": asset["NetworkAddress"],
            "AssetPartitionId": -1, "AssetPartitionName": "Default Partition"
        },
        "Platform": asset["Platform"].clone(),
        "RequestProperties": {"AllowPasswordRequest": true, "AllowSessionRequest": false, "AllowSshKeyRequest": true},
        "HasPassword": false,
        "HasSshKey": false,
        "HasTotpAuthenticator": false,
        "HasApiKeys": false,
        "HasFile": false,
    })
}

pub(crate) fn retrievable_json(account: &Value, key: &str) -> Value {
    json!({
        "AccountId": account["Id"],
        "AccountName": account["Name"],
        "ApiKey": key,
        "IpRestrictions": [],
        "AssetId": account["Asset"]["Id"],
        "AssetName": account["Asset"]["Name"],
        "AssetPartitionId": -1,
        "AssetPartitionName": "Default Partition",
        "AssetDescription": Value::Null,
        "AccountDescription": account["Description"],
        "NetworkAddress": account["Asset"]["NetworkAddress"],
        "AccountDisabled": 0,
        "AccountType": "Asset",
        "DomainName": account["DomainName"],
    })
}

/// Access-request states whose release window runs: past `ExpiresOn` they
/// become `Expired`.
pub(crate) const EXPIRING_STATES: [&str; 6] = [
    "PendingApproval",
    "Approved",
    "RequestAvailable",
    "PasswordCheckedOut",
    "SshKeyCheckedOut",
    "SessionInitialized",
];

/// Name of the seeded role (entitlement) whose member may request the password account.
pub(crate) const REQUESTER_ROLE: &str = "Emulator Requesters";
/// Name of the seeded role of the administrator (checks out without approval).
pub(crate) const ADMIN_ROLE: &str = "Emulator Administrators";
/// Name of the seeded access policy of [`REQUESTER_ROLE`].
pub(crate) const ACCESS_POLICY: &str = "Emulator Password Policy";

/// A user as core.json's `Identity` (also the shape of `Approver`).
pub(crate) fn identity_json(user: &Value) -> Value {
    let idp = &user["IdentityProvider"];
    json!({
        "DisplayName": user["DisplayName"],
        "Id": user["Id"],
        "IdentityProviderId": idp["Id"],
        "IdentityProviderName": idp["Name"],
        "IdentityProviderTypeReferenceName": idp["TypeReferenceName"],
        "IsSystemOwned": user["IsSystemOwned"].as_bool().unwrap_or(false),
        "Name": user["Name"],
        "PrincipalKind": "User",
        "EmailAddress": user["EmailAddress"],
        "DomainName": Value::Null,
        "FullDisplayName": user["DisplayName"],
    })
}

/// `HourlyRestrictionProperties` without restrictions.
pub(crate) fn no_hourly_restrictions() -> Value {
    json!({"EnableHourlyRestrictions": false, "MondayValidHours": [], "TuesdayValidHours": [],
        "WednesdayValidHours": [], "ThursdayValidHours": [], "FridayValidHours": [],
        "SaturdayValidHours": [], "SundayValidHours": []})
}

/// A stored role (core.json `Role`; the counts are computed when answered).
pub(crate) fn new_role(
    id: i64,
    name: &str,
    priority: i64,
    members: Vec<Value>,
    (by, by_name): (i64, &str),
) -> Value {
    json!({
        "Id": id,
        "Name": name,
        "Priority": priority,
        "Description": Value::Null,
        "ExpirationDate": Value::Null,
        "IsExpired": false,
        "HasExpiredPolicies": false,
        "HasInvalidPolicies": false,
        "CreatedDate": now_string(),
        "CreatedByUserId": by,
        "CreatedByUserDisplayName": by_name,
        "HourlyRestrictionProperties": no_hourly_restrictions(),
        "Members": members,
    })
}

/// A stored access policy with the appliance's defaults (core.json
/// `AccessPolicy`): password requests, no approval, no review, no emergency
/// access, two-hour releases the requester may not change (at most seven
/// days once allowed: the SPP user guide's default maximum).
pub(crate) fn new_access_policy(
    id: i64,
    name: &str,
    role_id: i64,
    priority: i64,
    (by, by_name): (i64, &str),
) -> Value {
    json!({
        "Id": id,
        "Name": name,
        "Description": Value::Null,
        "RoleId": role_id,
        "Priority": priority,
        "CreatedDate": now_string(),
        "CreatedByUserId": by,
        "CreatedByUserDisplayName": by_name,
        "RequesterProperties": {
            "DefaultReleaseDurationDays": 0, "DefaultReleaseDurationHours": 2, "DefaultReleaseDurationMinutes": 0,
            "MaximumReleaseDurationDays": 7, "MaximumReleaseDurationHours": 0, "MaximumReleaseDurationMinutes": 0,
            "AllowCustomDuration": false, "RequireReasonCode": false, "RequireReasonComment": false,
            "RequireServiceTicket": false
        },
        "ApproverProperties": {
            "RequireApproval": false, "PendingApprovalEscalationEnabled": false,
            "PendingApprovalDurationBeforeEscalationDays": 0, "PendingApprovalDurationBeforeEscalationHours": 0,
            "PendingApprovalDurationBeforeEscalationMinutes": 0
        },
        "ReviewerProperties": {
            "RequiredReviewers": 0, "RequireReviewerComment": false,
            "AllowSubsequentAccessRequestsWithoutReview": true, "PendingReviewEscalationEnabled": false,
            "PendingReviewDurationBeforeEscalationDays": 0, "PendingReviewDurationBeforeEscalationHours": 0,
            "PendingReviewDurationBeforeEscalationMinutes": 0
        },
        "AccessRequestProperties": {
            "AccessRequestType": "Password", "AllowSimultaneousAccess": true, "MaximumSimultaneousReleases": 1,
            "ChangePasswordAfterCheckin": false, "ChangeSshKeyAfterCheckin": false,
            "AllowSessionPasswordRelease": false, "AllowSessionSshKeyRelease": false,
            "IncludePasswordRelease": false, "IncludeSshKeyRelease": false,
            "SessionAccessAccountType": "None", "SessionAccessAccounts": [],
            "TerminateExpiredSessions": false, "AllowLinkedAccountPasswordAccess": false,
            "PassphraseProtectSshKey": false, "UseAltLoginName": false, "LinkedAccountScopeFiltering": false
        },
        "SessionProperties": {
            "SessionModuleConnectionId": Value::Null, "SessionConnectionPolicyRef": Value::Null,
            "RdpShowWallpaper": false
        },
        "EmergencyAccessProperties": {"AllowEmergencyAccess": false, "IgnoreHourlyRestrictions": false},
        "ApproverSets": [],
        "Reviewers": [],
        "NotificationContacts": [],
        "ReasonCodes": [],
        "ScopeItems": [],
        "ExpirationDate": Value::Null,
        "IsExpired": false,
        "InvalidConnectionPolicy": false,
        "HourlyRestrictionProperties": no_hourly_restrictions(),
    })
}

fn setting(name: &str, category: &str, value: &str, default: &str) -> Value {
    json!({"Name": name, "Category": category, "Value": value, "DefaultValue": default,
           "MinValue": Value::Null, "MaxValue": Value::Null, "Options": []})
}

impl App {
    pub(crate) fn new(config: &EmulatorConfig, certs: &GeneratedCerts, host: &str) -> Arc<App> {
        let mut db = Db {
            next_id: 0,
            ..Default::default()
        };
        let admin_id = db.id();
        db.users.insert(
            admin_id,
            new_user(admin_id, ADMIN_USER, LOCAL_PROVIDER, ADMIN_USER, &ALL_ROLES),
        );
        db.passwords.insert(admin_id, ADMIN_PASSWORD.to_string());
        // The default partition every appliance has (Id -1; its name as the
        // appliance's UI and API show it). Other partitions are created
        // through the generic layer's AssetPartitions collection.
        db.generic.insert(
            "core/assetpartitions".to_string(),
            vec![json!({"Id": -1, "Name": "Default Partition",
                "Description": "Assets and accounts not assigned to another partition.",
                "CreatedDate": now_string(), "CreatedByUserId": admin_id,
                "CreatedByUserDisplayName": ADMIN_USER, "ManagedBy": [],
                "DefaultProfileId": 1, "DefaultProfileName": "Default Profile",
                "DefaultSshKeyProfileId": 1, "DefaultSshKeyProfileName": "Default SSH Key Profile"})],
        );
        let mfa_id = db.id();
        let mut mfa = new_user(mfa_id, MFA_USER, LOCAL_PROVIDER, MFA_USER, &[]);
        mfa["SecondaryAuthenticationProvider"] = json!({"Id": 4, "Name": "Emulator One-Time Password",
            "TypeReferenceName": "Radius", "Identity": MFA_USER});
        db.users.insert(mfa_id, mfa);
        db.passwords.insert(mfa_id, MFA_PASSWORD.to_string());
        let ext_id = db.id();
        db.users.insert(
            ext_id,
            new_user(ext_id, EXTERNAL_USER, EXTERNAL_PROVIDER, EXTERNAL_USER, &[]),
        );
        db.passwords.insert(ext_id, EXTERNAL_PASSWORD.to_string());
        let plain_id = db.id();
        db.users.insert(
            plain_id,
            new_user(
                plain_id,
                PLAIN_USER,
                LOCAL_PROVIDER,
                PLAIN_USER,
                &["Auditor"],
            ),
        );
        db.passwords.insert(plain_id, PLAIN_PASSWORD.to_string());
        let cert_id = db.id();
        db.users.insert(
            cert_id,
            new_user(
                cert_id,
                CERT_USER,
                CERT_PROVIDER,
                &certs.client.thumbprint,
                &[],
            ),
        );

        // The CA is trusted, as an administrator would have done.
        let ca_der = certs.ca_cert.to_der().unwrap_or_default();
        if let Some(tc) = trusted_cert_json(&ca_der) {
            let tp = tc["Thumbprint"].as_str().unwrap_or_default().to_string();
            db.trusted_certs.insert(tp, tc);
        }

        let asset_id = db.id();
        let asset = new_asset(asset_id, ASSET_NAME, "10.0.0.10");
        db.assets.insert(asset_id, asset.clone());
        let pw_id = db.id();
        let mut pw_acct = new_account(pw_id, PASSWORD_ACCOUNT, &asset);
        pw_acct["HasPassword"] = json!(true);
        pw_acct["HasApiKeys"] = json!(true);
        db.accounts.insert(pw_id, pw_acct.clone());
        db.account_passwords
            .insert(pw_id, PASSWORD_ACCOUNT_PASSWORD.to_string());
        db.account_api_keys.insert(
            pw_id,
            vec![
                json!({"Id": 1, "Name": "emulator-api-key", "Description": "Seeded API key secret",
                "ClientId": uuid::Uuid::new_v4().to_string(), "ClientSecret": random_token(24),
                "ClientSecretId": uuid::Uuid::new_v4().to_string()}),
            ],
        );
        let ssh_id = db.id();
        let mut ssh_acct = new_account(ssh_id, SSH_KEY_ACCOUNT, &asset);
        ssh_acct["HasSshKey"] = json!(true);
        db.accounts.insert(ssh_id, ssh_acct.clone());
        db.account_ssh_keys.insert(
            ssh_id,
            SshKeyEntry {
                key: SshKey::generate(&format!("{SSH_KEY_ACCOUNT}@{ASSET_NAME}")),
            },
        );

        // Privileged access: the plain user may request the password
        // account's password through one policy that needs one approval by
        // the administrator.
        let role_id = db.id();
        let requester = identity_json(&db.users[&plain_id]);
        db.roles.insert(
            role_id,
            new_role(
                role_id,
                REQUESTER_ROLE,
                1,
                vec![requester],
                (admin_id, ADMIN_USER),
            ),
        );
        let policy_id = db.id();
        let mut policy =
            new_access_policy(policy_id, ACCESS_POLICY, role_id, 1, (admin_id, ADMIN_USER));
        policy["Description"] =
            json!("Seeded by the emulator: password requests need one approval.");
        policy["ApproverProperties"]["RequireApproval"] = json!(true);
        policy["RequesterProperties"]["AllowCustomDuration"] = json!(true);
        policy["ApproverSets"] = json!([{"RequiredApprovers": 1,
            "Approvers": [{"Id": admin_id, "PrincipalKind": "User"}]}]);
        policy["ScopeItems"] = json!([{"Id": pw_id, "ScopeItemType": "Account"}]);
        db.policies.insert(policy_id, policy);

        let reg_id = db.id();
        db.registrations.insert(
            reg_id,
            json!({"Id": reg_id, "AppName": A2A_APP_NAME, "Description": "Seeded by the emulator",
                "Disabled": false, "VisibleToCertificateUsers": true, "BidirectionalEnabled": true,
                "CertificateUserId": cert_id, "CertificateUserThumbPrint": certs.client.thumbprint,
                "CertificateUser": CERT_USER, "CreatedDate": now_string(), "CreatedByUserId": admin_id,
                "CreatedByUserDisplayName": ADMIN_USER}),
        );
        db.retrievable
            .insert((reg_id, pw_id), retrievable_json(&pw_acct, &api_key()));
        db.retrievable
            .insert((reg_id, ssh_id), retrievable_json(&ssh_acct, &api_key()));
        db.brokers.insert(
            reg_id,
            json!({"ApiKey": api_key(), "IpRestrictions": [],
                "Users": [{"UserId": admin_id, "UserName": ADMIN_USER}, {"UserId": plain_id, "UserName": PLAIN_USER}], "Groups": []}),
        );

        // The cluster (`Cluster/Members`, `Self`, `Status`, `Promote`) is
        // `App::cluster`, answered by `api::cluster`; this appliance is its
        // first member and primary.
        let appliance_id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let thumbprint = certs
            .server_cert
            .digest(openssl::hash::MessageDigest::sha1())
            .map(hex::encode_upper)
            .unwrap_or_default();

        // The administrator may check out both seeded accounts without
        // approval (a break-glass entitlement), so that the whole workflow
        // can be walked as one user; the requester role above shows the
        // approval path.
        let admins_id = db.id();
        let admin_identity = identity_json(&db.users[&admin_id]);
        db.roles.insert(
            admins_id,
            new_role(
                admins_id,
                ADMIN_ROLE,
                2,
                vec![admin_identity],
                (admin_id, ADMIN_USER),
            ),
        );
        for (name, account, kind) in [
            ("Emulator Break-Glass Password Policy", pw_id, "Password"),
            ("Emulator Break-Glass SSH Key Policy", ssh_id, "SshKey"),
        ] {
            let id = db.id();
            let mut policy = new_access_policy(id, name, admins_id, 1, (admin_id, ADMIN_USER));
            policy["Description"] = json!("Seeded by the emulator: no approval needed.");
            policy["RequesterProperties"]["AllowCustomDuration"] = json!(true);
            policy["AccessRequestProperties"]["AccessRequestType"] = json!(kind);
            policy["ScopeItems"] = json!([{"Id": account, "ScopeItemType": "Account"}]);
            db.policies.insert(id, policy);
        }

        db.settings = vec![
            setting(
                GRANT_SETTING,
                "Authentication",
                "AuthorizationCode, ClientCredentials, Implicit",
                "AuthorizationCode, ClientCredentials, Implicit",
            ),
            setting(
                "Token Lifetime",
                "Authentication",
                &config.token_lifetime.as_secs().div_ceil(60).to_string(),
                "60",
            ),
            setting(
                "Appliance Name",
                "Appliance",
                "SafeguardEmulator",
                "Safeguard",
            ),
            setting("Password History Days", "Password", "365", "365"),
        ];
        db.login_message = json!({"Message": "", "UpdatedDate": Value::Null, "UpdatedByUserId": Value::Null,
            "UpdatedByUserDisplayName": Value::Null});

        let backup_id = uuid::Uuid::new_v4().to_string();
        db.backups.insert(
            backup_id.clone(),
            Backup {
                meta: backup_json(&backup_id, config.backup_size, "Complete", admin_id),
                size: config.backup_size,
                seed: rand::random(),
            },
        );

        let (events, _) = broadcast::channel(1024);
        let (ws_drop, _) = watch::channel(0);
        let (ws_close, _) = watch::channel((0, serde_json::Value::Null));
        let (shutdown, _) = watch::channel(false);
        let (a2a_hub_drop, _) = watch::channel(0);
        Arc::new(App {
            db: Mutex::new(db),
            events,
            ws_drop,
            ws_close,
            shutdown,
            a2a_hub_down_until: Mutex::new(None),
            a2a_hub_drop,
            silent: AtomicBool::new(false),
            negotiate_v0: AtomicBool::new(false),
            latency_ms: AtomicU64::new(0),
            maintenance: AtomicBool::new(false),
            replica_refusals: AtomicU64::new(0),
            strict_validation: AtomicBool::new(config.strict_validation),
            fail_remaining: AtomicU64::new(0),
            fail_status: AtomicU32::new(503),
            token_lifetime: Mutex::new(config.token_lifetime),
            ping_interval_ms: AtomicU64::new(config.signalr_ping_interval.as_millis() as u64),
            device_interval: AtomicU64::new(config.device_code_interval),
            device_lifetime: config.device_code_lifetime,
            signins: Mutex::new(BTreeMap::new()),
            login_responses: AtomicU64::new(0),
            uploads: Mutex::new(Vec::new()),
            websockets: AtomicUsize::new(0),
            hub_http: Mutex::new(HashMap::new()),
            long_poll_timeout_ms: AtomicU64::new(
                config.signalr_long_poll_timeout.as_millis() as u64
            ),
            handshakes: Arc::default(),
            cert_mode: Arc::new(std::sync::atomic::AtomicU8::new(crate::tls::mode_to_u8(
                config.client_cert_mode,
            ))),
            openapi_dirs: config.openapi_search_path(),
            host: host.to_string(),
            appliance_id: appliance_id.clone(),
            cluster: Mutex::new(Cluster {
                members: vec![ClusterNode {
                    id: appliance_id.clone(),
                    name: "safeguard-emulator".to_string(),
                    host: host.to_string(),
                    running: true,
                    enrolled: now_string(),
                }],
                leader: 0,
                thumbprint,
                lock: None,
            }),
            cluster_changed: watch::channel(0).0,
            admin_id,
            password_account_id: pw_id,
            ssh_account_id: ssh_id,
            registration_id: reg_id,
        })
    }

    /// Locks the cluster's state (poisoning is ignored).
    pub(crate) fn cluster(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the state (poisoning is ignored: a panicked handler must not wedge the emulator).
    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn seeded_keys(&self) -> A2aKeys {
        let db = self.db();
        let key = |acct: i64| {
            db.retrievable
                .get(&(self.registration_id, acct))
                .and_then(|v| v["ApiKey"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        A2aKeys {
            password_api_key: key(self.password_account_id),
            ssh_key_api_key: key(self.ssh_account_id),
        }
    }

    pub(crate) fn token_lifetime(&self) -> Duration {
        *self
            .token_lifetime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes an event to the SignalR hubs.
    pub(crate) fn emit(&self, name: &str, mut data: Value, account_id: Option<i64>) {
        if let Value::Object(m) = &mut data {
            m.entry("EventName").or_insert(json!(name));
            m.entry("ApplianceId").or_insert(json!(self.appliance_id));
            m.entry("EventTimestamp").or_insert(json!(now_string()));
        }
        let _ = self.events.send(Event {
            name: name.to_string(),
            data,
            account_id,
        });
    }

    /// Moves every access request whose release window (`ExpiresOn`) has
    /// passed while pending or available to `Expired` (the requester then
    /// acknowledges it) and publishes `AccessRequestExpired` for each.
    /// Returns how many expired.
    pub(crate) fn expire_access_requests(&self) -> usize {
        let now = chrono::Utc::now();
        let expired: Vec<Value> = {
            let mut db = self.db();
            let mut out = Vec::new();
            for r in db.access_requests.values_mut() {
                let due = r["ExpiresOn"]
                    .as_str()
                    .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
                    .is_some_and(|e| e <= now);
                let state = r["State"].as_str().unwrap_or_default();
                if !due || !EXPIRING_STATES.contains(&state) {
                    continue;
                }
                let stamp = now_string();
                let action = json!({"ActionType": "ExpireRequest", "Comment": Value::Null,
                    "NewState": "Expired", "OccurredOn": stamp, "OldState": state,
                    "User": Value::Null, "SessionId": Value::Null});
                if let Some(a) = r["WorkflowActions"].as_array_mut() {
                    a.push(action);
                }
                r["State"] = json!("Expired");
                r["StateChangedOn"] = json!(stamp);
                r["WasExpired"] = json!(true);
                r["NeedsAcknowledgement"] = json!(true);
                out.push(r.clone());
            }
            out
        };
        for r in &expired {
            self.emit(
                "AccessRequestExpired",
                json!({"RequestId": r["Id"], "AssetId": r["AssetId"], "AssetName": r["AssetName"],
                    "AccountId": r["AccountId"], "AccountName": r["AccountName"],
                    "Requester": r["RequesterDisplayName"], "RequesterId": r["RequesterId"],
                    "Comment": r["ReasonComment"], "DurationInMinutes": r["DurationInMinutes"],
                    "AccessRequestType": r["AccessRequestType"], "State": "Expired"}),
                None,
            );
        }
        expired.len()
    }

    /// What is left of the A2A hub's outage (`None` when the hub is up).
    pub(crate) fn a2a_hub_outage_left(&self) -> Option<Duration> {
        let until = *self
            .a2a_hub_down_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until
            .map(|u| u.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero())
    }

    /// Whether the A2A hub is out now.
    pub(crate) fn a2a_hub_down(&self) -> bool {
        self.a2a_hub_outage_left().is_some()
    }

    /// Hands out an rSTS access token for `user_id` signed in through
    /// `provider`; the token and its lifetime.
    pub(crate) fn issue_sts_token(&self, user_id: i64, provider: &str) -> (String, Duration) {
        let lifetime = self.token_lifetime();
        let token = random_token(48);
        self.db().sts_tokens.insert(
            token.clone(),
            StsToken {
                user_id,
                expires: Instant::now() + lifetime,
                provider: provider.to_string(),
            },
        );
        (token, lifetime)
    }

    pub(crate) fn count_signin(&self, grant: &str) {
        let mut m = self.signins.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(grant.to_string()).or_insert(0) += 1;
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Removes expired login artefacts now and then.
    pub(crate) async fn housekeeping(app: Weak<App>) {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let Some(app) = app.upgrade() else { return };
            let now = Instant::now();
            let mut db = app.db();
            db.sts_tokens.retain(|_, t| t.expires > now);
            db.auth_codes.retain(|_, c| c.expires > now);
            db.device_codes
                .retain(|_, d| d.expires + Duration::from_secs(600) > now);
            db.pkce.retain(|_, s| {
                s.created
                    .is_some_and(|c| now.duration_since(c) < Duration::from_secs(1800))
            });
            db.tokens
                .retain(|_, t| t.expires + Duration::from_secs(3600) > now);
            db.signalr_ids
                .retain(|_, t| now.duration_since(*t) < Duration::from_secs(600));
            drop(db);
            app.hub_http
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|_, c| !c.ended.load(std::sync::atomic::Ordering::SeqCst));
        }
    }
}

pub(crate) fn backup_json(id: &str, size: u64, status: &str, by: i64) -> Value {
    json!({
        "Id": id,
        "CreatedOn": now_string(),
        "CreatedById": by,
        "CreatedByDisplayName": ADMIN_USER,
        "Size": size,
        "Filename": format!("SG-backup-{}.sgb", &id[..8.min(id.len())]),
        "Status": status,
        "ApplianceId": "EMULATOR",
        "ApplianceName": "SafeguardEmulator",
        "ApplianceMajorVersion": 8,
        "ApplianceMinorVersion": 1,
        "ApplianceRevision": 0,
        "ApplianceBuild": 1,
        "ApplianceLtsType": "Feature",
        "AppliancePlatform": "VMware",
        "ApplianceVariant": "Standard",
        "ArchiveServerId": Value::Null,
        "ArchiveServerName": Value::Null,
        "LastArchivedDate": Value::Null,
        "PasswordProtected": false,
        "PasswordIdentifier": Value::Null,
        "GpgProtected": false,
        "GpgPublicKeyName": Value::Null,
    })
}
