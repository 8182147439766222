//! `safeguard`: a command-line tool over the whole One Identity Safeguard
//! API. Every operation of the appliance's four OpenAPI documents is a
//! command (`safeguard core users get-users`), built at run time from the
//! table `build.rs` generates; `safeguard api` calls anything; sign-in
//! profiles keep tokens in the OS keyring or a 0600 file; handwritten
//! commands cover A2A, events, SPS, transfers and the emulator.

mod a2a;
mod account;
mod cli;
mod connect;
mod events;
mod exec;
mod exit;
mod generated;
mod input;
mod output;
mod profile;
mod sps;
mod table;
mod tools;

use std::path::PathBuf;

use clap::ArgMatches;
use http::Method;

use crate::connect::Globals;
use crate::exec::{Call, Payload};
use crate::exit::{usage, CliError, CliResult};

fn main() {
    let matches = match cli::command().try_get_matches() {
        Ok(m) => m,
        // Help and version exit 0, usage errors 2 (clap's codes).
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(exit::OTHER);
        }
    };
    let result = runtime.block_on(run(&matches));
    // Nothing left to wait for (a watch or listener stopped).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) | Err(CliError::BrokenPipe) => std::process::exit(exit::OK),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}

async fn run(m: &ArgMatches) -> CliResult<()> {
    let g = Globals::from_matches(m);
    let Some((name, sub)) = m.subcommand() else {
        return Err(usage("no command"));
    };
    match name {
        "login" => account::login(&g, sub).await,
        "logout" => account::logout(&g).await,
        "profiles" => account::profiles(&g).await,
        "api" => api(&g, sub).await,
        "commands" => commands(&g, sub),
        "events" => match sub.subcommand() {
            Some(("listen", args)) => events::listen(&g, args).await,
            _ => Err(usage("events needs listen")),
        },
        "download" | "upload" => transfer(&g, name, sub).await,
        "sps" => sps::run(&g, sub).await,
        "openapi" => tools::openapi(&g, sub).await,
        "emulator" => tools::emulator(sub).await,
        "completions" => tools::completions(sub),
        service => {
            let Some((group, args)) = sub.subcommand() else {
                return Err(usage(format!("{service} needs a command")));
            };
            if service == "a2a" && a2a::NAMES.contains(&group) {
                return a2a::run(group, &g, args).await;
            }
            let Some((op_name, op_args)) = args.subcommand() else {
                return Err(usage(format!("{service} {group} needs a command")));
            };
            let op = generated::find(service, group, op_name)
                .ok_or_else(|| usage(format!("unknown command {service} {group} {op_name}")))?;
            if service == "a2a" {
                return a2a::run_generated(op, &g, op_args).await;
            }
            let call = generated::call(op, op_args)?;
            if generated::anonymous(op) {
                let client = anonymous_client(&g)?;
                return exec::execute(&client, call, g.output).await;
            }
            connect::with_client(&g, |client| {
                let call = call.clone();
                let output = g.output;
                async move { exec::execute(&client, call, output).await }
            })
            .await
        }
    }
}

/// `safeguard commands`: the table, one row per generated command.
fn commands(g: &Globals, m: &ArgMatches) -> CliResult<()> {
    let only = m.get_one::<String>("service");
    let rows: Vec<serde_json::Value> = table::OPERATIONS
        .iter()
        .filter(|op| only.is_none_or(|s| s == op.service))
        .map(|op| {
            serde_json::json!({
                "Command": format!("{} {} {}", op.service, op.group, op.name),
                "Method": op.method,
                "Path": format!("/service/{}/v4/{}", op.service, op.path),
                "OperationId": op.id,
                "Summary": op.summary,
            })
        })
        .collect();
    output::print(&serde_json::Value::Array(rows), g.output).map_err(exec::io_error)
}

/// A client without sign-in, for the anonymous notification service.
fn anonymous_client(g: &Globals) -> CliResult<safeguard_sdk::SafeguardClient> {
    let p = profile::load(&g.profile)?;
    let host = g
        .host
        .clone()
        .or_else(|| p.as_ref().map(|p| p.host.clone()).filter(|h| !h.is_empty()))
        .ok_or_else(|| usage("no host: give --host (or SAFEGUARD_HOST, or a profile)"))?;
    let ca =
        g.ca.clone()
            .or_else(|| p.as_ref().and_then(|p| p.ca.clone()));
    let members = g.members_with(p.as_ref());
    Ok(connect::builder(
        &host,
        &members,
        ca.as_ref(),
        g.insecure || p.is_some_and(|p| p.insecure),
    )?
    .build()?)
}

/// Query pairs.
type Query = Vec<(String, String)>;

/// Splits `SERVICE/PATH[?QUERY]`.
fn target(text: &str) -> CliResult<(safeguard_sdk::Service, String, Query)> {
    let (service, rest) = text
        .trim_start_matches('/')
        .split_once('/')
        .ok_or_else(|| usage(format!("{text:?}: expected SERVICE/PATH, e.g. core/Users")))?;
    let service = exec::service(service).ok_or_else(|| {
        usage(format!(
            "unknown service {service:?}: core, appliance, notification, a2a or management"
        ))
    })?;
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (
            p,
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect(),
        ),
        None => (rest, Vec::new()),
    };
    Ok((service, path.to_owned(), query))
}

/// `safeguard api METHOD SERVICE/PATH`.
async fn api(g: &Globals, m: &ArgMatches) -> CliResult<()> {
    let method_text = m
        .get_one::<String>("method")
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    let method = Method::from_bytes(method_text.as_bytes())
        .map_err(|_| usage(format!("bad method {method_text:?}")))?;
    let (service, path, mut query) = target(
        m.get_one::<String>("target")
            .map(String::as_str)
            .unwrap_or(""),
    )?;
    for pair in m.get_many::<String>("query").into_iter().flatten() {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| usage(format!("-q {pair:?}: expected KEY=VALUE")))?;
        query.push((k.to_owned(), v.to_owned()));
    }
    if let Some(fields) = m.get_one::<String>("fields") {
        query.push(("fields".into(), fields.clone()));
    }
    let mut headers = Vec::new();
    for h in m.get_many::<String>("header").into_iter().flatten() {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| usage(format!("-H {h:?}: expected 'Name: value'")))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let payload = match m.get_one::<PathBuf>("body") {
        Some(source) => Payload::Json(exec::read_json_body(source, false)?),
        None => Payload::None,
    };
    let all = m.get_flag("all");
    if all && method != Method::GET {
        return Err(usage("--all walks the pages of a GET"));
    }
    let call = Call {
        method,
        service,
        path,
        query,
        headers,
        payload,
        all,
        page_size: m.get_one::<u32>("page-size").copied().unwrap_or(100),
        binary: false,
        out: None,
        raw: m.get_flag("raw"),
    };
    // Both answer without a token: no sign-in for them.
    if matches!(
        service,
        safeguard_sdk::Service::Notification | safeguard_sdk::Service::Management
    ) {
        return exec::execute(&anonymous_client(g)?, call, g.output).await;
    }
    connect::with_client(g, |client| {
        let call = call.clone();
        let output = g.output;
        async move { exec::execute(&client, call, output).await }
    })
    .await
}

/// `safeguard download SERVICE/PATH FILE` and `upload SERVICE/PATH FILE`.
async fn transfer(g: &Globals, name: &str, m: &ArgMatches) -> CliResult<()> {
    let (service, path, query) = target(
        m.get_one::<String>("target")
            .map(String::as_str)
            .unwrap_or(""),
    )?;
    let file = m
        .get_one::<PathBuf>("file")
        .cloned()
        .ok_or_else(|| usage("FILE"))?;
    let connected = connect::connect(g).await?;
    let client = &connected.client;
    let result = if name == "download" {
        let mut target = path;
        if !query.is_empty() {
            target = format!(
                "{target}?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&query)
                    .finish()
            );
        }
        exec::download(client, service, &target, &file).await
    } else {
        let method = match m.get_one::<String>("method").map(String::as_str) {
            Some("PUT") => Method::PUT,
            _ => Method::POST,
        };
        let content_type = m
            .get_one::<String>("content-type")
            .cloned()
            .unwrap_or_else(|| "application/octet-stream".into());
        let call = Call {
            method,
            service,
            path,
            query,
            headers: Vec::new(),
            payload: Payload::Raw(file, content_type),
            all: false,
            page_size: 100,
            binary: false,
            out: None,
            raw: false,
        };
        exec::execute(client, call, g.output).await
    };
    result.map_err(|e| connected.explain(e))
}
