//! One rustls mutual-TLS handshake over loopback between two workloads, each presenting the
//! X509-SVID the Workload API gave it and trusting only the given roots; each side requires
//! the other's exact SPIFFE ID.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use signet_common::tls::{Authorizer, ClientSvidVerifier, ServerSvidVerifier};

fn chain(s: &spiffe::X509Svid) -> Vec<CertificateDer<'static>> {
    s.cert_chain()
        .iter()
        .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
        .collect()
}

fn key(s: &spiffe::X509Svid) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        s.private_key().as_bytes().to_vec(),
    ))
}

fn id_of(s: &spiffe::X509Svid) -> signet_common::id::SpiffeId {
    signet_common::id::parse_id(&s.spiffe_id().to_string()).unwrap()
}

fn peer_id(certs: Option<&[CertificateDer<'_>]>) -> Result<String, String> {
    let leaf = certs.and_then(|c| c.first()).ok_or("no peer certificate")?;
    signet_common::x509::spiffe_id_of_cert(leaf.as_ref())
        .map(|id| id.to_string())
        .ok_or_else(|| "peer certificate has no SPIFFE ID".to_owned())
}

/// `client` dials `server`; returns (the ID the server saw, the ID the client saw), or why
/// either side failed.
pub async fn handshake(
    client: &spiffe::X509Svid,
    server: &spiffe::X509Svid,
    roots: &[Vec<u8>],
) -> Result<(String, String), String> {
    handshake_across(client, roots, server, roots).await
}

/// As [`handshake`] with each side trusting its own roots (e.g. workloads of two federated
/// trust domains: each verifies the other against the bundle its own agent served).
pub async fn handshake_across(
    client: &spiffe::X509Svid,
    client_roots: &[Vec<u8>],
    server: &spiffe::X509Svid,
    server_roots: &[Vec<u8>],
) -> Result<(String, String), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(
            ClientSvidVerifier::new(server_roots, Authorizer::exact(id_of(client)), &provider)
                .map_err(|e| e.to_string())?,
        ))
        .with_single_cert(chain(server), key(server))
        .map_err(|e| e.to_string())?;
    let client_config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(
            ServerSvidVerifier::new(client_roots, Authorizer::exact(id_of(server)), &provider)
                .map_err(|e| e.to_string())?,
        ))
        .with_client_auth_cert(chain(client), key(client))
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("server: {e}"))?;
        peer_id(tls.get_ref().1.peer_certificates())
    });
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let connected = tokio_rustls::TlsConnector::from(Arc::new(client_config))
        .connect(
            ServerName::try_from("backend").map_err(|e| e.to_string())?,
            tcp,
        )
        .await;
    let server_saw = accept.await.map_err(|e| e.to_string())?;
    let tls = connected.map_err(|e| format!("client: {e}"))?;
    let client_saw = peer_id(tls.get_ref().1.peer_certificates())?;
    Ok((server_saw?, client_saw))
}

/// Whether the DER certificate `leaf` is signed by one of `roots` (DER).
pub fn signed_by(leaf: &[u8], roots: &[Vec<u8>]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return false;
    };
    roots.iter().any(|r| {
        x509_parser::parse_x509_certificate(r).is_ok_and(|(_, root)| {
            signet_common::sigcheck::verify_cert(&cert, root.public_key()).is_ok()
        })
    })
}
