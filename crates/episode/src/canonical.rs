//! Reading native JSON strictly and digesting it by meaning, not by bytes.
//!
//! [`read_json`] parses a document and refuses an object that names a key twice (JSON leaves that
//! undefined; parsers differ on which value wins, so a sender and Concordat could read two different
//! records from one payload). [`canonical_json`] writes a value in the JSON Canonicalization Scheme
//! (RFC 8785): object members sorted by the UTF-16 code units of their names, no whitespace, strings with
//! the minimal escapes of ECMAScript's `JSON.stringify`, and numbers as ECMAScript writes them.
//! [`canonical_digest`] is the SHA-256 of that text: the same record re-sent with other whitespace, key
//! order or number spelling gets the same digest, and so the same event ids.
//!
//! This module is not a JSON library: it relies on `serde_json` for parsing and for escaping strings,
//! whose rules are the ones RFC 8785 §3.2.2.2 names.

use std::cmp::Ordering;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::ids::Sha256Hex;

/// The start of the error message [`read_json`] gives for a key met twice in one object.
pub const DUPLICATE_KEY: &str = "duplicate object key";

/// Parses one JSON document, refusing any object that names the same key twice.
///
/// # Errors
/// The `serde_json` error, with its line and column; a repeated key is a data error whose message starts
/// with [`DUPLICATE_KEY`] (the key itself is not quoted: it may be anything the sender wrote).
pub fn read_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Parses `bytes` with [`read_json`] and returns the digest of its canonical form ([`canonical_digest`]).
///
/// # Errors
/// As [`read_json`].
pub fn json_payload_digest(bytes: &[u8]) -> Result<Sha256Hex, serde_json::Error> {
    read_json(bytes).map(|value| canonical_digest(&value))
}

/// The SHA-256 of `value`'s RFC 8785 canonical form.
pub fn canonical_digest(value: &Value) -> Sha256Hex {
    Sha256Hex::digest(canonical_json(value).as_bytes())
}

/// `value` in the JSON Canonicalization Scheme (RFC 8785).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number_text(number)),
        // serde_json escapes `"`, `\` and the control characters, using the short forms `\b \t \n \f \r` and
        // `\u00xx` in lower case for the rest, and nothing else: exactly RFC 8785 §3.2.2.2.
        Value::String(text) => out.push_str(&Value::String(text.clone()).to_string()),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| utf16_order(a.0, b.0));
            out.push('{');
            for (index, (key, item)) in members.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
    }
}

/// RFC 8785 §3.2.3: member names compare as arrays of UTF-16 code units.
fn utf16_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// A number as ECMAScript's `Number.prototype.toString` writes the IEEE 754 double it denotes
/// (RFC 8785 §3.2.2.3). Integers too big for a double round as JavaScript would read them.
fn number_text(number: &Number) -> String {
    #[allow(clippy::cast_precision_loss)]
    let double = match (number.as_i64(), number.as_u64(), number.as_f64()) {
        (Some(integer), _, _) => integer as f64,
        (None, Some(integer), _) => integer as f64,
        (None, None, Some(double)) => double,
        // Without serde_json's arbitrary precision every number is one of the three.
        (None, None, None) => return number.to_string(),
    };
    es_number(double)
}

/// ECMAScript's Number::toString(10) for a finite double.
fn es_number(value: f64) -> String {
    if value == 0.0 {
        return "0".to_owned();
    }
    // Rust's `{:e}` writes the shortest digits that read back as the same double, as ECMAScript does.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let k = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    // `n` as in ECMA-262 §6.1.6.1.20: the value is 0.digits × 10^n.
    let n = exponent + 1;
    let sign = if value < 0.0 { "-" } else { "" };
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat(usize::try_from(n - k).unwrap_or(0)))
    } else if 0 < n && n <= 21 {
        let (whole, fraction) = digits.split_at(usize::try_from(n).unwrap_or(0));
        format!("{whole}.{fraction}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat(usize::try_from(-n).unwrap_or(0)))
    } else {
        let exponent = n - 1;
        let exponent = if exponent >= 0 { format!("+{exponent}") } else { exponent.to_string() };
        match digits.split_at(1) {
            (first, "") => format!("{first}e{exponent}"),
            (first, rest) => format!("{first}.{rest}e{exponent}"),
        }
    };
    format!("{sign}{body}")
}

/// Deserializes a `Value` as serde_json does, but refuses a key met twice in one object.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value).map(Value::Number).ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Strict.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
            let item = map.next_value_seed(Strict)?;
            object.insert(key, item);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        canonical_json(&read_json(text.as_bytes()).expect("valid JSON"))
    }

    #[test]
    fn sorts_members_and_drops_whitespace() {
        assert_eq!(
            canonical(r#"{ "b": [1, {"z": null, "a": true}], "a": "x" }"#),
            r#"{"a":"x","b":[1,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn numbers_as_ecmascript_writes_them() {
        // The number examples of RFC 8785 §3.2.2.3 and appendix B.
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("1.0", "1"),
            ("1E30", "1e+30"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("333333333.33333329", "333333333.3333333"),
            ("-5e-324", "-5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("9007199254740993", "9007199254740992"),
            ("295147905179352830000", "295147905179352830000"),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical(input), expected, "{input}");
        }
    }

    #[test]
    fn orders_keys_by_utf16_code_units() {
        // RFC 8785 §3.2.3's example: "\u20ac" (€) sorts before "\ud83d\ude00" (😀) in UTF-16 although
        // its UTF-8 bytes sort after; "\r" and "1" and "\u0080" and "ö" follow their code units.
        let text = "{\"\u{20ac}\":1,\"\u{1f600}\":2,\"\\r\":3,\"1\":4,\"\u{80}\":5,\"\u{f6}\":6}";
        assert_eq!(canonical(text), "{\"\\r\":3,\"1\":4,\"\u{80}\":5,\"\u{f6}\":6,\"\u{20ac}\":1,\"\u{1f600}\":2}");
    }

    #[test]
    fn strings_keep_minimal_escapes() {
        assert_eq!(canonical(r#""a\/b\u0041\u001f\n""#), r#""a/bA\u001f\n""#);
    }

    #[test]
    fn a_key_met_twice_is_refused_with_its_place() {
        let error = read_json(b"{\"a\": {\"b\": 1,\n \"b\": 2}}").expect_err("duplicate key");
        assert!(error.to_string().starts_with(DUPLICATE_KEY), "{error}");
        assert_eq!(error.line(), 2);
        assert!(read_json(br#"[{"a": 1}, {"a": 2}]"#).is_ok(), "the same key in two objects is fine");
    }

    #[test]
    fn trailing_content_is_refused() {
        assert!(read_json(b"{} {}").is_err());
    }

    #[test]
    fn reformatting_keeps_the_digest_and_a_change_does_not() {
        let digest = |text: &str| json_payload_digest(text.as_bytes()).expect("valid JSON");
        let sent = digest(r#"{"id": "A1", "at": "2026-01-01T10:00:00Z", "n": [1, 2]}"#);
        assert_eq!(sent, digest("{\n  \"n\": [1.0, 2],\n  \"at\": \"2026-01-01T10:00:00Z\",\r\n  \"id\": \"A1\"\n}"));
        assert_ne!(sent, digest(r#"{"id": "A1", "at": "2026-01-01T10:00:01Z", "n": [1, 2]}"#));
    }
}
