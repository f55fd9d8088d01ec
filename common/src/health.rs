//! The HTTP health listener both binaries serve (`health_checks {}`): `/live` answers while
//! the process runs; `/ready` answers what the binary's readiness check says.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::config::HealthConfig;
pub use crate::http_listener::{BindError, Serve};
use crate::http_listener::{Listener, bind as bind_http};

/// Binds the health listener; returns its address and the future that serves `/live` and
/// `/ready` (answered by `ready`: a status and a JSON body) until `shutdown` turns true.
pub async fn bind<R, F>(
    config: &HealthConfig,
    ready: R,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, Serve), BindError>
where
    R: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = (StatusCode, String)> + Send + 'static,
{
    let app = Router::new()
        .route(
            &config.live_path,
            get(|| async { (StatusCode::OK, "{\"live\":true}") }),
        )
        .route(&config.ready_path, get(ready));
    let which = Listener {
        name: "health",
        key: "health_checks",
    };
    bind_http(which, &config.bind_address, config.bind_port, app, shutdown).await
}
