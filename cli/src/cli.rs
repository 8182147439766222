//! The command tree: global options, the generated service commands and
//! the handwritten ones.

use std::path::PathBuf;

use clap::{value_parser, Arg, ArgAction, Command};

use crate::exit::EXIT_CODES_HELP;
use crate::generated;
use crate::output::Format;

const ABOUT: &str = "A command-line tool over the whole One Identity Safeguard API";

const AFTER_HELP: &str = "\
Examples:
  safeguard login --host sg.example.com --ca ca.pem --user Admin
  safeguard core users get-users --filter \"Disabled eq false\" --limit 10
  safeguard core users get-users --all --output table --fields Id,Name
  safeguard api GET core/Me
  safeguard appliance backups download-backup --id 1 --out backup.sgb

Environment (CI): SAFEGUARD_HOST, SAFEGUARD_MEMBERS, SAFEGUARD_TOKEN, SAFEGUARD_CA, SAFEGUARD_PROFILE,
SAFEGUARD_INSECURE, SAFEGUARD_A2A_KEY, SAFEGUARD_PFX_PASSWORD, SAFEGUARD_CONFIG_DIR,\nSAFEGUARD_TOKEN_STORE=file, SAFEGUARD_BROWSER (a command, or none)";

fn file_arg(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .value_name("FILE")
        .value_parser(value_parser!(PathBuf))
        .help(help)
}

fn flag(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id).long(id).action(ArgAction::SetTrue).help(help)
}

/// The whole command tree.
pub fn command() -> Command {
    let mut root = Command::new("safeguard")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .after_help(format!("{AFTER_HELP}\n\n{EXIT_CODES_HELP}"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new("profile")
                .help_heading("Global options")
                .long("profile")
                .short('p')
                .global(true)
                .value_name("NAME")
                .help("The sign-in profile [env: SAFEGUARD_PROFILE; default: default]"),
        )
        .arg(
            Arg::new("host")
                .help_heading("Global options")
                .long("host")
                .global(true)
                .value_name("HOST")
                .help("The appliance (host[:port]) [env: SAFEGUARD_HOST]"),
        )
        .arg(
            Arg::new("member")
                .help_heading("Global options")
                .long("member")
                .global(true)
                .action(ArgAction::Append)
                .value_name("HOST")
                .help("Another member of the appliance's cluster; repeat for each (writes go to the primary, calls move to a live member) [env: SAFEGUARD_MEMBERS, comma separated]"),
        )
        .arg(
            Arg::new("ca")
                .help_heading("Global options")
                .long("ca")
                .global(true)
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .help("Trust this CA (PEM) [env: SAFEGUARD_CA]"),
        )
        .arg(
            Arg::new("insecure")
                .help_heading("Global options")
                .long("insecure")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Do not verify the appliance's certificate (tests only) [env: SAFEGUARD_INSECURE]"),
        )
        .arg(
            Arg::new("output")
                .help_heading("Global options")
                .long("output")
                .short('o')
                .global(true)
                .value_name("FORMAT")
                .value_parser(Format::NAMES)
                .help("Output format (default: json, pretty on a terminal)"),
        );
    for (service, about) in generated::SERVICES {
        let mut cmd = Command::new(service)
            .about(about)
            .subcommand_required(true)
            .arg_required_else_help(true)
            .subcommands(generated::group_commands(service));
        if service == "a2a" {
            cmd = crate::a2a::commands(cmd);
        }
        root = root.subcommand(cmd);
    }
    root.subcommand(api_command())
        .subcommand(login_command())
        .subcommand(Command::new("logout").about("Sign out on the appliance and forget the profile's token"))
        .subcommand(Command::new("profiles").about("List the sign-in profiles"))
        .subcommand(
            Command::new("commands")
                .about("List the generated commands with their HTTP method and path")
                .after_help("Examples:\n  safeguard commands --service appliance --output table\n  safeguard commands --output jsonl | grep '\"POST\"'")
                .arg(
                    Arg::new("service")
                        .long("service")
                        .value_parser(["core", "appliance", "notification", "a2a"])
                        .help("Only this service"),
                ),
        )
        .subcommand(crate::events::command())
        .subcommand(
            Command::new("download")
                .about("Download SERVICE/PATH to a file (progress bar on a terminal)")
                .after_help("Example:\n  safeguard download appliance/Backups/1/Download backup.sgb")
                .arg(Arg::new("target").required(true).value_name("SERVICE/PATH"))
                .arg(Arg::new("file").required(true).value_name("FILE").value_parser(value_parser!(PathBuf))),
        )
        .subcommand(
            Command::new("upload")
                .about("Upload a file to SERVICE/PATH (progress bar on a terminal)")
                .after_help("Example:\n  safeguard upload appliance/Backups/Upload backup.sgb")
                .arg(Arg::new("target").required(true).value_name("SERVICE/PATH"))
                .arg(Arg::new("file").required(true).value_name("FILE|-").value_parser(value_parser!(PathBuf)))
                .arg(
                    Arg::new("method")
                        .long("method")
                        .short('X')
                        .default_value("POST")
                        .value_parser(["POST", "PUT"])
                        .help("The HTTP method"),
                )
                .arg(
                    Arg::new("content-type")
                        .long("content-type")
                        .default_value("application/octet-stream")
                        .help("The body's content type"),
                ),
        )
        .subcommand(crate::sps::command())
        .subcommand(crate::tools::openapi_command())
        .subcommand(crate::tools::emulator_command())
        .subcommand(
            Command::new("completions")
                .about("Print a shell completion script")
                .after_help("Example:\n  safeguard completions bash > /etc/bash_completion.d/safeguard")
                .arg(
                    Arg::new("shell")
                        .required(true)
                        .value_parser(["bash", "zsh", "fish", "powershell", "elvish"]),
                ),
        )
}

fn api_command() -> Command {
    Command::new("api")
        .about("Call any endpoint: METHOD SERVICE/PATH (like `gh api`)")
        .after_help(
            "Examples:\n  safeguard api GET core/Me\n  safeguard api GET core/Users -q 'filter=Disabled eq false' -q limit=5 --output table\n  safeguard api POST core/Users --body user.json\n  echo '{\"Name\":\"x\"}' | safeguard api PUT core/Users/12 --body -",
        )
        .arg(
            Arg::new("method")
                .required(true)
                .value_name("METHOD")
                .help("GET, POST, PUT, DELETE, PATCH, ..."),
        )
        .arg(
            Arg::new("target")
                .required(true)
                .value_name("SERVICE/PATH")
                .help("core/Users/12, appliance/Backups, notification/Status, a2a/..."),
        )
        .arg(
            Arg::new("query")
                .short('q')
                .long("query")
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .help("A query parameter (repeatable)"),
        )
        .arg(
            Arg::new("header")
                .short('H')
                .long("header")
                .value_name("NAME: VALUE")
                .action(ArgAction::Append)
                .help("A request header (repeatable)"),
        )
        .arg(
            Arg::new("body")
                .long("body")
                .value_name("FILE|-")
                .value_parser(value_parser!(PathBuf))
                .help("A JSON body from a file, or - for stdin"),
        )
        .arg(flag("raw", "Print the answer's body bytes as received"))
        .arg(flag("all", "Walk every page (page/limit) of a GET listing"))
        .arg(
            Arg::new("fields")
                .long("fields")
                .value_name("F1,F2")
                .help("Only these properties (the appliance's `fields` parameter)"),
        )
        .arg(
            Arg::new("page-size")
                .long("page-size")
                .value_name("N")
                .value_parser(value_parser!(u32).range(1..))
                .default_value("100")
                .help("Items per page with --all"),
        )
}

fn login_command() -> Command {
    Command::new("login")
        .about("Sign in and store the token in a profile (keyring, else a 0600 file)")
        .after_help(
            "Examples:\n  safeguard login --host sg.example.com --ca ca.pem --user Admin            (PKCE; prompts for the password)\n  safeguard login --method certificate --cert c.pem --key k.pem --host sg.example.com\n  safeguard login --method device-code --host sg.example.com\n  safeguard login --method token --host sg.example.com < token.txt   (or typed at a prompt)\n  safeguard --profile prod login --host prod.example.com --user Admin --password-file pw.txt",
        )
        .arg(
            Arg::new("method")
                .long("method")
                .short('m')
                .value_parser(["pkce", "password", "certificate", "device-code", "browser", "token"])
                .default_value("pkce")
                .help("How to sign in"),
        )
        .arg(
            Arg::new("provider")
                .long("provider")
                .value_name("NAME")
                .help("The identity provider (default: local; certificate: the built-in one)"),
        )
        .arg(Arg::new("user").long("user").short('u').value_name("NAME").help("The user name"))
        .arg(flag("password-stdin", "Read the password (or the key's passphrase) from stdin"))
        .arg(file_arg("password-file", "Read the password (or the key's passphrase) from FILE"))
        .arg(file_arg("cert", "Certificate sign-in: the certificate (PEM)"))
        .arg(file_arg("key", "Certificate sign-in: the private key (PEM)"))
        .arg(file_arg("pfx", "Certificate sign-in: a PKCS#12 file (its password: --password-stdin / --password-file / prompt)"))
        .arg(flag("encrypted-key", "Certificate sign-in: the PEM key is encrypted (its passphrase as for --pfx)"))
}
