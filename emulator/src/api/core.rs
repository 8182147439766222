//! `/service/core/v4/...`.

use std::time::Instant;

use axum::response::Response;
use base64::Engine;
use http::{Method, StatusCode};
use openssl::x509::X509;
use serde_json::{json, Map, Value};

use super::*;
use crate::certs::trusted_cert_json;
use crate::sshkey::{KeyFormat, SshKey};
use crate::state::*;

pub(crate) async fn handle(ctx: &mut Ctx) -> Response {
    let (segs, lower) = rest(ctx, 3);
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = ctx.method().clone();
    match l.as_slice() {
        ["token", "loginresponse"] => match m {
            Method::POST => login_response(ctx).await,
            _ => bad_method(ctx),
        },
        ["token", "logout"] => match m {
            Method::POST => logout(ctx),
            _ => bad_method(ctx),
        },
        ["authenticationproviders"] => match m {
            Method::GET => list(ctx, providers().as_array().cloned().unwrap_or_default()),
            _ => bad_method(ctx),
        },
        ["authenticationproviders", id] => match m {
            Method::GET => {
                let id = match parse_id(ctx, id) {
                    Ok(i) => i,
                    Err(r) => return r,
                };
                match providers()
                    .as_array()
                    .and_then(|a| a.iter().find(|p| p["Id"].as_i64() == Some(id)).cloned())
                {
                    Some(p) => one(ctx, &p),
                    None => not_found("authentication provider", &id.to_string()),
                }
            }
            _ => bad_method(ctx),
        },
        ["me"] => match m {
            Method::GET => match ctx.user() {
                Ok(id) => {
                    let u = ctx.app.db().users.get(&id).cloned().unwrap_or(Value::Null);
                    one(ctx, &u)
                }
                Err(r) => r,
            },
            _ => bad_method(ctx),
        },
        ["loginmessage"] => login_message(ctx).await,
        ["settings"] => match m {
            Method::GET => match ctx.user() {
                Ok(_) => {
                    let items = ctx.app.db().settings.clone();
                    list(ctx, items)
                }
                Err(r) => r,
            },
            _ => bad_method(ctx),
        },
        ["settings", _] => settings_one(ctx, &segs[1]).await,
        ["events", "firetestevent"] => match m {
            Method::POST => match ctx.admin(&["ApplianceAdmin"]) {
                Ok(id) => {
                    let name = user_name(ctx, id);
                    ctx.app.emit(
                        "TestEvent",
                        json!({"EventDisplayName": "Test Event", "EventDescription": "A test event fired through the API.",
                               "EventUserId": id, "EventUserDisplayName": name}),
                        None,
                    );
                    no_content()
                }
                Err(r) => r,
            },
            _ => bad_method(ctx),
        },
        // Roles, access policies, access requests and the requester's views.
        _ if super::access::handles(&l) => super::access::handle(ctx, &l).await,
        _ if super::cluster::handles(&l) => super::cluster::handle(ctx, &l),
        ["users", ..] => users(ctx, &l[1..]).await,
        ["assets", ..] => assets(ctx, &l[1..]).await,
        ["platforms", ..] => platforms(ctx, &l[1..]),
        ["assetaccounts", ..] => accounts(ctx, &l[1..]).await,
        ["trustedcertificates", ..] => trusted(ctx, &segs[1..]).await,
        ["a2aregistrations", ..] => registrations(ctx, &l[1..]).await,
        _ => no_route(ctx),
    }
}

fn user_name(ctx: &Ctx, id: i64) -> String {
    ctx.app
        .db()
        .users
        .get(&id)
        .and_then(|u| u["Name"].as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn login_response(ctx: &mut Ctx) -> Response {
    let body = match ctx.json_object().await {
        Ok(b) => b,
        Err(r) => return r,
    };
    ctx.app
        .login_responses
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let sts = body
        .get("StsAccessToken")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let lifetime = ctx.app.token_lifetime();
    let mut db = ctx.app.db();
    let found = db
        .sts_tokens
        .get(&sts)
        .filter(|t| t.expires > Instant::now())
        .map(|t| (t.user_id, t.provider.clone()));
    let Some((user_id, provider)) = found else {
        return api_error(StatusCode::UNAUTHORIZED, 60519, "Invalid STS access_token.");
    };
    if !db.users.contains_key(&user_id) {
        return api_error(StatusCode::UNAUTHORIZED, 60519, "Invalid STS access_token.");
    }
    let token = random_token(64);
    let expires = Instant::now() + lifetime;
    db.tokens
        .insert(token.clone(), UserToken { user_id, expires });
    if let Some(u) = db.users.get_mut(&user_id) {
        u["LastLoginDate"] = json!(now_string());
    }
    drop(db);
    ctx.token_expires = Some(expires);
    ok(&json!({
        "Status": "Success",
        "UserToken": token,
        "PrimaryProviderId": provider,
        "SecondaryProviderId": Value::Null,
        "WebClientInactivityTimeout": 15,
        "DesktopClientInactivityTimeout": 15,
    }))
}

fn logout(ctx: &mut Ctx) -> Response {
    if let Err(r) = ctx.user() {
        return r;
    }
    let token = ctx
        .header("authorization")
        .and_then(|h| h.split_once(' ').map(|(_, t)| t.trim().to_string()))
        .unwrap_or_default();
    ctx.app.db().tokens.remove(&token);
    ctx.token_expires = None;
    no_content()
}

async fn login_message(ctx: &mut Ctx) -> Response {
    match ctx.method().clone() {
        Method::GET => {
            if ctx.header("authorization").is_some() {
                if let Err(r) = ctx.user() {
                    return r;
                }
            }
            let v = ctx.app.db().login_message.clone();
            one(ctx, &v)
        }
        Method::PUT => {
            let id = match ctx.admin(&["ApplianceAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name = user_name(ctx, id);
            let v = json!({"Message": body.get("Message").cloned().unwrap_or(Value::Null),
                "UpdatedDate": now_string(), "UpdatedByUserId": id, "UpdatedByUserDisplayName": name});
            ctx.app.db().login_message = v.clone();
            ok(&v)
        }
        _ => bad_method(ctx),
    }
}

async fn settings_one(ctx: &mut Ctx, name: &str) -> Response {
    match ctx.method().clone() {
        Method::GET => {
            if let Err(r) = ctx.user() {
                return r;
            }
            let v = ctx.app.db().setting(name).cloned();
            match v {
                Some(v) => one(ctx, &v),
                None => not_found("setting", name),
            }
        }
        Method::PUT => {
            if let Err(r) = ctx.admin(&["ApplianceAdmin"]) {
                return r;
            }
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(value) = body.get("Value") else {
                return validation_error("The Value field is required.", "Value");
            };
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if name.eq_ignore_ascii_case(GRANT_SETTING) {
                for g in parse_grant_list(&value) {
                    if !GRANT_NAMES.iter().any(|n| n.eq_ignore_ascii_case(&g)) {
                        return validation_error(
                            &format!(
                                "'{g}' is not a valid grant type. Valid values: {}.",
                                GRANT_NAMES.join(", ")
                            ),
                            "Value",
                        );
                    }
                }
            }
            if name.eq_ignore_ascii_case("Token Lifetime") {
                match value.trim().parse::<u64>() {
                    Ok(m) if (1..=1440).contains(&m) => {
                        *ctx.app
                            .token_lifetime
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) =
                            std::time::Duration::from_secs(m * 60);
                    }
                    _ => {
                        return validation_error(
                            "Token Lifetime must be a number of minutes between 1 and 1440.",
                            "Value",
                        )
                    }
                }
            }
            let mut db = ctx.app.db();
            let Some(s) = db.settings.iter_mut().find(|s| {
                s["Name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            }) else {
                return not_found("setting", name);
            };
            s["Value"] = json!(value);
            let v = s.clone();
            drop(db);
            ok(&v)
        }
        _ => bad_method(ctx),
    }
}

/// Copies the writable members of `body` onto `target` (read-only ones are ignored).
fn merge(target: &mut Value, body: &Map<String, Value>, writable: &[&str]) {
    for (k, v) in body {
        if let Some(w) = writable.iter().find(|w| w.eq_ignore_ascii_case(k)) {
            target[*w] = v.clone();
        }
    }
}

const USER_WRITABLE: [&str; 17] = [
    "Name",
    "Description",
    "DisplayName",
    "FirstName",
    "LastName",
    "EmailAddress",
    "WorkPhone",
    "MobilePhone",
    "AdminRoles",
    "Disabled",
    "TimeZoneId",
    "AllowPersonalAccounts",
    "Locked",
    "PasswordNeverExpires",
    "ChangePasswordAtNextLogin",
    "RequireCertificateAuthentication",
    "IsRequester",
];

fn user_event(ctx: &Ctx, name: &str, user: &Value, by: i64) {
    let by_name = user_name(ctx, by);
    ctx.app.emit(
        name,
        json!({"UserId": user["Id"], "UserName": user["Name"], "UserDisplayName": user["DisplayName"],
               "EventUserId": by, "EventUserDisplayName": by_name}),
        None,
    );
}

fn parse_provider(
    body: &Map<String, Value>,
    thumb_ok: bool,
) -> Result<(i64, Option<String>), Response> {
    let p = body.get("PrimaryAuthenticationProvider");
    let id = match p {
        None | Some(Value::Null) => LOCAL_PROVIDER,
        Some(p) => match p.get("Id").and_then(Value::as_i64) {
            Some(id) => id,
            None => {
                return Err(validation_error(
                    "PrimaryAuthenticationProvider.Id is required.",
                    "PrimaryAuthenticationProvider.Id",
                ))
            }
        },
    };
    if ![LOCAL_PROVIDER, CERT_PROVIDER, EXTERNAL_PROVIDER].contains(&id) {
        return Err(bad_request(
            60202,
            &format!("Authentication provider {id} does not exist."),
        ));
    }
    let identity = p
        .and_then(|p| p.get("Identity"))
        .and_then(Value::as_str)
        .map(str::to_string);
    if id == CERT_PROVIDER && thumb_ok {
        match &identity {
            Some(t) if t.len() == 40 && t.chars().all(|c| c.is_ascii_hexdigit()) => {}
            _ => {
                return Err(validation_error(
                    "A certificate user's PrimaryAuthenticationProvider.Identity must be a SHA-1 thumbprint (40 hex digits).",
                    "PrimaryAuthenticationProvider.Identity",
                ))
            }
        }
    }
    Ok((
        id,
        identity.map(|i| {
            if id == CERT_PROVIDER {
                i.to_uppercase()
            } else {
                i
            }
        }),
    ))
}

async fn users(ctx: &mut Ctx, l: &[&str]) -> Response {
    let m = ctx.method().clone();
    match (m, l) {
        (Method::GET, []) => match ctx.user() {
            Ok(_) => {
                let items: Vec<Value> = ctx.app.db().users.values().cloned().collect();
                list(ctx, items)
            }
            Err(r) => r,
        },
        (Method::POST, []) => {
            let by = match ctx.admin(&["UserAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name = body
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string();
            if name.is_empty() {
                return validation_error("The Name field is required.", "Name");
            }
            let (provider, identity) = match parse_provider(&body, true) {
                Ok(p) => p,
                Err(r) => return r,
            };
            let identity = identity.unwrap_or_else(|| name.clone());
            let mut db = ctx.app.db();
            if db.find_user(provider, &name).is_some()
                || (provider == CERT_PROVIDER && db.find_user(provider, &identity).is_some())
            {
                return bad_request(50002, &format!("A user with the name '{name}' already exists for this authentication provider."));
            }
            let id = db.id();
            let mut user = new_user(id, &name, provider, &identity, &[]);
            merge(&mut user, &body, &USER_WRITABLE);
            user["Id"] = json!(id);
            user["CreatedByUserId"] = json!(by);
            db.users.insert(id, user.clone());
            if let Some(pw) = body.get("Password").and_then(Value::as_str) {
                db.passwords.insert(id, pw.to_string());
            }
            drop(db);
            user_event(ctx, "UserCreated", &user, by);
            json_response(StatusCode::CREATED, &user)
        }
        (_, []) => bad_method(ctx),
        (m, [id]) => {
            let id = match parse_id(ctx, id) {
                Ok(i) => i,
                Err(r) => return r,
            };
            match m {
                Method::GET => {
                    if let Err(r) = ctx.user() {
                        return r;
                    }
                    let u = ctx.app.db().users.get(&id).cloned();
                    match u {
                        Some(u) => one(ctx, &u),
                        None => not_found("user", &id.to_string()),
                    }
                }
                Method::PUT => {
                    let by = match ctx.admin(&["UserAdmin"]) {
                        Ok(i) => i,
                        Err(r) => return r,
                    };
                    let body = match ctx.json_object().await {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    let mut db = ctx.app.db();
                    let Some(existing) = db.users.get(&id).cloned() else {
                        return not_found("user", &id.to_string());
                    };
                    let mut user = existing;
                    merge(&mut user, &body, &USER_WRITABLE);
                    if user["Name"].as_str().is_none_or(|n| n.trim().is_empty()) {
                        return validation_error("The Name field is required.", "Name");
                    }
                    user["ModifiedDate"] = json!(now_string());
                    user["ModifiedByUserId"] = json!(by);
                    db.users.insert(id, user.clone());
                    drop(db);
                    user_event(ctx, "UserUpdated", &user, by);
                    ok(&user)
                }
                Method::DELETE => {
                    let by = match ctx.admin(&["UserAdmin"]) {
                        Ok(i) => i,
                        Err(r) => return r,
                    };
                    if id == ctx.app.admin_id || id == by {
                        return bad_request(50003, "This user cannot be deleted.");
                    }
                    let mut db = ctx.app.db();
                    let Some(user) = db.users.remove(&id) else {
                        return not_found("user", &id.to_string());
                    };
                    db.passwords.remove(&id);
                    db.tokens.retain(|_, t| t.user_id != id);
                    drop(db);
                    user_event(ctx, "UserDeleted", &user, by);
                    no_content()
                }
                _ => bad_method(ctx),
            }
        }
        (Method::PUT, [id, "password"]) => {
            let id = match parse_id(ctx, id) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let by = match ctx.user() {
                Ok(i) => i,
                Err(r) => return r,
            };
            if by != id {
                if let Err(r) = ctx.admin(&["UserAdmin"]) {
                    return r;
                }
            }
            let pw = match ctx.json_string().await {
                Ok(p) => p,
                Err(r) => return r,
            };
            if pw.is_empty() {
                return validation_error("The password must not be empty.", "body");
            }
            let mut db = ctx.app.db();
            let provider = match db.users.get(&id) {
                Some(u) => u["PrimaryAuthenticationProvider"]["Id"]
                    .as_i64()
                    .unwrap_or(0),
                None => return not_found("user", &id.to_string()),
            };
            if provider != LOCAL_PROVIDER {
                return bad_request(50004, "Only local users have a password on the appliance.");
            }
            db.passwords.insert(id, pw);
            if let Some(u) = db.users.get_mut(&id) {
                u["ChangePasswordAtNextLogin"] = json!(ctx
                    .query
                    .get("changepasswordatnextlogin")
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")));
            }
            drop(db);
            no_content()
        }
        (_, [_, "password"]) => bad_method(ctx),
        _ => no_route(ctx),
    }
}

const ASSET_WRITABLE: [&str; 5] = ["Name", "Description", "NetworkAddress", "Disabled", "Tags"];

/// Gives `asset` the platform the body's `PlatformId` names (or the
/// `Platform.Id` of a body that sends the nested object): `PlatformId`,
/// `PlatformDisplayName` and the whole `Platform`. An id the catalogue does
/// not hold is a 400.
fn set_platform(asset: &mut Value, body: &Map<String, Value>) -> Result<(), Response> {
    let requested = body
        .get("PlatformId")
        .filter(|v| !v.is_null())
        .or_else(|| body.get("Platform").and_then(|p| p.get("Id")));
    let Some(requested) = requested else {
        return Ok(());
    };
    let Some(id) = requested.as_i64() else {
        return Err(validation_error(
            "The PlatformId field must be an integer.",
            "PlatformId",
        ));
    };
    let Some(platform) = crate::platforms::get(id) else {
        return Err(bad_request(
            50006,
            &format!("Unable to find platform with id '{id}'."),
        ));
    };
    asset["PlatformId"] = json!(id);
    asset["PlatformDisplayName"] = platform["DisplayName"].clone();
    asset["Platform"] = platform;
    Ok(())
}

/// `GET Platforms` and `GET Platforms/{id}` (any signed-in user).
fn platforms(ctx: &mut Ctx, l: &[&str]) -> Response {
    if ctx.method() != Method::GET {
        return bad_method(ctx);
    }
    if let Err(r) = ctx.user() {
        return r;
    }
    // The appliance's platforms, then custom ones (created through the
    // generic layer's Platforms collection, which also answers their ids).
    match l {
        [] => {
            let mut items = crate::platforms::all();
            let custom = ctx.app.db().generic.get("core/platforms").cloned();
            items.extend(custom.unwrap_or_default());
            list(ctx, items)
        }
        [id] => {
            let id = match parse_id(ctx, id) {
                Ok(i) => i,
                Err(r) => return r,
            };
            match crate::platforms::get(id) {
                Some(p) => one(ctx, &p),
                None => no_route(ctx),
            }
        }
        _ => no_route(ctx),
    }
}

async fn assets(ctx: &mut Ctx, l: &[&str]) -> Response {
    let m = ctx.method().clone();
    match (m, l) {
        (Method::GET, []) => match ctx.user() {
            Ok(_) => {
                let items: Vec<Value> = ctx.app.db().assets.values().cloned().collect();
                list(ctx, items)
            }
            Err(r) => r,
        },
        (Method::POST, []) => {
            let by = match ctx.admin(&["AssetAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name = body
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string();
            if name.is_empty() {
                return validation_error("The Name field is required.", "Name");
            }
            let address = body
                .get("NetworkAddress")
                .and_then(Value::as_str)
                .unwrap_or(&name)
                .to_string();
            let mut db = ctx.app.db();
            if db.assets.values().any(|a| {
                a["Name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&name))
            }) {
                return bad_request(
                    50002,
                    &format!("An asset with the name '{name}' already exists."),
                );
            }
            let id = db.id();
            let mut asset = new_asset(id, &name, &address);
            merge(&mut asset, &body, &ASSET_WRITABLE);
            if let Err(r) = set_platform(&mut asset, &body) {
                return r;
            }
            asset["CreatedByUserId"] = json!(by);
            db.assets.insert(id, asset.clone());
            drop(db);
            ctx.app.emit(
                "AssetCreated",
                json!({"AssetId": id, "AssetName": name, "EventUserId": by}),
                None,
            );
            json_response(StatusCode::CREATED, &asset)
        }
        (_, []) => bad_method(ctx),
        (m, [id]) => {
            let id = match parse_id(ctx, id) {
                Ok(i) => i,
                Err(r) => return r,
            };
            match m {
                Method::GET => {
                    if let Err(r) = ctx.user() {
                        return r;
                    }
                    let a = ctx.app.db().assets.get(&id).cloned();
                    match a {
                        Some(a) => one(ctx, &a),
                        None => not_found("asset", &id.to_string()),
                    }
                }
                Method::PUT => {
                    let by = match ctx.admin(&["AssetAdmin"]) {
                        Ok(i) => i,
                        Err(r) => return r,
                    };
                    let body = match ctx.json_object().await {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    let mut db = ctx.app.db();
                    let Some(mut asset) = db.assets.get(&id).cloned() else {
                        return not_found("asset", &id.to_string());
                    };
                    merge(&mut asset, &body, &ASSET_WRITABLE);
                    if let Err(r) = set_platform(&mut asset, &body) {
                        return r;
                    }
                    // The asset's accounts carry its platform.
                    for acct in db.accounts.values_mut() {
                        if acct["Asset"]["Id"].as_i64() == Some(id) {
                            acct["Platform"] = asset["Platform"].clone();
                        }
                    }
                    db.assets.insert(id, asset.clone());
                    drop(db);
                    ctx.app.emit(
                        "AssetUpdated",
                        json!({"AssetId": id, "AssetName": asset["Name"], "EventUserId": by}),
                        None,
                    );
                    ok(&asset)
                }
                Method::DELETE => {
                    let by = match ctx.admin(&["AssetAdmin"]) {
                        Ok(i) => i,
                        Err(r) => return r,
                    };
                    let mut db = ctx.app.db();
                    if db
                        .accounts
                        .values()
                        .any(|a| a["Asset"]["Id"].as_i64() == Some(id))
                    {
                        return bad_request(
                            50005,
                            "The asset still has accounts; delete them first.",
                        );
                    }
                    let Some(asset) = db.assets.remove(&id) else {
                        return not_found("asset", &id.to_string());
                    };
                    drop(db);
                    ctx.app.emit(
                        "AssetDeleted",
                        json!({"AssetId": id, "AssetName": asset["Name"], "EventUserId": by}),
                        None,
                    );
                    no_content()
                }
                _ => bad_method(ctx),
            }
        }
        _ => no_route(ctx),
    }
}

const ACCOUNT_WRITABLE: [&str; 6] = [
    "Name",
    "Description",
    "Disabled",
    "DomainName",
    "AltLoginName",
    "Tags",
];

async fn accounts(ctx: &mut Ctx, l: &[&str]) -> Response {
    let m = ctx.method().clone();
    match (m, l) {
        (Method::GET, []) => match ctx.user() {
            Ok(_) => {
                let items: Vec<Value> = ctx.app.db().accounts.values().cloned().collect();
                list(ctx, items)
            }
            Err(r) => r,
        },
        (Method::POST, []) => {
            let by = match ctx.admin(&["AssetAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name = body
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string();
            if name.is_empty() {
                return validation_error("The Name field is required.", "Name");
            }
            let Some(asset_id) = body
                .get("Asset")
                .and_then(|a| a.get("Id"))
                .and_then(Value::as_i64)
            else {
                return validation_error("Asset.Id is required.", "Asset.Id");
            };
            let mut db = ctx.app.db();
            let Some(asset) = db.assets.get(&asset_id).cloned() else {
                return bad_request(50006, &format!("Asset {asset_id} does not exist."));
            };
            if db.accounts.values().any(|a| {
                a["Asset"]["Id"].as_i64() == Some(asset_id)
                    && a["Name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&name))
            }) {
                return bad_request(
                    50002,
                    &format!("An account named '{name}' already exists on this asset."),
                );
            }
            let id = db.id();
            let mut acct = new_account(id, &name, &asset);
            merge(&mut acct, &body, &ACCOUNT_WRITABLE);
            acct["CreatedByUserId"] = json!(by);
            db.accounts.insert(id, acct.clone());
            drop(db);
            ctx.app.emit(
                "AssetAccountCreated",
                json!({"AccountId": id, "AccountName": name, "AssetId": asset_id, "AssetName": asset["Name"], "EventUserId": by}),
                None,
            );
            json_response(StatusCode::CREATED, &acct)
        }
        (_, []) => bad_method(ctx),
        (m, [id, sub @ ..]) => {
            let id = match parse_id(ctx, id) {
                Ok(i) => i,
                Err(r) => return r,
            };
            account_item(ctx, m, id, sub).await
        }
    }
}

/// Records a new password on an account and publishes the A2A event.
pub(crate) fn set_account_password(ctx: &Ctx, id: i64, password: String) -> Result<(), Response> {
    let mut db = ctx.app.db();
    let Some(acct) = db.accounts.get_mut(&id) else {
        return Err(not_found("account", &id.to_string()));
    };
    acct["HasPassword"] = json!(true);
    let data = json!({"AccountId": id, "AccountName": acct["Name"], "AssetId": acct["Asset"]["Id"],
        "AssetName": acct["Asset"]["Name"], "EventDisplayName": "Asset Account Password Updated"});
    db.account_passwords.insert(id, password);
    drop(db);
    ctx.app.emit("AssetAccountPasswordUpdated", data, Some(id));
    Ok(())
}

/// Records a new SSH key on an account and publishes the A2A event.
pub(crate) fn set_account_ssh_key(
    ctx: &Ctx,
    id: i64,
    body: &Map<String, Value>,
) -> Result<Value, Response> {
    let Some(private) = body
        .get("PrivateKey")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
    else {
        return Err(validation_error(
            "The PrivateKey field is required.",
            "PrivateKey",
        ));
    };
    let passphrase = body
        .get("Passphrase")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut key = SshKey::parse(private, Some(&passphrase))
        .map_err(|e| validation_error(&e, "PrivateKey"))?;
    if let Some(c) = body.get("Comment").and_then(Value::as_str) {
        key.comment = c.to_string();
    }
    let mut db = ctx.app.db();
    let Some(acct) = db.accounts.get_mut(&id) else {
        return Err(not_found("account", &id.to_string()));
    };
    acct["HasSshKey"] = json!(true);
    let data = json!({"AccountId": id, "AccountName": acct["Name"], "AssetId": acct["Asset"]["Id"],
        "AssetName": acct["Asset"]["Name"], "EventDisplayName": "Asset Account SSH Key Updated"});
    let answer = ssh_key_json(&key, false);
    db.account_ssh_keys.insert(id, SshKeyEntry { key });
    drop(db);
    ctx.app.emit("AssetAccountSshKeyUpdated", data, Some(id));
    Ok(answer)
}

/// The `AccountSshKey` schema.
pub(crate) fn ssh_key_json(key: &SshKey, with_private: bool) -> Value {
    json!({
        "PrivateKey": if with_private { json!(key.openssh()) } else { Value::Null },
        "Passphrase": Value::Null,
        "PublicKey": key.public_key(),
        "Comment": key.comment,
        "Fingerprint": key.fingerprint_md5(),
        "FingerprintSha256": key.fingerprint_sha256(),
        "KeyType": key.key_type(),
        "KeyLength": key.bits(),
    })
}

async fn account_item(ctx: &mut Ctx, m: Method, id: i64, sub: &[&str]) -> Response {
    match (m, sub) {
        (Method::GET, []) => {
            if let Err(r) = ctx.user() {
                return r;
            }
            let a = ctx.app.db().accounts.get(&id).cloned();
            match a {
                Some(a) => one(ctx, &a),
                None => not_found("account", &id.to_string()),
            }
        }
        (Method::PUT, []) => {
            let by = match ctx.admin(&["AssetAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let mut db = ctx.app.db();
            let Some(mut acct) = db.accounts.get(&id).cloned() else {
                return not_found("account", &id.to_string());
            };
            merge(&mut acct, &body, &ACCOUNT_WRITABLE);
            db.accounts.insert(id, acct.clone());
            drop(db);
            ctx.app.emit(
                "AssetAccountUpdated",
                json!({"AccountId": id, "AccountName": acct["Name"], "EventUserId": by}),
                None,
            );
            ok(&acct)
        }
        (Method::DELETE, []) => {
            let by = match ctx.admin(&["AssetAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let mut db = ctx.app.db();
            let Some(acct) = db.accounts.remove(&id) else {
                return not_found("account", &id.to_string());
            };
            db.account_passwords.remove(&id);
            db.account_ssh_keys.remove(&id);
            db.account_api_keys.remove(&id);
            db.retrievable.retain(|(_, a), _| *a != id);
            drop(db);
            ctx.app.emit(
                "AssetAccountDeleted",
                json!({"AccountId": id, "AccountName": acct["Name"], "EventUserId": by}),
                None,
            );
            no_content()
        }
        // The change-password task: the appliance sets a new random password
        // on the remote system and records it; here it is recorded at once
        // (with the A2A event of any other password change) and the task
        // answers 202 with its activity log, as the document describes.
        (Method::POST, ["changepassword"]) => {
            let by = match ctx.admin(&["AssetAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let account = ctx.app.db().accounts.get(&id).cloned();
            let Some(account) = account else {
                return not_found("account", &id.to_string());
            };
            let password = format!("Rotated-{}", crate::state::random_token(12));
            if let Err(r) = set_account_password(ctx, id, password) {
                return r;
            }
            json_response(
                StatusCode::ACCEPTED,
                &json!({
                    "Id": uuid::Uuid::new_v4().to_string(),
                    "LogTime": crate::state::now_string(),
                    "UserId": by,
                    "EventName": "PasswordChangeSucceeded",
                    "Name": "ChangePassword",
                    "AssetId": account["Asset"]["Id"],
                    "AssetName": account["Asset"]["Name"],
                    "AccountId": id,
                    "AccountName": account["Name"],
                    "RequestStatus": {"State": "Success", "PercentComplete": 100},
                }),
            )
        }
        (Method::PUT, ["password"]) => {
            if let Err(r) = ctx.admin(&["AssetAdmin"]) {
                return r;
            }
            let pw = match ctx.json_string().await {
                Ok(p) => p,
                Err(r) => return r,
            };
            match set_account_password(ctx, id, pw) {
                Ok(()) => no_content(),
                Err(r) => r,
            }
        }
        (Method::GET, ["sshkey"]) => {
            if let Err(r) = ctx.admin(&["AssetAdmin"]) {
                return r;
            }
            let db = ctx.app.db();
            if !db.accounts.contains_key(&id) {
                return not_found("account", &id.to_string());
            }
            match db.account_ssh_keys.get(&id) {
                Some(k) => ok(&ssh_key_json(&k.key, false)),
                None => not_found("SSH key of account", &id.to_string()),
            }
        }
        (Method::PUT, ["sshkey"]) => {
            if let Err(r) = ctx.admin(&["AssetAdmin"]) {
                return r;
            }
            if let Some(f) = ctx.q("keyformat") {
                if KeyFormat::parse(f).is_none() {
                    return validation_error(
                        "keyFormat must be OpenSsh, Ssh2 or Putty.",
                        "keyFormat",
                    );
                }
            }
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match set_account_ssh_key(ctx, id, &body) {
                Ok(v) => ok(&v),
                Err(r) => r,
            }
        }
        (_, ["password"] | ["sshkey"]) => bad_method(ctx),
        _ => no_route(ctx),
    }
}

async fn trusted(ctx: &mut Ctx, segs: &[String]) -> Response {
    let m = ctx.method().clone();
    match (m, segs) {
        (Method::GET, []) => match ctx.user() {
            Ok(_) => {
                let items: Vec<Value> = ctx.app.db().trusted_certs.values().cloned().collect();
                list(ctx, items)
            }
            Err(r) => r,
        },
        (Method::POST, []) => {
            if let Err(r) = ctx.admin(&["ApplianceAdmin"]) {
                return r;
            }
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(data) = body.get("Base64CertificateData").and_then(Value::as_str) else {
                return validation_error(
                    "The Base64CertificateData field is required.",
                    "Base64CertificateData",
                );
            };
            let der = if data.trim_start().starts_with("-----BEGIN") {
                X509::from_pem(data.as_bytes())
                    .and_then(|c| c.to_der())
                    .ok()
            } else {
                // The base64 of a DER certificate, or of a PEM file (which
                // the vendor's tools send: they base64 whatever file they
                // are given).
                base64::engine::general_purpose::STANDARD
                    .decode(data.split_whitespace().collect::<String>())
                    .ok()
                    .and_then(|bytes| {
                        if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
                            X509::from_pem(&bytes).and_then(|c| c.to_der()).ok()
                        } else {
                            Some(bytes)
                        }
                    })
            };
            let Some(tc) = der.as_deref().and_then(trusted_cert_json) else {
                return bad_request(
                    60300,
                    "The certificate data is not a valid X.509 certificate.",
                );
            };
            let tp = tc["Thumbprint"].as_str().unwrap_or_default().to_string();
            let mut db = ctx.app.db();
            if db.trusted_certs.contains_key(&tp) {
                return bad_request(60301, "The certificate is already trusted.");
            }
            db.trusted_certs.insert(tp, tc.clone());
            json_response(StatusCode::CREATED, &tc)
        }
        (_, []) => bad_method(ctx),
        (m, [tp]) => {
            let key = tp.to_uppercase();
            match m {
                Method::GET => {
                    if let Err(r) = ctx.user() {
                        return r;
                    }
                    let v = ctx.app.db().trusted_certs.get(&key).cloned();
                    match v {
                        Some(v) => one(ctx, &v),
                        None => not_found("trusted certificate", tp),
                    }
                }
                Method::DELETE => {
                    if let Err(r) = ctx.admin(&["ApplianceAdmin"]) {
                        return r;
                    }
                    match ctx.app.db().trusted_certs.remove(&key) {
                        Some(_) => no_content(),
                        None => not_found("trusted certificate", tp),
                    }
                }
                _ => bad_method(ctx),
            }
        }
        _ => no_route(ctx),
    }
}

const REGISTRATION_WRITABLE: [&str; 5] = [
    "AppName",
    "Description",
    "Disabled",
    "VisibleToCertificateUsers",
    "BidirectionalEnabled",
];

/// Registrations the user may see: all for administrators, its own for a certificate user.
fn visible_registration(db: &Db, user: i64, reg: &Value) -> bool {
    let is_admin = db.users[&user]["AdminRoles"]
        .as_array()
        .is_some_and(|r| !r.is_empty());
    is_admin
        || (reg["CertificateUserId"].as_i64() == Some(user)
            && reg["VisibleToCertificateUsers"].as_bool().unwrap_or(false))
}

/// Whether the request carries a user token (header or `access_token`).
fn has_bearer(ctx: &Ctx) -> bool {
    ctx.header("authorization")
        .and_then(|h| h.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        || ctx.q("access_token").is_some()
}

/// The A2ARegistrations GETs for a caller with a client certificate (and
/// perhaps API keys) instead of a user token; see `a2a::certificate_view`.
async fn certificate_registrations(ctx: &mut Ctx, l: &[&str]) -> Response {
    let view = match super::a2a::certificate_view(ctx).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let db = ctx.app.db();
    let accounts_of = |reg: i64| -> Vec<Value> {
        db.retrievable
            .range((reg, i64::MIN)..=(reg, i64::MAX))
            .filter(|((_, a), _)| view[&reg].as_ref().is_none_or(|s| s.contains(a)))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let reg_of = |id: &str| -> Option<i64> { id.parse().ok().filter(|i| view.contains_key(i)) };
    match l {
        [] => {
            let items: Vec<Value> = view
                .keys()
                .filter_map(|id| db.registrations.get(id).cloned())
                .collect();
            drop(db);
            list(ctx, items)
        }
        [id, rest @ ..] => {
            let Some(reg) = reg_of(id) else {
                drop(db);
                return not_found("A2A registration", id);
            };
            match rest {
                [] => {
                    let v = db.registrations[&reg].clone();
                    drop(db);
                    one(ctx, &v)
                }
                ["retrievableaccounts"] => {
                    let items = accounts_of(reg);
                    drop(db);
                    list(ctx, items)
                }
                ["retrievableaccounts", acct, tail @ ..] => {
                    let found = acct.parse::<i64>().ok().and_then(|a| {
                        accounts_of(reg)
                            .into_iter()
                            .find(|v| v["AccountId"].as_i64() == Some(a))
                    });
                    drop(db);
                    let Some(v) = found else {
                        return not_found("retrievable account", acct);
                    };
                    match tail {
                        [] => one(ctx, &v),
                        ["apikey"] => ok(&v["ApiKey"]),
                        _ => no_route(ctx),
                    }
                }
                _ => {
                    drop(db);
                    // Other registration resources need a user token.
                    unauthorized()
                }
            }
        }
    }
}

async fn registrations(ctx: &mut Ctx, l: &[&str]) -> Response {
    let m = ctx.method().clone();
    if m == Method::GET && !has_bearer(ctx) {
        return certificate_registrations(ctx, l).await;
    }
    match (m, l) {
        (Method::GET, []) => match ctx.user() {
            Ok(u) => {
                let db = ctx.app.db();
                let items: Vec<Value> = db
                    .registrations
                    .values()
                    .filter(|r| visible_registration(&db, u, r))
                    .cloned()
                    .collect();
                drop(db);
                list(ctx, items)
            }
            Err(r) => r,
        },
        (Method::POST, []) => {
            let by = match ctx.admin(&["PolicyAdmin", "AssetAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let name = body
                .get("AppName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_string();
            if name.is_empty() {
                return validation_error("The AppName field is required.", "AppName");
            }
            let mut db = ctx.app.db();
            let cert_user = match (
                body.get("CertificateUserId").and_then(Value::as_i64),
                body.get("CertificateUserThumbPrint")
                    .and_then(Value::as_str),
            ) {
                (Some(id), _) => db.users.get(&id).map(|u| (id, u.clone())),
                (None, Some(tp)) => db
                    .find_user(CERT_PROVIDER, tp)
                    .map(|id| (id, db.users[&id].clone())),
                _ => {
                    return validation_error("CertificateUserId is required.", "CertificateUserId")
                }
            };
            let Some((cert_id, user)) = cert_user else {
                return bad_request(50006, "The certificate user does not exist.");
            };
            if user["PrimaryAuthenticationProvider"]["Id"].as_i64() != Some(CERT_PROVIDER) {
                return bad_request(50007, "The user is not a certificate user.");
            }
            let id = db.id();
            let by_name = db.users[&by]["Name"].clone();
            let mut reg = json!({"Id": id, "AppName": name, "Description": Value::Null, "Disabled": false,
                "VisibleToCertificateUsers": true, "BidirectionalEnabled": false,
                "CertificateUserId": cert_id,
                "CertificateUserThumbPrint": user["PrimaryAuthenticationProvider"]["Identity"],
                "CertificateUser": user["Name"], "CreatedDate": now_string(), "CreatedByUserId": by,
                "CreatedByUserDisplayName": by_name});
            merge(&mut reg, &body, &REGISTRATION_WRITABLE);
            db.registrations.insert(id, reg.clone());
            json_response(StatusCode::CREATED, &reg)
        }
        (_, []) => bad_method(ctx),
        (m, [id, sub @ ..]) => {
            let id = match parse_id(ctx, id) {
                Ok(i) => i,
                Err(r) => return r,
            };
            registration_item(ctx, m, id, sub).await
        }
    }
}

async fn registration_item(ctx: &mut Ctx, m: Method, id: i64, sub: &[&str]) -> Response {
    let user = match ctx.user() {
        Ok(u) => u,
        Err(r) => return r,
    };
    {
        let db = ctx.app.db();
        match db.registrations.get(&id) {
            Some(r) if visible_registration(&db, user, r) => {}
            _ => return not_found("A2A registration", &id.to_string()),
        }
    }
    let needs_admin = m != Method::GET;
    if needs_admin {
        if let Err(r) = ctx.admin(&["PolicyAdmin", "AssetAdmin"]) {
            return r;
        }
    }
    let needs_body = m == Method::PUT || (m == Method::POST && sub == ["retrievableaccounts"]);
    let body = if needs_body {
        match ctx.json_object().await {
            Ok(b) => b,
            Err(r) => return r,
        }
    } else {
        Map::new()
    };
    match (m, sub) {
        (Method::GET, []) => {
            let v = ctx
                .app
                .db()
                .registrations
                .get(&id)
                .cloned()
                .unwrap_or(Value::Null);
            one(ctx, &v)
        }
        (Method::PUT, []) => {
            let mut db = ctx.app.db();
            let Some(reg) = db.registrations.get_mut(&id) else {
                return not_found("A2A registration", &id.to_string());
            };
            merge(reg, &body, &REGISTRATION_WRITABLE);
            let v = reg.clone();
            ok(&v)
        }
        (Method::DELETE, []) => {
            let mut db = ctx.app.db();
            db.registrations.remove(&id);
            db.retrievable.retain(|(r, _), _| *r != id);
            db.brokers.remove(&id);
            no_content()
        }
        (Method::GET, ["retrievableaccounts"]) => {
            let items: Vec<Value> = ctx
                .app
                .db()
                .retrievable
                .range((id, i64::MIN)..=(id, i64::MAX))
                .map(|(_, v)| v.clone())
                .collect();
            list(ctx, items)
        }
        (Method::POST, ["retrievableaccounts"]) => {
            let Some(acct_id) = body.get("AccountId").and_then(Value::as_i64) else {
                return validation_error("The AccountId field is required.", "AccountId");
            };
            let mut db = ctx.app.db();
            let Some(acct) = db.accounts.get(&acct_id).cloned() else {
                return bad_request(50006, &format!("Account {acct_id} does not exist."));
            };
            if db.retrievable.contains_key(&(id, acct_id)) {
                return bad_request(
                    50002,
                    "The account is already retrievable through this registration.",
                );
            }
            let mut v = retrievable_json(&acct, &api_key());
            if let Some(ips) = body.get("IpRestrictions").filter(|v| v.is_array()) {
                v["IpRestrictions"] = ips.clone();
            }
            db.retrievable.insert((id, acct_id), v.clone());
            ok(&v)
        }
        (m, ["retrievableaccounts", acct, rest @ ..]) => {
            let acct_id = match parse_id(ctx, acct) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let mut db = ctx.app.db();
            if !db.retrievable.contains_key(&(id, acct_id)) {
                return not_found("retrievable account", &acct_id.to_string());
            }
            match (m, rest) {
                (Method::GET, []) => {
                    let v = db.retrievable[&(id, acct_id)].clone();
                    drop(db);
                    one(ctx, &v)
                }
                (Method::PUT, []) => {
                    let Some(v) = db.retrievable.get_mut(&(id, acct_id)) else {
                        return not_found("retrievable account", &acct_id.to_string());
                    };
                    if let Some(ips) = body.get("IpRestrictions").filter(|v| v.is_array()) {
                        v["IpRestrictions"] = ips.clone();
                    }
                    ok(&v.clone())
                }
                (Method::DELETE, []) => {
                    db.retrievable.remove(&(id, acct_id));
                    no_content()
                }
                (Method::GET, ["apikey"]) => ok(&db.retrievable[&(id, acct_id)]["ApiKey"].clone()),
                (Method::POST, ["apikey"]) => {
                    let key = api_key();
                    if let Some(v) = db.retrievable.get_mut(&(id, acct_id)) {
                        v["ApiKey"] = json!(key);
                    }
                    ok(&json!(key))
                }
                _ => {
                    drop(db);
                    no_route(ctx)
                }
            }
        }
        (m, ["accessrequestbroker", rest @ ..]) => {
            let mut db = ctx.app.db();
            match (m, rest) {
                (Method::GET, []) => match db.brokers.get(&id).cloned() {
                    Some(v) => {
                        drop(db);
                        one(ctx, &v)
                    }
                    None => json_response(
                        StatusCode::OK,
                        &json!({"ApiKey": Value::Null, "IpRestrictions": [], "Users": [], "Groups": []}),
                    ),
                },
                (Method::PUT, []) => {
                    let existing_key = db
                        .brokers
                        .get(&id)
                        .and_then(|b| b["ApiKey"].as_str().map(str::to_string));
                    let mut users = Vec::new();
                    for u in body
                        .get("Users")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                    {
                        let uid = u
                            .get("UserId")
                            .or_else(|| u.get("Id"))
                            .and_then(Value::as_i64);
                        match uid.and_then(|i| db.users.get(&i).map(|x| (i, x["Name"].clone()))) {
                            Some((i, n)) => users.push(json!({"UserId": i, "UserName": n})),
                            None => return bad_request(50006, "A broker user does not exist."),
                        }
                    }
                    let created = existing_key.is_none();
                    let v = json!({"ApiKey": existing_key.unwrap_or_else(api_key),
                        "IpRestrictions": body.get("IpRestrictions").cloned().filter(Value::is_array).unwrap_or(json!([])),
                        "Users": users,
                        "Groups": body.get("Groups").cloned().filter(Value::is_array).unwrap_or(json!([]))});
                    db.brokers.insert(id, v.clone());
                    json_response(
                        if created {
                            StatusCode::CREATED
                        } else {
                            StatusCode::OK
                        },
                        &v,
                    )
                }
                (Method::DELETE, []) => {
                    db.brokers.remove(&id);
                    no_content()
                }
                (Method::GET, ["apikey"]) => match db.brokers.get(&id) {
                    Some(b) => ok(&b["ApiKey"].clone()),
                    None => not_found("access request broker of registration", &id.to_string()),
                },
                (Method::POST, ["apikey"]) => match db.brokers.get_mut(&id) {
                    Some(b) => {
                        let key = api_key();
                        b["ApiKey"] = json!(key);
                        ok(&json!(key))
                    }
                    None => not_found("access request broker of registration", &id.to_string()),
                },
                _ => {
                    drop(db);
                    no_route(ctx)
                }
            }
        }
        _ => no_route(ctx),
    }
}
