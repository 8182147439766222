//! The pieces the generated `Deserialize` impls share (see
//! `safeguard_codegen::lean_serde`): field lookup without a per-type
//! identifier enum, and string enums decoded through their `FromStr`.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, Deserializer, Unexpected, Visitor};

/// The index of an object key in a list of field names sorted by
/// [`Field::order`], or [`Field::UNKNOWN`] for a key the type does not have
/// (it is skipped, so that a newer appliance's fields decode).
#[derive(Clone, Copy, Debug)]
pub struct Field(pub &'static [&'static str]);

impl Field {
    /// What an unknown key maps to.
    pub const UNKNOWN: usize = usize::MAX;

    /// The order of the name list: by length, then by bytes. Most probes
    /// of the binary search then compare two lengths, not two strings.
    pub fn order(a: &str, b: &str) -> std::cmp::Ordering {
        a.len()
            .cmp(&b.len())
            .then_with(|| a.as_bytes().cmp(b.as_bytes()))
    }

    fn index(self, key: &str) -> usize {
        self.0
            .binary_search_by(|name| Self::order(name, key))
            .unwrap_or(Self::UNKNOWN)
    }
}

impl<'de> DeserializeSeed<'de> for Field {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for Field {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<usize, E> {
        Ok(self.index(key))
    }

    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<usize, E> {
        Ok(std::str::from_utf8(key).map_or(Self::UNKNOWN, |key| self.index(key)))
    }
}

/// Decodes a string enum through its `FromStr`; `name` is the type's name,
/// for the error on a value it does not know.
pub fn known<'de, D, T>(deserializer: D, name: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
{
    deserializer.deserialize_str(Known(name, PhantomData))
}

struct Known<T>(&'static str, PhantomData<T>);

impl<T: FromStr> Visitor<'_> for Known<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} value", self.0)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        value
            .parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(value), &self))
    }
}

/// Decodes a tolerant enum (a known value, or any other string kept as
/// is): `known` wraps a value `K::from_str` accepts, `other` the rest.
pub fn tolerant<'de, D, K, T>(
    deserializer: D,
    known: fn(K) -> T,
    other: fn(String) -> T,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    K: FromStr,
{
    deserializer.deserialize_str(Tolerant { known, other })
}

struct Tolerant<K, T> {
    known: fn(K) -> T,
    other: fn(String) -> T,
}

impl<K: FromStr, T> Visitor<'_> for Tolerant<K, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        Ok(match value.parse() {
            Ok(known) => (self.known)(known),
            Err(_) => (self.other)(value.to_owned()),
        })
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<T, E> {
        Ok(match value.parse() {
            Ok(known) => (self.known)(known),
            Err(_) => (self.other)(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{IgnoredAny, MapAccess};
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Clone, Copy)]
    enum Color {
        Red,
        Blue,
    }

    impl FromStr for Color {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            match s {
                "Red" => Ok(Self::Red),
                "Blue" => Ok(Self::Blue),
                _ => Err(()),
            }
        }
    }

    impl<'de> Deserialize<'de> for Color {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            known(d, "Color")
        }
    }

    #[derive(Debug, PartialEq)]
    enum Tint {
        Known(Color),
        Other(String),
    }

    impl<'de> Deserialize<'de> for Tint {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            tolerant(d, Self::Known, Self::Other)
        }
    }

    /// Shaped like the generated impls: locals, a keyed match, unknown keys
    /// skipped.
    #[derive(Debug, PartialEq, Default)]
    struct Paint {
        name: Option<String>,
        tint: Option<Tint>,
        coats: i64,
    }

    impl<'de> Deserialize<'de> for Paint {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Paint;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a Paint object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Paint, A::Error> {
                    let mut f0: Option<String> = None;
                    let mut f1: Option<Tint> = None;
                    let mut f2: Option<i64> = None;
                    while let Some(k) = map.next_key_seed(Field(&["Name", "Tint", "Coats"]))? {
                        match k {
                            0 => f0 = map.next_value()?,
                            1 => f1 = map.next_value()?,
                            2 => f2 = Some(map.next_value()?),
                            _ => {
                                map.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    Ok(Paint {
                        name: f0,
                        tint: f1,
                        coats: f2.ok_or_else(|| de::Error::missing_field("Coats"))?,
                    })
                }
            }
            d.deserialize_map(V)
        }
    }

    #[test]
    fn fields_are_found_and_unknown_keys_skipped() {
        let p: Paint = serde_json::from_str(
            r#"{"Extra":{"deep":[1,2,{"x":null}]},"Name":"n","Tint":"Red","Coats":2,"Zzz":1}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            Paint {
                name: Some("n".into()),
                tint: Some(Tint::Known(Color::Red)),
                coats: 2
            }
        );
        let p: Paint = serde_json::from_str(r#"{"Coats":1,"Name":null}"#).unwrap();
        assert_eq!(p.name, None);
        let p: Paint =
            serde_json::from_value(serde_json::json!({"Coats": 3, "Tint": "Mauve"})).unwrap();
        assert_eq!(p.tint, Some(Tint::Other("Mauve".into())));
    }

    #[test]
    fn missing_required_and_wrong_shapes_are_errors() {
        let e = serde_json::from_str::<Paint>(r#"{"Name":"n"}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `Coats`"), "{e}");
        let e = serde_json::from_str::<Paint>(r#"["n", "Red", 1]"#).unwrap_err();
        assert!(e.to_string().contains("a Paint object"), "{e}");
        let e = serde_json::from_str::<Paint>(r#"{"Coats":"two"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = serde_json::from_str::<Paint>(r#"{"Coats":1,"Name":"#).unwrap_err();
        assert!(e.is_eof(), "{e}");
    }

    #[test]
    fn string_enums_decode_through_from_str() {
        assert_eq!(
            serde_json::from_str::<Color>(r#""Blue""#).unwrap(),
            Color::Blue
        );
        let e = serde_json::from_str::<Color>(r#""Mauve""#).unwrap_err();
        assert!(e.to_string().contains("a Color value"), "{e}");
        assert!(serde_json::from_str::<Color>("1").is_err());
    }

    #[test]
    fn tolerant_enums_keep_unknown_strings_and_refuse_other_types() {
        assert_eq!(
            serde_json::from_str::<Tint>(r#""Red""#).unwrap(),
            Tint::Known(Color::Red)
        );
        assert_eq!(
            serde_json::from_str::<Tint>(r#""Ultra\u0020violet""#).unwrap(),
            Tint::Other("Ultra violet".into())
        );
        assert!(serde_json::from_str::<Tint>("1").is_err());
        assert!(serde_json::from_str::<Tint>("null").is_err());
    }

    #[test]
    fn names_are_found_in_length_then_byte_order() {
        const NAMES: &[&str] = &["a", "Id", "id", "Name", "Tint", "Coats", "ZZZZZZ"];
        let names = NAMES;
        assert!(names
            .windows(2)
            .all(|w| Field::order(w[0], w[1]) == std::cmp::Ordering::Less));
        for (i, name) in names.iter().enumerate() {
            assert_eq!(Field(names).index(name), i);
        }
        for absent in ["", "b", "ID", "Nam", "Names", "zzzzzz"] {
            assert_eq!(Field(names).index(absent), Field::UNKNOWN, "{absent}");
        }
    }

    #[test]
    fn non_utf8_keys_are_unknown() {
        use serde::de::value::{BytesDeserializer, Error};
        let d = BytesDeserializer::<Error>::new(b"\xff\xfe");
        assert_eq!(Field(&["A"]).deserialize(d).unwrap(), Field::UNKNOWN);
        let d = BytesDeserializer::<Error>::new(b"A");
        assert_eq!(Field(&["A"]).deserialize(d).unwrap(), 0);
    }

    /// The same types with serde's derives, as typify writes them.
    mod derived {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        pub enum Color {
            Red,
            Blue,
        }

        #[derive(Debug, PartialEq, serde::Deserialize)]
        #[serde(untagged)]
        pub enum Tint {
            Known(Color),
            Other(String),
        }

        #[derive(Debug, PartialEq, serde::Deserialize)]
        pub struct Paint {
            #[serde(rename = "Name")]
            pub name: Option<String>,
            #[serde(rename = "Tint")]
            pub tint: Option<Tint>,
            #[serde(rename = "Coats")]
            pub coats: i64,
        }
    }

    fn same(lean: &Paint, derived: &derived::Paint) -> bool {
        let tint = match (&lean.tint, &derived.tint) {
            (None, None) => true,
            (Some(Tint::Known(a)), Some(derived::Tint::Known(b))) => {
                format!("{a:?}") == format!("{b:?}")
            }
            (Some(Tint::Other(a)), Some(derived::Tint::Other(b))) => a == b,
            _ => false,
        };
        tint && lean.name == derived.name && lean.coats == derived.coats
    }

    fn scalar() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[A-Za-z ]{0,8}".prop_map(Value::from),
            prop_oneof![Just("Red"), Just("Blue")].prop_map(Value::from),
        ]
    }

    fn value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        scalar().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[A-Za-z]{1,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// On any object, the lean impls decode what serde's derives decode
        /// and fail where they fail. (Tints are strings or scalars: serde's
        /// untagged enum also reads a number as a variant index, which the
        /// appliance never sends.)
        #[test]
        fn lean_impls_agree_with_serde_derive(
            name in proptest::option::of(value()),
            tint in proptest::option::of(scalar().prop_filter("not a number", |v| !v.is_number())),
            coats in proptest::option::of(value()),
            extra in proptest::collection::btree_map("[A-Za-z]{1,6}", value(), 0..4),
        ) {
            let mut object: serde_json::Map<String, serde_json::Value> = extra.into_iter().collect();
            for (key, v) in [("Name", name), ("Tint", tint), ("Coats", coats)] {
                if let Some(v) = v {
                    object.insert(key.to_owned(), v);
                }
            }
            let text = serde_json::Value::Object(object).to_string();
            let lean = serde_json::from_str::<Paint>(&text);
            let derived = serde_json::from_str::<derived::Paint>(&text);
            match (&lean, &derived) {
                (Ok(l), Ok(d)) => proptest::prop_assert!(same(l, d), "{text}: {l:?} vs {d:?}"),
                (Err(_), Err(_)) => {}
                _ => proptest::prop_assert!(false, "{text}: {lean:?} vs {derived:?}"),
            }
        }
    }
}
