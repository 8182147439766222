//! The one host type: where an appliance (SPP or SPS) is, parsed once when a
//! client is built and used by every connection it makes.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// An appliance's address: a DNS name or an IP address (IPv6 in brackets)
/// with an optional port, 443 when absent. `https://` in front and a
/// trailing `/` are accepted; a path, query, user name or other scheme is
/// refused.
///
/// ```
/// use safeguard_sdk::Host;
///
/// let host: Host = "[::1]:8443".parse()?;
/// assert_eq!((host.name(), host.port()), ("::1", 8443));
/// assert_eq!(host.authority(), "[::1]:8443");
/// assert!("sg.example.com/x".parse::<Host>().is_err());
/// # Ok::<(), safeguard_sdk::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Host {
    /// `name[:port]` as it goes into URLs and the `Host` header (brackets
    /// kept, the port only when it is not 443).
    authority: String,
    /// The name or address without brackets: what TLS verifies and TCP
    /// connects to.
    name: String,
    port: u16,
}

impl Host {
    /// Parses `name`, `name:port`, `[v6]`, `[v6]:port`, optionally with
    /// `https://` in front; anything else is [`Error::Config`].
    pub fn parse(given: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("bad host {given:?}: {why}"));
        let trimmed = given.trim();
        let rest = match trimmed.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
            Some(_) => return Err(bad("the appliance is served over https only")),
            None => trimmed,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad("no name or address"));
        }
        if rest.contains(['/', '?', '#', '@', '\\']) || rest.chars().any(char::is_whitespace) {
            return Err(bad(
                "expected a name or address with an optional port, nothing more",
            ));
        }
        let url = url::Url::parse(&format!("https://{rest}/")).map_err(|e| bad(&e.to_string()))?;
        let host = url.host_str().ok_or_else(|| bad("no name or address"))?;
        let port = url.port().unwrap_or(443);
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let name = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        Ok(Self {
            authority,
            name,
            port,
        })
    }

    /// `name[:port]` (IPv6 in brackets) for URLs and the `Host` header.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The name or address without brackets: what the certificate must
    /// name and what TCP connects to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port, 443 when none was given.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://{authority}{path}`; `path` starts with `/` or is empty.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.authority)
    }

    /// Whether `url` addresses this host (its name, case aside, and port).
    pub(crate) fn is_addressed_by(&self, url: &url::Url) -> bool {
        let name = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'));
        name.is_some_and(|n| n.eq_ignore_ascii_case(&self.name))
            && url.port_or_known_default() == Some(self.port)
    }

    /// Points `url` at this host, its scheme, path and query unchanged (a
    /// no-op when it already addresses it). Fails only for a URL that
    /// cannot have a host (not `https://...`).
    pub(crate) fn point(&self, url: &mut url::Url) -> Result<()> {
        if self.is_addressed_by(url) {
            return Ok(());
        }
        let refused = || Error::Config(format!("cannot address {self} in a URL without a host"));
        let set = if self.name.contains(':') {
            url.set_host(Some(&format!("[{}]", self.name)))
        } else {
            url.set_host(Some(&self.name))
        };
        set.map_err(|_| refused())?;
        let port = (self.port != 443).then_some(self.port);
        url.set_port(port).map_err(|()| refused())
    }

    /// `name:port` for messages (IPv6 in brackets).
    pub(crate) fn endpoint(&self) -> String {
        if self.name.contains(':') {
            format!("[{}]:{}", self.name, self.port)
        } else {
            format!("{}:{}", self.name, self.port)
        }
    }
}

impl FromStr for Host {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Host::parse(s)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Host({})", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::Host;

    fn parts(s: &str) -> (String, String, u16) {
        let h = Host::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        (h.authority().to_owned(), h.name().to_owned(), h.port())
    }

    #[test]
    fn names_addresses_and_ports() {
        let p = |a: &str, n: &str, port| (a.to_owned(), n.to_owned(), port);
        assert_eq!(
            parts("sg.example.com"),
            p("sg.example.com", "sg.example.com", 443)
        );
        assert_eq!(
            parts(" SG.Example.com/ "),
            p("sg.example.com", "sg.example.com", 443)
        );
        assert_eq!(
            parts("127.0.0.1:8443"),
            p("127.0.0.1:8443", "127.0.0.1", 8443)
        );
        assert_eq!(parts("[::1]"), p("[::1]", "::1", 443));
        assert_eq!(parts("[::1]:9443"), p("[::1]:9443", "::1", 9443));
        assert_eq!(parts("https://sg:443/"), p("sg", "sg", 443));
        assert_eq!(parts("HTTPS://sg:1"), p("sg:1", "sg", 1));
    }

    #[test]
    fn anything_more_or_less_is_refused() {
        for bad in [
            "",
            "  ",
            "https://",
            "http://sg",
            "wss://sg",
            "sg/x",
            "https://sg/x?y",
            "sg?x",
            "sg#x",
            "user@sg",
            "sg:notaport",
            "sg:99999",
            "::1",
            "[::1",
            "s g",
            "sg\\x",
        ] {
            assert!(
                matches!(Host::parse(bad), Err(crate::Error::Config(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn endpoints_bracket_ipv6() {
        assert_eq!(Host::parse("[::1]").unwrap().endpoint(), "[::1]:443");
        assert_eq!(Host::parse("sg:8443").unwrap().endpoint(), "sg:8443");
        assert_eq!(
            Host::parse("[::1]:8").unwrap().url("/service/core"),
            "https://[::1]:8/service/core"
        );
    }

    #[test]
    fn urls_are_pointed_at_a_host() {
        let h = |s: &str| Host::parse(s).unwrap();
        let mut url =
            url::Url::parse("https://a/service/a2a/v4/Credentials?type=password").unwrap();
        assert!(h("A:443").is_addressed_by(&url));
        assert!(!h("a:8443").is_addressed_by(&url));
        h("b:8443").point(&mut url).unwrap();
        assert_eq!(
            url.as_str(),
            "https://b:8443/service/a2a/v4/Credentials?type=password"
        );
        assert!(h("b:8443").is_addressed_by(&url));
        h("[::1]").point(&mut url).unwrap();
        assert_eq!(
            url.as_str(),
            "https://[::1]/service/a2a/v4/Credentials?type=password"
        );
        assert!(h("[::1]:443").is_addressed_by(&url));
        let before = url.clone();
        h("[::1]:443").point(&mut url).unwrap();
        assert_eq!(url, before);
        h("sg.example").point(&mut url).unwrap();
        assert_eq!(
            url.as_str(),
            "https://sg.example/service/a2a/v4/Credentials?type=password"
        );
        let mut mail = url::Url::parse("mailto:x@y").unwrap();
        assert!(matches!(
            h("sg").point(&mut mail),
            Err(crate::Error::Config(_))
        ));
    }

    proptest::proptest! {
        /// Any text parses to a host or a config error, never a panic; a
        /// parsed host parses again to itself.
        #[test]
        fn parsing_never_panics_and_round_trips(s in "\\PC{0,40}") {
            if let Ok(h) = Host::parse(&s) {
                proptest::prop_assert_eq!(Host::parse(h.authority()).unwrap(), h);
            }
        }
    }
}
