//! The generated commands: `safeguard SERVICE GROUP COMMAND`, one per
//! operation of the table that `build.rs` wrote from the OpenAPI documents,
//! built with clap's builder API and sent through the SDK's generic verbs.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use http::Method;
use serde_json::{Map, Value};

use crate::exec::{self, Call, Payload};
use crate::exit::{usage, CliResult};
use crate::table::{BodyKind, Kind, Location, Operation, OPERATIONS};

/// The services, with their help.
pub const SERVICES: [(&str, &str); 4] = [
    (
        "core",
        "The core service: users, assets, accounts, policies, requests, ... (generated)",
    ),
    (
        "appliance",
        "The appliance service: backups, networking, time, status, ... (generated)",
    ),
    (
        "notification",
        "The anonymous notification service: status (generated)",
    ),
    (
        "a2a",
        "A2A: credential retrieval with a certificate and an API key",
    ),
];

/// The operations of `service`, in document order.
pub fn operations(service: &str) -> impl Iterator<Item = &'static Operation> + '_ {
    OPERATIONS.iter().filter(move |o| o.service == service)
}

/// The operation behind `safeguard SERVICE GROUP NAME`.
pub fn find(service: &str, group: &str, name: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .find(|o| o.service == service && o.group == group && o.name == name)
}

/// The group commands of `service` (each with its operations).
pub fn group_commands(service: &str) -> Vec<Command> {
    let mut groups: Vec<&'static str> = Vec::new();
    for op in operations(service) {
        if !groups.contains(&op.group) {
            groups.push(op.group);
        }
    }
    groups.sort_unstable();
    groups
        .into_iter()
        .map(|group| {
            let mut cmd = Command::new(group)
                .about(format!(
                    "{} operations of the {service} service",
                    heading(group)
                ))
                .subcommand_required(true)
                .arg_required_else_help(true);
            for op in operations(service).filter(|o| o.group == group) {
                cmd = cmd.subcommand(operation_command(op));
            }
            cmd
        })
        .collect()
}

fn heading(group: &str) -> String {
    group.replace('-', " ")
}

fn value_name(kind: Kind, format: &str) -> &'static str {
    match (kind, format) {
        (Kind::String, "date-time") => "DATE-TIME",
        (Kind::String, _) => "STRING",
        (Kind::Integer, _) => "INTEGER",
        (Kind::Number, _) => "NUMBER",
        (Kind::Boolean, _) => "BOOL",
    }
}

/// Sets `arg`'s parser by `kind` (enums list their values).
fn typed(arg: Arg, kind: Kind, values: &'static [&'static str]) -> Arg {
    if !values.is_empty() {
        return arg.value_parser(PossibleValuesParser::new(values.iter().copied()));
    }
    match kind {
        Kind::Integer => arg.value_parser(value_parser!(i64)),
        Kind::Number => arg.value_parser(value_parser!(f64)),
        Kind::Boolean => arg
            .value_parser(PossibleValuesParser::new(["true", "false"]))
            .num_args(0..=1)
            .default_missing_value("true"),
        Kind::String => arg,
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The clap command of one operation.
pub fn operation_command(op: &'static Operation) -> Command {
    let mut long = String::new();
    if !op.summary.is_empty() {
        long.push_str(op.summary);
    }
    if !op.description.is_empty() && op.description != op.summary {
        long.push_str("\n\n");
        long.push_str(op.description);
    }
    if let Some(body) = op.body.as_ref().filter(|b| !b.help.is_empty()) {
        long.push_str(&format!("\n\nBody ({}): {}", body.content_type, body.help));
    }
    long.push_str(&format!(
        "\n\n{} /service/{}/v4/{}  (operationId {})",
        op.method, op.service, op.path, op.id
    ));
    let mut cmd = Command::new(op.name)
        .about(one_line(op.summary))
        .long_about(long);
    for p in op.params {
        let mut arg = Arg::new(p.flag)
            .long(p.flag)
            .value_name(value_name(p.kind, p.format))
            .help(one_line(p.help))
            .required(p.required);
        if p.array {
            arg = arg.action(ArgAction::Append);
        }
        if p.location == Location::Header {
            arg = arg.help_heading("Headers");
        }
        cmd = cmd.arg(typed(arg, p.kind, p.values));
    }
    if let Some(body) = &op.body {
        match body.kind {
            BodyKind::Json | BodyKind::JsonString => {
                let members = !body.members.is_empty();
                let help = if body.kind == BodyKind::JsonString {
                    "The body: a file (or - for stdin) holding a JSON string or the plain text"
                } else if members {
                    "The JSON body from a file, or - for stdin; member flags override its members"
                } else {
                    "The JSON body from a file, or - for stdin"
                };
                cmd = cmd.arg(
                    Arg::new("body")
                        .long("body")
                        .value_name("FILE|-")
                        .value_parser(value_parser!(PathBuf))
                        .help(help)
                        .required(body.required && !members),
                );
                for m in body.members {
                    let arg = Arg::new(m.flag)
                        .long(m.flag)
                        .value_name(value_name(m.kind, ""))
                        .help(one_line(m.help))
                        .help_heading("Body members");
                    cmd = cmd.arg(typed(arg, m.kind, m.values));
                }
            }
            BodyKind::Raw | BodyKind::Multipart(_) => {
                cmd = cmd.arg(
                    Arg::new("in")
                        .long("in")
                        .value_name("FILE|-")
                        .value_parser(value_parser!(PathBuf))
                        .help("The file to upload (- for stdin)")
                        .required(true),
                );
            }
        }
    }
    if op.binary_response {
        cmd = cmd.arg(
            Arg::new("out")
                .long("out")
                .short('O')
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .help("Save the answer's bytes to FILE (default: stdout)"),
        );
    }
    if op.service == "a2a" {
        // The A2A service authenticates with a client certificate and an
        // API key, not a user token.
        cmd = crate::a2a::identity_args(cmd, true);
    }
    if pages(op) {
        cmd = cmd
            .arg(
                Arg::new("all")
                    .long("all")
                    .action(ArgAction::SetTrue)
                    .help("Walk every page (page/limit) and print all items"),
            )
            .arg(
                Arg::new("page-size")
                    .long("page-size")
                    .value_name("N")
                    .value_parser(value_parser!(u32).range(1..))
                    .default_value("100")
                    .help("Items per page with --all"),
            );
    }
    cmd
}

/// Whether `op` is a GET listing with `page` and `limit`.
fn pages(op: &Operation) -> bool {
    op.method == "GET"
        && op.params.iter().any(|p| p.name == "page")
        && op.params.iter().any(|p| p.name == "limit")
}

fn raw_values(m: &ArgMatches, id: &str) -> Vec<String> {
    m.get_raw(id)
        .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn json_scalar(kind: Kind, text: &str) -> Value {
    match kind {
        Kind::Integer => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.into())),
        Kind::Number => text
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.into())),
        Kind::Boolean => Value::Bool(text == "true"),
        Kind::String => Value::String(text.into()),
    }
}

/// The call of `op` with the values in `m`.
pub fn call(op: &'static Operation, m: &ArgMatches) -> CliResult<Call> {
    let mut path = op.path.to_owned();
    let mut query = Vec::new();
    let mut headers = Vec::new();
    for p in op.params {
        for value in raw_values(m, p.flag) {
            match p.location {
                Location::Path => {
                    path = path.replace(&format!("{{{}}}", p.name), &exec::encode_segment(&value));
                }
                Location::Query => query.push((p.name.to_owned(), value)),
                Location::Header => headers.push((p.name.to_owned(), value)),
            }
        }
    }
    if path.contains('{') {
        return Err(usage(format!("a path parameter of {} is missing", op.path)));
    }
    let payload = match &op.body {
        None => Payload::None,
        Some(body) => match body.kind {
            BodyKind::Raw => Payload::Raw(in_file(m)?, body.content_type.to_owned()),
            BodyKind::Multipart(field) => Payload::Multipart(in_file(m)?, field.to_owned()),
            BodyKind::Json | BodyKind::JsonString => {
                let string_ok = body.kind == BodyKind::JsonString;
                let mut value = match m.get_one::<PathBuf>("body") {
                    Some(source) => Some(exec::read_json_body(source, string_ok)?),
                    None => None,
                };
                for member in body.members {
                    if let Some(text) = raw_values(m, member.flag).pop() {
                        let v = value.get_or_insert_with(|| Value::Object(Map::new()));
                        let Value::Object(obj) = v else {
                            return Err(usage(format!(
                                "--{} needs a JSON object body",
                                member.flag
                            )));
                        };
                        obj.insert(member.name.to_owned(), json_scalar(member.kind, &text));
                    }
                }
                match value {
                    Some(v) => Payload::Json(v),
                    None if body.required => {
                        return Err(usage("this operation needs a body: --body FILE (or - for stdin) or member flags"));
                    }
                    None => Payload::None,
                }
            }
        },
    };
    let method = Method::from_bytes(op.method.as_bytes()).map_err(|e| usage(e.to_string()))?;
    let service = exec::service(op.service)
        .ok_or_else(|| usage(format!("unknown service {}", op.service)))?;
    Ok(Call {
        method,
        service,
        path,
        query,
        headers,
        payload,
        all: pages(op) && m.get_flag("all"),
        page_size: if pages(op) {
            m.get_one::<u32>("page-size").copied().unwrap_or(100)
        } else {
            100
        },
        binary: op.binary_response,
        out: if op.binary_response {
            m.get_one::<PathBuf>("out").cloned()
        } else {
            None
        },
        raw: false,
    })
}

fn in_file(m: &ArgMatches) -> CliResult<PathBuf> {
    m.get_one::<PathBuf>("in")
        .cloned()
        .ok_or_else(|| usage("--in FILE is required"))
}

/// Whether the operation needs no sign-in (the notification service and
/// the appliance's anonymous status).
pub fn anonymous(op: &Operation) -> bool {
    op.service == "notification"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_get_users_is_in_the_table() {
        let op = find("core", "users", "get-users").expect("users get-users");
        assert_eq!((op.method, op.path), ("GET", "Users"));
        assert!(pages(op));
        assert!(op.params.iter().any(|p| p.flag == "filter"));
        let m = operation_command(op)
            .try_get_matches_from([
                "get-users",
                "--filter",
                "Disabled eq false",
                "--limit",
                "10",
            ])
            .expect("parses");
        let c = call(op, &m).unwrap();
        assert_eq!(
            c.query,
            vec![
                ("filter".to_owned(), "Disabled eq false".to_owned()),
                ("limit".into(), "10".into())
            ]
        );
        assert!(operation_command(op)
            .try_get_matches_from(["get-users", "--limit", "ten"])
            .is_err());
    }

    #[test]
    fn every_command_builds() {
        for (service, _) in SERVICES {
            for group in group_commands(service) {
                group.debug_assert();
            }
        }
    }
}
