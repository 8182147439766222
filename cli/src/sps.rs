//! `safeguard sps ...`: Safeguard for Privileged Sessions through the SDK's
//! `SpsClient`. `sps login` stores the session cookie (a secret: keyring or
//! 0600 file) so that a transaction opened by one command is committed by
//! another.

use std::path::PathBuf;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use futures::TryStreamExt;
use safeguard_sdk::sps::{JoinOptions, SessionSearch, SpsClient};
use safeguard_sdk::tls::{ClientIdentity, TlsOptions};
use serde_json::{json, Value};

use crate::connect::Globals;
use crate::exec::io_error;
use crate::exit::{usage, CliError, CliResult};
use crate::input::{self, SecretSource};
use crate::output;
use crate::profile::{self, Profile, Secret};

fn path_arg() -> Arg {
    Arg::new("path")
        .required(true)
        .value_name("PATH")
        .help("Below /api/: configuration/rdp/channel_policies, ...")
}

fn body_arg(required: bool) -> Arg {
    Arg::new("body")
        .long("body")
        .value_name("FILE|-")
        .value_parser(value_parser!(PathBuf))
        .required(required)
        .help("The JSON body from a file, or - for stdin")
}

fn file(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .value_name("FILE")
        .value_parser(value_parser!(PathBuf))
        .help(help)
}

/// The `sps` command.
pub fn command() -> Command {
    Command::new("sps")
        .about("Safeguard for Privileged Sessions: configuration, transactions, sessions")
        .after_help("Examples:\n  safeguard sps login sps.example.com --user admin\n  safeguard sps transaction open\n  safeguard sps post configuration/policies/time_policies --body tp.json\n  safeguard sps transaction commit -m \"add a time policy\"\n  safeguard sps sessions search --query 'protocol:ssh'")
        .subcommand_required(true)
        .subcommand(
            Command::new("login")
                .about("Sign in to SPS and keep the session in the profile")
                .arg(Arg::new("sps-host").required(true).value_name("HOST"))
                .arg(Arg::new("user").long("user").short('u').value_name("NAME"))
                .arg(Arg::new("password-stdin").long("password-stdin").action(ArgAction::SetTrue).help("Read the password from stdin"))
                .arg(file("password-file", "Read the password from FILE"))
                .arg(file("cert", "Sign in with this client certificate (PEM) instead"))
                .arg(file("key", "Its private key (PEM)")),
        )
        .subcommand(Command::new("logout").about("Sign out of SPS and forget the session"))
        .subcommand(
            Command::new("join")
                .about("Join this SPS to the SPP cluster the profile is signed in to (as Join-SafeguardSessionCluster: SPP's chain, clustering on, promotion, POST cluster/spp, then SPP lists it)")
                .after_help("Example:\n  safeguard login --host spp.example.com --user Admin && safeguard sps login sps.example.com --user admin && safeguard sps join")
                .arg(Arg::new("spp-address").long("spp-address").value_name("HOST").help("The SPP address SPS is told to contact (default: the profile's host)"))
                .arg(Arg::new("listen-address").long("listen-address").value_name("REF").help("SPS's cluster listen address (default: the NIC of SPS's own address)"))
                .arg(Arg::new("no-enable-clustering").long("no-enable-clustering").action(ArgAction::SetTrue).help("Fail instead of turning clustering on"))
                .arg(Arg::new("no-promote").long("no-promote").action(ArgAction::SetTrue).help("Fail instead of promoting SPS to central management"))
                .arg(Arg::new("message").long("message").short('m').value_name("TEXT").help("Commit message of the configuration changes"))
                .arg(Arg::new("no-verify").long("no-verify").action(ArgAction::SetTrue).help("Do not wait for SPP to list the SPS")),
        )
        .subcommand(Command::new("get").about("GET a node of the REST tree").arg(path_arg()))
        .subcommand(Command::new("put").about("PUT (replace) a node").arg(path_arg()).arg(body_arg(true)))
        .subcommand(Command::new("post").about("POST (create) below a node; prints the new key").arg(path_arg()).arg(body_arg(true)))
        .subcommand(Command::new("delete").about("DELETE a node").arg(path_arg()))
        .subcommand(
            Command::new("transaction")
                .about("The session's configuration transaction")
                .subcommand_required(true)
                .subcommand(Command::new("open").about("Open a transaction"))
                .subcommand(Command::new("status").about("The transaction's status"))
                .subcommand(Command::new("changes").about("The open transaction's changes"))
                .subcommand(
                    Command::new("commit").about("Commit the open transaction").arg(
                        Arg::new("message")
                            .short('m')
                            .long("message")
                            .value_name("TEXT")
                            .help("The commit message (required when SPS says so)"),
                    ),
                )
                .subcommand(Command::new("rollback").about("Roll the open transaction back")),
        )
        .subcommand(
            Command::new("sessions")
                .about("Recorded sessions")
                .subcommand_required(true)
                .subcommand(
                    Command::new("search")
                        .about("Search recorded sessions (every page)")
                        .arg(Arg::new("query").long("query").short('q').value_name("Q").help("Search expression (protocol:ssh AND user:root)"))
                        .arg(Arg::new("fields").long("fields").value_name("F1,F2").help("Body fields to include"))
                        .arg(Arg::new("limit").long("limit").value_parser(value_parser!(u32)).help("Page size")),
                ),
        )
}

fn tls(g: &Globals, p: Option<&Profile>) -> CliResult<TlsOptions> {
    let mut tls = TlsOptions::default();
    if let Some(ca) = g.ca.clone().or_else(|| p.and_then(|p| p.ca.clone())) {
        tls = tls.with_ca_file(ca)?;
    }
    if g.insecure || p.is_some_and(|p| p.insecure) {
        tls = tls.danger_accept_invalid_certs(true);
    }
    Ok(tls)
}

/// A client over the profile's stored SPS session.
async fn client(g: &Globals) -> CliResult<SpsClient> {
    let again = |reason: String| CliError::SignInAgain {
        profile: g.profile.clone(),
        reason: format!("{reason} (for SPS: safeguard sps login HOST)"),
    };
    let Some(p) = profile::load(&g.profile)? else {
        return Err(again(format!("no profile {:?}", g.profile)));
    };
    let Some(host) = p.sps_host.clone() else {
        return Err(again("not signed in to SPS".into()));
    };
    let Some(session) =
        profile::read_secret(&g.profile, Secret::SpsSession, p.sps_store.as_deref()).await?
    else {
        return Err(again("no SPS session".into()));
    };
    Ok(SpsClient::builder(host)
        .tls(tls(g, Some(&p))?)
        .session_id(session)
        .build()?)
}

/// Runs `sps SUBCOMMAND`.
pub async fn run(g: &Globals, m: &ArgMatches) -> CliResult<()> {
    let Some((name, sub)) = m.subcommand() else {
        return Err(usage("sps needs a subcommand"));
    };
    match name {
        "login" => return login(g, sub).await,
        "logout" => return logout(g).await,
        _ => {}
    }
    let sps = client(g).await?;
    let result = run_with(&sps, name, sub, g).await;
    // A session that ran out (and cannot sign in by itself, holding no
    // credentials) is a sign-in to do again.
    match result {
        Err(CliError::Sdk(safeguard_sdk::Error::Config(m))) if m.contains("no credentials") => {
            Err(CliError::SignInAgain {
                profile: g.profile.clone(),
                reason: "the SPS session ended (for SPS: safeguard sps login HOST)".into(),
            })
        }
        other => other,
    }
}

async fn run_with(sps: &SpsClient, name: &str, sub: &ArgMatches, g: &Globals) -> CliResult<()> {
    let path = || sub.get_one::<String>("path").cloned().unwrap_or_default();
    let body = || -> CliResult<Value> {
        let source = sub
            .get_one::<PathBuf>("body")
            .ok_or_else(|| usage("--body"))?;
        crate::exec::read_json_body(source, false)
    };
    let print = |v: &Value| output::print(v, g.output).map_err(io_error);
    match name {
        "get" => print(&sps.get_json(&path()).await?),
        "put" => {
            let r = sps.put::<_, Value>(&path(), &body()?).await?;
            print(&answer(r.key, r.body, &r.meta))
        }
        "post" => {
            let r = sps.post::<_, Value>(&path(), &body()?).await?;
            print(&answer(r.key, r.body, &r.meta))
        }
        "delete" => {
            let r = sps.delete(&path()).await?;
            print(&answer(r.key, r.body, &r.meta))
        }
        "transaction" => {
            let Some((verb, args)) = sub.subcommand() else {
                return Err(usage("transaction needs a subcommand"));
            };
            match verb {
                "open" => {
                    let tx = sps.open().await?;
                    // The transaction outlives this process: its guard
                    // must not roll it back when dropped.
                    std::mem::forget(tx);
                    eprintln!("transaction open");
                    Ok(())
                }
                "status" => print(&sps.get_json("transaction").await?),
                "changes" => print(&sps.get_json("transaction/changes").await?),
                "commit" => {
                    let message = args
                        .get_one::<String>("message")
                        .map(|m| m.trim().to_owned())
                        .filter(|m| !m.is_empty());
                    if message.is_none()
                        && sps.transaction_status().await?.commit_message_required()
                    {
                        return Err(usage("SPS requires a commit message: -m TEXT"));
                    }
                    let mut body = json!({"status": "commit"});
                    if let Some(m) = message {
                        body["message"] = json!(m);
                    }
                    // The guard of `open` lives in another process: commit
                    // as SPS documents it, `PUT /api/transaction`.
                    sps.put::<_, Value>("transaction", &body).await?;
                    eprintln!("committed");
                    Ok(())
                }
                "rollback" => {
                    sps.rollback().await?;
                    eprintln!("rolled back");
                    Ok(())
                }
                other => Err(usage(format!("unknown transaction command {other}"))),
            }
        }
        "join" => {
            let spp = crate::connect::connect(g).await?.client;
            let p = profile::load(&g.profile)?;
            let mut options = JoinOptions::default()
                .tls(tls(g, p.as_ref())?)
                .enable_clustering(!sub.get_flag("no-enable-clustering"))
                .promote(!sub.get_flag("no-promote"));
            if let Some(a) = sub.get_one::<String>("spp-address") {
                options = options.spp_address(a.clone());
            }
            if let Some(l) = sub.get_one::<String>("listen-address") {
                options = options.listen_address(l.clone());
            }
            if let Some(m) = sub.get_one::<String>("message") {
                options = options.commit_message(m.clone());
            }
            if sub.get_flag("no-verify") {
                options = options.verify(None);
            }
            let report = sps.join_spp(&spp, options).await?;
            print(&json!({
                "spp_address": report.spp_address,
                "enabled_clustering": report.enabled_clustering,
                "promoted": report.promoted,
                "sps_answer": report.sps_answer,
                "session_module": report.session_module,
            }))
        }
        "sessions" => {
            let mut search = SessionSearch::new();
            if let Some((_, args)) = sub.subcommand() {
                if let Some(q) = args.get_one::<String>("query") {
                    search = search.query(q.clone());
                }
                if let Some(f) = args.get_one::<String>("fields") {
                    search = search.fields(
                        f.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from),
                    );
                }
                if let Some(l) = args.get_one::<u32>("limit") {
                    search = search.limit(*l);
                }
            }
            let items: Vec<_> = sps.audit_sessions(&search).try_collect().await?;
            let mut v = serde_json::to_value(items).map_err(|e| CliError::Other(e.to_string()))?;
            strip_nulls(&mut v);
            print(&v)
        }
        other => Err(usage(format!("unknown sps command {other}"))),
    }
}

/// An SPS answer as JSON, without the `meta` members SPS did not send.
fn answer(key: Option<String>, body: Value, meta: &safeguard_sdk::sps::Meta) -> Value {
    let mut meta = serde_json::to_value(meta).unwrap_or(Value::Null);
    strip_nulls(&mut meta);
    json!({"key": key, "body": body, "meta": meta})
}

/// Removes the null members of every object in `v`.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

async fn login(g: &Globals, m: &ArgMatches) -> CliResult<()> {
    let host = m
        .get_one::<String>("sps-host")
        .cloned()
        .ok_or_else(|| usage("the SPS host"))?;
    let mut p = profile::load(&g.profile)?.unwrap_or_default();
    if p.ca.is_none() {
        p.ca = g.ca.clone();
    }
    p.insecure |= g.insecure;
    let mut b = SpsClient::builder(host.clone()).tls(tls(g, Some(&p))?);
    b = match (m.get_one::<PathBuf>("cert"), m.get_one::<PathBuf>("key")) {
        (Some(cert), Some(key)) => {
            b.client_certificate(ClientIdentity::from_pem_files(cert, key, None)?)
        }
        (None, None) => {
            let user = match m.get_one::<String>("user") {
                Some(u) => u.clone(),
                None => input::read_line("SPS user: ")?,
            };
            let pw = input::read_secret(
                "SPS password: ",
                SecretSource {
                    stdin: m.get_flag("password-stdin"),
                    file: m.get_one::<PathBuf>("password-file").map(PathBuf::as_path),
                    env: None,
                },
            )?;
            b.credentials(user, pw)
        }
        _ => return Err(usage("give both --cert and --key, or neither")),
    };
    let sps = b.build()?;
    sps.sign_in().await?;
    let session = sps
        .session_id()
        .ok_or_else(|| CliError::Other("SPS set no session".into()))?;
    p.sps_store = Some(profile::store_secret(&g.profile, Secret::SpsSession, &session).await?);
    p.sps_host = Some(host.clone());
    if p.strategy.is_empty() {
        p.strategy = "none".into();
    }
    profile::save(&g.profile, &p)?;
    eprintln!("Signed in to SPS {host}; profile {:?}", g.profile);
    Ok(())
}

async fn logout(g: &Globals) -> CliResult<()> {
    let Some(mut p) = profile::load(&g.profile)? else {
        return Ok(());
    };
    if let Ok(sps) = client(g).await {
        if let Err(e) = sps.sign_out().await {
            eprintln!("SPS was not told: {e}");
        }
    }
    profile::forget_secret(&g.profile, Secret::SpsSession, p.sps_store.as_deref()).await?;
    p.sps_store = None;
    p.sps_host = None;
    profile::save(&g.profile, &p)?;
    eprintln!("Signed out of SPS");
    Ok(())
}
