//! A date-time as the appliance writes it, decoded leniently.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A date-time field of the Safeguard API.
///
/// The appliance writes RFC 3339 date-times, but also date-times without an
/// offset (`2024-01-01T00:00:00`, meaning UTC) and, on some fields, other
/// shapes. A strict `DateTime<Utc>` would make a whole response fail to decode;
/// `Timestamp` accepts any string, keeps it exactly (it is sent back unchanged
/// on a read-modify-write), and parses it on demand.
///
/// ```
/// use safeguard_api_types::Timestamp;
/// let t: Timestamp = "2024-01-01T00:00:00".parse().unwrap();
/// assert_eq!(t.to_utc().unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
/// let odd: Timestamp = serde_json::from_str("\"not a date\"").unwrap();
/// assert_eq!(odd.as_str(), "not a date");
/// assert!(odd.to_utc().is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(String);

impl Timestamp {
    /// The text as the appliance sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The instant in UTC: RFC 3339 with any offset, or without an offset
    /// (taken as UTC), with or without fractional seconds. `None` when the
    /// text is not a date-time.
    pub fn to_utc(&self) -> Option<DateTime<Utc>> {
        let s = self.0.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(t.with_timezone(&Utc));
        }
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                return Some(t.and_utc());
            }
        }
        None
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl From<String> for Timestamp {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl FromStr for Timestamp {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({:?})", self.0)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "date-time" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_shapes_the_appliance_sends() {
        let cases = [
            ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00+00:00"),
            ("2024-01-01T02:00:00+02:00", "2024-01-01T00:00:00+00:00"),
            ("2024-01-01T00:00:00", "2024-01-01T00:00:00+00:00"),
            (
                "2024-01-01T00:00:00.1234567",
                "2024-01-01T00:00:00.123456700+00:00",
            ),
            ("2024-01-01 00:00:00", "2024-01-01T00:00:00+00:00"),
        ];
        for (text, utc) in cases {
            let t: Timestamp = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(t.to_utc().unwrap().to_rfc3339(), utc, "{text}");
            assert_eq!(serde_json::to_value(&t).unwrap(), serde_json::json!(text));
        }
    }

    #[test]
    fn keeps_what_it_cannot_parse() {
        let t: Timestamp = serde_json::from_str("\"0001-13-45\"").unwrap();
        assert!(t.to_utc().is_none());
        assert_eq!(t.to_string(), "0001-13-45");
    }

    #[test]
    fn round_trips_from_chrono() {
        let now = Utc::now();
        let t = Timestamp::from(now);
        assert_eq!(t.to_utc().unwrap(), now);
    }
}
