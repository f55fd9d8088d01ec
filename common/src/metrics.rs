//! Prometheus metrics both binaries serve (`telemetry { Prometheus { host port } }`): the
//! `/metrics` listener, encoded by `prometheus-client` (never by hand), and the gRPC layer
//! that counts every call and times it by method and status code (SPIRE's `rpc` call
//! counters, as Prometheus labels instead of one metric per method).
//!
//! Each binary keeps its own metric handles in one `metrics` module and passes them to the
//! components that update them; nothing here is global.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::MetricsConfig;
use crate::http_listener::Listener;
pub use crate::http_listener::{BindError, Serve};

/// The content type of the text exposition `prometheus-client` writes (OpenMetrics 1.0,
/// which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds: 1 ms to about 16 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 15)
}

/// A histogram with [`latency_buckets`] (the constructor of latency families).
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// Binds the metrics listener; returns its address and the future that serves `/metrics`
/// until `shutdown` turns true. `refresh` runs before each scrape, to set the gauges that are
/// read from state (time to expiry, counts) rather than updated as events happen.
pub async fn bind<R, F>(
    config: &MetricsConfig,
    registry: Registry,
    refresh: R,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, Serve), BindError>
where
    R: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let registry = Arc::new(registry);
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            let refresh = refresh.clone();
            async move {
                refresh().await;
                scrape(&registry)
            }
        }),
    );
    let which = Listener {
        name: "Prometheus metrics",
        key: "telemetry.Prometheus",
    };
    crate::http_listener::bind(which, &config.host, config.port, app, shutdown).await
}

fn scrape(registry: &Registry) -> axum::response::Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(error) => {
            tracing::warn!(%error, "Cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Labels of one gRPC call: `service` and `method` from the request path, `status` the gRPC
/// code name (`OK`, `PermissionDenied`, ...), as SPIRE's call counters label it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// e.g. `spire.api.server.svid.v1.SVID`.
    pub service: String,
    /// e.g. `BatchNewX509SVID`.
    pub method: String,
    /// The call's gRPC status code name.
    pub status: String,
}

/// Labels naming a gRPC service.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

/// Counts and times every gRPC call through the server it is layered on, and keeps the number
/// of calls (streams included) open per service.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    calls: Family<RpcLabels, Counter>,
    elapsed: Family<RpcLabels, Histogram>,
    open: Family<ServiceLabel, Gauge>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            elapsed: Family::new_with_constructor(latency_histogram),
            open: Family::default(),
        }
    }
}

impl RpcMetrics {
    /// Registers `rpc_calls_total`, `rpc_elapsed_time_seconds` and `rpc_open_calls`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rpc_calls",
            "gRPC calls by service, method and status code",
            self.calls.clone(),
        );
        registry.register(
            "rpc_elapsed_time_seconds",
            "gRPC call duration (streams: until the stream ends) by service, method and status code",
            self.elapsed.clone(),
        );
        registry.register(
            "rpc_open_calls",
            "gRPC calls and streams open now, by service",
            self.open.clone(),
        );
    }

    /// The number of calls of `service` open now.
    pub fn open_calls(&self, service: &str) -> i64 {
        self.open
            .get_or_create(&ServiceLabel {
                service: service.to_owned(),
            })
            .get()
    }

    /// Calls counted so far with these labels.
    pub fn calls(&self, labels: &RpcLabels) -> u64 {
        self.calls.get_or_create(labels).get()
    }

    /// The tower layer that records calls into these metrics.
    pub fn layer(&self) -> RpcLayer {
        RpcLayer {
            metrics: self.clone(),
        }
    }
}

/// The tower layer of [`RpcMetrics`].
#[derive(Debug, Clone)]
pub struct RpcLayer {
    metrics: RpcMetrics,
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service recorded by [`RpcLayer`].
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: RpcMetrics,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<tonic::body::Body>> for RpcService<S>
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
        let call = Call::start(self.metrics.clone(), req.uri().path());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            call.status_from(resp.headers());
            let (parts, body) = resp.into_parts();
            let body = body.map_frame(move |frame| {
                if let Some(trailers) = frame.trailers_ref() {
                    call.status_from(trailers);
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

/// One call in flight: recorded when its response body is dropped (after the trailers, or
/// when the client goes away).
struct Call {
    metrics: RpcMetrics,
    service: String,
    method: String,
    started: Instant,
    status: Mutex<Option<String>>,
}

impl Call {
    fn start(metrics: RpcMetrics, path: &str) -> Self {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let service = parts.next().unwrap_or_default().to_owned();
        let method = parts.next().unwrap_or_default().to_owned();
        metrics
            .open
            .get_or_create(&ServiceLabel {
                service: service.clone(),
            })
            .inc();
        Self {
            metrics,
            service,
            method,
            started: Instant::now(),
            status: Mutex::new(None),
        }
    }

    fn status_from(&self, headers: &http::HeaderMap) {
        if let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()) {
            let name = code
                .parse::<i32>()
                .map_or_else(|_| "Unknown".to_owned(), code_name);
            *self.status.lock().unwrap_or_else(PoisonError::into_inner) = Some(name);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            // No status: the client left before the call ended.
            .unwrap_or_else(|| "Canceled".to_owned());
        let labels = RpcLabels {
            service: std::mem::take(&mut self.service),
            method: std::mem::take(&mut self.method),
            status,
        };
        self.metrics
            .open
            .get_or_create(&ServiceLabel {
                service: labels.service.clone(),
            })
            .dec();
        self.metrics
            .elapsed
            .get_or_create(&labels)
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics.calls.get_or_create(&labels).inc();
    }
}

/// The gRPC code's name as grpc-go (and so SPIRE's `status` label) spells it.
fn code_name(code: i32) -> String {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK".to_owned(),
        tonic::Code::Cancelled => "Canceled".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A gauge that is 1 while a guard made by [`GaugeGuard::hold`] lives.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge` now and decrements it when the guard is dropped.
    pub fn hold(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_match_spire_status_labels() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(1), "Canceled");
        assert_eq!(code_name(7), "PermissionDenied");
        assert_eq!(code_name(99), "Unknown");
    }
}
