//! Tokens of SPIRE's HCL version 1 syntax (and of JSON, which shares strings, numbers and
//! punctuation): identifiers with `-` and `.`, double-quoted strings whose `${...}` parts are
//! kept as written, heredocs (`<<EOF` and the indented `<<-EOF`), numbers, booleans, and the
//! three comment forms `#`, `//` and `/* */`.

use super::{Pos, SyntaxError};

/// One token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Heredoc(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    LBrace,
    RBrace,
    LBrack,
    RBrack,
    Comma,
    Assign,
    Colon,
    Eof,
}

impl Tok {
    /// How HCL's own messages name the token.
    pub(super) fn describe(&self) -> String {
        match self {
            Self::Ident(i) => format!("identifier {i:?}"),
            Self::Str(_) => "string".into(),
            Self::Heredoc(_) => "heredoc".into(),
            Self::Int(_) | Self::Float(_) => "number".into(),
            Self::Bool(_) => "bool".into(),
            Self::Null => "null".into(),
            Self::LBrace => "'{'".into(),
            Self::RBrace => "'}'".into(),
            Self::LBrack => "'['".into(),
            Self::RBrack => "']'".into(),
            Self::Comma => "','".into(),
            Self::Assign => "'='".into(),
            Self::Colon => "':'".into(),
            Self::Eof => "end of file".into(),
        }
    }
}

/// Which of the two syntaxes is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Hcl,
    Json,
}

pub(super) struct Lexer {
    chars: Vec<char>,
    at: usize,
    line: u32,
    column: u32,
    mode: Mode,
}

impl Lexer {
    pub(super) fn new(text: &str, mode: Mode) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self {
            chars: text.chars().collect(),
            at: 0,
            line: 1,
            column: 1,
            mode,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.at + 1).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.at).copied()?;
        self.at += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn err(pos: Pos, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos,
            message: message.into(),
        }
    }

    /// Skips white space and comments.
    fn skip(&mut self) -> Result<(), SyntaxError> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('#'), _) | (Some('/'), Some('/')) if self.mode == Mode::Hcl => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) if self.mode == Mode::Hcl => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(), self.peek2()) {
                            (Some('*'), Some('/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            (Some(_), _) => {
                                self.bump();
                            }
                            (None, _) => return Err(Self::err(start, "comment not terminated")),
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token and its position.
    pub(super) fn next(&mut self) -> Result<(Tok, Pos), SyntaxError> {
        self.skip()?;
        let pos = self.pos();
        let Some(c) = self.peek() else {
            return Ok((Tok::Eof, pos));
        };
        let tok = match c {
            '{' => self.single(Tok::LBrace),
            '}' => self.single(Tok::RBrace),
            '[' => self.single(Tok::LBrack),
            ']' => self.single(Tok::RBrack),
            ',' => self.single(Tok::Comma),
            '=' if self.mode == Mode::Hcl => self.single(Tok::Assign),
            ':' if self.mode == Mode::Json => self.single(Tok::Colon),
            '"' => Tok::Str(self.string(pos)?),
            '<' if self.mode == Mode::Hcl && self.peek2() == Some('<') => self.heredoc(pos)?,
            '-' | '0'..='9' => self.number(pos)?,
            c if c.is_alphabetic() || c == '_' => self.word(pos)?,
            other => return Err(Self::err(pos, format!("illegal character {other:?}"))),
        };
        Ok((tok, pos))
    }

    fn single(&mut self, t: Tok) -> Tok {
        self.bump();
        t
    }

    fn word(&mut self, pos: Pos) -> Result<Tok, SyntaxError> {
        let mut w = String::new();
        while let Some(c) = self.peek() {
            let more = c.is_alphanumeric()
                || c == '_'
                || (self.mode == Mode::Hcl && (c == '-' || c == '.'));
            if !more {
                break;
            }
            w.push(c);
            self.bump();
        }
        Ok(match (w.as_str(), self.mode) {
            ("true", _) => Tok::Bool(true),
            ("false", _) => Tok::Bool(false),
            ("null", Mode::Json) => Tok::Null,
            (_, Mode::Hcl) => Tok::Ident(w),
            (_, Mode::Json) => {
                return Err(Self::err(pos, format!("invalid JSON value {w:?}")));
            }
        })
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, SyntaxError> {
        let mut text = String::new();
        if self.peek() == Some('-') {
            text.push('-');
            self.bump();
            if !matches!(self.peek(), Some('0'..='9')) {
                return Err(Self::err(pos, "illegal character '-'"));
            }
        }
        let mut float = false;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphanumeric()
                || c == '.'
                || ((c == '+' || c == '-') && text.ends_with(['e', 'E']) && !is_hex(&text));
            if !ok {
                break;
            }
            if c == '.' || ((c == 'e' || c == 'E') && !is_hex(&text)) {
                float = true;
            }
            text.push(c);
            self.bump();
        }
        let bad = || Self::err(pos, format!("invalid number {text:?}"));
        if float {
            return text.parse::<f64>().map(Tok::Float).map_err(|_| bad());
        }
        parse_int(&text).map(Tok::Int).ok_or_else(bad)
    }

    /// A double-quoted string, unescaped; `${...}` is kept verbatim.
    fn string(&mut self, pos: Pos) -> Result<String, SyntaxError> {
        self.bump();
        let mut out = String::new();
        let mut braces = 0usize;
        loop {
            let here = self.pos();
            let Some(c) = self.bump() else {
                return Err(Self::err(pos, "literal not terminated"));
            };
            match c {
                '\n' if braces == 0 => return Err(Self::err(pos, "literal not terminated")),
                '"' if braces == 0 => return Ok(out),
                '$' if braces == 0 && self.peek() == Some('{') && self.mode == Mode::Hcl => {
                    self.bump();
                    braces = 1;
                    out.push_str("${");
                }
                '{' if braces > 0 => {
                    braces += 1;
                    out.push(c);
                }
                '}' if braces > 0 => {
                    braces -= 1;
                    out.push(c);
                }
                '\\' if braces == 0 => self.escape(here, &mut out)?,
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, pos: Pos, out: &mut String) -> Result<(), SyntaxError> {
        let bad = |what: &str| Self::err(pos, format!("invalid escape sequence {what}"));
        let Some(c) = self.bump() else {
            return Err(bad("at end of file"));
        };
        let simple = match c {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            '/' => Some('/'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            return Ok(());
        }
        let digits = |lx: &mut Self, n: usize, radix: u32| -> Result<u32, SyntaxError> {
            let mut v = 0u32;
            for _ in 0..n {
                let d = lx
                    .peek()
                    .and_then(|c| c.to_digit(radix))
                    .ok_or_else(|| bad(&format!("\\{c}")))?;
                lx.bump();
                v = v * radix + d;
            }
            Ok(v)
        };
        let code = match c {
            'x' => digits(self, 2, 16)?,
            'u' => {
                let hi = digits(self, 4, 16)?;
                if (0xD800..0xDC00).contains(&hi)
                    && self.peek() == Some('\\')
                    && self.peek2() == Some('u')
                {
                    self.bump();
                    self.bump();
                    let lo = digits(self, 4, 16)?;
                    0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                } else {
                    hi
                }
            }
            'U' => digits(self, 8, 16)?,
            '0'..='7' => {
                let rest = digits(self, 2, 8)?;
                (c as u32 - '0' as u32) * 64 + rest
            }
            other => return Err(bad(&format!("\\{other}"))),
        };
        out.push(char::from_u32(code).ok_or_else(|| bad("(not a character)"))?);
        Ok(())
    }

    /// `<<ANCHOR` or `<<-ANCHOR`, a newline, lines, and a line holding only the anchor.
    fn heredoc(&mut self, pos: Pos) -> Result<Tok, SyntaxError> {
        self.bump();
        self.bump();
        let indented = self.peek() == Some('-');
        if indented {
            self.bump();
        }
        let mut anchor = String::new();
        while let Some(c) = self.peek() {
            if !(c.is_alphanumeric() || c == '_' || c == '-') {
                break;
            }
            anchor.push(c);
            self.bump();
        }
        if anchor.is_empty() {
            return Err(Self::err(pos, "zero-length heredoc anchor"));
        }
        if self.peek() == Some('\r') {
            self.bump();
        }
        if self.bump() != Some('\n') {
            return Err(Self::err(pos, "invalid characters in heredoc anchor"));
        }
        let mut lines: Vec<String> = Vec::new();
        loop {
            if self.peek().is_none() {
                return Err(Self::err(pos, "heredoc not terminated"));
            }
            let mut line = String::new();
            while let Some(c) = self.peek() {
                if c == '\n' {
                    break;
                }
                line.push(c);
                self.bump();
            }
            let at_end = self.peek().is_none();
            if line.trim_start().trim_end_matches('\r') == anchor {
                let prefix: String = line.chars().take_while(|c| c.is_whitespace()).collect();
                return Ok(Tok::Heredoc(heredoc_text(&lines, indented, &prefix)));
            }
            if at_end {
                return Err(Self::err(pos, "heredoc not terminated"));
            }
            self.bump();
            lines.push(line);
        }
    }
}

/// The heredoc's value: every line with its newline; `<<-` removes the terminator line's
/// indentation from each line when all of them carry it.
fn heredoc_text(lines: &[String], indented: bool, prefix: &str) -> String {
    let strip = indented && lines.iter().all(|l| l.starts_with(prefix));
    let mut out = String::new();
    for l in lines {
        out.push_str(if strip { &l[prefix.len()..] } else { l });
        out.push('\n');
    }
    out
}

fn is_hex(text: &str) -> bool {
    let t = text.trim_start_matches('-');
    t.starts_with("0x") || t.starts_with("0X")
}

/// An integer as Go's `strconv.ParseInt(s, 0, 64)` reads it: `0x` hex, leading-`0` octal,
/// else decimal.
pub(super) fn parse_int(text: &str) -> Option<i64> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let t = t.replace('_', "");
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}
