//! The options every command shares, and the client a command runs with:
//! from `SAFEGUARD_TOKEN` (CI), or from the stored profile and its token,
//! signed in again by itself where the profile's strategy allows.

use std::path::PathBuf;

use clap::ArgMatches;
use safeguard_sdk::auth::{CertificateAuth, TokenAuth};
use safeguard_sdk::cluster::ClusterOptions;
use safeguard_sdk::{SafeguardClient, SafeguardClientBuilder, SecretString};

use crate::exit::{CliError, CliResult};
use crate::output::Format;
use crate::profile::{self, Profile, Secret};

/// Options given before or after any command.
#[derive(Clone, Debug)]
pub struct Globals {
    /// The profile (`--profile`, `SAFEGUARD_PROFILE`, else `default`).
    pub profile: String,
    /// `--host` or `SAFEGUARD_HOST`.
    pub host: Option<String>,
    /// `--member` (repeated) or `SAFEGUARD_MEMBERS` (comma separated).
    pub members: Vec<String>,
    /// `--ca` or `SAFEGUARD_CA`.
    pub ca: Option<PathBuf>,
    /// `--insecure` or `SAFEGUARD_INSECURE`.
    pub insecure: bool,
    /// `--output`, else JSON.
    pub output: Format,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

impl Globals {
    /// Reads the global options of `m` and their environment variables.
    pub fn from_matches(m: &ArgMatches) -> Globals {
        Globals {
            profile: m
                .get_one::<String>("profile")
                .cloned()
                .or_else(|| env("SAFEGUARD_PROFILE"))
                .unwrap_or_else(|| "default".into()),
            host: m
                .get_one::<String>("host")
                .cloned()
                .or_else(|| env("SAFEGUARD_HOST")),
            members: match m.get_many::<String>("member") {
                Some(given) => given.cloned().collect(),
                None => env("SAFEGUARD_MEMBERS")
                    .map(|v| {
                        v.split(',')
                            .map(str::trim)
                            .filter(|h| !h.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            ca: m
                .get_one::<PathBuf>("ca")
                .cloned()
                .or_else(|| env("SAFEGUARD_CA").map(PathBuf::from)),
            insecure: m.get_flag("insecure")
                || env("SAFEGUARD_INSECURE").is_some_and(|v| truthy(&v)),
            output: m
                .get_one::<String>("output")
                .and_then(|o| Format::parse(o))
                .unwrap_or(Format::Json),
        }
    }
}

impl Globals {
    /// The cluster members besides the host: the command line's, else the
    /// profile's.
    pub fn members_with(&self, stored: Option<&Profile>) -> Vec<String> {
        if self.members.is_empty() {
            stored.map(|p| p.members.clone()).unwrap_or_default()
        } else {
            self.members.clone()
        }
    }
}

/// A client builder for `host` with the trust of `ca` / `insecure`; a
/// client of the cluster when `members` names other members.
pub fn builder(
    host: &str,
    members: &[String],
    ca: Option<&PathBuf>,
    insecure: bool,
) -> CliResult<SafeguardClientBuilder> {
    let mut b = SafeguardClient::builder(host);
    if !members.is_empty() {
        b = b.cluster(ClusterOptions::new().members(members.iter().cloned()));
    }
    if let Some(ca) = ca {
        b = b.ca_file(ca)?;
    }
    if insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    Ok(b)
}

/// How the command's client was made (for the "sign in again" message).
pub struct Connected {
    /// The client, holding a token.
    pub client: SafeguardClient,
    /// The profile it came from, when not from `SAFEGUARD_TOKEN`.
    pub profile: Option<String>,
}

impl Connected {
    /// Turns an authentication failure of a profile's token into a clear
    /// "sign in again" (same exit code).
    pub fn explain(&self, e: CliError) -> CliError {
        match (&e, &self.profile) {
            (CliError::Sdk(safeguard_sdk::Error::Authentication(_)), Some(p)) => {
                CliError::SignInAgain {
                    profile: p.clone(),
                    reason: format!("{e}"),
                }
            }
            _ => e,
        }
    }
}

/// Runs `work` with the command's client; when the appliance refuses the
/// stored token (revoked, expired early) and the profile can sign in again
/// by itself, signs in again and runs `work` once more.
pub async fn with_client<F, Fut>(g: &Globals, work: F) -> CliResult<()>
where
    F: Fn(SafeguardClient) -> Fut,
    Fut: std::future::Future<Output = CliResult<()>>,
{
    let connected = connect(g).await?;
    match work(connected.client.clone()).await {
        Err(CliError::Sdk(safeguard_sdk::Error::Authentication(e))) => {
            let renewed = match (&connected.profile, profile::load(&g.profile)?) {
                (Some(name), Some(mut p)) => sign_in_unattended(name, &mut p, g).await?,
                _ => None,
            };
            let Some(token) = renewed else {
                return Err(
                    connected.explain(CliError::Sdk(safeguard_sdk::Error::Authentication(e)))
                );
            };
            let p = profile::load(&g.profile)?.unwrap_or_default();
            let host = g.host.clone().unwrap_or_else(|| p.host.clone());
            let ca = g.ca.clone().or_else(|| p.ca.clone());
            let members = g.members_with(Some(&p));
            let client = builder(&host, &members, ca.as_ref(), g.insecure || p.insecure)?
                .auth(TokenAuth::new(token))
                .build()?;
            work(client).await.map_err(|e| connected.explain(e))
        }
        other => other.map_err(|e| connected.explain(e)),
    }
}

/// The client of an authenticated command.
pub async fn connect(g: &Globals) -> CliResult<Connected> {
    let stored = profile::load(&g.profile)?;
    if let Some(token) = env("SAFEGUARD_TOKEN") {
        let host = g
            .host
            .clone()
            .or_else(|| stored.as_ref().map(|p| p.host.clone()))
            .ok_or_else(|| {
                crate::exit::usage(
                    "SAFEGUARD_TOKEN is set but no host: set SAFEGUARD_HOST or --host",
                )
            })?;
        let ca =
            g.ca.clone()
                .or_else(|| stored.as_ref().and_then(|p| p.ca.clone()));
        let insecure = g.insecure || stored.as_ref().is_some_and(|p| p.insecure);
        let members = g.members_with(stored.as_ref());
        let client = builder(&host, &members, ca.as_ref(), insecure)?
            .auth(TokenAuth::new(SecretString::from(token)))
            .build()?;
        return Ok(Connected {
            client,
            profile: None,
        });
    }
    let name = g.profile.clone();
    let Some(mut p) = stored else {
        return Err(CliError::SignInAgain {
            profile: name.clone(),
            reason: format!("no profile {name:?} (and no SAFEGUARD_TOKEN)"),
        });
    };
    let token = profile::read_secret(&name, Secret::Token, p.token_store.as_deref()).await?;
    let expired = p.token_expires.is_some_and(|t| t <= profile::now() + 30);
    let token = match token {
        Some(t) if !expired => t,
        _ => {
            if let Some(t) = sign_in_unattended(&name, &mut p, g).await? {
                t
            } else {
                let reason = if expired {
                    format!("the token of profile {name:?} ran out")
                } else {
                    format!("profile {name:?} is not signed in")
                };
                return Err(CliError::SignInAgain {
                    profile: name,
                    reason,
                });
            }
        }
    };
    let host = g.host.clone().unwrap_or_else(|| p.host.clone());
    let ca = g.ca.clone().or_else(|| p.ca.clone());
    let members = g.members_with(Some(&p));
    let client = builder(&host, &members, ca.as_ref(), g.insecure || p.insecure)?
        .auth(TokenAuth::new(token))
        .build()?;
    Ok(Connected {
        client,
        profile: Some(name),
    })
}

/// Signs in again without a person where the profile's strategy allows it
/// (a certificate with an unencrypted key file), storing the new token.
async fn sign_in_unattended(
    name: &str,
    p: &mut Profile,
    g: &Globals,
) -> CliResult<Option<SecretString>> {
    let (Some(cert), Some(key)) = (&p.cert, &p.key) else {
        return Ok(None);
    };
    if p.strategy != "certificate" {
        return Ok(None);
    }
    let mut auth = CertificateAuth::from_pem_files(cert, key)?;
    if let Some(provider) = &p.provider {
        auth = auth.provider(provider.clone());
    }
    let ca = g.ca.clone().or_else(|| p.ca.clone());
    let members = g.members_with(Some(p));
    let client = builder(&p.host, &members, ca.as_ref(), g.insecure || p.insecure)?
        .auth(auth)
        .build()?;
    client.login().await?;
    let token = client
        .user_token()
        .await
        .ok_or_else(|| CliError::Other("the sign-in gave no token".into()))?;
    remember(name, p, &client, &token).await?;
    eprintln!("signed in again with the certificate of profile {name:?}");
    Ok(Some(token))
}

/// Stores the token of a fresh sign-in and the profile (with the token's
/// expiry as the appliance reports it).
pub async fn remember(
    name: &str,
    p: &mut Profile,
    client: &SafeguardClient,
    token: &SecretString,
) -> CliResult<()> {
    let minutes = client.token_lifetime_remaining().await.ok().flatten();
    p.token_expires = minutes.map(|m| profile::now() + m * 60);
    p.token_store = Some(profile::store_secret(name, Secret::Token, token).await?);
    profile::save(name, p)?;
    Ok(())
}
