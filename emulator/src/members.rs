//! The listeners of the SPP cluster members: one per member, each serving
//! the SPP router with its requests tagged by member (`state::MemberIndex`),
//! stopped and started as the members' switches in the state say.

use std::sync::Arc;

use crate::model::EmulatorError;
use crate::{router, state, tls};

/// The router of cluster member `index`: the SPP router, every request
/// tagged with the member it reached.
pub(crate) fn member_router(spp_router: &axum::Router, index: usize) -> axum::Router {
    spp_router
        .clone()
        .layer(axum::Extension(state::MemberIndex(index)))
}

/// A member's listener: its task and the switch that stops it gracefully.
pub(crate) struct Serving {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Serving {
    /// Serves `listener` as member `index` until stopped.
    pub(crate) fn start(
        listener: tokio::net::TcpListener,
        contexts: Arc<tls::TlsContexts>,
        app: &Arc<state::App>,
        spp_router: &axum::Router,
        index: usize,
        post_handshake_timeout: std::time::Duration,
    ) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(tls::serve(
            listener,
            contexts,
            app.cert_mode.clone(),
            member_router(spp_router, index),
            post_handshake_timeout,
            app.handshakes.clone(),
            stopped,
        ));
        Self { task, stop }
    }

    /// The serving task (to abort and await at shutdown).
    pub(crate) fn into_task(self) -> tokio::task::JoinHandle<()> {
        self.task
    }

    /// Stops serving at once: every connection drops.
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

/// The SPP cluster members' listeners, kept in line with the members'
/// `running` switches in the state (set by [`crate::Emulator::stop_member`],
/// [`crate::Control::set_member_running`] or `/emulator/cluster/members/{i}/...`).
pub(crate) struct Members {
    /// Serving task of each member (`None`: stopped).
    pub(crate) tasks: std::sync::Mutex<Vec<Option<Serving>>>,
    pub(crate) contexts: Arc<tls::TlsContexts>,
    pub(crate) post_handshake_timeout: std::time::Duration,
    pub(crate) app: Arc<state::App>,
}

impl Members {
    /// Sets member `index`'s switch without waking the supervisor (the
    /// caller reconciles, and so holds the stopped tasks to await).
    pub(crate) fn switch(&self, index: usize, running: bool) -> Result<(), EmulatorError> {
        let mut cluster = self.app.cluster();
        let member = cluster
            .members
            .get_mut(index)
            .ok_or(EmulatorError::NoSuchMember(index))?;
        member.running = running;
        Ok(())
    }

    /// Stops the members switched off (gracefully: see [`tls::serve`]) and
    /// starts those switched on; returns the stopping tasks (await them to
    /// know the listeners are closed and their requests answered).
    pub(crate) fn reconcile(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, EmulatorError> {
        let wanted: Vec<(bool, String)> = self
            .app
            .cluster()
            .members
            .iter()
            .map(|m| (m.running, m.host.clone()))
            .collect();
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let mut stopped = Vec::new();
        for (i, (running, host)) in wanted.into_iter().enumerate() {
            let Some(slot) = tasks.get_mut(i) else {
                continue;
            };
            match (running, slot.is_some()) {
                (false, true) => {
                    if let Some(serving) = slot.take() {
                        let _ = serving.stop.send(true);
                        stopped.push(serving.task);
                    }
                }
                (true, false) => {
                    let port = host
                        .rsplit_once(':')
                        .and_then(|(_, p)| p.parse::<u16>().ok())
                        .unwrap_or(0);
                    let listener = match tls::bind(port) {
                        Ok(l) => l,
                        Err(e) => {
                            if let Some(m) = self.app.cluster().members.get_mut(i) {
                                m.running = false;
                            }
                            return Err(e);
                        }
                    };
                    *slot = Some(Serving::start(
                        listener,
                        self.contexts.clone(),
                        &self.app,
                        &router::router(self.app.clone()),
                        i,
                        self.post_handshake_timeout,
                    ));
                }
                _ => {}
            }
        }
        Ok(stopped)
    }

    /// Follows the switches flipped through [`crate::Control`] and the HTTP face.
    pub(crate) async fn supervise(members: Arc<Members>) {
        let mut changed = members.app.cluster_changed.subscribe();
        while changed.changed().await.is_ok() {
            if let Err(e) = members.reconcile() {
                tracing::warn!("cannot restart a cluster member: {e}");
            }
        }
    }
}
