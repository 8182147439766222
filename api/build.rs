//! Generates the typed clients of the enabled services from the appliance's
//! OpenAPI documents (see `openapi/README.md` at the workspace root for where
//! they are found).

use std::path::PathBuf;

use safeguard_codegen::{generate, locate_documents, read_document, Style, SERVICES};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SAFEGUARD_OPENAPI_DIR");
    println!("cargo:rerun-if-env-changed=SAFEGUARD_CODEGEN_STYLE");
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    // The documents live beside the workspace, not beside this crate:
    // `openapi/` and `../shared/openapi/` are relative to the workspace root.
    let root = crate_dir.parent().unwrap_or(&crate_dir).to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let env_dir = std::env::var_os("SAFEGUARD_OPENAPI_DIR").map(PathBuf::from);
    // A document dropped into openapi/ (scripts/fetch-openapi) takes over at
    // the next build.
    println!("cargo:rerun-if-changed={}", root.join("openapi").display());

    let enabled: Vec<&str> = SERVICES
        .into_iter()
        .filter(|s| std::env::var_os(format!("CARGO_FEATURE_{}", s.to_uppercase())).is_some())
        .collect();
    let style = match std::env::var("SAFEGUARD_CODEGEN_STYLE").as_deref() {
        Ok("positional") => Style::Positional,
        Ok("builder-with-struct-builders") => Style::BuilderWithStructBuilders,
        _ => Style::Builder,
    };

    let sources = locate_documents(&enabled, env_dir.as_deref(), &root)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let mut report = String::new();
    for source in sources {
        println!("cargo:rerun-if-changed={}", source.path.display());
        let doc = read_document(&source.path).unwrap_or_else(|e| fail(&e.to_string()));
        let generated =
            generate(&source.service, doc, style).unwrap_or_else(|e| fail(&e.to_string()));
        report.push_str(&generated.summary());
        report.push_str(&format!("  source: {}\n", source.path.display()));
        let file = out_dir.join(format!("{}.rs", source.service));
        std::fs::write(&file, generated.code)
            .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", file.display())));
    }
    std::fs::write(out_dir.join("codegen-report.txt"), report)
        .unwrap_or_else(|e| fail(&format!("cannot write the codegen report: {e}")));
}

fn fail(message: &str) -> ! {
    eprintln!("\n{message}\n");
    std::process::exit(1);
}
