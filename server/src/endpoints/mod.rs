//! Listeners: the agent API on TCP with TLS, the admin API on a Unix socket that is not
//! world-accessible, and the HTTP health listener. One tonic router per transport; every
//! handler tells local, agent and anonymous callers apart itself (`api::ApiState::caller`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use signet_common::metrics::{RpcLayer, RpcMetrics};
use signet_common::size_limit::SizeLimitLayer;
use signet_common::uds;
use signet_proto::istio::v1::auth::istio_certificate_service_server::IstioCertificateServiceServer;
use signet_proto::signet::sync::v1::sync_server::SyncServer;
use signet_proto::spire::api::server::agent::v1::agent_server::AgentServer;
use signet_proto::spire::api::server::bundle::v1::bundle_server::BundleServer;
use signet_proto::spire::api::server::entry::v1::entry_server::EntryServer;
use signet_proto::spire::api::server::localauthority::v1::local_authority_server::LocalAuthorityServer;
use signet_proto::spire::api::server::svid::v1::svid_server::SvidServer;
use signet_proto::spire::api::server::trustdomain::v1::trust_domain_server::TrustDomainServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};

use crate::api::agent::AgentService;
use crate::api::bundle::BundleService;
use crate::api::entry::EntryService;
use crate::api::istio::IstioCaService;
use crate::api::localauthority::LocalAuthorityService;
use crate::api::svid::SvidService;
use crate::api::trustdomain::TrustDomainService;
use crate::api::watch::SyncService;

pub mod bundle;
pub mod health;
pub mod https;
pub mod metrics;
pub mod oidc;
pub mod tls;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API services, built once and shared by both transports.
#[derive(Clone)]
pub struct Services {
    /// `spire.api.server.agent.v1.Agent`.
    pub agent: Arc<AgentService>,
    /// `spire.api.server.entry.v1.Entry`.
    pub entry: Arc<EntryService>,
    /// `spire.api.server.bundle.v1.Bundle`.
    pub bundle: Arc<BundleService>,
    /// `spire.api.server.svid.v1.SVID`.
    pub svid: Arc<SvidService>,
    /// `signet.sync.v1.Sync`.
    pub sync: Arc<SyncService>,
    /// `spire.api.server.localauthority.v1.LocalAuthority`.
    pub local_authority: Arc<LocalAuthorityService>,
    /// `spire.api.server.trustdomain.v1.TrustDomain`.
    pub trustdomain: Arc<TrustDomainService>,
    /// `istio.v1.auth.IstioCertificateService`, TCP only, when `istio_ca` is configured.
    pub istio: Option<Arc<IstioCaService>>,
    /// Counts and times every call on both transports.
    pub rpc: RpcMetrics,
}

type Router = tonic::transport::server::Router<Stack<SizeLimitLayer, Stack<RpcLayer, Identity>>>;

fn router(s: &Services) -> Router {
    Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // Outermost first: the metrics layer sees the code the size layer rewrote.
        .layer(s.rpc.layer())
        .layer(SizeLimitLayer)
        .add_service(AgentServer::from_arc(Arc::clone(&s.agent)))
        .add_service(EntryServer::from_arc(Arc::clone(&s.entry)))
        .add_service(BundleServer::from_arc(Arc::clone(&s.bundle)))
        .add_service(SvidServer::from_arc(Arc::clone(&s.svid)))
        .add_service(SyncServer::from_arc(Arc::clone(&s.sync)))
        .add_service(LocalAuthorityServer::from_arc(Arc::clone(
            &s.local_authority,
        )))
        .add_service(TrustDomainServer::from_arc(Arc::clone(&s.trustdomain)))
}

/// Binds the TCP listener (so the port is known before serving starts).
pub async fn bind_tcp(address: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((address, port))
        .await
        .with_context(|| format!("cannot listen on {address}:{port}"))
}

/// Serves the agent API over TLS until `shutdown` turns true.
pub fn serve_tcp(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    services: &Services,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let (tx, rx) = mpsc::channel::<
        std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    >(64);
    let mut accept_shutdown = shutdown.clone();
    tasks.spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(error) => {
                        tracing::warn!(%error, "Failed to accept a TCP connection");
                        continue;
                    }
                },
                _ = accept_shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            // gRPC writes small frames; without TCP_NODELAY, Nagle plus delayed ACKs add
            // ~40 ms to every request/response round trip.
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "Cannot set TCP_NODELAY");
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%error, address = %peer, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(address = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    let mut router = router(services);
    if let Some(istio) = &services.istio {
        router = router.add_service(IstioCertificateServiceServer::from_arc(Arc::clone(istio)));
    }
    tasks.spawn(async move {
        router
            .serve_with_incoming_shutdown(ReceiverStream::new(rx), async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
            .context("TCP API server failed")
    });
}

/// Binds the admin socket: removes a stale socket file, creates the parent directory
/// (0700 if it has to be made) and leaves the socket 0770 — never world-accessible.
pub fn bind_admin_socket(path: &Path) -> anyhow::Result<UnixListener> {
    let access = uds::Access {
        socket_mode: 0o770,
        new_parent_mode: Some(0o700),
    };
    Ok(uds::bind(path, access)?)
}

/// Serves the admin API (plus gRPC health) on the Unix socket until `shutdown`.
pub fn serve_admin(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    listener: UnixListener,
    services: &Services,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = router(services).add_service(health);
    tasks.spawn(async move {
        router
            .serve_with_incoming_shutdown(
                uds::incoming(listener, uds::tonic_connect_info),
                async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                },
            )
            .await
            .context("admin API server failed")
    });
}

/// The address a bound listener ended up on.
pub fn local_addr(l: &TcpListener) -> anyhow::Result<SocketAddr> {
    Ok(l.local_addr()?)
}
