//! Joining SPS to SPP: [`SpsClient::join_spp`].
//!
//! The steps are documented on [`SpsClient::join_spp`].
//!
//! Every failure is [`Error::Sps`]`(`[`SpsError::Join`]` { step, source })`:
//! the step, and the error of the call that failed.

use std::fmt;
use std::pin::Pin;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::client::SpsClient;
use super::error::SpsError;
use crate::client::{SafeguardClient, Service};
use crate::tls::{OpensslConnector, TlsOptions};
use crate::{Error, Result};

/// A step of [`SpsClient::join_spp`], named in [`SpsError::Join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JoinStep {
    /// Reading SPP's TLS certificate chain (connect, handshake, verify).
    SppChain,
    /// Getting the SPP client's user token (signing in when it has none).
    SppToken,
    /// Reading SPS's clustering settings (`configuration/local_services/cluster`).
    ReadClusterConfig,
    /// Finding the NIC address SPS clusters on (`configuration/network/nics`).
    FindListenAddress,
    /// Enabling clustering on SPS in a transaction (or refusing to, see
    /// [`JoinOptions::enable_clustering`]).
    EnableClustering,
    /// Reading whether SPS is its cluster's central management node (`cluster/status`).
    ReadClusterStatus,
    /// Promoting SPS to central management node in a transaction (or
    /// refusing to, see [`JoinOptions::promote`]).
    Promote,
    /// `POST cluster/spp`: SPS contacts SPP with the token and the chain.
    Join,
    /// Reading SPP's `Cluster/SessionModules` and finding the SPS there.
    Verify,
}

impl JoinStep {
    /// A short name of the step (`spp-chain`, `enable-clustering`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JoinStep::SppChain => "spp-chain",
            JoinStep::SppToken => "spp-token",
            JoinStep::ReadClusterConfig => "read-cluster-config",
            JoinStep::FindListenAddress => "find-listen-address",
            JoinStep::EnableClustering => "enable-clustering",
            JoinStep::ReadClusterStatus => "read-cluster-status",
            JoinStep::Promote => "promote",
            JoinStep::Join => "join",
            JoinStep::Verify => "verify",
        }
    }
}

impl fmt::Display for JoinStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`SpsClient::join_spp`] joins; [`JoinOptions::default`] does what the
/// cmdlet does with `-AutoEnableClustering -AutoPromoteToMaster`, then
/// checks the result on SPP.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    spp_address: Option<String>,
    tls: TlsOptions,
    spp_chain: Option<String>,
    listen_address: Option<String>,
    enable_clustering: bool,
    promote: bool,
    commit_message: Option<String>,
    verify: Option<Duration>,
    connect_timeout: Duration,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            spp_address: None,
            tls: TlsOptions::default(),
            spp_chain: None,
            listen_address: None,
            enable_clustering: true,
            promote: true,
            commit_message: None,
            // The cmdlet waits 30 s after the join before listing the
            // session modules; verification polls for up to twice that.
            verify: Some(Duration::from_secs(60)),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

impl JoinOptions {
    /// The SPP address SPS is told to contact (default: the SPP client's
    /// host, `name[:port]`). Set it when SPS reaches SPP by another name.
    pub fn spp_address(mut self, address: impl Into<String>) -> Self {
        self.spp_address = Some(address.into());
        self
    }

    /// The trust used to verify the chain SPP presents when it is read
    /// (default: [`TlsOptions::default`]). With
    /// [`TlsOptions::danger_accept_invalid_certs`] the chain is read
    /// unverified. The read is a direct TLS connection to SPP's host and
    /// port: it goes through no proxy (give the chain with
    /// [`spp_chain`](Self::spp_chain) when SPP is reached through one).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// SPP's certificate chain, PEM (leaf first), sent as given instead of
    /// being read from SPP.
    pub fn spp_chain(mut self, pem: impl Into<String>) -> Self {
        self.spp_chain = Some(pem.into());
        self
    }

    /// The `listen_address` written when clustering is enabled (a NIC
    /// address reference, `nic1.interfaces.<id>.addresses.<id>`); by default
    /// the NIC address matching SPS's address is searched for.
    pub fn listen_address(mut self, reference: impl Into<String>) -> Self {
        self.listen_address = Some(reference.into());
        self
    }

    /// Whether clustering may be enabled on SPS when it is off (default
    /// true); when false and it is off the join fails at
    /// [`JoinStep::EnableClustering`] with [`Error::Config`].
    pub fn enable_clustering(mut self, yes: bool) -> Self {
        self.enable_clustering = yes;
        self
    }

    /// Whether SPS may be promoted to central management node when it is
    /// not one (default true); when false and it is not the join fails at
    /// [`JoinStep::Promote`] with [`Error::Config`].
    pub fn promote(mut self, yes: bool) -> Self {
        self.promote = yes;
        self
    }

    /// The message the clustering and promotion transactions commit with
    /// (needed when SPS requires commit messages).
    pub fn commit_message(mut self, message: impl Into<String>) -> Self {
        self.commit_message = Some(message.into());
        self
    }

    /// Whether, and for how long, to wait for SPP to list the SPS under
    /// `Cluster/SessionModules` after the join (default 60 s; `None` skips
    /// the check).
    pub fn verify(mut self, within: Option<Duration>) -> Self {
        self.verify = within;
        self
    }

    /// The limit on connecting to SPP and completing the handshake when the
    /// chain is read (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// What [`SpsClient::join_spp`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JoinReport {
    /// The SPP address SPS was given.
    pub spp_address: String,
    /// The chain SPS was given (PEM, leaf first).
    pub spp_chain: String,
    /// Clustering was off and this call enabled it.
    pub enabled_clustering: bool,
    /// SPS was not its cluster's central management node and this call
    /// promoted it.
    pub promoted: bool,
    /// The `body` of SPS's answer to `POST cluster/spp`.
    pub sps_answer: Value,
    /// SPP's `SessionModuleConnection` for this SPS, when verified.
    pub session_module: Option<Value>,
}

fn at(step: JoinStep) -> impl Fn(Error) -> Error {
    move |e| {
        SpsError::Join {
            step,
            source: Box::new(e),
        }
        .into()
    }
}

impl SpsClient {
    /// Joins this SPS (its cluster's central management node, once
    /// promoted) to the SPP cluster that `spp` is signed in to. The steps
    /// follow the vendor's PowerShell module (`Join-SafeguardSessionCluster`
    /// in `src/sessionjoin.psm1` of OneIdentity/safeguard-ps):
    ///
    /// 1. SPP's TLS certificate chain ([`JoinStep::SppChain`]). The cmdlet reads
    ///    it through SPP's API (`Get-SafeguardSslCertificateForAppliance`:
    ///    `SslCertificates` of the appliance, `Base64CertificateData` followed by
    ///    its `IssuerCertificates`); this SDK reads the chain SPP presents in a
    ///    TLS handshake, verified with [`JoinOptions::tls`], or takes it from
    ///    [`JoinOptions::spp_chain`].
    /// 2. The SPP token ([`JoinStep::SppToken`]): the signed-in client's user
    ///    token, signing in first when it has none.
    /// 3. `GET configuration/local_services/cluster` ([`JoinStep::ReadClusterConfig`]).
    /// 4. When `enabled` is false: the `listen_address` (the NIC address SPS is
    ///    reached at, searched in `configuration/network/nics/nic{1,2,3}` as the
    ///    cmdlet's `Get-NicRefForIp` does, [`JoinStep::FindListenAddress`]), then
    ///    in one transaction `PUT configuration/local_services/cluster {enabled:
    ///    true, listen_address}` and commit ([`JoinStep::EnableClustering`]).
    /// 5. `GET cluster/status` ([`JoinStep::ReadClusterStatus`]); when SPS says
    ///    the node is not a cluster's central management node, in one transaction
    ///    `POST cluster/promote` and commit ([`JoinStep::Promote`]).
    /// 6. `POST cluster/spp {spp, spp_api_token, spp_cert_chain}` ([`JoinStep::Join`]).
    /// 7. Optionally ([`JoinOptions::verify`]): SPP lists the SPS under
    ///    `Cluster/SessionModules` ([`JoinStep::Verify`]).
    ///
    /// The SPP user needs the rights the appliance asks for adding a session
    /// module (an appliance administrator).
    ///
    /// The SPP token goes to SPS in the request body only; it is never
    /// logged. Every failure is [`SpsError::Join`] naming the step.
    ///
    /// ```no_run
    /// # async fn f(spp: safeguard_sdk::SafeguardClient, sps: safeguard_sdk::sps::SpsClient) -> safeguard_sdk::Result<()> {
    /// use safeguard_sdk::sps::JoinOptions;
    /// let report = sps.join_spp(&spp, JoinOptions::default()).await?;
    /// println!("joined; SPP lists {:?}", report.session_module);
    /// # Ok(()) }
    /// ```
    pub async fn join_spp(
        &self,
        spp: &SafeguardClient,
        options: JoinOptions,
    ) -> Result<JoinReport> {
        let spp_address = options
            .spp_address
            .clone()
            .unwrap_or_else(|| spp.host().authority().to_string());
        let spp_chain = match &options.spp_chain {
            Some(pem) => pem.clone(),
            None => read_chain(spp, &options)
                .await
                .map_err(at(JoinStep::SppChain))?,
        };
        let token = spp_token(spp).await.map_err(at(JoinStep::SppToken))?;

        let cluster = self
            .get_json("configuration/local_services/cluster")
            .await
            .map_err(at(JoinStep::ReadClusterConfig))?;
        let enabled = cluster
            .get("body")
            .and_then(|b| b.get("enabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut enabled_clustering = false;
        if !enabled {
            if !options.enable_clustering {
                return Err(at(JoinStep::EnableClustering)(Error::Config(
                    "clustering is off on SPS and JoinOptions::enable_clustering is false".into(),
                )));
            }
            let listen = match &options.listen_address {
                Some(r) => r.clone(),
                None => self
                    .find_listen_address()
                    .await
                    .map_err(at(JoinStep::FindListenAddress))?,
            };
            self.join_transaction(&options, |tx| async move {
                tx.put::<_, Value>(
                    "configuration/local_services/cluster",
                    &json!({"enabled": true, "listen_address": listen}),
                )
                .await
                .map(|_| ())
            })
            .await
            .map_err(at(JoinStep::EnableClustering))?;
            enabled_clustering = true;
        }

        let mut promoted = false;
        if !self
            .is_central_management()
            .await
            .map_err(at(JoinStep::ReadClusterStatus))?
        {
            if !options.promote {
                return Err(at(JoinStep::Promote)(Error::Config(
                    "SPS is not its cluster's central management node and JoinOptions::promote is false"
                        .into(),
                )));
            }
            self.join_transaction(&options, |tx| async move {
                tx.post::<_, Value>("cluster/promote", &json!({}))
                    .await
                    .map(|_| ())
            })
            .await
            .map_err(at(JoinStep::Promote))?;
            promoted = true;
        }

        let answer = {
            // The body holds the token only for the time of the call.
            let body = json!({
                "spp": spp_address,
                "spp_api_token": token.expose_secret(),
                "spp_cert_chain": spp_chain,
            });
            self.post::<_, Value>("cluster/spp", &body)
                .await
                .map_err(at(JoinStep::Join))?
        };

        let session_module = match options.verify {
            None => None,
            Some(within) => Some(
                self.find_session_module(spp, within)
                    .await
                    .map_err(at(JoinStep::Verify))?,
            ),
        };
        Ok(JoinReport {
            spp_address,
            spp_chain,
            enabled_clustering,
            promoted,
            sps_answer: answer.body,
            session_module,
        })
    }

    /// Runs `work` in a transaction committed with the options' message.
    async fn join_transaction<F, Fut>(&self, options: &JoinOptions, work: F) -> Result<()>
    where
        F: FnOnce(super::Transaction) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        match &options.commit_message {
            Some(m) => self.transaction_with_message(m, work).await,
            None => self.transaction(work).await,
        }
    }

    /// SPS's own name or address as this client reaches it (IPv6 without
    /// brackets): what its NIC addresses and SPP's listing are matched to.
    fn own_name(&self) -> String {
        self.base_url()
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    }

    /// `GET cluster/status`: true when it answers, false when SPS answers
    /// `NodeNotFound` (clustering off, or not the central management node).
    /// The cmdlet promotes on any failure of this call; only that answer
    /// means "not promoted" here, anything else fails the step.
    async fn is_central_management(&self) -> Result<bool> {
        match self.get_json("cluster/status").await {
            Ok(_) => Ok(true),
            Err(Error::Sps(SpsError::NodeNotFound(_))) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The `listen_address` reference of the NIC address SPS is reached at,
    /// searched like the cmdlet's `Get-NicRefForIp`: in `nic1` to `nic3`,
    /// each interface's addresses (in `@order`), the first that starts with
    /// SPS's IP address (its name resolved first).
    async fn find_listen_address(&self) -> Result<String> {
        let host = self.own_name();
        let ip = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => tokio::net::lookup_host((host.as_str(), 443))
                .await
                .map_err(|e| {
                    crate::Error::Transport(crate::error::TransportError::from_io(e, true))
                })?
                .next()
                .map(|a| a.ip())
                .ok_or_else(|| Error::Config(format!("{host} resolves to no address")))?,
        };
        let ip = ip.to_string();
        for nic in ["nic1", "nic2", "nic3"] {
            let answer = self
                .get_json(&format!("configuration/network/nics/{nic}"))
                .await?;
            let interfaces = &answer["body"]["interfaces"];
            for if_id in order(interfaces) {
                let addresses = &interfaces[if_id]["addresses"];
                for addr_id in order(addresses) {
                    if addresses[addr_id]
                        .as_str()
                        .is_some_and(|a| a.starts_with(&ip))
                    {
                        return Ok(format!("{nic}.interfaces.{if_id}.addresses.{addr_id}"));
                    }
                }
            }
        }
        Err(Error::Config(format!(
            "no NIC address of SPS (nic1 to nic3) is {ip}; give JoinOptions::listen_address"
        )))
    }

    /// Polls SPP's `Cluster/SessionModules` until it lists this SPS (by
    /// `SpsNetworkAddress` or `SpsHostName`, as the cmdlet filters) or
    /// `within` has passed ([`Error::Timeout`]).
    async fn find_session_module(&self, spp: &SafeguardClient, within: Duration) -> Result<Value> {
        let host = self.own_name();
        let deadline = Instant::now() + within;
        loop {
            let modules: Vec<Value> = spp
                .get(Service::Core, "Cluster/SessionModules")
                .send_json()
                .await?;
            let found = modules.into_iter().find(|m| {
                [&m["SpsNetworkAddress"], &m["SpsHostName"]]
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(&host)))
            });
            if let Some(m) = found {
                return Ok(m);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "SPP does not list the SPS at {host} under Cluster/SessionModules"
                )));
            }
            tokio::time::sleep((deadline - now).min(Duration::from_secs(2))).await;
        }
    }
}

/// The keys of an SPS keyed object, in its `@order`.
fn order(node: &Value) -> Vec<&str> {
    node["@order"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The SPP client's user token, signing in first when it holds none.
async fn spp_token(spp: &SafeguardClient) -> Result<SecretString> {
    if let Some(t) = spp.user_token().await {
        return Ok(t);
    }
    spp.login().await?;
    spp.user_token().await.ok_or(Error::CannotRefresh {
        strategy: "spp",
        reason: "the SPP client holds no user token after signing in",
    })
}

/// The chain SPP presents in a TLS handshake, as PEM, leaf first: the
/// verified chain (up to the trusted root) when it was verified, else the
/// certificates SPP sent.
async fn read_chain(spp: &SafeguardClient, options: &JoinOptions) -> Result<String> {
    let host = spp.host();
    let connector = OpensslConnector(options.tls.openssl_connector_builder(None)?.build());
    let ssl = connector
        .ssl(host.name())
        .map_err(|e| Error::Tls(e.to_string()))?;
    let limit = options.connect_timeout;
    let timeout = || {
        Error::Timeout(format!(
            "reading the TLS certificate chain of {}",
            host.authority()
        ))
    };
    let tcp = tokio::time::timeout(
        limit,
        tokio::net::TcpStream::connect((host.name(), host.port())),
    )
    .await
    .map_err(|_| timeout())?
    .map_err(|e| Error::Transport(crate::error::TransportError::from_io(e, true)))?;
    let mut stream =
        tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| Error::Tls(e.to_string()))?;
    tokio::time::timeout(limit, Pin::new(&mut stream).connect())
        .await
        .map_err(|_| timeout())?
        .map_err(|e| {
            let verify = stream.ssl().verify_result();
            if verify == openssl::x509::X509VerifyResult::OK {
                Error::Tls(e.to_string())
            } else {
                Error::Tls(format!("{e}: {}", verify.error_string()))
            }
        })?;
    let ssl = stream.ssl();
    let chain = ssl
        .verified_chain()
        .filter(|c| !c.is_empty() && !options.tls.accepts_invalid_certs())
        .or_else(|| ssl.peer_cert_chain())
        .ok_or_else(|| Error::Tls(format!("{} presented no certificate", host.authority())))?;
    let mut pem = String::new();
    for cert in chain {
        let p = cert.to_pem().map_err(|e| Error::Tls(e.to_string()))?;
        pem.push_str(&String::from_utf8_lossy(&p));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_is_named_and_keeps_its_cause() {
        let e: Error = at(JoinStep::EnableClustering)(Error::Config("locked".into()));
        assert_eq!(
            e.sps().and_then(SpsError::join_step),
            Some(JoinStep::EnableClustering)
        );
        assert_eq!(
            e.to_string(),
            "SPS: joining SPS to SPP failed at step enable-clustering: configuration: locked"
        );
        match &e {
            Error::Sps(SpsError::Join { source, .. }) => {
                assert!(matches!(source.as_ref(), Error::Config(_)))
            }
            other => panic!("{other:?}"),
        }
        // Not an SPS answer itself.
        assert!(e.sps_error().is_none() && !e.is_retryable());
    }

    #[test]
    fn nic_keys_follow_their_order() {
        let nic = json!({"@order": ["b", "a", 3], "a": 1, "b": 2});
        assert_eq!(order(&nic), vec!["b", "a"]);
        assert!(order(&json!("x")).is_empty());
    }
}
