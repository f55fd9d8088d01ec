//! The agent's public socket: SPIFFE Workload API (and, later, Envoy SDS) over a Unix
//! socket every local process may connect to; identity comes only from attestation.
//!
//! Every connection carries its caller's credentials ([`crate::peer`]); every call attests
//! the caller, then checks it is still the same live process. Errors become gRPC statuses in
//! exactly one place, [`From<ApiError> for Status`](ApiError), which also logs them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryServiceServer;
use signet_common::metrics::{RpcLayer, RpcMetrics};
use signet_common::size_limit::SizeLimitLayer;
use signet_common::uds;
use signet_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic::{Request, Status};
use tower::layer::util::{Identity, Stack};

use self::open_streams::OpenStreamsLayer;

use crate::config::{ConnLimits, SdsConfig};

pub mod admin;
mod caller;
mod error;
pub mod health;
mod jwt;
#[cfg(test)]
mod jwt_fuzz;
pub mod limits;
mod open_streams;
pub mod sds;
pub mod workload;

#[cfg(test)]
mod tests;

pub use caller::{CallerAttestor, CallerSelectors};
pub use error::ApiError;
pub use sds::SdsService;
pub use workload::{WorkloadApi, WorkloadService};

/// The metadata key every Workload API call must carry with the value `true`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// How long open streams may keep the server up after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Binds the public socket (0777; parent directory created if missing). Every workload,
/// whatever its uid, must be able to connect: identity comes from attestation, never from
/// file permissions.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    let access = uds::Access {
        socket_mode: 0o777,
        new_parent_mode: None,
    };
    Ok(uds::bind(path, access)?)
}

/// Serves the Workload API on `listener` until `shutdown` turns true (and Envoy SDS with
/// SPIRE's default resource names; see [`serve_with_sds`]).
pub fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    listener: UnixListener,
    api: WorkloadApi,
    shutdown: watch::Receiver<bool>,
) {
    serve_with_sds(
        tasks,
        listener,
        api,
        SdsConfig::default(),
        ConnLimits::default(),
        RpcMetrics::default(),
        shutdown,
    );
}

/// Serves the Workload API, Envoy SDS (configured by `sds`) and gRPC health on `listener`
/// until `shutdown` turns true, every call counted in `rpc`, connections held to `limits`
/// (the open file limit is raised to its hard limit first). Streams still open
/// [`SHUTDOWN_GRACE`] after that are cut.
pub fn serve_with_sds(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    listener: UnixListener,
    api: WorkloadApi,
    sds: SdsConfig,
    limits: ConnLimits,
    rpc: RpcMetrics,
    shutdown: watch::Receiver<bool>,
) {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let (reporter, health) = tonic_health::server::health_reporter();
    let router = router(api, sds, &limits, rpc, shutdown.clone(), health);
    let table = limits::ConnTable::new(&limits, limits::raise_fd_limit());
    let mut stop = shutdown.clone();
    let mut grace = shutdown;
    tasks.spawn(async move {
        reporter
            .set_serving::<SpiffeWorkloadApiServer<WorkloadService>>()
            .await;
        reporter
            .set_serving::<SecretDiscoveryServiceServer<SdsService>>()
            .await;
        tracing::info!(path = ?path, per_uid = table.per_uid(), "Starting Workload API");
        let incoming = limits::incoming(listener, table, limits.idle_timeout);
        let server = router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.wait_for(|stop| *stop).await;
        });
        let grace = async move {
            let _ = grace.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            served = server => served.context("workload API server failed"),
            () = grace => {
                tracing::warn!("Closing Workload API connections still open after shutdown");
                Ok(())
            }
        }
    });
}

/// The public socket's layers, outermost first: open streams, metrics, size-limit codes.
type Layers = Stack<SizeLimitLayer, Stack<RpcLayer, Stack<OpenStreamsLayer, Identity>>>;

/// The public socket's one router: the Workload API behind its security-header check,
/// Envoy SDS (no header: Envoy does not send it) and gRPC health.
fn router(
    api: WorkloadApi,
    sds: SdsConfig,
    limits: &ConnLimits,
    rpc: RpcMetrics,
    shutdown: watch::Receiver<bool>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> Router<Layers> {
    let attestor = Arc::new(CallerAttestor::new(Arc::clone(&api.attestors)));
    let sds = SdsService::new(
        api.snapshot.clone(),
        Arc::clone(&api.identities),
        attestor,
        sds,
    );
    let workload = SpiffeWorkloadApiServer::new(WorkloadService::new(api, shutdown));
    Server::builder()
        .max_concurrent_streams(limits.max_streams_per_conn)
        // Outermost first: the metrics layer sees the code the size layer rewrote.
        .layer(OpenStreamsLayer)
        .layer(rpc.layer())
        .layer(SizeLimitLayer)
        .add_service(health)
        .add_service(InterceptedService::new(workload, check_security_header))
        .add_service(SecretDiscoveryServiceServer::new(sds))
}

/// SPIRE's rule: exactly one `workload.spiffe.io` value, and it is `true`.
fn check_security_header(req: Request<()>) -> Result<Request<()>, Status> {
    let mut values = req.metadata().get_all(SECURITY_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(v), None) if v.as_bytes() == b"true" => Ok(req),
        _ => Err(ApiError::MissingHeader.into()),
    }
}
