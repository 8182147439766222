//! Recorded sessions: `/api/audit/sessions` list and search, details, content
//! search, events, and the audit-trail download.

use bytes::Bytes;
use futures::stream::{Stream, StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use url::form_urlencoded;

use super::client::SpsClient;
use super::error::{self, SpsError};
use super::model::{ListItem, SpsResponse};
use crate::{Error, Result};

/// Longest search expression accepted.
pub const MAX_QUERY_LEN: usize = 4096;

/// Checks a search expression (`q`) the way the guide asks: present and not
/// empty (an empty `q` silently matches nothing), Apache Lucene syntax with
/// balanced double quotes and parentheses, no term starting with a wildcard,
/// no dangling `AND`/`OR`/`NOT`, no control characters. (The SDK URL-encodes
/// it.)
pub fn validate_query(q: &str) -> Result<()> {
    let bad = |m: &str| Err(SpsError::InvalidQuery(m.to_string()).into());
    let t = q.trim();
    if t.is_empty() {
        return bad("the search expression is empty (SPS would return no results)");
    }
    if t.len() > MAX_QUERY_LEN {
        return bad("the search expression is too long");
    }
    if t.chars().any(char::is_control) {
        return bad("the search expression contains control characters");
    }
    let mut depth: i64 = 0;
    let mut in_quote = false;
    let mut escaped = false;
    let mut token = String::new();
    let mut tokens: Vec<String> = Vec::new();
    let flush = |token: &mut String, tokens: &mut Vec<String>| {
        if !token.is_empty() {
            tokens.push(std::mem::take(token));
        }
    };
    for c in t.chars() {
        if escaped {
            escaped = false;
            token.push('x');
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' => {
                if in_quote {
                    tokens.push("\"phrase\"".into());
                }
                in_quote = !in_quote;
            }
            _ if in_quote => {}
            '(' => {
                flush(&mut token, &mut tokens);
                depth += 1;
                tokens.push("(".into());
            }
            ')' => {
                flush(&mut token, &mut tokens);
                depth -= 1;
                if depth < 0 {
                    return bad("unbalanced parentheses: ')' without '('");
                }
                tokens.push(")".into());
            }
            c if c.is_whitespace() => flush(&mut token, &mut tokens),
            c => token.push(c),
        }
    }
    flush(&mut token, &mut tokens);
    if in_quote {
        return bad("unbalanced double quotes");
    }
    if escaped {
        return bad("the expression ends with an escape character");
    }
    if depth != 0 {
        return bad("unbalanced parentheses: '(' is not closed");
    }
    let is_op = |s: &str| matches!(s, "AND" | "OR" | "NOT" | "&&" | "||");
    for (i, tok) in tokens.iter().enumerate() {
        let value = tok.rsplit(':').next().unwrap_or(tok);
        if value.starts_with('*') || value.starts_with('?') {
            return bad("a term cannot start with a wildcard ('*' or '?')");
        }
        if tok.ends_with(':') {
            return bad("a field has no value");
        }
        if is_op(tok) {
            let next = tokens.get(i + 1).map(String::as_str);
            if next.is_none() || next == Some(")") {
                return bad("an operator has no right operand");
            }
            if tok != "NOT" {
                let prev = i
                    .checked_sub(1)
                    .and_then(|p| tokens.get(p))
                    .map(String::as_str);
                if prev.is_none() || prev == Some("(") || prev.is_some_and(is_op) {
                    return bad("an operator has no left operand");
                }
            }
        }
    }
    Ok(())
}

/// Which recorded sessions to list.
#[derive(Clone, Debug, Default)]
pub struct SessionSearch {
    q: Option<String>,
    fields: Vec<String>,
    limit: Option<u32>,
}

impl SessionSearch {
    /// Every session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only sessions matching a search expression (Lucene syntax over the
    /// session's metadata, e.g. `protocol:ssh AND user:root`).
    pub fn query(mut self, q: impl Into<String>) -> Self {
        self.q = Some(q.into());
        self
    }

    /// Includes these body fields in each listed item.
    pub fn fields<I: IntoIterator<Item = S>, S: Into<String>>(mut self, fields: I) -> Self {
        self.fields = fields.into_iter().map(Into::into).collect();
        self
    }

    /// Page size (SPS default 500).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    fn to_path(&self, base: &str) -> Result<String> {
        let mut qs = form_urlencoded::Serializer::new(String::new());
        if let Some(q) = &self.q {
            validate_query(q)?;
            qs.append_pair("q", q.trim());
        }
        if !self.fields.is_empty() {
            qs.append_pair("fields", &self.fields.join(","));
        }
        if let Some(l) = self.limit {
            qs.append_pair("limit", &l.max(1).to_string());
        }
        let qs = qs.finish();
        Ok(if qs.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{qs}")
        })
    }
}

/// A recorded session id as it may appear in a path.
fn session_path(id: &str, rest: &str) -> Result<String> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::Config(format!("invalid session id {id:?}")));
    }
    Ok(format!("audit/sessions/{id}{rest}"))
}

impl SpsClient {
    /// Lists recorded sessions (every page) matching `search`.
    pub fn audit_sessions(
        &self,
        search: &SessionSearch,
    ) -> impl Stream<Item = Result<ListItem>> + Send + 'static {
        match search.to_path("audit/sessions") {
            Ok(path) => self.items(&path).left_stream(),
            Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
        }
    }

    /// Freezes the result of a session search (`POST /api/audit/sessions/_snapshot`)
    /// and returns its href; page through it with [`items`](SpsClient::items).
    pub async fn audit_snapshot(&self, search: &SessionSearch) -> Result<String> {
        let path = search.to_path("audit/sessions/_snapshot")?;
        let r: SpsResponse<Value> = self.post(&path, &serde_json::json!({})).await?;
        r.meta
            .href
            .ok_or_else(|| error::decode(None, "the snapshot answer has no meta.href"))
    }

    /// The details of a recorded session.
    pub async fn audit_session(&self, id: &str) -> Result<SpsResponse<Value>> {
        self.get(&session_path(id, "")?).await
    }

    /// Searches the content of a recorded session (`q` in Lucene syntax,
    /// validated first) and returns every matching event.
    pub async fn search_session_content(&self, id: &str, q: &str) -> Result<Vec<Value>> {
        validate_query(q)?;
        let qs: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", q.trim())
            .finish();
        let path = session_path(id, &format!("/content/?{qs}"))?;
        let items: Vec<ListItem> = self.items(&path).try_collect().await?;
        Ok(items.into_iter().map(item_value).collect())
    }

    /// The events extracted from a recorded session.
    pub async fn session_events(&self, id: &str) -> Result<Vec<Value>> {
        let items: Vec<ListItem> = self
            .items(&session_path(id, "/events")?)
            .try_collect()
            .await?;
        Ok(items.into_iter().map(item_value).collect())
    }

    /// Streams the audit trail of a recorded session.
    pub async fn download_audit_trail(
        &self,
        id: &str,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + 'static> {
        let resp = self
            .send(Method::GET, &session_path(id, "/audit_trail")?, None)
            .await?;
        // A stream: silences longer than the read timeout end it.
        let resp = crate::limits::watch_silence(resp, self.inner.limits.read_timeout);
        Ok(resp.bytes_stream().map_err(Error::from_reqwest))
    }

    /// Writes the audit trail of a recorded session into `out`; returns the
    /// number of bytes written.
    pub async fn download_audit_trail_to<W: AsyncWrite + Unpin>(
        &self,
        id: &str,
        out: &mut W,
    ) -> Result<u64> {
        let stream = self.download_audit_trail(id).await?;
        futures::pin_mut!(stream);
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            out.write_all(&chunk).await?;
            n = n.saturating_add(chunk.len() as u64);
        }
        out.flush().await?;
        Ok(n)
    }
}

fn item_value(i: ListItem) -> Value {
    serde_json::to_value(i).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        for ok in [
            "sudo",
            "protocol:ssh AND user:root",
            "\"cat /etc\" OR (ls NOT exit)",
            "sud*",
            "a\\:b",
        ] {
            assert!(validate_query(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "  ", "*sudo", "\"open", "(a", "a)", "a AND", "AND a", "user:", "a\u{7}",
        ] {
            assert!(validate_query(bad).is_err(), "{bad:?}");
        }
    }
}
