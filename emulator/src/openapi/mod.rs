//! The appliance's OpenAPI documents, embedded at build time (see `build.rs`),
//! and the route table derived from them: every documented operation of the
//! core, appliance, notification and a2a services, matched case-insensitively
//! like the appliance.

use std::sync::OnceLock;

use http::Method;
use serde_json::Value;

mod synth;

/// The services the documents describe, as they appear in `/service/{name}/`.
pub(crate) const SERVICES: [&str; 4] = ["core", "appliance", "notification", "a2a"];

const RAW: [&[u8]; 4] = [
    include_bytes!(concat!(env!("OUT_DIR"), "/core.json")),
    include_bytes!(concat!(env!("OUT_DIR"), "/appliance.json")),
    include_bytes!(concat!(env!("OUT_DIR"), "/notification.json")),
    include_bytes!(concat!(env!("OUT_DIR"), "/a2a.json")),
];

/// The embedded document of `service`, as served (`swagger/v4/swagger.json`).
pub(crate) fn raw_document(service: &str) -> Option<&'static [u8]> {
    SERVICES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(service))
        .map(|i| RAW[i])
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A literal, lower case.
    Literal(String),
    /// A `{name}` parameter.
    Param(String),
}

/// One documented operation.
#[derive(Debug)]
pub(crate) struct Operation {
    /// The HTTP method.
    pub method: Method,
    /// The document's `operationId`.
    pub id: String,
}

/// One documented path and its operations.
#[derive(Debug)]
pub(crate) struct Route {
    /// The path as the document names it, without the version (`Users/{id}`).
    pub template: String,
    /// The key of the path item in the document (`/v4/Users/{id}`).
    pub key: String,
    /// The template's segments.
    pub segments: Vec<Segment>,
    /// The operations on this path.
    pub operations: Vec<Operation>,
}

impl Route {
    /// How many segments are literals (a literal beats a parameter, as in
    /// ASP.NET routing: `Users/Me` wins over `Users/{id}`).
    fn literals(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    /// The operation for `method`.
    pub(crate) fn operation(&self, method: &Method) -> Option<&Operation> {
        self.operations.iter().find(|o| o.method == method)
    }
}

/// One service's document and routes.
#[derive(Debug)]
pub(crate) struct ServiceSpec {
    /// The service (`core`).
    pub name: &'static str,
    /// The parsed document.
    pub document: Value,
    /// Every documented path.
    pub routes: Vec<Route>,
}

impl ServiceSpec {
    /// The path item of `route`.
    pub(crate) fn path_item(&self, route: &Route) -> &Value {
        &self.document["paths"][&route.key]
    }

    /// The operation object of `op` on `route`.
    pub(crate) fn operation_object(&self, route: &Route, op: &Operation) -> &Value {
        &self.path_item(route)[op.method.as_str().to_ascii_lowercase()]
    }

    /// The route matching `segments` (the path after `/service/{name}/v{n}/`,
    /// percent-decoded) for `method`, and its parameters by name. A route
    /// with `method` wins over one without it (the documents have paths of
    /// one shape whose parameters differ in name by method, and literal
    /// paths beside parameter paths with other methods), then the more
    /// literal segments.
    pub(crate) fn find<'a, S: AsRef<str>>(
        &'a self,
        segments: &[S],
        method: &Method,
    ) -> Option<(&'a Route, Vec<(String, String)>)> {
        let mut best: Option<&Route> = None;
        for route in &self.routes {
            if route.segments.len() != segments.len() {
                continue;
            }
            let matches = route.segments.iter().zip(segments).all(|(t, s)| match t {
                Segment::Literal(l) => l.eq_ignore_ascii_case(s.as_ref()),
                Segment::Param(_) => !s.as_ref().is_empty(),
            });
            // As in ASP.NET routing, the method is part of the match (a
            // path whose routes all lack it is a 405); among routes with
            // it, a literal segment beats a parameter.
            let better = |b: &Route| {
                let (r_has, b_has) = (
                    route.operation(method).is_some(),
                    b.operation(method).is_some(),
                );
                (r_has && !b_has) || (r_has == b_has && route.literals() > b.literals())
            };
            if matches && best.is_none_or(better) {
                best = Some(route);
            }
        }
        let route = best?;
        let params = route
            .segments
            .iter()
            .zip(segments)
            .filter_map(|(t, s)| match t {
                Segment::Param(name) => Some((name.clone(), s.as_ref().to_string())),
                Segment::Literal(_) => None,
            })
            .collect();
        Some((route, params))
    }

    /// The route whose template is exactly `segments` (literal segments
    /// compared case-insensitively, parameters by position only).
    pub(crate) fn route_of(&self, segments: &[Segment]) -> Option<&Route> {
        self.routes.iter().find(|r| {
            r.segments.len() == segments.len()
                && r.segments.iter().zip(segments).all(|(a, b)| match (a, b) {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
        })
    }

    /// The first success status the operation documents (200 when it
    /// documents none) and its body: media type and schema, JSON preferred.
    pub(crate) fn success<'a>(
        &'a self,
        operation: &'a Value,
    ) -> (u16, Option<(&'a str, &'a Value)>) {
        let Some(responses) = operation["responses"].as_object() else {
            return (200, None);
        };
        let mut codes: Vec<(u16, &Value)> = responses
            .iter()
            .filter_map(|(k, v)| Some((k.parse::<u16>().ok()?, v)))
            .filter(|(k, _)| (200..300).contains(k))
            .collect();
        codes.sort_by_key(|(k, _)| *k);
        let Some((status, response)) = codes.first().copied() else {
            return (200, None);
        };
        let response = self.resolve(response).unwrap_or(response);
        let content = response["content"].as_object().and_then(|c| {
            c.get_key_value("application/json")
                .or_else(|| c.iter().next())
                .map(|(k, v)| (k.as_str(), &v["schema"]))
        });
        (status, content)
    }

    /// The JSON schema of the operation's request body, if it takes JSON.
    pub(crate) fn json_body_schema<'a>(&'a self, operation: &'a Value) -> Option<&'a Value> {
        let body = self.resolve(&operation["requestBody"])?;
        let content = body["content"].as_object()?;
        content
            .iter()
            .find(|(k, _)| k.contains("json"))
            .map(|(_, v)| &v["schema"])
    }

    /// Resolves a `$ref` (`#/components/schemas/X`) against this document,
    /// following chains of references; `None` when it points nowhere.
    pub(crate) fn resolve<'a>(&'a self, mut schema: &'a Value) -> Option<&'a Value> {
        for _ in 0..16 {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => schema = self.document.pointer(r.strip_prefix('#')?)?,
                None => return Some(schema),
            }
        }
        None
    }
}

/// All four services.
#[derive(Debug)]
pub(crate) struct Spec {
    /// In the order of [`SERVICES`].
    pub services: Vec<ServiceSpec>,
}

impl Spec {
    /// The documents, parsed on first use (once per process).
    pub(crate) fn get() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec {
            services: SERVICES
                .iter()
                .zip(RAW)
                .map(|(name, raw)| parse_service(name, raw))
                .collect(),
        })
    }

    /// The service named `name` (case-insensitive).
    pub(crate) fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
    }

    /// How many operations the documents hold.
    #[cfg(test)]
    pub(crate) fn operation_count(&self) -> usize {
        self.services
            .iter()
            .flat_map(|s| &s.routes)
            .map(|r| r.operations.len())
            .sum()
    }
}

const METHODS: [(&str, Method); 5] = [
    ("get", Method::GET),
    ("post", Method::POST),
    ("put", Method::PUT),
    ("delete", Method::DELETE),
    ("patch", Method::PATCH),
];

/// Parses one embedded document. The documents are the build's input; one
/// that does not parse leaves that service without documented routes (the
/// handwritten handlers still answer) and says so.
fn parse_service(name: &'static str, raw: &[u8]) -> ServiceSpec {
    let document: Value = serde_json::from_slice(raw).unwrap_or_else(|e| {
        tracing::error!("the embedded {name} document does not parse: {e}");
        Value::Null
    });
    let routes = document["paths"]
        .as_object()
        .map(|paths| {
            paths
                .iter()
                .filter_map(|(key, item)| route(key, item))
                .collect()
        })
        .unwrap_or_default();
    ServiceSpec {
        name,
        document,
        routes,
    }
}

fn route(key: &str, item: &Value) -> Option<Route> {
    let mut parts = key.split('/').filter(|s| !s.is_empty()).peekable();
    // The documents name paths `/v4/...`; the version is matched separately.
    if parts.peek().is_some_and(|v| is_version(v)) {
        parts.next();
    }
    let raw: Vec<&str> = parts.collect();
    let segments = raw
        .iter()
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_ascii_lowercase()),
            },
        )
        .collect();
    let operations: Vec<Operation> = METHODS
        .iter()
        .filter_map(|(m, method)| {
            item.get(*m).map(|op| Operation {
                method: method.clone(),
                id: op["operationId"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect();
    (!operations.is_empty()).then(|| Route {
        template: raw.join("/"),
        key: key.to_string(),
        segments,
        operations,
    })
}

/// `v3`, `v4`, ...
pub(crate) fn is_version(s: &str) -> bool {
    s.len() > 1
        && (s.starts_with('v') || s.starts_with('V'))
        && s[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_is_embedded_and_routed() {
        let spec = Spec::get();
        for s in &spec.services {
            assert!(!s.routes.is_empty(), "{} has no routes", s.name);
        }
        // 962 core + 100 appliance + 6 notification + 4 a2a in the documents
        // this project is developed against; an upgraded appliance has more.
        assert!(spec.operation_count() >= 1000, "{}", spec.operation_count());
    }

    #[test]
    fn literals_win_over_parameters_and_case_is_ignored() {
        let spec = Spec::get();
        let core = spec.service("Core").unwrap();
        let (r, params) = core.find(&["users", "42"], &Method::GET).unwrap();
        assert_eq!(r.template, "Users/{id}");
        assert_eq!(params, vec![("id".to_string(), "42".to_string())]);
        let (r, params) = core
            .find(&["ME", "ActionableRequests"], &Method::GET)
            .unwrap();
        assert_eq!(r.template, "Me/ActionableRequests");
        assert!(params.is_empty());
        assert!(core.find(&["NoSuchThing"], &Method::GET).is_none());
        assert!(core.find(&["users", ""], &Method::GET).is_none());
        let path = ["AssetPartitions", "1", "DiscoveredAccounts", "2", "x"];
        let (r, _) = core.find(&path, &Method::DELETE).unwrap();
        assert!(r.template.ends_with("{accountName}"));
        let (r, _) = core.find(&path, &Method::GET).unwrap();
        assert!(r.template.ends_with("{accountKey}"));
    }

    #[test]
    fn references_resolve_and_cycles_end() {
        let spec = Spec::get();
        let core = spec.service("core").unwrap();
        let reference = serde_json::json!({"$ref": "#/components/schemas/User"});
        let user = core.resolve(&reference).unwrap();
        assert!(user["properties"].get("Name").is_some());
        assert!(core
            .resolve(&serde_json::json!({"$ref": "#/nowhere"}))
            .is_none());
    }

    #[test]
    fn versions() {
        assert!(is_version("v4") && is_version("V3"));
        assert!(!is_version("v") && !is_version("vx") && !is_version("Users"));
    }
}
