//! Certificate sign-in: `GET /api/authentication?type=x509` through the
//! SDK's certificate transport ([`CertTransport`]: HTTP/1.1 over OpenSSL,
//! which presents the client certificate in the handshake or when SPS asks
//! for it afterwards). The session cookie it returns is then used by the
//! ordinary transport.
//!
//! The transport is built once per client and pools its connection, so a
//! sign-in after the session expired reuses the connection of the previous
//! one while SPS keeps it open.

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, SET_COOKIE, USER_AGENT};
use reqwest::{Method, StatusCode};
use url::Url;

use super::error::{SpsApiError, SpsError};
use crate::cert_transport::{CertTransport, PoolSettings};
use crate::limits::Limits;
use crate::tls::{ClientIdentity, TlsOptions};
use crate::{Error, Host, Result};

/// The largest sign-in answer read, whatever the limits allow.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

/// The certificate sign-in of one [`SpsClient`](super::SpsClient).
pub(crate) struct CertificateSignIn {
    transport: CertTransport,
    user_agent: HeaderValue,
}

impl CertificateSignIn {
    /// Signs in to `host` presenting `identity`, trusting what `tls`
    /// trusts. The connection and handshake within
    /// `limits.connect_timeout`, the answer's head within
    /// `limits.answer_timeout`, its body within the same again with no
    /// silence longer than `limits.read_timeout` and at most
    /// `limits.max_answer_bytes` (and 4 MiB), everything within `timeout`
    /// when given. A redirect is never followed ([`Error::Redirect`]).
    pub(crate) fn new(
        host: &Host,
        tls: &TlsOptions,
        identity: ClientIdentity,
        user_agent: &str,
        timeout: Option<Duration>,
        limits: &Limits,
        proxy: &crate::proxy::Rules,
    ) -> Result<Self> {
        let user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| Error::Config("the User-Agent is not a valid header value".into()))?;
        let limits = limits.max_answer_bytes(limits.max_answer_bytes.min(MAX_ANSWER));
        // One sign-in at a time (the client serializes them): one idle
        // connection is all it can reuse.
        let pool = PoolSettings {
            max_idle: 1,
            ..PoolSettings::default()
        };
        let transport =
            CertTransport::with_pool(host, tls, identity, timeout, limits, pool, proxy)?;
        Ok(Self {
            transport,
            user_agent,
        })
    }

    /// Sends `GET url` (`/api/authentication?type=x509`) and reads the
    /// whole answer: its status and `Set-Cookie` values when it succeeds,
    /// the [`SpsError`] of its error answer (kept up to
    /// [`Limits::max_error_bytes`]) when it does not.
    pub(crate) async fn sign_in(
        &self,
        url: Url,
    ) -> Result<(StatusCode, Vec<zeroize::Zeroizing<String>>)> {
        let label = format!("GET {}", url.path());
        let mut request = reqwest::Request::new(Method::GET, url);
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, self.user_agent.clone());
        let response = self.transport.execute(request).await?;
        let status = response.status();
        let limits = self.transport.limits();
        if !status.is_success() {
            let body = safeguard_api::answer::read_prefix(response, limits.max_error_bytes).await;
            let error = SpsApiError::from_parts(status, label, &body);
            return Err(SpsError::from_api(error).into());
        }
        let cookies = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| {
                v.to_str()
                    .ok()
                    .map(|c| zeroize::Zeroizing::new(c.to_owned()))
            })
            .collect();
        // Read in full (within the limits) before the session is used, so
        // that the connection goes back to the pool.
        crate::limits::read_body(response, &label, limits).await?;
        Ok((status, cookies))
    }
}
