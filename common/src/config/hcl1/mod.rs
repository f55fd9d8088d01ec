//! A reader for SPIRE's configuration syntax: HCL version 1 (SPIRE parses `server.conf` and
//! `agent.conf` with HashiCorp's HCL1 library, not HCL2) and SPIRE's JSON form of the same
//! files. No maintained Rust crate reads HCL1 (`hcl-rs` is HCL2, which refuses several
//! attributes on one line, one-line blocks that nest blocks, and comma-separated items), so
//! this module reads it: [`parse`] turns text into a [`Body`] (syntax errors carry line and
//! column), and [`from_body`] deserializes a body into any serde type with HCL1's decoding
//! rules:
//!
//! - `a "b" { ... }` is `a { "b" { ... } }`; a block and `a = { ... }` mean the same;
//! - a key repeated in a body merges into a struct or map (`server {}` twice is one
//!   `server`), appends to a list (`admin_ids` twice, or one `DogStatsd {}` block per list
//!   element), and the last one wins for a plain value;
//! - struct fields match keys case-insensitively, as HCL1 does; map keys are exact;
//! - strings, numbers and booleans convert into each other where HCL1 allows
//!   (`bind_port = "8081"` is a port, `listener_enabled = "true"` a bool);
//! - JSON `null` is an absent value.
//!
//! Deserialization errors carry the position and dotted path of the key they are about.
//! [`Raw`] keeps a subtree (e.g. a plugin's `plugin_data`) to be deserialized later into the
//! plugin's own type.

use std::fmt;

mod de;
mod json;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

pub use de::{DeError, Raw, from_body};

/// A position in the file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line.
    pub line: u32,
    /// Column (in characters).
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Malformed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

/// The items of a file or of a `{ ... }` block, in order, repeats kept.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Body {
    /// The items.
    pub items: Vec<Item>,
}

/// `key key2 ... = value` or `key key2 ... { body }` (the body is an [`Value::Object`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// One or more keys; never empty.
    pub keys: Vec<Key>,
    /// The value.
    pub value: Node,
}

/// One key of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key as written (quotes removed).
    pub name: String,
    /// Where it is.
    pub pos: Pos,
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where.
    pub pos: Pos,
    /// What.
    pub value: Value,
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string or heredoc.
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// JSON `null`.
    Null,
    /// `[ ... ]`.
    List(Vec<Node>),
    /// `{ ... }`.
    Object(Body),
}

/// Whether a file is JSON: a `.json` name, or (as HCL1 decides) text whose first
/// non-blank character is `{`.
pub fn is_json(text: &str, path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".json")
        || text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{')
}

/// Parses HCL1 text, or JSON when `json`.
pub fn parse(text: &str, json: bool) -> Result<Body, SyntaxError> {
    if json {
        json::parse(text)
    } else {
        parser::Parser::new(text).file()
    }
}
