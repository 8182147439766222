//! `safeguard-emulator`: a fake Safeguard appliance (SPP) and SPS on loopback.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use safeguard_emulator::{ClientCertMode, Emulator, EmulatorConfig};

/// A stateful fake One Identity Safeguard appliance (SPP) and Safeguard for
/// Privileged Sessions (SPS), served over HTTPS on 127.0.0.1.
///
/// On start it generates a CA, a server certificate and a client certificate
/// into DIR, seeds users, an asset with a password account and an SSH-key
/// account, a certificate user with an A2A registration, and writes
/// DIR/connection.json:
///
///   {"spp": {"host", "ca", "admin": {"user", "password"},
///            "client_cert": {"cert", "key", "pfx", "pfx_password", "thumbprint"},
///            "a2a": {"password_api_key", "ssh_key_api_key"},
///            "members": [{"host", "id"}, ...]},
///    "sps": {"host", "user", "password"}}
///
/// Seeded users: Admin/Admin123 (all admin roles; sign in with PKCE, or with
/// the password grant once ResourceOwner is allowed), MfaUser/MfaPassword1!
/// with one-time password 246810, Auditor/Auditor1!, jdoe/Directory1! in the
/// external provider "Example Directory" (ldap-example-directory), and the
/// certificate user A2ACertUser (the client certificate).
///
/// Fault injection and test helpers: https://HOST/emulator/... (see the
/// crate's `admin` module docs), e.g.
///   curl --cacert DIR/ca.pem -X POST https://HOST/emulator/fail -d '{"count":3,"status":503}'
///
/// Runs until Ctrl-C.
#[derive(Parser, Debug)]
#[command(name = "safeguard-emulator", version, verbatim_doc_comment)]
struct Args {
    /// Directory for the certificates and connection.json (created if missing).
    #[arg(long, required_unless_present = "coverage")]
    dir: Option<PathBuf>,
    /// Print how each documented operation is served (handwritten, generic
    /// stateful, synthesized) and the counts, then exit.
    #[arg(long)]
    coverage: bool,
    /// SPP port on 127.0.0.1 (0 or absent: ephemeral).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Start a cluster of N SPP appliances (e.g. 3 or 5), each on its own
    /// port (the first on --port), under one CA and one shared state; the
    /// first is the primary. connection.json lists them under spp.members.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    cluster: u16,
    /// SPS port on 127.0.0.1 (0 or absent: ephemeral).
    #[arg(long, default_value_t = 0)]
    sps_port: u16,
    /// Lifetime of user tokens in minutes.
    #[arg(long, default_value_t = 60)]
    token_lifetime_minutes: u64,
    /// Ask for client certificates after the TLS handshake (TLS 1.3
    /// post-handshake authentication), like the appliance does.
    #[arg(long, conflicts_with = "renegotiation")]
    post_handshake: bool,
    /// Ask for client certificates by a TLS 1.2 renegotiation once a request
    /// needs one (connections are TLS 1.2 only), like SPP 7 and 8 on TLS 1.2.
    #[arg(long)]
    renegotiation: bool,
    /// Directory holding core.json, appliance.json, notification.json and
    /// a2a.json (default: each document looked for in $SAFEGUARD_OPENAPI_DIR,
    /// the workspace's openapi/, then ../shared/openapi).
    #[arg(long)]
    openapi_dir: Option<PathBuf>,
    /// SignalR server ping interval in seconds.
    #[arg(long, default_value_t = 15)]
    ping_seconds: u64,
    /// How long a SignalR long poll waits for a message, in seconds.
    #[arg(long, default_value_t = 90)]
    long_poll_seconds: u64,
    /// Size in bytes of the seeded backup.
    #[arg(long, default_value_t = 1024 * 1024)]
    backup_size: u64,
    /// Let requests through without validating them against the documents
    /// (the appliance, and the emulator by default, refuse an invalid request
    /// with 400).
    #[arg(long)]
    lenient: bool,
    /// Print connection.json instead of the human-readable summary.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "safeguard_emulator=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.coverage {
        return print_coverage().await;
    }
    let config = EmulatorConfig {
        dir: args.dir,
        spp_port: args.port,
        sps_port: args.sps_port,
        token_lifetime: Duration::from_secs(args.token_lifetime_minutes.max(1) * 60),
        openapi_dir: args.openapi_dir,
        client_cert_mode: if args.post_handshake {
            ClientCertMode::PostHandshake
        } else if args.renegotiation {
            ClientCertMode::Renegotiation
        } else {
            ClientCertMode::InHandshake
        },
        signalr_ping_interval: Duration::from_secs(args.ping_seconds.max(1)),
        signalr_long_poll_timeout: Duration::from_secs(args.long_poll_seconds.max(1)),
        backup_size: args.backup_size,
        strict_validation: !args.lenient,
        cluster_members: usize::from(args.cluster),
        ..EmulatorConfig::default()
    };
    let emulator = match Emulator::start(config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("safeguard-emulator: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(emulator.connection()).unwrap_or_default()
        );
    } else {
        println!("{}", emulator.connection());
        println!(
            "  connection.json {}",
            emulator.dir().join("connection.json").display()
        );
        println!("Press Ctrl-C to stop.");
    }
    let _ = tokio::signal::ctrl_c().await;
    emulator.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// `--coverage`: a throwaway emulator, probed.
async fn print_coverage() -> std::process::ExitCode {
    let emulator = match Emulator::start(EmulatorConfig::default()).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("safeguard-emulator: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let rows = emulator.coverage().await;
    emulator.shutdown().await;
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &rows {
        println!(
            "{:<20} {:<7} {:<12} {} ({})",
            r.served_by, r.method, r.service, r.path, r.operation_id
        );
        *counts.entry(r.served_by.as_str()).or_default() += 1;
    }
    println!();
    for (by, n) in &counts {
        println!("{n:>5} {by}");
    }
    println!("{:>5} operations", rows.len());
    std::process::ExitCode::SUCCESS
}
