use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::*;
use crate::uds::hpack::{Field, encode_integer, encode_literal, encode_string};

/// Hands out its bytes a few at a time, so every frame boundary falls mid-read somewhere
/// (`step` cycling from 1 to 7), or `chunk` bytes at a time when that is set, or up to each
/// of `cuts` in turn (frame boundaries: whole frames in one read, the rewriter's in-place
/// path).
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    step: usize,
    chunk: Option<usize>,
    cuts: Vec<usize>,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let pos = self.pos;
        let step = match self.cuts.iter().find(|&&c| c > pos) {
            Some(&cut) => cut - pos,
            None if !self.cuts.is_empty() => usize::MAX,
            None => self.step,
        };
        let n = step.min(self.data.len() - self.pos).min(buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        self.step = self.chunk.unwrap_or(self.step % 7 + 1);
        Poll::Ready(Ok(()))
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame_header(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

/// Runs `input` through the rewriter, reading it back in pieces: a few bytes at a time,
/// then in larger chunks and all at once, which must all give the same bytes (or the same
/// kind of error).
async fn rewrite(input: Vec<u8>) -> io::Result<Vec<u8>> {
    let boundaries = frame_boundaries(&input);
    let every_other: Vec<usize> = boundaries.iter().copied().step_by(2).collect();
    let mut results = Vec::new();
    let readings = [
        (None, vec![]),
        (Some(64), vec![]),
        (Some(1000), vec![]),
        (Some(usize::MAX), vec![]),
        (None, boundaries),
        (None, every_other),
    ];
    for (chunk, cuts) in readings {
        let mut r = AuthorityRewriter::new(Trickle {
            data: input.clone(),
            pos: 0,
            step: chunk.unwrap_or(1),
            chunk,
            cuts,
        });
        let mut out = Vec::new();
        results.push(r.read_to_end(&mut out).await.map(|_| out));
    }
    let first = results.remove(0);
    for other in &results {
        match (&first, other) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "the output depends on how the input is read"),
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
            (a, b) => panic!("trickled: {a:?}; in chunks: {b:?}"),
        }
    }
    first
}

/// Where each frame of `input` ends (after the preface, if it has one).
fn frame_boundaries(input: &[u8]) -> Vec<usize> {
    let mut pos = if input.starts_with(PREFACE) {
        PREFACE.len()
    } else {
        return vec![];
    };
    let mut cuts = vec![pos];
    while let Some(head) = input.get(pos..pos + FRAME_HEADER_LEN) {
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        pos += FRAME_HEADER_LEN + len;
        cuts.push(pos.min(input.len()));
    }
    cuts
}

/// Splits rewritten output (after the preface) into frames.
fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
        out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
        bytes = &bytes[9 + len..];
    }
    out
}

/// Reassembles the header blocks of rewritten frames and decodes them in order with one
/// decoder of its own, as `h2` does: its dynamic table must follow the rewritten stream.
fn blocks(frames: &[(u8, u8, u32, Vec<u8>)]) -> Vec<(u32, u8, Vec<Field>)> {
    let mut d = hpack::Decoder::new(4096, 1 << 20);
    let mut out = Vec::new();
    let mut current: Option<(u32, u8, Vec<u8>)> = None;
    for (kind, flags, stream, payload) in frames {
        match *kind {
            HEADERS => {
                assert_eq!(flags & PADDED, 0, "padding is dropped");
                let body = if flags & PRIORITY != 0 {
                    &payload[5..]
                } else {
                    &payload[..]
                };
                current = Some((*stream, *flags, body.to_vec()));
            }
            CONTINUATION => current.as_mut().unwrap().2.extend_from_slice(payload),
            _ => continue,
        }
        assert!(payload.len() <= MAX_OUT_FRAME);
        if flags & END_HEADERS != 0 {
            let (stream, flags, block) = current.take().unwrap();
            out.push((stream, flags, d.decode(&block).unwrap()));
        }
    }
    out
}

fn value<'a>(fields: &'a [Field], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name[..] == *name.as_bytes())
        .map(|f| &f.value[..])
}

fn request_block(authority: Option<&[u8]>, index_authority: bool) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    if let Some(a) = authority {
        if index_authority {
            encode_integer(&mut b, 1, 6, 0x40); // literal, incremental indexing, name 1
            encode_string(&mut b, a);
        } else {
            encode_literal(&mut b, &Field::new(":authority", a.to_vec()));
        }
    }
    encode_literal(&mut b, &Field::new(":path", "/svc/Method"));
    b.push(0x40);
    encode_string(&mut b, b"workload.spiffe.io");
    encode_string(&mut b, b"true");
    b
}

#[tokio::test]
async fn rewrites_bad_authorities_and_passes_everything_else_through() {
    let settings = frame(0x4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
    let data = frame(0x0, END_STREAM, 1, b"\0\0\0\0\x02hi");
    // Stream 1: padded HEADERS with priority, the raw socket path (indexed), split over a
    // CONTINUATION.
    let block = request_block(Some(b"/run/agent/api.sock"), true);
    let (a, b) = block.split_at(7);
    let mut headers = vec![3u8]; // pad length
    headers.extend_from_slice(&[0x80, 0, 0, 0, 15]); // exclusive dependency on 0, weight 16
    headers.extend_from_slice(a);
    headers.extend_from_slice(&[0, 0, 0]);
    // Stream 3: the same authority by reference to the client's dynamic table, and the
    // header from its table too.
    let mut again = vec![0x83, 0x86, 0xbf, 0xbe];
    encode_literal(&mut again, &Field::new(":path", "/svc/Method"));
    // Stream 5: percent-encoded path, not indexed; stream 7: a well-formed authority.
    let mut input = PREFACE.to_vec();
    input.extend(&settings);
    input.extend(frame(HEADERS, PADDED | PRIORITY, 1, &headers));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
    input.extend(&data);
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &again));
    let pct = request_block(Some(b"run%2Fagent%2Fapi.sock"), false);
    input.extend(frame(HEADERS, END_HEADERS, 5, &pct));
    let good = request_block(Some(b"localhost:1234"), true);
    input.extend(frame(HEADERS, END_HEADERS, 7, &good));
    let none = request_block(None, false);
    input.extend(frame(HEADERS, END_HEADERS, 9, &none));

    let out = rewrite(input).await.unwrap();
    assert_eq!(&out[..24], PREFACE);
    let frames = frames(&out[24..]);
    assert_eq!(frames[0], (0x4, 0, 0, settings[9..].to_vec()));
    assert_eq!(frames[2], (0x0, END_STREAM, 1, data[9..].to_vec()));
    assert_eq!(frames[1].3[..5], [0x80, 0, 0, 0, 15], "priority kept");
    let blocks = blocks(&frames);
    let authorities: Vec<_> = blocks
        .iter()
        .map(|(s, _, f)| (*s, value(f, ":authority").map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(
        authorities,
        [
            // Added to the table: a valid authority of the same length, so the
            // client's and h2's tables stay the same size; by reference the same.
            (1, Some(b"localhostxxxxxxxxxx".to_vec())),
            (3, Some(b"localhostxxxxxxxxxx".to_vec())),
            (5, Some(b"localhost".to_vec())),
            (7, Some(b"localhost:1234".to_vec())),
            (9, None),
        ]
    );
    for (stream, flags, fields) in &blocks {
        assert_eq!(value(fields, ":path"), Some(&b"/svc/Method"[..]));
        assert_eq!(value(fields, "workload.spiffe.io"), Some(&b"true"[..]));
        assert_eq!(&fields[0].name[..], b":method");
        assert_eq!(flags & END_STREAM != 0, *stream == 3);
    }
}

#[tokio::test]
async fn a_block_with_a_good_authority_or_none_is_passed_on_byte_for_byte() {
    let good = request_block(Some(b"localhost:1234"), true);
    let none = request_block(None, false);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, &good));
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &none));
    let out = rewrite(input.clone()).await.unwrap();
    assert_eq!(out, input);
}

#[tokio::test]
async fn only_the_bad_field_is_re_encoded() {
    let block = request_block(Some(b"run%2Fagent%2Fapi.sock"), false);
    let out = rewrite([PREFACE.to_vec(), frame(HEADERS, END_HEADERS, 1, &block)].concat())
        .await
        .unwrap();
    let frames = frames(&out[24..]);
    let mut expected = vec![0x83, 0x86];
    encode_integer(&mut expected, 1, 4, 0x00);
    encode_string(&mut expected, b"localhost");
    let tail = request_block(None, false);
    expected.extend_from_slice(&tail[2..]);
    assert_eq!(frames, [(HEADERS, END_HEADERS, 1, expected)]);
}

#[tokio::test]
async fn an_empty_authority_added_to_the_table_turns_the_connection_to_literals() {
    let empty = request_block(Some(b""), true);
    // The next block refers to the client's table: the empty authority (63) and the
    // workload header (62).
    let mut again = vec![0x83, 0x86, 0xbf, 0xbe];
    encode_literal(&mut again, &Field::new(":path", "/svc/Method"));
    let good = request_block(Some(b"localhost:1234"), true);
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, &empty));
    input.extend(frame(HEADERS, END_HEADERS, 3, &again));
    input.extend(frame(HEADERS, END_HEADERS, 5, &good));
    let out = rewrite(input).await.unwrap();
    let blocks = blocks(&frames(&out[24..]));
    let mut h2 = hpack::Decoder::new(4096, 1 << 20);
    for (stream, _, fields) in &blocks {
        let want = if *stream == 5 {
            &b"localhost:1234"[..]
        } else {
            &b"localhost"[..]
        };
        assert_eq!(value(fields, ":authority"), Some(want), "stream {stream}");
        assert_eq!(value(fields, "workload.spiffe.io"), Some(&b"true"[..]));
        let mut plain = Vec::new();
        for f in fields {
            encode_literal(&mut plain, f);
        }
        h2.decode(&plain).unwrap();
    }
    assert_eq!(h2.table_len(), 0);
}

/// A client encoder with a 256-byte dynamic table (entries evicted all the time) that
/// sends each field at random as a reference to its table, a literal it adds to the table,
/// or a literal it does not, over hundreds of requests on one connection with good and bad
/// authorities mixed: what `h2` decodes is the client's header list with only the bad
/// authorities replaced.
#[tokio::test]
async fn stays_in_step_with_an_indexing_encoder_through_evictions() {
    const TABLE: usize = 256;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let authorities: [&[u8]; 5] = [
        b"/run/agent/api.sock",
        b"run%2Fagent%2Fapi.sock",
        b"localhost",
        b"localhost:8081",
        b"@signet agent",
    ];
    // The client's dynamic table, newest first.
    let mut table: std::collections::VecDeque<(Vec<u8>, Vec<u8>)> = Default::default();
    let size = |t: &std::collections::VecDeque<(Vec<u8>, Vec<u8>)>| {
        t.iter().map(|(n, v)| n.len() + v.len() + 32).sum::<usize>()
    };
    let mut input = PREFACE.to_vec();
    let mut sent = Vec::new();
    let mut counts = [0usize; 3];
    for round in 0..400u32 {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (
                b":path".to_vec(),
                format!("/svc/M{}", next() % 9).into_bytes(),
            ),
            (
                b":authority".to_vec(),
                authorities[(next() % authorities.len() as u64) as usize].to_vec(),
            ),
            (
                b"x-extra".to_vec(),
                format!("v{}", next() % 30).into_bytes(),
            ),
        ];
        let mut block = Vec::new();
        if round == 0 {
            encode_integer(&mut block, TABLE, 5, 0x20);
        }
        for (name, value) in &fields {
            let found = table.iter().position(|(n, v)| n == name && v == value);
            match (next() % 3, found) {
                (0, Some(i)) => {
                    encode_integer(&mut block, 62 + i, 7, 0x80);
                    counts[0] += 1;
                }
                (1, _) => {
                    block.push(0x40);
                    encode_string(&mut block, name);
                    encode_string(&mut block, value);
                    table.push_front((name.clone(), value.clone()));
                    while size(&table) > TABLE {
                        table.pop_back();
                    }
                    counts[1] += 1;
                }
                _ => {
                    encode_literal(&mut block, &Field::new(name.clone(), value.clone()));
                    counts[2] += 1;
                }
            }
        }
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * round + 1,
            &block,
        ));
        sent.push(fields);
    }
    assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
    let out = rewrite(input).await.unwrap();
    let blocks = blocks(&frames(&out[24..]));
    assert_eq!(blocks.len(), sent.len());
    for ((stream, _, got), sent) in blocks.iter().zip(&sent) {
        assert_eq!(got.len(), sent.len(), "stream {stream}");
        for (g, (name, value)) in got.iter().zip(sent) {
            assert_eq!(&g.name, name, "stream {stream}");
            if name == b":authority" && http::uri::Authority::try_from(&value[..]).is_err() {
                // Same length when the client has it in its table, else `localhost`.
                assert!(g.value.len() == value.len() || &g.value[..] == b"localhost");
                assert!(http::uri::Authority::try_from(&g.value[..]).is_ok());
            } else {
                assert_eq!(&g.value, value, "stream {stream}");
            }
        }
    }
}

#[tokio::test]
async fn splits_large_blocks_into_continuations() {
    let mut block = request_block(Some(b"/x"), false);
    for i in 0..40 {
        encode_literal(
            &mut block,
            &Field::new(format!("x-big-{i}"), vec![b'v'; 1000]),
        );
    }
    let mut input = PREFACE.to_vec();
    for (i, chunk) in block.chunks(10_000).enumerate() {
        let (kind, last) = (
            if i == 0 { HEADERS } else { CONTINUATION },
            (i + 1) * 10_000 >= block.len(),
        );
        input.extend(frame(kind, if last { END_HEADERS } else { 0 }, 1, chunk));
    }
    let out = rewrite(input).await.unwrap();
    let frames = frames(&out[24..]);
    assert!(frames.len() >= 3);
    assert!(frames[1..].iter().all(|f| f.0 == CONTINUATION));
    let blocks = blocks(&frames);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].2.len(), 3 + 2 + 40);
    assert_eq!(value(&blocks[0].2, ":authority"), Some(&b"localhost"[..]));
}

#[tokio::test]
async fn framing_and_compression_errors_end_the_connection() {
    let good = request_block(Some(b"/x"), false);
    let cases = [
        frame(CONTINUATION, END_HEADERS, 1, &good),
        [frame(HEADERS, 0, 1, &good), frame(0x8, 0, 0, &[0, 0, 0, 1])].concat(),
        [
            frame(HEADERS, 0, 1, &good),
            frame(CONTINUATION, END_HEADERS, 3, &[]),
        ]
        .concat(),
        frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff]),
        frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 0x82]),
        frame(HEADERS, END_HEADERS, 1, &vec![0u8; MAX_BLOCK + 1]),
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let input = [PREFACE.to_vec(), case].concat();
        let err = rewrite(input).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "case {i}");
    }
}

#[tokio::test]
async fn anything_but_http2_passes_through_untouched() {
    let http1 = b"GET / HTTP/1.1\r\nHost: /weird\r\n\r\n".to_vec();
    assert_eq!(rewrite(http1.clone()).await.unwrap(), http1);
    let truncated = [PREFACE.to_vec(), frame(0x0, 0, 1, b"abcdef")[..12].to_vec()].concat();
    assert_eq!(rewrite(truncated.clone()).await.unwrap(), truncated);
}

mod grpc;
