//! How a [`SafeguardClient`](crate::SafeguardClient) signs in.
//!
//! Every strategy ends the same way (protocol: an rSTS access token exchanged
//! for a Safeguard user token at `Token/LoginResponse`); they differ in how the
//! rSTS token is obtained:
//!
//! | strategy | rSTS step | refreshes by itself |
//! |---|---|---|
//! | [`PkceAuth`] (recommended) | login controller, no browser, optional MFA one-time password | yes |
//! | [`PasswordAuth`] | resource-owner grant (off by default on recent appliances) | yes |
//! | [`CertificateAuth`] | client-credentials grant with a client certificate | yes |
//! | [`DeviceCodeAuth`] | device code (RFC 8628): a person approves in a browser | no (needs a person) |
//! | [`BrowserPkceAuth`] | system browser + loopback redirect | no (needs a person) |
//! | [`TokenAuth`] | none: a user token you already have | no |
//! | [`Auth::Anonymous`] | none: anonymous endpoints only | no |

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::tls::ClientIdentity;

pub(crate) mod rsts;

pub use rsts::DeviceCodePrompt;

/// A sign-in strategy. Build one of the strategy types and pass it to
/// [`SafeguardClientBuilder::auth`](crate::SafeguardClientBuilder::auth).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No sign-in: only anonymous endpoints (notification status, the
    /// provider list, ...) can be called.
    #[default]
    Anonymous,
    /// Resource-owner password grant.
    Password(PasswordAuth),
    /// Browser-less PKCE through the rSTS login controller.
    Pkce(PkceAuth),
    /// Client certificate.
    Certificate(CertificateAuth),
    /// A user token obtained elsewhere.
    Token(TokenAuth),
    /// Device code (a person approves on another device).
    DeviceCode(DeviceCodeAuth),
    /// PKCE in the system browser with a loopback redirect.
    BrowserPkce(BrowserPkceAuth),
}

impl Auth {
    /// The strategy's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Auth::Anonymous => "anonymous",
            Auth::Password(_) => "password",
            Auth::Pkce(_) => "PKCE",
            Auth::Certificate(_) => "certificate",
            Auth::Token(_) => "token",
            Auth::DeviceCode(_) => "device code",
            Auth::BrowserPkce(_) => "browser PKCE",
        }
    }

    /// Whether the strategy can sign in again without a person (automatic
    /// refresh on expiry and after a 401).
    pub fn can_refresh(&self) -> bool {
        matches!(
            self,
            Auth::Password(_) | Auth::Pkce(_) | Auth::Certificate(_)
        )
    }

    /// Why a strategy cannot refresh, for [`Error::CannotRefresh`](crate::Error::CannotRefresh).
    pub(crate) fn why_no_refresh(&self) -> &'static str {
        match self {
            Auth::Anonymous => "an anonymous client has no token; configure a sign-in strategy",
            Auth::Token(_) => "a caller-supplied token cannot be renewed; supply a new one or use PKCE, password or certificate sign-in",
            Auth::DeviceCode(_) | Auth::BrowserPkce(_) => "this sign-in needs a person; call login() again to start a new one",
            _ => "this strategy can refresh",
        }
    }
}

macro_rules! into_auth {
    ($($ty:ident => $variant:ident),*) => {$(
        impl From<$ty> for Auth {
            fn from(a: $ty) -> Self {
                Auth::$variant(a)
            }
        }
    )*};
}
into_auth!(PasswordAuth => Password, PkceAuth => Pkce, CertificateAuth => Certificate,
    TokenAuth => Token, DeviceCodeAuth => DeviceCode, BrowserPkceAuth => BrowserPkce);

/// Resource-owner password grant to a named provider (`local`, or an
/// external provider's name or id). Off by default on recent appliances:
/// prefer [`PkceAuth`].
#[derive(Clone)]
pub struct PasswordAuth {
    pub(crate) provider: String,
    pub(crate) username: String,
    pub(crate) password: SecretString,
}

impl PasswordAuth {
    /// Signs in as `username` with `password` at `provider`.
    pub fn new(
        provider: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        Self {
            provider: provider.into(),
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for PasswordAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordAuth")
            .field("provider", &self.provider)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Where a one-time password comes from.
#[derive(Clone)]
pub(crate) enum OneTimePassword {
    Fixed(SecretString),
    Callback(Arc<dyn Fn() -> SecretString + Send + Sync>),
}

impl OneTimePassword {
    pub(crate) fn get(&self) -> SecretString {
        match self {
            OneTimePassword::Fixed(s) => s.clone(),
            OneTimePassword::Callback(f) => f(),
        }
    }
}

/// Browser-less PKCE sign-in through the rSTS login controller: the
/// recommended strategy, which works whatever the appliance's grant settings.
/// With multi-factor authentication, give a one-time password (or a callback
/// that produces a fresh one for each sign-in, so refresh keeps working).
#[derive(Clone)]
pub struct PkceAuth {
    pub(crate) provider: String,
    pub(crate) username: String,
    pub(crate) password: SecretString,
    pub(crate) otp: Option<OneTimePassword>,
}

impl PkceAuth {
    /// Signs in as `username` with `password` at `provider` (`local` or an
    /// external provider's name or id).
    pub fn new(
        provider: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<SecretString>,
    ) -> Self {
        Self {
            provider: provider.into(),
            username: username.into(),
            password: password.into(),
            otp: None,
        }
    }

    /// The one-time password for the secondary (MFA) step.
    pub fn one_time_password(mut self, otp: impl Into<SecretString>) -> Self {
        self.otp = Some(OneTimePassword::Fixed(otp.into()));
        self
    }

    /// A source of one-time passwords, asked at each sign-in (e.g. a TOTP generator).
    pub fn one_time_password_with(
        mut self,
        source: impl Fn() -> SecretString + Send + Sync + 'static,
    ) -> Self {
        self.otp = Some(OneTimePassword::Callback(Arc::new(source)));
        self
    }
}

impl fmt::Debug for PkceAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PkceAuth")
            .field("provider", &self.provider)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field(
                "one_time_password",
                &self.otp.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Client-certificate sign-in (a certificate user, identified by the
/// certificate's thumbprint), optionally to a named certificate provider.
#[derive(Clone, Debug)]
pub struct CertificateAuth {
    pub(crate) identity: ClientIdentity,
    pub(crate) provider: Option<String>,
}

impl CertificateAuth {
    /// Signs in with `identity`.
    pub fn new(identity: ClientIdentity) -> Self {
        Self {
            identity,
            provider: None,
        }
    }

    /// Signs in with a PEM certificate and an unencrypted PEM key file.
    pub fn from_pem_files(
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> crate::Result<Self> {
        ClientIdentity::from_pem_files(cert, key, None).map(Self::new)
    }

    /// Signs in with a PEM certificate and a passphrase-protected PEM key file.
    pub fn from_encrypted_pem_files(
        cert: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
        passphrase: &SecretString,
    ) -> crate::Result<Self> {
        ClientIdentity::from_pem_files(cert, key, Some(passphrase)).map(Self::new)
    }

    /// Signs in with a PKCS#12 (`.pfx`) file and its password.
    pub fn from_pkcs12_file(
        path: impl AsRef<std::path::Path>,
        password: &SecretString,
    ) -> crate::Result<Self> {
        ClientIdentity::from_pkcs12_file(path, password).map(Self::new)
    }

    /// Uses a named certificate provider instead of the built-in one.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }
}

/// A Safeguard user token obtained elsewhere. It cannot be refreshed.
#[derive(Clone)]
pub struct TokenAuth {
    pub(crate) token: SecretString,
}

impl TokenAuth {
    /// Uses `token` as the user token.
    pub fn new(token: impl Into<SecretString>) -> Self {
        Self {
            token: token.into(),
        }
    }
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenAuth([redacted])")
    }
}

/// Device-code sign-in (RFC 8628): the callback shows a person the code and
/// the address where they approve it; the client polls at the appliance's
/// interval (slowing down when asked) until approval, denial, expiry or
/// cancellation. The grant is off unless enabled on the appliance.
#[derive(Clone)]
pub struct DeviceCodeAuth {
    pub(crate) provider: String,
    pub(crate) prompt: Arc<dyn Fn(&DeviceCodePrompt) + Send + Sync>,
    pub(crate) cancel: CancellationToken,
    pub(crate) max_wait: Option<Duration>,
}

impl DeviceCodeAuth {
    /// Signs in at `provider` (usually `local`); `prompt` receives the user
    /// code and verification address to show.
    pub fn new(
        provider: impl Into<String>,
        prompt: impl Fn(&DeviceCodePrompt) + Send + Sync + 'static,
    ) -> Self {
        Self {
            provider: provider.into(),
            prompt: Arc::new(prompt),
            cancel: CancellationToken::new(),
            max_wait: None,
        }
    }

    /// Cancels the sign-in when `token` is cancelled.
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Gives up after `wait` even if the code has not expired yet.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = Some(wait);
        self
    }
}

impl fmt::Debug for DeviceCodeAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCodeAuth")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// Opens an address in a browser.
pub(crate) type Opener = Arc<dyn Fn(&str) -> std::io::Result<()> + Send + Sync>;

/// PKCE sign-in in the system browser: a loopback listener receives the
/// redirect with the authorization code. `open` is called with the address
/// to open (by default the platform's opener: `xdg-open`, `open`, `start`).
#[derive(Clone)]
pub struct BrowserPkceAuth {
    pub(crate) provider: Option<String>,
    pub(crate) open: Opener,
    pub(crate) timeout: Duration,
}

impl BrowserPkceAuth {
    /// Opens the system browser; waits up to five minutes for the redirect.
    pub fn new() -> Self {
        Self {
            provider: None,
            open: Arc::new(rsts::open_in_system_browser),
            timeout: Duration::from_secs(300),
        }
    }

    /// Preselects a provider on the sign-in page.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Opens the address some other way (print it, drive a test browser).
    pub fn opener(
        mut self,
        open: impl Fn(&str) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.open = Arc::new(open);
        self
    }

    /// How long to wait for the redirect.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Default for BrowserPkceAuth {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for BrowserPkceAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrowserPkceAuth")
            .field("provider", &self.provider)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
