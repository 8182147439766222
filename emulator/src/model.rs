//! Pure data of the emulator: the seeded names and passwords, the settings,
//! the start-up error and what `connection.json` holds. Everything here is
//! re-exported at the crate root; the other modules use it from here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The seeded administrator (signs in with PKCE; password grant once enabled).
pub const ADMIN_USER: &str = "Admin";
/// Password of [`ADMIN_USER`].
pub const ADMIN_PASSWORD: &str = "Admin123";
/// A local user that needs a one-time password as second factor.
pub const MFA_USER: &str = "MfaUser";
/// Password of [`MFA_USER`].
pub const MFA_PASSWORD: &str = "MfaPassword1!";
/// The one-time password [`MFA_USER`] must give at PKCE step 5.
pub const MFA_OTP: &str = "246810";
/// Name of the external (LDAP-like) authentication provider.
pub const EXTERNAL_PROVIDER_NAME: &str = "Example Directory";
/// `RstsProviderId` of the external provider.
pub const EXTERNAL_PROVIDER_ID: &str = "ldap-example-directory";
/// A user of the external provider.
pub const EXTERNAL_USER: &str = "jdoe";
/// Password of [`EXTERNAL_USER`].
pub const EXTERNAL_PASSWORD: &str = "Directory1!";
/// A non-administrator local user.
pub const PLAIN_USER: &str = "Auditor";
/// Password of [`PLAIN_USER`].
pub const PLAIN_PASSWORD: &str = "Auditor1!";
/// The seeded certificate user (identified by the client certificate's thumbprint).
pub const CERT_USER: &str = "A2ACertUser";
/// Name of the seeded asset.
pub const ASSET_NAME: &str = "linux.example.com";
/// Name of the seeded password account (A2A `password_api_key`).
pub const PASSWORD_ACCOUNT: &str = "svc-password";
/// Initial password of [`PASSWORD_ACCOUNT`].
pub const PASSWORD_ACCOUNT_PASSWORD: &str = "Initial-Password-1";
/// Name of the seeded SSH-key account (A2A `ssh_key_api_key`).
pub const SSH_KEY_ACCOUNT: &str = "svc-sshkey";
/// Name of the seeded A2A registration.
pub const A2A_APP_NAME: &str = "Emulator A2A";
/// User name of the fake SPS administrator.
pub const SPS_USER: &str = "admin";
/// Password of the fake SPS administrator.
pub const SPS_PASSWORD: &str = "Sps-Admin1!";

/// How the SPP port asks for client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ClientCertMode {
    /// The CertificateRequest is part of the first TLS handshake (optional certificate).
    #[default]
    InHandshake,
    /// Like the appliance: not in the first handshake; a TLS 1.3 post-handshake
    /// CertificateRequest is sent when an A2A request or the certificate grant
    /// arrives. Clients that cannot answer get 403 / 60094.
    PostHandshake,
    /// Like the appliance on TLS 1.2 (SPP 7 and 8): connections are TLS 1.2
    /// only and the first handshake does not ask; when an A2A request or the
    /// certificate grant arrives, the server renegotiates (a secure, RFC 5746
    /// renegotiation: HelloRequest, then a full handshake whose
    /// CertificateRequest the client answers) and continues with the request.
    /// A client that answers with no certificate gets 403 / 60094; one that
    /// refuses to renegotiate (rustls) loses the connection.
    Renegotiation,
}

/// Settings of an emulator instance.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where certificates and `connection.json` go; a fresh temporary directory
    /// (removed on shutdown) when `None`.
    pub dir: Option<PathBuf>,
    /// SPP port on 127.0.0.1; 0 = ephemeral.
    pub spp_port: u16,
    /// SPS port on 127.0.0.1; 0 = ephemeral.
    pub sps_port: u16,
    /// Lifetime of user tokens (default 60 minutes).
    pub token_lifetime: Duration,
    /// Where the OpenAPI documents are; see [`EmulatorConfig::openapi_search_path`].
    pub openapi_dir: Option<PathBuf>,
    /// How the SPP port asks for client certificates.
    pub client_cert_mode: ClientCertMode,
    /// Interval of the SignalR server pings (default 15 s).
    pub signalr_ping_interval: Duration,
    /// How long a SignalR long poll waits for a message before it answers
    /// 200 with an empty body (default 90 s, ASP.NET Core's
    /// `LongPollingOptions.PollTimeout`).
    pub signalr_long_poll_timeout: Duration,
    /// Device code polling interval announced to clients, whole seconds (default 5).
    pub device_code_interval: u64,
    /// Device code lifetime (default 5 minutes).
    pub device_code_lifetime: Duration,
    /// Size of the seeded backup (default 1 MiB).
    pub backup_size: u64,
    /// How long to wait for a client's answer to a post-handshake
    /// CertificateRequest, or for its renegotiation to complete (default 5 s).
    pub post_handshake_timeout: Duration,
    /// Validate every request against the documents (parameters, body
    /// schema, content type) and refuse an invalid one with the appliance's
    /// 400, as the appliance does (default `true`); `false` lets anything
    /// through to the handlers.
    pub strict_validation: bool,
    /// How many SPP appliances form the emulated cluster (default 1; 0 is
    /// taken as 1). Each member listens on its own port (member 0 on
    /// [`Self::spp_port`], the others on ephemeral ports), all under one CA
    /// and serving one shared state; member 0 starts as the primary.
    pub cluster_members: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            dir: None,
            spp_port: 0,
            sps_port: 0,
            token_lifetime: Duration::from_secs(60 * 60),
            openapi_dir: None,
            client_cert_mode: ClientCertMode::InHandshake,
            signalr_ping_interval: Duration::from_secs(15),
            signalr_long_poll_timeout: Duration::from_secs(90),
            device_code_interval: 5,
            device_code_lifetime: Duration::from_secs(300),
            backup_size: 1024 * 1024,
            post_handshake_timeout: Duration::from_secs(5),
            strict_validation: true,
            cluster_members: 1,
        }
    }
}

impl EmulatorConfig {
    /// Where the OpenAPI documents are looked for, in order, each document
    /// (`core.json`, `appliance.json`, `notification.json`, `a2a.json`) on its
    /// own: only [`Self::openapi_dir`] when set; otherwise
    /// `$SAFEGUARD_OPENAPI_DIR` (when set), the workspace's `openapi/` (where
    /// `a2a.json` lives), then `../shared/openapi` next to the workspace root.
    pub fn openapi_search_path(&self) -> Vec<PathBuf> {
        if let Some(d) = &self.openapi_dir {
            return vec![d.clone()];
        }
        let mut dirs = Vec::new();
        if let Some(d) = std::env::var_os("SAFEGUARD_OPENAPI_DIR") {
            dirs.push(PathBuf::from(d));
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        dirs.push(workspace.join("openapi"));
        dirs.push(workspace.join("..").join("shared").join("openapi"));
        dirs
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A file could not be written or a directory created.
    #[error("I/O error on {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    /// A port could not be bound.
    #[error("cannot listen on 127.0.0.1:{0}: {1}")]
    Bind(u16, #[source] std::io::Error),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Certificates(String),
    /// The TLS configuration could not be built.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// A cluster member index out of range.
    #[error("no cluster member {0}")]
    NoSuchMember(usize),
}

/// A user name and password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// The client certificate section of `connection.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertInfo {
    /// PEM certificate path.
    pub cert: PathBuf,
    /// PEM private key path (unencrypted).
    pub key: PathBuf,
    /// PKCS#12 path.
    pub pfx: PathBuf,
    /// PKCS#12 password.
    pub pfx_password: String,
    /// SHA-1 thumbprint, upper-case hex.
    pub thumbprint: String,
}

/// The A2A API keys of the seeded registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct A2aKeys {
    /// Retrieves the password of [`PASSWORD_ACCOUNT`].
    pub password_api_key: String,
    /// Retrieves the SSH private key of [`SSH_KEY_ACCOUNT`].
    pub ssh_key_api_key: String,
}

/// The `spp` section of `connection.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SppConnection {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Path of the CA certificate (PEM) to trust.
    pub ca: PathBuf,
    /// The seeded administrator.
    pub admin: Credentials,
    /// The client certificate (a certificate user with an A2A registration).
    pub client_cert: ClientCertInfo,
    /// A2A API keys.
    pub a2a: A2aKeys,
    /// Every member of the cluster, the primary at start first (one entry
    /// for a lone appliance); `host` above is the first one's.
    #[serde(default)]
    pub members: Vec<ClusterMemberInfo>,
}

/// One cluster member in `connection.json` (`spp.members`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMemberInfo {
    /// `127.0.0.1:PORT` of the member.
    pub host: String,
    /// Its appliance id (`ClusterMember.Id` in `Cluster/Members`).
    pub id: String,
}

/// The `sps` section of `connection.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpsConnection {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// SPS administrator.
    pub user: String,
    /// Its password.
    pub password: String,
}

/// How one documented operation is served (see [`crate::Emulator::coverage`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OperationCoverage {
    /// `core`, `appliance`, `notification` or `a2a`.
    pub service: String,
    /// The HTTP method.
    pub method: String,
    /// The documented path, without the version (`Users/{id}`).
    pub path: String,
    /// The document's `operationId`.
    pub operation_id: String,
    /// `handwritten`, `generic stateful` or `synthesized`.
    pub served_by: String,
}

/// Exactly what `connection.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// The fake SPP appliance.
    pub spp: SppConnection,
    /// The fake SPS.
    pub sps: SpsConnection,
}

impl std::fmt::Display for ConnectionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.spp;
        writeln!(f, "Safeguard emulator")?;
        writeln!(f, "  SPP            https://{}", s.host)?;
        for (i, m) in s.members.iter().enumerate().skip(1) {
            writeln!(f, "  SPP member {i}   https://{} (replica)", m.host)?;
        }
        writeln!(f, "  CA certificate {}", s.ca.display())?;
        writeln!(
            f,
            "  admin          {} / {}",
            s.admin.user, s.admin.password
        )?;
        writeln!(f, "  client cert    {}", s.client_cert.cert.display())?;
        writeln!(f, "  client key     {}", s.client_cert.key.display())?;
        writeln!(
            f,
            "  client pfx     {} (password {})",
            s.client_cert.pfx.display(),
            s.client_cert.pfx_password
        )?;
        writeln!(f, "  thumbprint     {}", s.client_cert.thumbprint)?;
        writeln!(f, "  A2A password key  {}", s.a2a.password_api_key)?;
        writeln!(f, "  A2A SSH key key   {}", s.a2a.ssh_key_api_key)?;
        writeln!(f, "  SPS            https://{}", self.sps.host)?;
        write!(
            f,
            "  SPS login      {} / {}",
            self.sps.user, self.sps.password
        )
    }
}
