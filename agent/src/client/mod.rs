//! The agent's client for the server API (SPIRE `pkg/agent/client`): gRPC over TLS to
//! `server_address:server_port`, always checking that the server presents
//! `spiffe://<td>/spire/server`. Before attestation the server is checked against the
//! bootstrap bundle (or not at all with `insecure_bootstrap`); afterwards every call is mTLS
//! with the agent SVID, checking the server against the current bundle. The channel is
//! rebuilt whenever the agent SVID or the bundle changes. Every call has a deadline; errors
//! are values, never panics.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use signet_common::bundle::Bundle;
use signet_common::clock::Clock;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_proto::convert;
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
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::attestor::node::NodeAttestor;
use crate::client::tls::{lazy_channel, tls_config};

pub mod authorized_entries;
mod credentials;
mod error;
mod tls;

pub use authorized_entries::Known;
pub use credentials::{ClientSvid, Credentials};
pub use error::{ClientError, Denial};
pub use tls::ServerTrust;

/// Deadline of every unary call (SPIRE: 30 s).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// A JWT-SVID as the server issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSvid {
    /// Compact JWS.
    pub token: String,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
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
    /// Whether the server lets the agent attest again (instead of renewing).
    pub reattestable: bool,
}

/// The mTLS client used once the agent has an SVID.
#[derive(Debug)]
pub struct ServerClient {
    servers: Vec<String>,
    trust_domain: TrustDomain,
    clock: Arc<dyn Clock>,
    credentials: Arc<dyn Credentials>,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    svid: Arc<dyn ClientSvid>,
    roots: Arc<Vec<Vec<u8>>>,
    channel: Channel,
}

impl ServerClient {
    /// A client of `servers` (`host:port` each, the first that answers is used) presenting
    /// the SVID `credentials` holds, trusting the roots it holds.
    pub fn new(
        servers: Vec<String>,
        trust_domain: TrustDomain,
        clock: Arc<dyn Clock>,
        credentials: Arc<dyn Credentials>,
    ) -> Self {
        Self {
            servers,
            trust_domain,
            clock,
            credentials,
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
        servers: &[String],
        trust_domain: &TrustDomain,
        trust: &ServerTrust,
        clock: Arc<dyn Clock>,
        attestor: &dyn NodeAttestor,
        csr: Vec<u8>,
    ) -> Result<Attested, ClientError> {
        let tls = tls_config(trust_domain, trust, None, clock)?;
        let channel = lazy_channel(servers, tls)?;
        let (id, chain, reattestable) =
            deadline(attest_agent(channel.clone(), attestor, csr)).await?;
        let bundle = deadline(BundleClient::new(channel).get_bundle(GetBundleRequest::default()))
            .await?
            .into_inner();
        let bundle = bundle_for(&bundle, trust_domain)?;
        Ok(Attested {
            id,
            chain,
            bundle,
            reattestable,
        })
    }

    /// `RenewAgent`: a new agent SVID for the key behind `csr`.
    pub async fn renew_agent(&self, csr: Vec<u8>) -> Result<Vec<Vec<u8>>, ClientError> {
        let current = self.credentials.svid().spiffe_id().clone();
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
        bundle_for(&resp.into_inner(), &self.trust_domain)
    }

    /// `GetBundle`, also reading the server's clock from the response's HTTP `Date` header
    /// (whole seconds; `None` if it sent none): for `doctor`.
    pub async fn probe(&self, timeout: Duration) -> Result<(Bundle, Option<i64>), ClientError> {
        let mut client = BundleClient::new(self.channel()?);
        let resp = tokio::time::timeout(timeout, client.get_bundle(GetBundleRequest::default()))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        let server_time = resp
            .metadata()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(signet_common::clock::unix_seconds);
        Ok((
            bundle_for(&resp.into_inner(), &self.trust_domain)?,
            server_time,
        ))
    }

    /// `GetFederatedBundle` for `td`.
    pub async fn federated_bundle(&self, td: &TrustDomain) -> Result<Bundle, ClientError> {
        let req = GetFederatedBundleRequest {
            trust_domain: td.to_string(),
            output_mask: None,
        };
        let resp = deadline(BundleClient::new(self.channel()?).get_federated_bundle(req)).await?;
        bundle_for(&resp.into_inner(), td)
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
                _ => Ok(convert::x509_svid(r.svid, None)?.1),
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
        let svid = self.credentials.svid();
        let roots = self.credentials.bundle_roots();
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached.as_ref()
            && Arc::ptr_eq(&c.svid, &svid)
            && Arc::ptr_eq(&c.roots, &roots)
        {
            return Ok(c.channel.clone());
        }
        let tls = tls_config(
            &self.trust_domain,
            &ServerTrust::Roots(roots.to_vec()),
            Some(svid.as_ref()),
            Arc::clone(&self.clock),
        )?;
        let channel = lazy_channel(&self.servers, tls)?;
        *cached = Some(Cached {
            svid,
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
) -> Result<(SpiffeId, Vec<Vec<u8>>, bool), ClientError> {
    use agent_pb::attest_agent_request::{Params, Step as ReqStep};
    use agent_pb::attest_agent_response::Step as RespStep;
    let (tx, rx) = mpsc::channel(2);
    let first = agent_pb::AttestAgentRequest {
        step: Some(ReqStep::Params(Params {
            data: Some(attestor.attestation_data().map_err(ClientError::Attestor)?),
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
            Some(RespStep::Result(result)) => {
                let (id, chain) = convert::x509_svid(result.svid, None)?;
                return Ok((id, chain, result.reattestable));
            }
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

/// A bundle as the server sent it; it must be for `expected`.
fn bundle_for(
    b: &signet_proto::types::Bundle,
    expected: &TrustDomain,
) -> Result<Bundle, ClientError> {
    let bundle = Bundle::try_from(b)?;
    if bundle.trust_domain != *expected {
        return Err(ClientError::Malformed(format!(
            "bundle for {} where {expected} was asked for",
            bundle.trust_domain
        )));
    }
    Ok(bundle)
}
