//! TLS towards the server: a channel that dials TCP then TLS (on first use and after a
//! failure, with a deadline per address, trying every configured server and every address
//! each resolves to, the last one that answered first), checking that the server presents `spiffe://<td>/spire/server`
//! (under given roots, or only by ID with `insecure_bootstrap`), optionally presenting the
//! agent SVID, with rustls on the injected clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use signet_common::clock::Clock;
use signet_common::id::{self, TrustDomain};
use signet_common::tls::{Authorizer, ServerSvidVerifier};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::client::credentials::ClientSvid;
use crate::client::error::ClientError;

/// Deadline of a TCP connect plus TLS handshake, per server address.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How the server is checked before the agent has a bundle of its own.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Against these roots (DER).
    Roots(Vec<Vec<u8>>),
    /// Not at all, apart from the SPIFFE ID it presents (`insecure_bootstrap`).
    Insecure,
}

/// A channel that connects (TCP, then TLS) on first use and again after a failure, to the
/// first of `servers` (each `host:port`, every address a name resolves to) that answers,
/// starting with the one that answered last: when a server dies the next connection goes
/// to another.
pub(crate) fn lazy_channel(
    servers: &[String],
    tls: rustls::ClientConfig,
) -> Result<Channel, ClientError> {
    let first = servers
        .first()
        .ok_or_else(|| ClientError::Tls("no server address".into()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let endpoint = Endpoint::from_shared(format!("http://{first}"))
        .map_err(|e| ClientError::Tls(format!("bad server address {first:?}: {e}")))?
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let servers: Arc<[String]> = servers.into();
    let last_good: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let (connector, servers, last_good) = (
                connector.clone(),
                Arc::clone(&servers),
                Arc::clone(&last_good),
            );
            async move {
                let mut candidates = vec![];
                let mut failure = None;
                for server in servers.iter() {
                    match tokio::net::lookup_host(server.as_str()).await {
                        Ok(addrs) => candidates.extend(addrs),
                        Err(e) => failure = Some(e),
                    }
                }
                let preferred = *last_good.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(pos) = preferred.and_then(|p| candidates.iter().position(|a| *a == p)) {
                    candidates.rotate_left(pos);
                }
                for addr in candidates {
                    match tokio::time::timeout(DIAL_TIMEOUT, dial(&connector, addr)).await {
                        Ok(Ok(tls)) => {
                            let mut last = last_good.lock().unwrap_or_else(PoisonError::into_inner);
                            if last.is_some_and(|l| l != addr) {
                                tracing::info!(server = %addr, "Connected to another server");
                            }
                            *last = Some(addr);
                            return Ok(hyper_util::rt::TokioIo::new(tls));
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(server = %addr, error = %e, "Cannot reach a server");
                            failure = Some(e);
                        }
                        Err(_) => {
                            tracing::debug!(server = %addr, "Timed out reaching a server");
                            failure =
                                Some(std::io::Error::new(std::io::ErrorKind::TimedOut, "dial"));
                        }
                    }
                }
                Err(failure.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no server address resolved")
                }))
            }
        })),
    )
}

async fn dial(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(TLS_NAME)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    connector.connect(name, tcp).await
}

/// The name only satisfies rustls; the SPIFFE verifiers ignore it.
const TLS_NAME: &str = "spire-server";

pub(crate) fn tls_config(
    trust_domain: &TrustDomain,
    trust: &ServerTrust,
    client: Option<&dyn ClientSvid>,
    clock: Arc<dyn Clock>,
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server = Authorizer::exact(id::server_id(trust_domain));
    let verifier = Arc::new(match trust {
        ServerTrust::Roots(roots) => ServerSvidVerifier::new(roots, server, &provider)
            .map_err(|e| ClientError::Tls(e.to_string()))?,
        ServerTrust::Insecure => ServerSvidVerifier::insecure_bootstrap(server, &provider),
    });
    let builder = rustls::ClientConfig::builder_with_details(
        Arc::clone(&provider),
        Arc::new(signet_common::tls::ClockTime(clock)),
    )
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Tls(e.to_string()))?
    .dangerous()
    .with_custom_certificate_verifier(verifier);
    let mut config = match client {
        Some(svid) => builder
            .with_client_auth_cert(
                svid.chain()
                    .iter()
                    .map(|d| CertificateDer::from(d.clone()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(svid.private_key().to_vec())),
            )
            .map_err(|e| ClientError::Tls(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
