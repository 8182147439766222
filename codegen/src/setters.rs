//! Sends the parameter setters of operation builders through two shared
//! generic functions.
//!
//! progenitor writes each of the ~3,400 setters of the core client as
//! `self.x = value.try_into().map(Some).map_err(|_| "conversion .. failed".to_string())`:
//! a closure per setter, each type-checked and borrow-checked on its own.
//! This pass turns them into `::safeguard_api::setting::optional(value, "..")`
//! (or `required` without the `map(Some)`), which do exactly that. The
//! setters keep their signatures; a setter of any other shape (request
//! bodies with a struct builder, a newer progenitor) is left as generated.

use syn::visit_mut::{self, VisitMut};
use syn::{parse_quote, Expr, ExprMethodCall, LitStr};

/// Rewrites every setter of the shape described in the module docs and
/// returns how many it rewrote.
pub fn share_setters(file: &mut syn::File) -> usize {
    let mut pass = Setters { rewritten: 0 };
    pass.visit_file_mut(file);
    pass.rewritten
}

struct Setters {
    rewritten: usize,
}

impl VisitMut for Setters {
    fn visit_expr_assign_mut(&mut self, assign: &mut syn::ExprAssign) {
        if let Some(shared) = shared_call(&assign.right) {
            *assign.right = shared;
            self.rewritten += 1;
        }
        visit_mut::visit_expr_assign_mut(self, assign);
    }
}

/// `value.try_into()[.map(Some)].map_err(|_| "..".to_string())` → the
/// shared call.
fn shared_call(expr: &Expr) -> Option<Expr> {
    let map_err = method(expr, "map_err")?;
    let message = closure_message(map_err.args.first()?)?;
    if map_err.args.len() != 1 {
        return None;
    }
    let (optional, try_into) = match method(&map_err.receiver, "map") {
        Some(map) => {
            let Expr::Path(arg) = map.args.first()? else {
                return None;
            };
            if map.args.len() != 1 || !arg.path.is_ident("Some") {
                return None;
            }
            (true, method(&map.receiver, "try_into")?)
        }
        None => (false, method(&map_err.receiver, "try_into")?),
    };
    if !try_into.args.is_empty() {
        return None;
    }
    let Expr::Path(value) = &*try_into.receiver else {
        return None;
    };
    if !value.path.is_ident("value") {
        return None;
    }
    Some(if optional {
        parse_quote!(::safeguard_api::setting::optional(value, #message))
    } else {
        parse_quote!(::safeguard_api::setting::required(value, #message))
    })
}

fn method<'a>(expr: &'a Expr, name: &str) -> Option<&'a ExprMethodCall> {
    match expr {
        Expr::MethodCall(call) if call.method == name && call.turbofish.is_none() => Some(call),
        _ => None,
    }
}

/// `|_| "..".to_string()` (or with the body in a block) → the literal.
fn closure_message(expr: &Expr) -> Option<&LitStr> {
    let Expr::Closure(closure) = expr else {
        return None;
    };
    if closure.inputs.len() != 1 || !matches!(closure.inputs[0], syn::Pat::Wild(_)) {
        return None;
    }
    let mut body = &*closure.body;
    if let Expr::Block(block) = body {
        match block.block.stmts.as_slice() {
            [syn::Stmt::Expr(inner, None)] => body = inner,
            _ => return None,
        }
    }
    let to_string = method(body, "to_string")?;
    if !to_string.args.is_empty() {
        return None;
    }
    match &*to_string.receiver {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str) -> (String, usize) {
        let mut file: syn::File = syn::parse_str(src).unwrap();
        let n = share_setters(&mut file);
        let flat: String = prettyplease::unparse(&file).split_whitespace().collect();
        (flat, n)
    }

    #[test]
    fn optional_and_required_setters_share_the_functions() {
        let (code, n) = run(r#"
            impl<'a> UsersGet<'a> {
                pub fn limit<V>(mut self, value: V) -> Self where V: std::convert::TryInto<i32> {
                    self.limit = value.try_into().map(Some).map_err(|_| "conversion to `i32` for limit failed".to_string());
                    self
                }
                pub fn id<V>(mut self, value: V) -> Self where V: std::convert::TryInto<i32> {
                    self.id = value
                        .try_into()
                        .map_err(|_| { "conversion to `i32` for id failed".to_string() });
                    self
                }
            }
        "#);
        assert_eq!(n, 2, "{code}");
        let flat = |s: &str| s.split_whitespace().collect::<String>();
        assert!(
            code.contains(&flat(
                r#"self.limit = ::safeguard_api::setting::optional(value, "conversion to `i32` for limit failed","#
            )),
            "{code}"
        );
        assert!(
            code.contains(&flat(
                r#"self.id = ::safeguard_api::setting::required(value, "conversion to `i32` for id failed","#
            )),
            "{code}"
        );
        assert!(!code.contains("map_err"), "{code}");
    }

    #[test]
    fn other_shapes_are_left_alone() {
        let (code, n) = run(r#"
            impl<'a> Post<'a> {
                pub fn body<V>(mut self, value: V) -> Self where V: TryInto<types::User> {
                    self.body = value.try_into().map(From::from).map_err(|s| format!("conversion failed: {s}"));
                    self
                }
                pub fn x<V>(mut self, value: V) -> Self where V: TryInto<i32> {
                    self.x = other.try_into().map_err(|_| "m".to_string());
                    self.y = value.try_into().map_err(|e| e.to_string());
                    self
                }
            }
        "#);
        assert_eq!(n, 0, "{code}");
        assert_eq!(code.matches("map_err").count(), 3);
    }
}
