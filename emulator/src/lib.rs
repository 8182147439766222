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
//!   AssetAccounts, Platforms, TrustedCertificates, A2ARegistrations (also
//!   for certificate users without a token), Settings,
//!   Events/FireTestEvent, LoginMessage, with `filter`, `fields`, `orderby`,
//!   `page`, `limit` and `count`; the privileged-access workflow, stateful:
//!   Roles (Members, Policies), AccessPolicies (ScopeItems, ApproverSets,
//!   Reviewers), Me/RequestEntitlements, Me/AccessRequestAssets,
//!   Me/ActionableRequests, Me/Roles, and AccessRequests (create, Approve,
//!   Deny, CheckOutPassword, CheckOutSshKey, CheckIn, Close, Cancel,
//!   Acknowledge, Review, ApproverSet) with the appliance's states and events.
//! * A cluster ([`EmulatorConfig::cluster_members`]): every member on its
//!   own port, one shared state; `core/v4/Cluster/Members` (`Self`,
//!   `{id}`, `{id}/Promote`) and `Cluster/Status` (`api::cluster`), replicas
//!   refusing configuration writes (60418), cluster locks (60910), and
//!   [`Emulator::stop_member`], [`Emulator::restart_member`],
//!   [`Emulator::lock_cluster`].
//! * `/service/appliance/v4/...`: SystemTime, Backups (streamed download and upload).
//! * `/service/notification/v4/Status` and `Status/State`, anonymously.
//! * `/service/a2a/v4/...`: Credentials and AccessRequests (client certificate +
//!   `Authorization: A2A <key>`).
//! * SignalR hubs `/service/event/signalr` and `/service/a2a/signalr` over
//!   WebSockets, Server-Sent Events and long polling.
//! * `/service/{core,appliance,notification,a2a}/swagger/v4/swagger.json`.
//! * `/emulator/...`: the HTTP face of [`Control`] (see [`admin`]).
//! * Every other operation of the four embedded documents (1,072 in all),
//!   through the generic layer (`api::generic`): stateful collections and
//!   lists derived from the paths, schema-conforming answers for the rest;
//!   authentication before routing, the documented roles, and strict request
//!   validation (`validate`) in front of every handler.
//! * The SPS API under `/api/` on its own port ([`sps`]), including the
//!   join of SPS to SPP (`/api/cluster/{status,promote,spp}`), which records
//!   the SPS under SPP's `core/v4/Cluster/SessionModules`.
//!
//! # Layering
//!
//! The modules form layers; a module uses modules of its own layer or of lower
//! ones, never of a higher one, and no modules use each other in a circle
//! (`tests/layering.rs` checks this; its `LAYERS` table is the reference):
//!
//! | layer | modules | may use |
//! |---|---|---|
//! | 5 routing | the crate root (this file: [`Emulator::start`]), `router`, `members` (the cluster members' listeners) | everything |
//! | 4 handlers | `api` (SPP services and the request context `api::Ctx`), `rsts`, `signalr`, [`admin`], [`sps`] | layers 0-3, each other without circles |
//! | 3 control | `control` ([`Control`], the test handle) | layers 0-2 |
//! | 2 state | `state` (entities, tokens, counters, switches) | layers 0-1 |
//! | 1 transport | [`tls`] (the HTTPS server; serves whatever router it is given) | layer 0 |
//! | 0 pure | `model` (constants, settings, errors, `connection.json`), `certs`, `sshkey`, `query`, `platforms`, `openapi` (the embedded documents, their routes, schema-conforming examples), `validate` (request validation against the documents) | each other without circles |
//!
//! Lower layers name the public types and constants through `crate::model`,
//! not through their re-exports here. What a lower layer needs from a higher
//! one moves down, or is handed down as a value (the router is given to
//! [`tls`] as an argument).

#![warn(missing_docs)]
// Handlers return ready-made appliance error responses as their `Err`; boxing
// them everywhere would only add noise.
#![allow(clippy::result_large_err)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod admin;
mod api;
mod certs;
mod control;
mod members;
mod model;
mod openapi;
mod platforms;
mod query;
mod router;
mod rsts;
mod signalr;
pub mod sps;
mod sshkey;
mod state;
pub mod tls;
mod validate;

pub use certs::ClientCertFiles;
pub use control::{Control, Counters, DeviceCodeInfo, UploadRecord};
pub use model::{
    A2aKeys, ClientCertInfo, ClientCertMode, ClusterMemberInfo, ConnectionInfo, Credentials,
    EmulatorConfig, EmulatorError, OperationCoverage, SppConnection, SpsConnection, A2A_APP_NAME,
    ADMIN_PASSWORD, ADMIN_USER, ASSET_NAME, CERT_USER, EXTERNAL_PASSWORD, EXTERNAL_PROVIDER_ID,
    EXTERNAL_PROVIDER_NAME, EXTERNAL_USER, MFA_OTP, MFA_PASSWORD, MFA_USER, PASSWORD_ACCOUNT,
    PASSWORD_ACCOUNT_PASSWORD, PLAIN_PASSWORD, PLAIN_USER, SPS_PASSWORD, SPS_USER, SSH_KEY_ACCOUNT,
};
pub use tls::PeerCertificate;

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
    members: Arc<members::Members>,
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
        let mut member_listeners = vec![spp_listener];
        for _ in 1..config.cluster_members.max(1) {
            member_listeners.push(tls::bind(0)?);
        }

        let app = state::App::new(&config, &certs, &spp_host);
        for (i, l) in member_listeners.iter().enumerate().skip(1) {
            let port = l
                .local_addr()
                .map_err(|e| EmulatorError::Bind(0, e))?
                .port();
            let mut cluster = app.cluster();
            cluster.members.push(state::ClusterNode {
                id: uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
                name: format!("safeguard-emulator-{i}"),
                host: format!("127.0.0.1:{port}"),
                running: true,
                enrolled: state::now_string(),
            });
        }
        let members: Vec<ClusterMemberInfo> = app
            .cluster()
            .members
            .iter()
            .map(|m| ClusterMemberInfo {
                host: m.host.clone(),
                id: m.id.clone(),
            })
            .collect();
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
                members,
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

        let spp_router = router::router(app.clone());
        let sps = sps::SpsEmulator::new(sps::SpsConfig {
            user: SPS_USER.to_string(),
            password: SPS_PASSWORD.to_string(),
        });
        // The seeded client certificate also signs in to SPS (`?type=x509`) as the SPS admin.
        sps.add_certificate_user(&certs.client.thumbprint, SPS_USER);
        // Joining SPS to SPP (`POST /api/cluster/spp`) reaches the SPP side
        // of this process: its tokens, its certificate, its session modules.
        sps.link_spp(sps::SppLink {
            app: app.clone(),
            server_cert_der: certs.server_cert.to_der().unwrap_or_default(),
            sps_host: info.sps.host.clone(),
        });
        let sps_router = axum::Router::new()
            .merge(sps.router())
            .fallback(router::sps_fallback);
        let sps_mode: tls::ModeCell = Arc::new(std::sync::atomic::AtomicU8::new(tls::mode_to_u8(
            ClientCertMode::InHandshake,
        )));
        let member_tasks = member_listeners
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                Some(members::Serving::start(
                    l,
                    contexts.clone(),
                    &app,
                    &spp_router,
                    i,
                    config.post_handshake_timeout,
                ))
            })
            .collect();
        let members = Arc::new(members::Members {
            tasks: std::sync::Mutex::new(member_tasks),
            contexts: contexts.clone(),
            post_handshake_timeout: config.post_handshake_timeout,
            app: app.clone(),
        });
        let tasks = vec![
            tokio::spawn(tls::serve(
                sps_listener,
                contexts.clone(),
                sps_mode,
                sps_router,
                config.post_handshake_timeout,
                Arc::default(),
                // SPS is never stopped: a switch whose sender is gone.
                tokio::sync::watch::channel(false).1,
            )),
            tokio::spawn(state::App::housekeeping(Arc::downgrade(&app))),
            tokio::spawn(members::Members::supervise(members.clone())),
        ];
        tracing::info!("Safeguard emulator listening on https://{spp_host}");
        // The documents are parsed once per process, in the background once
        // the listeners are up, so that neither the start nor (usually) the
        // first request waits for them.
        std::thread::spawn(|| {
            openapi::Spec::get();
        });
        Ok(Emulator {
            info,
            ca_pem: certs.ca_pem.clone(),
            dir,
            remove_dir,
            control,
            client_files: certs.client.clone(),
            sps,
            tasks,
            members,
        })
    }

    /// `127.0.0.1:PORT` of every SPP cluster member, by member index
    /// (member 0 is [`Self::spp_host`]).
    pub fn member_hosts(&self) -> Vec<String> {
        self.info
            .spp
            .members
            .iter()
            .map(|m| m.host.clone())
            .collect()
    }

    /// Index of the current primary among [`Self::member_hosts`].
    pub fn primary(&self) -> usize {
        self.control.app().cluster().leader
    }

    /// Stops cluster member `index` as an appliance that shuts down: its
    /// listener closes (new connections are refused), idle connections
    /// close, requests in flight get their answers (within a few seconds)
    /// and the event hubs connected to it drop; returns once all of that
    /// has happened. The other members list it as `Offline`. A stopped
    /// primary stays the primary until a replica is promoted, as on the
    /// appliance.
    pub async fn stop_member(&self, index: usize) -> Result<(), EmulatorError> {
        self.members.switch(index, false)?;
        let stopping = self.members.reconcile()?;
        // The hubs of the member end on this (and the supervisor finds
        // nothing left to do).
        self.control.app().cluster_changed.send_modify(|n| *n += 1);
        for task in stopping {
            let _ = task.await;
        }
        Ok(())
    }

    /// Starts a stopped cluster member again on its port (no-op when it runs).
    pub fn restart_member(&self, index: usize) -> Result<(), EmulatorError> {
        self.members.switch(index, true)?;
        self.members.reconcile()?;
        self.control.app().cluster_changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Locks the cluster for `duration`, as a cluster-wide operation does
    /// (`operation` is a `ClusterOperation` value such as `"Patch"`):
    /// `Cluster/Status` reports it, and configuration writes on every
    /// member answer 400 / 60910 until it ends.
    pub fn lock_cluster(&self, operation: &str, duration: std::time::Duration) {
        self.control.app().cluster().lock_for(operation, duration);
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

    /// How each documented operation is served: handwritten, generic
    /// stateful or synthesized. Probes every operation through the router
    /// with an administrator's token and placeholder arguments, so it
    /// changes this emulator's state: use a throwaway instance
    /// (`safeguard-emulator --coverage` does).
    pub async fn coverage(&self) -> Vec<OperationCoverage> {
        router::coverage(self.control.app().clone()).await
    }

    /// Stops serving and waits for the listeners to close.
    pub async fn shutdown(mut self) {
        self.control.app().shutdown();
        let members: Vec<_> = self
            .members
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .flatten()
            .map(members::Serving::into_task)
            .collect();
        for t in self.tasks.drain(..).chain(members) {
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
        let members = self.members.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for serving in members.iter().flatten() {
            serving.abort();
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
