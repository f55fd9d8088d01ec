//! The Kubernetes plugins' `plugin_data`: `NodeAttestor "k8s_psat"`,
//! `BundlePublisher "k8s_configmap"` and `Notifier "k8sbundle"`, with SPIRE's keys, defaults
//! and refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use signet_common::config::{KeyError, duration};

use crate::attestation::k8s_psat::PsatCluster;
use crate::publish::{BundleFormat, ConfigMapTarget, WriteMode};

// === NodeAttestor "k8s_psat" ===

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct PsatData {
    #[serde(default)]
    clusters: BTreeMap<String, PsatClusterData>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PsatClusterData {
    #[serde(default)]
    service_account_allow_list: Vec<String>,
    audience: Option<Vec<String>>,
    #[serde(default)]
    kube_config_file: String,
    #[serde(default)]
    allowed_node_label_keys: Vec<String>,
    #[serde(default)]
    allowed_pod_label_keys: Vec<String>,
    #[serde(default)]
    use_pod_uid_for_agent_id: bool,
}

impl PsatData {
    pub(super) fn build(self, what: &str) -> Result<BTreeMap<String, PsatCluster>, KeyError> {
        self.clusters
            .into_iter()
            .map(|(name, c)| {
                if c.service_account_allow_list.is_empty() {
                    return Err(KeyError::new(
                        format!("{what}.plugin_data.clusters.{name:?}.service_account_allow_list"),
                        format!("cluster {name:?} configuration must have at least one service account allowed"),
                    ));
                }
                let cluster = PsatCluster {
                    service_account_allow_list: c.service_account_allow_list.into_iter().collect(),
                    audience: c.audience.unwrap_or_else(PsatCluster::default_audience),
                    kube_config_file: path(c.kube_config_file),
                    allowed_node_label_keys: c.allowed_node_label_keys.into_iter().collect::<BTreeSet<_>>(),
                    allowed_pod_label_keys: c.allowed_pod_label_keys.into_iter().collect(),
                    use_pod_uid_for_agent_id: c.use_pod_uid_for_agent_id,
                };
                Ok((name, cluster))
            })
            .collect()
    }
}

fn path(p: String) -> Option<PathBuf> {
    (!p.is_empty()).then(|| PathBuf::from(p))
}

// === BundlePublisher "k8s_configmap" ===

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigMapPublisherData {
    #[serde(default)]
    clusters: BTreeMap<String, ConfigMapClusterData>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigMapClusterData {
    #[serde(default)]
    configmap_name: String,
    #[serde(default)]
    configmap_key: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    format: String,
    #[serde(default)]
    kubeconfig_path: String,
    refresh_hint: Option<String>,
}

impl ConfigMapPublisherData {
    pub(super) fn build(self, what: &str) -> Result<Vec<ConfigMapTarget>, KeyError> {
        self.clusters
            .into_iter()
            .map(|(id, c)| {
                let at = format!("{what}.plugin_data.clusters.{id:?}");
                let missing =
                    |field: &str| KeyError::new(&at, format!("missing {field} in cluster {id:?}"));
                if c.configmap_name.is_empty() {
                    return Err(missing("configmap name"));
                }
                if c.configmap_key.is_empty() {
                    return Err(missing("configmap key"));
                }
                if c.namespace.is_empty() {
                    return Err(missing("namespace"));
                }
                if c.format.is_empty() {
                    return Err(missing("bundle format"));
                }
                let format: BundleFormat = c
                    .format
                    .parse()
                    .map_err(|e| KeyError::new(format!("{at}.format"), e))?;
                let refresh_hint = c
                    .refresh_hint
                    .as_deref()
                    .map(|h| duration(&format!("{at}.refresh_hint"), Some(h), Duration::ZERO))
                    .transpose()?;
                Ok(ConfigMapTarget {
                    plugin: "k8s_configmap",
                    namespace: c.namespace,
                    name: c.configmap_name,
                    key: c.configmap_key,
                    format,
                    kubeconfig: path(c.kubeconfig_path),
                    refresh_hint,
                    mode: WriteMode::Apply,
                })
            })
            .collect()
    }
}

// === Notifier "k8sbundle" ===

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct K8sBundleData {
    namespace: Option<String>,
    config_map: Option<String>,
    config_map_key: Option<String>,
    kube_config_file_path: Option<String>,
    webhook_label: Option<String>,
    api_service_label: Option<String>,
    #[serde(default)]
    clusters: Vec<K8sBundleCluster>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct K8sBundleCluster {
    namespace: Option<String>,
    config_map: Option<String>,
    config_map_key: Option<String>,
    kube_config_file_path: Option<String>,
    webhook_label: Option<String>,
    api_service_label: Option<String>,
}

impl K8sBundleCluster {
    fn is_set(&self) -> bool {
        self.namespace.is_some()
            || self.config_map.is_some()
            || self.config_map_key.is_some()
            || self.kube_config_file_path.is_some()
            || self.webhook_label.is_some()
            || self.api_service_label.is_some()
    }

    fn target(self, what: &str) -> Result<ConfigMapTarget, KeyError> {
        for (key, v) in [
            ("webhook_label", &self.webhook_label),
            ("api_service_label", &self.api_service_label),
        ] {
            if v.as_deref().is_some_and(|l| !l.is_empty()) {
                return Err(KeyError::sentence(
                    format!("{what}.plugin_data.{key}"),
                    "is not supported by Signet (only the bundle ConfigMap is kept current)",
                ));
            }
        }
        let or =
            |v: Option<String>, d: &str| v.filter(|s| !s.is_empty()).unwrap_or_else(|| d.into());
        Ok(ConfigMapTarget {
            plugin: "k8sbundle",
            namespace: or(self.namespace, "spire"),
            name: or(self.config_map, "spire-bundle"),
            key: or(self.config_map_key, "bundle.crt"),
            format: BundleFormat::Pem,
            kubeconfig: self.kube_config_file_path.and_then(path),
            refresh_hint: None,
            mode: WriteMode::PatchExisting,
        })
    }
}

impl K8sBundleData {
    pub(super) fn build(self, what: &str) -> Result<Vec<ConfigMapTarget>, KeyError> {
        let mut out = Vec::new();
        let root = K8sBundleCluster {
            namespace: self.namespace,
            config_map: self.config_map,
            config_map_key: self.config_map_key,
            kube_config_file_path: self.kube_config_file_path,
            webhook_label: self.webhook_label,
            api_service_label: self.api_service_label,
        };
        // The top-level keys describe a cluster when one is set, or when no list is given.
        if root.is_set() || self.clusters.is_empty() {
            out.push(root.target(what)?);
        }
        for c in self.clusters {
            if c.kube_config_file_path.as_deref().is_none_or(str::is_empty) {
                return Err(KeyError::new(
                    format!("{what}.plugin_data.clusters"),
                    "cluster configuration is missing kube_config_file_path",
                ));
            }
            out.push(c.target(what)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
