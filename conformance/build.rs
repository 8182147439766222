//! Generates `$OUT_DIR/operations.rs`: one entry per typed operation of the
//! four generated clients, each with a function that calls the operation's
//! builder with every required parameter and the body taken from run-time
//! JSON values.
//!
//! The entries are read from the generated clients themselves, so method
//! names, parameter names and setter types match exactly: the core client
//! from the build of `safeguard-api-core-types` (its `links` hands us the
//! folder as `DEP_SAFEGUARD_API_CORE_GENERATED_DIR`), the three small ones
//! generated again here from the same documents with the same code (about a
//! second). Each builder struct (`mod builder`) names its client method in
//! its doc comment, its fields are `Result<T, String>` (required) or
//! `Result<Option<T>, String>` (optional), and its `send` names the HTTP
//! method and path template in its doc comment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use quote::ToTokens;
use serde_json::Value;

fn main() {
    if let Err(message) = run() {
        eprintln!("\nsafeguard-conformance: {message}\n");
        std::process::exit(1);
    }
}

/// One builder of a generated client.
struct Builder {
    /// The `Client` method that returns it.
    client_method: String,
    /// Its fields, without `client`.
    fields: Vec<Field>,
    /// Whether `send` answers a `ByteStream` (a download or raw bytes).
    streams: bool,
}

/// A builder field: `(name as written, type, required)`.
type Field = (String, syn::Type, bool);

fn run() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=DEP_SAFEGUARD_API_CORE_GENERATED_DIR");
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let sources = safeguard_codegen::build_script::build_documents(
        &safeguard_codegen::SERVICES,
        std::path::Path::new(".."),
    )?;

    let mut table = String::new();
    let mut modules = String::new();
    for source in &sources {
        let service = source.service.as_str();
        // The test synthesizes arguments from the same original document.
        println!(
            "cargo:rustc-env=SAFEGUARD_CONFORMANCE_DOC_{}={}",
            service.to_ascii_uppercase(),
            source.path.display()
        );
        let doc = safeguard_codegen::read_document(&source.path).map_err(|e| e.to_string())?;
        let client = client_source(service, &doc)?;
        let builders = parse_builders(&client).map_err(|e| format!("{service}: {e}"))?;
        let (entries, module) = emit_service(service, &doc, &builders)?;
        table.push_str(&entries);
        modules.push_str(&module);
    }
    let code = format!(
        "/// Every typed operation of the generated clients, in document order \
         (core, appliance, notification, a2a).\n\
         pub static OPERATIONS: &[Operation] = &[\n{table}];\n{modules}"
    );
    std::fs::write(out_dir.join("operations.rs"), code)
        .map_err(|e| format!("cannot write operations.rs: {e}"))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// The generated client code of `service`.
fn client_source(service: &str, doc: &Value) -> Result<String, String> {
    if service == "core" {
        let dir = env("DEP_SAFEGUARD_API_CORE_GENERATED_DIR")?;
        let path = Path::new(&dir).join("client.rs");
        println!("cargo:rerun-if-changed={}", path.display());
        return std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    let generated =
        safeguard_codegen::generate(service, doc.clone(), safeguard_codegen::Style::Builder)
            .map_err(|e| e.to_string())?;
    Ok(generated.client)
}

/// The builders of a generated client, by `(METHOD, path template)`.
fn parse_builders(client: &str) -> Result<BTreeMap<(String, String), Builder>, String> {
    let file = syn::parse_file(client).map_err(|e| format!("client does not parse: {e}"))?;
    let items = file
        .items
        .iter()
        .find_map(|item| match item {
            syn::Item::Mod(m) if m.ident == "builder" => m.content.as_ref().map(|(_, i)| i),
            _ => None,
        })
        .ok_or("no `mod builder` in the generated client")?;
    let mut structs: BTreeMap<String, (String, Vec<Field>)> = BTreeMap::new();
    for item in items {
        let syn::Item::Struct(s) = item else { continue };
        let doc = doc_text(&s.attrs);
        let Some(method) = between(&doc, "Builder for [`Client::", "`]") else {
            continue;
        };
        let mut fields = Vec::new();
        if let syn::Fields::Named(named) = &s.fields {
            for field in &named.named {
                let name = field.ident.as_ref().map(ToString::to_string);
                let Some(name) = name.filter(|n| n != "client") else {
                    continue;
                };
                let inner = generic_args(&field.ty, "Result")
                    .and_then(|args| args.into_iter().next())
                    .ok_or_else(|| format!("{}.{name} is not a Result", s.ident))?;
                let required = generic_args(&inner, "Option").is_none();
                fields.push((name, inner, required));
            }
        }
        structs.insert(s.ident.to_string(), (method.to_owned(), fields));
    }
    let mut builders = BTreeMap::new();
    for item in items {
        let syn::Item::Impl(imp) = item else { continue };
        let syn::Type::Path(self_ty) = imp.self_ty.as_ref() else {
            continue;
        };
        let Some(name) = self_ty.path.segments.last().map(|s| s.ident.to_string()) else {
            continue;
        };
        let Some((client_method, fields)) = structs.get(&name) else {
            continue;
        };
        for impl_item in &imp.items {
            let syn::ImplItem::Fn(f) = impl_item else {
                continue;
            };
            if f.sig.ident != "send" {
                continue;
            }
            let doc = doc_text(&f.attrs);
            let http_method = between(&doc, "Sends a `", "`")
                .ok_or_else(|| format!("{name}::send names no method"))?;
            let path = between(&doc, "request to `", "`")
                .ok_or_else(|| format!("{name}::send names no path"))?;
            let streams = f
                .sig
                .output
                .to_token_stream()
                .to_string()
                .contains("ByteStream");
            builders.insert(
                (http_method.to_owned(), path.to_owned()),
                Builder {
                    client_method: client_method.clone(),
                    fields: fields.clone(),
                    streams,
                },
            );
        }
    }
    Ok(builders)
}

/// The concatenated `///` lines of an item.
fn doc_text(attrs: &[syn::Attribute]) -> String {
    let mut text = String::new();
    for attr in attrs {
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if nv.path.is_ident("doc") {
                if let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) = &nv.value
                {
                    text.push_str(&s.value());
                    text.push('\n');
                }
            }
        }
    }
    text
}

fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// The generic arguments of `ty` when its last path segment is `name`.
fn generic_args(ty: &syn::Type, name: &str) -> Option<Vec<syn::Type>> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    Some(
        args.args
            .iter()
            .filter_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
    )
}

/// A name with case and separators removed: `assetId`, `asset_id` and
/// `r#assetid` all read `assetid`.
fn key(name: &str) -> String {
    name.trim_start_matches("r#")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn service_variant(service: &str) -> &'static str {
    match service {
        "core" => "Core",
        "appliance" => "Appliance",
        "notification" => "Notification",
        _ => "A2a",
    }
}

/// The table entries and the module of call functions of one service.
fn emit_service(
    service: &str,
    doc: &Value,
    builders: &BTreeMap<(String, String), Builder>,
) -> Result<(String, String), String> {
    let variant = service_variant(service);
    let module = format!("{service}_calls");
    let mut entries = String::new();
    let mut calls = String::new();
    let mut missing = Vec::new();
    for (index, (path, method, op)) in safeguard_codegen::normalize::operations(doc).enumerate() {
        let http_method = method.to_ascii_uppercase();
        let Some(builder) = builders.get(&(http_method.clone(), path.to_owned())) else {
            missing.push(format!("{http_method} {path}"));
            continue;
        };
        let wire: BTreeMap<String, String> = op
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("name").and_then(Value::as_str))
            .map(|n| (key(n), n.to_owned()))
            .collect();
        let mut setters = String::new();
        let mut params = Vec::new();
        let mut body = "BodyKind::None";
        for (field, ty, required) in &builder.fields {
            if !required {
                continue;
            }
            let ty_text = ty.to_token_stream().to_string();
            if field == "body" {
                if ty_text.replace(' ', "") == "reqwest::Body" {
                    body = "BodyKind::Upload";
                    setters.push_str(".body(a.bytes(\"body\")?)");
                } else {
                    body = "BodyKind::Json";
                    write!(setters, ".body(a.get::<{ty_text}>(\"body\")?)").unwrap();
                }
                continue;
            }
            let name = wire.get(&key(field)).ok_or_else(|| {
                format!("{http_method} {path}: builder field `{field}` matches no parameter")
            })?;
            params.push(format!("{name:?}"));
            write!(setters, ".{field}(a.get::<{ty_text}>({name:?})?)").unwrap();
        }
        let function = format!("call_{index}");
        let (finish, combinator, wait) = if builder.streams {
            ("crate::finish_stream", "then", ".await")
        } else {
            ("crate::finish", "map", "")
        };
        let method_name = &builder.client_method;
        if service == "a2a" {
            // The a2a client is made per call (it holds the API key), so the
            // builder borrows a local: an async block owns both.
            write!(
                calls,
                "    pub(super) fn {function}<'a>(c: &'a Clients, a: &'a Args) -> Call<'a> {{\n\
                 \x20       Box::pin(async move {{\n\
                 \x20           let api = c.a2a(a)?;\n\
                 \x20           {finish}(api.{method_name}(){setters}.send().await){wait}\n\
                 \x20       }})\n\
                 \x20   }}\n",
            )
            .unwrap();
        } else {
            // No async block per operation (a state machine each is most of
            // what 1,072 of them cost to compile): the builder is made first,
            // then its own sending future is boxed with the shared finish. The
            // builder is made in a closure called at once, so that `?` on
            // the arguments needs no function naming the builder's type.
            let client = match service {
                "core" => "c.core()",
                "appliance" => "c.appliance()",
                _ => "c.notification()",
            };
            write!(
                calls,
                "    pub(super) fn {function}<'a>(c: &'a Clients, a: &'a Args) -> Call<'a> {{\n\
                 \x20       let built = (|| -> Result<_, Failure> {{ Ok({client}.{method_name}(){setters}) }})();\n\
                 \x20       match built {{\n\
                 \x20           Ok(builder) => Box::pin(builder.send().{combinator}({finish})),\n\
                 \x20           Err(failure) => crate::failed(failure),\n\
                 \x20       }}\n\
                 \x20   }}\n",
            )
            .unwrap();
        }
        let operation_id = op
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        writeln!(
            entries,
            "    Operation {{ service: ApiService::{variant}, operation_id: {operation_id:?}, \
             client_method: {cm:?}, method: {http_method:?}, path: {path:?}, \
             path_params: &[{params}], body: {body}, call: {module}::{function} }},",
            cm = builder.client_method,
            params = params.join(", "),
        )
        .unwrap();
    }
    if !missing.is_empty() {
        return Err(format!(
            "{service}: no generated builder for {} operations: {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    let module_code = format!(
        "\n/// The call functions of the {service} operations.\n\
         #[allow(unused_imports, unused_variables, clippy::redundant_closure_call)]\n\
         mod {module} {{\n\
         \x20   use super::{{Args, Call, Clients, Failure}};\n\
         \x20   use futures::FutureExt as _;\n\
         \x20   use safeguard_sdk::api::{service}::types;\n\
         {calls}}}\n"
    );
    Ok((entries, module_code))
}
