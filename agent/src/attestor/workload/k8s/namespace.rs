//! `ns-label:<key>:<value>` selectors (`enable_namespace_labels`): the labels of the pod's
//! Namespace object, read (metadata only) from the API server as SPIRE does, which needs
//! RBAC `get` on `namespaces` for the agent's service account. The client is made on first
//! use from `$KUBECONFIG`, the pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`,
//! `/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}`) or `~/.kube/config`, in
//! that order. A namespace's labels are read at most once per poll interval: concurrent
//! attestations share one request, and an answer (or failure) younger than the interval is
//! reused, so labels changed on the Namespace are seen one interval later. Every call is
//! bounded ([`signet_common::k8s::CALL_TIMEOUT`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use signet_common::k8s::{ConnectError, Kube};
use tokio::time::Instant;

use super::fetcher::{Fetcher, Source};
use crate::config::ApiServerConfig;

/// A namespace's labels.
type Labels = BTreeMap<String, String>;

/// The API server, connected on first use and kept once connected.
#[derive(Debug)]
struct ApiServer {
    config: ApiServerConfig,
    client: tokio::sync::OnceCell<Kube>,
}

impl ApiServer {
    async fn client(&self) -> Result<&Kube, String> {
        self.client
            .get_or_try_init(|| self.connect())
            .await
            .map_err(|e| format!("unable to set up kube client: {e}"))
    }

    async fn connect(&self) -> Result<Kube, ConnectError> {
        let config = match self.config.kubeconfig.split_first() {
            Some((first, rest)) => from_files(first, rest).await?,
            None => match kube::Config::incluster() {
                Ok(c) => c,
                Err(in_cluster) => match &self.config.home_kubeconfig {
                    Some(home) if home.exists() => from_files(home, &[]).await?,
                    _ => return Err(ConnectError::InCluster(in_cluster)),
                },
            },
        };
        Kube::from_config(config)
    }
}

/// The client configuration of kubeconfig files merged in order (the first to set a value
/// wins).
async fn from_files(first: &Path, rest: &[PathBuf]) -> Result<kube::Config, ConnectError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| ConnectError::Kubeconfig { path, source }
    };
    let mut merged = Kubeconfig::read_from(first).map_err(err(first))?;
    for path in rest {
        let next = Kubeconfig::read_from(path).map_err(err(path))?;
        merged = merged.merge(next).map_err(err(path))?;
    }
    kube::Config::from_custom_kubeconfig(merged, &KubeConfigOptions::default())
        .await
        .map_err(err(first))
}

/// One namespace's labels from the API server.
#[derive(Debug)]
struct NamespaceSource {
    api: Arc<ApiServer>,
    name: String,
}

impl Source<Labels> for NamespaceSource {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Labels, String>> + Send + '_>> {
        Box::pin(async move {
            let kube = self.api.client().await?;
            let api: kube::Api<Namespace> = kube::Api::all(kube.client());
            let meta = kube
                .call(api.get_metadata(&self.name))
                .await
                .map_err(|e| format!("unable to get namespace {:?}: {e}", self.name))?;
            Ok(meta.metadata.labels.unwrap_or_default())
        })
    }
}

/// The `ns-label` selectors of every namespace asked for, cached per namespace.
#[derive(Debug)]
pub struct NamespaceLabels {
    api: Arc<ApiServer>,
    fresh_for: Duration,
    namespaces: Mutex<HashMap<String, Arc<Fetcher<Labels>>>>,
}

impl NamespaceLabels {
    /// Labels read from the API server of `config`, reused for `fresh_for`.
    pub fn new(config: ApiServerConfig, fresh_for: Duration) -> Self {
        Self {
            api: Arc::new(ApiServer {
                config,
                client: tokio::sync::OnceCell::new(),
            }),
            fresh_for,
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    /// How many Namespace reads were made so far.
    pub fn calls(&self) -> u64 {
        let namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces.values().map(|f| f.calls()).sum()
    }

    /// `ns-label:<key>:<value>` for every label of `namespace`, or SPIRE's error text.
    pub async fn selector_values(&self, namespace: &str) -> Result<Vec<String>, String> {
        let fetcher = {
            let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(namespaces.entry(namespace.to_owned()).or_insert_with(|| {
                Arc::new(Fetcher::new(
                    Arc::new(NamespaceSource {
                        api: Arc::clone(&self.api),
                        name: namespace.to_owned(),
                    }),
                    self.fresh_for,
                ))
            }))
        };
        let labels = fetcher
            .newer_than(0, Instant::now())
            .await
            .result
            .map_err(|e| format!("unable to get namespace labels for {namespace:?}: {e}"))?;
        Ok(labels
            .iter()
            .map(|(k, v)| format!("ns-label:{k}:{v}"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use signet_common::k8s::testing::{closed_server, kubeconfig, silent_server};

    use super::*;

    fn labels_of(kubeconfig: Vec<PathBuf>) -> NamespaceLabels {
        NamespaceLabels::new(
            ApiServerConfig {
                kubeconfig,
                home_kubeconfig: None,
            },
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn an_unreachable_api_server_is_an_error_naming_the_namespace_and_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let server = closed_server();
        let labels = labels_of(vec![kubeconfig(dir.path(), &server)]);
        let err = labels.selector_values("shop").await.unwrap_err();
        assert!(
            err.starts_with(
                "unable to get namespace labels for \"shop\": unable to get namespace \"shop\": "
            ) && err.contains(&server),
            "{err}"
        );
        // The failure is shared for the interval like an answer: no second request.
        assert_eq!(labels.selector_values("shop").await.unwrap_err(), err);
        assert_eq!(labels.calls(), 1);
    }

    #[tokio::test]
    async fn a_silent_api_server_fails_within_the_call_bound() {
        let (server, hold) = silent_server().await;
        let dir = tempfile::tempdir().unwrap();
        let labels = labels_of(vec![kubeconfig(dir.path(), &server)]);
        // The client is connected lazily; give it a short bound before the first call.
        let kube = labels.api.connect().await.unwrap();
        labels
            .api
            .client
            .set(kube.with_call_timeout(Duration::from_millis(300)))
            .unwrap();
        let err = labels.selector_values("shop").await.unwrap_err();
        assert!(err.contains("no answer from the API server"), "{err}");
        hold.abort();
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = labels_of(vec![missing.clone()])
            .selector_values("shop")
            .await
            .unwrap_err();
        assert!(
            err.starts_with(&format!(
                "unable to get namespace labels for \"shop\": unable to set up kube client: \
                 unable to load kubeconfig {}",
                missing.display()
            )),
            "{err}"
        );
    }
}
