//! The HTTP health listener (`health_checks {}`): `/live` answers while the process runs;
//! `/ready` answers 200 only while the CA has an active authority and the store answers.

use std::sync::Arc;

use anyhow::Context;
use axum::http::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::ApiState;
use crate::config::HealthConfig;

/// Binds and serves the health endpoints until `shutdown`; returns the bound address.
pub async fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    config: &HealthConfig,
    state: Arc<ApiState>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::net::SocketAddr> {
    let ready = move || {
        let state = Arc::clone(&state);
        async move { readiness(&state).await }
    };
    let (addr, serve) = signet_common::health::bind(config, ready, shutdown).await?;
    tasks.spawn(async move { serve.await.context("health listener failed") });
    Ok(addr)
}

async fn readiness(state: &ApiState) -> (StatusCode, String) {
    let ca = state.ca.active_x509_authority().is_some();
    let store = state
        .registry
        .store()
        .bundle(&state.trust_domain)
        .await
        .is_ok();
    let code = if ca && store {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        code,
        format!(
            "{{\"ready\":{},\"ca\":{ca},\"datastore\":{store}}}",
            ca && store
        ),
    )
}
