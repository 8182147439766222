//! Drives progenitor over a normalized document.

use std::panic::{self, AssertUnwindSafe};

use progenitor_impl::{GenerationSettings, Generator, HooksMode, InterfaceStyle, TagStyle};
use quote::quote;
use serde_json::Value;

use crate::lean_serde::{self, LeanReport};
use crate::normalize::{self, NormalizeReport};
use crate::required_arrays;
use crate::sending;
use crate::setters;
use crate::slim::{self, SlimReport};
use crate::CodegenError;

/// The generated module for one service, with what it took to get there.
#[derive(Debug)]
pub struct Generated {
    /// The service (`core`, `appliance`, `notification`, `a2a`).
    pub service: String,
    /// The schema types: `pub mod types` and the tolerant enums' impls.
    /// They reference nothing of the client, so they can compile in a crate
    /// of their own (as the core service's do) in parallel with the HTTP
    /// stack.
    pub types: String,
    /// The client: `Client`, its operation builders and the prelude. It
    /// names the schema types as `types::..`, so the module including it
    /// has `types` in scope.
    pub client: String,
    /// Operations in the document (all of them are generated).
    pub operations_kept: usize,
    /// What normalization changed.
    pub report: NormalizeReport,
    /// What was removed with typify's struct builders.
    pub slim: SlimReport,
    /// Operations whose `send` goes through the shared sending future
    /// ([`crate::sending`]).
    pub shared_sends: usize,
    /// Parameter setters that call the shared conversion functions
    /// ([`crate::setters`]).
    pub shared_setters: usize,
    /// Types whose `Deserialize` was rewritten ([`crate::lean_serde`]).
    pub lean: LeanReport,
    /// Fields of [`NormalizeReport::required_arrays`] found in the generated
    /// types and now sent even when empty ([`crate::required_arrays`]).
    pub required_arrays_sent: usize,
}

impl Generated {
    /// The whole service as one module: [`Generated::types`] then
    /// [`Generated::client`].
    pub fn code(&self) -> String {
        format!("{}\n{}", self.types, self.client)
    }

    /// A short human summary: operations kept, raw-bytes operations, rules applied.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} operations kept, {} return raw bytes\n",
            self.service,
            self.operations_kept,
            self.report.raw_operations.len()
        );
        for line in self.report.lines() {
            s.push_str("  ");
            s.push_str(&line);
            s.push('\n');
        }
        if !self.report.required_arrays.is_empty() {
            s.push_str(&format!(
                "  required arrays sent even when empty: {} of {} fields\n",
                self.required_arrays_sent,
                self.report.required_arrays.len()
            ));
        }
        if self.slim != SlimReport::default() {
            s.push_str(&format!(
                "  struct builders removed: {} items of types::builder, {} body_map methods\n",
                self.slim.builder_items, self.slim.body_maps
            ));
        }
        let lean = &self.lean;
        if lean.structs + lean.enums + lean.tolerant > 0 {
            s.push_str(&format!(
                "  lean Deserialize: {} structs, {} string enums, {} tolerant enums ({} kept the derive)\n",
                lean.structs, lean.enums, lean.tolerant, lean.kept
            ));
        }
        if self.shared_sends > 0 {
            s.push_str(&format!(
                "  sends through the shared future: {} of {} operations\n",
                self.shared_sends, self.operations_kept
            ));
        }
        if self.shared_setters > 0 {
            s.push_str(&format!(
                "  setters through the shared conversions: {}\n",
                self.shared_setters
            ));
        }
        s
    }
}

/// How the generated clients are shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `client.users_get_users().limit(10).send()`: named optional parameters
    /// that survive an upgrade adding a query parameter. Request bodies are
    /// the schema types themselves (typify's struct builders are removed, see
    /// [`crate::slim`]), and every `send` hands its request to one shared
    /// sending future (see [`crate::sending`]).
    Builder,
    /// [`Style::Builder`] keeping typify's struct builders and `body_map`
    /// (for measuring what they cost).
    BuilderWithStructBuilders,
    /// `client.users_get_users(None, None, Some(10), ..)`.
    Positional,
}

fn settings(style: Style) -> GenerationSettings {
    let mut settings = GenerationSettings::default();
    settings
        .with_interface(match style {
            Style::Builder | Style::BuilderWithStructBuilders => InterfaceStyle::Builder,
            Style::Positional => InterfaceStyle::Positional,
        })
        .with_tag(TagStyle::Merged)
        .with_inner_type(quote!(::safeguard_api::Inner))
        .with_hooks(HooksMode::Expected)
        .with_unknown_crates(progenitor_impl::UnknownPolicy::Allow)
        .with_derive("schemars::JsonSchema");
    settings
}

/// Normalizes `doc` and generates the client for `service`.
pub fn generate(service: &str, mut doc: Value, style: Style) -> Result<Generated, CodegenError> {
    let report = normalize::normalize(&mut doc);
    let operations_kept = normalize::operations(&doc).count();
    let tokens = match run_progenitor(&doc, style) {
        Ok(tokens) => tokens,
        Err(failure) => {
            let culprits = find_failing_operations(&doc, style);
            return Err(CodegenError::Generation {
                service: service.to_owned(),
                message: failure,
                operations: culprits,
            });
        }
    };
    let mut file: syn::File = syn::parse2(tokens).map_err(|e| CodegenError::Generation {
        service: service.to_owned(),
        message: format!("generated code does not parse: {e}"),
        operations: Vec::new(),
    })?;
    let (slim, shared_sends, shared_setters) = match style {
        Style::Builder => (
            slim::strip_struct_builders(&mut file),
            sending::share_sending(&mut file),
            setters::share_setters(&mut file),
        ),
        Style::BuilderWithStructBuilders | Style::Positional => (SlimReport::default(), 0, 0),
    };
    let required_arrays_sent =
        required_arrays::send_required_arrays(&mut file, &report.required_arrays);
    let lean = lean_serde::lean_deserialize(&mut file);
    let (types_items, client_items) = file
        .items
        .drain(..)
        .partition(|item| matches!(item, syn::Item::Mod(m) if m.ident == "types"));
    let types_file = syn::File {
        shebang: None,
        attrs: Vec::new(),
        items: types_items,
    };
    file.items = client_items;
    let mut types = prettyplease::unparse(&types_file);
    types.push_str(&tolerant_enum_impls(&report.tolerant_enum_components));
    Ok(Generated {
        service: service.to_owned(),
        types,
        client: prettyplease::unparse(&file),
        lean,
        required_arrays_sent,
        shared_setters,
        operations_kept,
        report,
        slim,
        shared_sends,
    })
}

/// `Display` for every tolerant component enum (rule 8): progenitor
/// formats path parameters with `to_string()`, and callers want the wire
/// value whether or not this SDK knows it.
fn tolerant_enum_impls(components: &[String]) -> String {
    let mut out = String::from(
        "\n/// Wire values of the tolerant enums.\nmod tolerant_enums {\n    use super::types;\n",
    );
    for name in components {
        let ty = type_name(name);
        out.push_str(&format!(
            r#"
    impl ::std::fmt::Display for types::{ty} {{
        fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {{
            match self {{
                Self::Known(v) => ::std::fmt::Display::fmt(v, f),
                Self::Other(v) => f.write_str(v),
            }}
        }}
    }}
"#
        ));
    }
    out.push_str("}\n");
    out
}

/// The Rust name typify gives a component schema.
pub fn type_name(component: &str) -> String {
    use heck::ToUpperCamelCase;
    component.to_upper_camel_case()
}

/// Runs progenitor, turning both its errors and its panics into a message.
fn run_progenitor(doc: &Value, style: Style) -> Result<proc_macro2::TokenStream, String> {
    let spec: openapiv3::OpenAPI = serde_json::from_value(doc.clone())
        .map_err(|e| format!("not an OpenAPI 3.0 document: {e}"))?;
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        Generator::new(&settings(style)).generate_tokens(&spec)
    }));
    panic::set_hook(previous_hook);
    match result {
        Ok(Ok(tokens)) => Ok(tokens),
        Ok(Err(e)) => Err(format!("progenitor: {e}")),
        Err(payload) => Err(format!("progenitor panicked: {}", panic_message(&payload))),
    }
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned())
}

/// Generates each operation on its own (with all component schemas) to name
/// the ones progenitor fails on.
fn find_failing_operations(doc: &Value, style: Style) -> Vec<String> {
    let mut failing = Vec::new();
    let ops: Vec<(String, String, String)> = normalize::operations(doc)
        .map(|(p, m, op)| {
            (
                p.to_owned(),
                m.to_owned(),
                normalize::operation_name(p, m, op),
            )
        })
        .collect();
    for (path, method, name) in ops {
        let mut single = doc.clone();
        let op = doc["paths"][&path][&method].clone();
        single["paths"] = serde_json::json!({ path.clone(): { method.clone(): op } });
        if let Err(message) = run_progenitor(&single, style) {
            failing.push(format!("{name} ({message})"));
        }
    }
    failing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(paths: Value) -> Value {
        json!({
            "openapi": "3.0.1",
            "info": { "title": "t", "version": "v4" },
            "paths": paths,
            "components": { "schemas": {
                "ApiError": { "type": "object", "properties": {
                    "Code": { "type": "integer" }, "Message": { "type": "string" } } }
            } }
        })
    }

    /// The three shapes that make progenitor panic on the appliance's
    /// documents as shipped; after normalization each generates.
    #[test]
    fn shapes_that_panic_progenitor_generate_after_normalization() {
        let cases = [
            // Several media types on one request body.
            json!({ "/a": { "post": { "operationId": "A_PostAsync",
                "requestBody": { "content": {
                    "application/json": { "schema": { "type": "string" } },
                    "text/json": { "schema": { "type": "string" } } } },
                "responses": { "204": { "description": "ok" } } } } }),
            // A typed 2xx next to an empty 2xx.
            json!({ "/b": { "post": { "operationId": "B_PostAsync",
                "responses": {
                    "200": { "description": "ok", "content": { "application/json": { "schema": { "type": "integer" } } } },
                    "204": { "description": "none" } } } } }),
            // Error responses with and without bodies.
            json!({ "/c": { "get": { "operationId": "C_GetAsync",
                "responses": {
                    "200": { "description": "ok", "content": { "application/json": { "schema": { "type": "integer" } } } },
                    "400": { "description": "bad", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ApiError" } } } },
                    "404": { "description": "missing" } } } } }),
        ];
        for paths in cases {
            let raw = doc(paths.clone());
            assert!(
                run_progenitor(&raw, Style::Builder).is_err(),
                "expected progenitor to fail on the raw shape {paths}"
            );
            let generated = generate("t", raw, Style::Builder).expect("normalized shape generates");
            assert_eq!(generated.operations_kept, 1);
        }
    }

    #[test]
    fn failing_operations_are_named() {
        // An octet-stream body whose schema progenitor refuses, bypassing normalization.
        let raw = doc(json!({
            "/ok": { "get": { "operationId": "Ok_Get", "responses": { "204": { "description": "ok" } } } },
            "/bad": { "post": { "operationId": "Bad_Post",
                "requestBody": { "content": {
                    "application/json": { "schema": { "type": "string" } },
                    "text/json": { "schema": { "type": "string" } } } },
                "responses": { "204": { "description": "ok" } } } }
        }));
        let failing = find_failing_operations(&raw, Style::Builder);
        assert_eq!(failing.len(), 1, "{failing:?}");
        assert!(failing[0].starts_with("Bad_Post"), "{failing:?}");
    }
}
