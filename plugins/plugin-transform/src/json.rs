//! A JSON document whose objects keep their members in the order they were written, so that a body
//! the rules change leaves the gateway with its other fields where the client (or the upstream) put
//! them. (serde_json's own `Value` sorts them unless its `preserve_order` feature is on, and that
//! feature would change every plugin of the workspace, which are built together.)

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// A JSON value; numbers are serde_json's (integers within 64 bits exact, others as `f64`).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object, its members in document order (a repeated name keeps its first place and its last
    /// value, as serde_json reads it).
    Object(IndexMap<String, Json>),
}

impl Json {
    /// Reads a JSON text (RFC 8259; at most 128 levels deep, serde_json's limit).
    pub fn parse(text: &[u8]) -> Result<Json, String> {
        serde_json::from_slice(text).map_err(|e| e.to_string())
    }

    /// The compact JSON text.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Json value always serializes")
    }

    /// An empty object.
    pub fn object() -> Json {
        Json::Object(IndexMap::new())
    }
}

impl From<&Value> for Json {
    fn from(v: &Value) -> Json {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(s.clone()),
            Value::Array(a) => Json::Array(a.iter().map(Json::from).collect()),
            Value::Object(m) => {
                Json::Object(m.iter().map(|(k, v)| (k.clone(), v.into())).collect())
            }
        }
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(t) => s.serialize_str(t),
            Json::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Json::Object(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

/// The key serde_json's `arbitrary_precision` feature writes a number under.
const ARBITRARY_NUMBER: &str = "$serde_json::private::Number";

/// Whether serde_json was built with `arbitrary_precision` (its numbers keep their text).
fn arbitrary_precision() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        "1e2"
            .parse::<serde_json::Number>()
            .is_ok_and(|n| n.to_string() == "1e2")
    })
}

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(n)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Json::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = IndexMap::new();
        while let Some(k) = map.next_key::<String>()? {
            // serde_json with `arbitrary_precision` (a feature any crate of the workspace could turn
            // on for all) hands a number over as a map with this one key and the number's text.
            if members.is_empty() && k == ARBITRARY_NUMBER && arbitrary_precision() {
                let text: String = map.next_value()?;
                return text.parse().map(Json::Number).map_err(de::Error::custom);
            }
            let v = map.next_value()?;
            members.insert(k, v);
        }
        Ok(Json::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        String::from_utf8(Json::parse(text.as_bytes()).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn members_keep_their_order() {
        assert_eq!(
            round_trip(r#"{"z": 1, "a": {"y": [true, null], "b": "x"}, "m": -2.5}"#),
            r#"{"z":1,"a":{"y":[true,null],"b":"x"},"m":-2.5}"#
        );
        // A repeated name keeps its first place and its last value.
        assert_eq!(round_trip(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn numbers_within_64_bits_are_exact() {
        assert_eq!(
            round_trip("[18446744073709551615, -9223372036854775808, 0.1, 1e2]"),
            "[18446744073709551615,-9223372036854775808,0.1,100.0]"
        );
    }

    #[test]
    fn a_member_named_like_serde_jsons_number_is_a_member() {
        assert!(!arbitrary_precision());
        assert_eq!(
            round_trip(r#"{"$serde_json::private::Number": "12"}"#),
            r#"{"$serde_json::private::Number":"12"}"#
        );
    }

    #[test]
    fn text_that_is_not_json_is_an_error() {
        for bad in ["", "{", "{\"a\":}", "[1,]", "nope", "{\"a\":1} x"] {
            assert!(Json::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(Json::parse(deep.as_bytes())
            .unwrap_err()
            .contains("recursion limit"));
    }

    #[test]
    fn from_a_config_value() {
        let v: Value = serde_json::from_str(r#"{"a": [1, "x", null, false]}"#).unwrap();
        assert_eq!(
            Json::from(&v).to_vec(),
            br#"{"a":[1,"x",null,false]}"#.to_vec()
        );
    }
}
