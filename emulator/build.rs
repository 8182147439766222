//! Embeds the appliance's OpenAPI documents, which the emulator routes and
//! validates every request by. Each is taken from the first of
//! `$SAFEGUARD_OPENAPI_DIR`, the workspace's `openapi/` and `../shared/openapi/`
//! beside the workspace that holds it (the order the typed clients' build
//! uses, see `openapi/README.md`).

use std::path::{Path, PathBuf};

const SERVICES: [&str; 4] = ["core", "appliance", "notification", "a2a"];

fn main() {
    println!("cargo:rerun-if-env-changed=SAFEGUARD_OPENAPI_DIR");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let workspace = manifest.parent().unwrap_or(&manifest).to_path_buf();
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("SAFEGUARD_OPENAPI_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(workspace.join("openapi"));
    dirs.push(workspace.join("..").join("shared").join("openapi"));

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let mut missing = Vec::new();
    for service in SERVICES {
        let file = format!("{service}.json");
        match dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()) {
            Some(found) => {
                println!("cargo:rerun-if-changed={}", found.display());
                copy(&found, &out.join(&file));
            }
            None => missing.push(file),
        }
    }
    for d in &dirs {
        println!("cargo:rerun-if-changed={}", d.display());
    }
    if !missing.is_empty() {
        eprintln!(
            "safeguard-emulator: no {} in $SAFEGUARD_OPENAPI_DIR, openapi/ or ../shared/openapi/ \
             (scripts/fetch-openapi writes them; see openapi/README.md)",
            missing.join(", ")
        );
        std::process::exit(1);
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        eprintln!("safeguard-emulator: copying {}: {e}", from.display());
        std::process::exit(1);
    }
}
