//! HPACK (RFC 7541) as far as the Unix-socket `:authority` layer needs it: a [`Decoder`]
//! that follows a client's encoder exactly — static table, dynamic table with eviction,
//! size updates, Huffman-coded strings — that also tells how and where each field was sent
//! ([`Decoder::decode_spans`]), and [`encode_literal`], which writes a field as a
//! plain literal that is never added to the peer's dynamic table.
//!
//! Hand-written (the HPACK crates on crates.io panic on some truncated blocks, and `h2`
//! keeps its codec private); Huffman decoding is the `httlib-huffman` crate's. Every
//! malformed block is an [`HpackError`], never a panic.

use std::collections::VecDeque;

use bytes::Bytes;

/// One decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name, as sent (HTTP/2 requires lower case; not checked here).
    pub name: Bytes,
    /// The value.
    pub value: Bytes,
    /// Sent as "never indexed" (a sensitive value; must stay so when forwarded).
    pub never_indexed: bool,
}

impl Field {
    /// A field that may be indexed.
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            never_indexed: false,
        }
    }

    /// The size the field counts for in a dynamic table and a header list (§4.1).
    pub fn size(&self) -> usize {
        entry_size(&self.name, &self.value)
    }
}

/// How a field was sent (§6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// An index into the static or dynamic table (§6.1).
    Indexed,
    /// A literal the receiver adds to its dynamic table (§6.2.1).
    Incremental,
    /// A literal the receiver does not add (§6.2.2).
    WithoutIndexing,
    /// A literal never to be indexed by any intermediary (§6.2.3).
    NeverIndexed,
}

/// A decoded field, how it was sent, and the bytes of the block it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The field as decoded (with `fix`'s value, if it gave one).
    pub field: Field,
    /// Its representation.
    pub repr: Repr,
    /// The bytes of the block it took.
    pub span: std::ops::Range<usize>,
    /// `fix` gave it another value.
    pub fixed: bool,
}

/// A header block that cannot be decoded (an HTTP/2 `COMPRESSION_ERROR`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// The block ends inside a representation.
    #[error("header block truncated")]
    Truncated,
    /// An integer longer than HPACK implementations accept (over 2^32).
    #[error("integer too large in header block")]
    IntegerOverflow,
    /// An index that names no entry of the static or dynamic table.
    #[error("header table index {0} does not exist")]
    BadIndex(usize),
    /// A Huffman-coded string that is not valid (bad code, EOS, bad padding).
    #[error("invalid Huffman-coded string")]
    Huffman,
    /// A dynamic table size update above what the decoder allowed.
    #[error("dynamic table size update to {asked} exceeds the allowed {allowed}")]
    TableSize {
        /// The size the encoder asked for.
        asked: usize,
        /// The decoder's limit (SETTINGS_HEADER_TABLE_SIZE).
        allowed: usize,
    },
    /// A dynamic table size update after the first field of a block (§4.2).
    #[error("dynamic table size update after a header field")]
    LateSizeUpdate,
    /// The decoded list is larger than the decoder accepts.
    #[error("decoded header list exceeds {0} bytes")]
    ListTooLarge(usize),
}

/// The static table (RFC 7541 Appendix A); index 1 is the first element.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Integers above this are refused (RFC 7541 §5.1 lets implementations set a limit).
const MAX_INTEGER: u64 = u32::MAX as u64;

fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

// === impl DynamicTable ===

/// The dynamic table (§2.3.2): newest entry first, evicted from the back. Entries are
/// shared with the fields that refer to them (a field sent by index costs no copy).
#[derive(Debug)]
struct DynamicTable {
    entries: VecDeque<(Bytes, Bytes)>,
    size: usize,
    max_size: usize,
}

impl DynamicTable {
    fn new(max_size: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size,
        }
    }

    fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
        self.evict_to(max_size);
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some((n, v)) => self.size -= entry_size(&n, &v),
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    /// §4.4: an entry larger than the table empties it and is not added.
    fn insert(&mut self, name: Bytes, value: Bytes) {
        let size = entry_size(&name, &value);
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.entries.push_front((name, value));
    }

    /// Entry `index` in the combined address space (1-based, static table first).
    fn get(&self, index: usize) -> Result<(Bytes, Bytes), HpackError> {
        match index {
            0 => Err(HpackError::BadIndex(0)),
            i if i <= STATIC_TABLE.len() => {
                let (n, v) = STATIC_TABLE[i - 1];
                Ok((
                    Bytes::from_static(n.as_bytes()),
                    Bytes::from_static(v.as_bytes()),
                ))
            }
            i => self
                .entries
                .get(i - STATIC_TABLE.len() - 1)
                .cloned()
                .ok_or(HpackError::BadIndex(i)),
        }
    }
}

// === impl Reader ===

/// A cursor over one header block.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn byte(&mut self) -> Result<u8, HpackError> {
        let b = self.peek().ok_or(HpackError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HpackError> {
        let end = self.pos.checked_add(n).ok_or(HpackError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(HpackError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// An integer with an N-bit prefix (§5.1); the bits above the prefix are ignored.
    fn integer(&mut self, prefix_bits: u8) -> Result<usize, HpackError> {
        let mask = (1u16 << prefix_bits) - 1;
        let first = u16::from(self.byte()?) & mask;
        if first < mask {
            return Ok(usize::from(first));
        }
        let mut value = u64::from(mask);
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value += u64::from(b & 0x7f) << shift;
            if value > MAX_INTEGER {
                return Err(HpackError::IntegerOverflow);
            }
            if b & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| HpackError::IntegerOverflow);
            }
            shift += 7;
            if shift > 28 {
                return Err(HpackError::IntegerOverflow);
            }
        }
    }

    /// A string literal (§5.2), Huffman-decoded when its H bit is set.
    fn string(&mut self) -> Result<Bytes, HpackError> {
        let huffman = self.peek().ok_or(HpackError::Truncated)? & 0x80 != 0;
        let len = self.integer(7)?;
        let raw = self.take(len)?;
        if !huffman {
            return Ok(Bytes::copy_from_slice(raw));
        }
        let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
        httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FiveBits)
            .map_err(|_| HpackError::Huffman)?;
        Ok(out.into())
    }
}

// === impl Decoder ===

/// Decodes the header blocks of one direction of one HTTP/2 connection, in order.
#[derive(Debug)]
pub struct Decoder {
    table: DynamicTable,
    allowed_table_size: usize,
    max_list_size: usize,
}

impl Decoder {
    /// A decoder whose peer may use a dynamic table of up to `allowed_table_size` bytes
    /// (the SETTINGS_HEADER_TABLE_SIZE this side advertised, 4096 unless changed) and
    /// whose blocks decode to at most `max_list_size` bytes (§4.1 sizes).
    pub fn new(allowed_table_size: usize, max_list_size: usize) -> Self {
        Self {
            table: DynamicTable::new(allowed_table_size),
            allowed_table_size,
            max_list_size,
        }
    }

    /// The dynamic table's current size in bytes (§4.1).
    pub fn table_size(&self) -> usize {
        self.table.size
    }

    /// The number of entries in the dynamic table.
    pub fn table_len(&self) -> usize {
        self.table.entries.len()
    }

    /// Decodes one complete header block (HEADERS plus any CONTINUATION fragments).
    /// After an error the connection must be closed: the table may be out of step.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, HpackError> {
        let spans = self.decode_spans(block, |_, _| None)?;
        Ok(spans.into_iter().map(|s| s.field).collect())
    }

    /// As [`Decoder::decode`], also saying how and where each field was sent. `fix` sees
    /// every field and may give it another value: the returned field carries it and, for a
    /// field sent with incremental indexing, so does the dynamic table, which then follows
    /// a receiver that is sent the same representation with the fixed value instead.
    pub fn decode_spans(
        &mut self,
        block: &[u8],
        mut fix: impl FnMut(&Field, Repr) -> Option<Vec<u8>>,
    ) -> Result<Vec<Spanned>, HpackError> {
        let mut r = Reader { buf: block, pos: 0 };
        let mut fields = Vec::with_capacity(16);
        let mut list_size = 0usize;
        while let Some(first) = r.peek() {
            let start = r.pos;
            let (mut field, repr) = if first & 0x80 != 0 {
                let index = r.integer(7)?;
                let (name, value) = self.table.get(index)?;
                let field = Field {
                    name,
                    value,
                    never_indexed: false,
                };
                (field, Repr::Indexed)
            } else if first & 0x40 != 0 {
                (self.literal(&mut r, 6, false)?, Repr::Incremental)
            } else if first & 0x20 != 0 {
                if !fields.is_empty() {
                    return Err(HpackError::LateSizeUpdate);
                }
                let asked = r.integer(5)?;
                if asked > self.allowed_table_size {
                    return Err(HpackError::TableSize {
                        asked,
                        allowed: self.allowed_table_size,
                    });
                }
                self.table.set_max_size(asked);
                continue;
            } else if first & 0x10 != 0 {
                (self.literal(&mut r, 4, true)?, Repr::NeverIndexed)
            } else {
                (self.literal(&mut r, 4, false)?, Repr::WithoutIndexing)
            };
            let fixed = match fix(&field, repr) {
                Some(value) => {
                    field.value = value.into();
                    true
                }
                None => false,
            };
            if repr == Repr::Incremental {
                self.table.insert(field.name.clone(), field.value.clone());
            }
            list_size += field.size();
            if list_size > self.max_list_size {
                return Err(HpackError::ListTooLarge(self.max_list_size));
            }
            fields.push(Spanned {
                field,
                repr,
                span: start..r.pos,
                fixed,
            });
        }
        Ok(fields)
    }

    /// A literal field (§6.2): name indexed (non-zero index) or literal, value literal.
    fn literal(
        &self,
        r: &mut Reader<'_>,
        prefix_bits: u8,
        never_indexed: bool,
    ) -> Result<Field, HpackError> {
        let index = r.integer(prefix_bits)?;
        let name = if index == 0 {
            r.string()?
        } else {
            self.table.get(index)?.0
        };
        let value = r.string()?;
        Ok(Field {
            name,
            value,
            never_indexed,
        })
    }
}

// === encoding ===

/// Appends `field` as a literal with a literal name, never Huffman-coded and never added
/// to the receiver's dynamic table (§6.2.2, or §6.2.3 when it was sent never-indexed).
pub fn encode_literal(out: &mut Vec<u8>, field: &Field) {
    out.push(if field.never_indexed { 0x10 } else { 0x00 });
    encode_string(out, &field.name);
    encode_string(out, &field.value);
}

/// Appends `bytes` as a plain (non-Huffman) string literal.
pub fn encode_string(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_integer(out, bytes.len(), 7, 0x00);
    out.extend_from_slice(bytes);
}

/// Appends `value` with an N-bit prefix; `flags` fills the bits above the prefix.
pub fn encode_integer(out: &mut Vec<u8>, value: usize, prefix_bits: u8, flags: u8) {
    let mask = (1usize << prefix_bits) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests;
