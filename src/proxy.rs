//! Which HTTP proxy, if any, a client's connections go through.
//!
//! One [`Proxy`] policy is given to every client's builder
//! ([`SafeguardClientBuilder::proxy`](crate::SafeguardClientBuilder::proxy),
//! `A2aContextBuilder::proxy`, [`SpsClientBuilder::proxy`](crate::sps::SpsClientBuilder::proxy)
//! and the blocking builders that wrap them), and every connection the
//! client opens follows it: the REST calls, password and certificate
//! sign-in, A2A, the event listeners' websockets (they take the policy of
//! the client or A2A context that made them) and SPS. One function,
//! [`Proxy::for_host`], answers which proxy (if any) is used for a host.
//!
//! The policies:
//!
//! * [`Proxy::from_env`] (the default, as for curl and reqwest): the first
//!   of `https_proxy`, `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY` that is set
//!   and not empty, except for the hosts `no_proxy` (or `NO_PROXY`) names.
//!   The variables are read when the client is built. `HTTP_PROXY` is not
//!   read: every connection of the SDK is HTTPS.
//! * [`Proxy::http`]: this proxy, whatever the environment says (with
//!   [`Proxy::no_proxy`] for exceptions).
//! * [`Proxy::none`]: direct connections, whatever the environment says.
//!
//! A proxy is an `http://host:port` address (the scheme may be left out;
//! the port defaults to 80), optionally with `user:password@` credentials:
//! every connection is a `CONNECT` tunnel through it, with the credentials
//! sent as `Proxy-Authorization: Basic`, and TLS runs end to end with the
//! appliance inside the tunnel (the certificate is verified for the
//! appliance's name). The credentials are a secret: they appear in no
//! `Debug`, `Display`, log line or error. A proxy that cannot be reached
//! or refuses the tunnel (`407`, `403`, `502`, ...) ends the call with
//! [`Error::Proxy`].
//!
//! `no_proxy` rules: a comma-separated list; `*` alone matches every host;
//! `example.com` and `.example.com` both match `example.com` and every name
//! under it (never `badexample.com`); an IP address matches that address; a
//! CIDR block (`10.0.0.0/8`, `fd00::/8`) matches the addresses in it; a
//! `:port` after an entry is ignored. Names compare without case. The
//! rules look at the host as written (no name is resolved).
//!
//! ```
//! use safeguard_sdk::{proxy::Proxy, Host};
//!
//! let proxy = Proxy::http("http://user:secret@proxy.example:3128")?
//!     .no_proxy("internal.example, 10.0.0.0/8");
//! let via = proxy.for_host(&Host::parse("sg.example.com")?)?;
//! assert_eq!(via.as_deref(), Some("http://proxy.example:3128"));
//! assert_eq!(proxy.for_host(&Host::parse("sg.internal.example")?)?, None);
//! assert_eq!(proxy.for_host(&Host::parse("10.1.2.3:8443")?)?, None);
//! assert!(!format!("{proxy:?}").contains("secret"));
//! # Ok::<(), safeguard_sdk::Error>(())
//! ```

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::host::Host;

/// The variables naming the proxy, in the order they are read.
const PROXY_VARIABLES: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];
/// The variables naming the exceptions, in the order they are read.
const NO_PROXY_VARIABLES: [&str; 2] = ["no_proxy", "NO_PROXY"];
/// The largest answer head to a `CONNECT` that is read.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// Which HTTP proxy, if any, a client's connections go through (see the
/// [module](self)). The default is [`Proxy::from_env`].
#[derive(Clone)]
pub struct Proxy {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// The environment's variables, read when a client is built; the
    /// exceptions given replace `no_proxy`.
    Environment(Option<NoProxy>),
    /// Fixed rules.
    Rules(Rules),
}

impl Default for Proxy {
    fn default() -> Self {
        Self::from_env()
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Environment(no_proxy) => f
                .debug_struct("Proxy::from_env")
                .field("no_proxy", no_proxy)
                .finish(),
            Kind::Rules(rules) => rules.fmt(f),
        }
    }
}

impl Proxy {
    /// The proxy the environment names (`https_proxy`, `HTTPS_PROXY`,
    /// `all_proxy`, `ALL_PROXY`, the first set and not empty) except for the
    /// hosts `no_proxy` / `NO_PROXY` names; read when a client is built. A
    /// variable that names no usable proxy makes the build fail with
    /// [`Error::Config`] (naming the variable, not its credentials) rather
    /// than connect around the proxy. The default.
    pub fn from_env() -> Self {
        Self {
            kind: Kind::Environment(None),
        }
    }

    /// Direct connections, whatever the environment says.
    pub fn none() -> Self {
        Self {
            kind: Kind::Rules(Rules {
                server: None,
                no_proxy: NoProxy::default(),
            }),
        }
    }

    /// Every connection through the proxy at `url` (`http://host:port`, the
    /// scheme optional, the port 80 when absent; `http://user:password@host:port`
    /// with credentials, percent-encoded where needed), whatever the
    /// environment says. A bad address is [`Error::Config`] (its credentials
    /// not repeated).
    pub fn http(url: &str) -> Result<Self> {
        let server = ProxyServer::parse(url)
            .map_err(|why| Error::Config(format!("bad proxy address: {why}")))?;
        Ok(Self {
            kind: Kind::Rules(Rules {
                server: Some(Arc::new(server)),
                no_proxy: NoProxy::default(),
            }),
        })
    }

    /// The policy [`from_env`](Self::from_env) would make of these
    /// variables (name and value pairs) instead of the process's
    /// environment: for configuration read from elsewhere, and for tests
    /// (the process environment is shared by every thread).
    pub fn from_variables<I, K, V>(variables: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let variables: Vec<(String, String)> = variables
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        let rules = Rules::from_lookup(
            |name| {
                variables
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            },
            None,
        )?;
        Ok(Self {
            kind: Kind::Rules(rules),
        })
    }

    /// Replaces the hosts that bypass the proxy (a `no_proxy` list, see the
    /// [module](self) for the rules). For [`from_env`](Self::from_env) it
    /// takes the place of the `no_proxy` variables; for
    /// [`none`](Self::none) it changes nothing.
    pub fn no_proxy(mut self, list: &str) -> Self {
        let parsed = NoProxy::parse(list);
        match &mut self.kind {
            Kind::Environment(no_proxy) => *no_proxy = Some(parsed),
            Kind::Rules(rules) => rules.no_proxy = parsed,
        }
        self
    }

    /// Which proxy connections to `host` go through: its address
    /// (`http://host:port`, never its credentials), or `None` for a direct
    /// connection. [`from_env`](Self::from_env) reads the environment now;
    /// a variable that names no usable proxy is [`Error::Config`].
    pub fn for_host(&self, host: &Host) -> Result<Option<String>> {
        Ok(self
            .rules()?
            .server_for(host.name())
            .map(|server| server.to_string()))
    }

    /// The rules in force: the environment's read now, or the fixed ones.
    pub(crate) fn rules(&self) -> Result<Rules> {
        match &self.kind {
            Kind::Environment(no_proxy) => {
                Rules::from_lookup(|name| std::env::var(name).ok(), no_proxy.clone())
            }
            Kind::Rules(rules) => Ok(rules.clone()),
        }
    }
}

impl FromStr for Proxy {
    type Err = Error;

    /// [`Proxy::http`].
    fn from_str(s: &str) -> Result<Self> {
        Self::http(s)
    }
}

/// A policy with the environment read: a proxy and its exceptions, or none.
#[derive(Clone)]
pub(crate) struct Rules {
    server: Option<Arc<ProxyServer>>,
    no_proxy: NoProxy,
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.server {
            None => f.write_str("Proxy::none"),
            Some(server) => f
                .debug_struct("Proxy")
                .field("server", server)
                .field("no_proxy", &self.no_proxy)
                .finish(),
        }
    }
}

impl Rules {
    /// The environment policy over `lookup`; `no_proxy` replaces the
    /// variables' exceptions when given.
    fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        no_proxy: Option<NoProxy>,
    ) -> Result<Self> {
        let set = |names: &[&'static str]| {
            names.iter().find_map(|name| {
                lookup(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (*name, v))
            })
        };
        let server = match set(&PROXY_VARIABLES) {
            None => None,
            Some((name, value)) => {
                let value = Zeroizing::new(value);
                Some(Arc::new(ProxyServer::parse(&value).map_err(|why| {
                    Error::Config(format!(
                        "the {name} variable names no usable proxy: {why} \
                         (set the client's proxy explicitly, or Proxy::none())"
                    ))
                })?))
            }
        };
        let no_proxy = no_proxy.unwrap_or_else(|| {
            set(&NO_PROXY_VARIABLES)
                .map(|(_, list)| NoProxy::parse(&list))
                .unwrap_or_default()
        });
        Ok(Self { server, no_proxy })
    }

    /// The proxy for connections to the host `name` (a [`Host::name`]), if
    /// any: the one function that decides it for every client and
    /// connection.
    pub(crate) fn server_for(&self, name: &str) -> Option<&ProxyServer> {
        let server = self.server.as_deref()?;
        (!self.no_proxy.matches(name)).then_some(server)
    }

    /// `builder` with this policy for connections to `host`: reqwest's own
    /// proxy settings (and its reading of the environment) are replaced, so
    /// the rules are the SDK's everywhere.
    pub(crate) fn apply(
        &self,
        builder: reqwest::ClientBuilder,
        host: &Host,
    ) -> Result<reqwest::ClientBuilder> {
        let builder = builder.no_proxy();
        let Some(server) = self.server_for(host.name()) else {
            return Ok(builder);
        };
        let mut proxy = reqwest::Proxy::all(server.to_string())
            .map_err(|e| Error::Config(format!("bad proxy {server}: {e}")))?;
        if let Some(credentials) = &server.credentials {
            proxy = proxy.basic_auth(&credentials.user, credentials.password.expose_secret());
        }
        Ok(builder.proxy(proxy))
    }
}

/// A proxy's address and optional credentials.
pub(crate) struct ProxyServer {
    /// The name or address, without brackets.
    host: String,
    port: u16,
    credentials: Option<Credentials>,
}

struct Credentials {
    user: String,
    password: SecretString,
}

impl fmt::Display for ProxyServer {
    /// `http://host:port`: never the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", authority(&self.host, self.port))
    }
}

impl fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyServer")
            .field("address", &self.to_string())
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl ProxyServer {
    /// Parses `http://[user[:password]@]host[:port][/]`; the reason for a
    /// refusal never repeats the credentials.
    fn parse(given: &str) -> std::result::Result<Self, String> {
        let given = given.trim();
        let with_scheme = if given.contains("://") {
            Zeroizing::new(given.to_owned())
        } else {
            Zeroizing::new(format!("http://{given}"))
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| format!("not an address ({e})"))?;
        match url.scheme() {
            "http" => {}
            "https" => return Err(
                "an https:// proxy (TLS to the proxy) is not supported; give its http:// address"
                    .into(),
            ),
            other => {
                return Err(format!(
                    "the {other}:// scheme is not supported, only http://"
                ))
            }
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("a proxy address has no path, query or fragment".into());
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let credentials = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            Some(Credentials {
                user: percent_decode(url.username())
                    .ok_or("the user name is not UTF-8 once decoded")?,
                password: SecretString::from(
                    percent_decode(url.password().unwrap_or(""))
                        .ok_or("the password is not UTF-8 once decoded")?,
                ),
            })
        };
        Ok(Self {
            host,
            port,
            credentials,
        })
    }

    /// `Basic base64(user:password)`, for `Proxy-Authorization`.
    fn basic_authorization(&self) -> Option<Zeroizing<String>> {
        let c = self.credentials.as_ref()?;
        let pair = Zeroizing::new(format!("{}:{}", c.user, c.password.expose_secret()));
        Some(Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
        )))
    }
}

/// `%XX` decoded; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out.to_vec()).ok()
}

/// `name:port`, IPv6 in brackets.
fn authority(name: &str, port: u16) -> String {
    if name.contains(':') {
        format!("[{name}]:{port}")
    } else {
        format!("{name}:{port}")
    }
}

/// The hosts that bypass the proxy.
#[derive(Clone, Default)]
pub(crate) struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    Address(IpAddr),
    Block(IpAddr, u8),
    Domain(String),
}

impl fmt::Debug for NoProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.all {
            return f.write_str("*");
        }
        f.debug_list().entries(&self.entries).finish()
    }
}

impl NoProxy {
    /// Parses a `no_proxy` list; entries that mean nothing are skipped.
    pub(crate) fn parse(list: &str) -> Self {
        let mut parsed = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                parsed.all = true;
            } else if let Some(entry) = Entry::parse(entry) {
                parsed.entries.push(entry);
            }
        }
        parsed
    }

    /// Whether `name` (a host name or an IP address, IPv6 without brackets)
    /// bypasses the proxy.
    pub(crate) fn matches(&self, name: &str) -> bool {
        if self.all {
            return true;
        }
        let name = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let address = name.parse::<IpAddr>().ok();
        self.entries.iter().any(|entry| match (entry, address) {
            (Entry::Address(a), Some(ip)) => *a == ip,
            (Entry::Block(net, bits), Some(ip)) => in_block(ip, *net, *bits),
            (Entry::Domain(d), None) => {
                name == *d
                    || (name.len() > d.len()
                        && name.ends_with(d.as_str())
                        && name.as_bytes()[name.len() - d.len() - 1] == b'.')
            }
            _ => false,
        })
    }
}

impl Entry {
    fn parse(entry: &str) -> Option<Self> {
        let entry = entry.to_ascii_lowercase();
        if let Some((net, bits)) = entry.split_once('/') {
            let net: IpAddr = net
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()?;
            let bits: u8 = bits.parse().ok()?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            return (bits <= max).then_some(Entry::Block(net, bits));
        }
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Some(Entry::Address(ip));
        }
        // `[v6]` or `[v6]:port`.
        if let Some(rest) = entry.strip_prefix('[') {
            let (inside, _) = rest.split_once(']')?;
            return inside.parse().ok().map(Entry::Address);
        }
        // `name:port` or `v4:port`: the port is ignored.
        let name = match entry.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            Some(_) => return None,
            None => entry.as_str(),
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Some(Entry::Address(ip));
        }
        let name = name
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .trim_end_matches('.');
        (!name.is_empty()).then(|| Entry::Domain(name.to_owned()))
    }
}

/// Whether `ip` is in `net/bits` (same family only).
fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Why a connection through a proxy could not be opened; made into
/// [`Error::Proxy`]. Holds no credentials.
#[derive(Clone, Debug)]
pub(crate) struct ProxyFailure {
    /// The proxy's status answer to the `CONNECT`, when it answered.
    pub(crate) status: Option<u16>,
    pub(crate) message: String,
}

impl ProxyFailure {
    pub(crate) fn to_error(&self) -> Error {
        Error::Proxy {
            status: self.status,
            message: self.message.clone(),
        }
    }
}

/// Why a TCP connection (direct or tunnelled) could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The direct connection failed.
    Direct(io::Error),
    /// The proxy could not be reached or refused the tunnel.
    Proxy(ProxyFailure),
}

/// A TCP connection to `name:port`: direct when `via` is `None`, otherwise
/// a `CONNECT` tunnel through the proxy. The caller runs TLS for `name`
/// over it and bounds the whole (this and the handshake) with its connect
/// timeout. Used by every connection the SDK opens itself (the certificate
/// transport, the event websocket); reqwest's connections tunnel through
/// the same proxy by [`Rules::apply`].
pub(crate) async fn connect(
    via: Option<&ProxyServer>,
    name: &str,
    port: u16,
) -> std::result::Result<TcpStream, ConnectFailure> {
    let Some(proxy) = via else {
        let tcp = TcpStream::connect((name, port))
            .await
            .map_err(ConnectFailure::Direct)?;
        let _ = tcp.set_nodelay(true);
        return Ok(tcp);
    };
    tunnel(proxy, name, port)
        .await
        .map_err(ConnectFailure::Proxy)
}

/// Opens a `CONNECT` tunnel to `name:port` through `proxy`.
async fn tunnel(
    proxy: &ProxyServer,
    name: &str,
    port: u16,
) -> std::result::Result<TcpStream, ProxyFailure> {
    let target = authority(name, port);
    let fail = |status: Option<u16>, what: String| ProxyFailure {
        status,
        message: format!("{what} (proxy {proxy}, tunnel to {target})"),
    };
    let mut tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| fail(None, format!("cannot connect to the proxy: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut request = Zeroizing::new(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"));
    if let Some(authorization) = proxy.basic_authorization() {
        request.push_str("Proxy-Authorization: ");
        request.push_str(&authorization);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| fail(None, format!("the proxy broke the connection: {e}")))?;
    drop(request);
    // The answer's head, read to its blank line. The appliance speaks only
    // after the client's TLS hello, so nothing may follow a 2xx head.
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| fail(None, format!("the proxy broke the connection: {e}")))?;
        if n == 0 {
            return Err(fail(
                None,
                "the proxy closed the connection without answering the CONNECT".into(),
            ));
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(at) = head[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            break searched_from + at + 4;
        }
        if head.len() > MAX_CONNECT_HEAD {
            return Err(fail(
                None,
                format!(
                    "the proxy's answer to the CONNECT is longer than {MAX_CONNECT_HEAD} bytes"
                ),
            ));
        }
    };
    let status = status_code(&head[..end]).ok_or_else(|| {
        fail(
            None,
            "the proxy's answer to the CONNECT is not an HTTP status line".into(),
        )
    })?;
    if !(200..300).contains(&status) {
        // Only the code and its standard name: the proxy's own text could
        // repeat anything it was sent.
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let what = match status {
            407 => format!("the proxy asks for credentials or refused them: {status} {reason}"),
            _ => format!("the proxy refused the tunnel: {status} {reason}"),
        };
        return Err(fail(Some(status), what));
    }
    if end != head.len() {
        return Err(fail(
            Some(status),
            "the proxy sent data before the tunnel was used".into(),
        ));
    }
    Ok(tcp)
}

/// The status code of an `HTTP/1.x NNN reason` head.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// Reads reqwest's report of a refused or unreachable proxy tunnel.
///
/// reqwest tunnels through hyper-util, whose error type is not exported:
/// its messages (`tunnel error: ...`) are all there is to go by. A `407`
/// is reported as such; other refusals carry no status.
pub(crate) fn from_reqwest_tunnel(error: &reqwest::Error) -> Option<Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cur {
        let text = e.to_string();
        if let Some(what) = text.strip_prefix("tunnel error: ") {
            let (status, message) = match what {
                "proxy authorization required" => (
                    Some(407),
                    "the proxy asks for credentials or refused them: 407 Proxy Authentication Required"
                        .to_owned(),
                ),
                "failed to create underlying connection" => (
                    None,
                    format!(
                        "cannot connect to the proxy: {}",
                        e.source()
                            .map(crate::error::error_chain)
                            .unwrap_or_default()
                    ),
                ),
                other => (None, format!("the proxy refused the tunnel ({other})")),
            };
            let target = error
                .url()
                .and_then(|u| Some(authority(u.host_str()?, u.port_or_known_default()?)))
                .map(|t| format!(" (tunnel to {t})"))
                .unwrap_or_default();
            return Some(Error::Proxy {
                status,
                message: format!("{message}{target}"),
            });
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    #[test]
    fn no_proxy_names_suffixes_addresses_blocks_and_ports() {
        let rules = NoProxy::parse(
            " example.com, .corp.example ,*.wild.example, 10.1.2.3, 192.168.0.0/16, \
             [::1], fd00::/8, host.with.port:8443, 172.16.0.9:80,, bad/99, x:y",
        );
        for yes in [
            "example.com",
            "EXAMPLE.com",
            "sg.example.com",
            "a.b.example.com.",
            "corp.example",
            "sg.corp.example",
            "wild.example",
            "x.wild.example",
            "10.1.2.3",
            "192.168.4.5",
            "::1",
            "[::1]",
            "fd12::1",
            "host.with.port",
            "172.16.0.9",
        ] {
            assert!(rules.matches(yes), "{yes} should bypass");
        }
        for no in [
            "badexample.com",
            "example.com.evil",
            "xcorp.example",
            "10.1.2.4",
            "192.169.0.1",
            "::2",
            "fe80::1",
            "other.with.port",
            "bad",
            "x",
            "localhost",
        ] {
            assert!(!rules.matches(no), "{no} should go through the proxy");
        }
    }

    #[test]
    fn a_star_matches_everything_and_an_empty_list_nothing() {
        assert!(NoProxy::parse("*").matches("anything.example"));
        assert!(NoProxy::parse("a, *").matches("10.0.0.1"));
        assert!(!NoProxy::parse("").matches("example.com"));
        assert!(!NoProxy::parse(" , ").matches("example.com"));
        // `*` inside a name is not a wildcard of its own.
        assert!(!NoProxy::parse("*example.com").matches("sg.example.com"));
    }

    #[test]
    fn cidr_edges() {
        assert!(in_block(
            "10.0.0.1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
        assert!(in_block(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            32
        ));
        assert!(!in_block(
            "10.0.0.2".parse().unwrap(),
            "10.0.0.1".parse().unwrap(),
            32
        ));
        assert!(!in_block(
            "::1".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
        assert!(in_block(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::".parse().unwrap(),
            32
        ));
        assert_eq!(Entry::parse("10.0.0.0/33"), None);
    }

    #[test]
    fn proxy_addresses() {
        let p = ProxyServer::parse("proxy.example:3128").unwrap();
        assert_eq!(p.to_string(), "http://proxy.example:3128");
        assert!(p.credentials.is_none());
        let p = ProxyServer::parse("HTTP://Proxy.Example/").unwrap();
        assert_eq!(p.to_string(), "http://proxy.example:80");
        let p = ProxyServer::parse("http://[::1]:8080").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        assert_eq!(p.to_string(), "http://[::1]:8080");
        let p = ProxyServer::parse("http://us%40er:p%3Ass%20w@proxy:1").unwrap();
        let c = p.credentials.as_ref().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.expose_secret()),
            ("us@er", "p:ss w")
        );
        assert_eq!(
            p.basic_authorization().unwrap().as_str(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("us@er:p:ss w")
            )
        );
        for bad in [
            "https://proxy:1",
            "socks5://proxy:1080",
            "http://proxy:1/path",
            "http://proxy:1?q",
            "http://",
            "http://proxy:99999",
        ] {
            assert!(ProxyServer::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn credentials_never_show() {
        let proxy = Proxy::http("http://alice:s3cr3t-pw@proxy:3128").unwrap();
        let text = format!(
            "{proxy:?} {:?} {:?}",
            proxy.rules().unwrap(),
            proxy.for_host(&host("sg")).unwrap()
        );
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert!(text.contains("proxy:3128"), "{text}");
        let err = Proxy::http("https://alice:s3cr3t-pw@proxy:3128").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t-pw"), "{err}");
        let err =
            Proxy::from_variables([("HTTPS_PROXY", "socks5://alice:s3cr3t-pw@p:1")]).unwrap_err();
        assert!(err.to_string().contains("HTTPS_PROXY"), "{err}");
        assert!(!err.to_string().contains("s3cr3t-pw"), "{err}");
    }

    #[test]
    fn environment_order_and_exceptions() {
        let via = |vars: &[(&str, &str)], h: &str| {
            Proxy::from_variables(vars.iter().copied())
                .unwrap()
                .for_host(&host(h))
                .unwrap()
        };
        assert_eq!(via(&[], "sg"), None);
        assert_eq!(
            via(&[("HTTPS_PROXY", "p1:1"), ("ALL_PROXY", "p2:2")], "sg").as_deref(),
            Some("http://p1:1")
        );
        assert_eq!(
            via(&[("https_proxy", "p0:1"), ("HTTPS_PROXY", "p1:1")], "sg").as_deref(),
            Some("http://p0:1")
        );
        assert_eq!(
            via(&[("HTTPS_PROXY", " "), ("all_proxy", "p2:2")], "sg").as_deref(),
            Some("http://p2:2")
        );
        // HTTP_PROXY is for plain http, which the SDK never speaks.
        assert_eq!(via(&[("HTTP_PROXY", "p3:3")], "sg"), None);
        let vars = [
            ("HTTPS_PROXY", "p1:1"),
            ("NO_PROXY", "sg.example,10.0.0.0/8"),
        ];
        assert_eq!(via(&vars, "a.sg.example:8443"), None);
        assert_eq!(via(&vars, "10.9.9.9"), None);
        assert!(via(&vars, "other.example").is_some());
        let vars = [("HTTPS_PROXY", "p1:1"), ("no_proxy", "*")];
        assert_eq!(via(&vars, "sg"), None);
        // Exceptions given replace the variables'.
        let proxy = Proxy::from_variables(vars).unwrap().no_proxy("other");
        assert!(proxy.for_host(&host("sg")).unwrap().is_some());
        assert!(Proxy::none()
            .no_proxy("x")
            .for_host(&host("sg"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn connect_answers() {
        assert_eq!(
            status_code(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some(200)
        );
        assert_eq!(
            status_code(b"HTTP/1.0 407 Proxy Auth\r\nX: y\r\n\r\n"),
            Some(407)
        );
        assert_eq!(status_code(b"HTTP/1.1 502\r\n\r\n"), Some(502));
        assert_eq!(status_code(b"HTTP/2 200\r\n\r\n"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 2000 x\r\n\r\n"), None);
    }

    proptest::proptest! {
        /// Any list and any name: no panic.
        #[test]
        fn matching_never_panics(list in "\\PC{0,60}", name in "\\PC{0,30}") {
            let _ = NoProxy::parse(&list).matches(&name);
        }
    }
}
