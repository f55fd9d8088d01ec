//! The kubelet's `GET /pods`, as SPIRE's k8s attestor calls it: the read-only port
//! (`http://127.0.0.1:<port>`, no authentication) or the secure port
//! (`https://<node name or 127.0.0.1>:<port>`) with the service account token as a bearer
//! token, a client certificate, or nothing. The kubelet's certificate is checked against
//! the CA file — with the node name when it is known, the chain alone when the kubelet is
//! dialed at 127.0.0.1 — unless verification is skipped. Credentials are read at start and
//! again when older than `reload_interval` (a failed reload keeps the previous ones).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use rustls::RootCertStore;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use signet_common::tls::HostVerifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::config::{KubeletAuth, KubeletConfig, KubeletVerification, SecureKubelet};

/// SPIRE's deadline for one `/pods` request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `/pods` body accepted (a node's pod list is typically well under 10 MiB).
const MAX_BODY: usize = 128 << 20;

/// A kubelet client.
pub struct Kubelet {
    target: Target,
    creds: Mutex<Loaded>,
}

enum Target {
    ReadOnly { port: u16 },
    Secure(SecureKubelet),
}

/// Credentials as last read.
#[derive(Clone)]
struct Loaded {
    tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<String>,
    at: Instant,
}

impl fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubelet").field("url", &self.url()).finish()
    }
}

impl Kubelet {
    /// A client for `config`, reading its credentials now (SPIRE refuses to configure the
    /// plugin when they cannot be read).
    pub fn new(config: &KubeletConfig) -> Result<Self, String> {
        let target = match config {
            KubeletConfig::ReadOnly { port } => Target::ReadOnly { port: *port },
            KubeletConfig::Secure(s) => Target::Secure(s.clone()),
        };
        let creds = load(&target)?;
        Ok(Self {
            target,
            creds: Mutex::new(creds),
        })
    }

    /// The host and port dialed.
    fn authority(&self) -> (String, u16) {
        match &self.target {
            Target::ReadOnly { port } => ("127.0.0.1".into(), *port),
            Target::Secure(s) => (
                s.node_name.clone().unwrap_or_else(|| "127.0.0.1".into()),
                s.port,
            ),
        }
    }

    /// `http[s]://host:port/pods`.
    pub fn url(&self) -> String {
        let (host, port) = self.authority();
        let scheme = match self.target {
            Target::ReadOnly { .. } => "http",
            Target::Secure(_) => "https",
        };
        format!("{scheme}://{}:{port}/pods", bracket(&host))
    }

    fn credentials(&self) -> Loaded {
        let mut creds = self.creds.lock().unwrap_or_else(|e| e.into_inner());
        if let Target::Secure(s) = &self.target
            && creds.at.elapsed() >= s.reload_interval
        {
            match load(&self.target) {
                Ok(fresh) => *creds = fresh,
                Err(error) => {
                    tracing::warn!(%error, "Unable to load kubelet client; keeping the previous credentials");
                    creds.at = Instant::now();
                }
            }
        }
        creds.clone()
    }

    /// The body of `GET /pods`, or SPIRE's error text.
    pub async fn pods(&self) -> Result<Bytes, String> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.get())
            .await
            .map_err(|_| {
                format!(
                    "unable to perform request: Get \"{}\": context deadline exceeded",
                    self.url()
                )
            })?
    }

    async fn get(&self) -> Result<Bytes, String> {
        let creds = self.credentials();
        let (host, port) = self.authority();
        let url = self.url();
        let failed =
            |e: &dyn fmt::Display| format!("unable to perform request: Get \"{url}\": {e}");
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| failed(&e))?;
        let io: Box<dyn Io> = match &creds.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = ServerName::try_from(host.clone()).map_err(|e| failed(&e))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| failed(&e))?;
                Box::new(stream)
            }
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| failed(&e))?;
        let conn = tokio::spawn(conn);
        let mut req = hyper::Request::get("/pods")
            .header(hyper::header::HOST, format!("{}:{port}", bracket(&host)))
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(token) = &creds.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("unable to create request: {e}"))?;
        let result = async {
            let resp = sender.send_request(req).await.map_err(|e| failed(&e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("unable to read pods response: {e}"))?
                .to_bytes();
            if status != hyper::StatusCode::OK {
                let shown = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
                return Err(format!(
                    "unexpected status code on pods response: {} {shown}",
                    status.as_u16()
                ));
            }
            Ok(body)
        }
        .await;
        conn.abort();
        result
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(path)
}

/// Reads the credentials and builds the TLS configuration of `target`.
fn load(target: &Target) -> Result<Loaded, String> {
    let Target::Secure(s) = target else {
        return Ok(Loaded {
            tls: None,
            token: None,
            at: Instant::now(),
        });
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match &s.verification {
        KubeletVerification::Skip => Arc::new(HostVerifier::unchecked(&provider)),
        KubeletVerification::Ca(path) => {
            let pem = read(path).map_err(|e| format!("unable to load kubelet CA: {e}"))?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("unable to parse kubelet CA: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unable to parse kubelet CA: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "unable to parse kubelet CA: no certificates in {}",
                    path.display()
                ));
            }
            Arc::new(HostVerifier::new(roots, s.node_name.is_some(), &provider))
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let (tls, token) = match &s.auth {
        KubeletAuth::Anonymous => (builder.with_no_client_auth(), None),
        KubeletAuth::Certificate { cert, key } => {
            let cert_pem = read(cert).map_err(|e| format!("unable to load certificate: {e}"))?;
            let key_pem = read(key).map_err(|e| format!("unable to load private key: {e}"))?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("unable to load keypair: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| format!("unable to load keypair: {e}"))?;
            let tls = builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("unable to load keypair: {e}"))?;
            (tls, None)
        }
        KubeletAuth::Token(path) => {
            let token =
                std::fs::read_to_string(path).map_err(|e| format!("unable to load token: {e}"))?;
            (builder.with_no_client_auth(), Some(token.trim().to_owned()))
        }
    };
    Ok(Loaded {
        tls: Some(Arc::new(tls)),
        token,
        at: Instant::now(),
    })
}
