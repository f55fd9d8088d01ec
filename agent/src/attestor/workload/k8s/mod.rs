//! The `k8s` workload attestor (SPIRE's `k8s` plugin): the caller's pod UID and container
//! ID from its cgroups, then the kubelet's pod list, polled until the container is listed;
//! selectors `k8s:sa`, `ns`, `node-name`, `pod-uid`, `pod-name`, `pod-image-count`,
//! `pod-init-image-count`, `pod-image`, `pod-init-image`, `pod-label`, `pod-owner`,
//! `pod-owner-uid`, `container-name` and `container-image`, exactly as SPIRE writes them;
//! with `enable_namespace_labels`, then `ns-label` for every label of the pod's Namespace,
//! read from the API server ([`namespace`]).
//!
//! A process in no container gets no k8s selectors (and no kubelet call). A kubelet that
//! cannot be reached fails the attestation at once with the reason ([`AttestError::Unavailable`],
//! so the caller is not served a partial identity from the other attestors), as SPIRE up to
//! v1.15.2 fails its attestor at once. An API server that cannot be reached or refuses the
//! Namespace read fails it the same way, with SPIRE's text (SPIRE fails the k8s attestor with
//! `Internal` and serves what the other attestors found). Like every attestor, the result is
//! discarded if the caller exited or was replaced meanwhile.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use signet_common::selector::Selector;
use tokio::time::Instant;

use crate::attestor::workload::{AttestError, Peer, WorkloadAttestor};
use crate::config::K8sConfig;

pub mod cgroup;
pub mod fetcher;
pub mod kubelet;
pub mod namespace;
pub mod pods;

use cgroup::Location;
use fetcher::{Fetcher, Source};
use kubelet::Kubelet;
use namespace::NamespaceLabels;
use pods::PodList;

/// SPIRE's prefix of the plugin's messages.
const PREFIX: &str = "workloadattestor(k8s)";

/// The k8s attestor.
#[derive(Debug)]
pub struct K8sAttestor {
    config: K8sConfig,
    fetcher: Fetcher,
    namespaces: Option<NamespaceLabels>,
}

impl Source for Kubelet {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<PodList, String>> + Send + '_>> {
        Box::pin(async move { PodList::parse(&self.pods().await?) })
    }
}

impl K8sAttestor {
    /// An attestor asking the kubelet of `config` (its credentials are read now).
    pub fn new(config: K8sConfig) -> Result<Self, String> {
        let kubelet = Kubelet::new(&config.kubelet).map_err(|e| format!("{PREFIX}: {e}"))?;
        tracing::info!(url = %kubelet.url(), "k8s workload attestor ready");
        Ok(Self::with_source(config, Arc::new(kubelet)))
    }

    /// An attestor listing pods from `source`.
    pub fn with_source(config: K8sConfig, source: Arc<dyn Source>) -> Self {
        let fetcher = Fetcher::new(source, config.poll_retry_interval);
        let namespaces = config
            .namespace_labels
            .clone()
            .map(|api| NamespaceLabels::new(api, config.poll_retry_interval));
        Self {
            config,
            fetcher,
            namespaces,
        }
    }

    /// How many pod lists were fetched so far.
    pub fn kubelet_calls(&self) -> u64 {
        self.fetcher.calls()
    }

    /// How many Namespace objects were read from the API server so far.
    pub fn api_server_calls(&self) -> u64 {
        self.namespaces.as_ref().map_or(0, NamespaceLabels::calls)
    }

    fn failed(why: impl std::fmt::Display) -> AttestError {
        AttestError::Failed(format!("{PREFIX}: {why}"))
    }

    /// Selector values for the container at `location`, polling the kubelet until it is
    /// listed, and its pod's namespace.
    async fn find(
        &self,
        peer: &Peer,
        pod_uid: Option<&str>,
        container_id: &str,
    ) -> Result<(Vec<String>, String), AttestError> {
        let mut seen = 0;
        for attempt in 1..=self.config.max_poll_attempts {
            let listing = self.fetcher.newer_than(seen, Instant::now()).await;
            seen = listing.version;
            let pods = listing
                .result
                .map_err(|e| AttestError::Unavailable(format!("{PREFIX}: {e}")))?;
            if let Some(values) = self.lookup(&pods, pod_uid, container_id)? {
                return Ok(values);
            }
            if !peer.is_alive() {
                return Err(AttestError::Gone(peer.pid));
            }
            if attempt < self.config.max_poll_attempts {
                tracing::debug!(
                    pod_uid,
                    container_id,
                    attempt,
                    "Container id not found; retrying"
                );
                tokio::time::sleep(self.config.poll_retry_interval).await;
            }
        }
        tracing::warn!(pod_uid, container_id, "Container id not found; giving up");
        Err(Self::failed("no selectors found after max poll attempts"))
    }

    /// The selector values of the pod (known or, if not, any) holding `container_id`, and
    /// its namespace.
    fn lookup(
        &self,
        list: &PodList,
        pod_uid: Option<&str>,
        container_id: &str,
    ) -> Result<Option<(Vec<String>, String)>, AttestError> {
        let mut found = None;
        for (uid, pod) in &list.pods {
            if pod_uid.is_some_and(|known| known != uid) {
                continue;
            }
            let pod = pod.as_ref().map_err(|e| {
                Self::failed(format!(
                    "unable to decode pod info from kubelet response: {e}"
                ))
            })?;
            let values = match pod.container(container_id) {
                Some(status) => {
                    let mut v = pod.selector_values();
                    if !self.config.disable_container_selectors {
                        v.extend(pods::container_selector_values(status));
                    }
                    v
                }
                None if pod_uid.is_some() && self.config.disable_container_selectors => {
                    pod.selector_values()
                }
                None => continue,
            };
            if found.is_some() {
                tracing::warn!(container_id, "Two pods found with same container Id");
                return Err(Self::failed("two pods found with same container Id"));
            }
            found = Some((values, pod.namespace().to_owned()));
        }
        Ok(found)
    }
}

#[async_trait::async_trait]
impl WorkloadAttestor for K8sAttestor {
    fn name(&self) -> &'static str {
        "k8s"
    }

    async fn attest(&self, peer: &Peer) -> Result<Vec<Selector>, AttestError> {
        let path = format!("/proc/{}/cgroup", peer.pid);
        let location = match tokio::fs::read_to_string(&path).await {
            Ok(text) => {
                if self.config.verbose_container_locator_logs {
                    tracing::debug!(pid = peer.pid, cgroups = %text, "PID cgroups enumerated");
                }
                cgroup::locate(&text).map_err(Self::failed)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AttestError::Gone(peer.pid));
            }
            Err(e) => return Err(Self::failed(format!("unable to obtain cgroups: {e}"))),
        };
        let Location {
            pod_uid,
            container_id: Some(container_id),
        } = location
        else {
            // Not in a container: no k8s selectors, but the process must still be the caller.
            return if peer.is_alive() {
                Ok(Vec::new())
            } else {
                Err(AttestError::Gone(peer.pid))
            };
        };
        let (mut values, namespace) = self.find(peer, pod_uid.as_deref(), &container_id).await?;
        if let Some(labels) = &self.namespaces {
            let found = labels
                .selector_values(&namespace)
                .await
                .map_err(|e| AttestError::Unavailable(format!("{PREFIX}: {e}")))?;
            values.extend(found);
        }
        if !peer.is_alive() {
            return Err(AttestError::Gone(peer.pid));
        }
        values
            .into_iter()
            .map(|v| Selector::new("k8s", v).map_err(Self::failed))
            .collect()
    }
}

#[cfg(test)]
mod tests;
