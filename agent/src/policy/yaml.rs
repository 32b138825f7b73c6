//! A YAML tree that keeps the line and column of every node, and a serde
//! `Deserializer` over it. serde_yaml reports only the first error of a
//! document and drops positions once a value is parsed; policy check must
//! point at every bad glob, role or trigger, so we parse once into this tree
//! (with yaml-rust2's marks), deserialize each role and rule on its own (an
//! error in one does not hide errors in the next) and look up the position
//! of any field afterwards for semantic errors.

use std::{collections::HashMap, fmt};

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use yaml_rust2::{
    parser::{Event, Parser},
    scanner::{Marker, ScanError, TScalarStyle},
};

pub(crate) use super::diag::Pos;

fn pos_of(m: Marker) -> Pos {
    // yaml-rust2 lines are 1-based and columns 0-based.
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) pos: Pos,
}

impl Node {
    /// The value under `key` when this node is a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Item `i` of a sequence.
    pub(crate) fn item(&self, i: usize) -> Option<&Node> {
        match &self.kind {
            NodeKind::Seq(items) => items.get(i),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true }
            if value.is_empty() || value == "~" || value == "null")
    }

    /// The node at `path` (mapping keys, or sequence indexes written as
    /// numbers), or the deepest node found on the way: a diagnostic then
    /// still points near the problem.
    pub(crate) fn find(&self, path: &[&str]) -> &Node {
        let mut node = self;
        for seg in path {
            let next = match seg.parse::<usize>() {
                Ok(i) => node.item(i),
                Err(_) => node.get(seg),
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub(crate) pos: Pos,
    pub(crate) message: String,
}

impl From<ScanError> for SyntaxError {
    fn from(e: ScanError) -> Self {
        Self {
            pos: pos_of(*e.marker()),
            message: e.info().to_owned(),
        }
    }
}

/// Parses a single-document YAML text. An empty document is `None`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
    };
    loop {
        let (ev, mark) = b.parser.next_token()?;
        match ev {
            Event::StreamStart | Event::DocumentStart => {}
            Event::StreamEnd | Event::DocumentEnd => return Ok(None),
            ev => {
                let node = b.node(ev, mark)?;
                // A second document would be silently ignored otherwise.
                loop {
                    let (ev, mark) = b.parser.next_token()?;
                    match ev {
                        Event::DocumentEnd => {}
                        Event::StreamEnd => return Ok(Some(node)),
                        _ => {
                            return Err(SyntaxError {
                                pos: pos_of(mark),
                                message: "only one YAML document per policy file".into(),
                            });
                        }
                    }
                }
            }
        }
    }
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Node>,
}

impl Builder<'_> {
    fn node(&mut self, ev: Event, mark: Marker) -> Result<Node, SyntaxError> {
        let pos = pos_of(mark);
        let (node, anchor) = match ev {
            Event::Scalar(value, style, anchor, _) => (
                Node {
                    kind: NodeKind::Scalar {
                        value,
                        plain: style == TScalarStyle::Plain,
                    },
                    pos,
                },
                anchor,
            ),
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, mark) = self.parser.next_token()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(ev, mark)?);
                }
                (
                    Node {
                        kind: NodeKind::Seq(items),
                        pos,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _) => {
                let mut entries = Vec::new();
                loop {
                    let (ev, mark) = self.parser.next_token()?;
                    if ev == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(ev, mark)?;
                    let (ev, mark) = self.parser.next_token()?;
                    let value = self.node(ev, mark)?;
                    entries.push((key, value));
                }
                // yaml-rust2 marks a block mapping at its first `:`; the
                // first key is where a person sees the mapping start.
                let pos = entries.first().map_or(pos, |(k, _)| pos.min(k.pos));
                (
                    Node {
                        kind: NodeKind::Map(entries),
                        pos,
                    },
                    anchor,
                )
            }
            Event::Alias(id) => {
                return self.anchors.get(&id).cloned().ok_or(SyntaxError {
                    pos,
                    message: "unknown alias".into(),
                });
            }
            other => {
                return Err(SyntaxError {
                    pos,
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

/// A deserialization error; `pos` is the innermost node that failed.
#[derive(Debug, Clone)]
pub(crate) struct DeError {
    pub(crate) message: String,
    pub(crate) pos: Option<Pos>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            pos: None,
        }
    }
}

impl DeError {
    /// Attaches `pos` unless a deeper node already did.
    fn at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }
}

/// Deserializes `T` from `node`.
pub(crate) fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node))
}

struct NodeDe<'a>(&'a Node);

impl<'de> NodeDe<'de> {
    fn scalar(&self) -> Option<&'de str> {
        self.0.as_str()
    }

    fn unexpected(&self) -> de::Unexpected<'de> {
        match &self.0.kind {
            NodeKind::Scalar { value, .. } => de::Unexpected::Str(value),
            NodeKind::Seq(_) => de::Unexpected::Seq,
            NodeKind::Map(_) => de::Unexpected::Map,
        }
    }
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let pos = self.0.pos;
        let r = match &self.0.kind {
            NodeKind::Scalar { value, plain: true } => {
                if self.0.is_null() {
                    v.visit_unit()
                } else if value == "true" {
                    v.visit_bool(true)
                } else if value == "false" {
                    v.visit_bool(false)
                } else if let Ok(n) = value.parse::<u64>() {
                    v.visit_u64(n)
                } else if let Ok(n) = value.parse::<i64>() {
                    v.visit_i64(n)
                } else {
                    v.visit_borrowed_str(value)
                }
            }
            NodeKind::Scalar {
                value,
                plain: false,
            } => v.visit_borrowed_str(value),
            NodeKind::Seq(items) => v.visit_seq(Seq {
                items: items.iter(),
            }),
            NodeKind::Map(entries) => v.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e| e.at(pos))
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        // Any scalar is a string when a string is asked for: `users: [1001]`
        // should not fail on a numeric-looking name.
        match self.scalar() {
            Some(s) => v
                .visit_borrowed_str(s)
                .map_err(|e: DeError| e.at(self.0.pos)),
            None => Err(<DeError as de::Error>::invalid_type(self.unexpected(), &v).at(self.0.pos)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) => v
                .visit_enum(IntoDeserializer::<DeError>::into_deserializer(s))
                .map_err(|e| e.at(self.0.pos)),
            None => Err(<DeError as de::Error>::invalid_type(self.unexpected(), &v).at(self.0.pos)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Map(_) => self.deserialize_any(v),
            // `actor:` with nothing after it reads as an empty mapping.
            _ if self.0.is_null() => v
                .visit_map(Map {
                    entries: [].iter(),
                    value: None,
                })
                .map_err(|e| e.at(self.0.pos)),
            _ => Err(<DeError as de::Error>::invalid_type(self.unexpected(), &v).at(self.0.pos)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Seq(_) => self.deserialize_any(v),
            _ => Err(<DeError as de::Error>::invalid_type(self.unexpected(), &v).at(self.0.pos)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct newtype_struct tuple tuple_struct map ignored_any
    }
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(n) => seed
                .deserialize(NodeDe(n))
                .map(Some)
                .map_err(|e| e.at(n.pos)),
            None => Ok(None),
        }
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(NodeDe(k))
                    .map(Some)
                    .map_err(|e| e.at(k.pos))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let v = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before its key"))?;
        seed.deserialize(NodeDe(v)).map_err(|e| e.at(v.pos))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(default)]
        names: Vec<String>,
        count: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Inner,
        flag: bool,
    }

    #[test]
    fn marks_are_one_based() {
        let n = parse("a:\n  b: [x, 'y']\n").unwrap().unwrap();
        let b = n.get("a").unwrap().get("b").unwrap();
        assert_eq!(b.item(0).unwrap().pos, Pos { line: 2, column: 7 });
        assert_eq!(
            b.item(1).unwrap().pos,
            Pos {
                line: 2,
                column: 10
            }
        );
        assert_eq!(n.find(&["a", "b", "1"]).as_str(), Some("y"));
        assert_eq!(n.get("a").unwrap().pos, Pos { line: 2, column: 3 });
    }

    #[test]
    fn unknown_field_points_at_the_key() {
        let n = parse("inner:\n  names: [a]\n  cuont: 3\nflag: true\n")
            .unwrap()
            .unwrap();
        let e = from_node::<Outer>(&n).unwrap_err();
        assert!(e.message.contains("unknown field `cuont`"), "{e}");
        assert_eq!(e.pos, Some(Pos { line: 3, column: 3 }));
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let n = parse("inner:\n  count: many\nflag: true\n")
            .unwrap()
            .unwrap();
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(
            e.pos,
            Some(Pos {
                line: 2,
                column: 10
            }),
            "{e}"
        );
        let ok = parse("inner: {names: [1001], count: 2}\nflag: false\n")
            .unwrap()
            .unwrap();
        let o: Outer = from_node(&ok).unwrap();
        assert_eq!(o.inner.names, vec!["1001"]);
        assert_eq!(o.inner.count, Some(2));
        assert!(!o.flag);
    }

    #[test]
    fn syntax_errors_have_positions_and_aliases_resolve() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        let n = parse("a: &x [p, q]\nb: *x\n").unwrap().unwrap();
        assert_eq!(n.find(&["b", "1"]).as_str(), Some("q"));
        assert!(parse("").unwrap().is_none());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
