//! `openapi fetch | diff` (the upgrade workflow without this repository's
//! scripts), `emulator` (a local appliance to try the tool on) and
//! `completions`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use safeguard_sdk::SafeguardClient;

use crate::connect::Globals;
use crate::exit::{usage, CliError, CliResult};

/// The `openapi` command.
pub fn openapi_command() -> Command {
    Command::new("openapi")
        .about("Fetch an appliance's OpenAPI documents, or compare two sets")
        .subcommand_required(true)
        .subcommand(
            Command::new("fetch")
                .about("Write HOST's core, appliance, notification and a2a documents into DIR")
                .after_help("Example:\n  safeguard openapi fetch sg.example.com --ca ca.pem --out openapi/")
                .arg(Arg::new("fetch-host").required(true).value_name("HOST"))
                .arg(
                    Arg::new("out")
                        .long("out")
                        .required(true)
                        .value_name("DIR")
                        .value_parser(value_parser!(PathBuf)),
                ),
        )
        .subcommand(
            Command::new("diff")
                .about("What changed between two folders of documents (operations, parameters, schemas)")
                .after_help("Example:\n  safeguard openapi diff old/ new/")
                .arg(Arg::new("old").required(true).value_name("OLD").value_parser(value_parser!(PathBuf)))
                .arg(Arg::new("new").required(true).value_name("NEW").value_parser(value_parser!(PathBuf))),
        )
}

/// The `emulator` command.
pub fn emulator_command() -> Command {
    Command::new("emulator")
        .about("Run the Safeguard emulator (a fake SPP and SPS on 127.0.0.1) until Ctrl-C")
        .after_help("Example:\n  safeguard emulator --dir /tmp/sg\n  safeguard login --host 127.0.0.1:PORT --ca /tmp/sg/ca.pem --user Admin")
        .arg(
            Arg::new("dir")
                .long("dir")
                .value_name("DIR")
                .value_parser(value_parser!(PathBuf))
                .help("Where to write its CA, client certificates and connection.json (default: a temporary folder)"),
        )
        .arg(
            Arg::new("port")
                .long("port")
                .value_parser(value_parser!(u16))
                .default_value("0")
                .help("SPP port (0: any free one)"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("Print connection.json instead of the summary"),
        )
        .arg(
            Arg::new("seconds")
                .long("seconds")
                .value_parser(value_parser!(u64))
                .help("Stop after this many seconds instead of waiting for Ctrl-C"),
        )
}

/// Runs `openapi fetch | diff`.
pub async fn openapi(g: &Globals, m: &ArgMatches) -> CliResult<()> {
    match m.subcommand() {
        Some(("fetch", sub)) => {
            let host = sub
                .get_one::<String>("fetch-host")
                .cloned()
                .ok_or_else(|| usage("HOST"))?;
            let out = sub
                .get_one::<PathBuf>("out")
                .cloned()
                .ok_or_else(|| usage("--out"))?;
            fetch(g, &host, &out).await
        }
        Some(("diff", sub)) => {
            let old = sub.get_one::<PathBuf>("old").ok_or_else(|| usage("OLD"))?;
            let new = sub.get_one::<PathBuf>("new").ok_or_else(|| usage("NEW"))?;
            for dir in [old, new] {
                if !dir.is_dir() {
                    return Err(usage(format!("{} is not a folder", dir.display())));
                }
            }
            let report =
                safeguard_codegen::diff::diff_dirs(old, new).map_err(|e| usage(e.to_string()))?;
            crate::exec::write_stdout(report.to_string().as_bytes())
        }
        _ => Err(usage("openapi needs fetch or diff")),
    }
}

/// Fetches `https://HOST/service/{service}/swagger/v4/swagger.json` for
/// each service (the address the appliance publishes them at; an a2a
/// document the appliance does not publish is skipped).
async fn fetch(g: &Globals, host: &str, out: &std::path::Path) -> CliResult<()> {
    // The documents live beside the versioned API: `swagger` as the
    // version, `v4/swagger.json` as the path.
    // The documents of the one appliance named (no cluster routing).
    let client: SafeguardClient = crate::connect::builder(host, &[], g.ca.as_ref(), g.insecure)?
        .api_version("swagger")
        .build()?;
    std::fs::create_dir_all(out).map_err(|e| usage(format!("{}: {e}", out.display())))?;
    let mut fetched = 0;
    for service in safeguard_codegen::SERVICES {
        let svc = crate::exec::service(service).ok_or_else(|| usage(service))?;
        let answer = client.get(svc, "v4/swagger.json").send().await;
        let body = match answer {
            Ok(r) => r.bytes().await?,
            Err(safeguard_sdk::Error::NotFound(_)) if service == "a2a" => {
                eprintln!("a2a: not published by {host}; skipped");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let doc: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| CliError::Other(format!("{service}: not a JSON document: {e}")))?;
        if doc.get("paths").is_none() {
            return Err(CliError::Other(format!(
                "{service}: not an OpenAPI document"
            )));
        }
        let path = out.join(format!("{service}.json"));
        std::fs::write(&path, &body)
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))?;
        eprintln!("{service}: {} bytes -> {}", body.len(), path.display());
        fetched += 1;
    }
    eprintln!(
        "fetched {fetched} documents; compare with: safeguard openapi diff OLD {}",
        out.display()
    );
    Ok(())
}

/// Runs the emulator in this process until Ctrl-C (or `--seconds`).
pub async fn emulator(m: &ArgMatches) -> CliResult<()> {
    let config = safeguard_emulator::EmulatorConfig {
        dir: m.get_one::<PathBuf>("dir").cloned(),
        spp_port: m.get_one::<u16>("port").copied().unwrap_or(0),
        ..Default::default()
    };
    let emu = safeguard_emulator::Emulator::start(config)
        .await
        .map_err(|e| CliError::Other(format!("the emulator did not start: {e}")))?;
    if m.get_flag("json") {
        let v = serde_json::to_string_pretty(emu.connection())
            .map_err(|e| CliError::Other(e.to_string()))?;
        println!("{v}");
    } else {
        println!("{}", emu.connection());
        println!(
            "  connection     {}",
            emu.dir().join("connection.json").display()
        );
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match m.get_one::<u64>("seconds") {
        Some(s) => tokio::time::sleep(Duration::from_secs(*s)).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    emu.shutdown().await;
    Ok(())
}

/// Prints the completion script for `shell`.
pub fn completions(m: &ArgMatches) -> CliResult<()> {
    use clap_complete::Shell;
    let shell = match m.get_one::<String>("shell").map(String::as_str) {
        Some("bash") => Shell::Bash,
        Some("zsh") => Shell::Zsh,
        Some("fish") => Shell::Fish,
        Some("powershell") => Shell::PowerShell,
        Some("elvish") => Shell::Elvish,
        _ => return Err(usage("bash, zsh, fish or powershell")),
    };
    let mut cmd = crate::cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "safeguard", &mut script);
    crate::exec::write_stdout(&script)
}
