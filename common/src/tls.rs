//! rustls verifiers that authenticate peers by SPIFFE ID against a fixed bundle, instead of
//! by DNS name: what agents use towards the server, and what workloads use towards each
//! other. (The server's own client verifier follows its live bundle; see the server.)

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};

use crate::clock::Clock;
use crate::id::SpiffeId;
use crate::x509::spiffe_id_of_cert;

/// rustls' time source backed by the injected clock, so certificate validity is judged on
/// the same clock as rotation (the seam SPIRE's tests lack).
#[derive(Debug)]
pub struct ClockTime(pub Arc<dyn Clock>);

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(
            self.0
                .now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .ok()?,
        ))
    }
}

/// Which SPIFFE IDs a verifier accepts.
#[derive(Clone)]
pub struct Authorizer(Arc<dyn Fn(&SpiffeId) -> bool + Send + Sync>);

impl Authorizer {
    /// Accepts exactly `id`.
    pub fn exact(id: SpiffeId) -> Self {
        Self(Arc::new(move |peer| *peer == id))
    }

    /// Accepts any ID for which `f` is true.
    pub fn new(f: impl Fn(&SpiffeId) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<SpiffeId, Error> {
        let id = spiffe_id_of_cert(end_entity.as_ref()).ok_or_else(|| {
            Error::General("peer certificate has no single valid SPIFFE ID".into())
        })?;
        if (self.0)(&id) {
            Ok(id)
        } else {
            Err(Error::General(format!(
                "peer SPIFFE ID {id} is not authorized"
            )))
        }
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authorizer")
    }
}

fn roots_from(der_roots: &[Vec<u8>]) -> Result<Arc<RootCertStore>, Error> {
    let mut roots = RootCertStore::empty();
    for der in der_roots {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| Error::General(format!("bad trust anchor: {e}")))?;
    }
    Ok(Arc::new(roots))
}

/// Verifies a server's X509-SVID chain against a bundle and its SPIFFE ID against an
/// [`Authorizer`]; the TLS server name is ignored.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    authorizer: Authorizer,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SpiffeServerVerifier {
    /// A verifier trusting `der_roots`.
    pub fn new(
        der_roots: &[Vec<u8>],
        authorizer: Authorizer,
        provider: &CryptoProvider,
    ) -> Result<Self, Error> {
        Ok(Self {
            roots: roots_from(der_roots)?,
            authorizer,
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        self.authorizer.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Requires a client X509-SVID chaining to a bundle, with a SPIFFE ID the [`Authorizer`]
/// accepts.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    authorizer: Authorizer,
}

impl SpiffeClientVerifier {
    /// A verifier trusting `der_roots`.
    pub fn new(
        der_roots: &[Vec<u8>],
        authorizer: Authorizer,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, Error> {
        let inner = WebPkiClientVerifier::builder_with_provider(roots_from(der_roots)?, provider)
            .build()
            .map_err(|e| Error::General(e.to_string()))?;
        Ok(Self { inner, authorizer })
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.authorizer.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
