//! The SPIRE-compatible server API: one file per service, plus caller identification and
//! the ONE mapping from `ApiError` to `tonic::Status` (which logs, like SPIRE's `MakeErr`).

use std::sync::Arc;

use signet_common::clock::Clock;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use signet_proto::types::permission_denied_details::Reason;
use tonic::Request;
use tonic::transport::server::UdsConnectInfo;

use crate::ca::{Ca, CaError, JwtSvid, JwtSvidParams, X509Svid, X509SvidParams};
use crate::metrics::ServerMetrics;
use crate::registry::Registry;

pub mod agent;
pub mod bundle;
pub mod entry;
mod error;
pub mod istio;
pub mod localauthority;
pub mod svid;
#[cfg(test)]
pub(crate) mod tests;
pub mod trustdomain;
pub mod watch;

pub use error::{ApiError, ok_status};

/// Everything the API services share.
#[derive(Debug)]
pub struct ApiState {
    /// The server's trust domain.
    pub trust_domain: TrustDomain,
    /// Entries, nodes and the authorization index.
    pub registry: Arc<Registry>,
    /// The CA.
    pub ca: Arc<Ca>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// SPIFFE IDs with admin rights over TCP (`admin_ids`).
    pub admin_ids: Vec<SpiffeId>,
    /// Whether the `join_token` node attestor is configured.
    pub join_token_enabled: bool,
    /// Metrics the API updates.
    pub metrics: Arc<ServerMetrics>,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A local process on the admin Unix socket.
    Local,
    /// A TCP caller presenting a valid SVID with this SPIFFE ID (agent or admin workload).
    Svid(SpiffeId),
    /// A TCP caller without a client certificate.
    Anonymous,
}

/// An authorized agent caller.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    /// The agent's SPIFFE ID.
    pub id: SpiffeId,
    /// Its node record, as stored.
    pub node: AttestedNode,
}

impl ApiState {
    /// Reads the state-backed gauges (CA, entries) before a scrape.
    pub async fn refresh_metrics(&self) {
        let x509 = self.ca.x509_authority_states().await;
        let jwt = self.ca.jwt_authority_states().await;
        self.metrics.observe_ca(&x509, &jwt, self.clock.unix_now());
        self.metrics.set_entries(self.registry.entry_count());
    }

    /// Signs an X509-SVID with the CA, counting it.
    pub fn sign_x509_svid(&self, params: X509SvidParams) -> Result<X509Svid, CaError> {
        let kind = params.kind;
        let signed = self.ca.sign_x509_svid(params);
        self.metrics.x509_signed(kind, &signed);
        signed
    }

    /// Signs a JWT-SVID with the CA, counting it.
    pub fn sign_jwt_svid(&self, params: JwtSvidParams) -> Result<JwtSvid, CaError> {
        let signed = self.ca.sign_jwt_svid(params);
        self.metrics.jwt_signed(&signed);
        signed
    }

    /// Classifies the caller from the connection the request came on.
    pub fn caller<T>(&self, req: &Request<T>) -> Caller {
        if req.extensions().get::<UdsConnectInfo>().is_some() {
            return Caller::Local;
        }
        let Some(certs) = req.peer_certs() else {
            return Caller::Anonymous;
        };
        match certs
            .first()
            .and_then(|leaf| signet_common::x509::spiffe_id_of_cert(leaf.as_ref()))
        {
            Some(id) => Caller::Svid(id),
            None => Caller::Anonymous,
        }
    }

    /// Local callers and admin SVIDs (`admin_ids`, or an entry with `admin = true`).
    pub async fn require_admin<T>(&self, req: &Request<T>) -> Result<Caller, ApiError> {
        let caller = self.caller(req);
        match &caller {
            Caller::Local => Ok(caller),
            Caller::Svid(id) if self.is_admin(id).await? => Ok(caller),
            Caller::Svid(id) => Err(ApiError::Forbidden(format!(
                "caller {id} is not authorized for this method"
            ))),
            Caller::Anonymous => Err(ApiError::Forbidden(
                "an admin SVID is required for this method".into(),
            )),
        }
    }

    async fn is_admin(&self, id: &SpiffeId) -> Result<bool, ApiError> {
        if self.admin_ids.contains(id) {
            return Ok(true);
        }
        Ok(self
            .registry
            .store()
            .entries_by_spiffe_id(id)
            .await?
            .iter()
            .any(|e| e.admin))
    }

    /// A valid, current, unbanned agent (SPIRE's AgentAuthorizer). Presenting the SVID that
    /// RenewAgent issued promotes it to current.
    pub async fn require_agent<T>(&self, req: &Request<T>) -> Result<AgentCaller, ApiError> {
        let Some(certs) = req.peer_certs() else {
            return Err(ApiError::agent_denied(
                "an agent SVID is required for this method",
                Reason::AgentNotAttested,
            ));
        };
        let leaf = certs.first().ok_or_else(|| {
            ApiError::agent_denied("no client certificate", Reason::AgentNotAttested)
        })?;
        let info = signet_common::x509::cert_info(leaf.as_ref()).ok_or_else(|| {
            ApiError::BadRequest("client certificate has no valid SPIFFE ID".into())
        })?;
        if info.not_after < self.clock.unix_now() {
            return Err(ApiError::agent_denied(
                "agent SVID has expired",
                Reason::AgentExpired,
            ));
        }
        let store = self.registry.store();
        let mut node = store.node(&info.id).await?.ok_or_else(|| {
            ApiError::agent_denied(
                format!("agent {} is not attested", info.id),
                Reason::AgentNotAttested,
            )
        })?;
        if node.is_banned() {
            return Err(ApiError::agent_denied(
                format!("agent {} is banned", info.id),
                Reason::AgentBanned,
            ));
        }
        if node.serial != info.serial {
            if node.new_serial != info.serial {
                return Err(ApiError::agent_denied(
                    format!(
                        "agent {} presented an SVID that is no longer active",
                        info.id
                    ),
                    Reason::AgentNotActive,
                ));
            }
            node.serial = std::mem::take(&mut node.new_serial);
            node.expires_at = std::mem::take(&mut node.new_expires_at);
            node = self.registry.put_node(node).await?;
        }
        Ok(AgentCaller { id: info.id, node })
    }
}
