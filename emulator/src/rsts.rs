//! The fake rSTS: `/RSTS/oauth2/token`, `/RSTS/oauth2/DeviceLogin` and the
//! PKCE login controller `/RSTS/UserLogin/LoginController`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::{authorization_denied, json_response, no_route, ok, sts_error, Ctx};
use crate::state::*;

/// Lifetime of an authorization code.
const CODE_LIFETIME: Duration = Duration::from_secs(300);

pub(crate) async fn handle(ctx: &mut Ctx) -> Response {
    let l: Vec<String> = ctx.lower.iter().skip(1).cloned().collect();
    let l: Vec<&str> = l.iter().map(String::as_str).collect();
    match (ctx.method().clone(), l.as_slice()) {
        (Method::POST, ["oauth2", "token"]) => token(ctx).await,
        (Method::POST, ["oauth2", "devicelogin"]) => device_login(ctx).await,
        (Method::POST, ["userlogin", "logincontroller"]) => login_controller(ctx).await,
        (_, ["oauth2", "token"] | ["oauth2", "devicelogin"] | ["userlogin", "logincontroller"]) => {
            crate::api::bad_method(ctx)
        }
        _ => no_route(ctx),
    }
}

/// Reads a JSON or form-encoded body into a string map.
async fn params(ctx: &mut Ctx) -> Result<HashMap<String, String>, Response> {
    let ct = ctx
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bytes = ctx.bytes().await?;
    if ct.contains("json") {
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            sts_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request body is not valid JSON.",
            )
        })?;
        let Value::Object(m) = v else {
            return Err(sts_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "The request body must be a JSON object.",
            ));
        };
        Ok(m.into_iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect())
    } else {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .map(|v| v.into_iter().collect())
            .map_err(|_| {
                sts_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The request body could not be parsed.",
                )
            })
    }
}

fn scope_provider(scope: Option<&String>) -> String {
    scope
        .and_then(|s| {
            s.split_whitespace().find_map(|part| {
                part.to_ascii_lowercase()
                    .strip_prefix("rsts:sts:primaryproviderid:")
                    .map(|_| part["rsts:sts:primaryproviderid:".len()..].to_string())
            })
        })
        .unwrap_or_else(|| "local".to_string())
}

fn grant_disabled(grant: &str) -> Response {
    sts_error(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        &format!("The {grant} grant type is not allowed. Allowed grant types are set by the 'Allowed OAuth2 Grant Types' setting."),
    )
}

/// The HTML page the appliance shows when the device code grant is disabled.
fn device_code_disabled() -> Response {
    let body = "<!DOCTYPE html><html><head><title>Safeguard Login Error</title></head><body>\
        <h1>Login error</h1><p>The OAuth2 device code grant type is not allowed. \
        An administrator must enable it in the 'Allowed OAuth2 Grant Types' setting.</p>\
        <p>device code grant type is not allowed</p></body></html>";
    let mut r = (StatusCode::BAD_REQUEST, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn issue_sts_token(ctx: &Ctx, user_id: i64, provider: &str, grant: &str) -> Response {
    let (token, lifetime) = ctx.app.issue_sts_token(user_id, provider);
    ctx.app.count_signin(grant);
    ok(&json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "scope": format!("rsts:sts:primaryproviderid:{provider}"),
        // The appliance's token answer says so too (the vendor's API
        // tutorial shows `"success": true` beside the token).
        "success": true,
    }))
}

fn check_password(
    db: &Db,
    provider: &str,
    user: &str,
    password: &str,
) -> Result<i64, &'static str> {
    let provider_id =
        provider_by_rsts_id(provider).ok_or("The authentication provider is unknown.")?;
    if provider_id == CERT_PROVIDER {
        return Err("The certificate provider does not accept passwords.");
    }
    let id = db
        .find_user(provider_id, user)
        .ok_or("Invalid user name or password.")?;
    if db.passwords.get(&id).map(String::as_str) != Some(password) {
        return Err("Invalid user name or password.");
    }
    if db.users[&id]["Disabled"].as_bool().unwrap_or(false) {
        return Err("The user is disabled.");
    }
    Ok(id)
}

async fn token(ctx: &mut Ctx) -> Response {
    let p = match params(ctx).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let grant = p.get("grant_type").cloned().unwrap_or_default();
    let allowed = ctx.app.db().allowed_grants();
    let allows = |g: &str| allowed.iter().any(|a| a == g);
    match grant.as_str() {
        "password" => {
            if !allows("resourceowner") {
                return grant_disabled("resource owner password");
            }
            let provider = scope_provider(p.get("scope"));
            let (Some(user), Some(password)) = (p.get("username"), p.get("password")) else {
                return sts_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required.",
                );
            };
            let checked = check_password(&ctx.app.db(), &provider, user, password);
            match checked {
                Ok(id) => issue_sts_token(ctx, id, &provider, "password"),
                Err(e) => sts_error(StatusCode::UNAUTHORIZED, "invalid_grant", e),
            }
        }
        "client_credentials" => {
            if !allows("clientcredentials") {
                return grant_disabled("client credentials");
            }
            let provider = scope_provider(p.get("scope"));
            let Some(cert) = ctx.client_certificate().await else {
                return authorization_denied();
            };
            let found = {
                let db = ctx.app.db();
                if !crate::state::is_trusted(&db, &cert.der) {
                    Err("The client certificate is not issued by a trusted certificate authority.")
                } else {
                    let provider_id = provider_by_rsts_id(&provider).unwrap_or(CERT_PROVIDER);
                    db.find_user(provider_id, &cert.thumbprint)
                        .filter(|id| {
                            db.users[id]["PrimaryAuthenticationProvider"]["Id"].as_i64()
                                == Some(CERT_PROVIDER)
                        })
                        .ok_or("The client certificate is not associated with a certificate user.")
                }
            };
            match found {
                Ok(id) => issue_sts_token(ctx, id, "certificate", "client_credentials"),
                Err(e) => sts_error(StatusCode::FORBIDDEN, "access_denied", e),
            }
        }
        "authorization_code" => {
            if !allows("authorizationcode") {
                return grant_disabled("authorization code");
            }
            let code = p.get("code").cloned().unwrap_or_default();
            let verifier = p.get("code_verifier").cloned().unwrap_or_default();
            let redirect = p.get("redirect_uri").cloned().unwrap_or_default();
            let entry = ctx.app.db().auth_codes.remove(&code);
            let Some(entry) = entry else {
                return sts_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The authorization code is invalid or was already used.",
                );
            };
            if entry.expires <= Instant::now() {
                return sts_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The authorization code has expired.",
                );
            }
            if entry.redirect_uri != redirect {
                return sts_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The redirect_uri does not match the authorization request.",
                );
            }
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if verifier.is_empty() || computed != entry.challenge {
                return sts_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The code_verifier does not match the code_challenge.",
                );
            }
            issue_sts_token(ctx, entry.user_id, &entry.provider, "authorization_code")
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            if !allows("devicecode") {
                return device_code_disabled();
            }
            let code = p.get("device_code").cloned().unwrap_or_default();
            let now = Instant::now();
            let outcome = {
                let mut db = ctx.app.db();
                match db.device_codes.get_mut(&code) {
                    None => Err(("invalid_grant", "The device code is unknown.")),
                    Some(d) if d.expires <= now => {
                        Err(("expired_token", "The device code has expired."))
                    }
                    Some(d) => match d.status.clone() {
                        DeviceStatus::Denied => {
                            Err(("access_denied", "The user denied the request."))
                        }
                        DeviceStatus::Redeemed => {
                            Err(("invalid_grant", "The device code was already used."))
                        }
                        DeviceStatus::Pending => {
                            let too_fast = std::mem::take(&mut d.slow_down_next)
                                || d.last_poll.is_some_and(|t| {
                                    now.duration_since(t) < Duration::from_secs(d.interval)
                                });
                            d.last_poll = Some(now);
                            if too_fast {
                                d.interval += 5;
                                Err((
                                    "slow_down",
                                    "Polling too often; wait longer between requests.",
                                ))
                            } else {
                                Err((
                                    "authorization_pending",
                                    "The user has not completed the login yet.",
                                ))
                            }
                        }
                        DeviceStatus::Approved(user) => {
                            d.status = DeviceStatus::Redeemed;
                            Ok((user, d.provider.clone()))
                        }
                    },
                }
            };
            match outcome {
                Ok((user, provider)) => issue_sts_token(ctx, user, &provider, "device_code"),
                Err((e, d)) => sts_error(StatusCode::BAD_REQUEST, e, d),
            }
        }
        "" => sts_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required.",
        ),
        other => sts_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("The grant type '{other}' is not supported."),
        ),
    }
}

fn user_code() -> String {
    const LETTERS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut s = String::new();
    for i in 0..8 {
        if i == 4 {
            s.push('-');
        }
        s.push(LETTERS[rand::random_range(0..LETTERS.len())] as char);
    }
    s
}

async fn device_login(ctx: &mut Ctx) -> Response {
    let p = match params(ctx).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !ctx
        .app
        .db()
        .allowed_grants()
        .iter()
        .any(|g| g == "devicecode")
    {
        return device_code_disabled();
    }
    let provider = scope_provider(p.get("scope"));
    if provider_by_rsts_id(&provider).is_none() {
        return sts_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The authentication provider in the scope is unknown.",
        );
    }
    let device_code = random_token(32);
    let code = user_code();
    let interval = ctx.app.device_interval.load(Ordering::SeqCst);
    let lifetime = ctx.app.device_lifetime;
    ctx.app.db().device_codes.insert(
        device_code.clone(),
        DeviceCode {
            user_code: code.clone(),
            provider,
            expires: Instant::now() + lifetime,
            interval,
            last_poll: None,
            status: DeviceStatus::Pending,
            slow_down_next: false,
        },
    );
    let uri = format!("https://{}/RSTS/device", ctx.app.host);
    ok(&json!({
        "device_code": device_code,
        "user_code": code,
        "verification_uri": uri,
        "verification_uri_complete": format!("{uri}?user_code={code}"),
        "expires_in": lifetime.as_secs(),
        "interval": interval,
    }))
}

fn cookie(ctx: &Ctx, name: &str) -> Option<String> {
    ctx.parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

fn login_failure(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({"Message": message, "error": "access_denied", "error_description": message}),
    )
}

async fn login_controller(ctx: &mut Ctx) -> Response {
    let step = ctx.q("loginrequeststep").unwrap_or_default().to_string();
    let challenge = ctx.q("code_challenge").unwrap_or_default().to_string();
    let method = ctx
        .q("code_challenge_method")
        .unwrap_or_default()
        .to_string();
    let response_type = ctx.q("response_type").unwrap_or_default().to_string();
    let redirect = ctx.q("redirect_uri").unwrap_or_default().to_string();
    let form = match params(ctx).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if response_type != "code" || method != "S256" || challenge.is_empty() {
        return login_failure(
            StatusCode::BAD_REQUEST,
            "response_type=code, code_challenge_method=S256 and code_challenge are required.",
        );
    }
    let csrf_form = form.get("csrfTokenTextbox").cloned().unwrap_or_default();
    let csrf_cookie = cookie(ctx, "CsrfToken").unwrap_or_default();
    if csrf_form.is_empty() || csrf_form != csrf_cookie {
        return login_failure(
            StatusCode::BAD_REQUEST,
            "The CSRF token is missing or does not match the CsrfToken cookie.",
        );
    }
    let key = format!("{csrf_form}|{challenge}");
    let provider = form
        .get("directoryComboBox")
        .cloned()
        .unwrap_or_else(|| "local".into());
    let user = form.get("usernameTextbox").cloned().unwrap_or_default();
    let password = form.get("passwordTextbox").cloned().unwrap_or_default();
    let app = ctx.app.clone();
    let mut db = app.db();
    match step.as_str() {
        "1" => {
            db.pkce.insert(
                key,
                PkceSession {
                    provider: provider.clone(),
                    created: Some(Instant::now()),
                    ..Default::default()
                },
            );
            ok(&json!({"Step": 1, "Providers": providers()}))
        }
        "3" => {
            let checked = check_password(&db, &provider, &user, &password);
            let id = match checked {
                Ok(id) => id,
                Err(e) => return login_failure(StatusCode::UNAUTHORIZED, e),
            };
            let needs_mfa = db.users[&id]["SecondaryAuthenticationProvider"]["Id"]
                .as_i64()
                .unwrap_or(0)
                != 0;
            let session = db.pkce.entry(key).or_insert_with(|| PkceSession {
                created: Some(Instant::now()),
                ..Default::default()
            });
            session.user_id = Some(id);
            session.provider = provider;
            session.needs_mfa = needs_mfa;
            session.mfa_ok = false;
            if needs_mfa {
                ok(
                    &json!({"SecondaryProviderID": OTP_PROVIDER_ID, "SecondaryProviderName": "Emulator One-Time Password"}),
                )
            } else {
                ok(&json!({"Step": 3, "PrimaryAuthenticated": true}))
            }
        }
        "7" => match db.pkce.get_mut(&key) {
            Some(s) if s.user_id.is_some() && s.needs_mfa => {
                let state = random_token(24);
                s.mfa_state = Some(state.clone());
                ok(&json!({"State": state, "Message": "Enter the one-time password."}))
            }
            _ => login_failure(
                StatusCode::BAD_REQUEST,
                "Primary authentication has not been completed.",
            ),
        },
        "5" => {
            let otp = form
                .get("secondaryLoginTextbox")
                .cloned()
                .unwrap_or_default();
            let state = form
                .get("secondaryAuthenticationStateTextbox")
                .cloned()
                .unwrap_or_default();
            match db.pkce.get_mut(&key) {
                Some(s) if s.user_id.is_some() && s.needs_mfa => {
                    if s.mfa_state.as_deref() != Some(state.as_str()) || state.is_empty() {
                        json_response(
                            StatusCode::NON_AUTHORITATIVE_INFORMATION,
                            &json!({"Message": "The secondary authentication state is invalid; start again."}),
                        )
                    } else if otp != crate::model::MFA_OTP {
                        json_response(
                            StatusCode::NON_AUTHORITATIVE_INFORMATION,
                            &json!({"Message": "The one-time password is incorrect."}),
                        )
                    } else {
                        s.mfa_ok = true;
                        ok(&json!({"Step": 5, "SecondaryAuthenticated": true}))
                    }
                }
                _ => login_failure(
                    StatusCode::BAD_REQUEST,
                    "Primary authentication has not been completed.",
                ),
            }
        }
        "6" => {
            let session = db.pkce.get(&key);
            let ready = session.and_then(|s| {
                let id = s.user_id?;
                (!s.needs_mfa || s.mfa_ok).then(|| (id, s.provider.clone()))
            });
            let Some((id, provider)) = ready else {
                return login_failure(
                    StatusCode::UNAUTHORIZED,
                    "Authentication has not been completed.",
                );
            };
            db.pkce.remove(&key);
            let code = random_token(32);
            db.auth_codes.insert(
                code.clone(),
                AuthCode {
                    user_id: id,
                    challenge,
                    redirect_uri: redirect.clone(),
                    expires: Instant::now() + CODE_LIFETIME,
                    provider,
                },
            );
            ok(&json!({"RelyingPartyUrl": format!("{redirect}?code={code}")}))
        }
        other => login_failure(
            StatusCode::BAD_REQUEST,
            &format!("Unsupported loginRequestStep '{other}'."),
        ),
    }
}
