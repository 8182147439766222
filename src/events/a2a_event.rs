//! The A2A events as types: [`A2aEvent`] (what changed, on which account)
//! read from an untyped [`Event`] with [`Event::as_a2a`].
//!
//! # The body
//!
//! The appliance sends the account and asset of the change in the event's
//! `Data`: `AccountId`, `AccountName`, `AssetId`, `AssetName`, next to the
//! fields every event carries (`EventName`, `EventTimestamp`,
//! `ApplianceId`, ...). Where that shape comes from:
//!
//! - One Identity's SafeguardDevOpsService reads `AssetName` and
//!   `AccountName` from the body of `AssetAccountPasswordUpdated` to find the
//!   account that changed (`SafeguardDevOpsService/Data/EventInfo.cs`, used
//!   by the password change handler of its monitoring logic), as does the
//!   `SampleA2aService` of SafeguardDotNet.
//! - PySafeguard's event tests (`tests/test_event.py`) feed A2A events whose
//!   `Data` holds `EventName` and `AccountId`, sometimes as an object and
//!   sometimes as a JSON *string* holding one, with a numeric `Name`.
//! - This project's emulator (`emulator/src/api/core.rs`,
//!   `set_account_password` and `set_account_ssh_key`) sends `AccountId`,
//!   `AccountName`, `AssetId`, `AssetName` and `EventDisplayName`.
//!
//! The reading is lenient, since no document fixes the shape: every field
//! may be missing, `null` or of another type (an id given as a string is
//! read; one that is not a whole number in range is `None`), keys are
//! matched exactly first and then ignoring case, a `Data` that is a JSON
//! string is read as the object it holds, and unknown fields are ignored.
//! Nothing in a body makes it panic (a property test feeds it arbitrary
//! JSON).

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::Event;

/// Which credential an A2A event says has changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum A2aEventKind {
    /// `AssetAccountPasswordUpdated`: an account's password.
    PasswordUpdated,
    /// `AssetAccountSshKeyUpdated`: an account's SSH key.
    SshKeyUpdated,
    /// `AccountApiKeySecretUpdated`: an account's API key secrets.
    ApiKeySecretUpdated,
}

impl A2aEventKind {
    /// Every kind, in the order of [`A2A_EVENTS`](super::A2A_EVENTS).
    pub const ALL: [A2aEventKind; 3] = [
        A2aEventKind::PasswordUpdated,
        A2aEventKind::SshKeyUpdated,
        A2aEventKind::ApiKeySecretUpdated,
    ];

    /// The event's name as the appliance sends it.
    pub fn name(self) -> &'static str {
        match self {
            A2aEventKind::PasswordUpdated => "AssetAccountPasswordUpdated",
            A2aEventKind::SshKeyUpdated => "AssetAccountSshKeyUpdated",
            A2aEventKind::ApiKeySecretUpdated => "AccountApiKeySecretUpdated",
        }
    }

    /// The kind an event name stands for (any case, surrounding blanks
    /// ignored), or `None` for any other event.
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for A2aEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for A2aEventKind {
    type Err = crate::Error;

    /// An A2A event name, any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| {
            crate::Error::Config(format!(
                "unknown A2A event {s:?}: expected one of {}",
                Self::ALL.map(Self::name).join(", ")
            ))
        })
    }
}

/// An A2A event, typed: which credential of which account changed. Holds
/// no secret (the events never carry one; pull the new value through A2A).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct A2aEvent {
    /// What changed.
    pub kind: A2aEventKind,
    /// The account's id (`AccountId`).
    pub account_id: Option<i64>,
    /// The account's name (`AccountName`).
    pub account_name: Option<String>,
    /// The asset's id (`AssetId`).
    pub asset_id: Option<i64>,
    /// The asset's name (`AssetName`).
    pub asset_name: Option<String>,
    /// When the appliance says it happened (`EventTimestamp`), as sent.
    pub timestamp: Option<String>,
}

impl A2aEvent {
    /// Reads an A2A event from its name and body (the event's `Data`: an
    /// object, or a JSON string holding one). `None` when the name is not
    /// one of the A2A events and the body's `EventName` is not either.
    pub fn parse(name: &str, body: &Value) -> Option<A2aEvent> {
        let parsed;
        let fields: Option<&Map<String, Value>> = match body {
            Value::Object(m) => Some(m),
            Value::String(s) => {
                parsed = serde_json::from_str::<Value>(s).ok();
                parsed.as_ref().and_then(Value::as_object)
            }
            _ => None,
        };
        let kind = A2aEventKind::from_name(name).or_else(|| {
            fields
                .and_then(|f| field(f, "EventName"))
                .and_then(Value::as_str)
                .and_then(A2aEventKind::from_name)
        })?;
        let get = |key: &str| fields.and_then(|f| field(f, key));
        Some(A2aEvent {
            kind,
            account_id: get("AccountId").and_then(id),
            account_name: get("AccountName").and_then(text),
            asset_id: get("AssetId").and_then(id),
            asset_name: get("AssetName").and_then(text),
            timestamp: get("EventTimestamp").and_then(text),
        })
    }
}

impl fmt::Display for A2aEvent {
    /// `AssetAccountPasswordUpdated for account 12 (root) on asset 3 (db1)`,
    /// leaving out what the event did not say.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part(
            f: &mut fmt::Formatter<'_>,
            what: &str,
            id: Option<i64>,
            name: Option<&str>,
        ) -> fmt::Result {
            match (id, name) {
                (Some(id), Some(name)) => write!(f, " {what} {id} ({name})"),
                (Some(id), None) => write!(f, " {what} {id}"),
                (None, Some(name)) => write!(f, " {what} {name}"),
                (None, None) => Ok(()),
            }
        }
        f.write_str(self.kind.name())?;
        if self.account_id.is_some() || self.account_name.is_some() {
            f.write_str(" for")?;
            part(f, "account", self.account_id, self.account_name.as_deref())?;
        }
        if self.asset_id.is_some() || self.asset_name.is_some() {
            f.write_str(" on")?;
            part(f, "asset", self.asset_id, self.asset_name.as_deref())?;
        }
        Ok(())
    }
}

impl Event {
    /// This event as an [`A2aEvent`], when it is one of the
    /// [`A2A_EVENTS`](super::A2A_EVENTS) (by its name, or by the `EventName`
    /// of its body); `None` for every other event. The body is read
    /// leniently (see [`A2aEvent`]); the event itself is left as it is.
    pub fn as_a2a(&self) -> Option<A2aEvent> {
        A2aEvent::parse(&self.name, &self.body)
    }
}

/// `key` in `fields`: exactly, else ignoring case.
fn field<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    fields.get(key).or_else(|| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A whole number in `i64`'s range, given as a number or a string.
fn id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            // Whole and strictly inside the range (i64::MAX itself is not
            // representable as f64, and the cast would saturate).
            (f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63)).then_some(f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A non-blank string (numbers and booleans as their text).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event(argument: Value) -> Event {
        Event::from_argument(&argument).expect("an event")
    }

    #[test]
    fn the_emulators_password_event() {
        // The body emulator/src/api/core.rs sends, with what emit() adds.
        let e = event(json!({"Name": "AssetAccountPasswordUpdated", "Data": {
            "AccountId": 12, "AccountName": "root", "AssetId": 3, "AssetName": "db1",
            "EventDisplayName": "Asset Account Password Updated",
            "EventName": "AssetAccountPasswordUpdated", "ApplianceId": "ABC",
            "EventTimestamp": "2026-12-04T15:00:00Z"}}));
        let a2a = e.as_a2a().expect("an A2A event");
        assert_eq!(
            a2a,
            A2aEvent {
                kind: A2aEventKind::PasswordUpdated,
                account_id: Some(12),
                account_name: Some("root".into()),
                asset_id: Some(3),
                asset_name: Some("db1".into()),
                timestamp: Some("2026-12-04T15:00:00Z".into()),
            }
        );
        assert_eq!(
            a2a.to_string(),
            "AssetAccountPasswordUpdated for account 12 (root) on asset 3 (db1)"
        );
    }

    #[test]
    fn every_kind_by_name_in_any_case() {
        for kind in A2aEventKind::ALL {
            let e = event(json!({"Name": kind.name().to_lowercase(), "Data": {}}));
            assert_eq!(e.as_a2a().map(|a| a.kind), Some(kind));
            assert_eq!(kind.name().parse::<A2aEventKind>().unwrap(), kind);
        }
        assert_eq!(
            A2aEventKind::ALL.map(A2aEventKind::name),
            super::super::A2A_EVENTS
        );
        assert!("UserCreated".parse::<A2aEventKind>().is_err());
    }

    #[test]
    fn other_events_are_not_a2a() {
        let e = event(json!({"Name": "UserCreated", "Data": {"AccountId": 1}}));
        assert_eq!(e.as_a2a(), None);
        let e = event(json!({"Name": "AssetAccountCreated", "Data": {"AccountId": 1}}));
        assert_eq!(e.as_a2a(), None);
    }

    #[test]
    fn a_numeric_name_and_a_string_body_as_pysafeguard_tests_them() {
        // Name numeric, Data a JSON string: Event keeps the numeric name (it
        // cannot look inside the string); as_a2a reads EventName there.
        let inner = json!({"EventName": "AssetAccountSshKeyUpdated", "AccountId": 7}).to_string();
        let e = event(json!({"Name": "123", "Data": inner}));
        assert_eq!(e.name, "123");
        let a2a = e.as_a2a().expect("read from the string body");
        assert_eq!(a2a.kind, A2aEventKind::SshKeyUpdated);
        assert_eq!(a2a.account_id, Some(7));
        assert_eq!(a2a.asset_name, None);
        // Name numeric, Data an object: Event takes Data.EventName already.
        let e = event(
            json!({"Name": 123, "Data": {"EventName": "AccountApiKeySecretUpdated", "AccountId": "8"}}),
        );
        let a2a = e.as_a2a().unwrap();
        assert_eq!(a2a.kind, A2aEventKind::ApiKeySecretUpdated);
        assert_eq!(a2a.account_id, Some(8));
        assert_eq!(a2a.to_string(), "AccountApiKeySecretUpdated for account 8");
    }

    #[test]
    fn missing_and_mistyped_fields_are_none() {
        let e = event(json!({"Name": "AssetAccountPasswordUpdated", "Data": {
            "AccountId": "not a number", "AccountName": "  ", "AssetId": 1.5,
            "AssetName": {"nested": true}, "EventTimestamp": null, "Extra": [1, 2]}}));
        let a2a = e.as_a2a().unwrap();
        assert_eq!(a2a.to_string(), "AssetAccountPasswordUpdated");
        assert_eq!(
            (
                a2a.account_id,
                a2a.account_name,
                a2a.asset_id,
                a2a.asset_name,
                a2a.timestamp
            ),
            (None, None, None, None, None)
        );
        // No Data at all, a scalar Data, a string that is no JSON object.
        for data in [Value::Null, json!(5), json!("not json"), json!("[1,2]")] {
            let a2a = A2aEvent::parse("AssetAccountPasswordUpdated", &data).unwrap();
            assert_eq!(a2a.account_id, None);
        }
        assert_eq!(A2aEvent::parse("Other", &json!("not json")), None);
    }

    #[test]
    fn ids_are_read_leniently_and_within_range() {
        let read = |v: Value| id(&v);
        assert_eq!(read(json!(42)), Some(42));
        assert_eq!(read(json!(-1)), Some(-1));
        assert_eq!(read(json!(" 42 ")), Some(42));
        assert_eq!(read(json!(42.0)), Some(42));
        assert_eq!(read(json!(i64::MAX)), Some(i64::MAX));
        assert_eq!(read(json!(u64::MAX)), None);
        assert_eq!(read(json!(1e300)), None);
        assert_eq!(read(json!(-1e300)), None);
        assert_eq!(read(json!("99999999999999999999")), None);
        assert_eq!(read(json!(true)), None);
    }

    #[test]
    fn keys_in_another_case_are_read() {
        let a2a = A2aEvent::parse(
            "assetaccountpasswordupdated",
            &json!({"accountid": 4, "ASSETNAME": "web"}),
        )
        .unwrap();
        assert_eq!(a2a.account_id, Some(4));
        assert_eq!(a2a.asset_name.as_deref(), Some("web"));
    }

    #[test]
    fn a_deeply_nested_string_body_does_not_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(A2aEvent::parse("AssetAccountPasswordUpdated", &Value::String(deep)).is_some());
        let deep = format!(
            "{{\"AccountId\":{}1{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let a2a = A2aEvent::parse("AssetAccountPasswordUpdated", &Value::String(deep)).unwrap();
        assert_eq!(a2a.account_id, None);
    }

    /// Arbitrary JSON, nested a few levels, with the A2A keys and names
    /// likely to appear.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("AccountId".to_owned()),
            Just("AccountName".to_owned()),
            Just("AssetId".to_owned()),
            Just("AssetName".to_owned()),
            Just("EventName".to_owned()),
            Just("EventTimestamp".to_owned()),
            Just("accountid".to_owned()),
            ".{0,12}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            prop_oneof![
                Just("AssetAccountPasswordUpdated".to_owned()),
                Just("accountapikeysecretupdated".to_owned()),
                "-?[0-9]{1,25}",
                ".{0,20}",
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever the hub sends as an event, reading it as an A2A event
        /// never panics, and what it reads agrees with the body.
        #[test]
        fn arbitrary_bodies_never_panic(
            name in prop_oneof![
                Just("AssetAccountPasswordUpdated".to_owned()),
                Just("AssetAccountSshKeyUpdated".to_owned()),
                Just("7".to_owned()),
                ".{0,30}",
            ],
            data in json_value(),
            as_string in any::<bool>(),
        ) {
            let data = if as_string { Value::String(data.to_string()) } else { data };
            let argument = json!({"Name": name, "Data": data});
            if let Some(e) = Event::from_argument(&argument) {
                if let Some(a2a) = e.as_a2a() {
                    let _ = a2a.to_string();
                    if A2aEventKind::from_name(&e.name).is_some() {
                        prop_assert_eq!(Some(a2a.kind), A2aEventKind::from_name(&e.name));
                    }
                }
            }
            let _ = A2aEvent::parse(&name, &data);
            let _ = Event::from_argument(&data).map(|e| e.as_a2a());
        }

        /// Well-formed bodies are read whole, as objects or as strings.
        #[test]
        fn well_formed_bodies_are_read(
            kind in prop::sample::select(A2aEventKind::ALL.to_vec()),
            account_id in any::<i64>(),
            asset_id in any::<i64>(),
            account_name in "[a-zA-Z0-9_.@-]{1,20}",
            asset_name in "[a-zA-Z0-9_. -]{0,19}[a-z]",
            as_string in any::<bool>(),
        ) {
            let body = json!({"AccountId": account_id, "AccountName": account_name,
                "AssetId": asset_id.to_string(), "AssetName": asset_name});
            let body = if as_string { Value::String(body.to_string()) } else { body };
            let a2a = A2aEvent::parse(kind.name(), &body).unwrap();
            prop_assert_eq!(a2a.kind, kind);
            prop_assert_eq!(a2a.account_id, Some(account_id));
            prop_assert_eq!(a2a.asset_id, Some(asset_id));
            prop_assert_eq!(a2a.account_name, Some(account_name));
            prop_assert_eq!(a2a.asset_name, Some(asset_name));
        }
    }
}
