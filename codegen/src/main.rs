//! `safeguard-codegen`: generate, count and diff the Safeguard clients.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use safeguard_codegen::{
    diff::diff_dirs, generate, locate_documents, read_document, Style, SERVICES,
};

const USAGE: &str = "\
safeguard-codegen: the code generator behind safeguard-sdk

USAGE:
    safeguard-codegen report [DIR] [--positional]
        Normalize and generate every service's client from DIR (default: the
        build's search order: $SAFEGUARD_OPENAPI_DIR, openapi/, ../shared/openapi/)
        and print, per document, the operations kept, those returning raw bytes,
        and the rules applied.
    safeguard-codegen generate SERVICE OUT_FILE [DIR] [--positional]
        Write one service's generated Rust module to OUT_FILE.
    safeguard-codegen diff OLD_DIR NEW_DIR
        Print operations and schemas added, removed and changed (parameters,
        fields, enum values) between two sets of documents.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let style = if args.iter().any(|a| a == "--positional") {
        Style::Positional
    } else {
        Style::Builder
    };
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--positional")
        .collect();
    let result = match args.as_slice() {
        ["report"] => report(None, style),
        ["report", dir] => report(Some(PathBuf::from(dir)), style),
        ["generate", service, out] => generate_one(service, out, None, style),
        ["generate", service, out, dir] => {
            generate_one(service, out, Some(PathBuf::from(dir)), style)
        }
        ["diff", old, new] => diff_dirs(old.as_ref(), new.as_ref())
            .map(|report| print!("{report}"))
            .map_err(|e| e.to_string()),
        ["-h"] | ["--help"] | ["help"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unrecognized arguments\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn sources(dir: Option<PathBuf>, services: &[&str]) -> Result<Vec<(String, PathBuf)>, String> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let env_dir = dir.or_else(|| std::env::var_os("SAFEGUARD_OPENAPI_DIR").map(PathBuf::from));
    locate_documents(services, env_dir.as_deref(), &crate_dir)
        .map(|found| found.into_iter().map(|d| (d.service, d.path)).collect())
        .map_err(|e| e.to_string())
}

fn report(dir: Option<PathBuf>, style: Style) -> Result<(), String> {
    let mut total = 0;
    for (service, path) in sources(dir, &SERVICES)? {
        let doc = read_document(&path).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let generated = generate(&service, doc, style).map_err(|e| e.to_string())?;
        total += generated.operations_kept;
        print!("{}", generated.summary());
        println!(
            "  source: {}\n  generated in {:.2} s, {} lines",
            path.display(),
            started.elapsed().as_secs_f64(),
            generated.code().lines().count()
        );
    }
    println!("total: {total} operations generated, none dropped");
    Ok(())
}

fn generate_one(
    service: &str,
    out: &str,
    dir: Option<PathBuf>,
    style: Style,
) -> Result<(), String> {
    let (service, path) = sources(dir, &[service])?
        .pop()
        .ok_or_else(|| format!("no document for {service}"))?;
    let doc = read_document(&path).map_err(|e| e.to_string())?;
    let generated = generate(&service, doc, style).map_err(|e| e.to_string())?;
    std::fs::write(out, generated.code()).map_err(|e| format!("writing {out}: {e}"))?;
    eprint!("{}", generated.summary());
    Ok(())
}
