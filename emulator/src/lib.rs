//! A stateful fake One Identity Safeguard appliance (SPP) and Safeguard for
//! Privileged Sessions (SPS), served over HTTPS on loopback.
//!
//! Start it in-process with [`Emulator::start`] (ephemeral ports by default),
//! or run the `safeguard-emulator` binary. On start it generates a CA, a
//! server certificate and a client certificate, seeds users, an asset with a
//! password account and an SSH-key account, a certificate user with an A2A
//! registration, and writes `connection.json` into its directory.
//!
//! What it answers (paths are matched case-insensitively, like the appliance):
//!
//! * rSTS: `GET /RSTS/...` provider lookup through
//!   `core/v4/AuthenticationProviders`, `POST /RSTS/oauth2/token` (password,
//!   client_credentials, authorization_code with PKCE, device_code),
//!   `POST /RSTS/UserLogin/LoginController` (steps 1, 3, 5, 6, 7),
//!   `POST /RSTS/oauth2/DeviceLogin`.
//! * `/service/core/v4/...`: Token, Me, Users, AuthenticationProviders, Assets,
//!   AssetAccounts, TrustedCertificates, A2ARegistrations, AccessRequests,
//!   Settings, Events/FireTestEvent, LoginMessage, with `filter`, `fields`,
//!   `orderby`, `page`, `limit` and `count`.
//! * `/service/appliance/v4/...`: SystemTime, Backups (streamed download and upload).
//! * `/service/notification/v4/Status` and `Status/State`, anonymously.
//! * `/service/a2a/v4/...`: Credentials and AccessRequests (client certificate +
//!   `Authorization: A2A <key>`).
//! * SignalR hubs `/service/event/signalr` and `/service/a2a/signalr`.
//! * `/service/{core,appliance,notification,a2a}/swagger/v4/swagger.json`.
//! * `/emulator/...`: the HTTP face of [`Control`] (see [`admin`]).
//! * The SPS API under `/api/` on its own port ([`sps`]).

#![warn(missing_docs)]
// Handlers return ready-made appliance error responses as their `Err`; boxing
// them everywhere would only add noise.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod admin;
mod api;
mod certs;
mod control;
mod query;
mod rsts;
mod signalr;
pub mod sps;
mod sshkey;
mod state;
pub mod tls;

pub use certs::ClientCertFiles;
pub use control::{Control, Counters, DeviceCodeInfo, UploadRecord};
pub use tls::PeerCertificate;

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
    /// Device code polling interval announced to clients, whole seconds (default 5).
    pub device_code_interval: u64,
    /// Device code lifetime (default 5 minutes).
    pub device_code_lifetime: Duration,
    /// Size of the seeded backup (default 1 MiB).
    pub backup_size: u64,
    /// How long to wait for a client's answer to a post-handshake
    /// CertificateRequest (default 5 s).
    pub post_handshake_timeout: Duration,
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
            device_code_interval: 5,
            device_code_lifetime: Duration::from_secs(300),
            backup_size: 1024 * 1024,
            post_handshake_timeout: Duration::from_secs(5),
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

/// A running emulator. Dropping it (or [`Emulator::shutdown`]) stops every task.
pub struct Emulator {
    info: ConnectionInfo,
    ca_pem: String,
    dir: PathBuf,
    remove_dir: bool,
    control: Control,
    client_files: ClientCertFiles,
    sps: Arc<sps::SpsEmulator>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("spp", &self.info.spp.host)
            .field("sps", &self.info.sps.host)
            .field("dir", &self.dir)
            .finish()
    }
}

impl Emulator {
    /// Generates certificates, seeds state, binds both ports, writes
    /// `connection.json` and starts serving. Must run inside a tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let (dir, remove_dir) = match &config.dir {
            Some(d) => (d.clone(), false),
            None => (
                std::env::temp_dir().join(format!("safeguard-emulator-{}", uuid::Uuid::new_v4())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).map_err(|e| EmulatorError::Io(dir.clone(), e))?;
        let dir = dir.canonicalize().unwrap_or(dir);
        let certs = certs::generate(&dir)?;
        let contexts = Arc::new(tls::TlsContexts::new(&certs)?);

        let spp_listener = tls::bind(config.spp_port)?;
        let sps_listener = tls::bind(config.sps_port)?;
        let spp_port = spp_listener
            .local_addr()
            .map_err(|e| EmulatorError::Bind(config.spp_port, e))?
            .port();
        let sps_port = sps_listener
            .local_addr()
            .map_err(|e| EmulatorError::Bind(config.sps_port, e))?
            .port();
        let spp_host = format!("127.0.0.1:{spp_port}");
        let sps_host = format!("127.0.0.1:{sps_port}");

        let app = state::App::new(&config, &certs, &spp_host);
        let keys = app.seeded_keys();
        let control = Control::new(app.clone());

        let info = ConnectionInfo {
            spp: SppConnection {
                host: spp_host.clone(),
                ca: certs.ca_path.clone(),
                admin: Credentials {
                    user: ADMIN_USER.to_string(),
                    password: ADMIN_PASSWORD.to_string(),
                },
                client_cert: ClientCertInfo {
                    cert: certs.client.cert.clone(),
                    key: certs.client.key.clone(),
                    pfx: certs.client.pfx.clone(),
                    pfx_password: certs.client.pfx_password.clone(),
                    thumbprint: certs.client.thumbprint.clone(),
                },
                a2a: keys,
            },
            sps: SpsConnection {
                host: sps_host,
                user: SPS_USER.to_string(),
                password: SPS_PASSWORD.to_string(),
            },
        };
        let json = serde_json::to_vec_pretty(&info).expect("connection info serializes");
        let conn_path = dir.join("connection.json");
        std::fs::write(&conn_path, json).map_err(|e| EmulatorError::Io(conn_path, e))?;

        let spp_router = api::router(app.clone());
        let sps = sps::SpsEmulator::new(sps::SpsConfig {
            user: SPS_USER.to_string(),
            password: SPS_PASSWORD.to_string(),
        });
        // The seeded client certificate also signs in to SPS (`?type=x509`) as the SPS admin.
        sps.add_certificate_user(&certs.client.thumbprint, SPS_USER);
        let sps_router = axum::Router::new()
            .merge(sps.router())
            .fallback(api::sps_fallback);
        let sps_mode: tls::ModeCell = Arc::new(std::sync::atomic::AtomicU8::new(tls::mode_to_u8(
            ClientCertMode::InHandshake,
        )));
        let tasks = vec![
            tokio::spawn(tls::serve(
                spp_listener,
                contexts.clone(),
                app.cert_mode.clone(),
                spp_router,
                config.post_handshake_timeout,
                app.handshakes.clone(),
            )),
            tokio::spawn(tls::serve(
                sps_listener,
                contexts,
                sps_mode,
                sps_router,
                config.post_handshake_timeout,
                Arc::default(),
            )),
            tokio::spawn(state::App::housekeeping(Arc::downgrade(&app))),
        ];
        tracing::info!("Safeguard emulator listening on https://{spp_host}");
        Ok(Emulator {
            info,
            ca_pem: certs.ca_pem.clone(),
            dir,
            remove_dir,
            control,
            client_files: certs.client.clone(),
            sps,
            tasks,
        })
    }

    /// `127.0.0.1:PORT` of the fake SPP.
    pub fn spp_host(&self) -> String {
        self.info.spp.host.clone()
    }

    /// `127.0.0.1:PORT` of the fake SPS.
    pub fn sps_host(&self) -> String {
        self.info.sps.host.clone()
    }

    /// Exactly what `connection.json` holds.
    pub fn connection(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The CA certificate (PEM) that signed the server and client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The directory holding the certificates and `connection.json`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All files of the client certificate, including the encrypted key.
    pub fn client_cert(&self) -> &ClientCertFiles {
        &self.client_files
    }

    /// The fake SPS (its own test switches: sessions, transactions, faults).
    pub fn sps(&self) -> Arc<sps::SpsEmulator> {
        self.sps.clone()
    }

    /// A handle to the state and the fault switches.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Stops serving and waits for the listeners to close.
    pub async fn shutdown(mut self) {
        self.control.app().shutdown();
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.control.app().shutdown();
        for t in &self.tasks {
            t.abort();
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
