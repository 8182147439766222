//! The build script of each generated service crate (`safeguard-api-core`,
//! `safeguard-api-appliance`, ...): one call, [`run`].

use std::path::{Path, PathBuf};

use crate::{generate, locate_documents, read_document, Style};

/// Generates `service`'s client into `$OUT_DIR`: the schema types in
/// `types.rs`, the client in `client.rs`, the report in
/// `codegen-report.txt`.
///
/// `workspace_root` is the folder holding `openapi/`, relative to the
/// calling crate's manifest. The documents are looked up as
/// [`locate_documents`] says; cargo reruns the script when a document used,
/// the `openapi/` folder, `SAFEGUARD_OPENAPI_DIR` or
/// `SAFEGUARD_CODEGEN_STYLE` change. A failure prints its message and exits
/// the build script with status 1.
pub fn run(service: &str, workspace_root: &str) {
    exit_on_error(try_run(service, Path::new(workspace_root)));
}

/// Prints a build script's failure and exits with status 1.
fn exit_on_error(result: Result<(), String>) {
    if let Err(message) = result {
        eprintln!("\n{message}\n");
        std::process::exit(1);
    }
}

/// For a build script: the documents of `services`, looked up as
/// [`locate_documents`] says from `workspace_root` (relative to the calling
/// crate's manifest), with cargo told to rerun the script when one of them,
/// the `openapi/` folder or `SAFEGUARD_OPENAPI_DIR` changes.
pub fn build_documents(
    services: &[&str],
    workspace_root: &Path,
) -> Result<Vec<crate::DocumentSource>, String> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SAFEGUARD_OPENAPI_DIR");
    let root = env_path("CARGO_MANIFEST_DIR")?.join(workspace_root);
    // A document dropped into openapi/ (scripts/fetch-openapi) takes over at
    // the next build.
    println!("cargo:rerun-if-changed={}", root.join("openapi").display());
    let env_dir = std::env::var_os("SAFEGUARD_OPENAPI_DIR").map(PathBuf::from);
    let sources =
        locate_documents(services, env_dir.as_deref(), &root).map_err(|e| e.to_string())?;
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.path.display());
    }
    Ok(sources)
}

fn try_run(service: &str, workspace_root: &Path) -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=SAFEGUARD_CODEGEN_STYLE");
    let out_dir = env_path("OUT_DIR")?;
    let style = match std::env::var("SAFEGUARD_CODEGEN_STYLE").as_deref() {
        Ok("positional") => Style::Positional,
        Ok("builder-with-struct-builders") => Style::BuilderWithStructBuilders,
        _ => Style::Builder,
    };
    let source = build_documents(&[service], workspace_root)?
        .pop()
        .ok_or_else(|| format!("no document located for {service}"))?;
    let doc = read_document(&source.path).map_err(|e| e.to_string())?;
    let generated = generate(service, doc, style).map_err(|e| e.to_string())?;
    let report = format!(
        "{}  source: {}\n",
        generated.summary(),
        source.path.display()
    );
    write(&out_dir.join("types.rs"), &generated.types)?;
    write(&out_dir.join("client.rs"), &generated.client)?;
    write(&out_dir.join("codegen-report.txt"), &report)?;
    println!(
        "cargo:rustc-env=SAFEGUARD_GENERATED_DIR={}",
        out_dir.display()
    );
    // A types crate (`links = ...`) hands the client half to its client
    // crate's build script as `DEP_<LINKS>_GENERATED_DIR`.
    if std::env::var_os("CARGO_MANIFEST_LINKS").is_some() {
        println!("cargo:generated_dir={}", out_dir.display());
    }
    Ok(())
}

/// The build script of a client crate whose code its types crate's build
/// script generated (see [`run`]): points `include!` at that folder through
/// the `SAFEGUARD_GENERATED_DIR` environment variable.
///
/// `links` is the `links` key of the types crate (`safeguard_api_core`).
pub fn run_client(links: &str) {
    let var = format!(
        "DEP_{}_GENERATED_DIR",
        links.to_ascii_uppercase().replace('-', "_")
    );
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={var}");
    exit_on_error(match std::env::var(&var) {
        Ok(dir) => {
            println!("cargo:rustc-env=SAFEGUARD_GENERATED_DIR={dir}");
            Ok(())
        }
        Err(_) => Err(format!(
            "{var} is not set: the types crate with `links = \"{links}\"` must be a dependency"
        )),
    });
}

fn env_path(name: &str) -> Result<PathBuf, String> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{name} is not set: run this from a cargo build script"))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
