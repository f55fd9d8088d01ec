//! `istio.v1.auth.IstioCertificateService`: Signet as Istio's external CA (`CA_ADDR`).
//! The caller authenticates with a Kubernetes service-account token
//! (`authorization: Bearer <jwt>`, verified offline against the cluster's JWKS) and gets
//! `spiffe://<td>/ns/<namespace>/sa/<service account>`; the CSR contributes only its key.
//! The response is PEM, one certificate per element, leaf first, with the trust roots as
//! the last element (istio-agent hands only that element to Envoy as `ROOTCA`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;
use signet_common::bundle::x509_authorities_pem;
use signet_common::id::{SpiffeId, parse_id};
use signet_proto::istio::v1::auth as pb;
use signet_proto::istio::v1::auth::istio_certificate_service_server::IstioCertificateService;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::api::{ApiError, ApiState};
use crate::ca::{Ca, SvidKind, X509SvidParams};
use crate::config::IstioCaConfig;

pub mod token;

#[cfg(test)]
mod tests;

pub use token::{JwksError, ServiceAccount, TokenError, TokenVerifier};

/// The Istio CA service.
#[derive(Debug)]
pub struct IstioCaService {
    state: Arc<ApiState>,
    tokens: TokenVerifier,
    max_validity: Duration,
    default_validity: Duration,
}

impl IstioCaService {
    /// The service; reads the JWKS file now (and again whenever it changes).
    pub fn new(state: Arc<ApiState>, config: &IstioCaConfig) -> Result<Self, JwksError> {
        Ok(Self {
            tokens: TokenVerifier::new(
                config.token_issuer.clone(),
                config.token_audience.clone(),
                &config.jwks_path,
            )?,
            state,
            max_validity: config.max_validity,
            default_validity: config.default_validity,
        })
    }

    /// Authenticates the caller, then signs the CSR's key for the caller's identity.
    async fn create(
        &self,
        metadata: &MetadataMap,
        req: &pb::IstioCertificateRequest,
    ) -> Result<pb::IstioCertificateResponse, ApiError> {
        let token = bearer_token(metadata)?;
        let account = self
            .tokens
            .verify(token, self.state.clock.unix_now())
            .map_err(ApiError::from)?;
        let spiffe_id = self.spiffe_id(&account)?;
        let ttl = self.ttl(req.validity_duration)?;
        let public_key = Ca::verify_csr(&csr_der(&req.csr)?)?;
        let svid = self.state.sign_x509_svid(X509SvidParams {
            spiffe_id: spiffe_id.clone(),
            public_key,
            ttl,
            dns_names: vec![],
            kind: SvidKind::Workload,
        })?;
        let roots = self.roots().await?;
        tracing::info!(spiffe_id = %spiffe_id, serial = %svid.serial, expires_at = svid.expires_at, "Signed Istio certificate");
        let mut cert_chain: Vec<String> = svid.chain.iter().map(|der| pem_cert(der)).collect();
        cert_chain.push(roots);
        Ok(pb::IstioCertificateResponse { cert_chain })
    }

    /// `spiffe://<td>/ns/<namespace>/sa/<service account>`, as Istio requires.
    fn spiffe_id(&self, account: &ServiceAccount) -> Result<SpiffeId, ApiError> {
        Ok(parse_id(&format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.state.trust_domain, account.namespace, account.name
        ))?)
    }

    /// `validity_duration` seconds: 0 means the default; capped at `max_validity` (the
    /// CA further caps at its own expiry).
    fn ttl(&self, validity_secs: i64) -> Result<Duration, ApiError> {
        let secs = u64::try_from(validity_secs)
            .map_err(|_| ApiError::BadRequest("validity_duration: must not be negative".into()))?;
        Ok(match secs {
            0 => self.default_validity,
            s => Duration::from_secs(s).min(self.max_validity),
        })
    }

    /// The own trust bundle's X.509 roots, PEM, in one string.
    async fn roots(&self) -> Result<String, ApiError> {
        let bundle = self
            .state
            .registry
            .store()
            .bundle(&self.state.trust_domain)
            .await?
            .filter(|b| !b.x509_authorities.is_empty())
            .ok_or(ApiError::NoX509Authorities)?;
        Ok(x509_authorities_pem(&bundle))
    }
}

#[tonic::async_trait]
impl IstioCertificateService for IstioCaService {
    async fn create_certificate(
        &self,
        request: Request<pb::IstioCertificateRequest>,
    ) -> Result<Response<pb::IstioCertificateResponse>, Status> {
        let resp = self.create(request.metadata(), request.get_ref()).await?;
        Ok(Response::new(resp))
    }
}

/// The token from `authorization: Bearer <token>`.
fn bearer_token(metadata: &MetadataMap) -> Result<&str, ApiError> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| ApiError::NoCredentials("no authorization header".into()))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::NoCredentials("authorization header is not valid text".into()))?;
    let token = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::NoCredentials("authorization header is not \"Bearer <token>\"".into())
        })?;
    Ok(token)
}

/// The DER of the one `CERTIFICATE REQUEST` block in `csr`.
fn csr_der(csr: &str) -> Result<Vec<u8>, ApiError> {
    if csr.trim().is_empty() {
        return Err(ApiError::BadRequest("csr: missing".into()));
    }
    let der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("csr: not a PEM certificate request: {e}")))?;
    Ok(der.as_ref().to_vec())
}

/// One PEM `CERTIFICATE` block, ending with a newline.
fn pem_cert(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
