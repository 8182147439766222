//! The appliance's collection query parameters: `filter`, `fields`,
//! `orderby`, `page`, `limit`, `count`.
//!
//! Filter grammar (case-insensitive keywords):
//! `expr := term (("and" | "or") term)*`, `term := "not" term | "(" expr ")" | cmp`,
//! `cmp := path op value` with `op` one of `eq ne gt ge lt le contains
//! ncontains sw ew in`, `value := 'string' ('' escapes a quote) | number |
//! true | false | null | [v1, v2]` (for `in`). `and` binds tighter than `or`.
//! String comparisons ignore case, as on the appliance.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' | '\n' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '\'' | '"' => {
                let quote = c;
                i += 1;
                let mut v = String::new();
                loop {
                    if i >= chars.len() {
                        return Err("Unterminated string literal in filter".into());
                    }
                    if chars[i] == quote {
                        if i + 1 < chars.len() && chars[i + 1] == quote {
                            v.push(quote);
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    if chars[i] == '\\' && i + 1 < chars.len() && chars[i + 1] == quote {
                        v.push(quote);
                        i += 2;
                        continue;
                    }
                    v.push(chars[i]);
                    i += 1;
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_digit()
                || (c == '-' && i + 1 < chars.len() && chars[i + 1].is_ascii_digit()) =>
            {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Tok::Num(
                    text.parse()
                        .map_err(|_| format!("Invalid number '{text}' in filter"))?,
                ));
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("Unexpected character '{other}' in filter")),
        }
    }
    Ok(out)
}

/// A parsed filter.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Cmp(String, String, Value),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

/// The documented filter operators ("eq, ne, gt, ge, lt, le, and, or, not,
/// contains, ieq, icontains, sw, isw, ew, iew, in", core.json's `filter`
/// parameter), plus `ncontains`. `contains`, `sw` and `ew` already ignore
/// case; their `i` forms are the same.
const OPS: [&str; 15] = [
    "eq",
    "ieq",
    "icontains",
    "isw",
    "iew",
    "ne",
    "gt",
    "ge",
    "lt",
    "le",
    "contains",
    "ncontains",
    "sw",
    "ew",
    "in",
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }
    fn expr(&mut self) -> Result<Filter, String> {
        let mut left = self.and_expr()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.term()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.term()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn term(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.term()?)));
        }
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.expr()?;
            if self.next() != Some(Tok::RParen) {
                return Err("Missing ')' in filter".into());
            }
            return Ok(e);
        }
        let path = match self.next() {
            Some(Tok::Ident(p)) => p,
            other => {
                return Err(format!(
                    "Expected a property name in filter, found {other:?}"
                ))
            }
        };
        let op = match self.next() {
            Some(Tok::Ident(o)) if OPS.iter().any(|k| k.eq_ignore_ascii_case(&o)) => {
                o.to_ascii_lowercase()
            }
            other => {
                return Err(format!(
                    "Expected an operator after '{path}' in filter, found {other:?}"
                ))
            }
        };
        let value = self.value()?;
        Ok(Filter::Cmp(path, op, value))
    }
    fn value(&mut self) -> Result<Value, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Value::String(s)),
            Some(Tok::Num(n)) => Ok(serde_json::Number::from_f64(n)
                .map(Value::Number)
                .unwrap_or(Value::Null)),
            Some(Tok::Ident(i)) if i.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Some(Tok::Ident(i)) if i.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            Some(Tok::Ident(i)) if i.eq_ignore_ascii_case("null") => Ok(Value::Null),
            Some(Tok::LBracket) => {
                let mut items = Vec::new();
                loop {
                    if self.peek() == Some(&Tok::RBracket) {
                        self.pos += 1;
                        break;
                    }
                    items.push(self.value()?);
                    match self.next() {
                        Some(Tok::Comma) => {}
                        Some(Tok::RBracket) => break,
                        _ => return Err("Expected ',' or ']' in filter list".into()),
                    }
                }
                Ok(Value::Array(items))
            }
            other => Err(format!("Expected a value in filter, found {other:?}")),
        }
    }
}

/// Parses a filter expression.
pub(crate) fn parse_filter(s: &str) -> Result<Filter, String> {
    let mut p = Parser {
        toks: tokenize(s)?,
        pos: 0,
    };
    let f = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(format!(
            "Unexpected '{:?}' at the end of the filter",
            p.toks[p.pos]
        ));
    }
    Ok(f)
}

/// Looks up a dotted, case-insensitive property path.
pub(crate) fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.') {
        let obj = cur.as_object()?;
        cur = obj.get(part).or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v)
        })?;
    }
    Some(cur)
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_lowercase()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::Number(y)) => x.parse::<f64>().ok()?.partial_cmp(&y.as_f64()?),
        (Value::Number(x), Value::String(y)) => x.as_f64()?.partial_cmp(&y.parse::<f64>().ok()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => None,
        _ => Some(as_text(a)?.cmp(&as_text(b)?)),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        _ => compare(a, b) == Some(Ordering::Equal),
    }
}

impl Filter {
    /// Whether an entity matches.
    pub(crate) fn matches(&self, v: &Value) -> bool {
        match self {
            Filter::And(a, b) => a.matches(v) && b.matches(v),
            Filter::Or(a, b) => a.matches(v) || b.matches(v),
            Filter::Not(a) => !a.matches(v),
            Filter::Cmp(path, op, want) => {
                let have = lookup(v, path).cloned().unwrap_or(Value::Null);
                match op.as_str() {
                    "eq" => equal(&have, want),
                    "ieq" => match (as_text(&have), as_text(want)) {
                        (Some(h), Some(w)) => h == w,
                        _ => equal(&have, want),
                    },
                    "ne" => !equal(&have, want),
                    "gt" => compare(&have, want) == Some(Ordering::Greater),
                    "ge" => matches!(
                        compare(&have, want),
                        Some(Ordering::Greater | Ordering::Equal)
                    ),
                    "lt" => compare(&have, want) == Some(Ordering::Less),
                    "le" => matches!(compare(&have, want), Some(Ordering::Less | Ordering::Equal)),
                    "contains" | "ncontains" | "sw" | "ew" | "icontains" | "isw" | "iew" => {
                        let found = match (as_text(&have), as_text(want)) {
                            (Some(h), Some(w)) => match op.as_str() {
                                "sw" | "isw" => h.starts_with(&w),
                                "ew" | "iew" => h.ends_with(&w),
                                _ => h.contains(&w),
                            },
                            _ => false,
                        };
                        if op == "ncontains" {
                            !found
                        } else {
                            found
                        }
                    }
                    "in" => want
                        .as_array()
                        .is_some_and(|items| items.iter().any(|w| equal(&have, w))),
                    _ => false,
                }
            }
        }
    }
}

/// Keeps only the listed (dotted) properties.
pub(crate) fn project(v: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for f in fields {
        let parts: Vec<&str> = f.split('.').collect();
        insert_path(&mut out, v, &parts);
    }
    Value::Object(out)
}

fn insert_path(out: &mut Map<String, Value>, src: &Value, parts: &[&str]) {
    let Some(obj) = src.as_object() else { return };
    let Some((key, val)) = obj
        .get_key_value(parts[0])
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(parts[0])))
    else {
        return;
    };
    if parts.len() == 1 {
        out.insert(key.clone(), val.clone());
        return;
    }
    let entry = out
        .entry(key.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(inner) = entry {
        insert_path(inner, val, &parts[1..]);
    }
}

/// The outcome of applying the query parameters to a collection.
pub(crate) enum Listing {
    Items(Vec<Value>),
    Count(usize),
}

/// Applies `filter`, `q`, `orderby`, `page`/`limit`, `fields` and `count`.
/// `params` has lower-cased keys.
pub(crate) fn apply(
    items: Vec<Value>,
    params: &HashMap<String, String>,
) -> Result<Listing, String> {
    let mut items = items;
    if let Some(f) = params.get("filter").filter(|f| !f.trim().is_empty()) {
        let filter = parse_filter(f)?;
        items.retain(|v| filter.matches(v));
    }
    if let Some(q) = params.get("q").filter(|q| !q.trim().is_empty()) {
        let q = q.to_lowercase();
        items.retain(|v| {
            v.as_object().is_some_and(|o| {
                o.values()
                    .any(|x| x.as_str().is_some_and(|s| s.to_lowercase().contains(&q)))
            })
        });
    }
    if params
        .get("count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"))
    {
        return Ok(Listing::Count(items.len()));
    }
    if let Some(order) = params.get("orderby").filter(|o| !o.trim().is_empty()) {
        let keys: Vec<(String, bool)> = order
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| {
                let mut parts = k.split_whitespace();
                let name = parts.next().unwrap_or_default();
                let dir = parts.next().unwrap_or("asc");
                if let Some(stripped) = name.strip_prefix('-') {
                    (stripped.to_string(), true)
                } else {
                    (name.to_string(), dir.eq_ignore_ascii_case("desc"))
                }
            })
            .collect();
        items.sort_by(|a, b| {
            for (key, desc) in &keys {
                let va = lookup(a, key).cloned().unwrap_or(Value::Null);
                let vb = lookup(b, key).cloned().unwrap_or(Value::Null);
                let ord = match (&va, &vb) {
                    (Value::Null, Value::Null) => Ordering::Equal,
                    (Value::Null, _) => Ordering::Less,
                    (_, Value::Null) => Ordering::Greater,
                    _ => compare(&va, &vb).unwrap_or(Ordering::Equal),
                };
                let ord = if *desc { ord.reverse() } else { ord };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
    }
    let limit = match params.get("limit") {
        Some(l) => Some(
            l.trim()
                .parse::<usize>()
                .map_err(|_| format!("The value '{l}' is not valid for limit."))?,
        ),
        None => None,
    };
    let page = match params.get("page") {
        Some(p) => p
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("The value '{p}' is not valid for page."))?,
        None => 0,
    };
    if let Some(limit) = limit {
        items = items
            .into_iter()
            .skip(page.saturating_mul(limit))
            .take(limit)
            .collect();
    } else if page > 0 {
        // No limit: the appliance pages by 100.
        items = items.into_iter().skip(page * 100).take(100).collect();
    }
    if let Some(fields) = params.get("fields").filter(|f| !f.trim().is_empty()) {
        let list: Vec<String> = fields
            .split(',')
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect();
        items = items.iter().map(|v| project(v, &list)).collect();
    }
    Ok(Listing::Items(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters() {
        let v = json!({"Name": "Admin", "Id": 3, "Disabled": false, "P": {"Id": -1}});
        for (f, want) in [
            ("Name eq 'admin'", true),
            ("Name ieq 'ADMIN'", true),
            ("Name ieq 'adm'", false),
            ("Name icontains 'DM' and Id ge 3", true),
            ("Name isw 'ad' and Name iew 'IN'", true),
            ("Name iew 'ad'", false),
            ("Name ne 'admin'", false),
            ("Name contains 'dm' and Id eq 3", true),
            ("Name contains 'x' or P.Id eq -1", true),
            ("not (Disabled eq false)", false),
            ("Id gt 2 and Id le 3", true),
            ("Id in [1, 3]", true),
            ("Name eq 'O''Brien'", false),
        ] {
            assert_eq!(parse_filter(f).unwrap().matches(&v), want, "{f}");
        }
        assert!(parse_filter("Name eq").is_err());
        assert!(parse_filter("Name foo 'x'").is_err());
        assert!(parse_filter("(Name eq 'x'").is_err());
    }
}
