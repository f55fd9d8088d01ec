//! HCL1's decoding rules as a serde `Deserializer` over a [`Body`] (see the module docs).

use std::cell::RefCell;
use std::fmt;

use serde::de::value::StringDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::{Body, Item, Node, Pos, Value};

/// A value that could not be deserialized: what, where, and the dotted key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    /// What is wrong.
    pub message: String,
    /// Where, when known.
    pub pos: Option<Pos>,
    /// The key path (`server.ca_subject.country`), when known.
    pub path: Option<String>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pos) = self.pos {
            write!(f, "{pos}: ")?;
        }
        match self.path.as_deref() {
            Some(p) if !p.is_empty() => write!(f, "{p}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            pos: None,
            path: None,
        }
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        Self::custom(format!("unknown key {field:?}"))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("expected {exp}, got {unexp}"))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("expected {exp}, got {unexp}"))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("key {field:?} is required"))
    }
}

impl DeError {
    fn at(mut self, pos: Pos, path: &str) -> Self {
        if self.pos.is_none() {
            self.pos = Some(pos);
        }
        if self.path.is_none() {
            self.path = Some(path.to_owned());
        }
        self
    }
}

/// Deserializes a whole file's body.
pub fn from_body<T: DeserializeOwned>(body: &Body) -> Result<T, DeError> {
    let group = Group {
        parts: vec![Part::Items(body.items.clone())],
        pos: Pos { line: 1, column: 1 },
        path: String::new(),
    };
    T::deserialize(group)
}

/// One occurrence of a key: its value, or the rest of a multi-key item (`a "b" {}` is, under
/// `a`, the items `"b" {}`).
#[derive(Debug, Clone)]
enum Part {
    Node(Node),
    Items(Vec<Item>),
}

/// Every occurrence of one key, in order.
#[derive(Debug, Clone)]
struct Group {
    parts: Vec<Part>,
    pos: Pos,
    path: String,
}

/// A subtree kept for later, e.g. `plugin_data`, deserialized with [`Raw::parse`] into the
/// plugin's own type. Only an HCL config deserializer can produce one.
#[derive(Debug, Clone)]
pub struct Raw(Group);

const RAW: &str = "$signet::hcl1::Raw";

thread_local! {
    static STASH: RefCell<Option<Group>> = const { RefCell::new(None) };
}

impl Raw {
    /// Deserializes the subtree into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, DeError> {
        T::deserialize(self.0.clone())
    }

    /// Where the subtree starts.
    pub fn pos(&self) -> Pos {
        self.0.pos
    }

    /// Its key path.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// Whether it holds no keys (`plugin_data {}`).
    pub fn is_empty(&self) -> bool {
        self.0.parts.iter().all(|p| match p {
            Part::Items(items) => items.is_empty(),
            Part::Node(n) => match &n.value {
                Value::Object(b) => b.items.is_empty(),
                Value::Null => true,
                _ => false,
            },
        })
    }

    /// A raw value of an already parsed body (for a file read on its own, such as
    /// `plugin_data_file`).
    pub fn from_body(body: Body, path: &str) -> Self {
        Self(Group {
            parts: vec![Part::Items(body.items)],
            pos: Pos { line: 1, column: 1 },
            path: path.to_owned(),
        })
    }
}

impl<'de> de::Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HCL value")
            }
            fn visit_newtype_struct<D: de::Deserializer<'de>>(self, _: D) -> Result<Raw, D::Error> {
                STASH
                    .with(|s| s.borrow_mut().take())
                    .map(Raw)
                    .ok_or_else(|| de::Error::custom("HCL values are only read from HCL configs"))
            }
        }
        d.deserialize_newtype_struct(RAW, V)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Groups a body's items by first key (struct fields case-insensitively), keeping order.
fn group(items: Vec<Item>, fields: Option<&[&str]>) -> Vec<(String, Pos, Vec<Part>)> {
    let mut out: Vec<(String, Pos, Vec<Part>)> = Vec::new();
    for mut item in items {
        let first = item.keys.remove(0);
        let name = fields
            .and_then(|f| f.iter().find(|f| f.eq_ignore_ascii_case(&first.name)))
            .map_or(first.name, |f| (*f).to_owned());
        let part = if item.keys.is_empty() {
            Part::Node(item.value)
        } else {
            Part::Items(vec![item])
        };
        match out.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, _, parts)) => parts.push(part),
            None => out.push((name, first.pos, vec![part])),
        }
    }
    out
}

impl Group {
    fn err(&self, message: impl Into<String>) -> DeError {
        DeError {
            message: message.into(),
            pos: Some(self.last_pos()),
            path: Some(self.path.clone()),
        }
    }

    fn last_pos(&self) -> Pos {
        match self.parts.last() {
            Some(Part::Node(n)) => n.pos,
            Some(Part::Items(items)) => items.first().map_or(self.pos, |i| i.keys[0].pos),
            None => self.pos,
        }
    }

    /// The last occurrence's value, which must be a single value (the last one wins).
    fn scalar(&self, expected: &str) -> Result<&Value, DeError> {
        match self.parts.last() {
            Some(Part::Node(n)) => match &n.value {
                Value::List(_) | Value::Object(_) => {
                    Err(self.err(format!("expected {expected}, got a {}", kind(&n.value))))
                }
                v => Ok(v),
            },
            _ => Err(self.err(format!("expected {expected}, got a block"))),
        }
    }

    /// All occurrences merged into one list of items.
    fn items(&self) -> Result<Vec<Item>, DeError> {
        let mut out = Vec::new();
        for part in &self.parts {
            match part {
                Part::Items(items) => out.extend(items.iter().cloned()),
                Part::Node(Node {
                    value: Value::Object(b),
                    ..
                }) => out.extend(b.items.iter().cloned()),
                Part::Node(Node {
                    value: Value::Null, ..
                }) => {}
                Part::Node(n) => {
                    return Err(DeError {
                        message: format!("expected a block, got a {}", kind(&n.value)),
                        pos: Some(n.pos),
                        path: Some(self.path.clone()),
                    });
                }
            }
        }
        Ok(out)
    }

    /// All occurrences as list elements: a list's elements, a block as one element.
    fn elements(&self) -> Result<Vec<Self>, DeError> {
        let mut out = Vec::new();
        for part in &self.parts {
            let mut push = |p: Part, pos: Pos| {
                let i = out.len();
                out.push(Self {
                    parts: vec![p],
                    pos,
                    path: format!("{}[{i}]", self.path),
                });
            };
            match part {
                Part::Node(Node {
                    value: Value::List(elems),
                    ..
                }) => {
                    for e in elems {
                        push(Part::Node(e.clone()), e.pos);
                    }
                }
                Part::Node(
                    n @ Node {
                        value: Value::Object(_),
                        ..
                    },
                ) => push(Part::Node(n.clone()), n.pos),
                Part::Items(items) => {
                    let pos = items.first().map_or(self.pos, |i| i.keys[0].pos);
                    push(Part::Items(items.clone()), pos);
                }
                Part::Node(n) => {
                    return Err(DeError {
                        message: format!("expected a list, got a {}", kind(&n.value)),
                        pos: Some(n.pos),
                        path: Some(self.path.clone()),
                    });
                }
            }
        }
        Ok(out)
    }

    fn is_objects(&self) -> bool {
        self.parts.iter().all(|p| {
            matches!(
                p,
                Part::Items(_)
                    | Part::Node(Node {
                        value: Value::Object(_),
                        ..
                    })
            )
        })
    }

    fn map<'de, V: Visitor<'de>>(
        self,
        fields: Option<&'static [&'static str]>,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let groups = group(self.items()?, fields);
        let (pos, path) = (self.pos, self.path.clone());
        visitor
            .visit_map(Map {
                groups: groups.into_iter(),
                value: None,
                path: self.path,
            })
            .map_err(|e| e.at(pos, &path))
    }

    fn seq<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let elems = self.elements()?;
        let (pos, path) = (self.pos, self.path.clone());
        visitor
            .visit_seq(Seq {
                elems: elems.into_iter(),
            })
            .map_err(|e| e.at(pos, &path))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Str(_) => "string",
        Value::Int(_) | Value::Float(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        Value::List(_) => "list",
        Value::Object(_) => "block",
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

impl<'de> de::Deserializer<'de> for Group {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.parts.len() != 1 {
            return if self.is_objects() {
                self.map(None, visitor)
            } else {
                self.seq(visitor)
            };
        }
        match &self.parts[0] {
            Part::Items(_) => self.map(None, visitor),
            Part::Node(n) => match &n.value {
                Value::Str(s) => visitor.visit_string(s.clone()),
                Value::Int(i) => visitor.visit_i64(*i),
                Value::Float(f) => visitor.visit_f64(*f),
                Value::Bool(b) => visitor.visit_bool(*b),
                Value::Null => visitor.visit_unit(),
                Value::List(_) => self.seq(visitor),
                Value::Object(_) => self.map(None, visitor),
            },
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar("a bool")? {
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Str(s) => match parse_bool(s) {
                Some(b) => visitor.visit_bool(b),
                None => Err(self.err(format!("expected a bool, got {s:?}"))),
            },
            v => Err(self.err(format!("expected a bool, got a {}", kind(v)))),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar("a number")? {
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Str(s) => match super::lexer::parse_int(s.trim()) {
                Some(i) => visitor.visit_i64(i),
                None => Err(self.err(format!("expected an integer, got {s:?}"))),
            },
            v => Err(self.err(format!("expected an integer, got a {}", kind(v)))),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar("a number")? {
            Value::Int(i) => visitor.visit_f64(*i as f64),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => match s.trim().parse::<f64>() {
                Ok(f) => visitor.visit_f64(f),
                Err(_) => Err(self.err(format!("expected a number, got {s:?}"))),
            },
            v => Err(self.err(format!("expected a number, got a {}", kind(v)))),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar("a string")? {
            Value::Str(s) => visitor.visit_string(s.clone()),
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            v => Err(self.err(format!("expected a string, got a {}", kind(v)))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.parts.last() {
            Some(Part::Node(Node {
                value: Value::Null, ..
            })) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == RAW {
            STASH.with(|s| *s.borrow_mut() = Some(self.clone()));
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, DeError> {
        self.seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.map(None, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.map(Some(fields), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar("a string")? {
            Value::Str(s) => {
                let d: StringDeserializer<DeError> = s.clone().into_deserializer();
                let (pos, path) = (self.last_pos(), self.path.clone());
                visitor.visit_enum(d).map_err(|e| e.at(pos, &path))
            }
            v => Err(self.err(format!("expected a string, got a {}", kind(v)))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    forward_to_deserialize_any! { i128 u128 bytes byte_buf }
}

struct Map {
    groups: std::vec::IntoIter<(String, Pos, Vec<Part>)>,
    value: Option<(Pos, Vec<Part>, String)>,
    path: String,
}

impl<'de> de::MapAccess<'de> for Map {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, pos, parts)) = self.groups.next() else {
            return Ok(None);
        };
        let path = join(&self.path, &key);
        let d: StringDeserializer<DeError> = key.into_deserializer();
        let k = seed.deserialize(d).map_err(|e| e.at(pos, &path))?;
        self.value = Some((pos, parts, path));
        Ok(Some(k))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (pos, parts, path) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value requested before its key"))?;
        let group = Group {
            parts,
            pos,
            path: path.clone(),
        };
        let at = group.last_pos();
        seed.deserialize(group).map_err(|e| e.at(at, &path))
    }
}

struct Seq {
    elems: std::vec::IntoIter<Group>,
}

impl<'de> de::SeqAccess<'de> for Seq {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.elems.next() {
            None => Ok(None),
            Some(g) => {
                let (pos, path) = (g.pos, g.path.clone());
                seed.deserialize(g).map(Some).map_err(|e| e.at(pos, &path))
            }
        }
    }
}
