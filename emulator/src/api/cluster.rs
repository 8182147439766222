//! The emulated cluster: `Cluster/Members`, `Cluster/Members/{id}`,
//! `Cluster/Members/Self`, `Cluster/Members/{id}/Promote` and
//! `Cluster/Status`, answered from `App::cluster` (one shared state, each
//! member its own listener), and the guard that makes a replica refuse
//! configuration writes and a locked cluster refuse them everywhere.

use std::time::Duration;

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{api_error, bad_method, list, one, Ctx};
use crate::state::{now_string, Cluster, MemberIndex};

/// 60418 and its message are core.json's (e.g. the 403 of
/// `PUT Cluster/BackupProtectionSettings`: "60418 - This action can only be
/// performed on the primary appliance (not replica)."); the documents list
/// it under 403 (every one of its four mentions), the status this answers
/// with; a search of the public code index (vendor SDKs included) found
/// no other mention of the code to contradict the documents.
pub(crate) const NOT_PRIMARY: i64 = 60418;
const NOT_PRIMARY_MESSAGE: &str =
    "This action can only be performed on the primary appliance (not replica).";
/// core.json (`POST Cluster/Members`, 400): "60910 - A pending action on
/// this instance is blocking this action. Wait a few minutes and try
/// again." The documents name no other code for a locked cluster, so a
/// cluster-wide operation in progress answers every refused write with it.
pub(crate) const CLUSTER_LOCKED: i64 = 60910;
const CLUSTER_LOCKED_MESSAGE: &str =
    "A pending action on this instance is blocking this action. Wait a few minutes and try again.";

/// How long a promotion (`ClusterOperation` `Failover`) keeps the cluster locked.
pub(crate) const FAILOVER_LOCK: Duration = Duration::from_secs(2);

/// The member a request reached (its router tags every request).
pub(crate) fn member(ctx: &Ctx) -> usize {
    ctx.parts
        .extensions
        .get::<MemberIndex>()
        .copied()
        .unwrap_or_default()
        .0
}

/// Whether `l` (the lower-cased path after `/service/core/v4/`) is answered here.
pub(crate) fn handles(l: &[&str]) -> bool {
    matches!(
        l,
        ["cluster", "members"]
            | ["cluster", "members", _]
            | ["cluster", "members", _, "promote"]
            | ["cluster", "status"]
            | ["cluster", "status", "forcecomplete"]
    )
}

/// Core writes a replica serves. The vendor's administration guide: on a
/// replica the configuration is read-only (objects and security policy
/// cannot be added, changed or deleted), while users still sign in, request
/// access (the whole workflow: approve, check out, close, ...), retrieve
/// passwords through A2A (the `a2a` service, not guarded here), run reports
/// and audit (reads). So of the user's own `Me/...` writes a replica takes
/// only those that change nothing (`ValidatePassword`, `GeneratePassword`)
/// and running a scheduled report (`.../Execute`); the user's own stored
/// objects (certificates, personal accounts, favorites, preferences,
/// password) are configuration, refused like the rest (our reading of the
/// guide; the documents do not say). Promotion and the cluster-operation
/// actions are per-appliance: a failover is started on the replica to
/// promote when the primary is gone (safeguard-ps
/// `Set-SafeguardClusterPrimary` posts `Cluster/Members/{id}/Promote` to the
/// appliance it is connected to).
fn replica_serves(l: &[&str]) -> bool {
    matches!(
        l,
        ["token", ..]
            | ["accessrequests", ..]
            | ["me", "validatepassword"]
            | ["me", _, "generatepassword"]
            | ["me", "scheduledauditlogreports", _, "execute"]
            | ["cluster", "members", _, "promote"]
            | ["cluster", "status", _]
    )
}

/// Writes a locked cluster still takes: the ones replicas serve, except a
/// promotion (a second cluster-wide operation), and forcing the running
/// operation to complete.
fn lock_allows(l: &[&str]) -> bool {
    match l {
        ["cluster", "members", _, "promote"] => false,
        _ => replica_serves(l),
    }
}

/// The refusal of a core write on a replica (403 / 60418) or while the
/// cluster is locked (400 / 60910); `None` when the request may go on.
pub(crate) fn refuse(ctx: &Ctx, service: &str) -> Option<Response> {
    if service != "core" || matches!(*ctx.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let l: Vec<&str> = ctx.lower.iter().skip(3).map(String::as_str).collect();
    let here = member(ctx);
    let mut cluster = ctx.app.cluster();
    if here != cluster.leader && !replica_serves(&l) {
        ctx.app
            .replica_refusals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Some(api_error(
            StatusCode::FORBIDDEN,
            NOT_PRIMARY,
            NOT_PRIMARY_MESSAGE,
        ));
    }
    if cluster.active_lock().is_some() && !lock_allows(&l) {
        return Some(api_error(
            StatusCode::BAD_REQUEST,
            CLUSTER_LOCKED,
            CLUSTER_LOCKED_MESSAGE,
        ));
    }
    None
}

/// A `HealthDetail`.
fn detail(healthy: bool, error: &str) -> Value {
    if healthy {
        json!({"Status": "Healthy", "Error": null, "ErrorCode": 0, "ErrorDetail": null})
    } else {
        json!({"Status": "Sick", "Error": error, "ErrorCode": 0, "ErrorDetail": null})
    }
}

/// `ClusterMember` of member `i`, with its `Health` (a `NodeHealth`).
fn member_json(cluster: &Cluster, i: usize) -> Value {
    let node = &cluster.members[i];
    let (ip, _) = node.host.rsplit_once(':').unwrap_or((&node.host, ""));
    let leader = i == cluster.leader;
    let up = node.running;
    let state = match (up, leader) {
        (false, _) => "Offline",
        (true, true) => "Online",
        (true, false) => "ReplicaWithQuorum",
    };
    let reachable: Vec<Value> = cluster
        .members
        .iter()
        .filter(|m| m.id != node.id)
        .map(|m| json!({"ApplianceId": m.id, "IsReachable": m.running && up}))
        .collect();
    let all_up = cluster.members.iter().all(|m| m.running);
    let mut connectivity = detail(all_up, "A cluster member is not reachable.");
    connectivity["NodeConnectivity"] = json!(reachable);
    json!({
        "Id": node.id,
        "Name": node.name,
        "IsLeader": leader,
        "HostDnsSuffix": "",
        "Ipv4Address": ip,
        "Ipv6Address": null,
        "SslCertificateThumbprint": cluster.thumbprint,
        "EnrolledSince": node.enrolled,
        "Health": {
            "ApplianceId": node.id,
            "Name": node.name,
            "CheckDate": now_string(),
            "State": state,
            "ClusterCommunication": detail(up, "The appliance does not answer."),
            "ClusterConnectivity": connectivity,
            "AccessWorkflow": detail(up, "The appliance does not answer."),
            "PolicyData": detail(up, "The appliance does not answer."),
            "AuditLog": detail(up, "The appliance does not answer."),
            // A `ProductVersion`, the appliance version the emulator
            // reports elsewhere (appliance `ApplianceStatus`: 8.1.0.1).
            "Version": {"Major": 8, "Minor": 1, "Revision": 0, "Build": 1,
                "BuildDate": "2026-01-01T00:00:00Z", "BuildVariant": "Release",
                "BuildPlatform": "Emulator", "RsmsVersion": null, "OsPatchLevel": 0},
        },
    })
}

/// `ClusterOperationStatus`: `Operation` `None` when no lock is in force
/// (safeguard-ps `Get-SafeguardClusterOperationStatus`: "When return value
/// reports the current operation as None, then the operation is complete").
fn status_json(cluster: &mut Cluster) -> Value {
    let nodes: Vec<Value> = cluster
        .members
        .iter()
        .map(|m| json!({"NodeId": m.id}))
        .collect();
    match cluster.active_lock() {
        Some(lock) => json!({"Operation": lock.operation, "OwnerId": lock.owner,
            "Started": lock.started, "Nodes": nodes}),
        None => json!({"Operation": "None", "OwnerId": null, "Started": null, "Nodes": []}),
    }
}

fn find(cluster: &Cluster, id: &str) -> Option<usize> {
    cluster
        .members
        .iter()
        .position(|m| m.id.eq_ignore_ascii_case(id))
}

/// Serves the paths [`handles`] accepts (authorization by role came before).
pub(crate) fn handle(ctx: &mut Ctx, l: &[&str]) -> Response {
    if let Err(r) = ctx.user() {
        return r;
    }
    let here = member(ctx);
    let m = ctx.method().clone();
    let id = ctx.segs.get(5).cloned().unwrap_or_default();
    let mut cluster = ctx.app.cluster();
    match (m, l) {
        (Method::GET, ["cluster", "members"]) => {
            let items = (0..cluster.members.len())
                .map(|i| member_json(&cluster, i))
                .collect();
            drop(cluster);
            list(ctx, items)
        }
        // "Force a health check and return cluster information for this node."
        (Method::GET, ["cluster", "members", "self"]) => {
            let v = member_json(&cluster, here.min(cluster.members.len() - 1));
            drop(cluster);
            one(ctx, &v)
        }
        (Method::GET, ["cluster", "members", _]) => match find(&cluster, &id) {
            Some(i) => {
                let v = member_json(&cluster, i);
                drop(cluster);
                one(ctx, &v)
            }
            None => super::not_found("cluster member", &id),
        },
        // Starts a failover to the member (safeguard-ps
        // `Set-SafeguardClusterPrimary`: "starts the process of
        // reconfiguring the specified appliance as the primary", then waits
        // on `Cluster/Status` until the operation is `None`). Here the
        // primary moves at once and the cluster stays locked (`Failover`)
        // for `FAILOVER_LOCK`.
        (Method::POST, ["cluster", "members", _, "promote"]) => {
            if cluster.active_lock().is_some() {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    CLUSTER_LOCKED,
                    CLUSTER_LOCKED_MESSAGE,
                );
            }
            // 60453 and 60522: the documented 400s of this operation.
            let Some(i) = find(&cluster, &id) else {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    60453,
                    "Appliance is not a member of the cluster.",
                );
            };
            if i == cluster.leader {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    60522,
                    "Cannot failover to the Primary appliance.",
                );
            }
            if !cluster.members[i].running {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    60417,
                    "This action cannot be performed in the current appliance state.",
                );
            }
            cluster.leader = i;
            cluster.lock_for("Failover", FAILOVER_LOCK);
            let v = member_json(&cluster, i);
            drop(cluster);
            one(ctx, &v)
        }
        (Method::GET, ["cluster", "status"]) => {
            let v = status_json(&mut cluster);
            drop(cluster);
            one(ctx, &v)
        }
        // "Force the current cluster operation to complete."
        (Method::POST, ["cluster", "status", "forcecomplete"]) => {
            cluster.lock = None;
            let v = status_json(&mut cluster);
            drop(cluster);
            one(ctx, &v)
        }
        _ => {
            drop(cluster);
            bad_method(ctx)
        }
    }
}
