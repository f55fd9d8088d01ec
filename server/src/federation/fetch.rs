//! Fetching a foreign trust domain's bundle from its bundle endpoint: one HTTPS `GET`
//! authenticated per the relationship's profile (`https_spiffe`: the endpoint's X509-SVID
//! must carry the configured SPIFFE ID and chain to the bundle of that ID's trust domain;
//! `https_web`: Web PKI roots and the host name), the body parsed as a SPIFFE bundle and
//! checked to be for the relationship's trust domain.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Uri;
use http_body_util::{BodyExt, Limited};
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use signet_common::bundle::{self, Bundle};
use signet_common::clock::Clock;
use signet_common::id::TrustDomain;
use signet_common::tls::{Authorizer, ClockTime, ServerSvidVerifier, provider};
use tokio_rustls::TlsConnector;

use crate::relationship::{EndpointProfile, Relationship};

/// How long one fetch may take, connection to last byte (SPIRE: 10 s).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger bundle documents are refused.
const MAX_BODY: usize = 4 << 20;

/// Why a fetch left the stored bundle alone.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The endpoint could not be reached or spoke no HTTPS (includes TLS authentication).
    #[error("cannot fetch {url}: {reason}")]
    Transport {
        /// The endpoint.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The endpoint answered with a status other than 200.
    #[error("bundle endpoint {url} answered HTTP {status}")]
    Status {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The body is not a usable SPIFFE bundle.
    #[error("bundle endpoint {url} served an invalid bundle: {reason}")]
    Invalid {
        /// The endpoint.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `https_spiffe` needs the bundle of the endpoint ID's trust domain, and there is none.
    #[error(
        "no bundle for trust domain {0:?} to authenticate the endpoint: set one with the relationship's trust domain bundle or `bundle set`"
    )]
    NoEndpointBundle(String),
}

/// What a fetch needs besides the relationship.
#[derive(Clone)]
pub struct FetchContext {
    /// Roots for `https_web` endpoints (the system's, unless a test sets its own).
    pub web_roots: Arc<RootCertStore>,
    /// The injected clock (certificate validity).
    pub clock: Arc<dyn Clock>,
    /// Per-fetch timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for FetchContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchContext")
            .field("web_roots", &self.web_roots.len())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The system's Web PKI roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured); failures to load
/// some are logged.
pub fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "Skipping a system root certificate source");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(
        added,
        ignored,
        "Loaded system roots for https_web bundle endpoints"
    );
    roots
}

/// Fetches `rel`'s bundle. `endpoint_bundle` is the current bundle of the `https_spiffe`
/// endpoint ID's trust domain (unused for `https_web`).
pub async fn fetch(
    ctx: &FetchContext,
    rel: &Relationship,
    endpoint_bundle: Option<&Bundle>,
) -> Result<Bundle, FetchError> {
    let url = rel.bundle_endpoint_url.as_str();
    let transport = |reason: String| FetchError::Transport {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| transport(format!("invalid URL: {e}")))?;
    let host = uri.host().ok_or_else(|| transport("no host".into()))?;
    let port = uri.port_u16().unwrap_or(443);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let tls = client_config(ctx, rel, endpoint_bundle)?;
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| transport(format!("invalid host: {e}")))?;
    let authority = uri
        .authority()
        .map_or_else(|| host.to_owned(), |a| a.as_str().to_owned());
    let get = async {
        let tcp = tokio::net::TcpStream::connect((
            host.trim_start_matches('[').trim_end_matches(']'),
            port,
        ))
        .await
        .map_err(|e| transport(e.to_string()))?;
        let stream = TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| transport(format!("TLS: {e}")))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| transport(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .map_err(|e| transport(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| transport(format!("reading the body: {e}")))?
            .to_bytes();
        driver.abort();
        if status != hyper::StatusCode::OK {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        Ok(body)
    };
    let body = tokio::time::timeout(ctx.timeout, get)
        .await
        .map_err(|_| transport(format!("timed out after {:?}", ctx.timeout)))??;
    parse(url, &rel.trust_domain, &body)
}

/// Parses a fetched document as `td`'s bundle, refusing one whose roots name another trust
/// domain.
pub fn parse(url: &str, td: &TrustDomain, body: &[u8]) -> Result<Bundle, FetchError> {
    let invalid = |reason: String| FetchError::Invalid {
        url: url.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(body).map_err(|_| invalid("not UTF-8".into()))?;
    let parsed = bundle::from_spiffe_json(td.clone(), text).map_err(|e| invalid(e.to_string()))?;
    for root in &parsed.x509_authorities {
        if let Some(id) = signet_common::x509::spiffe_id_of_cert(&root.der)
            && id.trust_domain_name() != td.as_str()
        {
            return Err(invalid(format!(
                "it is for trust domain {:?}, not {:?}",
                id.trust_domain_name(),
                td.as_str()
            )));
        }
    }
    if parsed.x509_authorities.is_empty() && parsed.jwt_authorities.is_empty() {
        return Err(invalid("it holds no keys".into()));
    }
    Ok(parsed)
}

fn client_config(
    ctx: &FetchContext,
    rel: &Relationship,
    endpoint_bundle: Option<&Bundle>,
) -> Result<rustls::ClientConfig, FetchError> {
    let builder = rustls::ClientConfig::builder_with_details(
        provider(),
        Arc::new(ClockTime(Arc::clone(&ctx.clock))),
    )
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| FetchError::Transport {
        url: rel.bundle_endpoint_url.clone(),
        reason: e.to_string(),
    })?;
    let mut config = match &rel.profile {
        EndpointProfile::HttpsWeb => builder
            .with_root_certificates(Arc::clone(&ctx.web_roots))
            .with_no_client_auth(),
        EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
            let td = endpoint_spiffe_id.trust_domain_name();
            let roots: Vec<Vec<u8>> = endpoint_bundle
                .map(|b| b.x509_authorities.iter().map(|a| a.der.clone()).collect())
                .unwrap_or_default();
            if roots.is_empty() {
                return Err(FetchError::NoEndpointBundle(td.to_owned()));
            }
            let verifier = ServerSvidVerifier::new(
                &roots,
                Authorizer::exact(endpoint_spiffe_id.clone()),
                &provider(),
            )
            .map_err(|e| FetchError::Transport {
                url: rel.bundle_endpoint_url.clone(),
                reason: format!("bundle of {td:?}: {e}"),
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
