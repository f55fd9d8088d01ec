//! gRPC calls with bytes chosen by the test instead of an encoded message, for the fuzz
//! targets: any payload to any method path, as one request message, and the outcome
//! reduced to what the server answered (a status, or a first message).

use std::time::Duration;

use http::uri::PathAndQuery;
use prost::bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Passes message bytes through unchanged, both ways.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// [`RawCodec`]'s encoder and decoder.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }

    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

/// What the server answered to one raw call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A first response message (the call succeeded so far).
    Message,
    /// A response stream that ended with OK and no message.
    Empty,
    /// A status, before or after the response headers.
    Status(Code, String),
    /// Nothing within the wait: a stream the server keeps open (watches, SDS).
    Open,
}

/// Sends `payload` as the one request message of `path` (a unary or streaming method alike:
/// the wire form is the same), with `headers` (values that are not valid metadata left
/// out), and waits up to `wait` for the first response message or the status.
pub async fn call(
    channel: Channel,
    path: &str,
    payload: Vec<u8>,
    headers: &[(&'static str, String)],
    wait: Duration,
) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        return Outcome::Status(Code::Unavailable, format!("channel not ready: {e}"));
    }
    let Ok(path) = PathAndQuery::try_from(path.to_owned()) else {
        return Outcome::Status(Code::InvalidArgument, format!("bad path {path:?}"));
    };
    let mut request = Request::new(futures::stream::iter([payload]));
    for (k, v) in headers {
        if let Ok(v) = MetadataValue::try_from(v.as_str()) {
            request.metadata_mut().insert(*k, v);
        }
    }
    let call = async {
        match grpc.streaming(request, path, RawCodec).await {
            Err(s) => Outcome::Status(s.code(), s.message().to_owned()),
            Ok(resp) => match resp.into_inner().message().await {
                Ok(Some(_)) => Outcome::Message,
                Ok(None) => Outcome::Empty,
                Err(s) => Outcome::Status(s.code(), s.message().to_owned()),
            },
        }
    };
    tokio::time::timeout(wait, call)
        .await
        .unwrap_or(Outcome::Open)
}
