//! `spire.api.server.svid.v1.SVID`: agents mint SVIDs for the entries they are authorized
//! for (SPIFFE ID, DNS names and TTL from the entry; only the key from the CSR); local
//! administrators mint arbitrary X.509 and JWT SVIDs in the trust domain.

use std::sync::Arc;
use std::time::Duration;

use signet_common::id::{self, SpiffeId};
use signet_proto::spire::api::server::svid::v1 as pb;
use signet_proto::spire::api::server::svid::v1::svid_server::Svid;
use signet_proto::types;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::api::{ApiError, ApiState, ok_status};
use crate::ca::{Ca, JwtSvidParams, SvidKind, X509SvidParams};
use signet_proto::convert;

/// CSRs a blocking signing job takes at least (smaller batches are not split further).
const MIN_CSRS_PER_JOB: usize = 16;

/// The SVID service.
#[derive(Debug)]
pub struct SvidService {
    state: Arc<ApiState>,
    /// Bounds the blocking signing jobs in flight to the number of cores, so a burst of
    /// batches queues here instead of occupying the runtime's whole blocking pool.
    signers: Arc<Semaphore>,
    cores: usize,
}

impl SvidService {
    /// The service.
    pub fn new(state: Arc<ApiState>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            state,
            signers: Arc::new(Semaphore::new(cores)),
            cores,
        }
    }

    /// Signs a `BatchNewX509SVID` request's CSRs off the async reactor: split into at most
    /// one job per core, each on the blocking pool; results come back in request order.
    async fn sign_batch(
        &self,
        agent: SpiffeId,
        params: Vec<pb::NewX509svidParams>,
    ) -> Result<Vec<pb::batch_new_x509svid_response::Result>, ApiError> {
        let per_job = params
            .len()
            .div_ceil(self.cores)
            .max(MIN_CSRS_PER_JOB)
            .max(1);
        let agent = Arc::new(agent);
        let mut jobs = Vec::new();
        let mut params = params.into_iter().peekable();
        while params.peek().is_some() {
            let chunk: Vec<_> = params.by_ref().take(per_job).collect();
            let permit = Arc::clone(&self.signers)
                .acquire_owned()
                .await
                .map_err(|_| ApiError::ShuttingDown)?;
            let state = Arc::clone(&self.state);
            let agent = Arc::clone(&agent);
            jobs.push(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                chunk
                    .iter()
                    .map(|p| batch_result(new_x509(&state, &agent, p)))
                    .collect::<Vec<_>>()
            }));
        }
        let mut results = Vec::new();
        for job in jobs {
            match job.await {
                Ok(chunk) => results.extend(chunk),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => return Err(ApiError::ShuttingDown),
            }
        }
        Ok(results)
    }

    fn jwt(
        &self,
        spiffe_id: &SpiffeId,
        audience: Vec<String>,
        ttl: Duration,
        hint: &str,
    ) -> Result<types::Jwtsvid, ApiError> {
        let audience: Vec<String> = audience.into_iter().filter(|a| !a.is_empty()).collect();
        if audience.is_empty() {
            return Err(ApiError::BadRequest(
                "audience: at least one audience is required".into(),
            ));
        }
        let svid = self.state.ca.sign_jwt_svid(JwtSvidParams {
            spiffe_id: spiffe_id.clone(),
            audience,
            ttl,
        })?;
        Ok(types::Jwtsvid {
            token: svid.token,
            id: Some(types::Spiffeid::from(spiffe_id)),
            expires_at: svid.expires_at,
            issued_at: svid.issued_at,
            hint: hint.to_owned(),
        })
    }

    fn mint_x509(&self, req: &pb::MintX509svidRequest) -> Result<types::X509svid, ApiError> {
        if req.csr.is_empty() {
            return Err(ApiError::BadRequest("csr: missing".into()));
        }
        if req.ttl < 0 {
            return Err(ApiError::BadRequest("ttl: must not be negative".into()));
        }
        let public_key = Ca::verify_csr(&req.csr)?;
        let (spiffe_id, dns_names) = csr_names(&req.csr)?;
        id::require_member_with_path(&spiffe_id, &self.state.trust_domain)
            .map_err(|e| ApiError::BadRequest(format!("CSR URI SAN: {e}")))?;
        let svid = self.state.ca.sign_x509_svid(X509SvidParams {
            spiffe_id: spiffe_id.clone(),
            public_key,
            ttl: secs(req.ttl),
            dns_names,
            kind: SvidKind::Workload,
        })?;
        tracing::info!(spiffe_id = %spiffe_id, serial = %svid.serial, "Minted X509 SVID");
        Ok(types::X509svid {
            cert_chain: svid.chain,
            id: Some(types::Spiffeid::from(&spiffe_id)),
            expires_at: svid.expires_at,
            hint: String::new(),
        })
    }
}

/// Mints one SVID for an agent's CSR: the entry must be authorized for the agent; the SPIFFE
/// ID, DNS names and TTL come from it, only the key from the CSR. CPU-bound (CSR signature
/// check and signing): runs on the blocking pool.
fn new_x509(
    state: &ApiState,
    agent: &SpiffeId,
    p: &pb::NewX509svidParams,
) -> Result<types::X509svid, ApiError> {
    if p.entry_id.is_empty() {
        return Err(ApiError::BadRequest("entry_id: missing".into()));
    }
    if p.csr.is_empty() {
        return Err(ApiError::BadRequest("csr: missing".into()));
    }
    let entry = state
        .registry
        .authorized_entry(agent, &p.entry_id)
        .ok_or_else(|| ApiError::Forbidden("entry not found or not authorized".into()))?;
    let public_key = Ca::verify_csr(&p.csr)?;
    let svid = state.ca.sign_x509_svid(X509SvidParams {
        spiffe_id: entry.spiffe_id.clone(),
        public_key,
        ttl: secs(entry.x509_svid_ttl),
        dns_names: entry.dns_names.clone(),
        kind: SvidKind::Workload,
    })?;
    tracing::debug!(agent_id = %agent, entry_id = %entry.id, spiffe_id = %entry.spiffe_id, serial = %svid.serial, "Signed X509 SVID");
    Ok(types::X509svid {
        cert_chain: svid.chain,
        id: Some(types::Spiffeid::from(&entry.spiffe_id)),
        expires_at: svid.expires_at,
        hint: entry.hint.clone(),
    })
}

fn batch_result(r: Result<types::X509svid, ApiError>) -> pb::batch_new_x509svid_response::Result {
    match r {
        Ok(svid) => pb::batch_new_x509svid_response::Result {
            status: Some(ok_status()),
            svid: Some(svid),
        },
        Err(e) => pb::batch_new_x509svid_response::Result {
            status: Some(e.to_item_status()),
            svid: None,
        },
    }
}

fn secs(ttl: i32) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

/// The SPIFFE ID (exactly one URI SAN) and DNS names a CSR asks for (MintX509SVID only;
/// agents' CSRs contribute nothing but their key).
fn csr_names(der: &[u8]) -> Result<(SpiffeId, Vec<String>), ApiError> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| ApiError::BadRequest(format!("malformed CSR: {e}")))?;
    let mut uris = vec![];
    let mut dns = vec![];
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::URI(u) => uris.push((*u).to_owned()),
                    GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
    }
    let [uri] = uris.as_slice() else {
        return Err(ApiError::BadRequest(format!(
            "CSR must have exactly one URI SAN, it has {}",
            uris.len()
        )));
    };
    let id = id::parse_id(uri).map_err(|e| ApiError::BadRequest(format!("CSR URI SAN: {e}")))?;
    if let Some(bad) = dns
        .iter()
        .find(|d| !signet_common::entry::valid_dns_name(d))
    {
        return Err(ApiError::BadRequest(format!(
            "CSR DNS SAN {bad:?} is not a valid DNS name"
        )));
    }
    Ok((id, dns))
}

#[tonic::async_trait]
impl Svid for SvidService {
    async fn mint_x509svid(
        &self,
        req: Request<pb::MintX509svidRequest>,
    ) -> Result<Response<pb::MintX509svidResponse>, Status> {
        self.state.require_admin(&req).await?;
        let svid = self.mint_x509(req.get_ref())?;
        Ok(Response::new(pb::MintX509svidResponse { svid: Some(svid) }))
    }

    async fn mint_jwtsvid(
        &self,
        req: Request<pb::MintJwtsvidRequest>,
    ) -> Result<Response<pb::MintJwtsvidResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let id = convert::spiffe_id("id", req.id.as_ref()).map_err(ApiError::from)?;
        id::require_member_with_path(&id, &self.state.trust_domain)
            .map_err(|e| ApiError::BadRequest(format!("id: {e}")))?;
        if req.ttl < 0 {
            return Err(ApiError::BadRequest("ttl: must not be negative".into()).into());
        }
        let svid = self.jwt(&id, req.audience, secs(req.ttl), "")?;
        Ok(Response::new(pb::MintJwtsvidResponse { svid: Some(svid) }))
    }

    async fn mint_witsvid(
        &self,
        _req: Request<pb::MintWitsvidRequest>,
    ) -> Result<Response<pb::MintWitsvidResponse>, Status> {
        Err(ApiError::Unsupported("WIT-SVIDs are not supported".into()).into())
    }

    async fn batch_new_x509svid(
        &self,
        req: Request<pb::BatchNewX509svidRequest>,
    ) -> Result<Response<pb::BatchNewX509svidResponse>, Status> {
        let agent = self.state.require_agent(&req).await?;
        let results = self.sign_batch(agent.id, req.into_inner().params).await?;
        Ok(Response::new(pb::BatchNewX509svidResponse { results }))
    }

    async fn new_jwtsvid(
        &self,
        req: Request<pb::NewJwtsvidRequest>,
    ) -> Result<Response<pb::NewJwtsvidResponse>, Status> {
        let agent = self.state.require_agent(&req).await?;
        let req = req.into_inner();
        if req.entry_id.is_empty() {
            return Err(ApiError::BadRequest("entry_id: missing".into()).into());
        }
        let entry = self
            .state
            .registry
            .authorized_entry(&agent.id, &req.entry_id)
            .ok_or_else(|| ApiError::Forbidden("entry not found or not authorized".into()))?;
        let svid = self.jwt(
            &entry.spiffe_id,
            req.audience,
            secs(entry.jwt_svid_ttl),
            &entry.hint,
        )?;
        Ok(Response::new(pb::NewJwtsvidResponse { svid: Some(svid) }))
    }

    async fn batch_new_witsvid(
        &self,
        _req: Request<pb::BatchNewWitsvidRequest>,
    ) -> Result<Response<pb::BatchNewWitsvidResponse>, Status> {
        Err(ApiError::Unsupported("WIT-SVIDs are not supported".into()).into())
    }

    async fn new_downstream_x509ca(
        &self,
        _req: Request<pb::NewDownstreamX509caRequest>,
    ) -> Result<Response<pb::NewDownstreamX509caResponse>, Status> {
        Err(ApiError::Unsupported("downstream CAs are not supported".into()).into())
    }
}
