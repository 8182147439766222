//! The privileged-access workflow of `/service/core/v4/...`, stateful end to
//! end: roles (entitlements) and their members, access policies (scope,
//! approver sets, reviewers, request properties), the requester's views under
//! `Me` (`RequestEntitlements`, `AccessRequestAssets`, `ActionableRequests`,
//! `Roles`) and the access requests themselves (create, approve, deny, check
//! out, check in, close, cancel, acknowledge, review).
//!
//! Shapes, member names and enum values follow core.json (`Role`, `Identity`,
//! `AccessPolicy`, `PolicyScopeItem`, `ApproverSet`, `AccessRequest`,
//! `MeEntitlement`, `PolicyAsset`, `ActionableAccessRequests`, `UserRole`).
//! Event names come from core.json's `EventName` enum; the event bodies
//! follow the vendor's sample `AccessRequestApprovalPendingEvent`
//! (OneIdentity/SafeguardDotNet, Samples/ServiceNowTicketValidator):
//! `RequestId`, `AssetId`, `AssetName`, `AccountId`, `AccountName`,
//! `Requester`, `RequesterId`, `Comment`, `DurationInMinutes`.
//!
//! Which step is allowed in which state follows the vendor's own
//! `Close-SafeguardAccessRequest` (OneIdentity/safeguard-ps, src/requests.psm1):
//! the requester cancels in `New`, `PendingApproval`, `Approved`,
//! `PendingTimeRequested`, `RequestAvailable`, `PendingAccountRestored`,
//! `PendingPasswordReset`; checks in from `PasswordCheckedOut`,
//! `SshKeyCheckedOut`, `SessionInitialized`; closes from `RequestCheckedIn`,
//! `Terminated`; acknowledges `Expired` and `PendingAcknowledgment`;
//! `Closed`, `Complete` and `Reclaimed` are final. Requests start at once
//! (a future `RequestedFor` is recorded, not waited for); once `ExpiresOn`
//! has passed, a pending or available request is `Expired` (see
//! `App::expire_access_requests`); check-in does not rotate the password.

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::core::ssh_key_json;
use super::*;
use crate::state::*;

/// core.json `AccessRequestType`.
const REQUEST_TYPES: [&str; 8] = [
    "Password",
    "RemoteDesktop",
    "Ssh",
    "Telnet",
    "SshKey",
    "RemoteDesktopApplication",
    "ApiKey",
    "File",
];

/// Administrator roles that may read roles and policies (core.json: "Must
/// have PolicyAdmin, ApplicationAuditor or Auditor permission").
const READ_ROLES: [&str; 3] = ["PolicyAdmin", "ApplicationAuditor", "Auditor"];

/// Code of the refusal of a step the request's state does not allow. The
/// vendor's documents and SDKs do not show this code; 90400 is a plausible
/// value next to the documented 90404 (access request not found).
const STATE_ERROR: i64 = 90400;

/// States after which nothing more happens to a request.
const FINAL_STATES: [&str; 3] = ["Closed", "Complete", "Reclaimed"];

/// Whether this module answers the path (lower-cased segments after
/// `core/v4/`); everything else is left to the other core handlers.
pub(crate) fn handles(l: &[&str]) -> bool {
    let numeric = |s: &str| s.parse::<i64>().is_ok();
    match l {
        ["roles"] | ["accesspolicies"] | ["accessrequests"] => true,
        ["roles", id] | ["accesspolicies", id] | ["accessrequests", id] => numeric(id),
        ["roles", id, "members" | "policies"] | ["roles", id, "members", _] => numeric(id),
        ["accesspolicies", id, "approversets" | "scopeitems" | "reviewers"]
        | ["accesspolicies", id, "approversets" | "scopeitems" | "reviewers", _] => numeric(id),
        ["accessrequests", id, action] => {
            numeric(id)
                && [
                    "approve",
                    "deny",
                    "cancel",
                    "checkin",
                    "checkoutpassword",
                    "checkoutsshkey",
                    "close",
                    "acknowledge",
                    "review",
                    "approverset",
                ]
                .contains(action)
        }
        ["me", "requestentitlements" | "accessrequestassets" | "actionablerequests" | "roles"]
        | ["me", "accessrequestassets" | "actionablerequests", _] => true,
        _ => false,
    }
}

/// Answers a path for which [`handles`] is true.
pub(crate) async fn handle(ctx: &mut Ctx, l: &[&str]) -> Response {
    // Requests whose window has passed expire before anyone looks at them.
    ctx.app.expire_access_requests();
    let r = match l {
        ["roles", rest @ ..] => roles(ctx, rest).await,
        ["accesspolicies", rest @ ..] => policies(ctx, rest).await,
        ["accessrequests", rest @ ..] => access_requests(ctx, rest).await,
        ["me", rest @ ..] => me(ctx, rest),
        _ => Err(no_route(ctx)),
    };
    r.unwrap_or_else(|e| e)
}

type Answer = Result<Response, Response>;

// ---------------------------------------------------------------- helpers

fn holds(db: &Db, user: i64, roles: &[&str]) -> bool {
    db.users.get(&user).is_some_and(|u| {
        u["AdminRoles"].as_array().is_some_and(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .any(|r| r == "GlobalAdmin" || roles.contains(&r))
        })
    })
}

fn name_of(db: &Db, user: i64) -> String {
    db.users
        .get(&user)
        .and_then(|u| u["DisplayName"].as_str().or(u["Name"].as_str()))
        .unwrap_or_default()
        .to_string()
}

fn ids_of(v: &Value) -> Vec<i64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x["Id"].as_i64()).collect())
        .unwrap_or_default()
}

fn identities(db: &Db, ids: &[i64]) -> Vec<Value> {
    ids.iter()
        .filter_map(|i| db.users.get(i).map(identity_json))
        .collect()
}

/// `[{Id, PrincipalKind}]` (core.json `Identity`) → user ids. User groups are
/// not modelled, so a group is refused like an unknown identity.
fn parse_identities(db: &Db, v: &Value, field: &str) -> Result<Vec<i64>, Response> {
    let Some(items) = v.as_array() else {
        return Err(validation_error(
            "A JSON array of identities is required.",
            field,
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let Some(id) = item.get("Id").and_then(Value::as_i64) else {
            return Err(validation_error(
                "The Id field is required.",
                &format!("{field}.Id"),
            ));
        };
        let kind = item
            .get("PrincipalKind")
            .and_then(Value::as_str)
            .unwrap_or("User");
        if kind.eq_ignore_ascii_case("Group") || !db.users.contains_key(&id) {
            return Err(bad_request(
                50006,
                &format!("Identity {id} ({kind}) does not exist."),
            ));
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Applies a `ListOperation` path segment (`Add` / `Remove`).
fn apply_op<T: PartialEq + Clone>(
    mut current: Vec<T>,
    items: Vec<T>,
    op: &str,
) -> Result<Vec<T>, String> {
    match op {
        "add" => {
            for i in items {
                if !current.contains(&i) {
                    current.push(i);
                }
            }
            Ok(current)
        }
        "remove" => {
            current.retain(|c| !items.contains(c));
            Ok(current)
        }
        other => Err(other.to_string()),
    }
}

fn bad_operation(op: &str) -> Response {
    bad_request(
        70008,
        &format!(
            "The operation parameter must be a valid enum value ('Add' or 'Remove'), not '{op}'."
        ),
    )
}

fn required_name(body: &Map<String, Value>) -> Result<String, Response> {
    let name = body
        .get("Name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    if name.is_empty() {
        Err(validation_error("The Name field is required.", "Name"))
    } else {
        Ok(name)
    }
}

/// 400 / 60102 when a PUT body names another entity than its URI.
fn check_body_id(body: &Map<String, Value>, id: i64) -> Result<(), Response> {
    match body.get("Id").and_then(Value::as_i64) {
        Some(b) if b != 0 && b != id => Err(bad_request(
            60102,
            "The id value does not match the resource URI.",
        )),
        _ => Ok(()),
    }
}

/// Overlays the members of `src` that `target` already has (objects nested
/// one level, like the policy's `...Properties`).
fn overlay(target: &mut Value, src: &Value) {
    if let (Value::Object(t), Value::Object(s)) = (target, src) {
        for (k, v) in s {
            if let Some(key) = t.keys().find(|x| x.eq_ignore_ascii_case(k)).cloned() {
                t.insert(key, v.clone());
            }
        }
    }
}

fn int(body: &Map<String, Value>, key: &str) -> Option<i64> {
    body.get(key).and_then(Value::as_i64)
}

fn request_type(v: Option<&Value>) -> Result<&'static str, Response> {
    match v {
        None | Some(Value::Null) => Ok("Password"),
        Some(Value::String(s)) => REQUEST_TYPES
            .iter()
            .find(|k| k.eq_ignore_ascii_case(s))
            .copied()
            .ok_or_else(|| {
                validation_error(
                    &format!("'{s}' is not a valid AccessRequestType."),
                    "AccessRequestType",
                )
            }),
        Some(_) => Err(validation_error(
            "AccessRequestType must be a string.",
            "AccessRequestType",
        )),
    }
}

// ---------------------------------------------------- policy scope views

/// An account as core.json `PolicyAccount`.
fn policy_account(acct: &Value) -> Value {
    let mut rp = json!({"AllowPasswordRequest": true, "AllowSessionRequest": false,
        "AllowSshKeyRequest": false, "AllowApiKeyRequest": false, "AllowFileRequest": false});
    overlay(&mut rp, &acct["RequestProperties"]);
    let p = &acct["Platform"];
    json!({
        "Id": acct["Id"], "Name": acct["Name"], "Description": acct["Description"],
        "HasPassword": acct["HasPassword"].as_bool().unwrap_or(false),
        "HasSshKey": acct["HasSshKey"].as_bool().unwrap_or(false),
        "HasTotpAuthenticator": acct["HasTotpAuthenticator"].as_bool().unwrap_or(false),
        "HasApiKeys": acct["HasApiKeys"].as_bool().unwrap_or(false),
        "HasFile": acct["HasFile"].as_bool().unwrap_or(false),
        "DomainName": acct["DomainName"], "DistinguishedName": acct["DistinguishedName"],
        "NetBiosName": Value::Null,
        "Disabled": acct["Disabled"].as_bool().unwrap_or(false),
        "AccountType": "Asset",
        "IsServiceAccount": acct["IsServiceAccount"].as_bool().unwrap_or(false),
        "IsApplicationAccount": acct["IsApplicationAccount"].as_bool().unwrap_or(false),
        "NotifyOwnersOnly": false, "SuspendAccountWhenCheckedIn": false, "DemoteAccountWhenCheckedIn": false,
        "AltLoginName": acct["AltLoginName"], "PrivilegeGroupMembership": Value::Null,
        "LinkedUsersCount": 0,
        "RequestProperties": rp,
        "Platform": {"Id": p["Id"], "PlatformType": p["PlatformType"], "DisplayName": p["DisplayName"],
            "IsAcctNameCaseSensitive": true, "SupportsSessionManagement": true,
            "PlatformFamily": p["PlatformFamily"]},
        "Asset": acct["Asset"],
    })
}

/// An asset as core.json `PolicyAsset`.
fn policy_asset(asset: &Value) -> Value {
    let p = &asset["Platform"];
    json!({
        "Id": asset["Id"], "Name": asset["Name"],
        "AssetType": if asset["IsDirectory"].as_bool().unwrap_or(false) { "Directory" } else { "Asset" },
        "NetworkAddress": asset["NetworkAddress"], "Description": asset["Description"],
        "AssetPartitionId": asset["AssetPartitionId"], "AssetPartitionName": asset["AssetPartitionName"],
        "DomainName": Value::Null,
        "Disabled": asset["Disabled"].as_bool().unwrap_or(false),
        "Platform": {"Id": asset["PlatformId"], "PlatformType": p["PlatformType"],
            "DisplayName": asset["PlatformDisplayName"], "SupportsSessionManagement": true},
        "SshHostKey": {"SshHostKey": Value::Null, "Fingerprint": Value::Null, "FingerprintSha256": Value::Null},
        "SessionAccessProperties": {"AllowSessionRequests": false, "SshSessionPort": 22,
            "RemoteDesktopSessionPort": Value::Null, "TelnetSessionPort": Value::Null},
    })
}

/// A stored `{Id, ScopeItemType}` as core.json `PolicyScopeItem`.
fn render_scope_item(db: &Db, item: &Value) -> Option<Value> {
    let id = item["Id"].as_i64()?;
    match item["ScopeItemType"].as_str()? {
        "Account" => db.accounts.get(&id).map(|a| {
            json!({"Id": id, "Name": a["Name"], "Description": a["Description"],
                "ScopeItemType": "Account", "Account": policy_account(a)})
        }),
        "Asset" => db.assets.get(&id).map(|a| {
            json!({"Id": id, "Name": a["Name"], "Description": a["Description"],
                "ScopeItemType": "Asset", "Asset": policy_asset(a)})
        }),
        _ => None,
    }
}

fn parse_scope_items(db: &Db, v: &Value) -> Result<Vec<Value>, Response> {
    let Some(items) = v.as_array() else {
        return Err(validation_error(
            "A JSON array of scope items is required.",
            "ScopeItems",
        ));
    };
    let mut out = Vec::new();
    for item in items {
        let Some(id) = item.get("Id").and_then(Value::as_i64) else {
            return Err(validation_error(
                "The Id field is required.",
                "ScopeItems.Id",
            ));
        };
        let kind = item
            .get("ScopeItemType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(kind) = ["Asset", "Account", "AssetGroup", "AccountGroup"]
            .into_iter()
            .find(|k| k.eq_ignore_ascii_case(kind))
        else {
            return Err(validation_error(
                &format!("'{kind}' is not a valid ScopeItemType."),
                "ScopeItems.ScopeItemType",
            ));
        };
        // Asset and account groups are not modelled by the emulator.
        let exists = match kind {
            "Account" => db.accounts.contains_key(&id),
            "Asset" => db.assets.contains_key(&id),
            _ => false,
        };
        if !exists {
            return Err(bad_request(50006, &format!("{kind} {id} does not exist.")));
        }
        let v = json!({"Id": id, "ScopeItemType": kind});
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// Stored approver sets: `[{RequiredApprovers, Approvers: [{Id, PrincipalKind}]}]`.
fn parse_approver_sets(db: &Db, v: &Value) -> Result<Vec<Value>, Response> {
    let Some(sets) = v.as_array() else {
        return Err(validation_error(
            "A JSON array of approver sets is required.",
            "ApproverSets",
        ));
    };
    let mut out = Vec::new();
    for set in sets {
        let ids = parse_identities(
            db,
            set.get("Approvers").unwrap_or(&json!([])),
            "ApproverSets.Approvers",
        )?;
        let required = set
            .get("RequiredApprovers")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if required < 1 || required as usize > ids.len() {
            return Err(bad_request(
                50000,
                &format!(
                    "RequiredApprovers ({required}) must be between 1 and the number of approvers in the set ({}).",
                    ids.len()
                ),
            ));
        }
        out.push(json!({"RequiredApprovers": required,
            "Approvers": ids.iter().map(|i| json!({"Id": i, "PrincipalKind": "User"})).collect::<Vec<_>>()}));
    }
    Ok(out)
}

fn render_approver_sets(db: &Db, sets: &Value) -> Vec<Value> {
    sets.as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    json!({"RequiredApprovers": s["RequiredApprovers"],
                    "Approvers": identities(db, &ids_of(&s["Approvers"]))})
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Accounts a policy puts in scope: its accounts, and every account of its assets.
fn policy_accounts(db: &Db, policy: &Value) -> Vec<i64> {
    let mut out = Vec::new();
    for item in policy["ScopeItems"].as_array().into_iter().flatten() {
        let Some(id) = item["Id"].as_i64() else {
            continue;
        };
        match item["ScopeItemType"].as_str() {
            Some("Account") if db.accounts.contains_key(&id) => out.push(id),
            Some("Asset") => out.extend(
                db.accounts
                    .iter()
                    .filter(|(_, a)| a["Asset"]["Id"].as_i64() == Some(id))
                    .map(|(i, _)| *i),
            ),
            _ => {}
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn policy_assets(db: &Db, policy: &Value) -> Vec<i64> {
    let mut out: Vec<i64> = policy_accounts(db, policy)
        .iter()
        .filter_map(|a| db.accounts[a]["Asset"]["Id"].as_i64())
        .collect();
    for item in policy["ScopeItems"].as_array().into_iter().flatten() {
        if item["ScopeItemType"] == "Asset" {
            out.extend(item["Id"].as_i64());
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn count_of(policy: &Value, kind: &str) -> usize {
    policy["ScopeItems"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["ScopeItemType"] == kind).count())
        .unwrap_or(0)
}

/// Whether an entity's `ExpirationDate` (role or policy) has passed.
fn expired(v: &Value) -> bool {
    v["ExpirationDate"]
        .as_str()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        .is_some_and(|e| e <= chrono::Utc::now())
}

fn render_policy(db: &Db, p: &Value) -> Value {
    let mut r = p.clone();
    r["IsExpired"] = json!(expired(p));
    let role = p["RoleId"].as_i64().and_then(|i| db.roles.get(&i));
    r["RoleName"] = role.map(|r| r["Name"].clone()).unwrap_or(Value::Null);
    r["RolePriority"] = role.map(|r| r["Priority"].clone()).unwrap_or(json!(0));
    r["ApproverSets"] = json!(render_approver_sets(db, &p["ApproverSets"]));
    r["Reviewers"] = json!(identities(db, &ids_of(&p["Reviewers"])));
    r["ScopeItems"] = json!(p["ScopeItems"]
        .as_array()
        .map(|a| a
            .iter()
            .filter_map(|i| render_scope_item(db, i))
            .collect::<Vec<_>>())
        .unwrap_or_default());
    r["AccountCount"] = json!(count_of(p, "Account"));
    r["AssetCount"] = json!(count_of(p, "Asset"));
    r["AccountGroupCount"] = json!(0);
    r["AssetGroupCount"] = json!(0);
    r
}

fn render_role(db: &Db, role: &Value) -> Value {
    let mut r = role.clone();
    r["IsExpired"] = json!(expired(role));
    let members = ids_of(&role["Members"]);
    r["Members"] = json!(identities(db, &members));
    let policies: Vec<&Value> = db
        .policies
        .values()
        .filter(|p| p["RoleId"] == role["Id"])
        .collect();
    let mut accounts: Vec<i64> = policies
        .iter()
        .flat_map(|p| policy_accounts(db, p))
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    let mut assets: Vec<i64> = policies.iter().flat_map(|p| policy_assets(db, p)).collect();
    assets.sort_unstable();
    assets.dedup();
    r["HasExpiredPolicies"] = json!(policies.iter().any(|p| expired(p)));
    r["UserCount"] = json!(members.len());
    r["PolicyCount"] = json!(policies.len());
    r["AccountCount"] = json!(accounts.len());
    r["AssetCount"] = json!(assets.len());
    r
}

// ------------------------------------------------------------------ roles

fn role_event(ctx: &Ctx, name: &str, role: &Value, by: i64) {
    let by_name = name_of(&ctx.app.db(), by);
    ctx.app.emit(
        name,
        json!({"RoleId": role["Id"], "RoleName": role["Name"], "EventUserId": by,
               "EventUserDisplayName": by_name}),
        None,
    );
}

async fn roles(ctx: &mut Ctx, l: &[&str]) -> Answer {
    let m = ctx.method().clone();
    let Some((id, rest)) = l.split_first() else {
        return match m {
            Method::GET => {
                ctx.admin(&READ_ROLES)?;
                let db = ctx.app.db();
                let items = db.roles.values().map(|r| render_role(&db, r)).collect();
                drop(db);
                Ok(list(ctx, items))
            }
            Method::POST => save_role(ctx, None).await,
            _ => Ok(bad_method(ctx)),
        };
    };
    let id = parse_id(ctx, id)?;
    match (m, rest) {
        (Method::GET, []) => {
            ctx.admin(&READ_ROLES)?;
            let v = {
                let db = ctx.app.db();
                db.roles.get(&id).map(|r| render_role(&db, r))
            };
            match v {
                Some(v) => Ok(one(ctx, &v)),
                None => Err(not_found("role", &id.to_string())),
            }
        }
        (Method::PUT, []) => save_role(ctx, Some(id)).await,
        (Method::DELETE, []) => {
            let by = ctx.admin(&["PolicyAdmin"])?;
            let mut db = ctx.app.db();
            let Some(role) = db.roles.remove(&id) else {
                return Err(not_found("role", &id.to_string()));
            };
            // The role's policies go with it.
            db.policies.retain(|_, p| p["RoleId"].as_i64() != Some(id));
            drop(db);
            role_event(ctx, "RoleDeleted", &role, by);
            Ok(no_content())
        }
        (_, []) => Ok(bad_method(ctx)),
        (Method::GET, ["members"]) => {
            ctx.admin(&READ_ROLES)?;
            let items = {
                let db = ctx.app.db();
                let role = db
                    .roles
                    .get(&id)
                    .ok_or_else(|| not_found("role", &id.to_string()))?;
                identities(&db, &ids_of(&role["Members"]))
            };
            Ok(list(ctx, items))
        }
        (Method::PUT, ["members"]) | (Method::POST, ["members", _]) => {
            let by = ctx.admin(&["PolicyAdmin"])?;
            let body = ctx.json().await?;
            let mut db = ctx.app.db();
            let Some(role) = db.roles.get(&id) else {
                return Err(not_found("role", &id.to_string()));
            };
            let current = ids_of(&role["Members"]);
            let items = parse_identities(&db, &body, "body")?;
            let members = match rest {
                [_, op] => apply_op(current, items, op).map_err(|op| bad_operation(&op))?,
                _ => items,
            };
            let rendered = identities(&db, &members);
            let Some(role) = db.roles.get_mut(&id) else {
                return Err(not_found("role", &id.to_string()));
            };
            role["Members"] = json!(rendered);
            let role = role.clone();
            drop(db);
            role_event(ctx, "RoleMembershipUpdated", &role, by);
            Ok(ok(&json!(rendered)))
        }
        (_, ["members"]) | (_, ["members", _]) => Ok(bad_method(ctx)),
        (Method::GET, ["policies"]) => {
            ctx.admin(&READ_ROLES)?;
            let items = {
                let db = ctx.app.db();
                if !db.roles.contains_key(&id) {
                    return Err(not_found("role", &id.to_string()));
                }
                db.policies
                    .values()
                    .filter(|p| p["RoleId"].as_i64() == Some(id))
                    .map(|p| render_policy(&db, p))
                    .collect()
            };
            Ok(list(ctx, items))
        }
        (_, ["policies"]) => Ok(bad_method(ctx)),
        _ => Err(no_route(ctx)),
    }
}

/// POST `Roles` (`id` = None) or PUT `Roles/{id}`.
async fn save_role(ctx: &mut Ctx, id: Option<i64>) -> Answer {
    let by = ctx.admin(&["PolicyAdmin"])?;
    let body = ctx.json_object().await?;
    if let Some(id) = id {
        check_body_id(&body, id)?;
    }
    let name = required_name(&body)?;
    let mut db = ctx.app.db();
    if db.roles.values().any(|r| {
        r["Id"].as_i64() != id
            && r["Name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
    }) {
        return Err(bad_request(
            50002,
            &format!("A role with the name '{name}' already exists."),
        ));
    }
    let members = match body.get("Members") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_identities(&db, v, "Members")?),
    };
    let (id, mut role) = match id {
        Some(id) => match db.roles.get(&id) {
            Some(r) => (id, r.clone()),
            None => return Err(not_found("role", &id.to_string())),
        },
        None => {
            let id = db.id();
            let priority = db
                .roles
                .values()
                .filter_map(|r| r["Priority"].as_i64())
                .max()
                .unwrap_or(0)
                + 1;
            let by_name = name_of(&db, by);
            (
                id,
                new_role(id, &name, priority, Vec::new(), (by, &by_name)),
            )
        }
    };
    role["Name"] = json!(name);
    for key in ["Description", "ExpirationDate"] {
        if let Some(v) = body.get(key) {
            role[key] = v.clone();
        }
    }
    if let Some(p) = int(&body, "Priority").filter(|p| *p > 0) {
        role["Priority"] = json!(p);
    }
    if let Some(h) = body.get("HourlyRestrictionProperties") {
        overlay(&mut role["HourlyRestrictionProperties"], h);
    }
    if let Some(m) = members {
        role["Members"] = json!(identities(&db, &m));
    }
    let created = !db.roles.contains_key(&id);
    db.roles.insert(id, role.clone());
    let v = render_role(&db, &role);
    drop(db);
    role_event(
        ctx,
        if created {
            "RoleCreated"
        } else {
            "RoleUpdated"
        },
        &role,
        by,
    );
    Ok(json_response(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &v,
    ))
}

// --------------------------------------------------------------- policies

fn policy_event(ctx: &Ctx, name: &str, policy: &Value, by: i64) {
    let by_name = name_of(&ctx.app.db(), by);
    ctx.app.emit(
        name,
        json!({"PolicyId": policy["Id"], "PolicyName": policy["Name"], "RoleId": policy["RoleId"],
               "EventUserId": by, "EventUserDisplayName": by_name}),
        None,
    );
}

async fn policies(ctx: &mut Ctx, l: &[&str]) -> Answer {
    let m = ctx.method().clone();
    let Some((id, rest)) = l.split_first() else {
        return match m {
            Method::GET => {
                ctx.admin(&READ_ROLES)?;
                let db = ctx.app.db();
                let items = db
                    .policies
                    .values()
                    .map(|p| render_policy(&db, p))
                    .collect();
                drop(db);
                Ok(list(ctx, items))
            }
            Method::POST => save_policy(ctx, None).await,
            _ => Ok(bad_method(ctx)),
        };
    };
    let id = parse_id(ctx, id)?;
    match (m, rest) {
        (Method::GET, []) => {
            ctx.admin(&READ_ROLES)?;
            let v = {
                let db = ctx.app.db();
                db.policies.get(&id).map(|p| render_policy(&db, p))
            };
            match v {
                Some(v) => Ok(one(ctx, &v)),
                None => Err(not_found("access policy", &id.to_string())),
            }
        }
        (Method::PUT, []) => save_policy(ctx, Some(id)).await,
        (Method::DELETE, []) => {
            let by = ctx.admin(&["PolicyAdmin"])?;
            let removed = ctx.app.db().policies.remove(&id);
            match removed {
                Some(p) => {
                    policy_event(ctx, "AccessPolicyDeleted", &p, by);
                    Ok(no_content())
                }
                None => Err(not_found("access policy", &id.to_string())),
            }
        }
        (_, []) => Ok(bad_method(ctx)),
        (Method::GET, [sub]) => {
            ctx.admin(&READ_ROLES)?;
            let db = ctx.app.db();
            let p = db
                .policies
                .get(&id)
                .map(|p| render_policy(&db, p))
                .ok_or_else(|| not_found("access policy", &id.to_string()))?;
            drop(db);
            let key = sub_key(sub);
            Ok(list(ctx, p[key].as_array().cloned().unwrap_or_default()))
        }
        (Method::PUT, [sub]) | (Method::POST, [sub, _]) => {
            let by = ctx.admin(&["PolicyAdmin"])?;
            let body = ctx.json().await?;
            let key = sub_key(sub);
            let mut db = ctx.app.db();
            let Some(policy) = db.policies.get(&id) else {
                return Err(not_found("access policy", &id.to_string()));
            };
            let current: Vec<Value> = policy[key].as_array().cloned().unwrap_or_default();
            let items = match key {
                "ScopeItems" => parse_scope_items(&db, &body)?,
                "ApproverSets" => parse_approver_sets(&db, &body)?,
                _ => parse_identities(&db, &body, "body")?
                    .into_iter()
                    .map(|i| json!({"Id": i, "PrincipalKind": "User"}))
                    .collect(),
            };
            let new = match rest {
                [_, op] => apply_op(current, items, op).map_err(|op| bad_operation(&op))?,
                _ => items,
            };
            let Some(policy) = db.policies.get_mut(&id) else {
                return Err(not_found("access policy", &id.to_string()));
            };
            policy[key] = json!(new);
            let policy = policy.clone();
            let answer = render_policy(&db, &policy)[key].clone();
            drop(db);
            policy_event(
                ctx,
                if key == "ScopeItems" {
                    "PolicyScopeItemsUpdated"
                } else {
                    "AccessPolicyUpdated"
                },
                &policy,
                by,
            );
            Ok(ok(&answer))
        }
        (_, [_]) | (_, [_, _]) => Ok(bad_method(ctx)),
        _ => Err(no_route(ctx)),
    }
}

fn sub_key(sub: &str) -> &'static str {
    match sub {
        "scopeitems" => "ScopeItems",
        "approversets" => "ApproverSets",
        _ => "Reviewers",
    }
}

/// POST `AccessPolicies` (`id` = None) or PUT `AccessPolicies/{id}`.
async fn save_policy(ctx: &mut Ctx, id: Option<i64>) -> Answer {
    let by = ctx.admin(&["PolicyAdmin"])?;
    let body = ctx.json_object().await?;
    if let Some(id) = id {
        check_body_id(&body, id)?;
    }
    let name = required_name(&body)?;
    let mut db = ctx.app.db();
    let existing = match id {
        Some(id) => Some(
            db.policies
                .get(&id)
                .cloned()
                .ok_or_else(|| not_found("access policy", &id.to_string()))?,
        ),
        None => None,
    };
    let role_id = match (int(&body, "RoleId"), &existing) {
        (Some(r), _) => r,
        (None, Some(p)) => p["RoleId"].as_i64().unwrap_or_default(),
        (None, None) => return Err(validation_error("The RoleId field is required.", "RoleId")),
    };
    if !db.roles.contains_key(&role_id) {
        return Err(bad_request(
            50006,
            &format!("Role {role_id} does not exist."),
        ));
    }
    if db.policies.values().any(|p| {
        p["Id"].as_i64() != id
            && p["RoleId"].as_i64() == Some(role_id)
            && p["Name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
    }) {
        return Err(bad_request(
            50002,
            &format!("An access policy with the name '{name}' already exists in this role."),
        ));
    }
    if let Some(t) = body
        .get("AccessRequestProperties")
        .and_then(|p| p.get("AccessRequestType"))
    {
        request_type(Some(t))?;
    }
    let scope = body
        .get("ScopeItems")
        .filter(|v| !v.is_null())
        .map(|v| parse_scope_items(&db, v))
        .transpose()?;
    let sets = body
        .get("ApproverSets")
        .filter(|v| !v.is_null())
        .map(|v| parse_approver_sets(&db, v))
        .transpose()?;
    let reviewers = body
        .get("Reviewers")
        .filter(|v| !v.is_null())
        .map(|v| parse_identities(&db, v, "Reviewers"))
        .transpose()?;
    let (id, mut policy) = match existing {
        Some(p) => (p["Id"].as_i64().unwrap_or_default(), p),
        None => {
            let id = db.id();
            let priority = db
                .policies
                .values()
                .filter(|p| p["RoleId"].as_i64() == Some(role_id))
                .filter_map(|p| p["Priority"].as_i64())
                .max()
                .unwrap_or(0)
                + 1;
            let by_name = name_of(&db, by);
            (
                id,
                new_access_policy(id, &name, role_id, priority, (by, &by_name)),
            )
        }
    };
    policy["Name"] = json!(name);
    policy["RoleId"] = json!(role_id);
    for key in [
        "Description",
        "ExpirationDate",
        "NotificationContacts",
        "ReasonCodes",
    ] {
        if let Some(v) = body.get(key) {
            policy[key] = if v.is_null() && key.ends_with('s') {
                json!([])
            } else {
                v.clone()
            };
        }
    }
    if let Some(p) = int(&body, "Priority").filter(|p| *p > 0) {
        policy["Priority"] = json!(p);
    }
    for key in [
        "RequesterProperties",
        "ApproverProperties",
        "ReviewerProperties",
        "AccessRequestProperties",
        "SessionProperties",
        "EmergencyAccessProperties",
        "HourlyRestrictionProperties",
    ] {
        if let Some(v) = body.get(key) {
            overlay(&mut policy[key], v);
        }
    }
    if let Some(t) = policy["AccessRequestProperties"]
        .get("AccessRequestType")
        .cloned()
    {
        policy["AccessRequestProperties"]["AccessRequestType"] = json!(request_type(Some(&t))?);
    }
    if let Some(s) = scope {
        policy["ScopeItems"] = json!(s);
    }
    if let Some(s) = sets {
        policy["ApproverSets"] = json!(s);
    }
    if let Some(r) = reviewers {
        policy["Reviewers"] = json!(r
            .iter()
            .map(|i| json!({"Id": i, "PrincipalKind": "User"}))
            .collect::<Vec<_>>());
    }
    let created = !db.policies.contains_key(&id);
    db.policies.insert(id, policy.clone());
    let v = render_policy(&db, &policy);
    drop(db);
    policy_event(
        ctx,
        if created {
            "AccessPolicyCreated"
        } else {
            "AccessPolicyUpdated"
        },
        &policy,
        by,
    );
    Ok(json_response(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &v,
    ))
}

// ----------------------------------------------------------- entitlements

/// Whether the account's `RequestProperties` allow requests of this type.
fn account_allows(acct: &Value, kind: &str) -> bool {
    let rp = &acct["RequestProperties"];
    let flag = match kind {
        "Password" => "AllowPasswordRequest",
        "SshKey" => "AllowSshKeyRequest",
        "ApiKey" => "AllowApiKeyRequest",
        "File" => "AllowFileRequest",
        _ => "AllowSessionRequest",
    };
    let default = kind == "Password";
    !acct["Disabled"].as_bool().unwrap_or(false) && rp[flag].as_bool().unwrap_or(default)
}

/// What `user` may request: `(policy id, account id)` pairs, the winning
/// policy first (lower role priority, then lower policy priority).
fn entitlements(db: &Db, user: i64) -> Vec<(i64, i64)> {
    let mut policies: Vec<(&Value, &Value)> = db
        .policies
        .values()
        .filter_map(|p| {
            let role = db.roles.get(&p["RoleId"].as_i64()?)?;
            // An expired role or policy grants nothing.
            (ids_of(&role["Members"]).contains(&user) && !expired(role) && !expired(p))
                .then_some((role, p))
        })
        .collect();
    policies.sort_by_key(|(r, p)| {
        (
            r["Priority"].as_i64().unwrap_or(i64::MAX),
            p["Priority"].as_i64().unwrap_or(i64::MAX),
            p["Id"].as_i64(),
        )
    });
    let mut out = Vec::new();
    for (_, p) in policies {
        let kind = p["AccessRequestProperties"]["AccessRequestType"]
            .as_str()
            .unwrap_or("Password");
        for a in policy_accounts(db, p) {
            if account_allows(&db.accounts[&a], kind) {
                out.extend(p["Id"].as_i64().map(|pid| (pid, a)));
            }
        }
    }
    out
}

fn is_open(req: &Value) -> bool {
    !FINAL_STATES.contains(&req["State"].as_str().unwrap_or_default())
}

fn active_request(req: &Value, viewer: i64) -> Value {
    json!({
        "RequestId": req["Id"], "RequesterFullDisplayName": req["RequesterDisplayName"],
        "RequesterPseudoId": req["RequesterId"], "IsMyRequest": req["RequesterId"].as_i64() == Some(viewer),
        "AssetId": req["AssetId"], "AccessRequestType": req["AccessRequestType"],
        "IsEmergency": req["IsEmergency"], "RequestedFor": req["RequestedFor"], "ExpiresOn": req["ExpiresOn"],
        "RequestAvailability": req["RequestAvailability"], "State": req["State"],
        "StateChangedOn": req["StateChangedOn"],
    })
}

fn me_entitlement(db: &Db, policy: &Value, acct: &Value, active: Vec<Value>) -> Value {
    let rp = policy_account(acct)["RequestProperties"].clone();
    let asset = acct["Asset"]["Id"]
        .as_i64()
        .and_then(|i| db.assets.get(&i))
        .cloned()
        .unwrap_or(Value::Null);
    let role = policy["RoleId"].as_i64().and_then(|i| db.roles.get(&i));
    let expires = if policy["ExpirationDate"].is_null() {
        role.map(|r| r["ExpirationDate"].clone())
            .unwrap_or(Value::Null)
    } else {
        policy["ExpirationDate"].clone()
    };
    json!({
        "Account": {
            "Id": acct["Id"], "Name": acct["Name"], "DomainName": acct["DomainName"],
            "Description": acct["Description"],
            "HasPassword": acct["HasPassword"].as_bool().unwrap_or(false),
            "HasSshKey": acct["HasSshKey"].as_bool().unwrap_or(false),
            "HasApiKey": acct["HasApiKeys"].as_bool().unwrap_or(false),
            "HasFile": acct["HasFile"].as_bool().unwrap_or(false),
            "Disabled": acct["Disabled"].as_bool().unwrap_or(false),
            "AssetId": acct["Asset"]["Id"], "AssetName": acct["Asset"]["Name"],
            "AssetNetworkAddress": acct["Asset"]["NetworkAddress"],
            "AllowPasswordRequest": rp["AllowPasswordRequest"], "AllowSessionRequest": rp["AllowSessionRequest"],
            "AllowSshKeyRequest": rp["AllowSshKeyRequest"], "AllowApiKeyRequest": rp["AllowApiKeyRequest"],
            "AllowFileRequest": rp["AllowFileRequest"], "Tags": [],
        },
        "Asset": {
            "Id": asset["Id"], "Name": asset["Name"], "DomainName": Value::Null,
            "Description": asset["Description"], "NetworkAddress": asset["NetworkAddress"],
            "PlatformDisplayName": asset["PlatformDisplayName"], "PlatformType": asset["Platform"]["PlatformType"],
            "Tags": [],
        },
        "Policy": {
            "Id": policy["Id"], "Name": policy["Name"], "Priority": policy["Priority"],
            "RolePriority": role.map(|r| r["Priority"].clone()).unwrap_or(json!(0)),
            "RequesterProperties": policy["RequesterProperties"],
            "EmergencyAccessProperties": policy["EmergencyAccessProperties"],
            "AccessRequestProperties": policy["AccessRequestProperties"],
            "EffectiveExpirationDate": expires,
            "EffectiveHourlyRestrictionProperties": policy["HourlyRestrictionProperties"],
            "ReasonCodes": policy["ReasonCodes"],
        },
        "ActiveRequests": active,
    })
}

fn id_list(ctx: &Ctx, name: &str) -> Result<Option<Vec<i64>>, Response> {
    let Some(raw) = ctx
        .q(&name.to_ascii_lowercase())
        .filter(|s| !s.trim().is_empty())
    else {
        return Ok(None);
    };
    raw.split(',')
        .map(|s| s.trim().parse::<i64>())
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|_| {
            validation_error(
                &format!("The value '{raw}' is not a valid list of ids."),
                name,
            )
        })
}

fn me(ctx: &mut Ctx, l: &[&str]) -> Answer {
    let user = ctx.user()?;
    match l {
        ["requestentitlements"] => {
            let kind = match ctx.q("accessrequesttype") {
                None => None,
                Some(t) => Some(
                    REQUEST_TYPES
                        .iter()
                        .find(|k| k.eq_ignore_ascii_case(t))
                        .ok_or_else(|| {
                            bad_request(
                                70008,
                                "The accessRequestType parameter must be a valid enum value.",
                            )
                        })?,
                ),
            };
            let assets = id_list(ctx, "assetIds")?;
            let accounts = id_list(ctx, "accountIds")?;
            let include = ctx
                .q("includeactiverequests")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let items = {
                let db = ctx.app.db();
                entitlements(&db, user)
                    .into_iter()
                    .filter_map(|(p, a)| {
                        let policy = &db.policies[&p];
                        let acct = &db.accounts[&a];
                        let pk = policy["AccessRequestProperties"]["AccessRequestType"].as_str();
                        let asset = acct["Asset"]["Id"].as_i64().unwrap_or_default();
                        let keep = kind.is_none_or(|k| pk == Some(*k))
                            && assets.as_ref().is_none_or(|s| s.contains(&asset))
                            && accounts.as_ref().is_none_or(|s| s.contains(&a));
                        keep.then(|| {
                            let active = if include {
                                db.access_requests
                                    .values()
                                    .filter(|r| r["AccountId"].as_i64() == Some(a) && is_open(r))
                                    .map(|r| active_request(r, user))
                                    .collect()
                            } else {
                                Vec::new()
                            };
                            me_entitlement(&db, policy, acct, active)
                        })
                    })
                    .collect()
            };
            Ok(list(ctx, items))
        }
        ["accessrequestassets", rest @ ..] => {
            let assets: Vec<Value> = {
                let db = ctx.app.db();
                let mut ids: Vec<i64> = entitlements(&db, user)
                    .into_iter()
                    .filter_map(|(_, a)| db.accounts[&a]["Asset"]["Id"].as_i64())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids.iter()
                    .filter_map(|i| db.assets.get(i))
                    .map(policy_asset)
                    .collect()
            };
            match rest {
                [] => Ok(list(ctx, assets)),
                [id] => {
                    let id = parse_id(ctx, id)?;
                    match assets.iter().find(|a| a["Id"].as_i64() == Some(id)) {
                        Some(a) => Ok(one(ctx, a)),
                        None => Err(not_found("requestable asset", &id.to_string())),
                    }
                }
                _ => Err(no_route(ctx)),
            }
        }
        ["actionablerequests", rest @ ..] => {
            let buckets = actionable(&ctx.app.db(), user);
            match rest {
                [] => Ok(ok(&buckets)),
                [role] => {
                    let Some(key) = ["Requester", "Approver", "Reviewer", "Admin"]
                        .into_iter()
                        .find(|k| k.eq_ignore_ascii_case(role))
                    else {
                        return Err(bad_request(
                            70008,
                            "The accessRequestRole parameter must be a valid enum value.",
                        ));
                    };
                    Ok(list(
                        ctx,
                        buckets[key].as_array().cloned().unwrap_or_default(),
                    ))
                }
                _ => Err(no_route(ctx)),
            }
        }
        ["roles"] => {
            let items = {
                let db = ctx.app.db();
                db.roles
                    .values()
                    .filter(|r| ids_of(&r["Members"]).contains(&user))
                    .map(|r| {
                        let full = render_role(&db, r);
                        json!({"Id": r["Id"], "Name": r["Name"], "AccountCount": full["AccountCount"],
                            "UserCount": full["UserCount"], "PolicyCount": full["PolicyCount"],
                            "Membership": [{"RoleMemberId": user, "RoleMemberDisplayName": name_of(&db, user),
                                "RoleMemberIsUserGroup": false}]})
                    })
                    .collect()
            };
            Ok(list(ctx, items))
        }
        _ => Err(no_route(ctx)),
    }
}

/// core.json `ActionableAccessRequests` for `user`.
fn actionable(db: &Db, user: i64) -> Value {
    let admin = holds(db, user, &["PolicyAdmin"]);
    let (mut requester, mut approver, mut reviewer, mut admin_list) =
        (vec![], vec![], vec![], vec![]);
    for req in db.access_requests.values() {
        let rel = Relation::of(db, req, user);
        let state = req["State"].as_str().unwrap_or_default();
        if rel.requester && is_open(req) {
            requester.push(view(req, user));
        }
        if rel.approver
            && !rel.requester
            && state == "PendingApproval"
            && !acted(req, "ApproveRequest", user)
        {
            approver.push(view(req, user));
        }
        if rel.reviewer
            && !rel.requester
            && state == "PendingReview"
            && !acted(req, "ReviewRequest", user)
        {
            reviewer.push(view(req, user));
        }
        if admin && state == "PendingReview" {
            admin_list.push(view(req, user));
        }
    }
    json!({"Admin": admin_list, "Approver": approver, "Requester": requester, "Reviewer": reviewer})
}

// -------------------------------------------------------- access requests

/// How a user stands to a request.
struct Relation {
    requester: bool,
    approver: bool,
    reviewer: bool,
    /// PolicyAdmin (or GlobalAdmin).
    admin: bool,
    /// Auditor (reads every request).
    auditor: bool,
}

impl Relation {
    fn of(db: &Db, req: &Value, user: i64) -> Relation {
        let policy = req["PolicyId"].as_i64().and_then(|p| db.policies.get(&p));
        let approver = policy.is_some_and(|p| {
            p["ApproverSets"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|set| ids_of(&set["Approvers"]).contains(&user))
            })
        });
        let reviewer = policy.is_some_and(|p| ids_of(&p["Reviewers"]).contains(&user));
        Relation {
            requester: req["RequesterId"].as_i64() == Some(user),
            approver,
            reviewer,
            admin: holds(db, user, &["PolicyAdmin"]),
            auditor: holds(db, user, &["Auditor", "ApplicationAuditor"]),
        }
    }

    fn sees(&self) -> bool {
        self.requester || self.approver || self.reviewer || self.admin || self.auditor
    }
}

/// Whether `user` already took `action` on the request.
fn acted(req: &Value, action: &str, user: i64) -> bool {
    req["WorkflowActions"].as_array().is_some_and(|a| {
        a.iter()
            .any(|w| w["ActionType"] == action && w["User"]["Id"].as_i64() == Some(user))
    })
}

/// The request as `viewer` sees it (`ApprovedByMe`).
fn view(req: &Value, viewer: i64) -> Value {
    let mut v = req.clone();
    v["ApprovedByMe"] = json!(acted(req, "ApproveRequest", viewer));
    v
}

/// 404 / 90404, as the appliance answers for an unknown access request
/// (seen in OneIdentity/safeguard-ps issue #181: "90404: Access request ...
/// was not found").
fn request_not_found(id: i64) -> Response {
    api_error(
        StatusCode::NOT_FOUND,
        90404,
        &format!("Access request {id} was not found."),
    )
}

/// 400 for a step the request's state does not allow (code: see [`STATE_ERROR`]).
fn state_error(req: &Value, step: &str) -> Response {
    bad_request(
        STATE_ERROR,
        &format!(
            "Access request {} is in the {} state and cannot be {step}.",
            req["Id"].as_str().unwrap_or_default(),
            req["State"].as_str().unwrap_or_default()
        ),
    )
}

/// 403 with the documented reason (core.json's 403 descriptions).
fn forbidden(message: &str) -> Response {
    api_error(StatusCode::FORBIDDEN, 60101, message)
}

/// Records a workflow action and moves the request to `new_state`.
fn transition(
    db: &mut Db,
    id: i64,
    action: &str,
    new_state: &str,
    by: i64,
    comment: Option<&str>,
) -> Value {
    let who = db.users.get(&by).map(identity_json).unwrap_or(Value::Null);
    let Some(r) = db.access_requests.get_mut(&id) else {
        return Value::Null;
    };
    let now = now_string();
    let entry = json!({"ActionType": action, "Comment": comment, "NewState": new_state,
        "OccurredOn": now, "OldState": r["State"], "User": who, "SessionId": Value::Null});
    if let Some(a) = r["WorkflowActions"].as_array_mut() {
        a.push(entry);
    }
    if r["State"] != new_state {
        r["State"] = json!(new_state);
        r["StateChangedOn"] = json!(now);
    }
    r.clone()
}

fn request_event(ctx: &Ctx, name: &str, req: &Value, by: i64, comment: Option<&str>) {
    let by_name = name_of(&ctx.app.db(), by);
    ctx.app.emit(
        name,
        json!({"RequestId": req["Id"], "AssetId": req["AssetId"], "AssetName": req["AssetName"],
            "AccountId": req["AccountId"], "AccountName": req["AccountName"],
            "Requester": req["RequesterDisplayName"], "RequesterId": req["RequesterId"],
            "Comment": comment.map(Value::from).unwrap_or_else(|| req["ReasonComment"].clone()),
            "DurationInMinutes": req["DurationInMinutes"], "AccessRequestType": req["AccessRequestType"],
            "State": req["State"], "EventUserId": by, "EventUserDisplayName": by_name}),
        None,
    );
}

/// Resolves the requested account from `AccountId`, or `AccountName` with
/// `AssetId` / `AssetName` (the A2A broker's `BrokeredAccessRequest`).
fn requested_account(db: &Db, body: &Map<String, Value>) -> Result<i64, Response> {
    if let Some(id) = int(body, "AccountId") {
        return if db.accounts.contains_key(&id) {
            Ok(id)
        } else {
            Err(bad_request(50006, &format!("Account {id} does not exist.")))
        };
    }
    let Some(name) = body.get("AccountName").and_then(Value::as_str) else {
        return Err(validation_error(
            "AccountId (or AccountName) is required.",
            "AccountId",
        ));
    };
    let asset_name = body.get("AssetName").and_then(Value::as_str);
    let asset_id = int(body, "AssetId");
    db.accounts
        .values()
        .find(|a| {
            a["Name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
                && asset_id.is_none_or(|i| a["Asset"]["Id"].as_i64() == Some(i))
                && asset_name.is_none_or(|n| {
                    a["Asset"]["Name"]
                        .as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(n))
                })
        })
        .and_then(|a| a["Id"].as_i64())
        .ok_or_else(|| bad_request(50006, &format!("Account '{name}' does not exist.")))
}

fn minutes(v: &Value, prefix: &str) -> i64 {
    let get = |unit: &str| v[format!("{prefix}{unit}")].as_i64().unwrap_or(0);
    get("Days") * 1440 + get("Hours") * 60 + get("Minutes")
}

/// Creates an access request (core `POST AccessRequests`, or brokered through
/// A2A): allowed only when a policy of one of the requester's roles puts the
/// account in scope for this request type.
pub(crate) fn create_access_request(
    ctx: &Ctx,
    requester: i64,
    body: &Map<String, Value>,
) -> Result<Value, Response> {
    let mut db = ctx.app.db();
    let acct_id = requested_account(&db, body)?;
    let kind = request_type(body.get("AccessRequestType"))?;
    let Some(user) = db.users.get(&requester).cloned() else {
        return Err(bad_request(50006, "The requester does not exist."));
    };
    let policy = entitlements(&db, requester)
        .into_iter()
        .filter(|(_, a)| *a == acct_id)
        .map(|(p, _)| &db.policies[&p])
        .find(|p| p["AccessRequestProperties"]["AccessRequestType"] == kind)
        .cloned();
    let Some(policy) = policy else {
        return Err(forbidden(
            "Must have been granted rights by an access policy to make the request.",
        ));
    };
    let acct = db.accounts[&acct_id].clone();
    let rp = &policy["RequesterProperties"];
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    if rp["RequireReasonComment"].as_bool() == Some(true) && text("ReasonComment").is_none() {
        return Err(validation_error(
            "The access policy requires a reason comment.",
            "ReasonComment",
        ));
    }
    if rp["RequireServiceTicket"].as_bool() == Some(true) && text("TicketNumber").is_none() {
        return Err(validation_error(
            "The access policy requires a ticket number.",
            "TicketNumber",
        ));
    }
    let reason_code = match int(body, "ReasonCodeId") {
        Some(rc) => Some(
            policy["ReasonCodes"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["Id"].as_i64() == Some(rc)).cloned())
                .ok_or_else(|| {
                    bad_request(
                        50006,
                        &format!("Reason code {rc} does not exist for this policy."),
                    )
                })?,
        ),
        None if rp["RequireReasonCode"].as_bool() == Some(true) => {
            return Err(validation_error(
                "The access policy requires a reason code.",
                "ReasonCodeId",
            ))
        }
        None => None,
    };
    let body_value = Value::Object(body.clone());
    let requested = minutes(&body_value, "RequestedDuration");
    let default = minutes(rp, "DefaultReleaseDuration");
    let max = minutes(rp, "MaximumReleaseDuration");
    if requested > 31 * 1440 {
        return Err(validation_error(
            "The sum of Requested Days/Hours/Minutes must not exceed 31 days.",
            "RequestedDurationDays",
        ));
    }
    let custom = rp["AllowCustomDuration"].as_bool().unwrap_or(false);
    let duration = match (requested > 0 && custom, default > 0) {
        (true, _) => requested,
        (false, true) => default,
        (false, false) => 120,
    };
    if max > 0 && duration > max {
        return Err(bad_request(
            50000,
            &format!("The requested duration ({duration} minutes) exceeds the maximum the access policy allows ({max} minutes)."),
        ));
    }
    // "Emergency Access overrides the Approver requirements" (SPP user guide,
    // access request policy, Requester tab), when the policy allows it.
    let emergency = body
        .get("IsEmergency")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if emergency
        && policy["EmergencyAccessProperties"]["AllowEmergencyAccess"].as_bool() != Some(true)
    {
        return Err(bad_request(
            50000,
            "The access policy does not allow emergency access.",
        ));
    }
    let sets = policy["ApproverSets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let required = if emergency {
        0
    } else if policy["ApproverProperties"]["RequireApproval"].as_bool() == Some(true) {
        sets.iter()
            .filter_map(|s| s["RequiredApprovers"].as_i64())
            .sum()
    } else {
        0
    };
    let reviewers = ids_of(&policy["Reviewers"]).len() as i64;
    let required_reviews = if reviewers > 0 {
        policy["ReviewerProperties"]["RequiredReviewers"]
            .as_i64()
            .unwrap_or(1)
            .clamp(1, reviewers)
    } else {
        0
    };
    let asset = acct["Asset"]["Id"]
        .as_i64()
        .and_then(|i| db.assets.get(&i))
        .cloned()
        .unwrap_or(Value::Null);
    let account_request_type = match kind {
        "Password" => "LocalPassword",
        "SshKey" => "SshKey",
        "ApiKey" => "ApiKey",
        "File" => "File",
        _ => "LocalSession",
    };
    let now = chrono::Utc::now();
    let stamp =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let expires = stamp(now + chrono::Duration::minutes(duration));
    let id = db.id();
    let state = if required > 0 {
        "PendingApproval"
    } else {
        "RequestAvailable"
    };
    let arp = &policy["AccessRequestProperties"];
    let mut req = json!({
        "AccessRequestType": kind,
        "AccountId": acct_id,
        "AccountName": acct["Name"],
        "AccountDomainName": acct["DomainName"],
        "AccountAssetId": acct["Asset"]["Id"],
        "AccountAssetName": acct["Asset"]["Name"],
        "AccountHasTotpAuthenticator": acct["HasTotpAuthenticator"].as_bool().unwrap_or(false),
        "AccountRequestType": account_request_type,
        "ApprovedByMe": false,
        "AssetId": acct["Asset"]["Id"],
        "AssetName": acct["Asset"]["Name"],
        "AssetNetworkAddress": acct["Asset"]["NetworkAddress"],
        "AssetSshHostKey": Value::Null,
        "AssetSshHostKeyFingerprint": Value::Null,
        "AssetSshHostKeyFingerprintSha256": Value::Null,
        "CreatedOn": stamp(now),
        "CurrentApprovalCount": 0,
        "CurrentReviewerCount": 0,
        "DurationInMinutes": duration,
        "ExpiresOn": expires,
        "Id": id.to_string(),
        "IsEmergency": emergency,
        "NeedsAcknowledgement": false,
        "RequestAvailability": [{"Begin": stamp(now), "End": expires}],
        "ReasonCode": reason_code,
        "ReasonComment": body.get("ReasonComment").cloned().unwrap_or(Value::Null),
    });
    let more = json!({
        "RequestedDurationDays": duration / 1440,
        "RequestedDurationHours": duration % 1440 / 60,
        "RequestedDurationMinutes": duration % 60,
        "RequestedFor": body.get("RequestedFor").filter(|v| v.is_string()).cloned().unwrap_or(json!(stamp(now))),
        "RequesterDisplayName": user["DisplayName"],
        "RequesterEmailAddress": user["EmailAddress"],
        "RequesterId": requester,
        "RequiredApprovalCount": required,
        "RequiredReviewerCount": required_reviews,
        "State": "New",
        "StateChangedOn": stamp(now),
        "TicketNumber": body.get("TicketNumber").cloned().unwrap_or(Value::Null),
        "WasCancelled": false, "WasCheckedOut": false, "WasDenied": false, "WasEvicted": false,
        "WasExpired": false, "WasRevoked": false,
        "WorkflowActions": [],
        "PolicyId": policy["Id"],
        "PolicyName": policy["Name"],
        "RequireReviewerComment": policy["ReviewerProperties"]["RequireReviewerComment"].as_bool().unwrap_or(false),
        "AllowSraSessionLaunch": false,
        "AllowSessionPasswordRelease": arp["AllowSessionPasswordRelease"].as_bool().unwrap_or(false),
        "AllowSessionSshKeyRelease": arp["AllowSessionSshKeyRelease"].as_bool().unwrap_or(false),
        "IncludePasswordRelease": arp["IncludePasswordRelease"].as_bool().unwrap_or(false),
        "IncludeSshKeyRelease": arp["IncludeSshKeyRelease"].as_bool().unwrap_or(false),
        "Sessions": [],
        "AllowSubsequentAccessRequestsWithoutReview": policy["ReviewerProperties"]["AllowSubsequentAccessRequestsWithoutReview"].as_bool().unwrap_or(true),
        "SessionModuleConnectionId": Value::Null,
        "SessionConnectionPolicyRef": Value::Null,
        "SessionRdpShowWallpaper": false,
        "RequesterUsername": user["Name"],
        "AccountDistinguishedName": acct["DistinguishedName"],
        "AssetPlatformId": asset["PlatformId"],
        "AssetPlatformType": asset["Platform"]["PlatformType"],
        "AssetPlatformDisplayName": asset["PlatformDisplayName"],
    });
    if let (Value::Object(r), Value::Object(m)) = (&mut req, more) {
        r.extend(m);
    }
    db.access_requests.insert(id, req);
    let req = transition(&mut db, id, "Initialize", state, requester, None);
    drop(db);
    request_event(ctx, "AccessRequestCreated", &req, requester, None);
    let next = if required > 0 {
        "AccessRequestPendingApproval"
    } else {
        "AccessRequestAvailable"
    };
    request_event(ctx, next, &req, requester, None);
    Ok(view(&req, requester))
}

/// The optional comment body of a workflow step (a JSON string).
async fn comment(ctx: &mut Ctx) -> Result<Option<String>, Response> {
    let bytes = ctx.bytes().await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::String(s)) => Ok(Some(s)),
        Ok(Value::Null) => Ok(None),
        _ => Err(validation_error(
            "The request body must be a JSON string.",
            "body",
        )),
    }
}

async fn access_requests(ctx: &mut Ctx, l: &[&str]) -> Answer {
    let user = ctx.user()?;
    let m = ctx.method().clone();
    let Some((id, rest)) = l.split_first() else {
        return match m {
            Method::GET => {
                let items = {
                    let db = ctx.app.db();
                    db.access_requests
                        .values()
                        .filter(|r| Relation::of(&db, r, user).sees())
                        .map(|r| view(r, user))
                        .collect()
                };
                Ok(list(ctx, items))
            }
            Method::POST => {
                let body = ctx.json_object().await?;
                create_access_request(ctx, user, &body).map(|v| ok(&v))
            }
            _ => Ok(bad_method(ctx)),
        };
    };
    let id = parse_id(ctx, id)?;
    let step = match (m, rest) {
        (Method::GET, []) => {
            let db = ctx.app.db();
            let req = db
                .access_requests
                .get(&id)
                .filter(|r| Relation::of(&db, r, user).sees());
            let v = req
                .map(|r| view(r, user))
                .ok_or_else(|| request_not_found(id))?;
            drop(db);
            return Ok(one(ctx, &v));
        }
        (Method::GET, ["approverset"]) => {
            let db = ctx.app.db();
            let req = db
                .access_requests
                .get(&id)
                .filter(|r| Relation::of(&db, r, user).sees())
                .ok_or_else(|| request_not_found(id))?;
            let sets: Vec<Value> = req["PolicyId"]
                .as_i64()
                .and_then(|p| db.policies.get(&p))
                .map(|p| render_approver_sets(&db, &p["ApproverSets"]))
                .unwrap_or_default()
                .into_iter()
                .map(|s| {
                    json!({"RequiredApprovers": s["RequiredApprovers"],
                        "Approvers": s["Approvers"].as_array().into_iter().flatten()
                            .map(|a| json!({"Id": a["Id"], "DisplayName": a["DisplayName"]}))
                            .collect::<Vec<_>>()})
                })
                .collect();
            return Ok(ok(&json!(sets)));
        }
        (_, []) | (_, ["approverset"]) => return Ok(bad_method(ctx)),
        (Method::POST, [step]) => *step,
        _ => return Ok(bad_method(ctx)),
    };
    let note = match step {
        "checkoutpassword" | "checkoutsshkey" | "checkin" => None,
        _ => comment(ctx).await?,
    };
    let note = note.as_deref();
    let mut db = ctx.app.db();
    let req = db
        .access_requests
        .get(&id)
        .filter(|r| Relation::of(&db, r, user).sees())
        .cloned()
        .ok_or_else(|| request_not_found(id))?;
    let rel = Relation::of(&db, &req, user);
    let state = req["State"].as_str().unwrap_or_default().to_string();
    let kind = req["AccessRequestType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let acct = req["AccountId"].as_i64().unwrap_or_default();
    let requester_only = "Must be the requester of this access request.";
    let mut events: Vec<&str> = Vec::new();
    let answer = match step {
        "checkoutpassword" => {
            if !rel.requester {
                return Err(forbidden(requester_only));
            }
            if kind != "Password"
                || !matches!(state.as_str(), "RequestAvailable" | "PasswordCheckedOut")
            {
                return Err(state_error(&req, "checked out"));
            }
            let Some(pw) = db.account_passwords.get(&acct).cloned() else {
                return Err(bad_request(60655, "The account has no password."));
            };
            transition(
                &mut db,
                id,
                "CheckOutPassword",
                "PasswordCheckedOut",
                user,
                None,
            );
            if let Some(r) = db.access_requests.get_mut(&id) {
                r["WasCheckedOut"] = json!(true);
            }
            // core.json's EventName has no AccessRequest...CheckedOut for
            // password requests; the release of a password is `PasswordReleased`.
            events.push("PasswordReleased");
            json!(pw)
        }
        "checkoutsshkey" => {
            if !rel.requester {
                return Err(forbidden(requester_only));
            }
            if kind != "SshKey"
                || !matches!(state.as_str(), "RequestAvailable" | "SshKeyCheckedOut")
            {
                return Err(state_error(&req, "checked out"));
            }
            let Some(key) = db
                .account_ssh_keys
                .get(&acct)
                .map(|k| ssh_key_json(&k.key, true))
            else {
                return Err(bad_request(60655, "The account has no SSH key."));
            };
            transition(
                &mut db,
                id,
                "CheckOutSshKey",
                "SshKeyCheckedOut",
                user,
                None,
            );
            if let Some(r) = db.access_requests.get_mut(&id) {
                r["WasCheckedOut"] = json!(true);
            }
            events.push("SshKeyReleased");
            key
        }
        "checkin" => {
            if !rel.requester {
                return Err(forbidden(requester_only));
            }
            if !matches!(
                state.as_str(),
                "PasswordCheckedOut" | "SshKeyCheckedOut" | "SessionInitialized"
            ) {
                return Err(state_error(&req, "checked in"));
            }
            events.push("AccessRequestCheckedIn");
            view(
                &transition(
                    &mut db,
                    id,
                    "CheckInRequest",
                    "RequestCheckedIn",
                    user,
                    None,
                ),
                user,
            )
        }
        "cancel" => {
            if !rel.requester {
                return Err(forbidden(requester_only));
            }
            if !matches!(
                state.as_str(),
                "New"
                    | "PendingApproval"
                    | "Approved"
                    | "PendingTimeRequested"
                    | "RequestAvailable"
                    | "PendingAccountRestored"
                    | "PendingPasswordReset"
            ) {
                return Err(state_error(&req, "cancelled"));
            }
            transition(&mut db, id, "CancelRequest", "Closed", user, note);
            let r = db
                .access_requests
                .get_mut(&id)
                .ok_or_else(|| request_not_found(id))?;
            r["WasCancelled"] = json!(true);
            events.push("AccessRequestCancelled");
            view(r, user)
        }
        "approve" => {
            if rel.requester {
                // Plausible message: the vendor's documents do not show it.
                return Err(forbidden("You may not approve your own access request."));
            }
            if !rel.approver {
                return Err(forbidden(
                    "Must have been granted rights by an access policy to approve the request.",
                ));
            }
            if state != "PendingApproval" {
                return Err(state_error(&req, "approved"));
            }
            if acted(&req, "ApproveRequest", user) {
                return Err(bad_request(
                    STATE_ERROR,
                    "You have already approved this access request.",
                ));
            }
            let r = transition(&mut db, id, "ApproveRequest", "PendingApproval", user, note);
            // Every approver set must reach its RequiredApprovers.
            let approvers: Vec<i64> = r["WorkflowActions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|w| w["ActionType"] == "ApproveRequest")
                .filter_map(|w| w["User"]["Id"].as_i64())
                .collect();
            let sets = req["PolicyId"]
                .as_i64()
                .and_then(|p| db.policies.get(&p))
                .and_then(|p| p["ApproverSets"].as_array().cloned())
                .unwrap_or_default();
            let done = sets.iter().all(|s| {
                let members = ids_of(&s["Approvers"]);
                approvers.iter().filter(|a| members.contains(a)).count() as i64
                    >= s["RequiredApprovers"].as_i64().unwrap_or(1)
            });
            events.push("AccessRequestApprovalReceived");
            let mut r = if done {
                events.extend(["AccessRequestApproved", "AccessRequestAvailable"]);
                transition(&mut db, id, "NextState", "RequestAvailable", user, None)
            } else {
                r
            };
            r["CurrentApprovalCount"] = json!(approvers.len());
            if let Some(stored) = db.access_requests.get_mut(&id) {
                stored["CurrentApprovalCount"] = json!(approvers.len());
            }
            view(&r, user)
        }
        "deny" => {
            if !rel.approver || rel.requester {
                return Err(forbidden(
                    "Must have been granted rights by an access policy to deny the request.",
                ));
            }
            // Denied before approval; revoked once approved or checked out.
            let (action, flag, event) = match state.as_str() {
                "PendingApproval" => ("DenyRequest", "WasDenied", "AccessRequestDenied"),
                "Approved" | "RequestAvailable" | "PasswordCheckedOut" | "SshKeyCheckedOut" => {
                    ("RevokeRequest", "WasRevoked", "AccessRequestRevoked")
                }
                _ => return Err(state_error(&req, "denied")),
            };
            transition(&mut db, id, action, "PendingAcknowledgment", user, note);
            let r = db
                .access_requests
                .get_mut(&id)
                .ok_or_else(|| request_not_found(id))?;
            r[flag] = json!(true);
            r["NeedsAcknowledgement"] = json!(true);
            events.push(event);
            view(r, user)
        }
        "acknowledge" => {
            if !rel.requester {
                return Err(forbidden(requester_only));
            }
            if !matches!(state.as_str(), "PendingAcknowledgment" | "Expired") {
                return Err(state_error(&req, "acknowledged"));
            }
            transition(&mut db, id, "AcknowledgeRequest", "Closed", user, note);
            let r = db
                .access_requests
                .get_mut(&id)
                .ok_or_else(|| request_not_found(id))?;
            r["NeedsAcknowledgement"] = json!(false);
            events.push("AccessRequestAcknowledged");
            view(r, user)
        }
        "close" => {
            let reviews_left = req["RequiredReviewerCount"].as_i64().unwrap_or(0)
                > req["CurrentReviewerCount"].as_i64().unwrap_or(0);
            let r = if rel.requester && matches!(state.as_str(), "RequestCheckedIn" | "Terminated")
            {
                let next = if reviews_left {
                    "PendingReview"
                } else {
                    "Complete"
                };
                transition(&mut db, id, "CloseRequest", next, user, note)
            } else if state == "PendingReview" && rel.admin {
                // "Used by an admin when a review cannot be completed" (core.json).
                transition(
                    &mut db,
                    id,
                    "CloseRequestWithoutReview",
                    "Closed",
                    user,
                    note,
                )
            } else if !rel.requester && !rel.admin {
                return Err(forbidden(
                    "Must have PolicyAdmin permission and request must be in `PendingReview.` state.",
                ));
            } else {
                return Err(state_error(&req, "closed"));
            };
            events.push("AccessRequestClosed");
            view(&r, user)
        }
        "review" => {
            if !rel.reviewer || rel.requester {
                return Err(forbidden(
                    "Must have been granted rights by an access policy to review the request.",
                ));
            }
            if state != "PendingReview" {
                return Err(state_error(&req, "reviewed"));
            }
            if acted(&req, "ReviewRequest", user) {
                return Err(bad_request(
                    STATE_ERROR,
                    "You have already reviewed this access request.",
                ));
            }
            if req["RequireReviewerComment"].as_bool() == Some(true)
                && note.is_none_or(|c| c.trim().is_empty())
            {
                return Err(validation_error(
                    "The access policy requires a reviewer comment.",
                    "body",
                ));
            }
            let count = req["CurrentReviewerCount"].as_i64().unwrap_or(0) + 1;
            let done = count >= req["RequiredReviewerCount"].as_i64().unwrap_or(1);
            transition(
                &mut db,
                id,
                "ReviewRequest",
                if done { "Complete" } else { "PendingReview" },
                user,
                note,
            );
            let r = db
                .access_requests
                .get_mut(&id)
                .ok_or_else(|| request_not_found(id))?;
            r["CurrentReviewerCount"] = json!(count);
            events.push("AccessRequestReviewed");
            if done {
                events.push("AccessRequestReviewComplete");
            }
            view(r, user)
        }
        _ => return Err(no_route(ctx)),
    };
    let current = db.access_requests.get(&id).cloned().unwrap_or(Value::Null);
    drop(db);
    for e in events {
        request_event(ctx, e, &current, user, note);
    }
    Ok(ok(&answer))
}
