//! `spire.api.server.agent.v1.Agent`: node attestation, agent SVID renewal, join tokens and
//! the admin view of attested agents (list, show, ban, evict).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use signet_common::id::{self, SpiffeId};
use signet_common::node::AttestedNode;
use signet_common::selector::{Selector, SelectorSet};
use signet_proto::spire::api::server::agent::v1 as pb;
use signet_proto::spire::api::server::agent::v1::agent_server::Agent;
use signet_proto::types;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::api::{ApiError, ApiState};
use crate::attestation::{Attested, NodeAttestor};
use crate::ca::{Ca, SvidKind, X509Svid, X509SvidParams};
use crate::datastore::JoinToken;
use signet_proto::convert::{self, agent_to_proto};

type AttestStream = Pin<Box<dyn Stream<Item = Result<pb::AttestAgentResponse, Status>> + Send>>;

/// The Agent service.
#[derive(Debug)]
pub struct AgentService {
    state: Arc<ApiState>,
    attestors: BTreeMap<&'static str, Arc<dyn NodeAttestor>>,
}

impl AgentService {
    /// The service with these node attestors (by name).
    pub fn new(state: Arc<ApiState>, attestors: Vec<Arc<dyn NodeAttestor>>) -> Self {
        Self {
            state,
            attestors: attestors.into_iter().map(|a| (a.name(), a)).collect(),
        }
    }

    async fn attest(
        &self,
        mut stream: Streaming<pb::AttestAgentRequest>,
    ) -> Result<pb::AttestAgentResponse, ApiError> {
        let first = stream
            .message()
            .await
            .map_err(|s| {
                let message = format!("failed to receive request: {}", s.message());
                match s.code() {
                    // tonic's code for a message over the size limit (see common's size_limit).
                    Code::OutOfRange | Code::ResourceExhausted => ApiError::TooLarge(message),
                    _ => ApiError::BadRequest(message),
                }
            })?
            .ok_or_else(|| ApiError::BadRequest("malformed param: no request".into()))?;
        let Some(pb::attest_agent_request::Step::Params(params)) = first.step else {
            return Err(ApiError::BadRequest(
                "malformed param: the first message must carry params".into(),
            ));
        };
        let data = params.data.ok_or_else(|| {
            ApiError::BadRequest("malformed param: missing attestation data".into())
        })?;
        let csr = params.params.map(|p| p.csr).unwrap_or_default();
        if data.r#type.is_empty() {
            return Err(ApiError::BadRequest(
                "malformed param: missing attestation type".into(),
            ));
        }
        if data.payload.is_empty() {
            return Err(ApiError::BadRequest(
                "malformed param: missing attestation payload".into(),
            ));
        }
        if csr.is_empty() {
            return Err(ApiError::BadRequest("malformed param: missing CSR".into()));
        }
        let public_key = Ca::verify_csr(&csr)?;
        let attestor = self.attestors.get(data.r#type.as_str()).ok_or_else(|| {
            ApiError::WrongState(format!(
                "failed to attest: could not find node attestor type {:?}",
                data.r#type
            ))
        })?;
        let attested = attestor
            .attest(&data.payload)
            .await
            .map_err(ApiError::from)?;
        let svid = self.admit(&attested, &data.r#type, public_key).await?;
        tracing::info!(agent_id = %attested.agent_id, serial = %svid.serial, "Agent attestation request completed");
        Ok(pb::AttestAgentResponse {
            step: Some(pb::attest_agent_response::Step::Result(
                pb::attest_agent_response::Result {
                    svid: Some(x509_svid(&attested.agent_id, &svid)),
                    reattestable: attested.can_reattest,
                },
            )),
        })
    }

    async fn admit(
        &self,
        a: &Attested,
        attestation_type: &str,
        key: crate::ca::CsrPublicKey,
    ) -> Result<X509Svid, ApiError> {
        if a.agent_id == id::server_id(&self.state.trust_domain) {
            return Err(ApiError::BadRequest(
                "failed to attest: agent ID may not be the server ID".into(),
            ));
        }
        let store = self.state.registry.store();
        let existing = store.node(&a.agent_id).await?;
        if existing.as_ref().is_some_and(AttestedNode::is_banned) {
            return Err(ApiError::Forbidden(
                "failed to attest: agent is banned".into(),
            ));
        }
        let svid = self.sign_agent(&a.agent_id, key)?;
        let selectors: SelectorSet = a.selectors.iter().cloned().collect();
        self.state
            .registry
            .put_node(AttestedNode {
                spiffe_id: a.agent_id.clone(),
                attestation_type: attestation_type.to_owned(),
                serial: svid.serial.clone(),
                expires_at: svid.expires_at,
                new_serial: String::new(),
                new_expires_at: 0,
                can_reattest: a.can_reattest,
                selectors: selectors.iter().cloned().collect(),
                agent_version: existing.map(|n| n.agent_version).unwrap_or_default(),
            })
            .await?;
        Ok(svid)
    }

    fn sign_agent(
        &self,
        agent: &SpiffeId,
        public_key: crate::ca::CsrPublicKey,
    ) -> Result<X509Svid, ApiError> {
        Ok(self.state.sign_x509_svid(X509SvidParams {
            spiffe_id: agent.clone(),
            public_key,
            ttl: Duration::ZERO,
            dns_names: vec![],
            kind: SvidKind::Agent,
        })?)
    }

    async fn filtered_agents(
        &self,
        filter: Option<&pb::list_agents_request::Filter>,
    ) -> Result<Vec<AttestedNode>, ApiError> {
        let mut nodes = self.state.registry.store().list_nodes().await?;
        let Some(f) = filter else { return Ok(nodes) };
        let selector_match = f
            .by_selector_match
            .as_ref()
            .map(|m| {
                Ok::<_, ApiError>((
                    convert::selectors("by_selector_match", &m.selectors)?,
                    convert::match_behavior(m.r#match),
                ))
            })
            .transpose()?;
        let expires_before = (!f.by_expires_before.is_empty())
            .then(|| {
                humantime::parse_rfc3339_weak(&f.by_expires_before)
                    .map(signet_common::clock::unix_seconds)
                    .map_err(|e| ApiError::BadRequest(format!("by_expires_before: {e}")))
            })
            .transpose()?;
        nodes.retain(|n| {
            (f.by_attestation_type.is_empty() || n.attestation_type == f.by_attestation_type)
                && f.by_banned.is_none_or(|b| b == n.is_banned())
                && f.by_can_reattest.is_none_or(|b| b == n.can_reattest)
                && expires_before.is_none_or(|t| n.expires_at < t)
                && selector_match.as_ref().is_none_or(|(want, how)| {
                    let have: SelectorSet = n.selectors.iter().cloned().collect();
                    how.matches(&have, want)
                })
        });
        Ok(nodes)
    }

    fn agent_id(id: Option<&types::Spiffeid>) -> Result<SpiffeId, ApiError> {
        Ok(convert::spiffe_id("id", id)?)
    }
}

fn x509_svid(id: &SpiffeId, svid: &X509Svid) -> types::X509svid {
    types::X509svid {
        cert_chain: svid.chain.clone(),
        id: Some(types::Spiffeid::from(id)),
        expires_at: svid.expires_at,
        hint: String::new(),
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    type AttestAgentStream = AttestStream;

    async fn count_agents(
        &self,
        req: Request<pb::CountAgentsRequest>,
    ) -> Result<Response<pb::CountAgentsResponse>, Status> {
        self.state.require_admin(&req).await?;
        let filter = req
            .into_inner()
            .filter
            .map(|f| pb::list_agents_request::Filter {
                by_attestation_type: f.by_attestation_type,
                by_selector_match: f.by_selector_match,
                by_banned: f.by_banned,
                by_can_reattest: f.by_can_reattest,
                by_expires_before: f.by_expires_before,
            });
        let count = self.filtered_agents(filter.as_ref()).await?.len();
        Ok(Response::new(pb::CountAgentsResponse {
            count: i32::try_from(count).unwrap_or(i32::MAX),
        }))
    }

    async fn list_agents(
        &self,
        req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        if req.page_size < 0 {
            return Err(ApiError::BadRequest("page_size must not be negative".into()).into());
        }
        let nodes = self.filtered_agents(req.filter.as_ref()).await?;
        let start = if req.page_token.is_empty() {
            0
        } else {
            nodes
                .iter()
                .position(|n| n.spiffe_id.to_string() > req.page_token)
                .unwrap_or(nodes.len())
        };
        let size = if req.page_size == 0 {
            usize::MAX
        } else {
            usize::try_from(req.page_size).unwrap_or(usize::MAX)
        };
        let page: Vec<_> = nodes.iter().skip(start).take(size).collect();
        let next_page_token = match page.last() {
            Some(last) if start + page.len() < nodes.len() => last.spiffe_id.to_string(),
            _ => String::new(),
        };
        let agents = page
            .into_iter()
            .map(|n| agent_to_proto(n, req.output_mask.as_ref()))
            .collect();
        Ok(Response::new(pb::ListAgentsResponse {
            agents,
            next_page_token,
        }))
    }

    async fn get_agent(
        &self,
        req: Request<pb::GetAgentRequest>,
    ) -> Result<Response<types::Agent>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        let id = Self::agent_id(req.id.as_ref())?;
        let node = self
            .state
            .registry
            .store()
            .node(&id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::Missing("agent not found".into()))?;
        Ok(Response::new(agent_to_proto(
            &node,
            req.output_mask.as_ref(),
        )))
    }

    async fn delete_agent(
        &self,
        req: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<()>, Status> {
        self.state.require_admin(&req).await?;
        let id = Self::agent_id(req.into_inner().id.as_ref())?;
        self.state
            .registry
            .delete_node(&id)
            .await
            .map_err(|e| match e {
                crate::datastore::StoreError::NotFound(_) => {
                    ApiError::Missing("agent not found".into())
                }
                other => other.into(),
            })?;
        let vanity = Selector::new("spiffe_id", id.to_string()).ok();
        for entry in self
            .state
            .registry
            .store()
            .entries_by_parent(&id)
            .await
            .map_err(ApiError::from)?
        {
            if vanity
                .as_ref()
                .is_some_and(|v| entry.selectors.len() == 1 && entry.selectors.contains(v))
            {
                self.state
                    .registry
                    .delete_entry(&entry.id)
                    .await
                    .map_err(ApiError::from)?;
            }
        }
        tracing::info!(agent_id = %id, "Agent deleted");
        Ok(Response::new(()))
    }

    async fn ban_agent(&self, req: Request<pb::BanAgentRequest>) -> Result<Response<()>, Status> {
        self.state.require_admin(&req).await?;
        let id = Self::agent_id(req.into_inner().id.as_ref())?;
        let mut node = self
            .state
            .registry
            .store()
            .node(&id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::Missing("agent not found".into()))?;
        node.serial.clear();
        node.new_serial.clear();
        self.state
            .registry
            .put_node(node)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(agent_id = %id, "Agent banned");
        Ok(Response::new(()))
    }

    async fn attest_agent(
        &self,
        req: Request<Streaming<pb::AttestAgentRequest>>,
    ) -> Result<Response<AttestStream>, Status> {
        let resp = self.attest(req.into_inner()).await?;
        Ok(Response::new(Box::pin(tokio_stream::once(Ok(resp)))))
    }

    async fn renew_agent(
        &self,
        req: Request<pb::RenewAgentRequest>,
    ) -> Result<Response<pb::RenewAgentResponse>, Status> {
        let caller = self.state.require_agent(&req).await?;
        // An agent that can attest again gets its new SVID that way (SPIRE).
        if caller.node.can_reattest {
            return Err(ApiError::AgentRefused(
                "agent must reattest instead of renew".into(),
                types::permission_denied_details::Reason::AgentMustReattest,
            )
            .into());
        }
        let csr = req.into_inner().params.map(|p| p.csr).unwrap_or_default();
        if csr.is_empty() {
            return Err(ApiError::BadRequest("params: missing CSR".into()).into());
        }
        let key = Ca::verify_csr(&csr).map_err(ApiError::from)?;
        let svid = self.sign_agent(&caller.id, key)?;
        let mut node = caller.node;
        node.new_serial = svid.serial.clone();
        node.new_expires_at = svid.expires_at;
        self.state
            .registry
            .put_node(node)
            .await
            .map_err(ApiError::from)?;
        tracing::debug!(agent_id = %caller.id, serial = %svid.serial, "Agent SVID renewed");
        Ok(Response::new(pb::RenewAgentResponse {
            svid: Some(x509_svid(&caller.id, &svid)),
        }))
    }

    async fn create_join_token(
        &self,
        req: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<types::JoinToken>, Status> {
        self.state.require_admin(&req).await?;
        let req = req.into_inner();
        if !self.state.join_token_enabled {
            return Err(
                ApiError::WrongState("join_token node attestor is not configured".into()).into(),
            );
        }
        if req.ttl < 1 {
            return Err(
                ApiError::BadRequest("ttl is required, you must provide one".into()).into(),
            );
        }
        let token = if req.token.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.token
        };
        let token_agent = id::agent_id(&self.state.trust_domain, "join_token", &token)
            .map_err(|e| ApiError::BadRequest(format!("token: {e}")))?;
        let vanity = req
            .agent_id
            .as_ref()
            .map(|a| {
                let aid = convert::spiffe_id("agent_id", Some(a))?;
                id::require_member_with_path(&aid, &self.state.trust_domain)
                    .map_err(|e| ApiError::BadRequest(format!("agent_id: {e}")))?;
                Ok::<_, ApiError>(aid)
            })
            .transpose()?;
        let expires_at = self.state.clock.unix_now() + i64::from(req.ttl);
        self.state
            .registry
            .store()
            .create_join_token(JoinToken {
                token: token.clone(),
                expires_at,
            })
            .await
            .map_err(ApiError::from)?;
        if let Some(agent_id) = vanity {
            let selector =
                Selector::new("spiffe_id", token_agent.to_string()).map_err(ApiError::from)?;
            self.state
                .registry
                .create_entry(signet_common::entry::RegistrationEntry {
                    created_at: self.state.clock.unix_now(),
                    ..signet_common::entry::RegistrationEntry::new(
                        uuid::Uuid::new_v4().to_string(),
                        agent_id,
                        token_agent,
                        [selector].into_iter().collect(),
                    )
                })
                .await
                .map_err(ApiError::from)?;
        }
        Ok(Response::new(types::JoinToken {
            value: token,
            expires_at,
        }))
    }

    async fn post_status(
        &self,
        req: Request<pb::PostStatusRequest>,
    ) -> Result<Response<pb::PostStatusResponse>, Status> {
        let caller = self.state.require_agent(&req).await?;
        let version = req.into_inner().agent_version;
        if version.len() > 255 {
            return Err(
                ApiError::BadRequest("agent_version: longer than 255 characters".into()).into(),
            );
        }
        let mut node = caller.node;
        node.agent_version = version;
        self.state
            .registry
            .put_node(node)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::PostStatusResponse {}))
    }
}
