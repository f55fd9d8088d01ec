//! The HTTP health listener (`health_checks {}`): `/live` answers while the process runs;
//! `/ready` answers 200 only while the CA has an active authority and the store answers.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::ApiState;
use crate::config::HealthConfig;

/// Binds and serves the health endpoints until `shutdown`; returns the bound address.
pub async fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    config: &HealthConfig,
    state: Arc<ApiState>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind((config.bind_address.as_str(), config.bind_port))
        .await
        .with_context(|| {
            format!(
                "cannot bind health listener {}:{}",
                config.bind_address, config.bind_port
            )
        })?;
    let addr = listener.local_addr()?;
    let ready_state = Arc::clone(&state);
    let app = Router::new()
        .route(
            &config.live_path,
            get(|| async { (StatusCode::OK, "{\"live\":true}") }),
        )
        .route(
            &config.ready_path,
            get(move || {
                let state = Arc::clone(&ready_state);
                async move { readiness(&state).await }
            }),
        );
    tasks.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
            .context("health listener failed")
    });
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
