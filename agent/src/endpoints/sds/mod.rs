//! Envoy SDS v3 (`envoy.service.secret.v3.SecretDiscoveryService`) on the agent's public
//! socket, as SPIRE's agent serves it: state-of-the-world StreamSecrets with versions,
//! nonces, ACK/NACK and push on change; FetchSecrets; DeltaSecrets is Unimplemented. No
//! Workload API header is required.

use std::fmt::Debug;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryService;
use envoy_types::pb::google::protobuf::value::Kind;
use futures::Stream;
use signet_common::selector::SelectorSet;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::SdsConfig;
use crate::endpoints::caller::CallerSelectors;
use crate::endpoints::error::ApiError;
use crate::manager::{Identities, Snapshot};

mod resources;

pub use resources::{Entitlement, SECRET_TYPE_URL, pack, resolve};

/// How long a caller waits for its SVIDs to be minted before the request fails.
const SVID_WAIT: Duration = Duration::from_secs(30);

/// The SDS service.
#[derive(Debug, Clone)]
pub struct SdsService {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    identities: Arc<dyn Identities>,
    attest: Arc<dyn CallerSelectors>,
    config: SdsConfig,
}

type SecretStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

impl SdsService {
    /// The service over the manager's snapshots.
    pub fn new(
        snapshot: watch::Receiver<Arc<Snapshot>>,
        identities: Arc<dyn Identities>,
        attest: Arc<dyn CallerSelectors>,
        config: SdsConfig,
    ) -> Self {
        Self {
            snapshot,
            identities,
            attest,
            config,
        }
    }

    /// What the caller with `selectors` is entitled to in `snap`; `None` while its SVIDs
    /// are still being minted.
    fn entitlement(&self, snap: &Snapshot, selectors: &SelectorSet) -> Option<Entitlement> {
        let entries = snap.entries_for(selectors);
        let svids = snap.svids_for(&entries)?;
        Some(Entitlement {
            trust_domain: snap.trust_domain.clone(),
            bundle: Arc::clone(&snap.bundle),
            federated: snap.federated_for(&entries),
            svids,
        })
    }

    /// Waits until the first sync is done and the caller's SVIDs are all minted.
    async fn wait_entitlement(
        &self,
        rx: &mut watch::Receiver<Arc<Snapshot>>,
        selectors: &SelectorSet,
    ) -> Result<Entitlement, ApiError> {
        let wait = async {
            loop {
                let snap = Arc::clone(&rx.borrow_and_update());
                if snap.synced {
                    self.identities.want(&snap.entries_for(selectors));
                    if let Some(e) = self.entitlement(&snap, selectors) {
                        return Ok(e);
                    }
                }
                if rx.changed().await.is_err() {
                    return Err(ApiError::ShuttingDown);
                }
            }
        };
        tokio::time::timeout(SVID_WAIT, wait)
            .await
            .map_err(|_| ApiError::SvidsNotReady)?
    }

    fn spiffe_validation(&self, node: Option<&Node>) -> bool {
        !self.config.disable_spiffe_cert_validation && !node.is_some_and(node_disables_validation)
    }
}

/// Whether Envoy's node asks for `trusted_ca` bundles: metadata
/// `disable_spiffe_cert_validation` (bool or "true"), or an Envoy older than 1.18.
fn node_disables_validation(node: &Node) -> bool {
    let by_metadata = node
        .metadata
        .as_ref()
        .and_then(|m| m.fields.get("disable_spiffe_cert_validation"))
        .and_then(|v| v.kind.as_ref())
        .is_some_and(|k| match k {
            Kind::BoolValue(b) => *b,
            Kind::StringValue(s) => s.eq_ignore_ascii_case("true"),
            _ => false,
        });
    let old_envoy = match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
            .version
            .as_ref()
            .is_some_and(|v| v.major_number == 1 && v.minor_number < 18),
        _ => false,
    };
    by_metadata || old_envoy
}

fn random_nonce() -> String {
    let mut bytes = [0u8; 4];
    // A failing system RNG leaves zeros; nonces need only differ from the previous one,
    // which the version counter prefix guarantees.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Per-stream state: what was last sent and acknowledged.
struct StreamState {
    node: Option<Node>,
    names: Option<Vec<String>>,
    type_url: String,
    version: u64,
    last_nonce: String,
    last_sent: Option<Vec<envoy_types::pb::google::protobuf::Any>>,
}

impl StreamState {
    fn response(
        &mut self,
        resources: Vec<envoy_types::pb::google::protobuf::Any>,
    ) -> DiscoveryResponse {
        self.version += 1;
        self.last_nonce = format!("{}{}", random_nonce(), self.version);
        self.last_sent = Some(resources.clone());
        DiscoveryResponse {
            version_info: self.version.to_string(),
            resources,
            type_url: self.type_url.clone(),
            nonce: self.last_nonce.clone(),
            ..Default::default()
        }
    }
}

impl SdsService {
    async fn run_stream(
        self,
        selectors: SelectorSet,
        mut requests: Streaming<DiscoveryRequest>,
        tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    ) {
        let mut rx = self.snapshot.clone();
        let mut st = StreamState {
            node: None,
            names: None,
            type_url: SECRET_TYPE_URL.into(),
            version: 0,
            last_nonce: String::new(),
            last_sent: None,
        };
        loop {
            let send_needed = tokio::select! {
                req = requests.message() => match req {
                    Ok(Some(req)) => self.on_request(&mut st, req),
                    Ok(None) => return,
                    // Undecodable or oversized: the stream ends with that status, not OK.
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                },
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    st.names.is_some()
                }
                () = tx.closed() => return,
            };
            if !send_needed {
                continue;
            }
            let names = st.names.clone().unwrap_or_default();
            let result = match self.wait_entitlement(&mut rx, &selectors).await {
                Ok(e) => resolve(
                    &names,
                    &e,
                    &self.config,
                    self.spiffe_validation(st.node.as_ref()),
                )
                .map_err(ApiError::InvalidArgument),
                Err(e) => Err(e),
            };
            match result {
                Ok(secrets) => {
                    let packed = pack(&secrets);
                    if st.last_sent.as_ref() == Some(&packed) {
                        continue;
                    }
                    let resp = st.response(packed);
                    tracing::debug!(version = %resp.version_info, resources = ?names, "Sending SDS response");
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    let _ = tx.send(Err(err.into())).await;
                    return;
                }
            }
        }
    }

    /// Handles one request; returns whether a response must be sent.
    fn on_request(&self, st: &mut StreamState, req: DiscoveryRequest) -> bool {
        if req.node.is_some() {
            st.node = req.node.clone();
        }
        if !req.type_url.is_empty() {
            st.type_url = req.type_url.clone();
        }
        if !st.last_nonce.is_empty() && req.response_nonce != st.last_nonce {
            tracing::warn!(nonce = %req.response_nonce, "Ignoring SDS request with a stale nonce");
            return false;
        }
        if let Some(err) = &req.error_detail {
            tracing::warn!(error = %err.message, version = %req.version_info, "Envoy rejected SDS response");
        }
        let changed = st.names.as_ref() != Some(&req.resource_names);
        st.names = Some(req.resource_names);
        // First request, or a new subscription: respond. ACKs and NACKs of the current
        // subscription need no response; a NACKed payload is not sent again until it changes.
        changed || st.last_nonce.is_empty()
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type DeltaSecretsStream = DeltaStream;
    type StreamSecretsStream = SecretStream;

    async fn delta_secrets(
        &self,
        _req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        // SPIRE (grpc-go's generated stub) answers exactly this.
        Err(ApiError::Unimplemented("Method is not implemented".into()).into())
    }

    async fn stream_secrets(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SecretStream>, Status> {
        let selectors = self.attest.caller_selectors(req.extensions()).await?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(self.clone().run_stream(selectors, req.into_inner(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_secrets(
        &self,
        req: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let selectors = self.attest.caller_selectors(req.extensions()).await?;
        let req = req.into_inner();
        let mut rx = self.snapshot.clone();
        let e = self.wait_entitlement(&mut rx, &selectors).await?;
        let secrets = resolve(
            &req.resource_names,
            &e,
            &self.config,
            self.spiffe_validation(req.node.as_ref()),
        )
        .map_err(ApiError::InvalidArgument)?;
        Ok(Response::new(DiscoveryResponse {
            type_url: SECRET_TYPE_URL.into(),
            resources: pack(&secrets),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests;
