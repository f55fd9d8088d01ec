//! `NodeAttestor "k8s_psat"` (SPIRE `pkg/server/plugin/nodeattestor/k8spsat`): the agent
//! sends its projected service account token; the cluster's API server vouches for it
//! (TokenReview, for the configured audience), the service account must be allowed, and the
//! pod the token is bound to, and its node, are read back and must still be the same objects.
//! The agent is `spiffe://<td>/spire/agent/k8s_psat/<cluster>/<node UID>` and may attest
//! again whenever it likes (a restarted agent, or one whose SVID expired, keeps its ID).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::PostParams;
use signet_common::id::{self, TrustDomain};
use signet_common::psat::{PSAT, Payload};
use signet_common::selector::Selector;

use super::{AttestError, Attested, NodeAttestor, Refusal};
use crate::k8s::{CALL_TIMEOUT, Kube};

/// The extras TokenReview reports for a pod-bound token.
const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";

/// One entry of `clusters = { "<name>" = { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsatCluster {
    /// `"<namespace>:<service account>"` that may attest (at least one).
    pub service_account_allow_list: BTreeSet<String>,
    /// Audiences TokenReview must validate (default `["spire-server"]`; empty: the API
    /// server's own audiences, and no audience check here).
    pub audience: Vec<String>,
    /// The kubeconfig to reach the API server; `None`: the in-cluster service account.
    pub kube_config_file: Option<PathBuf>,
    /// Node labels that become `agent_node_label` selectors.
    pub allowed_node_label_keys: BTreeSet<String>,
    /// Pod labels that become `agent_pod_label` selectors.
    pub allowed_pod_label_keys: BTreeSet<String>,
    /// Name agents `.../<cluster>/pod/<pod UID>` instead of after their node.
    pub use_pod_uid_for_agent_id: bool,
}

impl PsatCluster {
    /// SPIRE's default audience.
    pub fn default_audience() -> Vec<String> {
        vec!["spire-server".into()]
    }
}

/// The `k8s_psat` attestor.
#[derive(Debug)]
pub struct K8sPsatAttestor {
    trust_domain: TrustDomain,
    clusters: BTreeMap<String, PsatCluster>,
    call_timeout: Duration,
}

impl K8sPsatAttestor {
    /// An attestor for these clusters (none: every attestation is refused).
    pub fn new(trust_domain: TrustDomain, clusters: BTreeMap<String, PsatCluster>) -> Self {
        if clusters.is_empty() {
            tracing::info!("No clusters configured, PSAT attestation is effectively disabled");
        }
        Self {
            trust_domain,
            clusters,
            call_timeout: CALL_TIMEOUT,
        }
    }

    /// Bounds each API call by `timeout` instead of the default.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }
}

fn refuse(code: Refusal, message: impl Into<String>) -> AttestError {
    AttestError::Plugin {
        plugin: PSAT,
        code,
        message: message.into(),
    }
}

fn internal(message: impl Into<String>) -> AttestError {
    refuse(Refusal::Internal, message)
}

#[tonic::async_trait]
impl NodeAttestor for K8sPsatAttestor {
    fn name(&self) -> &'static str {
        PSAT
    }

    async fn attest(&self, payload: &[u8]) -> Result<Attested, AttestError> {
        if payload.is_empty() {
            return Err(refuse(
                Refusal::InvalidArgument,
                "missing attestation payload",
            ));
        }
        let data: Payload = serde_json::from_slice(payload).map_err(|e| {
            refuse(
                Refusal::InvalidArgument,
                format!("failed to unmarshal data payload: {e}"),
            )
        })?;
        if data.cluster.is_empty() {
            return Err(refuse(
                Refusal::InvalidArgument,
                "missing cluster in attestation data",
            ));
        }
        if data.token.is_empty() {
            return Err(refuse(
                Refusal::InvalidArgument,
                "missing token in attestation data",
            ));
        }
        let c = &data.cluster;
        let cluster = self.clusters.get(c).ok_or_else(|| {
            refuse(
                Refusal::InvalidArgument,
                format!("not configured for cluster {c:?}"),
            )
        })?;
        let kube = Kube::connect(cluster.kube_config_file.as_deref())
            .await
            .map_err(|e| {
                internal(format!(
                    "unable to validate token with TokenReview API for cluster {c:?}: unable to get clientset: {e}"
                ))
            })?
            .with_call_timeout(self.call_timeout);
        let status = review(&kube, &data.token, &cluster.audience)
            .await
            .map_err(|e| {
                internal(format!(
                    "unable to validate token with TokenReview API for cluster {c:?}: {e}"
                ))
            })?;
        if !status.authenticated.unwrap_or(false) {
            return Err(refuse(
                Refusal::PermissionDenied,
                format!("token not authenticated according to TokenReview API for cluster {c:?}"),
            ));
        }
        let user = status.user.unwrap_or_default();
        let (ns, sa) =
            service_account(user.username.as_deref().unwrap_or_default()).map_err(|e| {
                internal(format!(
                    "failed to parse username from token review status for cluster {c:?}: {e}"
                ))
            })?;
        let account = format!("{ns}:{sa}");
        if !cluster.service_account_allow_list.contains(&account) {
            return Err(refuse(
                Refusal::PermissionDenied,
                format!("{account:?} is not an allowed service account for cluster {c:?}"),
            ));
        }
        let extra = user.extra.unwrap_or_default();
        let pod_name = one_extra(&extra, EXTRA_POD_NAME, "name").map_err(|e| {
            internal(format!(
                "failed to get pod name from token review status for cluster {c:?}: {e}"
            ))
        })?;
        let pod_uid = one_extra(&extra, EXTRA_POD_UID, "UID").map_err(|e| {
            internal(format!(
                "failed to get pod UID from token review status for cluster {c:?}: {e}"
            ))
        })?;
        let pods: kube::Api<Pod> = kube::Api::namespaced(kube.client(), ns);
        let pod = kube.call(pods.get(pod_name)).await.map_err(|e| {
            internal(format!(
                "failed to get pod from k8s API server for cluster {c:?}: {e}"
            ))
        })?;
        if pod.metadata.uid.as_deref() != Some(pod_uid) {
            return Err(refuse(
                Refusal::PermissionDenied,
                format!(
                    "pod UID mismatch for pod {pod_name:?} in cluster {c:?}: token bound to pod UID {pod_uid:?}"
                ),
            ));
        }
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let nodes: kube::Api<Node> = kube::Api::all(kube.client());
        let node = kube.call(nodes.get(&node_name)).await.map_err(|e| {
            internal(format!(
                "failed to get node from k8s API server for cluster {c:?}: {e}"
            ))
        })?;
        let node_uid = node.metadata.uid.clone().unwrap_or_default();
        if node_uid.is_empty() {
            return Err(internal(format!("node UID is empty for cluster {c:?}")));
        }
        // Newer API servers also name the node's UID; a recreated Node is another node.
        if let Some(bound) = extra.get(EXTRA_NODE_UID).and_then(|v| v.first())
            && !bound.is_empty()
            && *bound != node_uid
        {
            return Err(refuse(
                Refusal::PermissionDenied,
                format!(
                    "node UID mismatch for node {node_name:?} in cluster {c:?}: token bound to node UID {bound:?}"
                ),
            ));
        }
        let rest = if cluster.use_pod_uid_for_agent_id {
            format!("{c}/pod/{pod_uid}")
        } else {
            format!("{c}/{node_uid}")
        };
        let agent_id = id::agent_id(&self.trust_domain, PSAT, &clean_path(&rest))
            .map_err(|e| internal(format!("failed to create agent ID: {e}")))?;
        let selectors = selectors(
            c,
            Bound {
                ns,
                sa,
                pod_name,
                pod_uid,
                node_uid: &node_uid,
            },
            &pod,
            &node,
            cluster,
        )?;
        Ok(Attested {
            agent_id,
            selectors,
            can_reattest: true,
        })
    }
}

/// TokenReview for `audiences`; the status, once the API server vouched for the token.
async fn review(
    kube: &Kube,
    token: &str,
    audiences: &[String],
) -> Result<TokenReviewStatus, String> {
    let request = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_owned()),
            audiences: (!audiences.is_empty()).then(|| audiences.to_vec()),
        },
        ..Default::default()
    };
    let api: kube::Api<TokenReview> = kube::Api::all(kube.client());
    let resp = kube
        .call(api.create(&PostParams::default(), &request))
        .await
        .map_err(|e| format!("unable to query token review API: {e}"))?;
    let status = resp
        .status
        .ok_or("token review API response contains no status")?;
    if let Some(error) = status.error.as_deref().filter(|e| !e.is_empty()) {
        return Err(format!(
            "token review API response contains an error: {error}"
        ));
    }
    if status.authenticated.unwrap_or(false) && !audiences.is_empty() {
        let got = status.audiences.clone().unwrap_or_default();
        if !got.iter().any(|a| audiences.contains(a)) {
            return Err(format!(
                "token review API did not validate audience: wanted one of {} but got {}",
                go_list(audiences),
                go_list(&got)
            ));
        }
    }
    Ok(status)
}

/// `[a b]`, as Go prints a string slice.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// `system:serviceaccount:<ns>:<sa>` ⇒ (ns, sa).
fn service_account(username: &str) -> Result<(&str, &str), String> {
    if username.is_empty() {
        return Err("empty username".into());
    }
    let parts: Vec<&str> = username.split(':').collect();
    if parts.len() != 4 {
        return Err(format!("unexpected username format: {username}"));
    }
    if parts[2].is_empty() {
        return Err("missing namespace".into());
    }
    if parts[3].is_empty() {
        return Err("missing service account name".into());
    }
    Ok((parts[2], parts[3]))
}

/// The single, non-empty value of an extra (`what`: "name" or "UID").
fn one_extra<'a>(
    extra: &'a BTreeMap<String, Vec<String>>,
    key: &str,
    what: &str,
) -> Result<&'a str, String> {
    let values = extra
        .get(key)
        .ok_or_else(|| format!("missing pod {what}"))?;
    if values.len() != 1 {
        return Err(format!("expected 1 {what} but got: {}", values.len()));
    }
    let v = values[0].as_str();
    if v.is_empty() {
        return Err(format!("pod {what} is empty"));
    }
    Ok(v)
}

/// Joins path segments as Go's `path.Join` does: empty and `.` segments dropped, `..`
/// removing the one before it.
fn clean_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// What the token and TokenReview established.
struct Bound<'a> {
    ns: &'a str,
    sa: &'a str,
    pod_name: &'a str,
    pod_uid: &'a str,
    node_uid: &'a str,
}

/// SPIRE's selectors, type `k8s_psat`, in its order.
fn selectors(
    cluster_name: &str,
    b: Bound<'_>,
    pod: &Pod,
    node: &Node,
    cluster: &PsatCluster,
) -> Result<Vec<Selector>, AttestError> {
    let host_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.host_ip.clone())
        .unwrap_or_default();
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let mut values = vec![
        format!("cluster:{cluster_name}"),
        format!("agent_ns:{}", b.ns),
        format!("agent_sa:{}", b.sa),
        format!("agent_pod_name:{}", b.pod_name),
        format!("agent_pod_uid:{}", b.pod_uid),
        format!("agent_node_ip:{host_ip}"),
        format!("agent_node_name:{node_name}"),
        format!("agent_node_uid:{}", b.node_uid),
    ];
    let labelled =
        |kind: &str, labels: Option<&BTreeMap<String, String>>, keys: &BTreeSet<String>| {
            labels
                .into_iter()
                .flatten()
                .filter(|(k, _)| keys.contains(*k))
                .map(|(k, v)| format!("{kind}:{k}:{v}"))
                .collect::<Vec<_>>()
        };
    values.extend(labelled(
        "agent_node_label",
        node.metadata.labels.as_ref(),
        &cluster.allowed_node_label_keys,
    ));
    values.extend(labelled(
        "agent_pod_label",
        pod.metadata.labels.as_ref(),
        &cluster.allowed_pod_label_keys,
    ));
    values
        .into_iter()
        .map(|v| Selector::new(PSAT, v).map_err(|e| internal(format!("invalid selector: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests;
