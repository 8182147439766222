//! Keeps the emulator's module layering true (see the module doc of
//! `src/lib.rs`): a module may name only modules of its own layer or of a
//! lower one, and the modules of one layer must not name each other in a
//! circle.
//!
//! The check reads the library's sources (`src/`, without `main.rs`, which is
//! a separate crate that sees only the public API), finds every path that
//! starts with `crate::`, `super::` or `self::` (in the crate root also a
//! module's bare name) outside comments and string literals, resolves it to the top-level module it names, and compares the
//! layers in [`LAYERS`]. `crate::ITEM` for an item that is not a module means
//! the crate root (`lib.rs`, top layer): lower layers name such items through
//! the module that defines them (`crate::model::ADMIN_USER`), not through the
//! root's re-exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crate root (`lib.rs`).
const ROOT: &str = "";

/// Every top-level module of the library and its layer. A module may use
/// modules of its own layer or of a lower one, never of a higher one.
const LAYERS: &[(&str, u8)] = &[
    // 0, pure data and helpers: the public settings, constants and error
    // types, certificate generation, SSH keys, the list query language,
    // request validation against the OpenAPI documents.
    ("model", 0),
    ("certs", 0),
    ("sshkey", 0),
    ("query", 0),
    ("openapi", 0),
    ("validate", 0),
    ("platforms", 0),
    // 1, transport: the TLS server and its client-certificate machinery
    // (serves whatever router it is given).
    ("tls", 1),
    // 2, state: entities, tokens, counters, fault switches.
    ("state", 2),
    // 3, the test-control handle over the state.
    ("control", 3),
    // 4, handlers: SPP services (and the request context they share), rSTS,
    // SignalR, the `/emulator/` control face, SPS.
    ("api", 4),
    ("rsts", 4),
    ("signalr", 4),
    ("admin", 4),
    ("sps", 4),
    // 5, routing: the SPP router, the cluster members' listeners, and the
    // root that starts the servers.
    ("router", 5),
    ("members", 5),
    (ROOT, 5),
];

/// One use of another module: where, and which top-level module it names.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    file: String,
    line: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Punct(&'static str),
    Other,
}

/// Tokens of Rust source with their lines; comments, string, byte string,
/// raw string and character literals dropped; lifetimes kept out of the way.
fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let n = c.len();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < n {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < n {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i += 1;
            while i < n && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Other, line));
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // Escaped character literal: past the escape, up to the
                // closing quote.
                i += 3;
                while i < n && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                // A lifetime or label: the identifier follows as usual.
                i += 1;
            }
            out.push((Tok::Other, line));
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < n && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            if raw_prefix
                && (at(i) == '#' || at(i) == '"')
                && (at(i) == '"' || {
                    let mut j = i;
                    while at(j) == '#' {
                        j += 1;
                    }
                    at(j) == '"'
                })
            {
                // Raw string: r#"..."#.
                let mut hashes = 0;
                while at(i) == '#' {
                    hashes += 1;
                    i += 1;
                }
                i += 1;
                loop {
                    if i >= n {
                        break;
                    }
                    if c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                out.push((Tok::Other, line));
            } else if matches!(word.as_str(), "b" | "c") && (at(i) == '"' || at(i) == '\'') {
                // b"..." / b'.': the literal is read on the next round.
            } else {
                out.push((Tok::Ident(word), line));
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::Punct("::"), line));
            i += 2;
        } else {
            let p = match ch {
                '{' => Tok::Punct("{"),
                '}' => Tok::Punct("}"),
                ',' => Tok::Punct(","),
                ';' => Tok::Punct(";"),
                '*' => Tok::Punct("*"),
                _ => Tok::Other,
            };
            out.push((p, line));
            i += 1;
        }
    }
    out
}

/// The module path of a source file under `src/`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !(parts.is_empty() && stem == "lib") && stem != "mod" {
        parts.push(stem.to_string());
    }
    parts
}

/// The top-level modules that the paths of one file name, with lines.
/// `modules` is the set of top-level module names (anything else after
/// `crate::` is an item of the root).
fn uses_of(src: &str, file_module: &[String], modules: &BTreeSet<String>) -> Vec<(String, usize)> {
    let toks = tokenize(src);
    let ident = |k: usize| match toks.get(k) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |k: usize, p: &str| matches!(toks.get(k), Some((Tok::Punct(q), _)) if *q == p);
    let mut found = Vec::new();
    // Inline `mod name { ... }` blocks: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut k = 0;
    while k < toks.len() {
        let line = toks[k].1;
        if punct(k, "{") {
            depth += 1;
        } else if punct(k, "}") {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
        } else if ident(k) == Some("mod") && punct(k + 2, "{") {
            if let Some(name) = ident(k + 1) {
                inline.push((name.to_string(), depth + 1));
            }
        }
        let after_sep = k > 0 && punct(k - 1, "::");
        let head = ident(k);
        // In the crate root a module is also named by its bare name.
        if !after_sep && file_module.is_empty() && inline.is_empty() && punct(k + 1, "::") {
            if let Some(name) = head.filter(|h| modules.contains(*h)) {
                found.push((name.to_string(), line));
            }
        }
        if !after_sep && matches!(head, Some("crate" | "super" | "self")) && punct(k + 1, "::") {
            let mut here: Vec<String> = file_module.to_vec();
            here.extend(inline.iter().map(|(n, _)| n.clone()));
            let mut j = k;
            let base: Vec<String> = match head {
                Some("crate") => {
                    j += 2;
                    Vec::new()
                }
                Some("self") => {
                    j += 2;
                    here
                }
                _ => {
                    let mut b = here;
                    while ident(j) == Some("super") && punct(j + 1, "::") {
                        b.pop();
                        j += 2;
                    }
                    b
                }
            };
            // The first segment after the base: one name, a `{...}` group
            // (the first name of each member), or `*`.
            let mut firsts: Vec<Option<String>> = Vec::new();
            if punct(j, "{") {
                let mut d = 0;
                let mut expect_first = true;
                while j < toks.len() {
                    if punct(j, "{") {
                        d += 1;
                        if d > 1 {
                            expect_first = false;
                        }
                    } else if punct(j, "}") {
                        d -= 1;
                        if d == 0 {
                            break;
                        }
                    } else if d == 1 && punct(j, ",") {
                        expect_first = true;
                    } else if d == 1 && expect_first {
                        firsts.push(ident(j).map(str::to_string));
                        expect_first = false;
                    }
                    j += 1;
                }
            } else {
                firsts.push(ident(j).map(str::to_string));
            }
            for first in firsts {
                let target = match base.first() {
                    Some(top) => top.clone(),
                    None => match first {
                        Some(f) if modules.contains(&f) => f,
                        _ => ROOT.to_string(),
                    },
                };
                found.push((target, line));
            }
        }
        k += 1;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// All module uses of the library, between distinct top-level modules.
fn edges() -> Vec<Edge> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let rel = |f: &PathBuf| f.strip_prefix(&src).expect("under src").to_path_buf();
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| rel(f) != Path::new("main.rs"))
        .collect();
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(&rel(f)).first().cloned())
        .collect();
    let mut out = Vec::new();
    for f in &files {
        let r = rel(f);
        let m = module_path(&r);
        let from = m.first().cloned().unwrap_or_default();
        let text = std::fs::read_to_string(f).expect("read source");
        for (to, line) in uses_of(&text, &m, &modules) {
            if to != from {
                out.push(Edge {
                    from: from.clone(),
                    to,
                    file: r.display().to_string(),
                    line,
                });
            }
        }
    }
    out
}

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn show(module: &str) -> &str {
    if module == ROOT {
        "crate root"
    } else {
        module
    }
}

/// The groups of modules that use each other in a circle (strongly connected
/// components of more than one module), each with one circle through it.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<(Vec<String>, Vec<String>)> {
    let nodes: BTreeSet<&String> = graph
        .iter()
        .flat_map(|(m, to)| std::iter::once(m).chain(to.iter()))
        .collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|m| (*m, reach(m))).collect();
    let mut grouped = BTreeSet::new();
    let mut out = Vec::new();
    for m in &nodes {
        if grouped.contains(*m) || !reaches[m].contains(*m) {
            continue;
        }
        let group: Vec<String> = nodes
            .iter()
            .filter(|o| reaches[m].contains(**o) && reaches[**o].contains(*m))
            .map(|o| (*o).clone())
            .collect();
        grouped.extend(group.iter().cloned());
        // One circle: a shortest way back from `m` to itself.
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([(*m).clone()]);
        'search: while let Some(cur) = queue.pop_front() {
            for next in graph.get(&cur).into_iter().flatten() {
                if !group.contains(next) || prev.contains_key(next) {
                    continue;
                }
                prev.insert(next.clone(), cur.clone());
                if next == *m {
                    break 'search;
                }
                queue.push_back(next.clone());
            }
        }
        let mut circle = vec![(*m).clone()];
        let mut cur = (*m).clone();
        while let Some(p) = prev.get(&cur) {
            circle.push(p.clone());
            if p == *m {
                break;
            }
            cur = p.clone();
        }
        circle.reverse();
        out.push((group, circle));
    }
    out
}

#[test]
fn emulator_modules_are_layered_without_cycles() {
    let edges = edges();
    let mut problems = Vec::new();

    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for e in &edges {
        seen.insert(&e.from);
        seen.insert(&e.to);
    }
    for m in seen {
        if layer(m).is_none() {
            problems.push(format!(
                "module `{}` has no layer: add it to LAYERS in tests/layering.rs",
                show(m)
            ));
        }
    }

    let mut reported = BTreeSet::new();
    for e in &edges {
        if let (Some(from), Some(to)) = (layer(&e.from), layer(&e.to)) {
            if to > from && reported.insert((e.from.clone(), e.to.clone(), e.file.clone())) {
                problems.push(format!(
                    "{}:{}: `{}` (layer {from}) uses `{}` (layer {to}), a higher layer",
                    e.file,
                    e.line,
                    show(&e.from),
                    show(&e.to)
                ));
            }
        }
    }

    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &edges {
        graph
            .entry(e.from.clone())
            .or_default()
            .insert(e.to.clone());
    }
    for (group, circle) in circles(&graph) {
        let group: Vec<&str> = group.iter().map(|m| show(m)).collect();
        let circle: Vec<&str> = circle.iter().map(|m| show(m)).collect();
        problems.push(format!(
            "modules {{{}}} use each other in a circle, e.g. {}",
            group.join(", "),
            circle.join(" -> ")
        ));
    }

    assert!(
        problems.is_empty(),
        "the emulator's module layering is broken:\n  {}",
        problems.join("\n  ")
    );
}

/// The scanner itself: paths in code count, paths in comments and strings do
/// not, `super` in an inline module resolves inside the file's module.
#[test]
fn scanner_resolves_paths() {
    let modules: BTreeSet<String> = ["state", "api", "model"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let src = r##"
        //! Doc link to [`crate::api::Ctx`].
        use crate::state::{App, Db};
        use crate::{model::ADMIN_USER, api};
        /* crate::api:: in a block comment */
        fn f<'a>(x: &'a str) -> char { let _ = "crate::api::x"; let _ = r#"crate::api"#; 'c' }
        fn g() { let _ = crate::MFA_OTP; let _ = b'\''; }
        mod tests {
            use super::*;
        }
        use super::sibling;
    "##;
    let found = uses_of(src, &["state".to_string()], &modules);
    let targets: Vec<(&str, usize)> = found.iter().map(|(m, l)| (m.as_str(), *l)).collect();
    assert_eq!(
        targets,
        vec![
            ("state", 3),
            ("model", 4),
            ("api", 4),
            (ROOT, 7),
            ("state", 9),
            (ROOT, 11)
        ]
    );
    let root = "use state::App; fn f() { api::router(); core::mem::drop(1); x::state::y(); }";
    let found = uses_of(root, &[], &modules);
    let targets: Vec<&str> = found.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(targets, vec!["state", "api"]);
    assert_eq!(module_path(Path::new("lib.rs")), Vec::<String>::new());
    assert_eq!(module_path(Path::new("api/mod.rs")), vec!["api"]);
    assert_eq!(module_path(Path::new("api/core.rs")), vec!["api", "core"]);
}
