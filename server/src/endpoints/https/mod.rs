//! HTTPS listeners for axum routers (the bundle endpoint, OIDC discovery): TLS handshakes run
//! in their own tasks with a timeout, so a slow or silent client delays nobody; the
//! certificate comes from a resolver that can change under a running listener (the
//! server's renewed SVID, or [`CertFiles`] re-read when the files change). No client
//! certificates are asked for; HTTP/1.1 only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use signet_common::clock::Clock;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::tls::{ClockTime, provider};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once per listener; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 128;

/// The TLS configuration of an HTTPS listener: `certs` picks the certificate per handshake,
/// TLS 1.2 and 1.3, ALPN `http/1.1`, no client authentication.
pub fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_details(provider(), Arc::new(ClockTime(clock)))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds `address:port` for an HTTPS listener (`what` names it in the error).
pub async fn bind(what: &str, address: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((address, port))
        .await
        .with_context(|| format!("cannot listen on {address}:{port} for the {what}"))
}

/// Serves `router` over TLS on `listener` until `shutdown` turns true (open requests are
/// let finish). `what` names the listener in logs and errors.
pub fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    what: &'static str,
    listener: TcpListener,
    tls: ServerConfig,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<SocketAddr> {
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
    let mut accept_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        loop {
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
                return Ok(());
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = accept_shutdown.wait_for(|stop| *stop) => return Ok(()),
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Out of descriptors, usually: give the process a moment.
                    tracing::warn!(%error, listener = what, "Failed to accept a TCP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, peer)).await;
                    }
                    Ok(Err(error)) => {
                        tracing::debug!(%error, address = %peer, listener = what, "TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::debug!(address = %peer, listener = what, "TLS handshake timed out")
                    }
                }
            });
        }
    });
    let incoming = TlsIncoming { rx, local };
    tasks.spawn(async move {
        axum::serve(incoming, router)
            .with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            })
            .await
            .with_context(|| format!("{what} failed"))
    });
    Ok(local)
}

/// Connections whose TLS handshake has completed, as axum's listener.
struct TlsIncoming {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop has stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

// === impl CertFiles ===

/// A certificate chain and key read from PEM files (`serving_cert_file { cert_file_path
/// key_file_path }`), re-read by [`CertFiles::watch`] when either file changes. A change that
/// does not load (half-written, mismatched key) is logged and the previous pair kept.
pub struct CertFiles {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: RwLock<Stamp>,
}

type Stamp = (Option<SystemTime>, Option<SystemTime>, u64, u64);

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertFiles {
    /// Reads the pair now; fails naming the file that does not load.
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<Self>> {
        let stamp = stamp(cert_path, key_path);
        let key = read_pair(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(key),
            stamp: RwLock::new(stamp),
        }))
    }

    /// Re-reads the files if their size or modification time changed; returns whether a
    /// new pair is now served.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let now = stamp(&self.cert_path, &self.key_path);
        if *self.stamp.read().unwrap_or_else(PoisonError::into_inner) == now {
            return Ok(false);
        }
        let key = read_pair(&self.cert_path, &self.key_path)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
        *self.stamp.write().unwrap_or_else(PoisonError::into_inner) = now;
        Ok(true)
    }

    /// Checks the files every `every` until `shutdown`, swapping in a changed pair.
    pub fn watch(
        self: &Arc<Self>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let files = Arc::clone(self);
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                }
                match files.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(cert_file = %files.cert_path.display(), "Reloaded the serving certificate")
                    }
                    Ok(false) => {}
                    Err(error) => tracing::warn!(
                        error = %format!("{error:#}"),
                        "Keeping the previous serving certificate"
                    ),
                }
            }
        });
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let meta = |p: &Path| std::fs::metadata(p).ok();
    let (c, k) = (meta(cert), meta(key));
    (
        c.as_ref().and_then(|m| m.modified().ok()),
        k.as_ref().and_then(|m| m.modified().ok()),
        c.map_or(0, |m| m.len()),
        k.map_or(0, |m| m.len()),
    )
}

fn read_pair(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            anyhow::anyhow!("cannot read certificates from {}: {e}", cert_path.display())
        })?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in {}", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        anyhow::anyhow!("cannot read a private key from {}: {e}", key_path.display())
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).with_context(|| {
        format!(
            "the key in {} does not match the certificate in {}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok(Arc::new(certified))
}

#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;
