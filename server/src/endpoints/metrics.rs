//! The Prometheus listener (`telemetry { Prometheus {} }`): `/metrics` with every
//! [`ServerMetrics`] family, the CA and entry gauges read from state at each scrape.

use std::sync::Arc;

use anyhow::Context;
use signet_common::config::MetricsConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::ApiState;

/// Binds and serves `/metrics` until `shutdown`; returns the bound address.
pub async fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    config: &MetricsConfig,
    state: Arc<ApiState>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::net::SocketAddr> {
    let registry = state.metrics.registry(&config.prefix);
    let refresh = move || {
        let state = Arc::clone(&state);
        async move { state.refresh_metrics().await }
    };
    let (addr, serve) = signet_common::metrics::bind(config, registry, refresh, shutdown).await?;
    tracing::info!(address = %addr, "Serving Prometheus metrics");
    tasks.spawn(async move { serve.await.context("metrics listener failed") });
    Ok(addr)
}
