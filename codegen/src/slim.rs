//! Removes typify's struct builders from progenitor's output.
//!
//! With the builder interface, progenitor asks typify for a `types::builder`
//! module: one builder type per schema struct, each with `Default`, `TryFrom`,
//! `From` and a generic setter per field. Their only use in the generated
//! client is the `body_map` method of operation builders, whose request body
//! is held as a struct builder. On the core document that module is ~100,000
//! of ~274,000 generated lines and the largest share of the crate's type
//! checking, so this pass drops it:
//!
//! - `types::builder` and every `fn builder()` on a schema type go;
//! - operation builders hold their body as the schema type itself
//!   (`Result<types::X, String>`), start it unset (`"body was not
//!   initialized"`, as progenitor does for bodies without a struct builder)
//!   and lose `body_map`; `.body(value)` is unchanged.
//!
//! Callers build request bodies as plain struct literals (every generated
//! struct has public fields), which is also what the positional interface
//! takes.

use syn::visit_mut::{self, VisitMut};
use syn::{parse_quote, Expr, ImplItem, Item, Path};

/// What [`strip_struct_builders`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SlimReport {
    /// Items of the removed `types::builder` module.
    pub builder_items: usize,
    /// `body_map` methods removed from operation builders.
    pub body_maps: usize,
}

/// Removes typify's struct builders from a generated file (see the module docs).
pub fn strip_struct_builders(file: &mut syn::File) -> SlimReport {
    let mut pass = Strip::default();
    pass.visit_file_mut(file);
    pass.report
}

#[derive(Default)]
struct Strip {
    report: SlimReport,
}

/// `types::builder::X` → `types::X`. (Progenitor's own `builder` module of
/// operation builders, `builder::UsersGet`, is not touched.)
fn unbuilder(path: &mut Path) {
    let at = path
        .segments
        .iter()
        .zip(path.segments.iter().skip(1))
        .position(|(a, b)| a.ident == "types" && b.ident == "builder")
        .map(|i| i + 1);
    if let Some(i) = at {
        let segments = std::mem::take(&mut path.segments);
        path.segments = segments
            .into_pairs()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| p)
            .collect();
    }
}

fn is_default_call(expr: &Expr) -> bool {
    let Expr::Call(call) = expr else { return false };
    if !call.args.is_empty() {
        return false;
    }
    let Expr::Path(p) = &*call.func else {
        return false;
    };
    let last: Vec<String> = p
        .path
        .segments
        .iter()
        .rev()
        .take(2)
        .map(|s| s.ident.to_string())
        .collect();
    last == ["default", "Default"]
}

/// `Ok(::std::default::Default::default())`.
fn is_ok_default(expr: &Expr) -> bool {
    let Expr::Call(call) = expr else { return false };
    let Expr::Path(p) = &*call.func else {
        return false;
    };
    p.path.is_ident("Ok") && call.args.len() == 1 && is_default_call(&call.args[0])
}

impl VisitMut for Strip {
    fn visit_item_mod_mut(&mut self, m: &mut syn::ItemMod) {
        if m.ident == "types" {
            if let Some((_, items)) = &mut m.content {
                items.retain(|item| match item {
                    Item::Mod(inner) if inner.ident == "builder" => {
                        self.report.builder_items +=
                            inner.content.as_ref().map_or(0, |(_, i)| i.len());
                        false
                    }
                    _ => true,
                });
            }
        }
        visit_mut::visit_item_mod_mut(self, m);
    }

    fn visit_item_impl_mut(&mut self, imp: &mut syn::ItemImpl) {
        imp.items.retain(|item| match item {
            ImplItem::Fn(f) if f.sig.ident == "builder" && f.sig.inputs.is_empty() => false,
            ImplItem::Fn(f) if f.sig.ident == "body_map" => {
                self.report.body_maps += 1;
                false
            }
            _ => true,
        });
        visit_mut::visit_item_impl_mut(self, imp);
    }

    fn visit_file_mut(&mut self, file: &mut syn::File) {
        visit_mut::visit_file_mut(self, file);
        // Impl blocks left empty by the removal of `fn builder()`.
        drop_empty_impls(&mut file.items);
    }

    fn visit_path_mut(&mut self, path: &mut Path) {
        unbuilder(path);
        visit_mut::visit_path_mut(self, path);
    }

    fn visit_field_value_mut(&mut self, fv: &mut syn::FieldValue) {
        if let syn::Member::Named(name) = &fv.member {
            if name == "body" && is_ok_default(&fv.expr) {
                fv.expr = parse_quote!(Err("body was not initialized".to_string()));
            }
        }
        visit_mut::visit_field_value_mut(self, fv);
    }
}

fn drop_empty_impls(items: &mut Vec<Item>) {
    items.retain(|item| !matches!(item, Item::Impl(i) if i.items.is_empty() && i.trait_.is_none()));
    for item in items {
        if let Item::Mod(m) = item {
            if let Some((_, inner)) = &mut m.content {
                drop_empty_impls(inner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn strip(src: &str) -> (String, SlimReport) {
        let mut file: syn::File = syn::parse_str(src).unwrap();
        let report = strip_struct_builders(&mut file);
        (file.to_token_stream().to_string(), report)
    }

    #[test]
    fn the_builder_module_and_builder_fns_go() {
        let (out, report) = strip(
            r#"
            pub mod types {
                pub struct User { pub name: String }
                impl User { pub fn builder() -> builder::User { Default::default() } }
                impl User { pub fn keep(&self) {} }
                pub mod builder {
                    pub struct User { name: Result<String, String> }
                    impl Default for User { fn default() -> Self { todo!() } }
                }
            }
            "#,
        );
        assert!(!out.contains("mod builder"), "{out}");
        assert!(!out.contains("fn builder"), "{out}");
        assert!(out.contains("fn keep"), "{out}");
        assert_eq!(out.matches("impl User").count(), 1, "{out}");
        assert_eq!(report.builder_items, 2);
    }

    #[test]
    fn operation_builders_hold_the_schema_type_and_start_unset() {
        let (out, report) = strip(
            r#"
            pub mod builder {
                pub struct CreateUser<'a> {
                    client: &'a super::Client,
                    body: Result<types::builder::User, String>,
                    id: Result<i32, String>,
                }
                impl<'a> CreateUser<'a> {
                    pub fn new(client: &'a super::Client) -> Self {
                        Self { client, body: Ok(::std::default::Default::default()), id: Ok(Default::default()) }
                    }
                    pub fn body_map<F>(mut self, f: F) -> Self
                    where F: FnOnce(types::builder::User) -> types::builder::User {
                        self.body = self.body.map(f);
                        self
                    }
                    pub fn body<V: TryInto<types::User>>(mut self, v: V) -> Self { self }
                }
            }
            "#,
        );
        assert!(!out.contains("builder :: User"), "{out}");
        assert!(out.contains("Result < types :: User , String >"), "{out}");
        assert!(
            out.contains(r#"body : Err ("body was not initialized" . to_string ())"#),
            "{out}"
        );
        // Only the body field changes.
        assert!(out.contains("id : Ok (Default :: default ())"), "{out}");
        assert!(!out.contains("body_map"), "{out}");
        assert!(out.contains("pub fn body"), "{out}");
        assert_eq!(report.body_maps, 1);
    }

    #[test]
    fn unrelated_builder_paths_are_left_alone() {
        let (out, _) = strip("fn f() -> reqwest::RequestBuilder { todo!() } fn g() -> builder::UsersGet<'_> { todo!() } use super::builder::Users;",
        );
        assert!(out.contains("reqwest :: RequestBuilder"), "{out}");
        assert!(out.contains("super :: builder :: Users"), "{out}");
        assert!(out.contains("builder :: UsersGet"), "{out}");
    }
}
