//! `safeguard a2a ...`: credential retrieval and setting with a client
//! certificate and an API key (the SDK's `A2aContext`), and `a2a watch`
//! (its credential watch).

use std::path::PathBuf;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use futures::StreamExt;
use safeguard_sdk::a2a::{A2aContext, BrokeredAccessRequest, KeyFormat};
use safeguard_sdk::tls::TlsOptions;
use safeguard_sdk::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::connect::Globals;
use crate::exec::io_error;
use crate::exit::{usage, CliError, CliResult};
use crate::input::{self, SecretSource};
use crate::output;
use crate::profile;
use crate::table::Operation;

/// The handwritten names under `a2a` (the generated groups sit beside them).
pub const NAMES: [&str; 8] = [
    "get-password",
    "get-private-key",
    "get-api-key",
    "set-password",
    "set-private-key",
    "accounts",
    "broker",
    "watch",
];

fn file(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .value_name("FILE")
        .value_parser(value_parser!(PathBuf))
        .help(help)
}

/// The certificate and API-key options of every A2A command.
pub fn identity_args(cmd: Command, api_key: bool) -> Command {
    let cmd = cmd
        .arg(file("cert", "The client certificate (PEM)").help_heading("Identity"))
        .arg(file("key", "Its private key (PEM, unencrypted)").help_heading("Identity"))
        .arg(file("pfx", "A PKCS#12 file instead (password: --pfx-password-file or SAFEGUARD_PFX_PASSWORD or prompt)").help_heading("Identity"))
        .arg(file("pfx-password-file", "The PKCS#12 password").help_heading("Identity"));
    if !api_key {
        return cmd;
    }
    cmd.arg(
        Arg::new("api-key-stdin")
            .long("api-key-stdin")
            .action(ArgAction::SetTrue)
            .help("Read the API key from stdin")
            .help_heading("Identity"),
    )
    .arg(
        file(
            "api-key-file",
            "Read the API key from FILE (else SAFEGUARD_A2A_KEY, else a prompt)",
        )
        .help_heading("Identity"),
    )
}

/// Adds the handwritten A2A commands to the `a2a` command.
pub fn commands(a2a: Command) -> Command {
    let format = || {
        Arg::new("format")
            .long("format")
            .value_parser(["openssh", "ssh2", "putty"])
            .default_value("openssh")
            .help("The SSH key format")
    };
    a2a.subcommand(
        identity_args(Command::new("get-password").about("Print the password of the account the API key is registered for"), true)
            .after_help("Example:\n  SAFEGUARD_A2A_KEY=... safeguard a2a get-password --host sg --cert c.pem --key k.pem"),
    )
    .subcommand(identity_args(Command::new("get-private-key").about("Print the SSH private key of the account"), true).arg(format()))
    .subcommand(identity_args(Command::new("get-api-key").about("Print the API key secrets of the account (JSON)"), true))
    .subcommand(
        identity_args(Command::new("set-password").about("Set the account's password (read from --password-file or a prompt)"), true)
            .arg(file("password-file", "The new password")),
    )
    .subcommand(
        identity_args(Command::new("set-private-key").about("Set the account's SSH private key"), true)
            .arg(file("private-key-file", "The new private key").required(true))
            .arg(file("passphrase-file", "Its passphrase, when it is encrypted"))
            .arg(format()),
    )
    .subcommand(
        identity_args(Command::new("accounts").about("List the certificate user's A2A registrations and retrievable accounts"), false).arg(
            Arg::new("show-api-keys")
                .long("show-api-keys")
                .action(ArgAction::SetTrue)
                .help("Include each account's API key (a secret)"),
        ),
    )
    .subcommand(
        identity_args(Command::new("broker").about("Broker an access request for another user (a broker's API key)"), true).arg(
            Arg::new("body")
                .long("body")
                .value_name("FILE|-")
                .value_parser(value_parser!(PathBuf))
                .required(true)
                .help("The BrokeredAccessRequest as JSON (ForUserId, AssetId, AccountId, AccessRequestType, ...)"),
        ),
    )
    .subcommand(
        identity_args(
            Command::new("watch")
                .about("Keep the account's credential current; print each value as a JSON line until Ctrl-C")
                .after_help("Example:\n  safeguard a2a watch --cert c.pem --key k.pem --api-key-file key.txt --output jsonl"),
            true,
        )
        .arg(
            Arg::new("kind")
                .long("kind")
                .value_parser(["password", "private-key", "api-key"])
                .default_value("password")
                .help("Which credential"),
        )
        .arg(format())
        .arg(
            Arg::new("count")
                .long("count")
                .value_parser(value_parser!(u64))
                .help("Stop after this many values"),
        ),
    )
}

/// The A2A context of the command: host and trust from the globals or the
/// profile, the certificate from the options.
/// The A2A context of `events listen --a2a`.
pub fn context_for(g: &Globals, m: &ArgMatches) -> CliResult<A2aContext> {
    context(g, m)
}

/// The API key of `events listen --a2a`.
pub fn api_key_for(m: &ArgMatches) -> CliResult<SecretString> {
    api_key(m)
}

fn context(g: &Globals, m: &ArgMatches) -> CliResult<A2aContext> {
    let stored = profile::load(&g.profile)?;
    let host = g
        .host
        .clone()
        .or_else(|| {
            stored
                .as_ref()
                .map(|p| p.host.clone())
                .filter(|h| !h.is_empty())
        })
        .ok_or_else(|| usage("no host: give --host (or SAFEGUARD_HOST, or a profile)"))?;
    let ca =
        g.ca.clone()
            .or_else(|| stored.as_ref().and_then(|p| p.ca.clone()));
    let mut tls = TlsOptions::default();
    if let Some(ca) = ca {
        tls = tls.with_ca_file(ca)?;
    }
    if g.insecure || stored.as_ref().is_some_and(|p| p.insecure) {
        tls = tls.danger_accept_invalid_certs(true);
    }
    let mut b = A2aContext::builder(host)
        .members(g.members_with(stored.as_ref()))
        .tls(tls);
    b = match (
        m.get_one::<PathBuf>("pfx"),
        m.get_one::<PathBuf>("cert"),
        m.get_one::<PathBuf>("key"),
    ) {
        (Some(pfx), None, None) => {
            let pw = input::read_secret(
                "PKCS#12 password: ",
                SecretSource {
                    stdin: false,
                    file: m
                        .get_one::<PathBuf>("pfx-password-file")
                        .map(PathBuf::as_path),
                    env: Some("SAFEGUARD_PFX_PASSWORD"),
                },
            )?;
            b.pkcs12_file(pfx, pw)
        }
        (None, Some(cert), Some(key)) => b.pem_files(cert, key),
        _ => return Err(usage("A2A needs --cert and --key, or --pfx")),
    };
    Ok(b.build()?)
}

fn api_key(m: &ArgMatches) -> CliResult<SecretString> {
    input::read_secret(
        "API key: ",
        SecretSource {
            stdin: m.get_flag("api-key-stdin"),
            file: m.get_one::<PathBuf>("api-key-file").map(PathBuf::as_path),
            env: Some("SAFEGUARD_A2A_KEY"),
        },
    )
}

fn key_format(m: &ArgMatches) -> CliResult<KeyFormat> {
    m.get_one::<String>("format")
        .map(String::as_str)
        .unwrap_or("openssh")
        .parse()
        .map_err(CliError::from)
}

fn print_line(text: &str) -> CliResult<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).map_err(io_error)?;
    if !text.ends_with('\n') {
        out.write_all(b"\n").map_err(io_error)?;
    }
    out.flush().map_err(io_error)
}

fn read_file_secret(path: &std::path::Path) -> CliResult<SecretString> {
    input::read_secret(
        "",
        SecretSource {
            stdin: false,
            file: Some(path),
            env: None,
        },
    )
}

/// Runs handwritten A2A command `name`.
pub async fn run(name: &str, g: &Globals, m: &ArgMatches) -> CliResult<()> {
    let ctx = context(g, m)?;
    match name {
        "get-password" => {
            let key = api_key(m)?;
            let pw = ctx.retrieve_password(&key).await?;
            print_line(pw.expose_secret())
        }
        "get-private-key" => {
            let key = api_key(m)?;
            let pk = ctx.retrieve_private_key(&key, key_format(m)?).await?;
            print_line(pk.expose_secret())
        }
        "get-api-key" => {
            let key = api_key(m)?;
            let secrets = ctx.retrieve_api_key_secret(&key).await?;
            let list: Vec<Value> = secrets.iter().map(api_key_json).collect();
            output::print(&Value::Array(list), g.output).map_err(io_error)
        }
        "set-password" => {
            let key = api_key(m)?;
            let pw = input::read_secret(
                "New password: ",
                SecretSource {
                    stdin: false,
                    file: m.get_one::<PathBuf>("password-file").map(PathBuf::as_path),
                    env: None,
                },
            )?;
            ctx.set_password(&key, &pw).await?;
            eprintln!("password set");
            Ok(())
        }
        "set-private-key" => {
            let key = api_key(m)?;
            let file = m
                .get_one::<PathBuf>("private-key-file")
                .ok_or_else(|| usage("--private-key-file"))?;
            let pk = read_file_secret(file)?;
            let passphrase = match m.get_one::<PathBuf>("passphrase-file") {
                Some(f) => Some(read_file_secret(f)?),
                None => None,
            };
            ctx.set_private_key(&key, &pk, passphrase.as_ref(), key_format(m)?)
                .await?;
            eprintln!("private key set");
            Ok(())
        }
        "accounts" => {
            let show = m.get_flag("show-api-keys");
            let regs = ctx.retrievable_accounts().await?;
            let mut rows = Vec::new();
            for r in &regs {
                for a in &r.accounts {
                    let mut row = json!({
                        "RegistrationId": r.id,
                        "AppName": r.app_name,
                        "AccountId": a.account_id,
                        "AccountName": a.account_name,
                        "DomainName": a.domain_name,
                        "AssetId": a.asset_id,
                        "AssetName": a.asset_name,
                        "NetworkAddress": a.network_address,
                        "AccountDisabled": a.account_disabled,
                    });
                    if show {
                        row["ApiKey"] = json!(a.api_key.expose_secret());
                    }
                    rows.push(row);
                }
            }
            output::print(&Value::Array(rows), g.output).map_err(io_error)
        }
        "broker" => {
            let key = api_key(m)?;
            let source = m
                .get_one::<PathBuf>("body")
                .ok_or_else(|| usage("--body"))?;
            let body = crate::exec::read_json_body(source, false)?;
            let request: BrokeredAccessRequest = serde_json::from_value(body)
                .map_err(|e| usage(format!("not a BrokeredAccessRequest: {e}")))?;
            let created = ctx.broker_access_request(&key, &request).await?;
            let v = serde_json::to_value(created).map_err(|e| CliError::Other(e.to_string()))?;
            output::print(&v, g.output).map_err(io_error)
        }
        "watch" => watch(ctx, g, m).await,
        other => Err(usage(format!("unknown a2a command {other}"))),
    }
}

/// Runs a generated command of the a2a service through the SDK's
/// `A2aContext` (certificate transport, `Authorization: A2A <key>`), which
/// offers each operation of the A2A document as a method.
pub async fn run_generated(op: &'static Operation, g: &Globals, m: &ArgMatches) -> CliResult<()> {
    let call = crate::generated::call(op, m)?;
    let query = |name: &str| {
        call.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = match call.payload {
        crate::exec::Payload::Json(v) => Some(v),
        _ => None,
    };
    let ctx = context(g, m)?;
    let key = api_key(m)?;
    let print = |v: &Value| output::print(v, g.output).map_err(io_error);
    let format = |q: Option<String>| -> CliResult<KeyFormat> {
        q.as_deref()
            .unwrap_or("openssh")
            .parse()
            .map_err(CliError::from)
    };
    match op.id {
        "Credentials_GetCredential" => match query("type").as_deref().unwrap_or("password") {
            "password" => print_line(ctx.retrieve_password(&key).await?.expose_secret()),
            "privatekey" => print_line(
                ctx.retrieve_private_key(&key, format(query("keyFormat"))?)
                    .await?
                    .expose_secret(),
            ),
            "apikey" => {
                let secrets = ctx.retrieve_api_key_secret(&key).await?;
                print(&Value::Array(secrets.iter().map(api_key_json).collect()))
            }
            other => Err(usage(format!("unknown credential type {other}"))),
        },
        "Credentials_SetPassword" => {
            let Some(Value::String(pw)) = body else {
                return Err(usage("--body FILE|- holding the new password"));
            };
            ctx.set_password(&key, &SecretString::from(pw)).await?;
            eprintln!("password set");
            Ok(())
        }
        "Credentials_SetSshKey" => {
            let body = body.ok_or_else(|| usage("--body FILE|- holding {\"PrivateKey\": ..., \"Passphrase\": ...}"))?;
            let text = |k: &str| body.get(k).and_then(Value::as_str).map(|s| SecretString::from(s.to_owned()));
            let pk = text("PrivateKey").ok_or_else(|| usage("the body has no PrivateKey"))?;
            ctx.set_private_key(&key, &pk, text("Passphrase").as_ref(), format(query("keyFormat"))?)
                .await?;
            eprintln!("private key set");
            Ok(())
        }
        "AccessRequests_BrokerAccessRequest" => {
            let body = body.ok_or_else(|| usage("--body FILE|- holding the BrokeredAccessRequest"))?;
            let request: BrokeredAccessRequest =
                serde_json::from_value(body).map_err(|e| usage(format!("not a BrokeredAccessRequest: {e}")))?;
            let created = ctx.broker_access_request(&key, &request).await?;
            print(&serde_json::to_value(created).map_err(|e| CliError::Other(e.to_string()))?)
        }
        other => Err(CliError::Other(format!(
            "the A2A operation {other} is newer than this tool: the SDK's A2A context has no method for it yet"
        ))),
    }
}

fn api_key_json(s: &safeguard_sdk::a2a::ApiKeySecret) -> Value {
    json!({
        "Id": s.id,
        "Name": s.name,
        "Description": s.description,
        "ClientId": s.client_id,
        "ClientSecret": s.client_secret.as_ref().map(|c| c.expose_secret().to_owned()),
        "ClientSecretId": s.client_secret_id,
    })
}

/// `a2a watch`: one JSON line per value (the first, then each change).
async fn watch(ctx: A2aContext, g: &Globals, m: &ArgMatches) -> CliResult<()> {
    let key = api_key(m)?;
    let count = m.get_one::<u64>("count").copied();
    let watch = ctx.credential_watch();
    let kind = m
        .get_one::<String>("kind")
        .map(String::as_str)
        .unwrap_or("password");
    let mut changes = match kind {
        "private-key" => watch
            .private_key(&key, key_format(m)?)
            .changes()
            .map(|c| (c.version, json!(c.value.expose_secret())))
            .boxed(),
        "api-key" => watch
            .api_key_secret(&key)
            .changes()
            .map(|c| {
                (
                    c.version,
                    Value::Array(c.value.iter().map(api_key_json).collect()),
                )
            })
            .boxed(),
        _ => watch
            .password(&key)
            .changes()
            .map(|c| (c.version, json!(c.value.expose_secret())))
            .boxed(),
    };
    watch.start().await?;
    eprintln!("watching (Ctrl-C to stop)");
    let mut seen = 0u64;
    let result = loop {
        tokio::select! {
            next = changes.next() => {
                let Some((version, value)) = next else { break Ok(()) };
                let line = json!({"Version": version, "Value": value});
                let format = if g.output == output::Format::Json { output::Format::Jsonl } else { g.output };
                if let Err(e) = output::print(&line, format) {
                    break Err(io_error(e));
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break Ok(());
                }
            }
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    watch.stop().await;
    result
}
