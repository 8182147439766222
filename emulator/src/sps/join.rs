//! The SPS side of joining SPS to SPP: `/api/cluster/status`,
//! `/api/cluster/promote` and `/api/cluster/spp`.
//!
//! What a client sends follows the vendor's PowerShell module
//! (`Join-SafeguardSessionCluster`, `src/sessionjoin.psm1` of
//! OneIdentity/safeguard-ps): it enables clustering with
//! `PUT /api/configuration/local_services/cluster {enabled, listen_address}`
//! inside a transaction, treats a failing `GET /api/cluster/status` as "not
//! promoted" and then runs `POST /api/cluster/promote` inside a transaction,
//! and finally posts `{spp, spp_api_token, spp_cert_chain}` to
//! `/api/cluster/spp`; an SPP refusal comes back with SPP's answer in
//! `error.details.response` (the module reads `.Code` 60657 there, "already
//! joined").
//!
//! Guessed (no public document shows them): the status and body of
//! `cluster/status` (200 `{"body": {"role", "node_id", ...}}` on a promoted
//! node, 404 `NodeNotFound` otherwise), that a promotion takes effect on
//! commit, and that SPS relays SPP's refusals as 400 `SemanticError` with
//! `details: {"response": <SPP's body>, "status": <SPP's status>}`.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{json_resp, unsupported, Ctx, Env, SpsErrorCode, SpsFault, SpsRole};
use crate::state::App;

/// The generic layer's store of `core/v4/Cluster/SessionModules`: SPP lists
/// (and reads by id) what a join records there.
pub(crate) const SESSION_MODULES_KEY: &str = "core/cluster/sessionmodules";

/// What the fake SPS reaches of the SPP side of the same emulator process
/// when a client joins it to SPP: SPP's state (its tokens and the
/// session-module collection), SPP's TLS certificate, and the SPS address.
/// Handed down by the crate root ([`super::SpsEmulator::link_spp`]).
pub(crate) struct SppLink {
    /// SPP's shared state.
    pub(crate) app: Arc<App>,
    /// The DER of the certificate SPP's port presents.
    pub(crate) server_cert_der: Vec<u8>,
    /// `127.0.0.1:PORT` of the SPS port.
    pub(crate) sps_host: String,
}

impl fmt::Debug for SppLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SppLink")
            .field("spp", &self.app.host)
            .field("sps_host", &self.sps_host)
            .finish()
    }
}

/// SPP's error body `{"Code", "Message"}`.
fn spp_error(code: i64, message: &str) -> Value {
    json!({"Code": code, "Message": message})
}

/// SPS relaying a refusal of SPP (see the module documentation).
fn relayed(status: u16, body: Value, message: &str) -> ApiError {
    ApiError::new(SpsErrorCode::SemanticError, message).details(json!({
        "path": "/api/cluster/spp",
        "status": status,
        "response": body,
    }))
}

impl Env<'_> {
    /// `/api/cluster/...`.
    pub(super) fn cluster(
        &mut self,
        ctx: &Ctx,
        spp: Option<&SppLink>,
    ) -> Result<Response, ApiError> {
        if self.role() != SpsRole::Admin {
            return Err(self.unauthorized(&ctx.path));
        }
        let href = ctx.path.trim_end_matches('/').to_string();
        let r = match (ctx.seg(1), ctx.segs.len()) {
            (Some("status"), 2) if ctx.method == Method::GET => self.cluster_status(&href),
            (Some("promote"), 2) if ctx.method == Method::POST => self.promote(&href),
            (Some("spp"), 2) if ctx.method == Method::POST => self.join_spp(ctx, spp, &href),
            (Some("status" | "promote" | "spp"), 2) => Err(unsupported(&ctx.method, &href)),
            _ => Err(ApiError::new(
                SpsErrorCode::NodeNotFound,
                format!("The endpoint {} does not exist", ctx.path),
            )
            .path(&ctx.path)),
        };
        r.map_err(|e| self.err(e, &href))
    }

    fn cluster_status(&mut self, href: &str) -> Result<Response, ApiError> {
        if super::take_fault(self.st, SpsFault::ClusterStatusUnavailable) {
            return Err(ApiError::new(
                SpsErrorCode::ConfigTreeNotAvailable,
                "The cluster status is not available",
            )
            .path(href));
        }
        if !self.st.clustering_enabled() {
            return Err(ApiError::new(
                SpsErrorCode::NodeNotFound,
                "Clustering is not enabled on this node",
            )
            .path(href));
        }
        if !self.st.promoted {
            return Err(ApiError::new(
                SpsErrorCode::NodeNotFound,
                "This node is not the central management node of a cluster: promote it first",
            )
            .path(href));
        }
        let body = json!({
            "role": "central-management",
            "node_id": self.st.node_id,
            "nodes": [{"node_id": self.st.node_id, "roles": ["central-management"], "status": "ok"}],
        });
        let meta = self.meta(href, json!({}));
        Ok(json_resp(
            StatusCode::OK,
            json!({"key": "status", "body": body, "meta": meta}),
        ))
    }

    fn promote(&mut self, href: &str) -> Result<Response, ApiError> {
        self.begin_change(href)?;
        if !self.st.clustering_enabled() {
            return Err(ApiError::new(
                SpsErrorCode::SemanticError,
                "Clustering is not enabled on this node: enable it (local_services/cluster) and commit first",
            )
            .path(href));
        }
        if !self.st.promotable {
            return Err(ApiError::new(
                SpsErrorCode::SemanticError,
                "This node cannot be promoted to central management node",
            )
            .path(href));
        }
        if let Some(t) = self.session_mut().and_then(|s| s.txn.as_mut()) {
            t.promote = true;
        }
        let meta = self.meta(href, json!({}));
        Ok(json_resp(
            StatusCode::OK,
            json!({"key": "promote", "body": {"status": "promoting on commit"}, "meta": meta}),
        ))
    }

    fn join_spp(
        &mut self,
        ctx: &Ctx,
        spp: Option<&SppLink>,
        href: &str,
    ) -> Result<Response, ApiError> {
        if !self.st.clustering_enabled() || !self.st.promoted {
            return Err(ApiError::new(
                SpsErrorCode::SemanticError,
                "Only the central management node of an SPS cluster can join SPP",
            )
            .path(href));
        }
        let body = ctx.json_body()?;
        let field = |name: &str| -> Result<String, ApiError> {
            match body.get(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                _ => Err(ApiError::new(
                    SpsErrorCode::SyntacticError,
                    format!("{name} is required (a non-empty string)"),
                )
                .path(&format!("{href}/{name}"))),
            }
        };
        let address = field("spp")?;
        let token = field("spp_api_token")?;
        let chain_pem = field("spp_cert_chain")?;
        let chain = openssl::x509::X509::stack_from_pem(chain_pem.as_bytes())
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    SpsErrorCode::SyntacticError,
                    "spp_cert_chain is not a PEM certificate chain",
                )
                .path(&format!("{href}/spp_cert_chain"))
            })?;
        let Some(link) = spp else {
            return Err(ApiError::new(
                SpsErrorCode::SemanticError,
                format!("Cannot connect to SPP at {address}"),
            )
            .path(href));
        };
        // The member SPS reaches (a lone appliance is a cluster of one).
        let member = {
            let cluster = link.app.cluster();
            cluster
                .members
                .iter()
                .position(|m| m.running && m.host.eq_ignore_ascii_case(&address))
        };
        let Some(member) = member else {
            return Err(ApiError::new(
                SpsErrorCode::SemanticError,
                format!("Cannot connect to SPP at {address}"),
            )
            .path(&format!("{href}/spp")));
        };
        if link
            .app
            .maintenance
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // What SPP's core answers in maintenance (`api::management`).
            return Err(relayed(
                503,
                spp_error(
                    50000,
                    "The appliance is in maintenance; the service is unavailable.",
                ),
                "SPP refused the request: the appliance is in maintenance",
            ));
        }
        // SPS pins the chain it is given: the certificate SPP presents must
        // be its first.
        let leaf = chain[0].to_der().unwrap_or_default();
        if leaf != link.server_cert_der {
            return Err(ApiError::new(
                SpsErrorCode::SemanticError,
                "The certificate chain does not match the certificate SPP presented",
            )
            .path(&format!("{href}/spp_cert_chain")));
        }
        let db = link.app.db();
        let user_id = match db.tokens.get(&token) {
            Some(t) if t.expires > Instant::now() && db.users.contains_key(&t.user_id) => t.user_id,
            // What SPP answers a missing, unknown or expired token
            // (`api::unauthorized`).
            _ => {
                return Err(relayed(
                    401,
                    spp_error(60108, "Authorization is required for this request."),
                    "SPP refused the request: authorization is required",
                ))
            }
        };
        // SPP records the module with `POST Cluster/SessionModules`; core.json
        // documents its refusals: 403 "Must have ApplianceAdmin permission."
        // (the emulator's 60101 for a missing role, `Ctx::admin`), 403
        // "60418 - This action can only be performed on the primary
        // appliance (not replica).", and a cluster-wide operation in
        // progress refuses writes with 400 / 60910 (`api::cluster`).
        if !db.holds_role(user_id, &["ApplianceAdmin"]) {
            return Err(relayed(
                403,
                spp_error(60101, "You do not have permission to perform this action."),
                "SPP refused the request: the token's user is not an appliance administrator",
            ));
        }
        drop(db);
        {
            let mut cluster = link.app.cluster();
            if member != cluster.leader {
                return Err(relayed(
                    403,
                    spp_error(
                        60418,
                        "This action can only be performed on the primary appliance (not replica).",
                    ),
                    "SPP refused the request: the address is a replica",
                ));
            }
            if cluster.active_lock().is_some() {
                return Err(relayed(
                    400,
                    spp_error(
                        60910,
                        "A pending action on this instance is blocking this action. Wait a few minutes and try again.",
                    ),
                    "SPP refused the request: a cluster operation is in progress",
                ));
            }
        }
        let mut db = link.app.db();
        let node_id = self.st.node_id.clone();
        let modules = db
            .generic
            .entry(SESSION_MODULES_KEY.to_string())
            .or_default();
        if modules
            .iter()
            .any(|m| m["NodeId"].as_str() == Some(node_id.as_str()))
        {
            // 60657: what safeguard-ps reads as "This SPS cluster is already
            // joined" (`Join-SafeguardSessionCluster`).
            return Err(relayed(
                400,
                spp_error(60657, "This session module is already connected."),
                "SPP refused the request: this SPS cluster is already joined",
            ));
        }
        let id = db.id();
        let user = db.users.get(&user_id).cloned().unwrap_or(Value::Null);
        let (sps_address, _) = link
            .sps_host
            .rsplit_once(':')
            .unwrap_or((link.sps_host.as_str(), ""));
        let module = json!({
            "Id": id,
            "NodeId": node_id,
            "Description": "",
            "SpsNetworkAddress": sps_address,
            "SpsHostName": "sps-emulator",
            "CertificateUserCsr": null,
            "SppSslPemEncodedCertificateChain": chain_pem,
            "OneTimeToken": null,
            "Trusted": true,
            "CertificateUserPemEncodedCertificate": null,
            "CertificateUserId": 0,
            // The certificate SPS signs in to SPP with: in the emulator the
            // SPS port presents the same server certificate as SPP's. A
            // joined module has one; safeguard-ps lists modules without it as
            // split (`Get-SafeguardSessionSplitCluster`).
            "CertificateUserThumbprint": crate::certs::thumbprint(&link.server_cert_der),
            "CertificateUser": format!("SPS-{node_id}"),
            "ClientCertificateThumbprint": null,
            "UseHostNameForLaunch": false,
            "FirmwareVersion": "7.5.0",
            "CreatedDate": crate::state::now_string(),
            "CreatedByUserId": user_id,
            "CreatedByUserDisplayName": user["DisplayName"].clone(),
        });
        db.generic
            .entry(SESSION_MODULES_KEY.to_string())
            .or_default()
            .push(module);
        drop(db);
        self.st.joined_spp = Some(address.clone());
        let meta = self.meta(href, json!({}));
        Ok(json_resp(
            StatusCode::OK,
            json!({
                "key": "spp",
                "body": {"spp": address, "node_id": node_id, "session_module_id": id},
                "meta": meta,
            }),
        ))
    }
}
