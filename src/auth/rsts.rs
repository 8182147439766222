//! The rSTS conversations behind each sign-in strategy, and the exchange of
//! the rSTS access token for a Safeguard user token.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use rand::Rng;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::{BrowserPkceAuth, DeviceCodeAuth, PasswordAuth, PkceAuth};
use crate::error::{ApiError, DecodeError, Error, Result, StsError};
use crate::limits::Limits;
use crate::secret;

/// The redirect address of installed applications (no browser involved).
const INSTALLED_APP: &str = "urn:InstalledApplication";

/// What a device-code sign-in asks a person to do.
#[derive(Clone, Debug)]
pub struct DeviceCodePrompt {
    /// The code to type at [`verification_uri`](Self::verification_uri).
    pub user_code: String,
    /// Where to approve the sign-in.
    pub verification_uri: String,
    /// The address with the code filled in, when the appliance gives one.
    pub verification_uri_complete: Option<String>,
    /// How long the code stays valid.
    pub expires_in: Duration,
}

/// Talks to one appliance's rSTS and token endpoints over bearer transport.
///
/// `http` follows no redirect: every request here carries a credential or a
/// token of its own (see [`crate::limits`]).
pub(crate) struct Sts<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) host: &'a crate::Host,
    pub(crate) limits: &'a Limits,
    /// The provider ids resolved so far (one client's).
    pub(crate) providers: &'a ProviderIds,
}

/// The rSTS provider ids a client resolved, by the string its strategy
/// names: the provider list is fetched when a name is not known yet, not
/// at every sign-in and refresh.
#[derive(Debug, Default)]
pub(crate) struct ProviderIds(Mutex<HashMap<String, String>>);

impl ProviderIds {
    fn ids(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // Held for a lookup or an insert, never across an await; a
        // poisoned map is still a valid map.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, wanted: &str) -> Option<String> {
        self.ids().get(wanted).cloned()
    }

    fn insert(&self, wanted: &str, id: String) {
        self.ids().insert(wanted.to_owned(), id);
    }

    /// Forgets every id (after a refused sign-in: the provider may have
    /// been renamed or removed, so the next sign-in looks again).
    pub(crate) fn forget(&self) {
        self.ids().clear();
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
}

#[derive(Deserialize)]
struct Provider {
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "RstsProviderId", default)]
    rsts_provider_id: Option<String>,
}

impl<'a> Sts<'a> {
    fn url(&self, path: &str) -> String {
        self.host.url(path)
    }

    /// The status and body of an answer, read within the limits.
    async fn read(&self, response: reqwest::Response, label: &str) -> Result<(StatusCode, Bytes)> {
        crate::limits::read_body(response, label, self.limits).await
    }

    /// Resolves a caller's provider string to the rSTS provider id:
    /// case-insensitively on `RstsProviderId`, then `Name`, then as a
    /// substring of `RstsProviderId`. The built-ins `local` and
    /// `certificate` resolve to themselves when the list lacks them.
    ///
    /// An id resolved before is taken from [`ProviderIds`]; otherwise the
    /// list is fetched (once) and the id found is kept. A provider the list
    /// lacks is not remembered, so the next sign-in fetches the list again
    /// (an administrator may have added it meanwhile).
    pub(crate) async fn resolve_provider(&self, wanted: &str) -> Result<String> {
        if let Some(id) = self.providers.get(wanted) {
            return Ok(id);
        }
        let id = self.fetch_provider(wanted).await?;
        self.providers.insert(wanted, id.clone());
        Ok(id)
    }

    /// Fetches the provider list and finds `wanted` in it (see
    /// [`Sts::resolve_provider`]).
    async fn fetch_provider(&self, wanted: &str) -> Result<String> {
        let response = self
            .http
            .get(self.url("/service/core/v4/AuthenticationProviders"))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        let label = "GET /service/core/v4/AuthenticationProviders";
        let (status, body) = self.read(response, label).await?;
        if !status.is_success() {
            return Err(Error::from_api(ApiError::from_parts(
                status,
                label.into(),
                body,
            )));
        }
        let providers: Vec<Provider> = serde_json::from_slice(&body)
            .map_err(|e| Error::Decode(DecodeError::new(Some(status), e, &body)))?;
        pick_provider(&providers, wanted).ok_or_else(|| {
            let known: Vec<String> = providers
                .iter()
                .filter_map(|p| p.rsts_provider_id.clone().or_else(|| p.name.clone()))
                .collect();
            Error::Config(format!(
                "no authentication provider matches {wanted:?}; the appliance has: {}",
                known.join(", ")
            ))
        })
    }

    async fn scope(&self, provider: &str) -> Result<String> {
        Ok(format!(
            "rsts:sts:primaryproviderid:{}",
            self.resolve_provider(provider).await?
        ))
    }

    /// Posts a JSON object of string fields (a credential among them) to
    /// the token endpoint and reads the access token.
    async fn token_request(&self, fields: &[(&str, &str)]) -> Result<SecretString> {
        let response = self
            .http
            .post(self.url("/RSTS/oauth2/token"))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(secret::body(secret::json_object(fields)))
            .send()
            .await?;
        self.read_token_answer(response).await
    }

    /// Resource-owner password grant.
    pub(crate) async fn password(&self, auth: &PasswordAuth) -> Result<SecretString> {
        let scope = self.scope(&auth.provider).await?;
        self.token_request(&[
            ("grant_type", "password"),
            ("username", &auth.username),
            ("password", auth.password.expose_secret()),
            ("scope", &scope),
        ])
        .await
    }

    /// The browser-less PKCE flow through the login controller.
    pub(crate) async fn pkce(&self, auth: &PkceAuth) -> Result<SecretString> {
        let provider = self.resolve_provider(&auth.provider).await?;
        let pkce = PkceSecrets::new();
        let csrf = random_token(32);
        // Borrowed, not copied: each step's body is the one copy (wiped).
        let (otp, state): (SecretString, String);
        let mut form: Vec<(&str, &str)> = vec![
            ("directoryComboBox", &provider),
            ("usernameTextbox", &auth.username),
            ("passwordTextbox", auth.password.expose_secret()),
            ("csrfTokenTextbox", &csrf),
        ];
        let step = |n: u8, form: &[(&str, &str)]| {
            let url = format!(
                "{}?response_type=code&code_challenge_method=S256&code_challenge={}&redirect_uri={}&loginRequestStep={n}",
                self.url("/RSTS/UserLogin/LoginController"),
                pkce.challenge,
                INSTALLED_APP
            );
            self.http
                .request(Method::POST, url)
                .header(reqwest::header::COOKIE, format!("CsrfToken={csrf}"))
                .header(reqwest::header::ACCEPT, "application/json")
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(secret::body(secret::form(form)))
                .send()
        };
        let answer = |r: reqwest::Response| async move {
            let (status, body) = self.read(r, "POST /RSTS/UserLogin/LoginController").await?;
            if status != StatusCode::OK {
                return Err(Error::Sts(StsError::from_parts(status, &body)));
            }
            Ok::<_, Error>(serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default())
        };

        answer(step(1, &form).await?).await?;
        let primary = answer(step(3, &form).await?).await?;
        let needs_mfa = primary
            .get("SecondaryProviderID")
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty());
        if needs_mfa {
            let source = auth.otp.as_ref().ok_or_else(|| {
                Error::Config(
                    "this user needs multi-factor authentication: give PkceAuth a one_time_password".into(),
                )
            })?;
            let init = answer(step(7, &form).await?).await?;
            state = init
                .get("State")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            otp = source.get();
            form.push(("secondaryLoginTextbox", otp.expose_secret()));
            form.push(("secondaryAuthenticationStateTextbox", &state));
            let r = step(5, &form).await?;
            if r.status() == StatusCode::NON_AUTHORITATIVE_INFORMATION {
                let (_, body) = self.read(r, "POST /RSTS/UserLogin/LoginController").await?;
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("Message").and_then(|m| m.as_str()).map(str::to_owned));
                return Err(Error::Sts(StsError {
                    status: StatusCode::NON_AUTHORITATIVE_INFORMATION,
                    error: "mfa_failed".into(),
                    description: Some(
                        message.unwrap_or_else(|| "multi-factor authentication failed".into()),
                    ),
                }));
            }
            answer(r).await?;
        }
        let finish = answer(step(6, &form).await?).await?;
        let relying = finish
            .get("RelyingPartyUrl")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Error::Decode(DecodeError::new(
                    Some(StatusCode::OK),
                    "the login controller's last step has no RelyingPartyUrl",
                    b"",
                ))
            })?;
        let code = query_value(relying, "code")
            .map(Zeroizing::new)
            .ok_or_else(|| {
                Error::Decode(DecodeError::new(
                    Some(StatusCode::OK),
                    "the RelyingPartyUrl carries no code",
                    b"",
                ))
            })?;
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("redirect_uri", INSTALLED_APP),
            ("code", &code),
            ("code_verifier", pkce.verifier.expose_secret()),
        ])
        .await
    }

    /// The device-code flow (RFC 8628).
    pub(crate) async fn device_code(&self, auth: &DeviceCodeAuth) -> Result<SecretString> {
        let scope = self.scope(&auth.provider).await?;
        let response = self
            .http
            .post(self.url("/RSTS/oauth2/DeviceLogin"))
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&json!({ "client_id": "", "scope": scope }))
            .send()
            .await?;
        let (status, body) = self.read(response, "POST /RSTS/oauth2/DeviceLogin").await?;
        if !status.is_success() {
            return Err(Error::Sts(StsError::from_parts(status, &body)));
        }
        #[derive(Deserialize)]
        struct Start {
            device_code: SecretString,
            user_code: String,
            verification_uri: String,
            verification_uri_complete: Option<String>,
            expires_in: Option<u64>,
            interval: Option<u64>,
        }
        let start: Start = serde_json::from_slice(&body).map_err(|e| {
            // An HTML page here says the grant is disabled.
            if body.starts_with(b"<") || !body.starts_with(b"{") {
                Error::Sts(StsError::from_parts(status, &body))
            } else {
                Error::Decode(DecodeError::new(Some(status), e, &body))
            }
        })?;
        let expires_in = Duration::from_secs(start.expires_in.unwrap_or(300));
        (auth.prompt)(&DeviceCodePrompt {
            user_code: start.user_code,
            verification_uri: start.verification_uri,
            verification_uri_complete: start.verification_uri_complete,
            expires_in,
        });
        let wait = auth.max_wait.map_or(expires_in, |w| w.min(expires_in));
        // Whatever `expires_in` the server sends, the deadline is a time.
        let deadline = Instant::now()
            .checked_add(wait)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 3600));
        let interval = Duration::from_secs(start.interval.unwrap_or(5).max(1));
        let device_code = start.device_code;
        poll_device_code(interval, deadline.into(), &auth.cancel, || async {
            self.token_request(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.expose_secret()),
                ("client_id", ""),
            ])
            .await
        })
        .await
    }

    /// PKCE in the system browser with a loopback redirect listener.
    pub(crate) async fn browser_pkce(&self, auth: &BrowserPkceAuth) -> Result<SecretString> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let redirect = format!("http://127.0.0.1:{port}/");
        let pkce = PkceSecrets::new();
        let state = random_token(16);
        let mut url = url::Url::parse(&self.url("/RSTS/Login"))
            .map_err(|e| Error::Config(format!("bad host: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("code_challenge_method", "S256")
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("redirect_uri", &redirect)
            .append_pair("state", &state);
        if let Some(p) = &auth.provider {
            let id = self.resolve_provider(p).await?;
            url.query_pairs_mut().append_pair("primaryProviderID", &id);
        }
        (auth.open)(url.as_str())
            .map_err(|e| Error::Config(format!("cannot open the browser: {e}")))?;
        let code = tokio::time::timeout(auth.timeout, receive_redirect(&listener, &state))
            .await
            .map_err(|_| Error::SignInIncomplete("no browser redirect arrived in time".into()))??;
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("redirect_uri", &redirect),
            ("code", code.expose_secret()),
            ("code_verifier", pkce.verifier.expose_secret()),
        ])
        .await
    }

    /// The client-credentials grant with a client certificate, sent over the
    /// certificate transport (which can answer the appliance's certificate
    /// request made after the handshake).
    pub(crate) async fn certificate(
        &self,
        auth: &super::CertificateAuth,
        tls: &crate::tls::TlsOptions,
        proxy: &crate::proxy::Rules,
        timeout: Option<Duration>,
    ) -> Result<SecretString> {
        let scope = self
            .scope(auth.provider.as_deref().unwrap_or("certificate"))
            .await?;
        let transport = crate::cert_transport::CertTransport::new(
            self.host,
            tls,
            auth.identity.clone(),
            timeout,
            *self.limits,
            proxy,
        )?;
        let mut request = reqwest::Request::new(
            Method::POST,
            url::Url::parse(&self.url("/RSTS/oauth2/token"))
                .map_err(|e| Error::Config(format!("bad host: {e}")))?,
        );
        let body = serde_json::to_vec(&json!({
            "grant_type": "client_credentials",
            "scope": scope,
        }))
        .map_err(|e| Error::Config(e.to_string()))?;
        request.headers_mut().insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        request.headers_mut().insert(
            reqwest::header::ACCEPT,
            reqwest::header::HeaderValue::from_static("application/json"),
        );
        *request.body_mut() = Some(body.into());
        self.read_token_answer(transport.execute(request).await?)
            .await
    }

    /// Exchanges an rSTS access token for a Safeguard user token.
    pub(crate) async fn login_response(&self, sts_token: &SecretString) -> Result<SecretString> {
        let response = self
            .http
            .post(self.url("/service/core/v4/Token/LoginResponse"))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(secret::body(secret::json_object(&[(
                "StsAccessToken",
                sts_token.expose_secret(),
            )])))
            .send()
            .await?;
        let label = "POST /service/core/v4/Token/LoginResponse";
        let (status, body) = self.read(response, label).await?;
        if !status.is_success() {
            return Err(Error::from_api(ApiError::from_parts(
                status,
                label.into(),
                body,
            )));
        }
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "Status")]
            status: Option<String>,
            #[serde(rename = "UserToken")]
            user_token: Option<SecretString>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| Error::Decode(DecodeError::new(Some(status), e, b"")))?;
        match (answer.status.as_deref(), answer.user_token) {
            (Some("Success") | None, Some(token)) => Ok(token),
            (other, _) => Err(Error::Sts(StsError {
                status,
                error: "login_response".into(),
                description: Some(format!(
                    "the appliance did not issue a user token (Status {})",
                    other.unwrap_or("missing")
                )),
            })),
        }
    }
}

/// Polls for a device-code token every `interval` (5 s more after each
/// `slow_down`) until it is issued, denied or expired, `deadline` passes, or
/// `cancel` fires. `poll` makes one token request.
pub(crate) async fn poll_device_code<F, Fut>(
    mut interval: Duration,
    deadline: tokio::time::Instant,
    cancel: &tokio_util::sync::CancellationToken,
    mut poll: F,
) -> Result<SecretString>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<SecretString>>,
{
    let expired =
        || Error::SignInIncomplete("the device code expired before it was approved".into());
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(expired());
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                return Err(Error::SignInIncomplete("the device code sign-in was cancelled".into()));
            }
            _ = tokio::time::sleep(interval.min(deadline - now)) => {}
        }
        match poll().await {
            Ok(token) => return Ok(token),
            Err(Error::Sts(e)) => match e.error.as_str() {
                "authorization_pending" => {}
                "slow_down" => interval = interval.saturating_add(Duration::from_secs(5)),
                "access_denied" => {
                    return Err(Error::SignInIncomplete(
                        "the device code sign-in was denied".into(),
                    ))
                }
                "expired_token" => return Err(expired()),
                _ => return Err(Error::Sts(e)),
            },
            Err(e) => return Err(e),
        }
    }
}

impl Sts<'_> {
    /// Reads a token endpoint answer: the access token, or the STS error.
    async fn read_token_answer(&self, response: reqwest::Response) -> Result<SecretString> {
        let (status, body) = self.read(response, "POST /RSTS/oauth2/token").await?;
        if !status.is_success() {
            return Err(Error::Sts(StsError::from_parts(status, &body)));
        }
        serde_json::from_slice::<TokenAnswer>(&body)
            .map(|t| t.access_token)
            .map_err(|e| Error::Decode(DecodeError::new(Some(status), e, b"")))
    }
}

fn pick_provider(providers: &[Provider], wanted: &str) -> Option<String> {
    let eq = |s: &Option<String>| s.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(wanted));
    let lower = wanted.to_lowercase();
    providers
        .iter()
        .find(|p| eq(&p.rsts_provider_id))
        .or_else(|| providers.iter().find(|p| eq(&p.name)))
        .or_else(|| {
            providers.iter().find(|p| {
                p.rsts_provider_id
                    .as_deref()
                    .is_some_and(|id| id.to_lowercase().contains(&lower))
            })
        })
        .and_then(|p| p.rsts_provider_id.clone())
        .or_else(|| {
            ["local", "certificate"]
                .iter()
                .find(|b| b.eq_ignore_ascii_case(wanted))
                .map(|b| (*b).to_owned())
        })
}

/// A PKCE verifier and its S256 challenge.
pub(crate) struct PkceSecrets {
    pub(crate) verifier: SecretString,
    pub(crate) challenge: String,
}

impl PkceSecrets {
    pub(crate) fn new() -> Self {
        let verifier = random_token(32);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier: verifier.into(),
            challenge,
        }
    }
}

/// `n` random bytes, base64url without padding.
pub(crate) fn random_token(n: usize) -> String {
    // The bytes of a PKCE verifier are as secret as the verifier.
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(&*bytes)
}

/// The value of `key` in the query of `url` (which may be a URN).
fn query_value(url: &str, key: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// How long one connection to the loopback listener may take to send its
/// request head (browsers open idle speculative connections).
const REDIRECT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head the loopback listener reads.
const MAX_REDIRECT_HEAD: usize = 8 * 1024;
/// The most connections the loopback listener serves at once; more wait
/// in the listen backlog.
const MAX_REDIRECT_CONNECTIONS: usize = 32;

/// Serves browser requests on the loopback listener, concurrently, until
/// one carries the expected `state` with the authorization code (or with an
/// `error`). A request with another state, or none, is answered and the
/// wait goes on: no other local process can end the sign-in.
async fn receive_redirect(listener: &tokio::net::TcpListener, state: &str) -> Result<SecretString> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let mut serving = FuturesUnordered::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if serving.len() < MAX_REDIRECT_CONNECTIONS => {
                let (socket, _) = accepted?;
                serving.push(serve_redirect(socket, state));
            }
            Some(outcome) = serving.next(), if !serving.is_empty() => {
                if let Some(outcome) = outcome {
                    return outcome;
                }
            }
        }
    }
}

/// Answers one connection to the loopback listener within
/// [`REDIRECT_READ_TIMEOUT`]; the outcome of the sign-in when its request
/// is the redirect with the expected `state`.
async fn serve_redirect(
    mut socket: tokio::net::TcpStream,
    state: &str,
) -> Option<Result<SecretString>> {
    let exchange = async {
        let mut buf = vec![0u8; MAX_REDIRECT_HEAD];
        let mut len = 0;
        let complete = loop {
            if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break true;
            }
            if len == buf.len() {
                break false;
            }
            match socket.read(&mut buf[len..]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => len += n,
            }
        };
        let (status, reply, outcome) = if complete {
            redirect_outcome(&String::from_utf8_lossy(&buf[..len]), state)
        } else {
            (
                "431 Request Header Fields Too Large",
                "Request too large.",
                None,
            )
        };
        let page = format!("<html><body><p>{reply}</p></body></html>");
        let _ = socket
            .write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                )
                .as_bytes(),
            )
            .await;
        let _ = socket.shutdown().await;
        outcome
    };
    tokio::time::timeout(REDIRECT_READ_TIMEOUT, exchange)
        .await
        .ok()
        .flatten()
}

/// What a request head received on the loopback listener means: the status
/// and text to answer with, and the outcome of the sign-in if it ends it.
fn redirect_outcome(
    head: &str,
    state: &str,
) -> (&'static str, &'static str, Option<Result<SecretString>>) {
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    let code = query_value(target, "code");
    let error = query_value(target, "error");
    if code.is_none() && error.is_none() {
        // A favicon, a reload of the page: not a redirect.
        return ("200 OK", "Waiting for the sign-in to complete.", None);
    }
    let state_matches = query_value(target, "state")
        .is_some_and(|s| constant_time_eq(s.as_bytes(), state.as_bytes()));
    if !state_matches {
        return (
            "400 Bad Request",
            "This redirect does not belong to the sign-in in progress.",
            None,
        );
    }
    if let Some(e) = error {
        return (
            "200 OK",
            "Sign-in failed. You can close this window.",
            Some(Err(Error::Sts(StsError {
                status: StatusCode::BAD_REQUEST,
                error: e,
                description: Some("the browser sign-in was refused".into()),
            }))),
        );
    }
    match code {
        Some(code) => (
            "200 OK",
            "Signed in. You can close this window.",
            Some(Ok(code.into())),
        ),
        None => ("200 OK", "Waiting for the sign-in to complete.", None),
    }
}

/// Compares without revealing, by its duration, where `a` and `b` differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Opens `url` with the platform's opener.
pub(crate) fn open_in_system_browser(url: &str) -> std::io::Result<()> {
    let mut cmd = if cfg!(target_os = "windows") {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else {
        std::process::Command::new("xdg-open")
    };
    cmd.arg(url).spawn().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, id: &str) -> Provider {
        Provider {
            name: Some(name.into()),
            rsts_provider_id: Some(id.into()),
        }
    }

    #[test]
    fn provider_matches_id_then_name_then_substring() {
        let list = vec![
            provider("Local", "local"),
            provider("Corp AD", "corp.example.com"),
            provider("example", "other-id"),
        ];
        assert_eq!(pick_provider(&list, "LOCAL").as_deref(), Some("local"));
        assert_eq!(
            pick_provider(&list, "corp ad").as_deref(),
            Some("corp.example.com")
        );
        // Name "example" wins over the substring of corp.example.com.
        assert_eq!(pick_provider(&list, "example").as_deref(), Some("other-id"));
        assert_eq!(
            pick_provider(&list, "corp.example").as_deref(),
            Some("corp.example.com")
        );
        assert_eq!(
            pick_provider(&list, "certificate").as_deref(),
            Some("certificate")
        );
        assert_eq!(pick_provider(&list, "nope"), None);
    }

    #[test]
    fn a_redirect_counts_only_with_the_expected_state() {
        let head = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let (status, _, outcome) =
            redirect_outcome(&head("/?error=access_denied&state=other"), "s1");
        assert_eq!(status, "400 Bad Request");
        assert!(outcome.is_none());
        let (status, _, outcome) = redirect_outcome(&head("/?error=access_denied"), "s1");
        assert_eq!(status, "400 Bad Request");
        assert!(outcome.is_none());
        let (status, _, outcome) = redirect_outcome(&head("/?code=c&state=s2"), "s1");
        assert_eq!(status, "400 Bad Request");
        assert!(outcome.is_none());
        let (status, _, outcome) = redirect_outcome(&head("/favicon.ico"), "s1");
        assert_eq!(status, "200 OK");
        assert!(outcome.is_none());
        let (_, _, outcome) = redirect_outcome(&head("/?error=access_denied&state=s1"), "s1");
        assert!(matches!(outcome, Some(Err(Error::Sts(e))) if e.error == "access_denied"));
        let (_, _, outcome) = redirect_outcome(&head("/?code=c&state=s1"), "s1");
        assert_eq!(outcome.expect("ends").expect("a code").expose_secret(), "c");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn pkce_challenge_is_s256_of_verifier() {
        let p = PkceSecrets::new();
        let expected =
            URL_SAFE_NO_PAD.encode(Sha256::digest(p.verifier.expose_secret().as_bytes()));
        assert_eq!(p.challenge, expected);
        assert!(!p.verifier.expose_secret().contains('='));
        assert_eq!(p.verifier.expose_secret().len(), 43);
    }

    fn sts(error: &str) -> Error {
        Error::Sts(StsError {
            status: StatusCode::BAD_REQUEST,
            error: error.into(),
            description: None,
        })
    }

    /// Runs the polling loop over scripted answers on tokio's paused clock;
    /// returns the outcome and the (virtual) seconds at which each poll came.
    async fn script(answers: Vec<Result<&'static str>>, wait: u64) -> (Result<String>, Vec<u64>) {
        let start = tokio::time::Instant::now();
        let answers = std::sync::Mutex::new(answers.into_iter());
        let times = std::sync::Mutex::new(Vec::new());
        let cancel = tokio_util::sync::CancellationToken::new();
        let outcome = poll_device_code(
            Duration::from_secs(1),
            start + Duration::from_secs(wait),
            &cancel,
            || {
                times.lock().unwrap().push(start.elapsed().as_secs());
                let next = answers.lock().unwrap().next().expect("a scripted answer");
                async move { next.map(|t| SecretString::from(t.to_owned())) }
            },
        )
        .await;
        let times = times.into_inner().unwrap();
        (outcome.map(|t| t.expose_secret().to_owned()), times)
    }

    #[tokio::test(start_paused = true)]
    async fn device_code_polls_at_the_interval_and_slows_down_when_asked() {
        let (outcome, times) = script(
            vec![
                Err(sts("authorization_pending")),
                Err(sts("slow_down")),
                Err(sts("authorization_pending")),
                Ok("token"),
            ],
            300,
        )
        .await;
        assert_eq!(outcome.unwrap(), "token");
        assert_eq!(times, [1, 2, 8, 14]);
    }

    #[tokio::test(start_paused = true)]
    async fn device_code_denied_expired_deadline_and_other_errors() {
        let (o, _) = script(vec![Err(sts("access_denied"))], 300).await;
        assert!(matches!(o, Err(Error::SignInIncomplete(m)) if m.contains("denied")));
        let (o, _) = script(vec![Err(sts("expired_token"))], 300).await;
        assert!(matches!(o, Err(Error::SignInIncomplete(m)) if m.contains("expired")));
        let (o, times) = script(
            (0..10).map(|_| Err(sts("authorization_pending"))).collect(),
            3,
        )
        .await;
        assert!(matches!(o, Err(Error::SignInIncomplete(m)) if m.contains("expired")));
        assert_eq!(times, [1, 2, 3]);
        let (o, _) = script(vec![Err(sts("invalid_client"))], 300).await;
        assert!(matches!(o, Err(Error::Sts(e)) if e.error == "invalid_client"));
    }

    #[test]
    fn code_is_read_from_the_relying_party_urn() {
        assert_eq!(
            query_value("urn:InstalledApplication?code=abc%2Bd&x=1", "code").as_deref(),
            Some("abc+d")
        );
        assert_eq!(query_value("urn:InstalledApplication", "code"), None);
    }
}
