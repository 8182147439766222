//! `/service/a2a/v4/...`: credential retrieval and brokered access requests.
//! Every call needs the registration's client certificate on the TLS
//! connection (asked for after the handshake in post-handshake mode) and
//! `Authorization: A2A <api key>`.

use axum::response::Response;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::access::create_access_request;
use super::core::{set_account_password, set_account_ssh_key};
use super::*;
use crate::sshkey::KeyFormat;
use crate::state::is_trusted;
use crate::tls::PeerCertificate;

/// Authorization header keys: `A2A key1 [key2 ...]`.
pub(crate) fn a2a_keys(ctx: &Ctx) -> Option<Vec<String>> {
    let h = ctx.header("authorization")?;
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("a2a") {
        return None;
    }
    let keys: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
    (!keys.is_empty()).then_some(keys)
}

/// Checks that `cert` is the (trusted) certificate of registration `reg`.
pub(crate) fn registration_accepts(
    ctx: &Ctx,
    reg: i64,
    cert: &PeerCertificate,
) -> Result<(), Response> {
    let db = ctx.app.db();
    let Some(r) = db.registrations.get(&reg) else {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            60094,
            "Authorization is denied.",
        ));
    };
    let matches = r["CertificateUserThumbPrint"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case(&cert.thumbprint));
    let user_ok = r["CertificateUserId"]
        .as_i64()
        .and_then(|id| db.users.get(&id))
        .is_some_and(|u| !u["Disabled"].as_bool().unwrap_or(false));
    if !matches || !user_ok || !is_trusted(&db, &cert.der) {
        return Err(authorization_denied());
    }
    if r["Disabled"].as_bool().unwrap_or(false) {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            60095,
            "The A2A registration is disabled.",
        ));
    }
    Ok(())
}

/// What a certificate-authenticated caller of `core/v4/A2ARegistrations`
/// may see: registration id to the retrievable accounts (`None`: all of
/// them).
pub(crate) type CertificateView =
    std::collections::BTreeMap<i64, Option<std::collections::BTreeSet<i64>>>;

/// The registrations (and accounts) a caller without a user token sees on
/// the core `A2ARegistrations` GETs, which core.json documents as open to
/// "certificate based and API key authentication" (their 403 answers).
///
/// * Client certificate alone: the certificate user's registrations, all
///   their accounts. This is how safeguard-ps' `Get-SafeguardA2aRetrievableAccount`
///   calls it (`Invoke-SafeguardA2aMethodWithCertificate -Service core
///   -RelativeUrl "A2ARegistrations"`, no `Authorization` header).
/// * Client certificate and `Authorization: A2A <key> ...`: only the
///   registration and account each key retrieves (keys of other
///   certificates: 403 / 60094; unknown keys: 403 / 60096).
///
/// Either way only registrations with application self discovery on
/// (`VisibleToCertificateUsers`, "whether application self discovery is
/// enabled for the cert user") are visible.
///
/// No certificate, or one that is not a certificate user's: 401 like any
/// unauthenticated core call.
pub(crate) async fn certificate_view(ctx: &mut Ctx) -> Result<CertificateView, Response> {
    let keys = a2a_keys(ctx);
    let Some(cert) = ctx.client_certificate().await else {
        return Err(if keys.is_some() {
            authorization_denied()
        } else {
            unauthorized()
        });
    };
    let mut view = CertificateView::new();
    if let Some(keys) = keys {
        for key in keys {
            let Some((reg, acct)) = ctx.app.db().api_key_owner(&key) else {
                return Err(bad_key());
            };
            registration_accepts(ctx, reg, &cert)?;
            if let Some(Some(accounts)) = view.get_mut(&reg) {
                accounts.insert(acct);
            } else {
                view.insert(reg, Some([acct].into_iter().collect()));
            }
        }
    } else {
        let db = ctx.app.db();
        let user = db
            .find_user(crate::state::CERT_PROVIDER, &cert.thumbprint)
            .filter(|u| !db.users[u]["Disabled"].as_bool().unwrap_or(false))
            .filter(|_| is_trusted(&db, &cert.der));
        let Some(user) = user else {
            return Err(unauthorized());
        };
        for (id, r) in &db.registrations {
            if r["CertificateUserId"].as_i64() == Some(user) {
                view.insert(*id, None);
            }
        }
    }
    let db = ctx.app.db();
    view.retain(|id, _| {
        db.registrations
            .get(id)
            .is_some_and(|r| r["VisibleToCertificateUsers"].as_bool().unwrap_or(false))
    });
    Ok(view)
}

fn bad_key() -> Response {
    api_error(
        StatusCode::FORBIDDEN,
        60096,
        "Invalid API key or the API key is not authorized for this request.",
    )
}

fn missing_key() -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        60108,
        "Authorization is required for this request. Send 'Authorization: A2A <api key>'.",
    )
}

pub(crate) async fn handle(ctx: &mut Ctx) -> Response {
    let (_, lower) = rest(ctx, 3);
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = ctx.method().clone();
    let known = matches!(
        l.as_slice(),
        ["credentials"]
            | ["credentials", "password"]
            | ["credentials", "sshkey"]
            | ["accessrequests"]
    );
    if !known {
        return no_route(ctx);
    }
    let Some(cert) = ctx.client_certificate().await else {
        return authorization_denied();
    };
    let Some(keys) = a2a_keys(ctx) else {
        return missing_key();
    };
    let key = keys[0].clone();
    match (m, l.as_slice()) {
        (Method::GET, ["credentials"]) => {
            let Some((reg, acct)) = ctx.app.db().api_key_owner(&key) else {
                return bad_key();
            };
            if let Err(r) = registration_accepts(ctx, reg, &cert) {
                return r;
            }
            let kind = ctx.q("type").unwrap_or_default().to_ascii_lowercase();
            let db = ctx.app.db();
            match kind.as_str() {
                "password" => match db.account_passwords.get(&acct) {
                    Some(p) => ok(&json!(p)),
                    None => api_error(StatusCode::NOT_FOUND, 70003, "The account has no password."),
                },
                "privatekey" => {
                    let f = ctx.q("keyformat").or_else(|| ctx.q("key_format")).unwrap_or("openssh");
                    let Some(format) = KeyFormat::parse(f) else {
                        return validation_error("keyFormat must be openssh, ssh2 or putty.", "keyFormat");
                    };
                    match db.account_ssh_keys.get(&acct) {
                        Some(k) => match k.key.format(format) {
                            Ok(text) => ok(&json!(text)),
                            Err(e) => validation_error(&e, "keyFormat"),
                        },
                        None => api_error(StatusCode::NOT_FOUND, 70003, "The account has no SSH key."),
                    }
                }
                "apikey" => ok(&Value::Array(
                    db.account_api_keys.get(&acct).cloned().unwrap_or_default(),
                )),
                "" => validation_error("The type parameter is required (password, privatekey or apikey).", "type"),
                other => validation_error(&format!("'{other}' is not a valid credential type (password, privatekey or apikey)."), "type"),
            }
        }
        (Method::PUT, ["credentials", what]) => {
            let Some((reg, acct)) = ctx.app.db().api_key_owner(&key) else {
                return bad_key();
            };
            if let Err(r) = registration_accepts(ctx, reg, &cert) {
                return r;
            }
            let bidirectional = ctx.app.db().registrations[&reg]["BidirectionalEnabled"]
                .as_bool()
                .unwrap_or(false);
            if !bidirectional {
                return api_error(StatusCode::FORBIDDEN, 60097, "The A2A registration does not allow setting credentials (BidirectionalEnabled is off).");
            }
            if *what == "password" {
                let pw = match ctx.json_string().await {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                if pw.is_empty() {
                    return validation_error("The password must not be empty.", "body");
                }
                match set_account_password(ctx, acct, pw) {
                    Ok(()) => no_content(),
                    Err(r) => r,
                }
            } else {
                if let Some(f) = ctx.q("keyformat").or_else(|| ctx.q("key_format")) {
                    if KeyFormat::parse(f).is_none() {
                        return validation_error(
                            "keyFormat must be openssh, ssh2 or putty.",
                            "keyFormat",
                        );
                    }
                }
                let body = match ctx.json_object().await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                // 204 like the password (openapi/a2a.json, written from the
                // vendor's SDKs, which read no body from either).
                match set_account_ssh_key(ctx, acct, &body) {
                    Ok(_) => no_content(),
                    Err(r) => r,
                }
            }
        }
        (Method::POST, ["accessrequests"]) => {
            let Some(reg) = ctx.app.db().broker_key_owner(&key) else {
                return bad_key();
            };
            if let Err(r) = registration_accepts(ctx, reg, &cert) {
                return r;
            }
            let body = match ctx.json_object().await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let for_user = {
                let db = ctx.app.db();
                let by_id = body.get("ForUserId").and_then(Value::as_i64);
                let by_name = body.get("ForUserName").and_then(Value::as_str);
                match (by_id, by_name) {
                    (Some(id), _) => db.users.contains_key(&id).then_some(id),
                    (None, Some(name)) => db.users.iter().find_map(|(id, u)| {
                        u["Name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name))
                            .then_some(*id)
                    }),
                    _ => {
                        return validation_error(
                            "ForUserId or ForUserName is required.",
                            "ForUserId",
                        )
                    }
                }
            };
            let Some(for_user) = for_user else {
                return bad_request(50006, "The user the request is for does not exist.");
            };
            let allowed = ctx.app.db().brokers[&reg]["Users"]
                .as_array()
                .is_some_and(|u| u.iter().any(|x| x["UserId"].as_i64() == Some(for_user)));
            if !allowed {
                return api_error(
                    StatusCode::FORBIDDEN,
                    60098,
                    "The access request broker may not request access for this user.",
                );
            }
            match create_access_request(ctx, for_user, &body) {
                Ok(v) => json_response(StatusCode::CREATED, &v),
                Err(r) => r,
            }
        }
        _ => bad_method(ctx),
    }
}
