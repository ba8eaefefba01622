//! YAML text to a JSON value plus the source position of every node, so that schema and semantic errors can
//! name the line an information-governance lead has to edit.
//!
//! This is not a YAML library: serde-saphyr parses; this module only keeps the positions serde drops.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// A 1-based line and column in the policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

/// Where each JSON Pointer of the parsed document came from. Map members point at their key, which is the
/// line a reader looks for; sequence items point at the item.
#[derive(Debug, Clone, Default)]
pub(crate) struct Positions(HashMap<String, Position>);

impl Positions {
    /// The position of `pointer`, or of its nearest ancestor that has one, or line 1.
    pub(crate) fn of(&self, pointer: &str) -> Position {
        let mut current = pointer;
        loop {
            if let Some(position) = self.0.get(current) {
                return *position;
            }
            match current.rfind('/') {
                Some(index) => current = &current[..index],
                None => return Position { line: 1, column: 1 },
            }
        }
    }
}

/// A YAML parse failure, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) position: Position,
    pub(crate) message: String,
}

/// Parses YAML into a JSON value and the positions of its nodes.
pub(crate) fn parse(text: &str) -> Result<(Value, Positions), SyntaxError> {
    let node: Node = serde_saphyr::from_str(text).map_err(|error| {
        let position = error
            .location()
            .map(|location| Position { line: to_usize(location.line()), column: to_usize(location.column()) })
            .unwrap_or(Position { line: 1, column: 1 });
        SyntaxError { position, message: first_line(&error.without_snippet().to_string()) }
    })?;
    let mut positions = Positions::default();
    positions.0.insert(String::new(), node.position);
    let value = node.into_json(String::new(), &mut positions);
    Ok((value, positions))
}

fn to_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// serde-saphyr's message may end in a location suffix or snippet; keep the first line, since the position is
/// reported separately.
fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or("invalid YAML").trim();
    if let Some(index) = line.rfind(" at line ") {
        line = &line[..index];
    }
    // Advice meant for programmers using the library, not for the person editing the file.
    let line = line.trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable");
    line.trim_end_matches('.').to_owned()
}

/// One YAML node with its position.
struct Node {
    position: Position,
    value: NodeValue,
}

enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Spanned<Key>, Node)>),
}

/// A mapping key as text (YAML allows non-string keys; the policy format uses only strings).
struct Key(String);

impl Node {
    fn into_json(self, pointer: String, positions: &mut Positions) -> Value {
        match self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(value) => Value::Bool(value),
            NodeValue::Int(value) => Value::Number(value.into()),
            NodeValue::UInt(value) => Value::Number(value.into()),
            NodeValue::Float(value) => Number::from_f64(value).map_or(Value::Null, Value::Number),
            NodeValue::Str(value) => Value::String(value),
            NodeValue::Seq(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| {
                        let child = format!("{pointer}/{index}");
                        positions.0.insert(child.clone(), item.position);
                        item.into_json(child, positions)
                    })
                    .collect(),
            ),
            NodeValue::Map(entries) => {
                let mut map = Map::new();
                for (key, item) in entries {
                    let child = format!("{pointer}/{}", escape(&key.value.0));
                    let position =
                        Position { line: to_usize(key.referenced.line()), column: to_usize(key.referenced.column()) };
                    positions.0.insert(child.clone(), position);
                    map.insert(key.value.0, item.into_json(child, positions));
                }
                Value::Object(map)
            }
        }
    }
}

/// RFC 6901 escaping of a pointer segment.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(deserializer)?;
        let position =
            Position { line: to_usize(spanned.referenced.line()), column: to_usize(spanned.referenced.column()) };
        Ok(Self { position, value: spanned.value })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(value))
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::UInt(value))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(value))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(value.to_owned()))
    }
    fn visit_string<E: de::Error>(self, value: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(value))
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(NodeValue::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Key, E> {
                Ok(Key(value.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Key, E> {
                Ok(Key(value.to_string()))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Key, E> {
                Ok(Key(value.to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Key, E> {
                Ok(Key(value.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".to_owned()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_scalar_types_and_positions() {
        let text = "a: 1\nb:\n  - x\n  - true\nc: 2026-04-01\nd: 'yes'\n";
        let (value, positions) = parse(text).unwrap();
        assert_eq!(value, serde_json::json!({"a": 1, "b": ["x", true], "c": "2026-04-01", "d": "yes"}));
        assert_eq!(positions.of("/a").line, 1);
        assert_eq!(positions.of("/b").line, 2);
        assert_eq!(positions.of("/b/0").line, 3);
        assert_eq!(positions.of("/b/1").line, 4);
        assert_eq!(positions.of("/b/1/missing").line, 4);
        assert_eq!(positions.of("/c").line, 5);
    }

    #[test]
    fn syntax_errors_are_located() {
        let error = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(error.position.line >= 2, "{error:?}");
        let duplicate = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(duplicate.position.line, 2, "{duplicate:?}");
    }
}
