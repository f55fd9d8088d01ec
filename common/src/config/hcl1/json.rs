//! SPIRE's JSON config files: a JSON object read into the same [`Body`] as HCL, then
//! flattened as HCL's JSON reader does, so that every JSON shape SPIRE takes means what
//! its HCL twin means:
//!
//! - an object whose values are all objects becomes one item per member with the member's
//!   key appended (`"DataStore": {"sql": {...}}` is `DataStore "sql" {...}`);
//! - a list whose elements are all objects becomes one item per element under the same key
//!   (`"telemetry": [{...}]` is `telemetry {...}`; `"DogStatsd": [{...}, {...}]` is two
//!   `DogStatsd {...}` blocks).

use super::lexer::{Lexer, Mode, Tok};
use super::parser::literal_at;
use super::{Body, Item, Key, Node, Pos, SyntaxError, Value};

/// Parses a JSON document whose top level is an object.
pub(super) fn parse(text: &str) -> Result<Body, SyntaxError> {
    let mut p = Json {
        lexer: Lexer::new(text, Mode::Json),
    };
    let (tok, pos) = p.lexer.next()?;
    if tok != Tok::LBrace {
        return Err(SyntaxError {
            pos,
            message: format!("expected a JSON object, got {}", tok.describe()),
        });
    }
    let mut body = p.object()?;
    let (tok, pos) = p.lexer.next()?;
    if tok != Tok::Eof {
        return Err(SyntaxError {
            pos,
            message: format!("unexpected {} after the JSON object", tok.describe()),
        });
    }
    flatten(&mut body);
    Ok(body)
}

struct Json {
    lexer: Lexer,
}

impl Json {
    /// Members after `{`, through `}`.
    fn object(&mut self) -> Result<Body, SyntaxError> {
        let mut items = Vec::new();
        let (mut tok, mut pos) = self.lexer.next()?;
        if tok == Tok::RBrace {
            return Ok(Body { items });
        }
        loop {
            let Tok::Str(name) = tok else {
                return Err(SyntaxError {
                    pos,
                    message: format!("expected an object key string, got {}", tok.describe()),
                });
            };
            let (colon, cpos) = self.lexer.next()?;
            if colon != Tok::Colon {
                return Err(SyntaxError {
                    pos: cpos,
                    message: format!("expected ':', got {}", colon.describe()),
                });
            }
            let value = self.value()?;
            items.push(Item {
                keys: vec![Key { name, pos }],
                value,
            });
            match self.lexer.next()? {
                (Tok::Comma, _) => (tok, pos) = self.lexer.next()?,
                (Tok::RBrace, _) => return Ok(Body { items }),
                (other, p) => {
                    return Err(SyntaxError {
                        pos: p,
                        message: format!("expected ',' or '}}', got {}", other.describe()),
                    });
                }
            }
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let (tok, pos) = self.lexer.next()?;
        self.element(tok, pos)
    }

    fn array(&mut self) -> Result<Value, SyntaxError> {
        let mut elems = Vec::new();
        let (tok, pos) = self.lexer.next()?;
        if tok == Tok::RBrack {
            return Ok(Value::List(elems));
        }
        elems.push(self.element(tok, pos)?);
        loop {
            match self.lexer.next()? {
                (Tok::Comma, _) => {
                    let (tok, pos) = self.lexer.next()?;
                    elems.push(self.element(tok, pos)?);
                }
                (Tok::RBrack, _) => return Ok(Value::List(elems)),
                (other, p) => {
                    return Err(SyntaxError {
                        pos: p,
                        message: format!("expected ',' or ']', got {}", other.describe()),
                    });
                }
            }
        }
    }

    /// A value whose first token was already read.
    fn element(&mut self, tok: Tok, pos: Pos) -> Result<Node, SyntaxError> {
        let value = match tok {
            Tok::LBrace => Value::Object(self.object()?),
            Tok::LBrack => self.array()?,
            other => literal_at(other, pos, "a JSON value")?,
        };
        Ok(Node { pos, value })
    }
}

/// Flattens every body in the tree, as HCL's JSON reader does.
fn flatten(body: &mut Body) {
    let mut out = Vec::with_capacity(body.items.len());
    let mut frontier: Vec<Item> = std::mem::take(&mut body.items);
    frontier.reverse();
    while let Some(item) = frontier.pop() {
        match &item.value.value {
            Value::Object(inner)
                if !inner.items.is_empty()
                    && inner
                        .items
                        .iter()
                        .all(|i| matches!(i.value.value, Value::Object(_))) =>
            {
                let Value::Object(inner) = item.value.value else {
                    unreachable!()
                };
                for sub in inner.items.into_iter().rev() {
                    let mut keys = item.keys.clone();
                    keys.extend(sub.keys);
                    frontier.push(Item {
                        keys,
                        value: sub.value,
                    });
                }
            }
            Value::List(elems)
                if !elems.is_empty()
                    && elems.iter().all(|e| matches!(e.value, Value::Object(_))) =>
            {
                let Value::List(elems) = item.value.value else {
                    unreachable!()
                };
                for e in elems.into_iter().rev() {
                    frontier.push(Item {
                        keys: item.keys.clone(),
                        value: e,
                    });
                }
            }
            _ => out.push(item),
        }
    }
    for item in &mut out {
        flatten_node(&mut item.value);
    }
    body.items = out;
}

fn flatten_node(node: &mut Node) {
    match &mut node.value {
        Value::Object(b) => flatten(b),
        Value::List(elems) => elems.iter_mut().for_each(flatten_node),
        _ => {}
    }
}
