//! Sign-in profiles: where an appliance is and how to sign in to it, in the
//! platform's configuration directory (`SAFEGUARD_CONFIG_DIR` overrides it),
//! one JSON file per profile holding no secret. The user token (and an SPS
//! session) goes to the OS keyring where one works, else to a file only the
//! user can read (mode 0600); `SAFEGUARD_TOKEN_STORE=file` forces the file.

use std::path::{Path, PathBuf};

use safeguard_sdk::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::exit::{usage, CliError, CliResult};

/// The keyring service name of the tool's secrets.
const KEYRING_SERVICE: &str = "safeguard-cli";

/// One named profile. Holds no secret.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Profile {
    /// The appliance (`host[:port]`).
    pub host: String,
    /// A CA bundle to trust, if not the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Whether certificate checks are off (`--insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// The identity provider signed in to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The sign-in strategy (`pkce`, `password`, `certificate`, `device-code`, `browser`, `token`).
    pub strategy: String,
    /// The user name, for the strategies that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Certificate sign-in: the certificate file (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Certificate sign-in: the unencrypted PEM key file (lets the tool
    /// sign in again by itself when the token runs out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// When the stored token runs out (seconds since the Unix epoch), as
    /// the appliance reported its lifetime at sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires: Option<u64>,
    /// Where the token is kept: `keyring` or `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_store: Option<String>,
    /// SPS: the host signed in to with `safeguard sps login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sps_host: Option<String>,
    /// SPS: where its session cookie is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sps_store: Option<String>,
    /// More members of the appliance's cluster (`--member`): the client
    /// routes across them (writes to the primary, failover).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// The tool's configuration directory.
pub fn config_dir() -> CliResult<PathBuf> {
    if let Some(dir) = std::env::var_os("SAFEGUARD_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    dirs::config_dir()
        .map(|d| d.join("safeguard"))
        .ok_or_else(|| {
            CliError::Other(
                "no configuration directory on this platform; set SAFEGUARD_CONFIG_DIR".into(),
            )
        })
}

/// Refuses profile names that are not plain file names.
pub fn check_name(name: &str) -> CliResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "invalid profile name {name:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

fn profile_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("profiles").join(format!("{name}.json"))
}

/// Reads profile `name`, if it exists.
pub fn load(name: &str) -> CliResult<Option<Profile>> {
    check_name(name)?;
    let path = profile_path(&config_dir()?, name);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Other(format!("{}: {e}", path.display()))),
    }
}

/// Writes profile `name`.
pub fn save(name: &str, profile: &Profile) -> CliResult<PathBuf> {
    check_name(name)?;
    let dir = config_dir()?;
    let path = profile_path(&dir, name);
    let text = serde_json::to_vec_pretty(profile).map_err(|e| CliError::Other(e.to_string()))?;
    write_private(&path, &text)?;
    Ok(path)
}

/// Every profile's name, sorted.
pub fn names() -> CliResult<Vec<String>> {
    let dir = config_dir()?.join("profiles");
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(CliError::Other(format!("{}: {e}", dir.display()))),
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".json") {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `bytes` to `path` (creating its folders, mode 0700) readable only
/// by the user (mode 0600 on Unix), replacing it atomically.
fn write_private(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let io = |e: std::io::Error| CliError::Other(format!("{}: {e}", path.display()));
    let parent = path
        .parent()
        .ok_or_else(|| CliError::Other("bad path".into()))?;
    create_private_dir(parent).map_err(io)?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Which secret of a profile.
#[derive(Clone, Copy, Debug)]
pub enum Secret {
    /// The SPP user token.
    Token,
    /// The SPS session cookie.
    SpsSession,
}

impl Secret {
    fn suffix(self) -> &'static str {
        match self {
            Secret::Token => "token",
            Secret::SpsSession => "sps-session",
        }
    }
}

fn secret_file(name: &str, which: Secret) -> CliResult<PathBuf> {
    Ok(config_dir()?
        .join("tokens")
        .join(format!("{name}.{}", which.suffix())))
}

fn forced_file() -> bool {
    std::env::var("SAFEGUARD_TOKEN_STORE").is_ok_and(|v| v.eq_ignore_ascii_case("file"))
}

fn keyring_entry(name: &str, which: Secret) -> Result<keyring::Entry, keyring::Error> {
    keyring::Entry::new(KEYRING_SERVICE, &format!("{name}/{}", which.suffix()))
}

/// Runs a keyring call on a thread of its own: the Secret Service backend
/// drives its D-Bus connection with a runtime of its own, which must not
/// run on a thread of ours (the keyring crate's documentation, "Tokio
/// runtime caution"). `None` if it panicked.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> Option<T> {
    std::thread::scope(|s| s.spawn(f).join().ok())
}

/// Stores a secret of profile `name`: in the keyring where one works, else
/// in a 0600 file. Returns where (`keyring` or `file`).
pub async fn store_secret(name: &str, which: Secret, secret: &SecretString) -> CliResult<String> {
    check_name(name)?;
    if !forced_file() {
        let stored = off_runtime(|| {
            keyring_entry(name, which).and_then(|e| e.set_password(secret.expose_secret()))
        });
        if let Some(Ok(())) = stored {
            // A stale file copy would outlive a keyring logout.
            let _ = std::fs::remove_file(secret_file(name, which)?);
            return Ok("keyring".into());
        }
    }
    write_private(
        &secret_file(name, which)?,
        secret.expose_secret().as_bytes(),
    )?;
    Ok("file".into())
}

/// Reads a secret of profile `name` from `store` (`keyring` or `file`).
pub async fn read_secret(
    name: &str,
    which: Secret,
    store: Option<&str>,
) -> CliResult<Option<SecretString>> {
    check_name(name)?;
    if store == Some("keyring") {
        let read = off_runtime(|| keyring_entry(name, which).and_then(|e| e.get_password()))
            .ok_or_else(|| CliError::Other("the OS keyring failed".into()))?;
        return match read {
            Ok(s) => Ok(Some(SecretString::from(s))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(CliError::Other(format!("the OS keyring: {e}"))),
        };
    }
    match std::fs::read_to_string(secret_file(name, which)?) {
        Ok(s) => Ok(Some(SecretString::from(s.trim().to_owned()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::Other(format!("the token file: {e}"))),
    }
}

/// Forgets a secret of profile `name`, wherever it is.
pub async fn forget_secret(name: &str, which: Secret, store: Option<&str>) -> CliResult<()> {
    check_name(name)?;
    if store == Some("keyring") {
        let _ = off_runtime(|| keyring_entry(name, which).and_then(|e| e.delete_credential()));
    }
    match std::fs::remove_file(secret_file(name, which)?) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(CliError::Other(format!("the token file: {e}")))
        }
        _ => Ok(()),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_plain_file_names() {
        assert!(check_name("default").is_ok());
        assert!(check_name("prod-1.eu_west").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
