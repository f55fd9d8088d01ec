//! The agent's Prometheus metrics, all in one place: typed handles the manager and the
//! public socket update, the gauges read from the published snapshot at each scrape, and
//! the `/metrics` listener. Names follow SPIRE's telemetry keys where SPIRE has the concept
//! (`workload_api_connections`, `sds_api_connections`, `lru_cache_svid_map_size`, ...);
//! the README has the table.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use signet_common::clock::Clock;
use signet_common::config::MetricsConfig;
use signet_common::metrics::{RpcMetrics, latency_histogram};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The gRPC service names of the public socket, as `rpc_open_calls` labels them.
const WORKLOAD_API: &str = "SpiffeWorkloadAPI";
const SDS_API: &str = "envoy.service.secret.v3.SecretDiscoveryService";

/// `ok` or `error`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Every agent metric.
#[derive(Debug)]
pub struct AgentMetrics {
    /// gRPC calls on the public socket (Workload API, SDS, health).
    pub rpc: RpcMetrics,
    workload_connections: Gauge,
    sds_connections: Gauge,
    svids_cached: Gauge,
    entries: Gauge,
    soonest_expiry: Gauge,
    renewals: Family<ResultLabel, Counter>,
    sync_elapsed: Family<ResultLabel, Histogram>,
    server_connected: Gauge,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self {
            rpc: RpcMetrics::default(),
            workload_connections: Gauge::default(),
            sds_connections: Gauge::default(),
            svids_cached: Gauge::default(),
            entries: Gauge::default(),
            soonest_expiry: Gauge::default(),
            renewals: Family::default(),
            sync_elapsed: Family::new_with_constructor(latency_histogram),
            server_connected: Gauge::default(),
        }
    }
}

fn result<T, E>(r: &Result<T, E>) -> ResultLabel {
    ResultLabel {
        result: if r.is_ok() { "ok" } else { "error" },
    }
}

impl AgentMetrics {
    /// A registry with every metric, names prefixed with `prefix` (`MetricPrefix`).
    pub fn registry(&self, prefix: &str) -> Registry {
        let mut r = Registry::with_prefix(prefix);
        self.rpc.register(&mut r);
        r.register(
            "workload_api_connections",
            "Workload API calls and streams open now",
            self.workload_connections.clone(),
        );
        r.register(
            "sds_api_connections",
            "Envoy SDS streams and calls open now",
            self.sds_connections.clone(),
        );
        r.register(
            "lru_cache_svid_map_size",
            "Workload X509-SVIDs held",
            self.svids_cached.clone(),
        );
        r.register(
            "lru_cache_record_map_size",
            "Registration entries the agent is authorized for",
            self.entries.clone(),
        );
        r.register(
            "svid_soonest_expiry_seconds",
            "Seconds until the soonest-expiring workload X509-SVID expires (0 when none is held)",
            self.soonest_expiry.clone(),
        );
        r.register(
            "workload_svid_renewals",
            "Workload X509-SVIDs minted or renewed, by result",
            self.renewals.clone(),
        );
        r.register(
            "manager_sync_fetch_entries_updates_elapsed_time_seconds",
            "Full syncs with the server (entries, bundles, SVIDs), duration by result",
            self.sync_elapsed.clone(),
        );
        r.register(
            "server_connected",
            "1 while the change-push stream to the server is open, else 0",
            self.server_connected.clone(),
        );
        r
    }

    /// Records a minted (or refused) workload SVID.
    pub fn renewed<T, E>(&self, r: &Result<T, E>) {
        self.renewals.get_or_create(&result(r)).inc();
    }

    /// Records a full sync that took `elapsed`.
    pub fn synced<T, E>(&self, r: &Result<T, E>, elapsed: Duration) {
        self.sync_elapsed
            .get_or_create(&result(r))
            .observe(elapsed.as_secs_f64());
    }

    /// Sets whether the change-push stream to the server is open.
    pub fn set_server_connected(&self, connected: bool) {
        self.server_connected.set(i64::from(connected));
    }

    /// Sets the state-backed gauges from what the manager holds at `now` (Unix seconds).
    pub fn observe(&self, held: Held, now: i64) {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.svids_cached.set(count(held.svids));
        self.entries.set(count(held.entries));
        self.soonest_expiry.set(
            held.soonest_not_after
                .map_or(0, |t| t.saturating_sub(now).max(0)),
        );
        self.workload_connections
            .set(self.rpc.open_calls(WORKLOAD_API));
        self.sds_connections.set(self.rpc.open_calls(SDS_API));
    }
}

/// What the manager holds, read from its published snapshot at each scrape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Cached workload SVIDs.
    pub svids: usize,
    /// Authorized entries.
    pub entries: usize,
    /// The soonest `not_after` of the cached SVIDs (Unix seconds).
    pub soonest_not_after: Option<i64>,
}

/// Binds and serves `/metrics` until `shutdown`, reading `held` before each scrape; returns
/// the bound address.
pub async fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    config: &MetricsConfig,
    metrics: Arc<AgentMetrics>,
    held: impl Fn() -> Held + Clone + Send + Sync + 'static,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::net::SocketAddr> {
    let registry = metrics.registry(&config.prefix);
    let refresh = move || {
        metrics.observe(held(), clock.unix_now());
        std::future::ready(())
    };
    let (addr, serve) = signet_common::metrics::bind(config, registry, refresh, shutdown).await?;
    tracing::info!(address = %addr, "Serving Prometheus metrics");
    tasks.spawn(async move { serve.await.context("metrics listener failed") });
    Ok(addr)
}
