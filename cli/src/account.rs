//! `login`, `logout` and `profiles`.

use std::path::PathBuf;
use std::time::Duration;

use clap::ArgMatches;
use safeguard_sdk::auth::{
    Auth, BrowserPkceAuth, CertificateAuth, DeviceCodeAuth, PasswordAuth, PkceAuth, TokenAuth,
};
use serde_json::{json, Value};

use crate::connect::{self, Globals};
use crate::exit::{usage, CliError, CliResult};
use crate::input::{self, SecretSource};
use crate::output;
use crate::profile::{self, Profile, Secret};

fn secret_source(m: &ArgMatches) -> SecretSource<'_> {
    SecretSource {
        stdin: m.get_flag("password-stdin"),
        file: m.get_one::<PathBuf>("password-file").map(PathBuf::as_path),
        env: None,
    }
}

/// `safeguard login`.
pub async fn login(g: &Globals, m: &ArgMatches) -> CliResult<()> {
    profile::check_name(&g.profile)?;
    let existing = profile::load(&g.profile)?;
    let host = g
        .host
        .clone()
        .or_else(|| {
            existing
                .as_ref()
                .map(|p| p.host.clone())
                .filter(|h| !h.is_empty())
        })
        .ok_or_else(|| usage("no host: give --host (or SAFEGUARD_HOST)"))?;
    let ca =
        g.ca.clone()
            .or_else(|| existing.as_ref().and_then(|p| p.ca.clone()));
    let insecure = g.insecure || existing.as_ref().is_some_and(|p| p.insecure);
    let method = m
        .get_one::<String>("method")
        .map(String::as_str)
        .unwrap_or("pkce");
    let provider = m.get_one::<String>("provider").cloned();
    let mut p = Profile {
        host: host.clone(),
        ca: ca.clone(),
        insecure,
        provider: provider.clone(),
        strategy: method.to_owned(),
        sps_host: existing.as_ref().and_then(|e| e.sps_host.clone()),
        sps_store: existing.as_ref().and_then(|e| e.sps_store.clone()),
        members: g.members_with(existing.as_ref()),
        ..Profile::default()
    };
    let local = || provider.clone().unwrap_or_else(|| "local".into());
    let user = |p: &mut Profile| -> CliResult<String> {
        let u = match m.get_one::<String>("user") {
            Some(u) => u.clone(),
            None => input::read_line("User: ")?,
        };
        p.user = Some(u.clone());
        Ok(u)
    };
    let auth: Auth = match method {
        "pkce" => {
            let u = user(&mut p)?;
            let pw = input::read_secret("Password: ", secret_source(m))?;
            PkceAuth::new(local(), u, pw).into()
        }
        "password" => {
            let u = user(&mut p)?;
            let pw = input::read_secret("Password: ", secret_source(m))?;
            PasswordAuth::new(local(), u, pw).into()
        }
        "certificate" => {
            let mut auth = match (
                m.get_one::<PathBuf>("pfx"),
                m.get_one::<PathBuf>("cert"),
                m.get_one::<PathBuf>("key"),
            ) {
                (Some(pfx), None, None) => {
                    let pw = input::read_secret("PKCS#12 password: ", secret_source(m))?;
                    CertificateAuth::from_pkcs12_file(pfx, &pw)?
                }
                (None, Some(cert), Some(key)) if m.get_flag("encrypted-key") => {
                    let pw = input::read_secret("Key passphrase: ", secret_source(m))?;
                    CertificateAuth::from_encrypted_pem_files(cert, key, &pw)?
                }
                (None, Some(cert), Some(key)) => {
                    // An unencrypted key file lets the tool sign in again by
                    // itself when the token runs out.
                    p.cert = Some(absolute(cert));
                    p.key = Some(absolute(key));
                    CertificateAuth::from_pem_files(cert, key)?
                }
                _ => {
                    return Err(usage(
                        "certificate sign-in needs --cert and --key, or --pfx",
                    ))
                }
            };
            if let Some(provider) = &provider {
                auth = auth.provider(provider.clone());
            }
            auth.into()
        }
        "device-code" => DeviceCodeAuth::new(local(), |prompt| {
            let uri = prompt
                .verification_uri_complete
                .as_deref()
                .unwrap_or(&prompt.verification_uri);
            eprintln!(
                "To sign in, open {uri} and enter the code {} (valid {} s)",
                prompt.user_code,
                prompt.expires_in.as_secs()
            );
        })
        .max_wait(Duration::from_secs(900))
        .into(),
        "browser" => {
            let mut auth = BrowserPkceAuth::new().opener(|url| {
                eprintln!("Opening {url} in the browser (open it yourself if nothing happens)");
                let _ = open_browser(url);
                Ok(())
            });
            if let Some(provider) = &provider {
                auth = auth.provider(provider.clone());
            }
            auth.into()
        }
        "token" => {
            // Piped in, or typed at a prompt without echo.
            let token = input::read_secret(
                "Token: ",
                SecretSource {
                    stdin: !std::io::IsTerminal::is_terminal(&std::io::stdin()),
                    file: None,
                    env: None,
                },
            )?;
            if token.expose_len() == 0 {
                return Err(usage("no token on stdin"));
            }
            TokenAuth::new(token).into()
        }
        other => return Err(usage(format!("unknown sign-in method {other}"))),
    };
    let client = connect::builder(&host, &p.members, ca.as_ref(), insecure)?
        .auth(auth)
        .build()?;
    client.login().await?;
    // A token given as it is: check it before storing it.
    if method == "token" {
        client
            .get(safeguard_sdk::Service::Core, "Me")
            .send()
            .await?;
    }
    let token = client
        .user_token()
        .await
        .ok_or_else(|| CliError::Other("the sign-in gave no token".into()))?;
    connect::remember(&g.profile, &mut p, &client, &token).await?;
    let store = match p.token_store.as_deref() {
        Some("keyring") => "the OS keyring",
        _ => "a file only you can read",
    };
    eprintln!(
        "Signed in to {host} ({method}); profile {:?}, token in {store}",
        g.profile
    );
    Ok(())
}

/// Length of a secret without showing it.
trait ExposeLen {
    fn expose_len(&self) -> usize;
}

impl ExposeLen for safeguard_sdk::SecretString {
    fn expose_len(&self) -> usize {
        use safeguard_sdk::ExposeSecret;
        self.expose_secret().len()
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// Opens `url` with `SAFEGUARD_BROWSER` (a command; `none`: only print the
/// address), else the platform's opener.
fn open_browser(url: &str) -> std::io::Result<()> {
    let chosen = std::env::var("SAFEGUARD_BROWSER")
        .ok()
        .filter(|b| !b.is_empty());
    if chosen.as_deref() == Some("none") {
        return Ok(());
    }
    let mut cmd = if let Some(browser) = chosen {
        std::process::Command::new(browser)
    } else if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    } else {
        std::process::Command::new("xdg-open")
    };
    cmd.arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
}

/// `safeguard logout`: the appliance invalidates the token, the profile
/// forgets it.
pub async fn logout(g: &Globals) -> CliResult<()> {
    let stored = profile::load(&g.profile)?;
    let connected = connect::connect(g).await;
    let result = match &connected {
        Ok(c) => c.client.logout().await.map_err(CliError::from),
        Err(e) => Err(CliError::Other(e.to_string())),
    };
    if let (Some(mut p), None) = (stored, std::env::var_os("SAFEGUARD_TOKEN")) {
        profile::forget_secret(&g.profile, Secret::Token, p.token_store.as_deref()).await?;
        p.token_expires = None;
        p.token_store = None;
        profile::save(&g.profile, &p)?;
        match result {
            Ok(()) => eprintln!("Signed out; profile {:?} forgot its token", g.profile),
            Err(e) => eprintln!(
                "profile {:?} forgot its token (the appliance was not told: {e})",
                g.profile
            ),
        }
        return Ok(());
    }
    result?;
    eprintln!("Signed out");
    Ok(())
}

/// `safeguard profiles`.
pub async fn profiles(g: &Globals) -> CliResult<()> {
    let mut list = Vec::new();
    for name in profile::names()? {
        let Some(p) = profile::load(&name)? else {
            continue;
        };
        let signed_in =
            p.token_store.is_some() && p.token_expires.is_none_or(|t| t > profile::now());
        list.push(json!({
            "Name": name,
            "Host": p.host,
            "Strategy": p.strategy,
            "Provider": p.provider,
            "User": p.user,
            "SignedIn": signed_in,
            "TokenExpires": p.token_expires,
            "TokenStore": p.token_store,
            "SpsHost": p.sps_host,
        }));
    }
    output::print(&Value::Array(list), g.output).map_err(crate::exec::io_error)
}
