//! [`SafeguardClientBuilder`]: how a [`SafeguardClient`] is configured.

use std::path::Path;
use std::time::Duration;

use crate::auth::Auth;
use crate::cluster::{Cluster, ClusterOptions};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::limits::{Limits, RedirectPolicy};
use crate::proxy::Proxy;
use crate::tls::{TlsOptions, TlsVersion};

use super::session::{Session, Tokens};
use super::{SafeguardClient, DEFAULT_REFRESH_MARGIN};

/// Builds a [`SafeguardClient`].
#[derive(Debug)]
pub struct SafeguardClientBuilder {
    host: String,
    auth: Auth,
    tls: TlsOptions,
    timeout: Option<Duration>,
    limits: Limits,
    proxy: Proxy,
    user_agent: String,
    api_version: String,
    refresh_margin: Duration,
    cluster: Option<ClusterOptions>,
    management_host: Option<String>,
}

impl SafeguardClientBuilder {
    /// The defaults for the appliance at `host`.
    pub(super) fn new(host: String) -> Self {
        Self {
            host,
            auth: Auth::Anonymous,
            tls: TlsOptions::default(),
            timeout: None,
            limits: Limits::default(),
            proxy: Proxy::default(),
            user_agent: format!("safeguard-sdk-rust/{}", env!("CARGO_PKG_VERSION")),
            api_version: "v4".into(),
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            cluster: None,
            management_host: None,
        }
    }

    /// How to sign in (default: anonymous).
    pub fn auth(mut self, auth: impl Into<Auth>) -> Self {
        self.auth = auth.into();
        self
    }

    /// Whom to trust and which TLS versions to speak.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts the CA certificates of a PEM file (replacing the system roots).
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Result<Self> {
        self.tls = self.tls.with_ca_file(path)?;
        Ok(self)
    }

    /// Trusts the CA certificates of a PEM bundle (replacing the system roots).
    pub fn ca_pem(mut self, pem: impl AsRef<[u8]>) -> Result<Self> {
        self.tls = self.tls.with_ca_pem(pem)?;
        Ok(self)
    }

    /// Accepts any server certificate. Dangerous: for throwaway test appliances only.
    pub fn danger_accept_invalid_certs(mut self, yes: bool) -> Self {
        self.tls = self.tls.danger_accept_invalid_certs(yes);
        self
    }

    /// The lowest TLS version to speak.
    pub fn min_tls_version(mut self, v: TlsVersion) -> Self {
        self.tls = self.tls.min_version(v);
        self
    }

    /// The highest TLS version to speak.
    pub fn max_tls_version(mut self, v: TlsVersion) -> Self {
        self.tls = self.tls.max_version(v);
        self
    }

    /// A limit on each whole request, streams and downloads included
    /// (default: none; the [`Limits`] bound what a server can make a call
    /// wait for without cutting long downloads).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A limit on establishing a connection (default 30 s; the same as
    /// [`Limits::connect_timeout`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.limits.connect_timeout = Some(timeout);
        self
    }

    /// What the client accepts from the appliance: timeouts, the size of
    /// answers read into memory, redirects, pages (default
    /// [`Limits::default`]; see [`crate::limits`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Which HTTP proxy every connection of the client goes through: the
    /// REST calls, every sign-in (certificate sign-in included) and the
    /// event listeners' websockets (default [`Proxy::from_env`]:
    /// `HTTPS_PROXY` and `NO_PROXY`, read by [`build`](Self::build); see
    /// [`crate::proxy`]).
    ///
    /// ```no_run
    /// # fn main() -> safeguard_sdk::Result<()> {
    /// use safeguard_sdk::{proxy::Proxy, SafeguardClient};
    /// let client = SafeguardClient::builder("sg.example.com")
    ///     .proxy(Proxy::http("http://proxy.example:3128")?)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = proxy;
        self
    }

    /// The User-Agent header (default `safeguard-sdk-rust/<version>`).
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// The API version of the generic verbs' paths (default `v4`; the typed
    /// clients are generated for the documents' version).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// Refresh the token when the appliance says fewer than this many
    /// minutes remain (default 2 minutes; only strategies that can refresh).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Makes the client a client of the cluster the builder's host belongs
    /// to: configuration writes go to the primary, reads, sign-in and
    /// access requests to a member chosen by the options, and requests move
    /// to another member when theirs fails (see [`crate::cluster`]).
    ///
    /// ```no_run
    /// # fn main() -> safeguard_sdk::Result<()> {
    /// use safeguard_sdk::{auth::PkceAuth, cluster::ClusterOptions, SafeguardClient};
    /// let client = SafeguardClient::builder("sg1.example.com")
    ///     .cluster(ClusterOptions::new().members(["sg2.example.com", "sg3.example.com"]))
    ///     .auth(PkceAuth::new("local", "Admin", "Admin123"))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn cluster(mut self, options: ClusterOptions) -> Self {
        self.cluster = Some(options);
        self
    }

    /// Where the management service ([`Service::Management`](crate::Service::Management))
    /// listens when not on the appliance's address: the MGMT interface of
    /// a hardware appliance, or port 9337 of a cloud one (.NET SDK,
    /// `Service.Management`). Its requests carry no token; the address
    /// is checked when the client is built.
    pub fn management_host(mut self, host: impl Into<String>) -> Self {
        self.management_host = Some(host.into());
        self
    }

    /// Builds the client. No request is made: call [`SafeguardClient::login`]
    /// to sign in now, or let the first call do it.
    pub fn build(self) -> Result<SafeguardClient> {
        let host = Host::parse(&self.host)?;
        let proxy = self.proxy.rules()?;
        let rustls = self.tls.rustls_config()?;
        // Two clients over one TLS configuration: requests that carry a
        // secret of their own (sign-in) follow no redirect at all.
        let client =
            |redirects: RedirectPolicy, whole: Option<Duration>| -> Result<reqwest::Client> {
                let mut http = self.limits.apply(
                    TlsOptions::reqwest_builder_with(rustls.clone())
                        .user_agent(self.user_agent.clone()),
                    redirects,
                );
                if let Some(t) = whole {
                    http = http.timeout(t);
                }
                proxy
                    .apply(http, &host)?
                    .build()
                    .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
            };
        let http = client(self.limits.redirects, self.timeout)?;
        // Every request that carries a secret of its own is read whole: its
        // client bounds each one within the answer timeout.
        let secret_whole = match (self.timeout, self.limits.answer_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let secret_http = client(RedirectPolicy::Never, secret_whole)?;
        let initial = match &self.auth {
            Auth::Token(t) => Some(t.token.clone()),
            _ => None,
        };
        let cluster = self
            .cluster
            .map(|options| Cluster::new(&host, options, &self.api_version).map(std::sync::Arc::new))
            .transpose()?;
        let management_host = self
            .management_host
            .as_deref()
            .map(Host::parse)
            .transpose()?;
        Ok(SafeguardClient::with_session(Session {
            cluster,
            management_host,
            host,
            http,
            secret_http,
            limits: self.limits,
            tls: self.tls,
            proxy,
            auth: self.auth,
            api_version: self.api_version,
            refresh_margin: self.refresh_margin,
            timeout: self.timeout,
            tokens: Tokens::new(initial)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_auth_client_with_a_bad_token_fails_to_build() {
        let built = SafeguardClient::builder("sg.example")
            .auth(crate::auth::TokenAuth::new("bad\rtoken"))
            .build();
        assert!(matches!(built, Err(Error::Config(_))));
    }

    #[test]
    fn a_host_with_a_path_is_refused() {
        for host in ["", "http://sg.example", "sg.example/x", "sg:port"] {
            let built = SafeguardClient::builder(host).build();
            assert!(matches!(built, Err(Error::Config(_))), "{host:?}");
        }
    }
}
