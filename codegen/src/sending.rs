//! Moves the sending half of every operation into one shared, generic future.
//!
//! progenitor gives each operation builder an `async fn send(self)` that
//! validates the parameters, builds the request, runs the client hooks,
//! sends it and matches the status. Every one of the ~1,000 bodies is its
//! own state machine, which rustc type-checks, borrow-checks and compiles
//! separately: on the core document they were about a third of the
//! generated crate's compile time.
//!
//! This pass keeps the first half as it is (parameter checks and request
//! building, now synchronous, inside a closure) and hands the request to one
//! of three generic functions of `safeguard_api::sending`: `json` (decode
//! the answer as `T`), `empty` or `stream`, with the statuses that count as
//! success. Callers see the same `send(self)`, whose future's error is
//! `safeguard_api::CallError`: progenitor's error in the same order
//! (invalid parameters, an unexpected status, an undecodable body) as
//! `CallError::Call`, plus what progenitor has no variant for: an answer
//! refused by the limits (`Limit`) and the executor's own failure (`Exec`),
//! which no longer has to travel as a made-up answer.
//!
//! The request half loses one allocation on the way: progenitor collects the
//! `api-version` header (static name, static value) in a `HeaderMap` of its
//! own and merges it into the request; it is now set on the request builder
//! directly (the same header, the same value). A header map holding anything
//! else is left as generated.
//!
//! A `send` whose body is not of the shape described (a newer progenitor,
//! hooks that do more) is left as generated.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::visit_mut::{self, VisitMut};
use syn::{parse_quote, Expr, GenericParam, ImplItem, Lifetime, Pat, ReturnType, Stmt};

/// Rewrites every `send` of the shape described in the module docs and
/// returns how many it rewrote.
pub fn share_sending(file: &mut syn::File) -> usize {
    let mut pass = Share { rewritten: 0 };
    pass.visit_file_mut(file);
    pass.rewritten
}

struct Share {
    rewritten: usize,
}

impl VisitMut for Share {
    fn visit_item_impl_mut(&mut self, imp: &mut syn::ItemImpl) {
        let lifetime = imp.generics.params.iter().find_map(|p| match p {
            GenericParam::Lifetime(l) => Some(l.lifetime.clone()),
            _ => None,
        });
        if let (Some(lifetime), None) = (lifetime, &imp.trait_) {
            for item in &mut imp.items {
                if let ImplItem::Fn(f) = item {
                    if let Some(rewritten) = rewrite_send(f, &lifetime) {
                        *f = rewritten;
                        self.rewritten += 1;
                    }
                }
            }
        }
        visit_mut::visit_item_impl_mut(self, imp);
    }
}

/// How a successful answer is turned into a `ResponseValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Json,
    Empty,
    Stream,
}

impl Answer {
    fn of(arm_body: &Expr) -> Option<Self> {
        let text = unblock(arm_body).to_token_stream().to_string();
        match text.as_str() {
            "ResponseValue :: from_response (response) . await" => Some(Self::Json),
            "Ok (ResponseValue :: empty (response))" => Some(Self::Empty),
            "Ok (ResponseValue :: stream (response))" => Some(Self::Stream),
            _ => None,
        }
    }

    fn function(self) -> TokenStream {
        match self {
            Self::Json => quote!(::safeguard_api::sending::json),
            Self::Empty => quote!(::safeguard_api::sending::empty),
            Self::Stream => quote!(::safeguard_api::sending::stream),
        }
    }
}

/// The generated tail, from `let info = OperationInfo { .. };` on, as text
/// with the operation id left out: hooks, send, status match.
const TAIL: [&str; 5] = [
    "let info = OperationInfo {",
    "client . pre (& mut request , & info) . await ? ;",
    "let result = client . exec (request , & info) . await ;",
    "client . post (& result , & info) . await ? ;",
    "let response = result ? ;",
];

fn rewrite_send(f: &syn::ImplItemFn, lifetime: &Lifetime) -> Option<syn::ImplItemFn> {
    let sig = &f.sig;
    if sig.ident != "send" || sig.asyncness.is_none() || sig.inputs.len() != 1 {
        return None;
    }
    let syn::FnArg::Receiver(receiver) = &sig.inputs[0] else {
        return None;
    };
    if receiver.reference.is_some() {
        return None;
    }
    let ReturnType::Type(_, output) = &sig.output else {
        return None;
    };
    let output = call_error_output(output)?;
    let stmts = &f.block.stmts;
    let tail_at = stmts.len().checked_sub(TAIL.len() + 1)?;
    let (prefix, tail) = stmts.split_at(tail_at);
    if !prefix.last().is_some_and(|s| binds(s, "request")) {
        return None;
    }
    for (stmt, expected) in tail.iter().zip(TAIL) {
        if !stmt.to_token_stream().to_string().starts_with(expected) {
            return None;
        }
    }
    let (answer, statuses) = status_match(tail.last()?)?;
    let inlined = inline_static_headers(prefix);
    let prefix = inlined.as_deref().unwrap_or(prefix);
    let function = answer.function();
    let attrs = &f.attrs;
    let vis = &f.vis;
    let block = quote! {{
        let client = self.client;
        let request = (move || -> ::std::result::Result<::reqwest::Request, Error<_>> {
            #(#prefix)*
            Ok(request)
        })();
        #function(&client.inner, request, &[#(#statuses),*])
    }};
    Some(parse_quote! {
        #(#attrs)*
        #vis fn send(self) -> impl ::std::future::Future<Output = #output> + #lifetime #block
    })
}

/// `Result<T, Error<E>>` as the shared sending returns it:
/// `Result<T, ::safeguard_api::CallError<E>>`, whose `Exec` variant carries
/// the executor's own failure (progenitor's error has no variant for it).
fn call_error_output(output: &syn::Type) -> Option<syn::Type> {
    let (ok, err) = match &last_segment(output)?.arguments {
        syn::PathArguments::AngleBracketed(a) if a.args.len() == 2 => (&a.args[0], &a.args[1]),
        _ => return None,
    };
    let syn::GenericArgument::Type(err) = err else {
        return None;
    };
    let segment = last_segment(err)?;
    let syn::PathArguments::AngleBracketed(e) = &segment.arguments else {
        return None;
    };
    if segment.ident != "Error" || last_segment(output)?.ident != "Result" {
        return None;
    }
    let e = &e.args;
    Some(parse_quote!(Result<#ok, ::safeguard_api::CallError<#e>>))
}

/// The last segment of a path type.
fn last_segment(ty: &syn::Type) -> Option<&syn::PathSegment> {
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

/// `prefix` with its `header_map` replaced by `.header(name, value)` calls
/// on the request builder, when the map is made empty, only ever receives
/// `append(HeaderName::from_static(..), HeaderValue::from_static(..))` and
/// is handed to the builder once as `.headers(header_map)`; `None` (keep the
/// prefix as it is) otherwise.
fn inline_static_headers(prefix: &[Stmt]) -> Option<Vec<Stmt>> {
    let made = prefix.iter().position(|s| {
        binds(s, "header_map")
            && s.to_token_stream().to_string().starts_with(
                "let mut header_map = :: reqwest :: header :: HeaderMap :: with_capacity (",
            )
    })?;
    let mut headers = Vec::new();
    let mut rest = Vec::new();
    for stmt in &prefix[made + 1..] {
        match static_append(stmt) {
            Some(pair) => headers.push(pair),
            None => rest.push(stmt.clone()),
        }
    }
    let mut pass = UseHeaders {
        headers,
        replaced: 0,
    };
    for stmt in &mut rest {
        pass.visit_stmt_mut(stmt);
    }
    let mentioned = rest
        .iter()
        .any(|s| s.to_token_stream().to_string().contains("header_map"));
    if pass.headers.is_empty() || pass.replaced != 1 || mentioned {
        return None;
    }
    Some(prefix[..made].iter().cloned().chain(rest).collect())
}

/// `header_map.append(<static name>, <static value>);`: the two arguments.
fn static_append(stmt: &Stmt) -> Option<(Expr, Expr)> {
    let Stmt::Expr(Expr::MethodCall(call), Some(_)) = stmt else {
        return None;
    };
    let is_static = |e: &Expr, of: &str| {
        let text = e.to_token_stream().to_string();
        text.starts_with(&format!(":: reqwest :: header :: {of} :: from_static ("))
            && !text.contains("header_map")
    };
    let [name, value] = [call.args.first()?, call.args.last()?];
    (call.method == "append"
        && call.args.len() == 2
        && call.receiver.to_token_stream().to_string() == "header_map"
        && is_static(name, "HeaderName")
        && is_static(value, "HeaderValue"))
    .then(|| (name.clone(), value.clone()))
}

/// Replaces `<builder>.headers(header_map)` with `<builder>.header(n, v)...`.
struct UseHeaders {
    headers: Vec<(Expr, Expr)>,
    replaced: usize,
}

impl VisitMut for UseHeaders {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        visit_mut::visit_expr_mut(self, expr);
        let Expr::MethodCall(call) = expr else {
            return;
        };
        if call.method != "headers"
            || call.args.len() != 1
            || call.args[0].to_token_stream().to_string() != "header_map"
        {
            return;
        }
        let mut builder = (*call.receiver).clone();
        for (name, value) in &self.headers {
            builder = parse_quote!(#builder.header(#name, #value));
        }
        *expr = builder;
        self.replaced += 1;
    }
}

/// The expression inside `{ expr }` (progenitor writes some arm bodies as
/// blocks).
fn unblock(expr: &Expr) -> &Expr {
    match expr {
        Expr::Block(b) if b.label.is_none() && b.attrs.is_empty() => match b.block.stmts.as_slice()
        {
            [Stmt::Expr(inner, None)] => unblock(inner),
            _ => expr,
        },
        _ => expr,
    }
}

/// `let <name> = ..;` or `let mut <name> = ..;`.
fn binds(stmt: &Stmt, name: &str) -> bool {
    let Stmt::Local(local) = stmt else {
        return false;
    };
    matches!(&local.pat, Pat::Ident(p) if p.ident == name)
}

/// `match response.status().as_u16() { 200u16 => .., _ => Err(Error::UnexpectedResponse(response)) }`
/// with every success arm of one kind: that kind and its statuses.
fn status_match(stmt: &Stmt) -> Option<(Answer, Vec<syn::LitInt>)> {
    let Stmt::Expr(Expr::Match(m), None) = stmt else {
        return None;
    };
    if m.expr.to_token_stream().to_string() != "response . status () . as_u16 ()" {
        return None;
    }
    let (last, arms) = m.arms.split_last()?;
    if !matches!(last.pat, Pat::Wild(_))
        || last.guard.is_some()
        || unblock(&last.body).to_token_stream().to_string()
            != "Err (Error :: UnexpectedResponse (response))"
    {
        return None;
    }
    let mut kind = None;
    let mut statuses = Vec::new();
    for arm in arms {
        let Pat::Lit(lit) = &arm.pat else { return None };
        let syn::Lit::Int(status) = &lit.lit else {
            return None;
        };
        let answer = Answer::of(&arm.body)?;
        if arm.guard.is_some() || kind.is_some_and(|k| k != answer) {
            return None;
        }
        kind = Some(answer);
        statuses.push(status.clone());
    }
    Some((kind?, statuses))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation builder as progenitor 0.15 generates it, with `answers`
    /// as the arms of its status match.
    fn operation(answers: &str) -> String {
        format!(
            r#"
            pub mod builder {{
                impl<'a> UsersGet<'a> {{
                    pub fn limit<V: TryInto<i32>>(mut self, value: V) -> Self {{ self }}
                    ///Sends a `GET` request to `/v4/Users`
                    pub async fn send(self) -> Result<ResponseValue<Vec<types::User>>, Error<()>> {{
                        let Self {{ client, limit }} = self;
                        let limit = limit.map_err(Error::InvalidRequest)?;
                        let url = format!("{{}}/v4/Users", client.baseurl,);
                        let mut header_map = ::reqwest::header::HeaderMap::with_capacity(1usize);
                        header_map.append(
                            ::reqwest::header::HeaderName::from_static("api-version"),
                            ::reqwest::header::HeaderValue::from_static(super::Client::api_version()),
                        );
                        #[allow(unused_mut)]
                        let mut request = client.client.get(url).query(&progenitor_client::QueryParam::new("limit", &limit)).headers(header_map).build()?;
                        let info = OperationInfo {{ operation_id: "users_get" }};
                        client.pre(&mut request, &info).await?;
                        let result = client.exec(request, &info).await;
                        client.post(&result, &info).await?;
                        let response = result?;
                        match response.status().as_u16() {{
                            {answers}
                            _ => Err(Error::UnexpectedResponse(response)),
                        }}
                    }}
                }}
            }}
            "#
        )
    }

    fn share(src: &str) -> (String, usize) {
        let mut file: syn::File = syn::parse_str(src).unwrap();
        let n = share_sending(&mut file);
        (file.to_token_stream().to_string(), n)
    }

    #[test]
    fn a_json_send_becomes_a_request_closure_and_the_shared_future() {
        // progenitor writes this arm as a block.
        let (out, n) = share(&operation(
            "200u16 => { ResponseValue::from_response(response).await }",
        ));
        assert_eq!(n, 1);
        assert!(!out.contains("async fn send"), "{out}");
        assert!(
            out.contains("fn send (self) -> impl :: std :: future :: Future < Output = Result < ResponseValue < Vec < types :: User > > , :: safeguard_api :: CallError < () > > > + 'a"),
            "{out}"
        );
        assert!(
            out.contains(
                ":: safeguard_api :: sending :: json (& client . inner , request , & [200u16])"
            ),
            "{out}"
        );
        // The request half is kept whole, the hooks and the match are gone.
        assert!(
            out.contains("let limit = limit . map_err (Error :: InvalidRequest) ?"),
            "{out}"
        );
        assert!(out.contains("Ok (request)"), "{out}");
        // The api-version header goes on the builder, without a map of its own.
        assert!(!out.contains("header_map"), "{out}");
        assert!(
            out.contains(". query (& progenitor_client :: QueryParam :: new (\"limit\" , & limit)) . header (:: reqwest :: header :: HeaderName :: from_static (\"api-version\") , :: reqwest :: header :: HeaderValue :: from_static (super :: Client :: api_version ())) . build () ?"),
            "{out}"
        );
        assert!(!out.contains("OperationInfo"), "{out}");
        assert!(!out.contains("UnexpectedResponse"), "{out}");
        // Doc comment and setter untouched.
        assert!(out.contains("Sends a `GET` request"), "{out}");
        assert!(out.contains("pub fn limit"), "{out}");
    }

    #[test]
    fn every_success_status_is_kept_with_its_kind() {
        let (out, _) = share(&operation(
            "200u16 => Ok(ResponseValue::empty(response)), 204u16 => Ok(ResponseValue::empty(response)),",
        ));
        assert!(
            out.contains("sending :: empty (& client . inner , request , & [200u16 , 204u16])"),
            "{out}"
        );
        let (out, _) = share(&operation("201u16 => Ok(ResponseValue::stream(response)),"));
        assert!(
            out.contains("sending :: stream (& client . inner , request , & [201u16])"),
            "{out}"
        );
    }

    #[test]
    fn a_header_map_with_a_value_that_is_not_static_is_kept() {
        let json = "200u16 => ResponseValue::from_response(response).await,";
        let dynamic = operation(json).replace(
            "HeaderValue::from_static(super::Client::api_version())",
            "HeaderValue::try_from(limit.to_string())?",
        );
        let used_twice = operation(json).replace(
            ".headers(header_map).build()?;",
            ".headers(header_map.clone()).headers(header_map).build()?;",
        );
        for src in [dynamic, used_twice] {
            let (out, n) = share(&src);
            assert_eq!(n, 1, "the send is still shared: {out}");
            assert!(
                out.contains("let mut header_map = :: reqwest :: header :: HeaderMap :: with_capacity (1usize)"),
                "{out}"
            );
            assert!(out.contains(". headers (header_map) . build () ?"), "{out}");
        }
    }

    #[test]
    fn shapes_it_does_not_know_are_left_as_generated() {
        // Success arms of two kinds.
        let mixed = operation(
            "200u16 => ResponseValue::from_response(response).await, 204u16 => Ok(ResponseValue::empty(response)),",
        );
        // A typed error arm.
        let typed_error = operation(
            "200u16 => ResponseValue::from_response(response).await, 404u16 => Err(Error::ErrorResponse(ResponseValue::from_response(response).await?)),",
        );
        // Extra work between sending and matching.
        let extra = operation("200u16 => ResponseValue::from_response(response).await,").replace(
            "let response = result?;",
            "let response = result?; log(&response);",
        );
        for src in [mixed, typed_error, extra] {
            let (out, n) = share(&src);
            assert_eq!(n, 0, "{out}");
            assert!(out.contains("async fn send"), "{out}");
        }
        // Not an operation builder's send.
        let (_, n) = share("impl Client { pub async fn send(&self) -> Result<(), ()> { Ok(()) } }");
        assert_eq!(n, 0);
    }
}
