//! HCL version 1 syntax into a [`Body`], accepting what SPIRE's parser accepts: items are
//! `keys... = value` or `keys... { body }` with any number of keys before a block, in any
//! layout (several items on one line, optionally separated by commas), lists of literals,
//! objects and lists with optional trailing commas.

use super::lexer::{Lexer, Mode, Tok};
use super::{Body, Item, Key, Node, Pos, SyntaxError, Value};

pub(super) struct Parser {
    lexer: Lexer,
    peeked: Option<(Tok, Pos)>,
}

impl Parser {
    pub(super) fn new(text: &str) -> Self {
        Self {
            lexer: Lexer::new(text, Mode::Hcl),
            peeked: None,
        }
    }

    fn next(&mut self) -> Result<(Tok, Pos), SyntaxError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next(),
        }
    }

    fn peek(&mut self) -> Result<&(Tok, Pos), SyntaxError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next()?);
        }
        Ok(self.peeked.as_ref().unwrap_or_else(|| unreachable!()))
    }

    /// The whole file.
    pub(super) fn file(mut self) -> Result<Body, SyntaxError> {
        self.body(None)
    }

    /// Items until `}` (inside a block opened at `open`) or the end of the file.
    fn body(&mut self, open: Option<Pos>) -> Result<Body, SyntaxError> {
        let mut items = Vec::new();
        loop {
            match self.peek()? {
                (Tok::RBrace, _) if open.is_some() => {
                    self.next()?;
                    return Ok(Body { items });
                }
                (Tok::Eof, pos) => {
                    return match open {
                        None => Ok(Body { items }),
                        Some(_) => Err(SyntaxError {
                            pos: *pos,
                            message: "unexpected end of file, expected '}'".into(),
                        }),
                    };
                }
                _ => {}
            }
            items.push(self.item()?);
            if matches!(self.peek()?, (Tok::Comma, _)) {
                self.next()?;
            }
        }
    }

    fn item(&mut self) -> Result<Item, SyntaxError> {
        let mut keys: Vec<Key> = Vec::new();
        loop {
            let (tok, pos) = self.next()?;
            match tok {
                Tok::Ident(name) | Tok::Str(name) => keys.push(Key { name, pos }),
                Tok::Assign => {
                    return match keys.len() {
                        0 => Err(SyntaxError {
                            pos,
                            message: "no object keys found before '='".into(),
                        }),
                        1 => Ok(Item {
                            keys,
                            value: self.value()?,
                        }),
                        _ => Err(SyntaxError {
                            pos,
                            message: format!(
                                "key '{}': nested object expected: '{{' got: '='",
                                names(&keys)
                            ),
                        }),
                    };
                }
                Tok::LBrace if !keys.is_empty() => {
                    let body = self.body(Some(pos))?;
                    return Ok(Item {
                        keys,
                        value: Node {
                            pos,
                            value: Value::Object(body),
                        },
                    });
                }
                other if !keys.is_empty() => {
                    return Err(SyntaxError {
                        pos,
                        message: format!(
                            "key '{}' expected start of object ('{{') or assignment ('='), got {}",
                            names(&keys),
                            other.describe()
                        ),
                    });
                }
                other => {
                    return Err(SyntaxError {
                        pos,
                        message: format!("expected a key, got {}", other.describe()),
                    });
                }
            }
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let (tok, pos) = self.next()?;
        let value = match tok {
            Tok::LBrace => Value::Object(self.body(Some(pos))?),
            Tok::LBrack => self.list()?,
            other => literal_at(other, pos, "a value")?,
        };
        Ok(Node { pos, value })
    }

    fn list(&mut self) -> Result<Value, SyntaxError> {
        let mut elems = Vec::new();
        loop {
            if matches!(self.peek()?, (Tok::RBrack, _)) {
                self.next()?;
                return Ok(Value::List(elems));
            }
            let (tok, pos) = self.next()?;
            let value = match tok {
                Tok::LBrace => Value::Object(self.body(Some(pos))?),
                Tok::LBrack => self.list()?,
                other => literal_at(other, pos, "a list element or ']'")?,
            };
            elems.push(Node { pos, value });
            match self.next()? {
                (Tok::Comma, _) => {}
                (Tok::RBrack, _) => return Ok(Value::List(elems)),
                (other, pos) => {
                    return Err(SyntaxError {
                        pos,
                        message: format!(
                            "error parsing list, expected comma or list end, got {}",
                            other.describe()
                        ),
                    });
                }
            }
        }
    }
}

fn names(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| k.name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A literal token as a value.
pub(super) fn literal(tok: Tok) -> Option<Value> {
    Some(match tok {
        Tok::Str(s) | Tok::Heredoc(s) => Value::Str(s),
        Tok::Int(i) => Value::Int(i),
        Tok::Float(f) => Value::Float(f),
        Tok::Bool(b) => Value::Bool(b),
        Tok::Null => Value::Null,
        _ => return None,
    })
}

/// A literal token as a value, or an error saying what was `expected` instead.
pub(super) fn literal_at(tok: Tok, pos: Pos, expected: &str) -> Result<Value, SyntaxError> {
    let what = tok.describe();
    literal(tok).ok_or_else(|| SyntaxError {
        pos,
        message: format!("expected {expected}, got {what}"),
    })
}
