//! Where the build finds the OpenAPI documents.

use std::path::{Path, PathBuf};

use crate::CodegenError;

/// The appliance services with a generated client, in build order.
pub const SERVICES: [&str; 4] = ["core", "appliance", "notification", "a2a"];

/// One document the build will use, and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentSource {
    /// The service.
    pub service: String,
    /// The file.
    pub path: PathBuf,
}

/// Finds `{service}.json` for each of `services`, looking in order at
/// `$SAFEGUARD_OPENAPI_DIR` (`env_dir`), at the crate's `openapi/` (where
/// `scripts/fetch-openapi` writes an appliance's documents), then at
/// `../shared/openapi/` beside the crate. Each document is taken from the
/// first location that holds it; an error names all three locations when
/// one holds none.
pub fn locate_documents(
    services: &[&str],
    env_dir: Option<&Path>,
    crate_dir: &Path,
) -> Result<Vec<DocumentSource>, CodegenError> {
    let candidates: Vec<(String, PathBuf)> = [
        env_dir.map(|d| ("$SAFEGUARD_OPENAPI_DIR".to_owned(), d.to_owned())),
        Some(("openapi/".to_owned(), crate_dir.join("openapi"))),
        Some((
            "../shared/openapi/".to_owned(),
            crate_dir.join("..").join("shared").join("openapi"),
        )),
    ]
    .into_iter()
    .flatten()
    .collect();

    let mut found = Vec::new();
    let mut missing = Vec::new();
    for service in services {
        let file = format!("{service}.json");
        match candidates
            .iter()
            .map(|(_, dir)| dir.join(&file))
            .find(|p| p.is_file())
        {
            Some(path) => found.push(DocumentSource {
                service: (*service).to_owned(),
                path,
            }),
            None => missing.push(file),
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    let places: Vec<String> = candidates
        .iter()
        .map(|(label, dir)| format!("  {label} ({})", dir.display()))
        .collect();
    let env_note = if env_dir.is_none() {
        "  $SAFEGUARD_OPENAPI_DIR (not set)\n"
    } else {
        ""
    };
    Err(CodegenError::Missing(format!(
        "safeguard-sdk: no OpenAPI document for {} was found. Looked in, in order:\n{}{}\n\
         Fetch your appliance's documents with `scripts/fetch-openapi HOST` (writes openapi/), \
         point SAFEGUARD_OPENAPI_DIR at a folder holding core.json, appliance.json, \
         notification.json and a2a.json, or disable the services you do not use \
         (--no-default-features --features ...).",
        missing.join(", "),
        env_note,
        places.join("\n"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_location_holding_a_document_wins_per_document() {
        let root = tempdir();
        let crate_dir = root.join("crate");
        let env = root.join("env");
        let shared = root.join("shared").join("openapi");
        for d in [&crate_dir.join("openapi"), &env, &shared] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(env.join("core.json"), "{}").unwrap();
        std::fs::write(crate_dir.join("openapi").join("core.json"), "{}").unwrap();
        std::fs::write(crate_dir.join("openapi").join("a2a.json"), "{}").unwrap();
        std::fs::write(shared.join("a2a.json"), "{}").unwrap();
        std::fs::write(shared.join("notification.json"), "{}").unwrap();

        let found =
            locate_documents(&["core", "a2a", "notification"], Some(&env), &crate_dir).unwrap();
        assert_eq!(found[0].path, env.join("core.json"));
        assert_eq!(found[1].path, crate_dir.join("openapi").join("a2a.json"));
        assert_eq!(
            found[2].path,
            crate_dir.join("../shared/openapi/notification.json")
        );
    }

    #[test]
    fn missing_document_names_all_three_locations() {
        let root = tempdir();
        let err = locate_documents(&["appliance"], None, &root)
            .unwrap_err()
            .to_string();
        assert!(err.contains("appliance.json"), "{err}");
        assert!(err.contains("$SAFEGUARD_OPENAPI_DIR"), "{err}");
        assert!(err.contains("openapi/"), "{err}");
        assert!(err.contains("../shared/openapi/"), "{err}");
    }

    /// A fresh folder two levels below the system's temporary folder, so
    /// that no `../shared/` beside it exists by accident.
    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!(
                "safeguard-codegen-{}-{}",
                std::process::id(),
                rand_suffix()
            ))
            .join("root");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rand_suffix() -> u128 {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            + n as u128
    }
}
