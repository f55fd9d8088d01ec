//! The agent's client for the server API (SPIRE `pkg/agent/client`): gRPC over TLS to
//! `server_address:server_port`, always checking that the server presents
//! `spiffe://<td>/spire/server`. Before attestation the server is checked against the
//! bootstrap bundle (or not at all with `insecure_bootstrap`); afterwards every call is mTLS
//! with the agent SVID, checking the server against the current bundle. The channel is
//! rebuilt whenever the agent SVID or the bundle changes. Every call has a deadline; errors
//! are values, never panics.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prost::Message;
use signet_common::bundle::Bundle;
use signet_common::clock::Clock;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_proto::signet::sync::v1::sync_client::SyncClient;
use signet_proto::signet::sync::v1::{WatchEvent, WatchRequest};
use signet_proto::spire::api::server::agent::v1 as agent_pb;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::server::bundle::v1::{GetBundleRequest, GetFederatedBundleRequest};
use signet_proto::spire::api::server::entry::v1::SyncAuthorizedEntriesRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::svid::v1::{
    BatchNewX509svidRequest, NewJwtsvidRequest, NewX509svidParams,
};
use signet_proto::types;
use signet_proto::types::permission_denied_details::Reason;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::attestor::node::NodeAttestor;
use crate::manager::JwtSvid;
use crate::svid::AgentSvid;
use tls::{lazy_channel, tls_config};

pub mod authorized_entries;
pub mod convert;
mod tls;

pub use authorized_entries::Known;

/// Deadline of every unary call (SPIRE: 30 s).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of a TCP connect plus TLS handshake.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (or could not be reached: `Unavailable`).
    #[error("{}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// The server's answer did not make sense.
    #[error("malformed answer from the server: {0}")]
    Malformed(String),
    /// The TLS configuration could not be built (bad bundle or SVID).
    #[error("TLS configuration failed: {0}")]
    Tls(String),
    /// The call did not finish in time.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
}

/// Why the server refused this agent (SPIRE's `PermissionDeniedDetails.Reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The agent was banned.
    Banned,
    /// The server has no record of the agent (evicted).
    NotAttested,
    /// The agent SVID expired.
    Expired,
    /// The SVID presented is no longer the agent's current one.
    NotActive,
    /// The agent must attest again.
    MustReattest,
}

/// `google.rpc.Status`, as carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

impl ClientError {
    /// If the server refused this agent itself (not one request), why.
    pub fn denial(&self) -> Option<Denial> {
        let Self::Status(status) = self else {
            return None;
        };
        if status.code() != Code::PermissionDenied {
            return None;
        }
        let reason = RpcStatus::decode(status.details())
            .ok()
            .into_iter()
            .flat_map(|s| s.details)
            .filter(|any| {
                any.type_url
                    .ends_with("spire.api.types.PermissionDeniedDetails")
            })
            .find_map(|any| types::PermissionDeniedDetails::decode(any.value.as_slice()).ok())
            .and_then(|d| Reason::try_from(d.reason).ok());
        match reason {
            Some(Reason::AgentBanned) => Some(Denial::Banned),
            Some(Reason::AgentNotAttested) => Some(Denial::NotAttested),
            Some(Reason::AgentExpired) => Some(Denial::Expired),
            Some(Reason::AgentNotActive) => Some(Denial::NotActive),
            Some(Reason::AgentMustReattest) => Some(Denial::MustReattest),
            Some(Reason::Unknown) | None => status
                .message()
                .to_ascii_lowercase()
                .contains("banned")
                .then_some(Denial::Banned),
        }
    }

    /// Whether the server could not be reached (or did not answer in time).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Status(s) => matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded),
            Self::Timeout(_) => true,
            Self::Malformed(_) | Self::Tls(_) => false,
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        Self::Status(s)
    }
}

/// How the server is checked before the agent has a bundle of its own.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Against these roots (DER).
    Roots(Vec<Vec<u8>>),
    /// Not at all, apart from the SPIFFE ID it presents (`insecure_bootstrap`).
    Insecure,
}

/// What node attestation returns.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The agent's SPIFFE ID.
    pub id: SpiffeId,
    /// Its SVID chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// The trust domain bundle, fetched over the same connection.
    pub bundle: Bundle,
}

/// The mTLS client used once the agent has an SVID.
#[derive(Debug)]
pub struct ServerClient {
    addr: String,
    trust_domain: TrustDomain,
    clock: Arc<dyn Clock>,
    identity: watch::Receiver<Arc<AgentSvid>>,
    roots: watch::Receiver<Arc<Vec<Vec<u8>>>>,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    identity: Arc<AgentSvid>,
    roots: Arc<Vec<Vec<u8>>>,
    channel: Channel,
}

impl ServerClient {
    /// A client presenting the SVID `identity` holds, trusting the roots `roots` holds.
    pub fn new(
        addr: String,
        trust_domain: TrustDomain,
        clock: Arc<dyn Clock>,
        identity: watch::Receiver<Arc<AgentSvid>>,
        roots: watch::Receiver<Arc<Vec<Vec<u8>>>>,
    ) -> Self {
        Self {
            addr,
            trust_domain,
            clock,
            identity,
            roots,
            cached: Mutex::new(None),
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Runs node attestation over a TLS connection without a client certificate, then
    /// fetches the bundle over the same connection.
    pub async fn attest(
        addr: &str,
        trust_domain: &TrustDomain,
        trust: &ServerTrust,
        clock: Arc<dyn Clock>,
        attestor: &dyn NodeAttestor,
        csr: Vec<u8>,
    ) -> Result<Attested, ClientError> {
        let tls = tls_config(trust_domain, trust, None, clock)?;
        let channel = lazy_channel(addr, tls)?;
        let (id, chain) = deadline(attest_agent(channel.clone(), attestor, csr)).await?;
        let bundle = deadline(BundleClient::new(channel).get_bundle(GetBundleRequest::default()))
            .await?
            .into_inner();
        let bundle = convert::bundle(bundle, trust_domain)?;
        Ok(Attested { id, chain, bundle })
    }

    /// `RenewAgent`: a new agent SVID for the key behind `csr`.
    pub async fn renew_agent(&self, csr: Vec<u8>) -> Result<Vec<Vec<u8>>, ClientError> {
        let current = self.identity.borrow().id.clone();
        let req = agent_pb::RenewAgentRequest {
            params: Some(agent_pb::AgentX509svidParams { csr }),
        };
        let resp = deadline(AgentClient::new(self.channel()?).renew_agent(req)).await?;
        let (_, chain) = convert::x509_svid(resp.into_inner().svid, Some(&current))?;
        Ok(chain)
    }

    /// `SyncAuthorizedEntries`, both the single-response and the paged form.
    pub async fn authorized_entries(
        &self,
        known: &Known,
    ) -> Result<Vec<Arc<RegistrationEntry>>, ClientError> {
        let (tx, rx) = mpsc::channel(4);
        let first = SyncAuthorizedEntriesRequest::default();
        tx.send(first)
            .await
            .map_err(|_| ClientError::Malformed("sync request not sent".into()))?;
        let mut client = EntryClient::new(self.channel()?);
        let call = async {
            let responses = client
                .sync_authorized_entries(ReceiverStream::new(rx))
                .await?
                .into_inner();
            authorized_entries::run(tx, responses, known).await
        };
        tokio::time::timeout(RPC_TIMEOUT, call)
            .await
            .map_err(|_| ClientError::Timeout(RPC_TIMEOUT))?
    }

    /// `GetBundle`: the own trust domain's bundle.
    pub async fn bundle(&self) -> Result<Bundle, ClientError> {
        let resp =
            deadline(BundleClient::new(self.channel()?).get_bundle(GetBundleRequest::default()))
                .await?;
        convert::bundle(resp.into_inner(), &self.trust_domain)
    }

    /// `GetFederatedBundle` for `td`.
    pub async fn federated_bundle(&self, td: &TrustDomain) -> Result<Bundle, ClientError> {
        let req = GetFederatedBundleRequest {
            trust_domain: td.to_string(),
            output_mask: None,
        };
        let resp = deadline(BundleClient::new(self.channel()?).get_federated_bundle(req)).await?;
        convert::bundle(resp.into_inner(), td)
    }

    /// `BatchNewX509SVID`: one result per `(entry ID, CSR)`, in order.
    pub async fn new_x509_svids(
        &self,
        params: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<Result<Vec<Vec<u8>>, ClientError>>, ClientError> {
        let n = params.len();
        let req = BatchNewX509svidRequest {
            params: params
                .into_iter()
                .map(|(entry_id, csr)| NewX509svidParams { entry_id, csr })
                .collect(),
        };
        let resp = deadline(SvidClient::new(self.channel()?).batch_new_x509svid(req))
            .await?
            .into_inner();
        if resp.results.len() != n {
            return Err(ClientError::Malformed(format!(
                "{} results for {n} requests",
                resp.results.len()
            )));
        }
        Ok(resp
            .results
            .into_iter()
            .map(|r| match r.status {
                Some(s) if s.code != 0 => Err(ClientError::Status(tonic::Status::new(
                    Code::from_i32(s.code),
                    s.message,
                ))),
                _ => convert::x509_svid(r.svid, None).map(|(_, chain)| chain),
            })
            .collect())
    }

    /// `NewJWTSVID` for `entry_id` and `audience`.
    pub async fn new_jwt_svid(
        &self,
        entry_id: &str,
        audience: &[String],
    ) -> Result<JwtSvid, ClientError> {
        let req = NewJwtsvidRequest {
            entry_id: entry_id.to_owned(),
            audience: audience.to_vec(),
        };
        let resp = deadline(SvidClient::new(self.channel()?).new_jwtsvid(req))
            .await?
            .into_inner();
        let svid = resp
            .svid
            .ok_or_else(|| ClientError::Malformed("NewJWTSVID without an SVID".into()))?;
        if svid.token.is_empty() {
            return Err(ClientError::Malformed("empty JWT-SVID".into()));
        }
        Ok(JwtSvid {
            token: svid.token,
            expires_at: svid.expires_at,
        })
    }

    /// `signet.sync.v1.Sync/Watch`: the change push (no deadline on the stream itself).
    pub async fn watch(&self) -> Result<Streaming<WatchEvent>, ClientError> {
        let resp = deadline(SyncClient::new(self.channel()?).watch(WatchRequest {})).await?;
        Ok(resp.into_inner())
    }

    /// The channel for the current SVID and bundle, rebuilt when either changed.
    fn channel(&self) -> Result<Channel, ClientError> {
        let identity = Arc::clone(&self.identity.borrow());
        let roots = Arc::clone(&self.roots.borrow());
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached.as_ref()
            && Arc::ptr_eq(&c.identity, &identity)
            && Arc::ptr_eq(&c.roots, &roots)
        {
            return Ok(c.channel.clone());
        }
        let tls = tls_config(
            &self.trust_domain,
            &ServerTrust::Roots(roots.to_vec()),
            Some(&identity),
            Arc::clone(&self.clock),
        )?;
        let channel = lazy_channel(&self.addr, tls)?;
        *cached = Some(Cached {
            identity,
            roots,
            channel: channel.clone(),
        });
        Ok(channel)
    }
}

async fn attest_agent(
    channel: Channel,
    attestor: &dyn NodeAttestor,
    csr: Vec<u8>,
) -> Result<(SpiffeId, Vec<Vec<u8>>), ClientError> {
    use agent_pb::attest_agent_request::{Params, Step as ReqStep};
    use agent_pb::attest_agent_response::Step as RespStep;
    let (tx, rx) = mpsc::channel(2);
    let first = agent_pb::AttestAgentRequest {
        step: Some(ReqStep::Params(Params {
            data: Some(attestor.attestation_data()),
            params: Some(agent_pb::AgentX509svidParams { csr }),
        })),
    };
    tx.send(first)
        .await
        .map_err(|_| ClientError::Malformed("attestation request not sent".into()))?;
    let mut responses = AgentClient::new(channel)
        .attest_agent(ReceiverStream::new(rx))
        .await?
        .into_inner();
    loop {
        let resp = responses
            .message()
            .await?
            .ok_or_else(|| ClientError::Malformed("attestation ended without a result".into()))?;
        match resp.step {
            Some(RespStep::Challenge(challenge)) => {
                let answer = attestor
                    .answer(&challenge)
                    .map_err(ClientError::Malformed)?;
                let req = agent_pb::AttestAgentRequest {
                    step: Some(ReqStep::ChallengeResponse(answer)),
                };
                tx.send(req)
                    .await
                    .map_err(|_| ClientError::Malformed("attestation stream closed".into()))?;
            }
            Some(RespStep::Result(result)) => return convert::x509_svid(result.svid, None),
            None => return Err(ClientError::Malformed("empty attestation response".into())),
        }
    }
}

/// Runs `call` with the RPC deadline.
async fn deadline<T>(
    call: impl Future<Output = Result<T, impl Into<ClientError>>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(ClientError::Timeout(RPC_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(reason: Reason, message: &str) -> ClientError {
        let details = types::PermissionDeniedDetails {
            reason: reason as i32,
        };
        let rpc = RpcStatus {
            code: Code::PermissionDenied as i32,
            message: message.into(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/spire.api.types.PermissionDeniedDetails".into(),
                value: details.encode_to_vec(),
            }],
        };
        ClientError::Status(tonic::Status::with_details(
            Code::PermissionDenied,
            message,
            rpc.encode_to_vec().into(),
        ))
    }

    #[test]
    fn denial_reasons_are_read_from_the_status_details() {
        assert_eq!(
            denied(Reason::AgentBanned, "x").denial(),
            Some(Denial::Banned)
        );
        assert_eq!(
            denied(Reason::AgentNotAttested, "x").denial(),
            Some(Denial::NotAttested)
        );
        assert_eq!(
            denied(Reason::AgentExpired, "x").denial(),
            Some(Denial::Expired)
        );
    }

    #[test]
    fn a_banned_message_without_details_is_a_ban() {
        let e = ClientError::Status(tonic::Status::permission_denied(
            "agent spiffe://example.org/spire/agent/x is banned or no longer attested",
        ));
        assert_eq!(e.denial(), Some(Denial::Banned));
        let e = ClientError::Status(tonic::Status::permission_denied(
            "entry not found or not authorized",
        ));
        assert_eq!(
            e.denial(),
            None,
            "refusing one request is not refusing the agent"
        );
        let e = ClientError::Status(tonic::Status::unavailable("banned"));
        assert_eq!(e.denial(), None);
        assert!(e.is_unavailable());
    }
}
