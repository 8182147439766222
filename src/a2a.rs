//! Application to application (A2A): credential retrieval with a client
//! certificate and an API key, no user and no approval.
//!
//! An [`A2aContext`] holds the certificate of a certificate user that has an
//! A2A registration, and a pool of TLS connections to the appliance. Every
//! call carries the certificate on TLS and the header `Authorization: A2A
//! <api key>`. The connections are OpenSSL connections that can answer the
//! appliance's request for the certificate after the handshake (see the
//! transport's notes in `protocol.md` section 6); one handshake serves many
//! retrievals.
//!
//! ```no_run
//! use safeguard_sdk::a2a::{A2aContext, KeyFormat};
//! use safeguard_sdk::tls::TlsOptions;
//! use safeguard_sdk::ExposeSecret;
//! # async fn run() -> safeguard_sdk::Result<()> {
//! let a2a = A2aContext::builder("safeguard.example.com")
//!     .pem_files("cert.pem", "key.pem")
//!     .tls(TlsOptions::default().with_ca_file("ca.pem")?)
//!     .build()?;
//! let password = a2a.retrieve_password("my-api-key").await?;
//! println!("{} characters", password.expose_secret().len());
//! let key = a2a.retrieve_private_key("my-ssh-key-api-key", KeyFormat::OpenSsh).await?;
//! # let _ = key; Ok(()) }
//! ```
//!
//! [`A2aContext::credential_watch`] holds credentials current across
//! rotations and outages ([`watch`]).
//!
//! # Clusters
//!
//! Every member of a Safeguard cluster, a replica too, serves A2A. A context
//! given several members ([`A2aContextBuilder::members`]) sends to one and
//! moves to the next when it cannot be reached: a connection refused, a
//! connect timeout or a failed TLS handshake (for every call), and for the
//! calls that may be sent twice (retrievals, the two set calls: `GET` and
//! `PUT`) also a connection broken or timed out after sending and a 503
//! answer. [`A2aContext::broker_access_request`] (`POST`) moves only when the
//! request cannot have reached the member. Each member is tried at most once
//! per call, the whole call within the context's timeout; the member that
//! answered is the one used next. The event listeners and the credential
//! watch reconnect to the member in use. Every move is traced (`WARN` for a
//! member that failed, `INFO` for the move).
//!
//! API keys and every returned secret are [`SecretString`]s (zeroized on
//! drop, redacted in `Debug`); API keys never appear in errors or logs.
//!
//! # Errors
//!
//! Calls fail with the SDK's [`Error`] like every other call (a bad key is
//! [`Error::Authorization`], HTTP 403, with the appliance's code and
//! message). [`Error::a2a_failure`] sorts an error into what went wrong for
//! A2A: [`A2aFailure::BadApiKey`], [`A2aFailure::CertificateRejected`],
//! [`A2aFailure::NotFound`], [`A2aFailure::NotEnabled`],
//! [`A2aFailure::Transport`].
//!
//! # Which calls use the generated client
//!
//! Retrievals and the two set calls are sent as plain requests over the
//! certificate transport: the secrets go from the response body straight into
//! [`SecretString`]s (and the body buffer is wiped) instead of passing through
//! the generated types' plain `String`s, and the hottest path of the SDK skips
//! the generated builder. [`A2aContext::broker_access_request`] carries no
//! secret and goes through the generated [`crate::api::a2a::Client`] (typed
//! request and answer), which [`A2aContext::api`] also hands out for any
//! other operation of the A2A OpenAPI document.

pub mod blocking;
pub mod watch;
pub use watch::{CredentialWatch, Current, WatchStatus, Watched};

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use zeroize::{Zeroize, Zeroizing};

use crate::call_span::CallSpan;
use crate::cert_transport::{CertTransport, PoolSettings};
use crate::error::{DecodeError, Error, Result, StsError};
use crate::host::Host;
use crate::limits::Limits;
use crate::proxy::Proxy;
use crate::tls::{ClientIdentity, TlsOptions};
use crate::transport::{Execute, Transport};

pub use crate::api::a2a::types::{
    AccessRequest, AccessRequestType, AccessRequestTypeKnown, BrokeredAccessRequest,
};

/// Default timeout of one A2A call (connect, handshake, answer and body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The scope of the certificate sign-in used by [`A2aContext::retrievable_accounts`].
const CERTIFICATE_SCOPE: &str = "rsts:sts:primaryproviderid:certificate";

/// An A2A API key as accepted by the calls of [`A2aContext`]: a
/// [`SecretString`], a `String` or a `&str` (or a reference to one).
///
/// The key is only read to build the `Authorization` header, which is marked
/// sensitive; it never appears in an error or a log.
pub trait ApiKey {
    /// The key's text.
    fn expose_api_key(&self) -> &str;
}

impl ApiKey for SecretString {
    fn expose_api_key(&self) -> &str {
        self.expose_secret()
    }
}

impl ApiKey for str {
    fn expose_api_key(&self) -> &str {
        self
    }
}

impl ApiKey for String {
    fn expose_api_key(&self) -> &str {
        self
    }
}

impl<T: ApiKey + ?Sized> ApiKey for &T {
    fn expose_api_key(&self) -> &str {
        (**self).expose_api_key()
    }
}

/// Format of an SSH private key retrieved or set through A2A.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyFormat {
    /// OpenSSH (`-----BEGIN OPENSSH PRIVATE KEY-----` or PEM), the default.
    #[default]
    OpenSsh,
    /// SSH2 / SECSH (`---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----`).
    Ssh2,
    /// PuTTY (`PuTTY-User-Key-File-...`).
    Putty,
}

impl KeyFormat {
    /// The value of the `keyFormat` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFormat::OpenSsh => "openssh",
            KeyFormat::Ssh2 => "ssh2",
            KeyFormat::Putty => "putty",
        }
    }
}

impl fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyFormat {
    type Err = Error;

    /// `openssh`, `ssh2` or `putty`, any case.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openssh" => Ok(KeyFormat::OpenSsh),
            "ssh2" => Ok(KeyFormat::Ssh2),
            "putty" => Ok(KeyFormat::Putty),
            _ => Err(Error::Config(format!(
                "`{s}` is not an SSH key format (openssh, ssh2 or putty)"
            ))),
        }
    }
}

/// An API key secret of an account, as retrieved by
/// [`A2aContext::retrieve_api_key_secret`].
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct ApiKeySecret {
    /// The secret's id.
    #[serde(rename = "Id", default)]
    pub id: i64,
    /// The API key's name.
    #[serde(rename = "Name", default)]
    pub name: Option<String>,
    /// The API key's description.
    #[serde(rename = "Description", default)]
    pub description: Option<String>,
    /// The client id.
    #[serde(rename = "ClientId", default)]
    pub client_id: Option<String>,
    /// The client secret.
    #[serde(rename = "ClientSecret", default)]
    pub client_secret: Option<SecretString>,
    /// The client secret's id.
    #[serde(rename = "ClientSecretId", default)]
    pub client_secret_id: Option<String>,
}

/// An A2A registration of the certificate user, with its retrievable
/// accounts ([`A2aContext::retrievable_accounts`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct A2aRegistration {
    /// The registration's id.
    pub id: i64,
    /// The application name.
    pub app_name: String,
    /// The description.
    pub description: Option<String>,
    /// Whether the registration is disabled (its keys then retrieve nothing).
    pub disabled: bool,
    /// Whether the registration may set credentials (`set_password`, `set_private_key`).
    pub bidirectional_enabled: bool,
    /// The accounts it can retrieve, each with its API key.
    pub accounts: Vec<RetrievableAccount>,
}

/// An account an A2A registration can retrieve.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct RetrievableAccount {
    /// The account's id.
    #[serde(rename = "AccountId", default)]
    pub account_id: i64,
    /// The account's name.
    #[serde(rename = "AccountName", default)]
    pub account_name: String,
    /// The account's domain, for directory accounts.
    #[serde(rename = "DomainName", default)]
    pub domain_name: Option<String>,
    /// The account's type.
    #[serde(rename = "AccountType", default)]
    pub account_type: Option<String>,
    /// Whether the account is disabled.
    #[serde(
        rename = "AccountDisabled",
        default,
        deserialize_with = "bool_or_number"
    )]
    pub account_disabled: bool,
    /// The asset's id.
    #[serde(rename = "AssetId", default)]
    pub asset_id: i64,
    /// The asset's name.
    #[serde(rename = "AssetName", default)]
    pub asset_name: String,
    /// The asset's network address.
    #[serde(rename = "NetworkAddress", default)]
    pub network_address: Option<String>,
    /// The API key that retrieves this account's credential.
    #[serde(rename = "ApiKey")]
    pub api_key: SecretString,
}

fn bool_or_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Number(i64),
        Null(()),
    }
    Ok(match Flag::deserialize(d)? {
        Flag::Bool(b) => b,
        Flag::Number(n) => n != 0,
        Flag::Null(()) => false,
    })
}

#[derive(Deserialize)]
struct RegistrationWire {
    #[serde(rename = "Id")]
    id: i64,
    #[serde(rename = "AppName", default)]
    app_name: Option<String>,
    #[serde(rename = "Description", default)]
    description: Option<String>,
    #[serde(rename = "Disabled", default, deserialize_with = "bool_or_number")]
    disabled: bool,
    #[serde(
        rename = "BidirectionalEnabled",
        default,
        deserialize_with = "bool_or_number"
    )]
    bidirectional_enabled: bool,
}

/// What went wrong with an A2A call, read from an [`Error`] by
/// [`Error::a2a_failure`].
///
/// The appliance answers most A2A refusals with HTTP 403; the code in the
/// body tells them apart (60094 for the certificate, others for the key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum A2aFailure {
    /// The API key is unknown, not authorized for this request, or missing
    /// (HTTP 403 other than the codes below, or 401).
    BadApiKey,
    /// The client certificate was missing, not trusted, not the registration's
    /// certificate, or could not be presented when the appliance asked for it
    /// after the handshake (HTTP 403, code 60094 "Authorization is denied").
    CertificateRejected,
    /// The account or its credential does not exist (HTTP 404).
    NotFound,
    /// A2A is not enabled for this call: the registration is disabled (60095),
    /// or it may not set credentials because it is not bidirectional (60097),
    /// or the A2A service is unavailable (503).
    NotEnabled,
    /// The connection, the TLS handshake, or the timeout failed.
    Transport,
}

/// Appliance codes of A2A refusals.
mod codes {
    pub(super) const AUTHORIZATION_DENIED: i64 = 60094;
    pub(super) const REGISTRATION_DISABLED: i64 = 60095;
    pub(super) const NOT_BIDIRECTIONAL: i64 = 60097;
}

impl Error {
    /// Sorts an error of an A2A call into an [`A2aFailure`]; `None` for
    /// errors that are none of those (a validation error, a decode error, ...).
    pub fn a2a_failure(&self) -> Option<A2aFailure> {
        match self {
            Error::Tls(_) | Error::Timeout(_) | Error::Transport(_) | Error::Io(_) => {
                Some(A2aFailure::Transport)
            }
            Error::Authentication(_) => Some(A2aFailure::BadApiKey),
            Error::NotFound(_) => Some(A2aFailure::NotFound),
            Error::Authorization(api) | Error::Api(api) => match (api.status, api.code) {
                (StatusCode::FORBIDDEN, Some(codes::AUTHORIZATION_DENIED)) => {
                    Some(A2aFailure::CertificateRejected)
                }
                (_, Some(codes::REGISTRATION_DISABLED | codes::NOT_BIDIRECTIONAL))
                | (StatusCode::SERVICE_UNAVAILABLE, _) => Some(A2aFailure::NotEnabled),
                (StatusCode::FORBIDDEN, _) => Some(A2aFailure::BadApiKey),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the A2A API key was refused ([`A2aFailure::BadApiKey`]).
    pub fn is_bad_api_key(&self) -> bool {
        self.a2a_failure() == Some(A2aFailure::BadApiKey)
    }
}

enum IdentitySource {
    Ready(ClientIdentity),
    Pem {
        cert: PathBuf,
        key: PathBuf,
        passphrase: Option<SecretString>,
    },
    Pkcs12 {
        path: PathBuf,
        password: SecretString,
    },
}

impl IdentitySource {
    fn load(self) -> Result<ClientIdentity> {
        match self {
            IdentitySource::Ready(id) => Ok(id),
            IdentitySource::Pem {
                cert,
                key,
                passphrase,
            } => ClientIdentity::from_pem_files(cert, key, passphrase.as_ref()),
            IdentitySource::Pkcs12 { path, password } => {
                ClientIdentity::from_pkcs12_file(path, &password)
            }
        }
    }
}

/// Builds an [`A2aContext`]; from [`A2aContext::builder`].
pub struct A2aContextBuilder {
    host: String,
    members: Vec<String>,
    identity: Option<IdentitySource>,
    tls: TlsOptions,
    timeout: Option<Duration>,
    limits: Limits,
    pool: PoolSettings,
    proxy: Proxy,
}

impl fmt::Debug for A2aContextBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("A2aContextBuilder")
            .field("host", &self.host)
            .field("members", &self.members)
            .field("has_identity", &self.identity.is_some())
            .field("timeout", &self.timeout)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl A2aContextBuilder {
    /// Further members of the same Safeguard cluster (`name` or
    /// `name:port` each), tried in this order after the host given to
    /// [`A2aContext::builder`] when the member in use cannot serve a call
    /// (see [Clusters](crate::a2a#clusters)). Calling it again adds more; a
    /// member given twice is tried once. Every member must present a
    /// certificate that the [`tls`](Self::tls) settings trust for its own
    /// name, and accept the same client certificate (a cluster shares its
    /// A2A registrations).
    ///
    /// ```no_run
    /// # fn run() -> safeguard_sdk::Result<()> {
    /// let a2a = safeguard_sdk::a2a::A2aContext::builder("sg1.example.com")
    ///     .members(["sg2.example.com", "sg3.example.com"])
    ///     .pem_files("cert.pem", "key.pem")
    ///     .build()?;
    /// # let _ = a2a; Ok(()) }
    /// ```
    pub fn members<I>(mut self, members: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.members.extend(members.into_iter().map(Into::into));
        self
    }

    /// The client certificate and key (required; or one of the file variants).
    pub fn identity(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(IdentitySource::Ready(identity));
        self
    }

    /// The client certificate from a PEM certificate file and an unencrypted
    /// PEM key file (read by [`build`](Self::build)).
    pub fn pem_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some(IdentitySource::Pem {
            cert: cert.into(),
            key: key.into(),
            passphrase: None,
        });
        self
    }

    /// The client certificate from a PEM certificate file and a
    /// passphrase-protected PEM key file.
    pub fn encrypted_pem_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        passphrase: impl Into<SecretString>,
    ) -> Self {
        self.identity = Some(IdentitySource::Pem {
            cert: cert.into(),
            key: key.into(),
            passphrase: Some(passphrase.into()),
        });
        self
    }

    /// The client certificate from a PKCS#12 (`.pfx`/`.p12`) file and its password.
    pub fn pkcs12_file(
        mut self,
        path: impl Into<PathBuf>,
        password: impl Into<SecretString>,
    ) -> Self {
        self.identity = Some(IdentitySource::Pkcs12 {
            path: path.into(),
            password: password.into(),
        });
        self
    }

    /// Which server certificates to trust and which TLS versions to speak
    /// (default: the system's roots, TLS 1.2 and 1.3).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Bounds each call: connecting, the handshake, the answer and its body
    /// (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Lets calls take as long as they take: no whole-call timeout, and
    /// none of the [`Limits`]' timeouts.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self.limits = self.limits.without_timeouts();
        self
    }

    /// What the context accepts from the appliance: timeouts, the size of
    /// answers, redirects (default [`Limits::default`]; A2A never follows a
    /// redirect, see [`crate::limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Which HTTP proxy the context's connections (credential calls and its
    /// event listeners) go through (default [`Proxy::from_env`]; see
    /// [`crate::proxy`]).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = proxy;
        self
    }

    /// How many idle connections to keep for reuse (default 8). `0` opens
    /// a new connection (and TLS handshake) for every call.
    pub fn max_idle_connections(mut self, max: usize) -> Self {
        self.pool.max_idle = max;
        self
    }

    /// How long an idle connection is kept for reuse (default 60 s; the
    /// appliance closes idle connections after about two minutes).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.pool.idle_timeout = idle;
        self
    }

    /// Reads the certificate and prepares the connection pool (no connection
    /// is opened yet). Fails with [`Error::Config`] when no certificate was
    /// given, a file cannot be read, a password is wrong, or the host is bad.
    pub fn build(self) -> Result<A2aContext> {
        let source = self.identity.ok_or_else(|| {
            Error::Config(
                "A2A needs a client certificate: call identity(), pem_files(), \
                 encrypted_pem_files() or pkcs12_file()"
                    .into(),
            )
        })?;
        let identity = source.load()?;
        let members = std::iter::once(&self.host)
            .chain(&self.members)
            .map(|h| Host::parse(h))
            .collect::<Result<Vec<_>>>()?;
        let transport = CertTransport::for_members(
            &members,
            &self.tls,
            identity,
            self.timeout,
            self.limits,
            self.pool,
            &self.proxy.rules()?,
        )?;
        A2aContext::from_transport(Arc::new(transport), &self.tls)
    }
}

/// Retrieves credentials through A2A with a client certificate; cheap to
/// clone (clones share the connection pool).
#[derive(Clone)]
pub struct A2aContext {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Arc<CertTransport>,
    credentials_url: url::Url,
    password_url: url::Url,
    ssh_key_url: url::Url,
    /// Only builds requests for the generated client; never sends.
    request_builder: reqwest::Client,
}

impl fmt::Debug for A2aContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("A2aContext")
            .field("members", &self.inner.transport.members())
            .field("current_member", self.inner.transport.current_member())
            .field("thumbprint", &self.inner.transport.thumbprint())
            .finish()
    }
}

impl A2aContext {
    /// Starts building a context for the appliance at `host` (`name` or
    /// `name:port`); for a cluster, the member tried first (the others with
    /// [`A2aContextBuilder::members`]).
    pub fn builder(host: impl Into<String>) -> A2aContextBuilder {
        A2aContextBuilder {
            host: host.into(),
            members: Vec::new(),
            identity: None,
            tls: TlsOptions::default(),
            timeout: Some(DEFAULT_TIMEOUT),
            limits: Limits::default(),
            pool: PoolSettings::default(),
            proxy: Proxy::default(),
        }
    }

    fn from_transport(transport: Arc<CertTransport>, tls: &TlsOptions) -> Result<Self> {
        let url = |path: &str| {
            url::Url::parse(&transport.host().url(path))
                .map_err(|e| Error::Config(format!("bad host: {e}")))
        };
        Ok(Self {
            inner: Arc::new(Inner {
                credentials_url: url("/service/a2a/v4/Credentials")?,
                password_url: url("/service/a2a/v4/Credentials/Password")?,
                ssh_key_url: url("/service/a2a/v4/Credentials/SshKey")?,
                request_builder: tls
                    .reqwest_builder()?
                    .build()
                    .map_err(Error::from_reqwest)?,
                transport,
            }),
        })
    }

    /// The appliance: the host given to [`A2aContext::builder`] (for a
    /// cluster, the member tried first; see [`current_member`](Self::current_member)).
    pub fn host(&self) -> &crate::Host {
        self.inner.transport.host()
    }

    /// Every cluster member the context may send to, in the order they are
    /// tried (the host given to [`A2aContext::builder`] first).
    pub fn members(&self) -> &[crate::Host] {
        self.inner.transport.members()
    }

    /// The member in use: the one that answered last (the first until a
    /// call moved on).
    pub fn current_member(&self) -> &crate::Host {
        self.inner.transport.current_member()
    }

    /// SHA-1 thumbprint (upper-case hex) of the client certificate.
    pub fn thumbprint(&self) -> &str {
        self.inner.transport.thumbprint()
    }

    /// The certificate transport, for the A2A event listener.
    #[allow(dead_code)]
    /// What the context accepts from the appliance.
    pub fn limits(&self) -> &Limits {
        self.inner.transport.limits()
    }

    pub(crate) fn cert_transport(&self) -> &Arc<CertTransport> {
        &self.inner.transport
    }

    /// Retrieves the password of the account `api_key` is registered for.
    pub async fn retrieve_password(&self, api_key: impl ApiKey) -> Result<SecretString> {
        let auth = authorization(api_key.expose_api_key())?;
        let mut url = self.inner.credentials_url.clone();
        url.query_pairs_mut().append_pair("type", "password");
        let body = self.call(Method::GET, url, auth, None).await?;
        decode_secret(body)
    }

    /// Retrieves the SSH private key of the account `api_key` is registered
    /// for, in `format`.
    pub async fn retrieve_private_key(
        &self,
        api_key: impl ApiKey,
        format: KeyFormat,
    ) -> Result<SecretString> {
        let auth = authorization(api_key.expose_api_key())?;
        let mut url = self.inner.credentials_url.clone();
        url.query_pairs_mut()
            .append_pair("type", "privatekey")
            .append_pair("keyFormat", format.as_str());
        let body = self.call(Method::GET, url, auth, None).await?;
        decode_secret(body)
    }

    /// Retrieves the API key secrets of the account `api_key` is registered for.
    pub async fn retrieve_api_key_secret(&self, api_key: impl ApiKey) -> Result<Vec<ApiKeySecret>> {
        let auth = authorization(api_key.expose_api_key())?;
        let mut url = self.inner.credentials_url.clone();
        url.query_pairs_mut().append_pair("type", "apikey");
        let body = self.call(Method::GET, url, auth, None).await?;
        let decoded = serde_json::from_slice::<Vec<ApiKeySecret>>(&body)
            .map_err(|e| Error::Decode(DecodeError::new(Some(StatusCode::OK), e, b"")));
        wipe(body);
        decoded
    }

    /// Sets the password of the account `api_key` is registered for (the
    /// registration must be bidirectional).
    pub async fn set_password(&self, api_key: impl ApiKey, password: &SecretString) -> Result<()> {
        let auth = authorization(api_key.expose_api_key())?;
        let body = json_body(password.expose_secret())?;
        let url = self.inner.password_url.clone();
        self.call(Method::PUT, url, auth, Some(body))
            .await
            .map(wipe)
    }

    /// Sets the SSH private key (and its passphrase, when encrypted) of the
    /// account `api_key` is registered for, given in `format`.
    pub async fn set_private_key(
        &self,
        api_key: impl ApiKey,
        private_key: &SecretString,
        passphrase: Option<&SecretString>,
        format: KeyFormat,
    ) -> Result<()> {
        let auth = authorization(api_key.expose_api_key())?;
        let mut fields = vec![("PrivateKey", private_key.expose_secret())];
        if let Some(p) = passphrase {
            fields.push(("Passphrase", p.expose_secret()));
        }
        let body = crate::secret::json_object(&fields);
        let mut url = self.inner.ssh_key_url.clone();
        url.query_pairs_mut()
            .append_pair("keyFormat", format.as_str());
        self.call(Method::PUT, url, auth, Some(body))
            .await
            .map(wipe)
    }

    /// Brokers an access request on behalf of another user with an access
    /// request broker's API key; returns the created request.
    pub async fn broker_access_request(
        &self,
        api_key: impl ApiKey,
        request: &BrokeredAccessRequest,
    ) -> Result<AccessRequest> {
        let created = self
            .api(api_key)?
            .access_requests_broker_access_request()
            .body(request.clone())
            .send()
            .await?;
        Ok(created.into_inner())
    }

    /// The generated A2A client ([`crate::api::a2a::Client`]) sending with
    /// this context's certificate and `api_key`, for operations of the A2A
    /// OpenAPI document that have no method here.
    pub fn api(&self, api_key: impl ApiKey) -> Result<crate::api::a2a::Client> {
        let exec = KeyedExec {
            transport: self.inner.transport.clone(),
            authorization: authorization(api_key.expose_api_key())?,
        };
        Ok(crate::api::a2a::Client::with_inner(
            &self.inner.transport.host().url("/service/a2a"),
            self.inner.request_builder.clone(),
            Transport::new(Arc::new(exec)).into(),
        ))
    }

    /// The certificate user's A2A registrations and the accounts each can
    /// retrieve, with their API keys.
    ///
    /// Signs in with the certificate (rSTS client-credentials grant, scope
    /// `rsts:sts:primaryproviderid:certificate`, then `Token/LoginResponse`),
    /// reads `core/v4/A2ARegistrations` and each registration's
    /// `RetrievableAccounts`, and signs out. The registrations must be
    /// visible to certificate users.
    pub async fn retrievable_accounts(&self) -> Result<Vec<A2aRegistration>> {
        let token = self.certificate_sign_in().await?;
        let result = self.read_registrations(&token).await;
        self.sign_out(&token).await;
        result
    }

    async fn read_registrations(&self, token: &HeaderValue) -> Result<Vec<A2aRegistration>> {
        let host = self.inner.transport.host();
        let body = self
            .send_ok(
                Method::GET,
                &host.url("/service/core/v4/A2ARegistrations"),
                Some(token),
                None,
            )
            .await?;
        let registrations: Vec<RegistrationWire> = decode_json(&body)?;
        let mut out = Vec::with_capacity(registrations.len());
        for r in registrations {
            let body = self
                .send_ok(
                    Method::GET,
                    &host.url(&format!(
                        "/service/core/v4/A2ARegistrations/{}/RetrievableAccounts",
                        r.id
                    )),
                    Some(token),
                    None,
                )
                .await?;
            let accounts: Result<Vec<RetrievableAccount>> = decode_json(&body);
            wipe(body);
            out.push(A2aRegistration {
                id: r.id,
                app_name: r.app_name.unwrap_or_default(),
                description: r.description,
                disabled: r.disabled,
                bidirectional_enabled: r.bidirectional_enabled,
                accounts: accounts?,
            });
        }
        Ok(out)
    }

    /// Certificate sign-in over this context's transport; the
    /// `Authorization: Bearer <user token>` header value.
    async fn certificate_sign_in(&self) -> Result<HeaderValue> {
        #[derive(Deserialize)]
        struct StsAnswer {
            access_token: SecretString,
        }
        #[derive(Deserialize)]
        struct LoginAnswer {
            #[serde(rename = "Status")]
            status: Option<String>,
            #[serde(rename = "UserToken")]
            user_token: Option<SecretString>,
        }
        let token_url = self.inner.transport.host().url("/RSTS/oauth2/token");
        let body = json_body(&json!({
            "grant_type": "client_credentials",
            "scope": CERTIFICATE_SCOPE,
        }))?;
        let response = self
            .send(Method::POST, &token_url, None, Some(body))
            .await?;
        let (status, bytes) =
            crate::limits::read_body(response, "POST /RSTS/oauth2/token", self.limits()).await?;
        if !status.is_success() {
            return Err(Error::Sts(StsError::from_parts(status, &bytes)));
        }
        let sts: StsAnswer = decode_json(&bytes)?;
        wipe(bytes);

        let body =
            crate::secret::json_object(&[("StsAccessToken", sts.access_token.expose_secret())]);
        let bytes = self
            .send_ok(
                Method::POST,
                &self
                    .inner
                    .transport
                    .host()
                    .url("/service/core/v4/Token/LoginResponse"),
                None,
                Some(body),
            )
            .await?;
        let login: LoginAnswer = decode_json(&bytes)?;
        wipe(bytes);
        match (login.status.as_deref(), login.user_token) {
            (Some("Success") | None, Some(token)) => {
                crate::secret::header(&["Bearer ", token.expose_secret()]).ok_or_else(|| {
                    Error::Config("the user token is not a valid header value".into())
                })
            }
            (other, _) => Err(Error::Sts(StsError {
                status: StatusCode::OK,
                error: "login_response".into(),
                description: Some(format!(
                    "Token/LoginResponse answered status {}",
                    other.unwrap_or("(none)")
                )),
            })),
        }
    }

    async fn sign_out(&self, token: &HeaderValue) {
        let url = self
            .inner
            .transport
            .host()
            .url("/service/core/v4/Token/Logout");
        if let Err(e) = self.send_ok(Method::POST, &url, Some(token), None).await {
            tracing::debug!("signing out the certificate user failed: {e}");
        }
    }

    /// Sends an A2A request with the `A2A <key>` header; the body of a
    /// success answer.
    async fn call(
        &self,
        method: Method,
        url: url::Url,
        auth: HeaderValue,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Bytes> {
        let label = format!("{method} {}", url.path());
        let span = CallSpan::for_url(&method, &url);
        let mut request = reqwest::Request::new(method, url);
        prepare(&mut request, Some(&auth), body);
        let call = async {
            let response = self.inner.transport.execute(request).await?;
            span.status(response.status().as_u16());
            crate::limits::read_success(response, &label, self.limits()).await
        };
        span.run(call, |_| None).await
    }

    /// Sends a request with an optional `Authorization`.
    async fn send(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&HeaderValue>,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<reqwest::Response> {
        let url = url::Url::parse(url).map_err(|e| Error::Config(format!("bad URL: {e}")))?;
        let span = CallSpan::for_url(&method, &url);
        let mut request = reqwest::Request::new(method, url);
        prepare(&mut request, authorization, body);
        span.run(self.inner.transport.execute(request), |r| {
            Some(r.status().as_u16())
        })
        .await
    }

    async fn send_ok(
        &self,
        method: Method,
        url: &str,
        authorization: Option<&HeaderValue>,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Bytes> {
        let label = format!(
            "{method} {}",
            url::Url::parse(url)
                .map(|u| u.path().to_owned())
                .unwrap_or_default()
        );
        let response = self.send(method, url, authorization, body).await?;
        crate::limits::read_success(response, &label, self.limits()).await
    }
}

/// Adds the A2A `Authorization` header to the generated client's requests.
struct KeyedExec {
    transport: Arc<CertTransport>,
    authorization: HeaderValue,
}

impl Execute for KeyedExec {
    fn execute(
        &self,
        mut request: reqwest::Request,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send {
        request
            .headers_mut()
            .insert(AUTHORIZATION, self.authorization.clone());
        self.transport.execute(request)
    }

    fn limits(&self) -> &Limits {
        self.transport.limits()
    }
}

/// `A2A <key>` as a sensitive header value. The key is checked without ever
/// being echoed.
fn authorization(key: &str) -> Result<HeaderValue> {
    let key = key.trim();
    if key.is_empty() {
        return Err(Error::Config("the A2A API key is empty".into()));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::Config(
            "the A2A API key contains characters an API key cannot have (spaces, control or non-ASCII characters)"
                .into(),
        ));
    }
    crate::secret::header(&["A2A ", key])
        .ok_or_else(|| Error::Config("the A2A API key is not a valid header value".into()))
}

fn prepare(
    request: &mut reqwest::Request,
    authorization: Option<&HeaderValue>,
    body: Option<Zeroizing<Vec<u8>>>,
) {
    let headers = request.headers_mut();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(a) = authorization {
        headers.insert(AUTHORIZATION, a.clone());
    }
    if let Some(body) = body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        *request.body_mut() = Some(crate::secret::body(body));
    }
}

fn json_body<T: serde::Serialize + ?Sized>(value: &T) -> Result<Zeroizing<Vec<u8>>> {
    crate::secret::json(value).map_err(|e| Error::Config(format!("cannot encode the request: {e}")))
}

/// Decodes a JSON string answer (password, private key) into a secret and
/// wipes the body.
fn decode_secret(body: Bytes) -> Result<SecretString> {
    let decoded = serde_json::from_slice::<SecretString>(&body).map_err(|e| {
        // Never show the body: it may be the secret in an unexpected shape.
        Error::Decode(DecodeError::new(Some(StatusCode::OK), e, b""))
    });
    wipe(body);
    decoded
}

fn decode_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::Decode(DecodeError::new(Some(StatusCode::OK), e, b"")))
}

/// Zeroes a body buffer when nothing else holds it.
fn wipe(body: Bytes) {
    if let Ok(mut owned) = body.try_into_mut() {
        owned.as_mut().zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(status: u16, body: &str) -> Error {
        Error::from_api(crate::error::ApiError::from_parts(
            StatusCode::from_u16(status).unwrap(),
            "GET /service/a2a/v4/Credentials".into(),
            Bytes::from(body.to_owned()),
        ))
    }

    #[test]
    fn failures_are_classified_by_status_and_code() {
        let cert = api_error(
            403,
            r#"{"Code":60094,"Message":"Authorization is denied."}"#,
        );
        assert_eq!(cert.a2a_failure(), Some(A2aFailure::CertificateRejected));
        let key = api_error(403, r#"{"Code":60096,"Message":"Invalid API key."}"#);
        assert_eq!(key.a2a_failure(), Some(A2aFailure::BadApiKey));
        assert!(key.is_bad_api_key());
        assert_eq!(
            api_error(403, "").a2a_failure(),
            Some(A2aFailure::BadApiKey)
        );
        assert_eq!(
            api_error(401, "").a2a_failure(),
            Some(A2aFailure::BadApiKey)
        );
        assert_eq!(api_error(404, "").a2a_failure(), Some(A2aFailure::NotFound));
        let disabled = api_error(403, r#"{"Code":60095,"Message":"disabled"}"#);
        assert_eq!(disabled.a2a_failure(), Some(A2aFailure::NotEnabled));
        assert_eq!(
            api_error(503, "").a2a_failure(),
            Some(A2aFailure::NotEnabled)
        );
        assert_eq!(api_error(400, "").a2a_failure(), None);
        assert_eq!(
            Error::Tls("x".into()).a2a_failure(),
            Some(A2aFailure::Transport)
        );
    }

    #[test]
    fn bad_api_keys_are_config_errors_that_do_not_echo_the_key() {
        for bad in ["", "   ", "has space", "line\nbreak", "caf\u{e9}"] {
            match authorization(bad) {
                Err(Error::Config(m)) => assert!(!m.contains(bad.trim()) || bad.trim().is_empty()),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        let header = authorization(" abc+/= ").unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), "A2A abc+/=");
    }

    #[test]
    fn a_secret_body_is_moved_into_the_request_not_copied() {
        let body = json_body("p\"w").unwrap();
        assert_eq!(&body[..], br#""p\"w""#);
        let at = body.as_ptr();
        let mut request = reqwest::Request::new(
            Method::PUT,
            "https://sg.example/service/a2a/v4/Credentials/Password"
                .parse()
                .unwrap(),
        );
        prepare(&mut request, Some(&authorization("k").unwrap()), Some(body));
        let sent = request
            .body()
            .and_then(|b| b.as_bytes())
            .map(<[u8]>::as_ptr);
        assert_eq!(sent, Some(at));
        assert!(request.headers()[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn key_formats_parse_and_print() {
        for f in [KeyFormat::OpenSsh, KeyFormat::Ssh2, KeyFormat::Putty] {
            assert_eq!(f.to_string().parse::<KeyFormat>().unwrap(), f);
        }
        assert_eq!("PuTTY".parse::<KeyFormat>().unwrap(), KeyFormat::Putty);
        assert!(matches!("pem".parse::<KeyFormat>(), Err(Error::Config(_))));
    }

    #[test]
    fn secrets_decode_and_debug_redacts() {
        let s = decode_secret(Bytes::from_static(br#""p\"w""#)).unwrap();
        assert_eq!(s.expose_secret(), "p\"w");
        assert!(matches!(
            decode_secret(Bytes::from_static(b"[1]")),
            Err(Error::Decode(_))
        ));
        let secrets: Vec<ApiKeySecret> = serde_json::from_str(
            r#"[{"Id":1,"Name":"n","ClientId":"c","ClientSecret":"top-secret","ClientSecretId":"i"}]"#,
        )
        .unwrap();
        assert!(!format!("{secrets:?}").contains("top-secret"));
        let account: RetrievableAccount = serde_json::from_str(
            r#"{"AccountId":3,"AccountName":"a","AssetId":2,"AssetName":"h","AccountDisabled":0,"ApiKey":"k-e-y"}"#,
        )
        .unwrap();
        assert!(!account.account_disabled);
        assert!(!format!("{account:?}").contains("k-e-y"));
    }

    #[test]
    fn building_without_a_certificate_is_a_config_error() {
        let err = A2aContext::builder("127.0.0.1:1").build().unwrap_err();
        assert!(matches!(err, Error::Config(_)));
    }
}
