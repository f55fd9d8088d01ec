//! `spire.api.server.localauthority.v1.LocalAuthority`: the state of the X.509 CA and JWT
//! key slots, and forced rotation (prepare, activate, taint, revoke), local callers and
//! admins only. Rules and wording are SPIRE's (`ca::local`); every change to the bundle is
//! pushed to agents at once, so they replace what chains to a tainted authority.

use std::sync::Arc;

use signet_proto::spire::api::server::localauthority::v1 as pb;
use signet_proto::spire::api::server::localauthority::v1::local_authority_server::LocalAuthority;
use tonic::{Request, Response, Status};

use crate::api::{ApiError, ApiState};
use crate::ca::{AuthorityState, AuthorityStates, CaError};

/// The LocalAuthority service.
#[derive(Debug)]
pub struct LocalAuthorityService {
    state: Arc<ApiState>,
}

impl LocalAuthorityService {
    /// The service.
    pub fn new(state: Arc<ApiState>) -> Self {
        Self { state }
    }

    async fn admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        self.state.require_admin(req).await?;
        Ok(())
    }

    /// Tells every agent the bundle changed (after a prepare, taint or revoke).
    fn push(&self) {
        self.state.registry.bundles_changed();
    }
}

fn proto(s: AuthorityState) -> pb::AuthorityState {
    pb::AuthorityState {
        authority_id: s.authority_id,
        expires_at: s.expires_at,
        upstream_authority_subject_key_id: s.upstream_authority_id,
    }
}

/// The slots, or SPIRE's refusal when there is no active authority yet.
fn slots(s: AuthorityStates) -> Result<[Option<pb::AuthorityState>; 3], ApiError> {
    let active = s.active.ok_or(CaError::Initializing)?;
    Ok([Some(proto(active)), s.prepared.map(proto), s.old.map(proto)])
}

fn wit() -> Status {
    ApiError::Unsupported("WIT-SVID functionality is not yet implemented".into()).into()
}

#[tonic::async_trait]
impl LocalAuthority for LocalAuthorityService {
    async fn get_jwt_authority_state(
        &self,
        req: Request<pb::GetJwtAuthorityStateRequest>,
    ) -> Result<Response<pb::GetJwtAuthorityStateResponse>, Status> {
        self.admin(&req).await?;
        let [active, prepared, old] = slots(self.state.ca.jwt_authority_states().await)?;
        Ok(Response::new(pb::GetJwtAuthorityStateResponse {
            active,
            prepared,
            old,
        }))
    }

    async fn prepare_jwt_authority(
        &self,
        req: Request<pb::PrepareJwtAuthorityRequest>,
    ) -> Result<Response<pb::PrepareJwtAuthorityResponse>, Status> {
        self.admin(&req).await?;
        let prepared = self
            .state
            .ca
            .prepare_jwt_authority()
            .await
            .map_err(ApiError::from)?;
        self.push();
        Ok(Response::new(pb::PrepareJwtAuthorityResponse {
            prepared_authority: Some(proto(prepared)),
        }))
    }

    async fn activate_jwt_authority(
        &self,
        req: Request<pb::ActivateJwtAuthorityRequest>,
    ) -> Result<Response<pb::ActivateJwtAuthorityResponse>, Status> {
        self.admin(&req).await?;
        let id = &req.get_ref().authority_id;
        let activated = self
            .state
            .ca
            .activate_jwt_authority(id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ActivateJwtAuthorityResponse {
            activated_authority: Some(proto(activated)),
        }))
    }

    async fn taint_jwt_authority(
        &self,
        req: Request<pb::TaintJwtAuthorityRequest>,
    ) -> Result<Response<pb::TaintJwtAuthorityResponse>, Status> {
        self.admin(&req).await?;
        let id = &req.get_ref().authority_id;
        let tainted = self
            .state
            .ca
            .taint_jwt_authority(id)
            .await
            .map_err(ApiError::from)?;
        self.push();
        Ok(Response::new(pb::TaintJwtAuthorityResponse {
            tainted_authority: Some(proto(tainted)),
        }))
    }

    async fn revoke_jwt_authority(
        &self,
        req: Request<pb::RevokeJwtAuthorityRequest>,
    ) -> Result<Response<pb::RevokeJwtAuthorityResponse>, Status> {
        self.admin(&req).await?;
        let id = &req.get_ref().authority_id;
        let revoked = self
            .state
            .ca
            .revoke_jwt_authority(id)
            .await
            .map_err(ApiError::from)?;
        self.push();
        Ok(Response::new(pb::RevokeJwtAuthorityResponse {
            revoked_authority: Some(proto(revoked)),
        }))
    }

    async fn get_x509_authority_state(
        &self,
        req: Request<pb::GetX509AuthorityStateRequest>,
    ) -> Result<Response<pb::GetX509AuthorityStateResponse>, Status> {
        self.admin(&req).await?;
        let [active, prepared, old] = slots(self.state.ca.x509_authority_states().await)?;
        Ok(Response::new(pb::GetX509AuthorityStateResponse {
            active,
            prepared,
            old,
        }))
    }

    async fn prepare_x509_authority(
        &self,
        req: Request<pb::PrepareX509AuthorityRequest>,
    ) -> Result<Response<pb::PrepareX509AuthorityResponse>, Status> {
        self.admin(&req).await?;
        let prepared = self
            .state
            .ca
            .prepare_x509_authority()
            .await
            .map_err(ApiError::from)?;
        self.push();
        Ok(Response::new(pb::PrepareX509AuthorityResponse {
            prepared_authority: Some(proto(prepared)),
        }))
    }

    async fn activate_x509_authority(
        &self,
        req: Request<pb::ActivateX509AuthorityRequest>,
    ) -> Result<Response<pb::ActivateX509AuthorityResponse>, Status> {
        self.admin(&req).await?;
        let id = &req.get_ref().authority_id;
        let activated = self
            .state
            .ca
            .activate_x509_authority(id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ActivateX509AuthorityResponse {
            activated_authority: Some(proto(activated)),
        }))
    }

    async fn taint_x509_authority(
        &self,
        req: Request<pb::TaintX509AuthorityRequest>,
    ) -> Result<Response<pb::TaintX509AuthorityResponse>, Status> {
        self.admin(&req).await?;
        let id = &req.get_ref().authority_id;
        let tainted = self
            .state
            .ca
            .taint_x509_authority(id)
            .await
            .map_err(ApiError::from)?;
        self.push();
        Ok(Response::new(pb::TaintX509AuthorityResponse {
            tainted_authority: Some(proto(tainted)),
        }))
    }

    async fn taint_x509_upstream_authority(
        &self,
        req: Request<pb::TaintX509UpstreamAuthorityRequest>,
    ) -> Result<Response<pb::TaintX509UpstreamAuthorityResponse>, Status> {
        self.admin(&req).await?;
        let id = &req.get_ref().subject_key_id;
        let id = self
            .state
            .ca
            .taint_upstream_authority(id)
            .await
            .map_err(ApiError::from)?;
        self.push();
        Ok(Response::new(pb::TaintX509UpstreamAuthorityResponse {
            upstream_authority_subject_key_id: id,
        }))
    }

    async fn revoke_x509_authority(
        &self,
        req: Request<pb::RevokeX509AuthorityRequest>,
    ) -> Result<Response<pb::RevokeX509AuthorityResponse>, Status> {
        self.admin(&req).await?;
        let id = &req.get_ref().authority_id;
        let revoked = self
            .state
            .ca
            .revoke_x509_authority(id)
            .await
            .map_err(ApiError::from)?;
        self.push();
        Ok(Response::new(pb::RevokeX509AuthorityResponse {
            revoked_authority: Some(proto(revoked)),
        }))
    }

    async fn revoke_x509_upstream_authority(
        &self,
        req: Request<pb::RevokeX509UpstreamAuthorityRequest>,
    ) -> Result<Response<pb::RevokeX509UpstreamAuthorityResponse>, Status> {
        self.admin(&req).await?;
        let id = &req.get_ref().subject_key_id;
        let id = self
            .state
            .ca
            .revoke_upstream_authority(id)
            .await
            .map_err(ApiError::from)?;
        self.push();
        Ok(Response::new(pb::RevokeX509UpstreamAuthorityResponse {
            upstream_authority_subject_key_id: id,
        }))
    }

    async fn get_wit_authority_state(
        &self,
        _req: Request<pb::GetWitAuthorityStateRequest>,
    ) -> Result<Response<pb::GetWitAuthorityStateResponse>, Status> {
        Err(wit())
    }

    async fn prepare_wit_authority(
        &self,
        _req: Request<pb::PrepareWitAuthorityRequest>,
    ) -> Result<Response<pb::PrepareWitAuthorityResponse>, Status> {
        Err(wit())
    }

    async fn activate_wit_authority(
        &self,
        _req: Request<pb::ActivateWitAuthorityRequest>,
    ) -> Result<Response<pb::ActivateWitAuthorityResponse>, Status> {
        Err(wit())
    }

    async fn taint_wit_authority(
        &self,
        _req: Request<pb::TaintWitAuthorityRequest>,
    ) -> Result<Response<pb::TaintWitAuthorityResponse>, Status> {
        Err(wit())
    }

    async fn revoke_wit_authority(
        &self,
        _req: Request<pb::RevokeWitAuthorityRequest>,
    ) -> Result<Response<pb::RevokeWitAuthorityResponse>, Status> {
        Err(wit())
    }
}
