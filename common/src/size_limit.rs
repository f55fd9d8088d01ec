//! Oversized gRPC messages answer `ResourceExhausted`, as grpc-go (and so SPIRE) answers
//! them. tonic refuses a message over its size limit with `OutOfRange` ("decoded message
//! length too large" / "encoded message length too large"), a code that means "past the
//! end of a range" to clients; this layer, on every listener of both binaries, rewrites
//! exactly those statuses (trailers-only responses and trailers alike) and nothing else.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue};
use http_body_util::BodyExt;

/// The messages tonic gives an over-limit message (its `codec` module); matched by prefix.
const TOO_LARGE: [&str; 2] = [
    "Error, decoded message length too large",
    "Error, encoded message length too large",
];

/// `OutOfRange` and `ResourceExhausted` as `grpc-status` values.
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// The layer: add it inside the metrics layer so the calls are counted with the new code.
#[derive(Debug, Clone, Copy, Default)]
pub struct SizeLimitLayer;

impl<S> tower::Layer<S> for SizeLimitLayer {
    type Service = SizeLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SizeLimitService { inner }
    }
}

/// See [`SizeLimitLayer`].
#[derive(Debug, Clone)]
pub struct SizeLimitService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<tonic::body::Body>> for SizeLimitService<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let (mut parts, body) = fut.await?.into_parts();
            rewrite(&mut parts.headers);
            let body = body.map_frame(|mut frame| {
                if let Some(trailers) = frame.trailers_mut() {
                    rewrite(trailers);
                }
                frame
            });
            Ok(http::Response::from_parts(
                parts,
                tonic::body::Body::new(body),
            ))
        })
    }
}

/// Turns tonic's `OutOfRange` for an over-limit message into `ResourceExhausted`.
fn rewrite(headers: &mut HeaderMap) {
    let oversized = headers.get("grpc-status").map(HeaderValue::as_bytes)
        == Some(OUT_OF_RANGE.as_bytes())
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                let m = percent_encoding::percent_decode_str(m).decode_utf8_lossy();
                TOO_LARGE.iter().any(|p| m.starts_with(p))
            });
    if oversized {
        headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &'static str, message: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static(status));
        h.insert("grpc-message", HeaderValue::from_static(message));
        h
    }

    #[test]
    fn only_tonic_size_limit_statuses_become_resource_exhausted() {
        let mut too_large = headers(
            "11",
            "Error,%20decoded message length too large: found 5000000 bytes",
        );
        rewrite(&mut too_large);
        assert_eq!(too_large["grpc-status"], "8");

        let mut other_range = headers("11", "page token out of range");
        rewrite(&mut other_range);
        assert_eq!(other_range["grpc-status"], "11");

        let mut other_code = headers("3", "Error, decoded message length too large");
        rewrite(&mut other_code);
        assert_eq!(other_code["grpc-status"], "3");
    }
}
