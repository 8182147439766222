//! Replaces serde's derived `Deserialize` on the schema types with smaller
//! impls over shared helpers (`safeguard_api_types::de`).
//!
//! `#[derive(Deserialize)]` expands, per struct, to an identifier enum with
//! its own visitor (three matches over every field name: from a string, from
//! bytes, from an index), a `visit_seq` no JSON object uses, and the
//! `visit_map` that does the work. On the core document that is the largest
//! share of the types crate's type checking and borrow checking. This pass
//! keeps only the work:
//!
//! - a struct with named fields gets one `visit_map`: a local per field,
//!   keys looked up in a sorted name list (by length, then bytes) by the shared `Field` seed (unknown
//!   keys skipped, as before), required fields reported missing by name;
//! - a string enum (unit variants, with a `FromStr` impl) decodes through
//!   `FromStr` (`de::known`);
//! - a tolerant enum (`#[serde(untagged)]`, `Known(K)` / `Other(String)`)
//!   decodes a string once and tries `K::from_str` (`de::tolerant`) instead
//!   of buffering the value and trying each variant.
//!
//! `Serialize` stays derived (the `#[serde(..)]` attributes stay for it). A
//! type of any other shape, or with a serde attribute this pass does not
//! know, keeps its derive.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::punctuated::Punctuated;
use syn::{Attribute, Fields, Item, LitStr, Meta, Token, Type};

/// What [`lean_deserialize`] rewrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeanReport {
    /// Structs decoded by a generated `visit_map`.
    pub structs: usize,
    /// String enums decoded through `FromStr`.
    pub enums: usize,
    /// Tolerant enums decoded through `de::tolerant`.
    pub tolerant: usize,
    /// Types that derive `Deserialize` and kept the derive.
    pub kept: usize,
}

/// Rewrites the `Deserialize` of the types in `pub mod types` (see the
/// module docs).
pub fn lean_deserialize(file: &mut syn::File) -> LeanReport {
    let mut report = LeanReport::default();
    for item in &mut file.items {
        if let Item::Mod(m) = item {
            if m.ident == "types" {
                if let Some((_, items)) = &mut m.content {
                    rewrite_module(items, &mut report);
                }
            }
        }
    }
    report
}

fn rewrite_module(items: &mut Vec<Item>, report: &mut LeanReport) {
    let from_str: HashSet<String> = items
        .iter()
        .filter_map(|item| match item {
            Item::Impl(imp) => {
                let (_, trait_path, _) = imp.trait_.as_ref()?;
                let last = trait_path.segments.last()?;
                if last.ident != "FromStr" {
                    return None;
                }
                match &*imp.self_ty {
                    Type::Path(p) => p.path.get_ident().map(|i| i.to_string()),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    let mut impls = Vec::new();
    for item in items.iter_mut() {
        let (lean, attrs) = match item {
            Item::Struct(s) if derives_deserialize(&s.attrs) => (
                struct_impl(s).map(|code| (code, Kind::Struct)),
                &mut s.attrs,
            ),
            Item::Enum(e) if derives_deserialize(&e.attrs) => {
                (enum_impl(e, &from_str), &mut e.attrs)
            }
            _ => continue,
        };
        let Some((code, kind)) = lean else {
            report.kept += 1;
            continue;
        };
        remove_deserialize_derive(attrs);
        impls.push(syn::parse2::<Item>(code).expect("generated impl parses"));
        match kind {
            Kind::Struct => report.structs += 1,
            Kind::Enum => report.enums += 1,
            Kind::Tolerant => report.tolerant += 1,
        }
    }
    items.extend(impls);
}

enum Kind {
    Struct,
    Enum,
    Tolerant,
}

fn is_deserialize(path: &syn::Path) -> bool {
    path.segments
        .last()
        .is_some_and(|s| s.ident == "Deserialize")
}

fn derive_lists(
    attrs: &[Attribute],
) -> impl Iterator<Item = Punctuated<syn::Path, Token![,]>> + '_ {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("derive"))
        .filter_map(|a| {
            a.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)
                .ok()
        })
}

fn derives_deserialize(attrs: &[Attribute]) -> bool {
    derive_lists(attrs).any(|list| list.iter().any(is_deserialize))
}

fn remove_deserialize_derive(attrs: &mut [Attribute]) {
    for attr in attrs.iter_mut().filter(|a| a.path().is_ident("derive")) {
        let Ok(list) = attr.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)
        else {
            continue;
        };
        if list.iter().any(is_deserialize) {
            let kept = list.into_iter().filter(|p| !is_deserialize(p));
            *attr = syn::parse_quote!(#[derive(#(#kept),*)]);
        }
    }
}

/// The `#[serde(..)]` settings of a field this pass understands.
#[derive(Default)]
struct FieldSerde {
    rename: Option<String>,
    default: Option<Option<syn::Path>>,
}

/// `None` when an attribute holds a setting this pass does not know.
fn field_serde(attrs: &[Attribute]) -> Option<FieldSerde> {
    let mut out = FieldSerde::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let metas = attr
            .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
            .ok()?;
        for meta in metas {
            match &meta {
                Meta::NameValue(nv) if nv.path.is_ident("rename") => {
                    out.rename = Some(lit_str(&nv.value)?.value());
                }
                Meta::NameValue(nv) if nv.path.is_ident("default") => {
                    out.default = Some(Some(lit_str(&nv.value)?.parse().ok()?));
                }
                Meta::NameValue(nv) if nv.path.is_ident("skip_serializing_if") => {}
                Meta::Path(p) if p.is_ident("default") => out.default = Some(None),
                _ => return None,
            }
        }
    }
    Some(out)
}

pub(crate) fn lit_str(expr: &syn::Expr) -> Option<&LitStr> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

fn has_serde_attr(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("serde"))
}

pub(crate) fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

fn struct_impl(s: &syn::ItemStruct) -> Option<TokenStream> {
    if !s.generics.params.is_empty() || has_serde_attr(&s.attrs) {
        return None;
    }
    let Fields::Named(named) = &s.fields else {
        return None;
    };
    let name = &s.ident;
    // (wire key, field position, required)
    let mut keys: Vec<(String, usize, bool)> = Vec::new();
    let mut locals = Vec::new();
    let mut inits = Vec::new();
    for (i, field) in named.named.iter().enumerate() {
        let ident = field.ident.as_ref()?;
        let serde = field_serde(&field.attrs)?;
        let key = serde
            .rename
            .unwrap_or_else(|| ident.to_string().trim_start_matches("r#").to_owned());
        let local = format_ident!("__f{}", i);
        let ty = &field.ty;
        let required = serde.default.is_none() && !is_option(ty);
        locals.push(match &serde.default {
            _ if required => {
                quote!(let mut #local: ::std::option::Option<#ty> = ::std::option::Option::None;)
            }
            Some(Some(path)) => quote!(let mut #local: #ty = #path();),
            _ => quote!(let mut #local: #ty = ::std::default::Default::default();),
        });
        inits.push(if required {
            quote!(#ident: #local.ok_or_else(|| <__A::Error as ::serde::de::Error>::missing_field(#key))?)
        } else {
            quote!(#ident: #local)
        });
        keys.push((key, i, required));
    }
    // Looked up by binary search in the order `de::Field::order` defines:
    // by length, then by bytes.
    keys.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
    if keys.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let names = keys.iter().map(|(k, _, _)| k);
    let arms = keys.iter().enumerate().map(|(at, (_, i, required))| {
        let local = format_ident!("__f{}", i);
        let at = proc_macro2::Literal::usize_unsuffixed(at);
        if *required {
            quote!(#at => #local = ::std::option::Option::Some(__map.next_value()?),)
        } else {
            quote!(#at => #local = __map.next_value()?,)
        }
    });
    let expecting = format!("a {name} object");
    Some(quote! {
        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<__D: ::serde::Deserializer<'de>>(
                __deserializer: __D,
            ) -> ::std::result::Result<Self, __D::Error> {
                struct __Visitor;
                impl<'de> ::serde::de::Visitor<'de> for __Visitor {
                    type Value = #name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(#expecting)
                    }
                    fn visit_map<__A: ::serde::de::MapAccess<'de>>(
                        self,
                        mut __map: __A,
                    ) -> ::std::result::Result<#name, __A::Error> {
                        #(#locals)*
                        while let ::std::option::Option::Some(__key) = __map
                            .next_key_seed(::safeguard_api_types::de::Field(&[#(#names),*]))?
                        {
                            match __key {
                                #(#arms)*
                                _ => {
                                    __map.next_value::<::serde::de::IgnoredAny>()?;
                                }
                            }
                        }
                        ::std::result::Result::Ok(#name { #(#inits),* })
                    }
                }
                __deserializer.deserialize_map(__Visitor)
            }
        }
    })
}

fn enum_impl(e: &syn::ItemEnum, from_str: &HashSet<String>) -> Option<(TokenStream, Kind)> {
    if !e.generics.params.is_empty() {
        return None;
    }
    let name = &e.ident;
    let untagged = e.attrs.iter().any(|a| {
        a.path().is_ident("serde")
            && a.parse_args::<syn::Path>()
                .is_ok_and(|p| p.is_ident("untagged"))
    });
    let serde_attrs = e
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("serde"))
        .count();
    if untagged && serde_attrs == 1 {
        // `Known(K)` then `Other(String)`.
        let variants: Vec<_> = e.variants.iter().collect();
        let [known, other] = variants.as_slice() else {
            return None;
        };
        if known.ident != "Known" || other.ident != "Other" || has_serde_attr(&known.attrs) {
            return None;
        }
        let (Fields::Unnamed(k), Fields::Unnamed(o)) = (&known.fields, &other.fields) else {
            return None;
        };
        if k.unnamed.len() != 1 || o.unnamed.len() != 1 {
            return None;
        }
        let known_ty = &k.unnamed[0].ty;
        let Type::Path(kp) = known_ty else {
            return None;
        };
        if !kp
            .path
            .get_ident()
            .is_some_and(|i| from_str.contains(&i.to_string()))
        {
            return None;
        }
        let other_ty = &o.unnamed[0].ty;
        let Type::Path(op) = other_ty else {
            return None;
        };
        if op.path.segments.last().is_none_or(|s| s.ident != "String") {
            return None;
        }
        let code = quote! {
            impl<'de> ::serde::Deserialize<'de> for #name {
                fn deserialize<__D: ::serde::Deserializer<'de>>(
                    __deserializer: __D,
                ) -> ::std::result::Result<Self, __D::Error> {
                    ::safeguard_api_types::de::tolerant(__deserializer, Self::Known, Self::Other)
                }
            }
        };
        return Some((code, Kind::Tolerant));
    }
    // A string enum: unit variants (renamed or not), decoded by its FromStr,
    // which typify writes with the same wire names.
    if serde_attrs != 0
        || !from_str.contains(&name.to_string())
        || e.variants.iter().any(|v| !matches!(v.fields, Fields::Unit))
    {
        return None;
    }
    for v in &e.variants {
        field_serde(&v.attrs)?;
    }
    let label = name.to_string();
    let code = quote! {
        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<__D: ::serde::Deserializer<'de>>(
                __deserializer: __D,
            ) -> ::std::result::Result<Self, __D::Error> {
                ::safeguard_api_types::de::known(__deserializer, #label)
            }
        }
    };
    Some((code, Kind::Enum))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str) -> (String, LeanReport) {
        let mut file: syn::File = syn::parse_str(src).unwrap();
        let report = lean_deserialize(&mut file);
        (prettyplease::unparse(&file), report)
    }

    /// Shaped like typify's output: every field setting the schema types
    /// carry, a string enum with its `FromStr`, and a tolerant enum.
    const TYPES: &str = r#"
        pub mod types {
            #[derive(::serde::Deserialize, ::serde::Serialize, Clone, Debug, schemars::JsonSchema)]
            pub struct User {
                #[serde(rename = "Name", skip_serializing_if = "::std::option::Option::is_none")]
                pub name: ::std::option::Option<::std::string::String>,
                #[serde(rename = "Disabled", default)]
                pub disabled: bool,
                #[serde(rename = "Visible", default = "defaults::default_bool::<true>")]
                pub visible: bool,
                pub r#type: ::std::string::String,
                #[serde(rename = "Kind", skip_serializing_if = "::std::option::Option::is_none")]
                pub kind: ::std::option::Option<UserKind>,
            }
            #[derive(::serde::Deserialize, ::serde::Serialize, Clone, Debug, schemars::JsonSchema)]
            #[serde(untagged)]
            pub enum UserKind {
                Known(UserKindKnown),
                Other(::std::string::String),
            }
            #[derive(::serde::Deserialize, ::serde::Serialize, Clone, Copy, Debug, schemars::JsonSchema)]
            pub enum UserKindKnown {
                #[serde(rename = "local")]
                Local,
                Directory,
            }
            impl ::std::str::FromStr for UserKindKnown {
                type Err = self::error::ConversionError;
                fn from_str(value: &str) -> ::std::result::Result<Self, Self::Err> {
                    match value {
                        "local" => Ok(Self::Local),
                        "Directory" => Ok(Self::Directory),
                        _ => Err("invalid value".into()),
                    }
                }
            }
        }
        pub struct Client;
    "#;

    #[test]
    fn every_type_loses_the_derive_and_gains_an_impl() {
        let (code, report) = run(TYPES);
        assert_eq!(
            report,
            LeanReport {
                structs: 1,
                enums: 1,
                tolerant: 1,
                kept: 0
            }
        );
        assert!(!code.contains("::serde::Deserialize,"), "{code}");
        assert_eq!(code.matches("::serde::Serialize").count(), 3, "{code}");
        assert_eq!(
            code.matches("impl<'de> ::serde::Deserialize<'de> for")
                .count(),
            3
        );
        // Serialize still needs the attributes.
        assert!(code.contains("#[serde(untagged)]"));
        assert!(code.contains(r#"#[serde(rename = "local")]"#));
    }

    #[test]
    fn struct_fields_are_keyed_by_sorted_wire_name() {
        let (code, _) = run(TYPES);
        let flat: String = code.split_whitespace().collect();
        // Sorted by length, then bytes (as `de::Field::order` searches).
        assert!(
            flat.contains(r#"Field(&["Kind","Name","type","Visible","Disabled"]"#),
            "{code}"
        );
        // Position in that list -> the field's local.
        assert!(flat.contains("4=>__f1=__map.next_value()?"), "{code}");
        assert!(flat.contains("1=>__f0=__map.next_value()?"), "{code}");
        // Defaults: the field type's, or the named function's.
        assert!(flat.contains("letmut__f1:bool=::std::default::Default::default();"));
        assert!(flat.contains("letmut__f2:bool=defaults::default_bool::<true>();"));
        // A field that is neither optional nor defaulted is required, by name.
        assert!(
            flat.contains("2=>__f3=::std::option::Option::Some(__map.next_value()?),"),
            "{code}"
        );
        assert!(flat.contains(r#"missing_field("type",)"#), "{code}");
    }

    #[test]
    fn enums_go_through_the_shared_helpers() {
        let (code, _) = run(TYPES);
        let flat: String = code.split_whitespace().collect();
        assert!(flat.contains(
            "::safeguard_api_types::de::tolerant(__deserializer,Self::Known,Self::Other)"
        ));
        assert!(
            flat.contains(r#"::safeguard_api_types::de::known(__deserializer,"UserKindKnown")"#)
        );
    }

    #[test]
    fn unknown_shapes_keep_the_derive() {
        let src = r#"
            pub mod types {
                #[derive(::serde::Deserialize, Debug)]
                #[serde(deny_unknown_fields)]
                pub struct Strict { pub a: i32 }
                #[derive(::serde::Deserialize, Debug)]
                pub struct Flat {
                    #[serde(flatten)]
                    pub rest: ::std::collections::HashMap<String, String>,
                }
                #[derive(::serde::Deserialize, Debug)]
                pub struct Newtype(pub String);
                #[derive(::serde::Deserialize, Debug)]
                pub enum NoFromStr { A, B }
                #[derive(::serde::Deserialize, Debug)]
                #[serde(untagged)]
                pub enum Union { Number(i64), Text(String) }
                #[derive(::serde::Serialize, Debug)]
                pub struct WriteOnly { pub a: i32 }
            }
        "#;
        let (code, report) = run(src);
        assert_eq!(report.kept, 5, "{code}");
        assert_eq!(report.structs + report.enums + report.tolerant, 0);
        assert_eq!(code.matches("::serde::Deserialize").count(), 5);
        assert!(!code.contains("impl<'de>"));
    }

    #[test]
    fn code_outside_the_types_module_is_untouched() {
        let src = r#"
            #[derive(::serde::Deserialize)]
            pub struct Outside { pub a: Option<i32> }
        "#;
        let (code, report) = run(src);
        assert_eq!(report, LeanReport::default());
        assert!(code.contains("::serde::Deserialize"));
    }
}
