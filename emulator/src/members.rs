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

/// The SPP cluster members' listeners, kept in line with the members'
/// `running` switches in the state (set by [`crate::Emulator::stop_member`],
/// [`crate::Control::set_member_running`] or `/emulator/cluster/members/{i}/...`).
pub(crate) struct Members {
    /// Serving task of each member (`None`: stopped).
    pub(crate) tasks: std::sync::Mutex<Vec<Option<tokio::task::JoinHandle<()>>>>,
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

    /// Stops the members switched off and starts those switched on; returns
    /// the aborted tasks (await them to know the listeners are closed).
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
                    if let Some(task) = slot.take() {
                        task.abort();
                        stopped.push(task);
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
                    *slot = Some(tokio::spawn(tls::serve(
                        listener,
                        self.contexts.clone(),
                        self.app.cert_mode.clone(),
                        member_router(&router::router(self.app.clone()), i),
                        self.post_handshake_timeout,
                        self.app.handshakes.clone(),
                    )));
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
