//! The HTTP health listener both binaries serve (`health_checks {}`): `/live` answers while
//! the process runs; `/ready` answers what the binary's readiness check says.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::config::HealthConfig;

/// The health listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind health listener {address}:{port}")]
pub struct BindError {
    address: String,
    port: u16,
    #[source]
    source: std::io::Error,
}

/// Binds the health listener; returns its address and the future that serves `/live` and
/// `/ready` (answered by `ready`: a status and a JSON body) until `shutdown` turns true.
pub async fn bind<R, F>(
    config: &HealthConfig,
    ready: R,
    shutdown: watch::Receiver<bool>,
) -> Result<
    (
        SocketAddr,
        impl Future<Output = std::io::Result<()>> + Send + 'static,
    ),
    BindError,
>
where
    R: Fn() -> F + Clone + Send + Sync + 'static,
    F: Future<Output = (StatusCode, String)> + Send + 'static,
{
    let (listener, addr) = listen(&config.bind_address, config.bind_port)
        .await
        .map_err(|source| BindError {
            address: config.bind_address.clone(),
            port: config.bind_port,
            source,
        })?;
    let app = Router::new()
        .route(
            &config.live_path,
            get(|| async { (StatusCode::OK, "{\"live\":true}") }),
        )
        .route(&config.ready_path, get(ready));
    Ok((addr, serve_until(listener, app, shutdown)))
}

/// Binds `host:port` (the health and metrics listeners); returns the listener and the address
/// it got.
pub(crate) async fn listen(
    host: &str,
    port: u16,
) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves `app` on `listener` until `shutdown` turns true (the health and metrics listeners).
pub(crate) async fn serve_until(
    listener: tokio::net::TcpListener,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}
