//! The "raw reqwest" column: the same HTTP requests as the SDK, written the
//! way a careful user would without it (reqwest over rustls/ring, HTTP/1.1,
//! one client reused).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Any error of the raw side.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn rustls_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key)?)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest client trusting `ca_pem`, optionally presenting a client
/// certificate, keeping at most `max_idle` idle connections per host.
pub fn client(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
    max_idle: usize,
) -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(max_idle)
        .tls_backend_preconfigured(rustls_config(ca_pem, identity)?)
        .build()?)
}

async fn json_ok(response: reqwest::Response) -> Result<Value, BoxError> {
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

fn random_b64(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The browser-less PKCE sign-in, request for request what the SDK sends:
/// provider lookup, login controller steps 1, 3 and 6, the authorization
/// code grant, then `Token/LoginResponse`. Returns the user token.
pub async fn pkce_login(
    http: &reqwest::Client,
    host: &str,
    user: &str,
    password: &str,
) -> Result<String, BoxError> {
    let base = format!("https://{host}");
    let providers = json_ok(
        http.get(format!("{base}/service/core/v4/AuthenticationProviders"))
            .header("Accept", "application/json")
            .send()
            .await?,
    )
    .await?;
    let provider = providers
        .as_array()
        .and_then(|a| {
            a.iter().find(|p| {
                p["RstsProviderId"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("local"))
            })
        })
        .and_then(|p| p["RstsProviderId"].as_str())
        .unwrap_or("local")
        .to_owned();
    let verifier = random_b64(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let csrf = random_b64(32);
    let form = [
        ("directoryComboBox", provider.as_str()),
        ("usernameTextbox", user),
        ("passwordTextbox", password),
        ("csrfTokenTextbox", csrf.as_str()),
    ];
    let mut last = Value::Null;
    for step in [1, 3, 6] {
        let url = format!(
            "{base}/RSTS/UserLogin/LoginController?response_type=code&code_challenge_method=S256&code_challenge={challenge}&redirect_uri=urn:InstalledApplication&loginRequestStep={step}"
        );
        last = json_ok(
            http.post(url)
                .header("Cookie", format!("CsrfToken={csrf}"))
                .header("Accept", "application/json")
                .form(&form)
                .send()
                .await?,
        )
        .await?;
    }
    let relying = last["RelyingPartyUrl"]
        .as_str()
        .ok_or("no RelyingPartyUrl")?;
    let code = url::Url::parse(relying)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .ok_or("no code")?;
    let token = json_ok(
        http.post(format!("{base}/RSTS/oauth2/token"))
            .header("Accept", "application/json")
            .json(&json!({
                "grant_type": "authorization_code",
                "redirect_uri": "urn:InstalledApplication",
                "code": code,
                "code_verifier": verifier,
            }))
            .send()
            .await?,
    )
    .await?;
    let sts = token["access_token"].as_str().ok_or("no access_token")?;
    let login = json_ok(
        http.post(format!("{base}/service/core/v4/Token/LoginResponse"))
            .header("Accept", "application/json")
            .json(&json!({ "StsAccessToken": sts }))
            .send()
            .await?,
    )
    .await?;
    Ok(login["UserToken"]
        .as_str()
        .ok_or("no UserToken")?
        .to_owned())
}

/// `GET {url}` with the bearer token, decoded as `T`.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    bearer: &str,
) -> Result<T, BoxError> {
    let response = http
        .get(url)
        .header("Accept", "application/json")
        .bearer_auth(bearer)
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}").into());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// A2A password retrieval: `GET a2a/v4/Credentials?type=Password`.
pub async fn a2a_password(
    http: &reqwest::Client,
    host: &str,
    api_key: &str,
) -> Result<String, BoxError> {
    let response = http
        .get(format!(
            "https://{host}/service/a2a/v4/Credentials?type=Password"
        ))
        .header("Accept", "application/json")
        .header("Authorization", format!("A2A {api_key}"))
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}
