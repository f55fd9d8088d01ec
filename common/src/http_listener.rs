//! The plain-HTTP listeners both binaries serve beside gRPC (`health_checks {}` and
//! `telemetry { Prometheus {} }`): bound once here, served until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::Router;
use tokio::sync::watch;

/// An HTTP listener could not be bound (most often: the port is in use).
#[derive(Debug, thiserror::Error)]
#[error("cannot bind the {listener} listener on {host}:{port} ({key})")]
pub struct BindError {
    listener: &'static str,
    key: &'static str,
    host: String,
    port: u16,
    #[source]
    source: std::io::Error,
}

/// The future that serves a bound listener until shutdown.
pub type Serve = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + 'static>>;

/// Which listener, as its errors name it.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// What it serves (`health`, `Prometheus metrics`).
    pub name: &'static str,
    /// The config block that sets its address.
    pub key: &'static str,
}

/// Binds `host:port` for `app`; returns the address it got and the future that serves `app`
/// until `shutdown` turns true.
pub async fn bind(
    which: Listener,
    host: &str,
    port: u16,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, Serve), BindError> {
    let bound = match tokio::net::TcpListener::bind((host, port)).await {
        Ok(listener) => listener.local_addr().map(|addr| (listener, addr)),
        Err(error) => Err(error),
    };
    let (listener, addr) = bound.map_err(|source| BindError {
        listener: which.name,
        key: which.key,
        host: host.to_owned(),
        port,
        source,
    })?;
    let serve = Box::pin(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok((addr, serve))
}
