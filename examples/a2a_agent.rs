//! An A2A agent: keeps credentials in files, current, and runs a command
//! after each change (what Vault Agent does for Vault).
//!
//! ```sh
//! cargo run --example a2a_agent                      # a demonstration on the embedded emulator
//! cargo run --example a2a_agent -- --host sg.example.com --cert cert.pem --key key.pem --ca ca.pem \
//!     --password env:DB_API_KEY=/run/secrets/db-password \
//!     --private-key env:DEPLOY_API_KEY=/run/secrets/deploy-key:openssh \
//!     --exec 'systemctl reload myapp'
//! ```
//!
//! One [`CredentialWatch`] holds every credential (one A2A event listener
//! for all of them); each is pulled at start, again on each A2A event of
//! its kind, after every reconnect of the event hub (the hub does not replay
//! what it sent while the agent was away) and every `--safety-interval`.
//! Outages are survived: the first pull is retried until the appliance
//! answers, a pull that fails keeps the file as it is (and says so), the
//! hub is reconnected, and a file that cannot be written is tried again.
//!
//! # Arguments (and environment variables)
//!
//! | argument | variable | |
//! |---|---|---|
//! | `--host` | `SAFEGUARD_HOST` | appliance, `name[:port]`; none: the embedded emulator |
//! | `--cert` | `SAFEGUARD_CERT` | client certificate (PEM) |
//! | `--key` | `SAFEGUARD_KEY` | its private key (PEM) |
//! | `--ca` | `SAFEGUARD_CA` | CA to trust (PEM); system roots otherwise |
//! | `--password KEY=PATH` | | an account's password into `PATH` (repeatable) |
//! | `--private-key KEY=PATH[:format]` | | an account's SSH key (`openssh`, the default, `ssh2` or `putty`) |
//! | `--exec CMD` | | run by `sh -c` after each write |
//! | `--safety-interval SECS` | | pull everything this often without events (default 300) |
//! | `--once` | | exit after the first change that follows the start |
//!
//! `KEY` is the A2A API key, or `env:NAME` to read it from the environment
//! variable `NAME` (an argument is visible to every user of the machine in
//! its process list). The argument is split at its last `=`, so keys ending
//! in `=` work and paths must not contain one.
//!
//! # Files
//!
//! A file holds the secret alone, as retrieved, without a trailing newline.
//! It is created with mode 0600 (never readable by anyone else, not even for
//! an instant) and replaced atomically: the new value is written to a
//! temporary file in the same directory (`.NAME.tmp-…`, mode 0600 from its
//! creation), flushed to disk, renamed over the file and the directory
//! flushed. A reader sees the old value or the new one, never a mix. A
//! missing directory is created with mode 0700. An unencrypted OpenSSH key
//! pulled again is compared without its random check numbers (they change
//! with every export of the same key), so the file is not rewritten, nor the
//! command run, for a key that did not change.
//!
//! # The command
//!
//! `--exec` runs after every write of a new value, the first one at start
//! included, with `SAFEGUARD_AGENT_FILE` (the file written),
//! `SAFEGUARD_AGENT_KIND` (`password` or `private-key`) and
//! `SAFEGUARD_AGENT_VERSION` (1 at start, one more per change) in its
//! environment. It never receives the secret: it reads the file. Commands of
//! one file run one at a time; their failure is reported and the agent
//! carries on.
//!
//! # The demonstration
//!
//! Without a host the agent starts the embedded emulator, keeps its A2A
//! password and SSH key in files of a temporary directory, waits for the
//! event hub, rotates the password through the core API as an administrator,
//! and exits once the rotated value is in the file: 0 when it arrived
//! (checked byte for byte, and the file's mode), 1 when it did not within 30
//! seconds. CI runs it. Against an appliance the agent runs until Ctrl-C or
//! SIGTERM (or the first change with `--once`).
//!
//! No secret is ever printed: values are shown by their length only, API
//! keys not at all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use safeguard_sdk::a2a::{A2aContext, CredentialWatch, KeyFormat, Watched};
use safeguard_sdk::events::ListenerState;
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{ExposeSecret, SecretString};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error>;

const USAGE: &str = "usage: a2a_agent [--host HOST --cert CERT.pem --key KEY.pem [--ca CA.pem]]
                 [--password KEY=PATH]... [--private-key KEY=PATH[:openssh|ssh2|putty]]...
                 [--exec CMD] [--safety-interval SECS] [--once]
KEY is the A2A API key or env:NAME. Without --host: a demonstration on the embedded emulator.";

/// What a file holds.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Password,
    PrivateKey(KeyFormat),
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Password => "password",
            Kind::PrivateKey(_) => "private-key",
        }
    }
}

/// One credential kept in one file.
struct Target {
    kind: Kind,
    api_key: SecretString,
    path: PathBuf,
}

#[derive(Default)]
struct Options {
    host: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
    targets: Vec<Target>,
    exec: Option<String>,
    safety_interval: Option<Duration>,
    once: bool,
}

/// Reads the arguments (`--name value` or `--name=value`).
fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--once" {
            o.once = true;
            continue;
        }
        if arg == "--help" || arg == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        const TAKE_VALUES: [&str; 8] = [
            "--host",
            "--cert",
            "--key",
            "--ca",
            "--exec",
            "--safety-interval",
            "--password",
            "--private-key",
        ];
        if !TAKE_VALUES.contains(&name) {
            // Not echoed unless it is a flag: a misplaced value may be a key.
            return Err(if name.starts_with("--") {
                format!("unknown argument {name}")
            } else {
                "unexpected argument (not shown, it may hold a secret)".to_owned()
            });
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let v = args
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?;
                i += 1;
                v
            }
        };
        match name {
            "--host" => o.host = Some(value),
            "--cert" => o.cert = Some(value),
            "--key" => o.key = Some(value),
            "--ca" => o.ca = Some(value),
            "--exec" => o.exec = Some(value),
            "--safety-interval" => {
                let secs: u64 = value
                    .parse()
                    .map_err(|_| format!("--safety-interval {value:?}: a number of seconds"))?;
                o.safety_interval = Some(Duration::from_secs(secs.max(1)));
            }
            "--password" => {
                let (api_key, path) = key_and_path(name, &value)?;
                o.targets.push(Target {
                    kind: Kind::Password,
                    api_key,
                    path: PathBuf::from(path),
                });
            }
            "--private-key" => {
                let (api_key, rest) = key_and_path(name, &value)?;
                // A last `:format` is the format when it names one.
                let (path, format) = rest
                    .rsplit_once(':')
                    .filter(|(p, _)| !p.is_empty())
                    .and_then(|(p, f)| Some((p, f.parse::<KeyFormat>().ok()?)))
                    .unwrap_or((rest, KeyFormat::OpenSsh));
                o.targets.push(Target {
                    kind: Kind::PrivateKey(format),
                    api_key,
                    path: PathBuf::from(path),
                });
            }
            _ => unreachable!("every name in TAKE_VALUES is handled"),
        }
    }
    Ok(o)
}

/// `KEY=PATH`, split at the last `=`; `KEY` may be `env:NAME`. The error
/// never repeats the argument (it holds an API key).
fn key_and_path<'a>(flag: &str, value: &'a str) -> Result<(SecretString, &'a str), String> {
    let (key, path) = value
        .rsplit_once('=')
        .filter(|(k, p)| !k.trim().is_empty() && !p.is_empty())
        .ok_or_else(|| format!("{flag} takes KEY=PATH"))?;
    let key = match key.strip_prefix("env:") {
        Some(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| format!("{flag}: the environment variable {var} is not set"))?,
        None => key.to_owned(),
    };
    Ok((SecretString::from(key), path))
}

/// An argument, else the environment variable.
fn or_env(value: Option<String>, var: &str) -> Option<String> {
    value
        .or_else(|| std::env::var(var).ok())
        .filter(|v| !v.is_empty())
}

/// Replaces `path` with `secret`, atomically, never readable by others (see
/// the module docs).
fn write_secret_file(path: &Path, secret: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        )
    })?;
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    // create_new: never an existing file, nor a symbolic link planted there.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = write_and_rename(&options, &temp, path, dir, secret);
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// The steps of [`write_secret_file`]; the caller removes `temp` on failure.
fn write_and_rename(
    options: &std::fs::OpenOptions,
    temp: &Path,
    path: &Path,
    dir: &Path,
    secret: &[u8],
) -> std::io::Result<()> {
    let mut file = options.open(temp)?;
    // The umask may only have taken bits away; make it exactly 0600.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(secret)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(temp, path)?;
    // The rename itself, on disk.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Creates the directory of `path` (mode 0700) when missing.
fn ensure_dir(path: &Path) -> std::io::Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// A value written to its file.
struct Written {
    target: usize,
    /// 1 for the value written at start, one more for each change.
    version: u64,
}

/// Runs `--exec` for a write.
async fn run_exec(command: &str, path: &Path, kind: Kind, version: u64) {
    #[cfg(unix)]
    let mut cmd = {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(command);
        c
    };
    #[cfg(not(unix))]
    let mut cmd = {
        let mut c = tokio::process::Command::new("cmd");
        c.arg("/C").arg(command);
        c
    };
    cmd.env("SAFEGUARD_AGENT_FILE", path)
        .env("SAFEGUARD_AGENT_KIND", kind.label())
        .env("SAFEGUARD_AGENT_VERSION", version.to_string())
        .stdin(std::process::Stdio::null());
    match cmd.status().await {
        Ok(status) if status.success() => println!("exec for {}: done", path.display()),
        Ok(status) => eprintln!("exec for {}: {status}", path.display()),
        Err(e) => eprintln!("exec for {}: could not run it: {e}", path.display()),
    }
}

/// Keeps `path` holding the value of `watched`: writes each new value (and
/// tries again every 5 s when a write fails), then runs `exec`.
fn keep_file(
    index: usize,
    target: &Target,
    watched: Watched<SecretString>,
    exec: Option<String>,
    written: mpsc::UnboundedSender<Written>,
) -> tokio::task::JoinHandle<()> {
    let (path, kind) = (target.path.clone(), target.kind);
    let mut rx = watched.subscribe();
    tokio::spawn(async move {
        // The watch's version seen last (a new version is a new value: the
        // watch tells a key exported again from a new key) and the number
        // of values written to the file.
        let mut seen = 0u64;
        let mut version = 0u64;
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(current) = current.filter(|c| c.version != seen) {
                let (p, value) = (path.clone(), current.value.clone());
                let result = tokio::task::spawn_blocking(move || {
                    write_secret_file(&p, value.expose_secret().as_bytes())
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                match result {
                    Ok(()) => {
                        seen = current.version;
                        version += 1;
                        println!(
                            "{} {}: version {version} written ({} characters)",
                            kind.label(),
                            path.display(),
                            current.value.expose_secret().chars().count()
                        );
                        if let Some(command) = &exec {
                            run_exec(command, &path, kind, version).await;
                        }
                        let _ = written.send(Written {
                            target: index,
                            version,
                        });
                    }
                    Err(e) => {
                        eprintln!(
                            "{}: cannot write ({e}); trying again in 5 s",
                            path.display()
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            changed = rx.changed() => if changed.is_err() { break },
                        }
                        continue;
                    }
                }
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    })
}

/// Reports what the agent goes through: the event hub's state, the A2A
/// events (typed), pulls that start or stop failing.
///
/// The receiver turns `true` once the events are shown and the hub is
/// connected.
fn monitor(
    watch: CredentialWatch,
    targets: Vec<(PathBuf, Watched<SecretString>)>,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<bool>,
) {
    let (ready_tx, ready) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut state = ListenerState::Idle;
        let mut events_shown = false;
        let mut failing = vec![false; targets.len()];
        loop {
            if !events_shown {
                if let Some(listener) = watch.listener() {
                    listener.on_any(|event: &safeguard_sdk::events::Event| {
                        if let Some(a2a) = event.as_a2a() {
                            println!("event: {a2a}");
                        }
                    });
                    events_shown = true;
                }
            }
            let now = watch.listener_state();
            if now != state {
                println!("event hub: {now:?}");
                state = now;
            }
            ready_tx.send_replace(events_shown && state == ListenerState::Connected);
            for (i, (path, watched)) in targets.iter().enumerate() {
                let status = watched.status();
                match (&status.last_error, failing[i]) {
                    (Some(e), false) => {
                        match status.age {
                            Some(age) => eprintln!(
                                "{}: pulls failing ({e}); the file keeps the value confirmed {age:.1?} ago",
                                path.display()
                            ),
                            None => eprintln!("{}: pulls failing ({e}); no value yet", path.display()),
                        }
                        failing[i] = true;
                    }
                    (None, true) => {
                        println!("{}: pulls work again", path.display());
                        failing[i] = false;
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    (task, ready)
}

/// Resolves on Ctrl-C or (Unix) SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The demonstration: the embedded emulator and the temporary directory of
/// the files.
struct Demo {
    emulator: safeguard_emulator::Emulator,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Rotates the password of the emulator's A2A password account through
    /// the core API, as an administrator; returns the new password.
    async fn rotate(&self) -> Result<SecretString, BoxError> {
        use safeguard_sdk::auth::PkceAuth;
        use safeguard_sdk::{SafeguardClient, Service};
        let admin = &self.emulator.connection().spp.admin;
        let client = SafeguardClient::builder(self.emulator.spp_host())
            .ca_pem(self.emulator.ca_pem())?
            .auth(PkceAuth::new(
                "local",
                admin.user.clone(),
                admin.password.clone(),
            ))
            .build()?;
        client.login().await?;
        let mut random = [0u8; 16];
        openssl::rand::rand_bytes(&mut random)?;
        let password = SecretString::from(format!("Rotated-{}", hex::encode(random)));
        let id = self.emulator.control().password_account_id();
        client
            .put(Service::Core, &format!("AssetAccounts/{id}/Password"))
            .json(password.expose_secret())
            .send()
            .await?;
        client.logout().await?;
        Ok(password)
    }
}

#[tokio::main]
async fn main() {
    match run().await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("a2a_agent: {e}");
            std::process::exit(2);
        }
    }
}

async fn run() -> Result<i32, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut options = parse_args(&args).map_err(|e| format!("{e}\n{USAGE}"))?;

    let mut demo = None;
    let a2a = match or_env(options.host.take(), "SAFEGUARD_HOST") {
        Some(host) => {
            let missing = |what: &str| format!("{what} is required with a host\n{USAGE}");
            let cert =
                or_env(options.cert.take(), "SAFEGUARD_CERT").ok_or_else(|| missing("--cert"))?;
            let key =
                or_env(options.key.take(), "SAFEGUARD_KEY").ok_or_else(|| missing("--key"))?;
            if options.targets.is_empty() {
                return Err(
                    format!("nothing to keep: give --password or --private-key\n{USAGE}").into(),
                );
            }
            let tls = match or_env(options.ca.take(), "SAFEGUARD_CA") {
                Some(ca) => TlsOptions::default().with_ca_file(ca)?,
                None => TlsOptions::default(),
            };
            A2aContext::builder(host)
                .pem_files(cert, key)
                .tls(tls)
                .build()?
        }
        None => {
            use safeguard_emulator::{ClientCertMode, Emulator, EmulatorConfig};
            let emulator = Emulator::start(EmulatorConfig {
                client_cert_mode: ClientCertMode::PostHandshake,
                ..EmulatorConfig::default()
            })
            .await?;
            println!("demo: embedded emulator at https://{}", emulator.spp_host());
            let dir = tempfile::Builder::new().prefix("a2a-agent-").tempdir()?;
            println!("demo: files in {}", dir.path().display());
            let spp = &emulator.connection().spp;
            if options.targets.is_empty() {
                options.targets.push(Target {
                    kind: Kind::Password,
                    api_key: SecretString::from(spp.a2a.password_api_key.clone()),
                    path: dir.path().join("password"),
                });
                options.targets.push(Target {
                    kind: Kind::PrivateKey(KeyFormat::OpenSsh),
                    api_key: SecretString::from(spp.a2a.ssh_key_api_key.clone()),
                    path: dir.path().join("id_svc"),
                });
            }
            let a2a = A2aContext::builder(emulator.spp_host())
                .pem_files(&spp.client_cert.cert, &spp.client_cert.key)
                .tls(TlsOptions::default().with_ca_pem(emulator.ca_pem())?)
                .build()?;
            demo = Some(Demo {
                emulator,
                _dir: dir,
            });
            a2a
        }
    };

    // One watch, one event listener, every credential.
    let mut watch = a2a.credential_watch();
    if let Some(every) = options.safety_interval {
        watch = watch.safety_interval(every);
    }
    let mut watched = Vec::new();
    for target in &options.targets {
        ensure_dir(&target.path)?;
        watched.push(match target.kind {
            Kind::Password => watch.password(target.api_key.clone()),
            Kind::PrivateKey(format) => watch.private_key(target.api_key.clone(), format),
        });
    }
    let (written_tx, mut written) = mpsc::unbounded_channel();
    let writers: Vec<_> = options
        .targets
        .iter()
        .zip(&watched)
        .enumerate()
        .map(|(i, (t, w))| keep_file(i, t, w.clone(), options.exec.clone(), written_tx.clone()))
        .collect();
    drop(written_tx);
    let (monitor, mut ready) = monitor(
        watch.clone(),
        options
            .targets
            .iter()
            .map(|t| t.path.clone())
            .zip(watched.iter().cloned())
            .collect(),
    );

    // The first pull of every credential, retried until the appliance answers.
    let mut delay = Duration::from_secs(1);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        match watch.start().await {
            Ok(()) => break,
            Err(e) => {
                eprintln!("first pull failed ({e}); trying again in {delay:?}");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut shutdown => return Ok(130),
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
    println!(
        "keeping {} credential(s) current (Ctrl-C to stop)",
        options.targets.len()
    );

    let code = match &demo {
        Some(demo) => demonstrate(demo, &mut ready, &options.targets, &mut written).await?,
        None => loop {
            tokio::select! {
                _ = &mut shutdown => break 0,
                w = written.recv() => match w {
                    Some(w) if options.once && w.version > 1 => {
                        println!("--once: {} changed; exiting", options.targets[w.target].path.display());
                        break 0;
                    }
                    Some(_) => {}
                    None => break 1,
                },
            }
        },
    };
    watch.stop().await;
    monitor.abort();
    for writer in writers {
        writer.abort();
    }
    drop(demo);
    Ok(code)
}

/// The demonstration: a rotation through the core API must reach the file.
async fn demonstrate(
    demo: &Demo,
    ready: &mut tokio::sync::watch::Receiver<bool>,
    targets: &[Target],
    written: &mut mpsc::UnboundedReceiver<Written>,
) -> Result<i32, BoxError> {
    const WAIT: Duration = Duration::from_secs(30);
    let Some(index) = targets
        .iter()
        .position(|t| matches!(t.kind, Kind::Password))
    else {
        return Err("the demonstration needs a --password target".into());
    };
    let path = &targets[index].path;
    // Connected, and the typed events shown, so that the rotation's event
    // is seen arriving.
    if tokio::time::timeout(WAIT, ready.wait_for(|r| *r))
        .await
        .is_err()
    {
        eprintln!("demo: the event hub did not connect; the rotation may arrive by a later pull");
    }
    let rotated = demo.rotate().await?;
    let started = Instant::now();
    println!("demo: rotated the password through the core API, as an administrator");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let w = match tokio::time::timeout_at(deadline, written.recv()).await {
            Ok(Some(w)) => w,
            Ok(None) | Err(_) => {
                eprintln!(
                    "demo: FAILED: the rotated password did not reach {} within {WAIT:?}",
                    path.display()
                );
                return Ok(1);
            }
        };
        if w.target != index || w.version < 2 {
            continue;
        }
        let on_disk = SecretString::from(String::from_utf8(std::fs::read(path)?)?);
        if on_disk.expose_secret() != rotated.expose_secret() {
            // An older write; the newer one follows.
            continue;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode != 0o600 {
                eprintln!(
                    "demo: FAILED: {} has mode {mode:o}, not 600",
                    path.display()
                );
                return Ok(1);
            }
        }
        println!(
            "demo: the rotated password is in {} (version {}, mode 600) {} ms after the rotation",
            path.display(),
            w.version,
            started.elapsed().as_millis()
        );
        return Ok(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let args: Vec<String> = [
            "--password",
            "abc==/tmp/p",
            "--private-key=k=/tmp/id:putty",
            "--private-key",
            "k2=/tmp/dir:x/id",
            "--safety-interval",
            "30",
            "--once",
        ]
        .map(String::from)
        .to_vec();
        let o = parse_args(&args).unwrap();
        assert_eq!(o.targets.len(), 3);
        assert_eq!(o.targets[0].api_key.expose_secret(), "abc=");
        assert_eq!(o.targets[0].path, PathBuf::from("/tmp/p"));
        assert!(matches!(
            o.targets[1].kind,
            Kind::PrivateKey(KeyFormat::Putty)
        ));
        assert_eq!(o.targets[1].path, PathBuf::from("/tmp/id"));
        assert_eq!(o.targets[2].path, PathBuf::from("/tmp/dir:x/id"));
        assert_eq!(o.safety_interval, Some(Duration::from_secs(30)));
        assert!(o.once);
        assert!(parse_args(&["--password".into(), "nokey".into()]).is_err());
        let e = parse_args(&["secret-key=/tmp/p".into()]).err().unwrap();
        assert!(!e.contains("secret-key"), "{e}");
        assert!(parse_args(&["--bogus".into(), "x".into()]).is_err());
    }

    #[test]
    fn files_are_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("secret");
        ensure_dir(&path).unwrap();
        write_secret_file(&path, b"one").unwrap();
        write_secret_file(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
    }
}
