//! Accept any HTTP/2 `:authority` on a Unix socket.
//!
//! gRPC clients fill `:authority` on a Unix socket as they please: grpc-go sends
//! `localhost`, grpc C-core (Python, Ruby, C++, PHP) the percent-encoded socket path,
//! grpc-java the raw path, others nothing or an abstract-socket name. Go's HTTP/2 server
//! (and so spire-agent) accepts them all; the `h2` server resets any stream whose authority
//! is not a valid URI authority, before tonic sees the request (hyperium/h2#442).
//!
//! [`AuthorityRewriter`] sits between the socket and `h2` on the read side only. It passes
//! every byte through unchanged except header blocks: each HEADERS frame (with its
//! CONTINUATION frames) is decoded with an HPACK decoder that follows the client's dynamic
//! table; a block whose `:authority` `h2` accepts (or that has none) goes on as it came,
//! and in one that `h2` would refuse only that field is re-encoded, with a valid authority
//! of the same length where the client adds it to its table, so that `h2`'s table stays in
//! step with the client's (see `emit`). Everything else — other malformations, flow
//! control, settings — reaches `h2` as the client sent it. TCP listeners do not use this
//! layer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::hpack::{self, Decoder, Field, Repr, Spanned};

/// The client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame payload written towards `h2`: the protocol minimum of
/// SETTINGS_MAX_FRAME_SIZE, which `h2` (default 16 KiB) always accepts.
const MAX_OUT_FRAME: usize = 16_384;
/// SETTINGS_HEADER_TABLE_SIZE as `h2` advertises it (the protocol default; tonic and
/// hyper never change it), the most a client's encoder may use.
const CLIENT_TABLE_SIZE: usize = 4096;
/// The most a header block may take, compressed or decoded (§4.1 sizes): four times
/// hyper's SETTINGS_MAX_HEADER_LIST_SIZE, so `h2` still judges every block it would judge
/// itself; a client past this is cut off.
const MAX_BLOCK: usize = 64 * 1024;
/// What replaces an `:authority` that `h2` would refuse.
const REPLACEMENT: &[u8] = b"localhost";

/// How far into the byte stream the reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside the connection preface, this many bytes seen.
    Preface(usize),
    /// At the start of a frame.
    FrameHeader,
    /// Forwarding this many more bytes of a frame that is not a header block.
    Forward(usize),
    /// Waiting for the whole payload of a HEADERS or CONTINUATION frame.
    HeaderFrame {
        kind: u8,
        flags: u8,
        stream: u32,
        len: usize,
    },
    /// Not HTTP/2 with prior knowledge: everything passes through for `h2` to refuse.
    Raw,
}

/// A header block being collected across HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// A server-side connection whose incoming header blocks carry an `:authority` that `h2`
/// accepts. Writes go straight to the inner stream.
#[derive(Debug)]
pub struct AuthorityRewriter<IO> {
    io: IO,
    state: State,
    /// Bytes read from `io` and not yet processed.
    input: Vec<u8>,
    /// Processed bytes not yet handed to the reader, from `out_pos` on.
    output: Vec<u8>,
    out_pos: usize,
    decoder: Decoder,
    block: Option<PendingBlock>,
    eof: bool,
    /// Every block is re-encoded as plain literals from now on (see `emit`).
    literals_only: bool,
}

impl<IO> AuthorityRewriter<IO> {
    /// Wraps the server side of a freshly accepted connection.
    pub fn new(io: IO) -> Self {
        Self {
            io,
            state: State::Preface(0),
            input: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            decoder: Decoder::new(CLIENT_TABLE_SIZE, MAX_BLOCK),
            block: None,
            eof: false,
            literals_only: false,
        }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Moves as much of `input` as can be processed to `output`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Raw => {
                    self.output.append(&mut self.input);
                    return Ok(());
                }
                State::Preface(seen) => {
                    if self.input.is_empty() {
                        return Ok(());
                    }
                    let (n, next) = preface_step(seen, &self.input);
                    self.output.extend(self.input.drain(..n));
                    self.state = next;
                }
                State::FrameHeader => {
                    let Some((len, kind, flags, stream)) = frame_header(&self.input) else {
                        return Ok(());
                    };
                    if kind == HEADERS || kind == CONTINUATION {
                        if len > MAX_BLOCK {
                            return Err(violation("header frame too large"));
                        }
                        self.input.drain(..FRAME_HEADER_LEN);
                        self.state = State::HeaderFrame {
                            kind,
                            flags,
                            stream,
                            len,
                        };
                    } else {
                        if self.block.is_some() {
                            return Err(violation("frame inside a header block"));
                        }
                        self.output.extend(self.input.drain(..FRAME_HEADER_LEN));
                        self.state = State::Forward(len);
                    }
                }
                State::Forward(0) => self.state = State::FrameHeader,
                State::Forward(rest) => {
                    let n = rest.min(self.input.len());
                    if n == 0 {
                        return Ok(());
                    }
                    self.output.extend(self.input.drain(..n));
                    self.state = State::Forward(rest - n);
                }
                State::HeaderFrame {
                    kind,
                    flags,
                    stream,
                    len,
                } => {
                    if self.input.len() < len {
                        return Ok(());
                    }
                    let payload: Vec<u8> = self.input.drain(..len).collect();
                    self.header_frame(kind, flags, stream, &payload)?;
                    self.state = State::FrameHeader;
                }
            }
        }
    }

    /// Collects one HEADERS or CONTINUATION frame; at END_HEADERS, rewrites the block.
    fn header_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        if kind == HEADERS {
            if self.block.is_some() {
                return Err(violation("HEADERS inside a header block"));
            }
            let (mut block, fragment) = split_headers(flags, stream, payload)?;
            block.fragment = fragment.to_vec();
            self.block = Some(block);
        } else {
            let block = self
                .block
                .as_mut()
                .filter(|b| b.stream == stream)
                .ok_or_else(|| violation("CONTINUATION without its HEADERS"))?;
            if block.fragment.len() + payload.len() > MAX_BLOCK {
                return Err(violation("header block too large"));
            }
            block.fragment.extend_from_slice(payload);
        }
        if flags & END_HEADERS != 0
            && let Some(block) = self.block.take()
        {
            self.emit(block)?;
        }
        Ok(())
    }

    /// Decodes a complete block and passes it on: unchanged when its `:authority` (if any)
    /// is one `h2` accepts, else with only that field re-encoded.
    fn emit(&mut self, block: PendingBlock) -> io::Result<()> {
        match self.rewritten(&block.fragment)? {
            None => self.write_block(&block, &block.fragment),
            Some(encoded) => self.write_block(&block, &encoded),
        }
        Ok(())
    }

    /// Decodes a complete block's `fragment`: `None` when it may go on as it came (its
    /// `:authority`, if any, is one `h2` accepts), else the block re-encoded.
    ///
    /// `h2`'s decoder then keeps a dynamic table in step with the client's, because a bad
    /// authority the client adds to its table is replaced by a good one of the same length
    /// (so every later index and eviction matches) and recorded so in this side's table too.
    /// Where that cannot be done (an empty value added to the table), this block and every
    /// later one on the connection are re-encoded as plain literals, which never refer to
    /// `h2`'s table again.
    fn rewritten(&mut self, fragment: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let bad = |v: &[u8]| http::uri::Authority::try_from(v).is_err();
        let compression = |e| io::Error::new(io::ErrorKind::InvalidData, e);
        if !self.literals_only {
            let mut unfixable = false;
            let spans = self
                .decoder
                .decode_spans(fragment, |field, repr| {
                    if &field.name[..] != b":authority" || !bad(&field.value) {
                        return None;
                    }
                    if repr != Repr::Incremental {
                        return Some(REPLACEMENT.to_vec());
                    }
                    let same = same_length_authority(field.value.len());
                    unfixable |= same.is_none();
                    same
                })
                .map_err(compression)?;
            if !unfixable {
                if !spans.iter().any(|s| s.fixed) {
                    return Ok(None);
                }
                return Ok(Some(patch(fragment, &spans)));
            }
            self.literals_only = true;
            let fields = spans.into_iter().map(|s| s.field).collect();
            return Ok(Some(literals(fields, fragment.len())));
        }
        let fields = self.decoder.decode(fragment).map_err(compression)?;
        Ok(Some(literals(fields, fragment.len())))
    }

    /// Scans bytes just read into the caller's buffer while nothing was held back:
    /// `(keep, consumed)`, where the first `keep` bytes may stay there as they are (whole
    /// frames that are not header blocks, and header blocks of one HEADERS frame that need
    /// no change) and the bytes from `consumed` on are to be held back. Scanning stops at a
    /// frame it cannot pass on in place: one cut off at the end, a block with
    /// CONTINUATIONs, a HEADERS frame that needs a change. That last one has been decoded
    /// (the decoder's table must see each block once), so it is written to `output`
    /// re-encoded and counted as consumed.
    fn scan_in_place(&mut self, got: &[u8]) -> io::Result<(usize, usize)> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Forward(0) => self.state = State::FrameHeader,
                State::Forward(rest) => {
                    let n = rest.min(got.len() - pos);
                    if n == 0 {
                        return Ok((pos, pos));
                    }
                    pos += n;
                    self.state = State::Forward(rest - n);
                }
                State::FrameHeader => {
                    let Some((len, kind, flags, stream)) = frame_header(&got[pos..]) else {
                        return Ok((pos, pos));
                    };
                    let whole_block = flags & END_HEADERS != 0 && len <= MAX_BLOCK;
                    if kind == CONTINUATION || (kind == HEADERS && !whole_block) {
                        return Ok((pos, pos));
                    }
                    if kind != HEADERS {
                        pos += FRAME_HEADER_LEN;
                        self.state = State::Forward(len);
                        continue;
                    }
                    let end = pos + FRAME_HEADER_LEN + len;
                    let Some(payload) = got.get(pos + FRAME_HEADER_LEN..end) else {
                        return Ok((pos, pos));
                    };
                    let (block, fragment) = split_headers(flags, stream, payload)?;
                    if let Some(encoded) = self.rewritten(fragment)? {
                        self.write_block(&block, &encoded);
                        return Ok((pos, end));
                    }
                    pos = end;
                }
                State::Preface(seen) => match preface_step(seen, &got[pos..]) {
                    (0, _) | (_, State::Raw) => return Ok((pos, pos)),
                    (n, next) => {
                        pos += n;
                        self.state = next;
                    }
                },
                State::HeaderFrame { .. } | State::Raw => return Ok((pos, pos)),
            }
        }
    }

    /// Writes a header block as HEADERS plus as many CONTINUATION frames as its size needs.
    fn write_block(&mut self, block: &PendingBlock, encoded: &[u8]) {
        let priority: &[u8] = block.priority.as_ref().map_or(&[], |p| p.as_slice());
        let first = encoded.len().min(MAX_OUT_FRAME - priority.len());
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if block.priority.is_some() {
            flags |= PRIORITY;
        }
        if first == encoded.len() {
            flags |= END_HEADERS;
        }
        write_frame_header(
            &mut self.output,
            priority.len() + first,
            HEADERS,
            flags,
            block.stream,
        );
        self.output.extend_from_slice(priority);
        self.output.extend_from_slice(&encoded[..first]);
        let mut rest = &encoded[first..];
        while !rest.is_empty() {
            let n = rest.len().min(MAX_OUT_FRAME);
            let flags = if n == rest.len() { END_HEADERS } else { 0 };
            write_frame_header(&mut self.output, n, CONTINUATION, flags, block.stream);
            self.output.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
    }
}

/// `fields` as plain literals, any bad `:authority` replaced.
fn literals(mut fields: Vec<Field>, size_hint: usize) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(size_hint + 16);
    for field in &mut fields {
        if &field.name[..] == b":authority"
            && http::uri::Authority::try_from(&field.value[..]).is_err()
        {
            field.value = bytes::Bytes::from_static(REPLACEMENT);
        }
        hpack::encode_literal(&mut encoded, field);
    }
    encoded
}

/// A valid authority of exactly `len` bytes (`localhost`, cut or padded with `x`), if any.
fn same_length_authority(len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return None;
    }
    let mut value = REPLACEMENT[..len.min(REPLACEMENT.len())].to_vec();
    value.resize(len, b'x');
    http::uri::Authority::try_from(value.as_slice())
        .is_ok()
        .then_some(value)
}

/// The block a HEADERS frame starts (its fragment left empty) and that frame's part of the
/// fragment, padding and priority taken off.
fn split_headers(flags: u8, stream: u32, payload: &[u8]) -> io::Result<(PendingBlock, &[u8])> {
    let mut rest = payload;
    let pad = if flags & PADDED != 0 {
        let (&n, tail) = rest
            .split_first()
            .ok_or_else(|| violation("padded HEADERS without a pad length"))?;
        rest = tail;
        usize::from(n)
    } else {
        0
    };
    let priority = if flags & PRIORITY != 0 {
        let (p, tail) = rest
            .split_first_chunk::<5>()
            .ok_or_else(|| violation("HEADERS too short for its priority"))?;
        rest = tail;
        Some(*p)
    } else {
        None
    };
    let fragment = rest
        .get(..rest.len().checked_sub(pad).unwrap_or(usize::MAX))
        .ok_or_else(|| violation("HEADERS padding exceeds the payload"))?;
    let block = PendingBlock {
        stream,
        end_stream: flags & END_STREAM != 0,
        priority,
        fragment: Vec::new(),
    };
    Ok((block, fragment))
}

/// `fragment` with each fixed field re-encoded in its own representation, name by the
/// static table's `:authority` (index 1).
fn patch(fragment: &[u8], spans: &[Spanned]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fragment.len() + 16);
    let mut at = 0;
    for s in spans.iter().filter(|s| s.fixed) {
        out.extend_from_slice(&fragment[at..s.span.start]);
        match s.repr {
            Repr::Incremental => hpack::encode_integer(&mut out, 1, 6, 0x40),
            Repr::NeverIndexed => hpack::encode_integer(&mut out, 1, 4, 0x10),
            Repr::Indexed | Repr::WithoutIndexing => hpack::encode_integer(&mut out, 1, 4, 0x00),
        }
        hpack::encode_string(&mut out, &s.field.value);
        at = s.span.end;
    }
    out.extend_from_slice(&fragment[at..]);
    out
}

/// The preface after `bytes`, `seen` of it already passed: how many of `bytes` it takes
/// and the state after them, `Raw` (taking none) if they are not the preface.
fn preface_step(seen: usize, bytes: &[u8]) -> (usize, State) {
    let want = &PREFACE[seen..];
    let n = want.len().min(bytes.len());
    if bytes[..n] != want[..n] {
        return (0, State::Raw);
    }
    let next = if seen + n == PREFACE.len() {
        State::FrameHeader
    } else {
        State::Preface(seen + n)
    };
    (n, next)
}

/// The frame header at the start of `bytes`, if it is all there: payload length, type,
/// flags and stream (its reserved bit cleared).
fn frame_header(bytes: &[u8]) -> Option<(usize, u8, u8, u32)> {
    let head = bytes.get(..FRAME_HEADER_LEN)?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((len, head[3], head[4], stream))
}

fn write_frame_header(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// A client that broke HTTP/2 framing where `h2` would end the connection too.
fn violation(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

// === impl AsyncRead ===

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityRewriter<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_pos < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.out_pos);
                buf.put_slice(&this.output[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.output.len() {
                    this.output.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            this.process()?;
            if !this.output.is_empty() {
                continue;
            }
            if this.input.is_empty() && this.block.is_none() && buf.remaining() > 0 {
                // Nothing held back: read into the caller's buffer, leave there what may
                // pass as it is, and hold back the rest for `process`.
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                let got = &buf.filled()[before..];
                if got.is_empty() {
                    this.eof = true;
                    return Poll::Ready(Ok(()));
                }
                let (keep, consumed) = match this.scan_in_place(got) {
                    Ok(scanned) => scanned,
                    Err(e) => {
                        buf.set_filled(before);
                        return Poll::Ready(Err(e));
                    }
                };
                this.input.extend_from_slice(&got[consumed..]);
                buf.set_filled(before + keep);
                if keep > 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // A frame cut short stays cut short: `h2` sees the same truncation.
                this.eof = true;
                this.output.append(&mut this.input);
            } else {
                this.input.extend_from_slice(read.filled());
            }
        }
    }
}

// === impl AsyncWrite ===

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityRewriter<IO> {
    forward_async_write!();
}

#[cfg(test)]
mod tests;
