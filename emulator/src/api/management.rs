//! The management service (`/service/management/v4/...`), and the
//! appliance's maintenance state that it outlives.
//!
//! The management service has no OpenAPI document here, so it is
//! handwritten. What the vendor's SDKs say of it: it is anonymous (the .NET
//! SDK's `ManagementServiceAuthenticator` has `IsAnonymous => true` and never
//! holds a token; safeguard-ps `Invoke-SafeguardMethod` accepts `Management`
//! as a service), its base is `https://{host}/service/management/v{4}/`
//! (.NET `SafeguardManagementServiceConnection`), and it carries the
//! disaster-recovery and support operations that answer when core does not
//! (.NET `Service.Management` doc comment). None of the vendor SDKs or
//! scripts names a path under it; the emulator serves `GET ApplianceStatus`
//! (the appliance's status object, as the notification service's `Status`
//! gives it) so that a client can watch the appliance through maintenance.
//! Every other path is the appliance's 404.
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{api_error, bad_method, no_route, one, rest, Ctx};
use crate::state::{now_string, App};

/// Whether the appliance is in maintenance (`Control::set_maintenance`).
pub(crate) fn in_maintenance(app: &App) -> bool {
    app.maintenance.load(std::sync::atomic::Ordering::SeqCst)
}

/// What core, appliance and a2a answer while the appliance is in
/// maintenance: 503 Service Unavailable with the appliance's error body.
/// The status is what a web server answers for a service that is down; the
/// vendor's documents and SDKs give no body for it, so the message is the
/// emulator's own.
pub(crate) fn unavailable() -> Response {
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        50000,
        "The appliance is in maintenance; the service is unavailable.",
    )
}

use axum::response::Response;

/// The appliance's state name: `Maintenance` while in maintenance, else
/// `Online` (values of `ApplianceState` in the notification document).
pub(crate) fn state_name(app: &App) -> &'static str {
    if in_maintenance(app) {
        "Maintenance"
    } else {
        "Online"
    }
}

/// The notification document's `Status` object of cluster member `member`
/// (0 outside a cluster), reflecting maintenance (`ApplianceCurrentState`,
/// `IsMaintenance`) and the member's role: a replica is `IsReplica` and
/// `IsReadOnly` (the administration guide: a replica's configuration is
/// read-only), the primary `IsPrimary`. `IpAddress` is the member's
/// address without its port: every appliance listens on 443, and the
/// emulator's members differ by port only, so a client that finds members
/// by this address must be given the emulator's members (connection.json
/// `spp.members`).
pub(crate) fn status(app: &App, member: usize) -> Value {
    let maintenance = in_maintenance(app);
    let state = state_name(app);
    let (id, name, ip, primary) = {
        let cluster = app.cluster();
        let i = member.min(cluster.members.len().saturating_sub(1));
        match cluster.members.get(i) {
            Some(m) => {
                let ip = m
                    .host
                    .rsplit_once(':')
                    .map_or(m.host.as_str(), |(ip, _)| ip);
                (
                    m.id.clone(),
                    m.name.clone(),
                    ip.to_owned(),
                    i == cluster.leader,
                )
            }
            None => (
                app.appliance_id.clone(),
                "safeguard-emulator".to_owned(),
                "127.0.0.1".to_owned(),
                true,
            ),
        }
    };
    json!({
        "ApplianceCurrentState": state,
        "ApplianceId": id,
        "ApplianceName": name,
        "AppliancePreviousState": "Online",
        "ApplianceVersion": "8.1.0.1",
        "CurrentTime": now_string(),
        "LastStateChangeTime": now_string(),
        "IsIsolated": false, "IsMaintenance": maintenance, "IsPrimary": primary, "IsQuarantine": false,
        "IsReadOnly": !primary, "IsReplica": !primary, "IsSessionsExternal": false,
        "LcdStatus": state, "MaintenanceOperation": "None", "IpAddress": ip,
        "IsVirtual": true, "IsOperatingSystemLicensed": true, "IsCloud": false, "OsPatchLevel": 0,
        "OperatingSystemVersion": "Emulator", "HostDnsSuffix": "", "IsSessionModuleJoined": false,
        "IsStaAccepted": true,
    })
}

/// The `Status` of every member that runs (notification `Status/Cluster`:
/// "the current status of all cluster members"; a stopped member does not
/// answer, so it is not reported).
pub(crate) fn cluster_status(app: &App) -> Value {
    let running: Vec<usize> = {
        let cluster = app.cluster();
        (0..cluster.members.len())
            .filter(|&i| cluster.members[i].running)
            .collect()
    };
    Value::Array(running.into_iter().map(|i| status(app, i)).collect())
}

/// `/service/management/{v3,v4}/...`: anonymous, and answering whether or
/// not the appliance is in maintenance.
pub(crate) async fn handle(ctx: &mut Ctx) -> Response {
    let (_, lower) = rest(ctx, 3);
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (ctx.method().clone(), l.as_slice()) {
        (Method::GET, ["appliancestatus"]) => {
            let v = status(&ctx.app, super::cluster::member(ctx));
            one(ctx, &v)
        }
        (_, ["appliancestatus"]) => bad_method(ctx),
        _ => no_route(ctx),
    }
}
