//! `safeguard events listen`: the appliance's events (or the A2A hub's) as
//! JSON lines until Ctrl-C, reconnecting after every drop (the SDK's
//! persistent listener); gaps are reported on stderr.

use std::path::PathBuf;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use safeguard_sdk::events::{EventStream, Missed, PersistentEventListener};
use serde_json::json;

use crate::connect::{self, Globals};
use crate::exec::io_error;
use crate::exit::CliResult;
use crate::output::{self, Format};

/// The `events` command.
pub fn command() -> Command {
    let file = |id: &'static str, help: &'static str| {
        Arg::new(id)
            .long(id)
            .value_name("FILE")
            .value_parser(value_parser!(PathBuf))
            .help(help)
    };
    Command::new("events")
        .about("Listen to the appliance's events")
        .subcommand_required(true)
        .subcommand(
            Command::new("listen")
                .about("Print events as JSON lines until Ctrl-C, reconnecting after drops")
                .after_help("Examples:\n  safeguard events listen --name UserCreated --name UserDeleted\n  SAFEGUARD_A2A_KEY=... safeguard events listen --a2a --cert c.pem --key k.pem")
                .arg(
                    Arg::new("name")
                        .long("name")
                        .value_name("EVENT")
                        .action(ArgAction::Append)
                        .help("Only events of this name (repeatable; any case)"),
                )
                .arg(
                    Arg::new("a2a")
                        .long("a2a")
                        .action(ArgAction::SetTrue)
                        .help("Listen to the A2A hub with a certificate and an API key (SAFEGUARD_A2A_KEY, --api-key-file, --api-key-stdin)"),
                )
                .arg(file("cert", "A2A: the client certificate (PEM)"))
                .arg(file("key", "A2A: its private key (PEM)"))
                .arg(file("pfx", "A2A: a PKCS#12 file instead"))
                .arg(file("pfx-password-file", "A2A: the PKCS#12 password"))
                .arg(file("api-key-file", "A2A: the API key"))
                .arg(Arg::new("api-key-stdin").long("api-key-stdin").action(ArgAction::SetTrue).help("A2A: read the API key from stdin"))
                .arg(
                    Arg::new("count")
                        .long("count")
                        .value_parser(value_parser!(u64))
                        .help("Stop after this many events"),
                ),
        )
}

/// Runs `events listen`.
pub async fn listen(g: &Globals, m: &ArgMatches) -> CliResult<()> {
    let names: Vec<String> = m
        .get_many::<String>("name")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let count = m.get_one::<u64>("count").copied();
    let (listener, _keep): (PersistentEventListener, Option<connect::Connected>) =
        if m.get_flag("a2a") {
            let ctx = crate::a2a::context_for(g, m)?;
            let key = crate::a2a::api_key_for(m)?;
            (ctx.persistent_event_listener(&[key]), None)
        } else {
            let connected = connect::connect(g).await?;
            (
                connected.client.persistent_event_listener(),
                Some(connected),
            )
        };
    let mut stream: EventStream = listener.events();
    listener.start().await?;
    eprintln!("listening (Ctrl-C to stop)");
    let format = if g.output == Format::Json {
        Format::Jsonl
    } else {
        g.output
    };
    let mut seen = 0u64;
    let result = loop {
        tokio::select! {
            next = stream.recv() => match next {
                None => break Ok(()),
                Some(Err(Missed::Dropped(n))) => eprintln!("warning: {n} events were dropped"),
                Some(Err(missed @ Missed::Disconnected(_))) => eprintln!("warning: {missed}"),
                Some(Ok(event)) => {
                    if !names.is_empty() && !names.iter().any(|n| event.is(n)) {
                        continue;
                    }
                    let line = json!({"Name": event.name, "Data": event.body});
                    if let Err(e) = output::print(&line, format) {
                        break Err(io_error(e));
                    }
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        break Ok(());
                    }
                }
            },
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
    };
    listener.stop().await;
    result
}
