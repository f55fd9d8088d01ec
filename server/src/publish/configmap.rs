//! The bundle in a Kubernetes ConfigMap, as SPIRE's `k8s_configmap` BundlePublisher writes it
//! (server-side apply under the field manager `spire-bundlepublisher-k8s_configmap`, creating
//! the ConfigMap; unlike SPIRE, a key another manager overwrote is taken back with a forced
//! apply instead of failing on the conflict from then on) and as its `k8sbundle` Notifier does (GET, then a strategic-merge PATCH at
//! that `resourceVersion`, retried on conflict; the ConfigMap must exist).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};

use super::{ConfigMapTarget, WriteMode};
use crate::k8s::{CallError, ConnectError, Kube};

/// SPIRE's field manager for server-side apply.
pub const FIELD_MANAGER: &str = "spire-bundlepublisher-k8s_configmap";
/// How many times a conflicting patch is tried.
const CONFLICT_RETRIES: usize = 5;

/// Why the ConfigMap was not written.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No client for the API server.
    #[error("unable to update: {namespace}/{name}: {source}")]
    Connect {
        /// The ConfigMap's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: ConnectError,
    },
    /// The API server refused or could not be reached.
    #[error("unable to update: {namespace}/{name}: {source}")]
    Call {
        /// The ConfigMap's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: CallError,
    },
}

/// Writes one target, keeping its API client between writes (dropped after a failure, so
/// the next write reads the kubeconfig again).
#[derive(Debug)]
pub struct Writer {
    target: ConfigMapTarget,
    kube: Option<Kube>,
    last: Option<String>,
}

impl Writer {
    /// A writer for `target`.
    pub fn new(target: ConfigMapTarget) -> Self {
        Self {
            target,
            kube: None,
            last: None,
        }
    }

    /// What it writes to.
    pub fn target(&self) -> &ConfigMapTarget {
        &self.target
    }

    /// Writes `content` under the target's key; `Ok(true)` when it differs from what this
    /// writer wrote last (the write happens either way, restoring a deleted or edited copy).
    pub async fn write(&mut self, content: &str) -> Result<bool, PublishError> {
        let result = self.try_write(content).await;
        if result.is_err() {
            self.kube = None;
            self.last = None;
            return result.map(|()| false);
        }
        let changed = self.last.as_deref() != Some(content);
        self.last = Some(content.to_owned());
        Ok(changed)
    }

    async fn try_write(&mut self, content: &str) -> Result<(), PublishError> {
        let t = &self.target;
        let kube = match &self.kube {
            Some(k) => k.clone(),
            None => {
                let k = Kube::connect(t.kubeconfig.as_deref())
                    .await
                    .map_err(|source| PublishError::Connect {
                        namespace: t.namespace.clone(),
                        name: t.name.clone(),
                        source,
                    })?;
                self.kube = Some(k.clone());
                k
            }
        };
        let call_err = |source| PublishError::Call {
            namespace: t.namespace.clone(),
            name: t.name.clone(),
            source,
        };
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(kube.client(), &t.namespace);
        match t.mode {
            WriteMode::Apply => {
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(t.name.clone()),
                        namespace: Some(t.namespace.clone()),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(t.key.clone(), content.to_owned())])),
                    ..Default::default()
                };
                let params = PatchParams::apply(FIELD_MANAGER);
                match kube
                    .call(api.patch(&t.name, &params, &Patch::Apply(&cm)))
                    .await
                {
                    Ok(_) => {}
                    // Someone else wrote the key (kubectl edit): the bundle is ours to keep
                    // current, so take the field back rather than stop updating it.
                    Err(e) if e.is_conflict() => {
                        tracing::warn!(namespace = %t.namespace, name = %t.name, key = %t.key, error = %e, "Another field manager changed the bundle key; restoring it");
                        let forced = PatchParams::apply(FIELD_MANAGER).force();
                        kube.call(api.patch(&t.name, &forced, &Patch::Apply(&cm)))
                            .await
                            .map_err(call_err)?;
                    }
                    Err(e) => return Err(call_err(e)),
                }
            }
            WriteMode::PatchExisting => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    let current = kube.call(api.get(&t.name)).await.map_err(call_err)?;
                    let patch = serde_json::json!({
                        "metadata": {"resourceVersion": current.metadata.resource_version},
                        "data": {t.key.as_str(): content},
                    });
                    let params = PatchParams::default();
                    match kube
                        .call(api.patch(&t.name, &params, &Patch::Strategic(&patch)))
                        .await
                    {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() && attempt < CONFLICT_RETRIES => {
                            tracing::debug!(namespace = %t.namespace, name = %t.name, "ConfigMap changed under the patch; retrying");
                        }
                        Err(e) => return Err(call_err(e)),
                    }
                }
            }
        }
        Ok(())
    }
}
