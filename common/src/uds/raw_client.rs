//! A raw HTTP/2 gRPC client for tests: it sends whatever `:authority` it is told (or none),
//! which no real HTTP/2 client library lets a test do, and reports exactly what came back
//! (response headers, messages, trailers, or the stream's RST_STREAM code).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::hpack::{self, Decoder, Field};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Every `:authority` form gRPC clients send on a Unix socket at `socket` (and none):
/// grpc-go's `localhost`, grpc-java's raw path, grpc C-core's percent-encoded path, empty,
/// abstract-socket names and a whole target URI.
pub fn authority_forms(socket: &str) -> Vec<Option<Vec<u8>>> {
    let pct = socket
        .trim_start_matches('/')
        .replace('%', "%25")
        .replace('/', "%2F");
    vec![
        None,
        Some(b"".to_vec()),
        Some(b"localhost".to_vec()),
        Some(socket.as_bytes().to_vec()),
        Some(pct.into_bytes()),
        Some(b"\0signet-abstract".to_vec()),
        Some(b"@signet-abstract".to_vec()),
        Some(b"unix-abstract:signet".to_vec()),
        Some(format!("unix://{socket}").into_bytes()),
        Some(b"unix:///run/x y/api.sock".to_vec()),
    ]
}

/// What one call got back.
#[derive(Debug, Default)]
pub struct RawResponse {
    /// The response headers (`:status`, `content-type`, maybe `grpc-status` for a
    /// trailers-only answer).
    pub headers: Vec<Field>,
    /// Complete gRPC messages, in order.
    pub messages: Vec<Vec<u8>>,
    /// The trailers.
    pub trailers: Vec<Field>,
    /// The RST_STREAM error code, if the server reset the stream.
    pub reset: Option<u32>,
}

impl RawResponse {
    fn value(&self, name: &str) -> Option<String> {
        self.trailers
            .iter()
            .chain(&self.headers)
            .find(|f| f.name[..] == *name.as_bytes())
            .map(|f| String::from_utf8_lossy(&f.value).into_owned())
    }

    /// `grpc-status`, from the trailers or a trailers-only response.
    pub fn grpc_status(&self) -> Option<i32> {
        self.value("grpc-status").and_then(|s| s.parse().ok())
    }

    /// `grpc-message`, percent-decoded.
    pub fn grpc_message(&self) -> Option<String> {
        let raw = self.value("grpc-message")?;
        let bytes = raw.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// The HTTP `:status`.
    pub fn http_status(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|f| &f.name[..] == b":status")
            .map(|f| String::from_utf8_lossy(&f.value).into_owned())
    }
}

/// One HTTP/2 connection, one call at a time.
#[derive(Debug)]
pub struct RawClient<IO> {
    io: IO,
    decoder: Decoder,
    next_stream: u32,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> RawClient<IO> {
    /// Sends the preface and an empty SETTINGS frame.
    pub async fn handshake(mut io: IO) -> io::Result<Self> {
        io.write_all(PREFACE).await?;
        write_frame(&mut io, SETTINGS, 0, 0, &[]).await?;
        Ok(Self {
            io,
            decoder: Decoder::new(4096, 1 << 20),
            next_stream: 1,
        })
    }

    /// Calls `path` with `authority` (`None`: no `:authority` at all) and `metadata`,
    /// sending `message` as the one request message. Returns at the end of the stream,
    /// or, with `first_message_only`, once a first complete message has arrived (the
    /// stream is then cancelled).
    pub async fn call(
        &mut self,
        path: &str,
        authority: Option<&[u8]>,
        metadata: &[(&str, &str)],
        message: &[u8],
        first_message_only: bool,
    ) -> io::Result<RawResponse> {
        let stream = self.next_stream;
        self.next_stream += 2;
        let mut block = Vec::new();
        let mut put = |n: &[u8], v: &[u8]| {
            hpack::encode_literal(&mut block, &Field::new(n.to_vec(), v.to_vec()))
        };
        put(b":method", b"POST");
        put(b":scheme", b"http");
        put(b":path", path.as_bytes());
        if let Some(a) = authority {
            put(b":authority", a);
        }
        put(b"content-type", b"application/grpc");
        put(b"te", b"trailers");
        for (n, v) in metadata {
            put(n.as_bytes(), v.as_bytes());
        }
        write_frame(&mut self.io, HEADERS, END_HEADERS, stream, &block).await?;
        let mut data = vec![0u8];
        data.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
        data.extend_from_slice(message);
        write_frame(&mut self.io, DATA, END_STREAM, stream, &data).await?;
        self.read_response(stream, first_message_only).await
    }

    async fn read_response(&mut self, stream: u32, first_only: bool) -> io::Result<RawResponse> {
        let mut response = RawResponse::default();
        let mut body = Vec::new();
        let mut block: Option<(u32, u8, Vec<u8>)> = None;
        loop {
            let (kind, flags, id, payload) = read_frame(&mut self.io).await?;
            match kind {
                SETTINGS if flags & ACK == 0 => {
                    write_frame(&mut self.io, SETTINGS, ACK, 0, &[]).await?
                }
                PING if flags & ACK == 0 => {
                    write_frame(&mut self.io, PING, ACK, 0, &payload).await?
                }
                GOAWAY => return Err(io::Error::other(format!("GOAWAY {payload:?}"))),
                RST_STREAM if id == stream => {
                    let code = payload
                        .get(..4)
                        .map_or(0, |c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                    response.reset = Some(code);
                    return Ok(response);
                }
                HEADERS | CONTINUATION => {
                    let fragment = if kind == HEADERS {
                        block = Some((id, flags, Vec::new()));
                        strip_headers_payload(flags, &payload)?
                    } else {
                        &payload[..]
                    };
                    let Some((_, first_flags, buf)) = block.as_mut() else {
                        return Err(io::Error::other("CONTINUATION without HEADERS"));
                    };
                    buf.extend_from_slice(fragment);
                    if flags & END_HEADERS != 0 {
                        let (owner, first_flags, buf) = (id, *first_flags, std::mem::take(buf));
                        block = None;
                        let fields = self
                            .decoder
                            .decode(&buf)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                        if owner == stream {
                            if response.headers.is_empty() {
                                response.headers = fields;
                            } else {
                                response.trailers = fields;
                            }
                            if first_flags & END_STREAM != 0 {
                                return Ok(response);
                            }
                        }
                    }
                }
                DATA if id == stream => {
                    body.extend_from_slice(strip_padding(flags, &payload)?);
                    while body.len() >= 5 {
                        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]);
                        let len = usize::try_from(len).unwrap_or(usize::MAX);
                        if body.len() < 5 + len {
                            break;
                        }
                        response.messages.push(body[5..5 + len].to_vec());
                        body.drain(..5 + len);
                    }
                    if first_only && !response.messages.is_empty() {
                        write_frame(&mut self.io, RST_STREAM, 0, stream, &8u32.to_be_bytes())
                            .await?;
                        return Ok(response);
                    }
                    if flags & END_STREAM != 0 {
                        return Ok(response);
                    }
                }
                _ => {}
            }
        }
    }
}

fn strip_padding(flags: u8, payload: &[u8]) -> io::Result<&[u8]> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let (&pad, rest) = payload
        .split_first()
        .ok_or_else(|| io::Error::other("bad padding"))?;
    rest.get(..rest.len().saturating_sub(usize::from(pad)))
        .ok_or_else(|| io::Error::other("bad padding"))
}

fn strip_headers_payload(flags: u8, payload: &[u8]) -> io::Result<&[u8]> {
    let rest = strip_padding(flags, payload)?;
    if flags & PRIORITY != 0 {
        return rest
            .get(5..)
            .ok_or_else(|| io::Error::other("bad priority"));
    }
    Ok(rest)
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::other("frame too large"))?
        .to_be_bytes();
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&len[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    io.flush().await
}

/// Reads one frame: (type, flags, stream, payload).
pub async fn read_frame<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Ok((head[3], head[4], stream, payload))
}
