//! Recorded sessions for `/api/audit/sessions`: seeded data, a small Lucene
//! subset for `q` (terms, `field:value`, phrases, trailing `*`/`?` wildcards,
//! `AND`/`OR`/`NOT`, parentheses; no leading wildcard), and audit trails.

use serde_json::{json, Value};

/// One recorded session.
#[derive(Clone, Debug)]
pub(crate) struct AuditSession {
    pub(crate) id: String,
    pub(crate) body: Value,
    /// (time, text) events of the screen/terminal content.
    pub(crate) content: Vec<(String, String)>,
    /// Size of the audit trail in bytes.
    pub(crate) trail_len: usize,
    pub(crate) seed: u64,
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl AuditSession {
    /// A deterministic session number `n`.
    pub(crate) fn seeded(n: u64) -> Self {
        let mut st = 0x9E37_79B9_7F4A_7C15u64 ^ (n.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let id: String = (0..22)
            .map(|_| ALPHABET[(xorshift(&mut st) % ALPHABET.len() as u64) as usize] as char)
            .collect();
        let protocols = ["ssh", "rdp", "ssh", "telnet", "vnc"];
        let users = ["root", "alice", "bob", "admin", "carol"];
        let protocol = protocols[(n % 5) as usize];
        let user = users[((n / 2) % 5) as usize];
        let start = 1_700_000_000 + n * 3600;
        let body = json!({
            "active": false,
            "protocol": {"name": protocol},
            "user": {"name": user},
            "client": {"ip": format!("10.0.0.{}", n % 250 + 1), "port": 50000 + (n % 1000)},
            "server": {"ip": format!("192.168.1.{}", n % 250 + 1), "port": if protocol == "rdp" {3389} else {22}},
            "start_time": start,
            "end_time": start + 600,
            "duration": 600,
            "verdict": "ACCEPT",
            "recording": {"audit_trail": format!("/api/audit/sessions/{id}/audit_trail"), "archived": false},
        });
        let content = vec![
            (
                "2024-01-01T10:00:01.000".to_string(),
                format!("{user}@host-{n}:~$ ls -la"),
            ),
            (
                "2024-01-01T10:00:05.000".to_string(),
                format!("{user}@host-{n}:~$ cat /etc/passwd"),
            ),
            (
                "2024-01-01T10:00:09.000".to_string(),
                format!("{user}@host-{n}:~$ sudo systemctl restart sshd"),
            ),
            ("2024-01-01T10:00:12.000".to_string(), "exit".to_string()),
        ];
        Self {
            id,
            body,
            content,
            trail_len: 64 * 1024 + (n as usize % 7) * 1000,
            seed: st,
        }
    }

    /// The bytes `[from, from + len)` of the audit trail (deterministic).
    pub(crate) fn trail_chunk(&self, chunk_index: usize, chunk: usize) -> Vec<u8> {
        let from = chunk_index * chunk;
        let to = (from + chunk).min(self.trail_len);
        let mut st = self.seed ^ (chunk_index as u64 + 1).wrapping_mul(0x9E37_79B9);
        let mut out = Vec::with_capacity(to.saturating_sub(from));
        if from == 0 {
            out.extend_from_slice(b"ZAT\x01");
        }
        while out.len() < to.saturating_sub(from) {
            out.push((xorshift(&mut st) & 0xff) as u8);
        }
        out.truncate(to.saturating_sub(from));
        out
    }

    /// The flat text fields a list `q` can match: `field` → value.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let s = |p: &str| {
            self.body
                .pointer(p)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default()
        };
        vec![
            ("protocol", s("/protocol/name")),
            ("user", s("/user/name")),
            ("client_ip", s("/client/ip")),
            ("server_ip", s("/server/ip")),
            ("verdict", s("/verdict")),
            ("session_id", self.id.clone()),
        ]
    }

    /// Whether the session's metadata matches a parsed list query.
    pub(crate) fn matches_meta(&self, q: &Query) -> bool {
        let fields = self.fields();
        q.eval(&|field, pattern| match field {
            Some(f) => fields
                .iter()
                .any(|(name, v)| *name == f && wildcard(pattern, &v.to_lowercase())),
            None => fields
                .iter()
                .any(|(_, v)| wildcard(pattern, &v.to_lowercase())),
        })
    }
}

/// Fields a list query may name.
pub(crate) const LIST_FIELDS: [&str; 6] = [
    "protocol",
    "user",
    "client_ip",
    "server_ip",
    "verdict",
    "session_id",
];

/// A parsed query.
#[derive(Debug, Clone)]
pub(crate) enum Query {
    Term(Option<String>, String),
    Phrase(Option<String>, String),
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
}

impl Query {
    pub(crate) fn eval(&self, m: &dyn Fn(Option<&str>, &str) -> bool) -> bool {
        match self {
            Query::Term(f, t) => m(f.as_deref(), t),
            Query::Phrase(f, t) => m(f.as_deref(), &format!("*{t}*")),
            Query::And(a, b) => a.eval(m) && b.eval(m),
            Query::Or(a, b) => a.eval(m) || b.eval(m),
            Query::Not(a) => !a.eval(m),
        }
    }

    /// Every field named in the query.
    pub(crate) fn fields(&self) -> Vec<String> {
        match self {
            Query::Term(f, _) | Query::Phrase(f, _) => f.iter().cloned().collect(),
            Query::And(a, b) | Query::Or(a, b) => {
                let mut v = a.fields();
                v.extend(b.fields());
                v
            }
            Query::Not(a) => a.fields(),
        }
    }
}

/// Matches a lower-case text against a pattern with `*` and `?` wildcards.
/// A pattern without wildcards matches a whole word of the text.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    if !p.iter().any(|c| *c == '*' || *c == '?') {
        let needle: String = p.iter().collect();
        return text
            .split(|c: char| !c.is_alphanumeric() && c != '.' && c != '_' && c != '-')
            .any(|w| w == needle)
            || text == needle;
    }
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with backtracking on the last star; bounded work.
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Phrase(String),
    Field(String),
    LParen,
    RParen,
    And,
    Or,
    Not,
}

const MAX_QUERY_LEN: usize = 4096;
const MAX_DEPTH: usize = 32;

fn tokenize(q: &str) -> Result<Vec<Tok>, String> {
    if q.len() > MAX_QUERY_LEN {
        return Err(format!("The query is longer than {MAX_QUERY_LEN} bytes"));
    }
    if q.chars().any(char::is_control) {
        return Err("The query contains control characters".into());
    }
    let chars: Vec<char> = q.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            toks.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            toks.push(Tok::RParen);
            i += 1;
        } else if c == '"' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && chars[j] != '"' {
                j += 1;
            }
            if j >= chars.len() {
                return Err("Unterminated phrase: a double quote is not closed".into());
            }
            toks.push(Tok::Phrase(chars[start..j].iter().collect()));
            i = j + 1;
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !matches!(chars[i], '(' | ')' | '"' | ':')
            {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            let i_end = i.min(chars.len());
            let word: String = chars[start..i_end].iter().collect();
            i = i_end;
            if i < chars.len() && chars[i] == ':' {
                if word.is_empty() {
                    return Err("A field name is missing before ':'".into());
                }
                toks.push(Tok::Field(word));
                i += 1;
                continue;
            }
            if word.is_empty() {
                return Err(format!(
                    "Unexpected character '{}'",
                    chars.get(start).copied().unwrap_or(' ')
                ));
            }
            match word.as_str() {
                "AND" | "&&" => toks.push(Tok::And),
                "OR" | "||" => toks.push(Tok::Or),
                "NOT" | "!" => toks.push(Tok::Not),
                _ => {
                    if word.starts_with('*') || word.starts_with('?') {
                        return Err(format!("A term cannot start with a wildcard: '{word}'"));
                    }
                    toks.push(Tok::Word(word));
                }
            }
        }
    }
    Ok(toks)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn or(&mut self) -> Result<Query, String> {
        let mut left = self.and()?;
        loop {
            match self.peek() {
                Some(Tok::Or) => {
                    self.pos += 1;
                    let right = self.and()?;
                    left = Query::Or(Box::new(left), Box::new(right));
                }
                // Implicit conjunction: Lucene's default operator is OR.
                Some(Tok::Word(_) | Tok::Phrase(_) | Tok::Field(_) | Tok::LParen | Tok::Not) => {
                    let right = self.and()?;
                    left = Query::Or(Box::new(left), Box::new(right));
                }
                _ => return Ok(left),
            }
        }
    }

    fn and(&mut self) -> Result<Query, String> {
        let mut left = self.unary()?;
        while let Some(Tok::And) = self.peek() {
            self.pos += 1;
            let right = self.unary()?;
            left = Query::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Query, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("The query is nested too deeply".into());
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Query, String> {
        let tok = self.toks.get(self.pos);
        match tok {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Query::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.or()?;
                match self.peek() {
                    Some(Tok::RParen) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => Err("Unbalanced parentheses: '(' is not closed".into()),
                }
            }
            Some(Tok::Field(f)) => {
                let f = f.clone();
                self.pos += 1;
                match self.toks.get(self.pos) {
                    Some(Tok::Word(w)) => {
                        let w = w.clone();
                        self.pos += 1;
                        Ok(Query::Term(Some(f), w))
                    }
                    Some(Tok::Phrase(p)) => {
                        let p = p.clone();
                        self.pos += 1;
                        Ok(Query::Phrase(Some(f), p))
                    }
                    _ => Err(format!("The field '{f}' has no value")),
                }
            }
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(Query::Term(None, w))
            }
            Some(Tok::Phrase(p)) => {
                let p = p.clone();
                self.pos += 1;
                Ok(Query::Phrase(None, p))
            }
            Some(Tok::RParen) => Err("Unbalanced parentheses: unexpected ')'".into()),
            Some(Tok::And) | Some(Tok::Or) => Err("An operator is missing its left operand".into()),
            None => Err("The query ends with an operator".into()),
        }
    }
}

/// Parses a query of the supported Lucene subset.
pub(crate) fn parse_query(q: &str) -> Result<Query, String> {
    let toks = tokenize(q)?;
    if toks.is_empty() {
        return Err("The query is empty".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let query = p.or()?;
    if p.pos != p.toks.len() {
        return Err("Unbalanced parentheses: unexpected ')'".into());
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert!(parse_query("sudo").is_ok());
        assert!(parse_query("protocol:ssh AND user:root").is_ok());
        assert!(parse_query("\"cat /etc\" OR (ls NOT exit)").is_ok());
        assert!(parse_query("*sudo").is_err());
        assert!(parse_query("\"open").is_err());
        assert!(parse_query("(a OR b").is_err());
        assert!(parse_query("a)").is_err());
        assert!(parse_query("a AND").is_err());
        assert!(parse_query("   ").is_err());
        assert!(parse_query(&"(".repeat(100)).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("sud*", "sudo systemctl"));
        assert!(wildcard("s?do", "sudo"));
        assert!(!wildcard("x*", "sudo"));
        assert!(wildcard("sudo", "root@h:~$ sudo systemctl"));
        assert!(wildcard("*etc*", "cat /etc/passwd"));
    }
}
