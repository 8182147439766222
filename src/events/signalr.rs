//! The ASP.NET Core SignalR JSON hub protocol, as a pure codec: no I/O, no
//! clock, no panic on any input.
//!
//! - [`NegotiateResponse`] reads the answer of `POST {hub}/negotiate`
//!   (version 0 with only `connectionId`, version 1 with `connectionToken`).
//! - [`handshake_request`] and [`parse_handshake_response`] open the protocol.
//! - [`FrameReader`] splits websocket messages into records terminated by the
//!   record separator 0x1E: several records may share one message and one
//!   record may span several messages. Its buffer is bounded: a record longer
//!   than the limit is a [`ProtocolError::FrameTooLarge`], never unbounded growth.
//! - [`Message::parse`] and [`Message::encode`] read and write one record
//!   (invocation, ping, close; other types are kept as [`Message::Other`]).
//!
//! ```
//! use safeguard_sdk::events::signalr::{FrameReader, Message};
//! let mut reader = FrameReader::new(1024);
//! let first = reader.push(b"{\"type\":6}\x1e{\"type\":1,\"target\":\"Notify").unwrap();
//! assert_eq!(Message::parse(&first[0]).unwrap(), Message::Ping);
//! let second = reader.push(b"EventAsync\",\"arguments\":[{}]}\x1e").unwrap();
//! assert!(matches!(Message::parse(&second[0]).unwrap(), Message::Invocation { .. }));
//! ```

use std::fmt;

use serde_json::{Map, Value};

/// The byte that ends every record of the JSON hub protocol.
pub const RECORD_SEPARATOR: u8 = 0x1E;

/// The default bound of one record (and so of the reassembly buffer): 1 MiB.
pub const DEFAULT_MAX_RECORD: usize = 1024 * 1024;

/// What the codec rejects.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A record (or the unfinished rest of one) exceeds the reader's limit.
    #[error("a SignalR record of at least {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Bytes seen so far for the record.
        size: usize,
        /// The reader's limit.
        limit: usize,
    },
    /// A record is not a JSON object.
    #[error("a SignalR record is not a JSON object: {0}")]
    NotJson(String),
    /// A record lacks a numeric `type` or a required field.
    #[error("malformed SignalR message: {0}")]
    Malformed(String),
    /// The negotiate answer could not be used.
    #[error("unusable negotiate answer: {0}")]
    Negotiate(String),
    /// The server refused the handshake (`{"error": ...}`).
    #[error("the hub refused the handshake: {0}")]
    HandshakeRefused(String),
}

/// Message type numbers of the hub protocol.
pub mod message_type {
    /// A method call (`target`, `arguments`).
    pub const INVOCATION: u64 = 1;
    /// An item of a streamed result.
    pub const STREAM_ITEM: u64 = 2;
    /// The result of an invocation.
    pub const COMPLETION: u64 = 3;
    /// A call whose result is a stream.
    pub const STREAM_INVOCATION: u64 = 4;
    /// Cancels a stream invocation.
    pub const CANCEL_INVOCATION: u64 = 5;
    /// Keep-alive.
    pub const PING: u64 = 6;
    /// The connection is being closed (`error`, `allowReconnect`).
    pub const CLOSE: u64 = 7;
}

/// The answer of `POST {hub}/negotiate?negotiateVersion=1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiateResponse {
    /// `negotiateVersion` (0 when absent).
    pub version: u64,
    /// `connectionId`, when present.
    pub connection_id: Option<String>,
    /// `connectionToken` (version 1), when present.
    pub connection_token: Option<String>,
    /// The names of the transports the server offers (`WebSockets`, ...).
    pub transports: Vec<String>,
}

impl NegotiateResponse {
    /// Reads a negotiate answer. An `error` member, a redirect (`url`), or the
    /// lack of both `connectionToken` and `connectionId` is an error.
    pub fn parse(body: &[u8]) -> Result<Self, ProtocolError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ProtocolError::Negotiate(format!("not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(ProtocolError::Negotiate("not a JSON object".into()));
        };
        if let Some(error) = map.get("error").filter(|e| !e.is_null()) {
            return Err(ProtocolError::Negotiate(format!(
                "the server said: {}",
                text_of(error)
            )));
        }
        if map.get("url").is_some_and(|u| !u.is_null()) {
            return Err(ProtocolError::Negotiate(
                "redirects to another service are not supported".into(),
            ));
        }
        let version = map
            .get("negotiateVersion")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let non_empty = |key: &str| {
            map.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let connection_id = non_empty("connectionId");
        let connection_token = non_empty("connectionToken");
        if connection_id.is_none() && connection_token.is_none() {
            return Err(ProtocolError::Negotiate(
                "neither connectionToken nor connectionId".into(),
            ));
        }
        let transports = map
            .get("availableTransports")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|t| t.get("transport").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            version,
            connection_id,
            connection_token,
            transports,
        })
    }

    /// The value of the websocket's `id` query parameter: the connection
    /// token when present (version 1), else the connection id (version 0).
    pub fn connection_key(&self) -> &str {
        self.connection_token
            .as_deref()
            .or(self.connection_id.as_deref())
            .unwrap_or_default()
    }

    /// Whether the server offers websockets (an empty list says nothing, so
    /// it counts as yes).
    pub fn offers_websockets(&self) -> bool {
        self.transports.is_empty()
            || self
                .transports
                .iter()
                .any(|t| t.eq_ignore_ascii_case("WebSockets"))
    }
}

/// The handshake request of the JSON protocol, version 1, with its separator.
pub fn handshake_request() -> Vec<u8> {
    let mut v = br#"{"protocol":"json","version":1}"#.to_vec();
    v.push(RECORD_SEPARATOR);
    v
}

/// Reads the server's handshake answer (one record, separator removed):
/// `{}` is success; `{"error": ...}` is [`ProtocolError::HandshakeRefused`].
pub fn parse_handshake_response(record: &[u8]) -> Result<(), ProtocolError> {
    let map = object_of(record)?;
    match map.get("error") {
        None | Some(Value::Null) => Ok(()),
        Some(e) => Err(ProtocolError::HandshakeRefused(text_of(e))),
    }
}

/// One message of the hub protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A method call of the server on the client (type 1).
    Invocation {
        /// Set when the caller expects a completion.
        invocation_id: Option<String>,
        /// The client method (`NotifyEventAsync`, `ReceiveMessage`, ...).
        target: String,
        /// The arguments.
        arguments: Vec<Value>,
    },
    /// Keep-alive (type 6).
    Ping,
    /// The other side closes the connection (type 7).
    Close {
        /// Why, when it says.
        error: Option<String>,
        /// Whether the client may reconnect.
        allow_reconnect: bool,
    },
    /// Any other well-formed message (stream item, completion, ...), by type.
    Other {
        /// The message type number.
        kind: u64,
    },
}

impl Message {
    /// Reads one record (without its separator).
    pub fn parse(record: &[u8]) -> Result<Self, ProtocolError> {
        let mut map = object_of(record)?;
        let kind = map
            .get("type")
            .and_then(Value::as_u64)
            .ok_or_else(|| ProtocolError::Malformed("no numeric \"type\"".into()))?;
        match kind {
            message_type::INVOCATION => {
                let target = match map.remove("target") {
                    Some(Value::String(t)) => t,
                    _ => {
                        return Err(ProtocolError::Malformed(
                            "an invocation without a \"target\" string".into(),
                        ))
                    }
                };
                let arguments = match map.remove("arguments") {
                    Some(Value::Array(a)) => a,
                    None | Some(Value::Null) => Vec::new(),
                    Some(_) => {
                        return Err(ProtocolError::Malformed(
                            "invocation \"arguments\" is not an array".into(),
                        ))
                    }
                };
                let invocation_id = match map.remove("invocationId") {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                };
                Ok(Message::Invocation {
                    invocation_id,
                    target,
                    arguments,
                })
            }
            message_type::PING => Ok(Message::Ping),
            message_type::CLOSE => Ok(Message::Close {
                error: map
                    .get("error")
                    .filter(|e| !e.is_null())
                    .map(text_of)
                    .filter(|s| !s.is_empty()),
                allow_reconnect: map
                    .get("allowReconnect")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }),
            kind => Ok(Message::Other { kind }),
        }
    }

    /// Writes the message as one record, separator included. [`Message::Other`]
    /// is written as a bare `{"type": kind}`.
    pub fn encode(&self) -> Vec<u8> {
        let mut map = Map::new();
        match self {
            Message::Invocation {
                invocation_id,
                target,
                arguments,
            } => {
                map.insert("type".into(), message_type::INVOCATION.into());
                if let Some(id) = invocation_id {
                    map.insert("invocationId".into(), Value::String(id.clone()));
                }
                map.insert("target".into(), Value::String(target.clone()));
                map.insert("arguments".into(), Value::Array(arguments.clone()));
            }
            Message::Ping => {
                map.insert("type".into(), message_type::PING.into());
            }
            Message::Close {
                error,
                allow_reconnect,
            } => {
                map.insert("type".into(), message_type::CLOSE.into());
                if let Some(e) = error {
                    map.insert("error".into(), Value::String(e.clone()));
                }
                if *allow_reconnect {
                    map.insert("allowReconnect".into(), Value::Bool(true));
                }
            }
            Message::Other { kind } => {
                map.insert("type".into(), (*kind).into());
            }
        }
        let mut out = Value::Object(map).to_string().into_bytes();
        out.push(RECORD_SEPARATOR);
        out
    }
}

/// Splits a byte stream into records ended by [`RECORD_SEPARATOR`], keeping
/// an unfinished record until its end arrives, with a bounded buffer.
#[derive(Clone, Debug)]
pub struct FrameReader {
    partial: Vec<u8>,
    limit: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_RECORD)
    }
}

impl FrameReader {
    /// A reader that accepts records of up to `limit` bytes (at least 1).
    pub fn new(limit: usize) -> Self {
        Self {
            partial: Vec::new(),
            limit: limit.max(1),
        }
    }

    /// The record size limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of an unfinished record waiting for the rest.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Adds one websocket message and returns the records it completes, in
    /// order, without separators; empty records (consecutive separators,
    /// blanks) are skipped. A record longer than the limit is an error, after
    /// which the reader is empty again (the connection should be dropped).
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let mut out = Vec::new();
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|b| *b == RECORD_SEPARATOR) {
            let (head, tail) = rest.split_at(pos);
            let size = self.partial.len() + head.len();
            if size > self.limit {
                self.partial.clear();
                return Err(ProtocolError::FrameTooLarge {
                    size,
                    limit: self.limit,
                });
            }
            let mut record = std::mem::take(&mut self.partial);
            record.extend_from_slice(head);
            if !record.iter().all(u8::is_ascii_whitespace) {
                out.push(record);
            }
            rest = tail.get(1..).unwrap_or_default();
        }
        let size = self.partial.len() + rest.len();
        if size > self.limit {
            self.partial.clear();
            return Err(ProtocolError::FrameTooLarge {
                size,
                limit: self.limit,
            });
        }
        self.partial.extend_from_slice(rest);
        Ok(out)
    }

    /// Forgets an unfinished record.
    pub fn clear(&mut self) {
        self.partial.clear();
    }
}

/// For a close record: the `allowReconnect` it states, `None` when absent
/// or not a boolean (or when the record is not a close message).
pub(crate) fn stated_allow_reconnect(record: &[u8]) -> Option<bool> {
    let map = object_of(record).ok()?;
    if map.get("type").and_then(Value::as_u64) != Some(message_type::CLOSE) {
        return None;
    }
    map.get("allowReconnect").and_then(Value::as_bool)
}

fn object_of(record: &[u8]) -> Result<Map<String, Value>, ProtocolError> {
    match serde_json::from_slice::<Value>(record) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ProtocolError::NotJson(format!(
            "a JSON {} instead of an object",
            kind_of(&other)
        ))),
        Err(e) => Err(ProtocolError::NotJson(e.to_string())),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A string member as itself, anything else as its JSON text.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Invocation { target, .. } => write!(f, "invocation of {target}"),
            Message::Ping => f.write_str("ping"),
            Message::Close { error, .. } => match error {
                Some(e) => write!(f, "close ({e})"),
                None => f.write_str("close"),
            },
            Message::Other { kind } => write!(f, "message of type {kind}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn negotiate_v1_uses_the_token() {
        let body = br#"{"negotiateVersion":1,"connectionId":"abc","connectionToken":"tok",
            "availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]},
            {"transport":"LongPolling","transferFormats":["Text"]}]}"#;
        let n = NegotiateResponse::parse(body).unwrap();
        assert_eq!(n.version, 1);
        assert_eq!(n.connection_key(), "tok");
        assert_eq!(n.transports, vec!["WebSockets", "LongPolling"]);
        assert!(n.offers_websockets());
    }

    #[test]
    fn negotiate_v0_uses_the_id() {
        let n = NegotiateResponse::parse(br#"{"connectionId":"id-0","availableTransports":[]}"#)
            .unwrap();
        assert_eq!(n.version, 0);
        assert_eq!(n.connection_key(), "id-0");
        let n = NegotiateResponse::parse(
            br#"{"negotiateVersion":0,"connectionId":"id-0","connectionToken":""}"#,
        )
        .unwrap();
        assert_eq!(n.connection_key(), "id-0");
    }

    #[test]
    fn negotiate_rejects_errors_redirects_and_garbage() {
        for body in [
            &br#"{"error":"Negotiate version 1 is not supported"}"#[..],
            br#"{"url":"https://elsewhere","accessToken":"x"}"#,
            br#"{"negotiateVersion":1}"#,
            b"[]",
            b"",
            b"<html>",
            br#"{"connectionId":5}"#,
        ] {
            assert!(
                matches!(
                    NegotiateResponse::parse(body),
                    Err(ProtocolError::Negotiate(_))
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let n = NegotiateResponse::parse(
            br#"{"connectionId":"a","availableTransports":[{"transport":"LongPolling"}]}"#,
        )
        .unwrap();
        assert!(!n.offers_websockets());
    }

    #[test]
    fn handshake_request_and_answers() {
        let req = handshake_request();
        assert_eq!(req.last(), Some(&RECORD_SEPARATOR));
        let v: Value = serde_json::from_slice(&req[..req.len() - 1]).unwrap();
        assert_eq!(v, json!({"protocol": "json", "version": 1}));
        assert_eq!(parse_handshake_response(b"{}"), Ok(()));
        assert_eq!(parse_handshake_response(br#"{"minorVersion":0}"#), Ok(()));
        assert_eq!(parse_handshake_response(br#"{"error":null}"#), Ok(()));
        assert_eq!(
            parse_handshake_response(br#"{"error":"The protocol 'x' is not supported."}"#),
            Err(ProtocolError::HandshakeRefused(
                "The protocol 'x' is not supported.".into()
            ))
        );
        assert!(matches!(
            parse_handshake_response(b"nope"),
            Err(ProtocolError::NotJson(_))
        ));
        assert!(matches!(
            parse_handshake_response(b"[1]"),
            Err(ProtocolError::NotJson(_))
        ));
    }

    #[test]
    fn several_records_in_one_message() {
        let mut r = FrameReader::new(1024);
        let recs = r
            .push(b"{\"type\":6}\x1e{\"type\":6}\x1e\x1e  \x1e{\"type\":7}\x1e")
            .unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(
            Message::parse(&recs[2]).unwrap(),
            Message::Close {
                error: None,
                allow_reconnect: false
            }
        );
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn one_record_across_messages() {
        let frame = Message::Invocation {
            invocation_id: None,
            target: "NotifyEventAsync".into(),
            arguments: vec![json!({"Name": "UserCreated", "Data": {"Id": 7, "Text": "é\u{1e}"}})],
        }
        .encode();
        // The separator inside a JSON string is escaped by the encoder.
        assert_eq!(frame.iter().filter(|b| **b == RECORD_SEPARATOR).count(), 1);
        for split in [1, 2, 10, frame.len() - 1] {
            let mut r = FrameReader::new(1024);
            let mut got = Vec::new();
            for chunk in frame.chunks(split) {
                got.extend(r.push(chunk).unwrap());
            }
            assert_eq!(got.len(), 1, "split {split}");
            assert_eq!(&got[0][..], &frame[..frame.len() - 1]);
            let msg = Message::parse(&got[0]).unwrap();
            assert!(
                matches!(msg, Message::Invocation { ref target, .. } if target == "NotifyEventAsync")
            );
        }
    }

    #[test]
    fn the_buffer_is_bounded() {
        let mut r = FrameReader::new(16);
        assert_eq!(r.push(b"0123456789").unwrap().len(), 0);
        assert_eq!(
            r.push(b"0123456789"),
            Err(ProtocolError::FrameTooLarge {
                size: 20,
                limit: 16
            })
        );
        assert_eq!(r.pending(), 0);
        // A complete record that is too large is refused too.
        assert!(matches!(
            r.push(b"{\"type\":6,\"pad\":\"xxxxxxxx\"}\x1e"),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        // The reader keeps working afterwards.
        assert_eq!(r.push(b"{\"type\":6}\x1e").unwrap().len(), 1);
        // Exactly at the limit is fine.
        let mut r = FrameReader::new(10);
        assert_eq!(r.push(b"{\"type\":6}\x1e").unwrap().len(), 1);
        assert_eq!(FrameReader::new(0).limit(), 1);
    }

    #[test]
    fn invocation_ping_close_and_others() {
        let m = Message::parse(
            br#"{"type":1,"target":"ReceiveMessage","arguments":["x",2],"invocationId":"9"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            Message::Invocation {
                invocation_id: Some("9".into()),
                target: "ReceiveMessage".into(),
                arguments: vec![json!("x"), json!(2)],
            }
        );
        assert_eq!(
            Message::parse(br#"{"type":1,"target":"T"}"#).unwrap(),
            Message::Invocation {
                invocation_id: None,
                target: "T".into(),
                arguments: vec![]
            }
        );
        assert_eq!(Message::parse(br#"{"type":6}"#).unwrap(), Message::Ping);
        assert_eq!(
            Message::parse(
                br#"{"type":7,"error":"Server is shutting down","allowReconnect":true}"#
            )
            .unwrap(),
            Message::Close {
                error: Some("Server is shutting down".into()),
                allow_reconnect: true
            }
        );
        assert_eq!(
            Message::parse(br#"{"type":3,"invocationId":"1"}"#).unwrap(),
            Message::Other { kind: 3 }
        );
        for bad in [
            &br#"{"type":1}"#[..],
            br#"{"type":1,"target":5}"#,
            br#"{"type":1,"target":"T","arguments":{}}"#,
            br#"{"type":"1"}"#,
            br#"{"type":-1}"#,
            br#"{}"#,
            b"null",
            b"\xff\xfe",
            b"{\"type\":",
        ] {
            assert!(
                Message::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stated_allow_reconnect_tells_absent_from_false() {
        let f = |r: &str| stated_allow_reconnect(r.as_bytes());
        assert_eq!(f(r#"{"type":7,"allowReconnect":false}"#), Some(false));
        assert_eq!(
            f(r#"{"type":7,"error":"x","allowReconnect":true}"#),
            Some(true)
        );
        assert_eq!(f(r#"{"type":7,"error":"x"}"#), None);
        assert_eq!(f(r#"{"type":7,"allowReconnect":"no"}"#), None);
        assert_eq!(f(r#"{"type":6,"allowReconnect":false}"#), None);
        assert_eq!(f("not json"), None);
    }

    #[test]
    fn encode_round_trips() {
        for m in [
            Message::Ping,
            Message::Close {
                error: Some("bye".into()),
                allow_reconnect: true,
            },
            Message::Close {
                error: None,
                allow_reconnect: false,
            },
            Message::Invocation {
                invocation_id: Some("1".into()),
                target: "Echo".into(),
                arguments: vec![json!({"a": [1, 2]}), json!(null)],
            },
            Message::Other { kind: 5 },
        ] {
            let bytes = m.encode();
            let mut r = FrameReader::default();
            let recs = r.push(&bytes).unwrap();
            assert_eq!(recs.len(), 1);
            assert_eq!(Message::parse(&recs[0]).unwrap(), m);
            assert!(!m.to_string().is_empty());
        }
    }
}
