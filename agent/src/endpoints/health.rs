//! The HTTP health listener (`health_checks {}`): `/live` answers while the process runs;
//! `/ready` answers 200 once the first sync with the server has completed and while the
//! agent SVID has not expired.

use std::sync::Arc;

use anyhow::Context;
use axum::http::StatusCode;
use signet_common::clock::Clock;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::HealthConfig;
use crate::manager::Snapshot;
use crate::svid::AgentSvid;

/// What readiness is judged on.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The manager's snapshots.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// The agent SVID.
    pub svid: watch::Receiver<Arc<AgentSvid>>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// Binds and serves the health endpoints until `shutdown`; returns the bound address.
pub async fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    config: &HealthConfig,
    readiness: Readiness,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::net::SocketAddr> {
    let ready = move || {
        let r = readiness.clone();
        async move { r.check() }
    };
    let (addr, serve) = signet_common::health::bind(config, ready, shutdown).await?;
    tasks.spawn(async move { serve.await.context("health listener failed") });
    Ok(addr)
}

impl Readiness {
    fn check(&self) -> (StatusCode, String) {
        let synced = self.snapshot.borrow().synced;
        let svid = self.svid.borrow().not_after > self.clock.unix_now();
        let ready = synced && svid;
        let code = if ready {
            StatusCode::OK
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        (
            code,
            format!("{{\"ready\":{ready},\"synced\":{synced},\"agent_svid\":{svid}}}"),
        )
    }
}
