//! The gRPC layer that tells a connection's idle timer ([`super::limits`]) which calls are
//! open: a call counts from its request until its response body is gone (after the last
//! message or the client's reset). It also hands the handlers the caller's [`Peer`] from the
//! connection's [`ConnInfo`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::http;

use super::limits::ConnInfo;

/// The layer; outermost, so that it counts the whole call.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct OpenStreamsLayer;

impl<S> tower::Layer<S> for OpenStreamsLayer {
    type Service = OpenStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OpenStreams { inner }
    }
}

/// See [`OpenStreamsLayer`].
#[derive(Debug, Clone)]
pub(super) struct OpenStreams<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<Body>> for OpenStreams<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let conn = req.extensions().get::<ConnInfo>().cloned();
        let guard = conn.map(|conn| {
            req.extensions_mut().insert(conn.peer.clone());
            conn.state.open_stream()
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let (parts, body) = fut.await?.into_parts();
            let body = body.map_frame(move |frame| {
                // Owned by the body: the call is open until the body is dropped.
                let _open = &guard;
                frame
            });
            Ok(http::Response::from_parts(parts, Body::new(body)))
        })
    }
}
