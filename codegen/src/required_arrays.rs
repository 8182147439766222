//! Sends the arrays a document requires even when they are empty.
//!
//! Rule 9 of [`crate::normalize`] removes every `required` list so that
//! partial (`fields=`) answers decode. typify then gives each non-nullable
//! array property `#[serde(default, skip_serializing_if = "Vec::is_empty")]`,
//! so a request body holding an empty required array (a condition group's
//! `Children`, a discovery job's `ScanRules`) would leave the member out,
//! against the appliance's own document. For the properties rule 9 recorded
//! ([`NormalizeReport::required_arrays`](crate::normalize::NormalizeReport::required_arrays)),
//! this pass removes `skip_serializing_if`: they are always serialized, and
//! `default` stays, so a missing member still decodes as empty (the lean
//! `Deserialize` of [`crate::lean_serde`] reads `default` the same way).

use std::collections::{BTreeSet, HashSet};

use syn::punctuated::Punctuated;
use syn::{Attribute, Fields, Item, Meta, Token};

use crate::generate::type_name;
use crate::lean_serde::{is_option, lit_str};

/// Removes `skip_serializing_if` from the fields of `pub mod types` that
/// `required` names as (schema's type name, JSON property name), and returns
/// how many fields are now always sent. `Option` fields are left alone.
pub fn send_required_arrays(file: &mut syn::File, required: &BTreeSet<(String, String)>) -> usize {
    // typify spells a type name in its own upper camel case; accept both.
    let wanted: HashSet<(String, &str)> = required
        .iter()
        .flat_map(|(ty, prop)| [(ty.clone(), prop.as_str()), (type_name(ty), prop.as_str())])
        .collect();
    let mut sent = 0;
    for item in &mut file.items {
        let Item::Mod(m) = item else { continue };
        if m.ident != "types" {
            continue;
        }
        let Some((_, items)) = &mut m.content else {
            continue;
        };
        for item in items {
            let Item::Struct(s) = item else { continue };
            let ty = s.ident.to_string();
            let Fields::Named(fields) = &mut s.fields else {
                continue;
            };
            for field in &mut fields.named {
                let Some(key) = json_name(field) else {
                    continue;
                };
                if is_option(&field.ty) || !wanted.contains(&(ty.clone(), key.as_str())) {
                    continue;
                }
                remove_skip_serializing_if(&mut field.attrs);
                sent += 1;
            }
        }
    }
    sent
}

/// The field's JSON name: its `#[serde(rename = "..")]`, else its ident.
fn json_name(field: &syn::Field) -> Option<String> {
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let Ok(metas) = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        else {
            continue;
        };
        for meta in metas {
            if let Meta::NameValue(nv) = meta {
                if nv.path.is_ident("rename") {
                    return lit_str(&nv.value).map(|s| s.value());
                }
            }
        }
    }
    field
        .ident
        .as_ref()
        .map(|i| i.to_string().trim_start_matches("r#").to_owned())
}

/// Drops `skip_serializing_if = ".."` from the `#[serde(..)]` attributes,
/// and any attribute left empty.
fn remove_skip_serializing_if(attrs: &mut Vec<Attribute>) {
    attrs.retain_mut(|attr| {
        if !attr.path().is_ident("serde") {
            return true;
        }
        let Ok(metas) = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
        else {
            return true;
        };
        let kept: Vec<Meta> = metas
            .into_iter()
            .filter(
                |m| !matches!(m, Meta::NameValue(nv) if nv.path.is_ident("skip_serializing_if")),
            )
            .collect();
        if kept.is_empty() {
            return false;
        }
        *attr = syn::parse_quote!(#[serde(#(#kept),*)]);
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::{generate, Style};

    fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        list.iter()
            .map(|(t, p)| ((*t).to_owned(), (*p).to_owned()))
            .collect()
    }

    #[test]
    fn only_the_named_non_option_fields_lose_skip_serializing_if() {
        let mut file: syn::File = syn::parse_str(
            r#"
            pub mod types {
                pub struct Group {
                    #[serde(rename = "Children", default, skip_serializing_if = "::std::vec::Vec::is_empty")]
                    pub children: ::std::vec::Vec<i32>,
                    #[serde(rename = "Tags", default, skip_serializing_if = "::std::vec::Vec::is_empty")]
                    pub tags: ::std::vec::Vec<i32>,
                    #[serde(default, skip_serializing_if = "::std::vec::Vec::is_empty")]
                    pub r#type: ::std::vec::Vec<i32>,
                    #[serde(rename = "Maybe", skip_serializing_if = "::std::option::Option::is_none")]
                    pub maybe: ::std::option::Option<::std::vec::Vec<i32>>,
                }
                pub struct Other {
                    #[serde(rename = "Children", default, skip_serializing_if = "::std::vec::Vec::is_empty")]
                    pub children: ::std::vec::Vec<i32>,
                }
            }
            "#,
        )
        .unwrap();
        let required = pairs(&[
            ("Group", "Children"),
            ("Group", "type"),
            ("Group", "Maybe"),
            ("Missing", "Children"),
        ]);
        assert_eq!(send_required_arrays(&mut file, &required), 2);
        let code = prettyplease::unparse(&file);
        let flat: String = code.split_whitespace().collect();
        assert!(
            flat.contains(r#"#[serde(rename="Children",default)]pubchildren"#),
            "{code}"
        );
        assert!(flat.contains("#[serde(default)]pubr#type"), "{code}");
        // Not required, an Option, another type: unchanged.
        assert_eq!(code.matches("Vec::is_empty").count(), 2, "{code}");
        assert_eq!(code.matches("Option::is_none").count(), 1, "{code}");
    }

    /// From a document to the generated code: the required array is sent
    /// when empty, the optional one is not, both still decode as empty when
    /// missing, and the reports count them.
    #[test]
    fn a_documents_required_array_is_sent_when_empty() {
        let doc = json!({
            "openapi": "3.0.1",
            "info": { "title": "t", "version": "v4" },
            "paths": { "/g": { "post": { "operationId": "Groups_PostAsync",
                "requestBody": { "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/Group" } } } },
                "responses": { "204": { "description": "ok" } } } } },
            "components": { "schemas": {
                "Group": {
                    "type": "object",
                    "required": ["Children", "Name", "Notes"],
                    "properties": {
                        "Children": { "type": "array", "items": { "type": "integer" } },
                        "Tags": { "type": "array", "items": { "type": "string" } },
                        "Notes": { "type": "array", "items": { "type": "string" }, "nullable": true },
                        "Name": { "type": "string" }
                    }
                }
            } }
        });
        let generated = generate("t", doc, Style::Builder).unwrap();
        assert_eq!(
            generated.report.required_arrays,
            pairs(&[("Group", "Children")])
        );
        assert!(generated
            .report
            .lines()
            .contains(&"rule 9 required arrays sent even when empty: 1".to_owned()));
        assert_eq!(generated.required_arrays_sent, 1);
        assert!(
            generated
                .summary()
                .contains("required arrays sent even when empty: 1 of 1 fields"),
            "{}",
            generated.summary()
        );
        let flat: String = generated.types.split_whitespace().collect();
        // Children: always serialized, `default` when decoding.
        assert!(
            flat.contains(r#"#[serde(rename="Children",default)]pubchildren:::std::vec::Vec<i64>"#),
            "{}",
            generated.types
        );
        // Tags: not required, still skipped when empty.
        assert!(
            flat.contains(
                r#"#[serde(rename="Tags",default,skip_serializing_if="::std::vec::Vec::is_empty")]"#
            ),
            "{}",
            generated.types
        );
        // The lean Deserialize took the struct and starts both arrays empty
        // instead of reporting them missing.
        assert_eq!(generated.lean.kept, 0);
        assert_eq!(generated.lean.structs, 1);
        assert_eq!(
            flat.matches("::std::vec::Vec<i64>=::std::default::Default::default();")
                .count(),
            1,
            "{}",
            generated.types
        );
        assert!(!flat.contains("missing_field"), "{}", generated.types);
    }
}
