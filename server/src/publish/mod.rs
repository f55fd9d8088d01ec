//! Bundle publishing: keeps copies of the trust bundle where workloads and agents outside
//! the server read it, on every bundle change (CA preparation, rotation, pruning) and every
//! [`PUBLISH_EVERY`] besides, so a copy that was deleted or edited comes back. SPIRE has two
//! plugin types for the Kubernetes ConfigMap case, and both names lead here:
//! `BundlePublisher "k8s_configmap"` (server-side apply, creating the ConfigMap) and the older
//! `Notifier "k8sbundle"` (patching a ConfigMap that must exist), see [`configmap`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use signet_common::bundle::{Bundle, to_full_jwks, to_spiffe_json, x509_authorities_pem};
use signet_common::id::TrustDomain;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::datastore::DataStore;

pub mod configmap;

/// How often every copy is written again even without a bundle change (SPIRE: 30 s).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(30);
/// How soon a failed write is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// How the bundle is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleFormat {
    /// The X.509 roots as concatenated PEM `CERTIFICATE` blocks (what `trust_bundle_path`
    /// and Istio's root cert read; byte-identical to `signet-server bundle show`).
    Pem,
    /// The SPIFFE bundle document.
    Spiffe,
    /// An RFC 7517 JWK Set: roots with `x5c`, JWT keys with `kid`.
    Jwks,
}

impl std::str::FromStr for BundleFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pem" => Ok(Self::Pem),
            "spiffe" => Ok(Self::Spiffe),
            "jwks" => Ok(Self::Jwks),
            other => Err(format!(
                "unsupported bundle format {other:?} (spiffe, jwks or pem)"
            )),
        }
    }
}

/// Whether the ConfigMap is created or must already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Server-side apply with SPIRE's field manager; creates the ConfigMap (`k8s_configmap`).
    Apply,
    /// Read, then patch at that resource version, retrying on conflict; a missing ConfigMap
    /// is an error (`k8sbundle`).
    PatchExisting,
}

/// One ConfigMap that holds the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapTarget {
    /// The plugin that configured it (`k8s_configmap` or `k8sbundle`), for logs.
    pub plugin: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The `data` key holding the bundle.
    pub key: String,
    /// How the bundle is written.
    pub format: BundleFormat,
    /// The kubeconfig to reach the API server; `None`: the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// `spiffe_refresh_hint` to put in the SPIFFE format, if set.
    pub refresh_hint: Option<Duration>,
    /// Create or patch.
    pub mode: WriteMode,
}

/// The bundle as `format` writes it.
pub fn render(bundle: &Bundle, format: BundleFormat, refresh_hint: Option<Duration>) -> String {
    match format {
        BundleFormat::Pem => x509_authorities_pem(bundle),
        BundleFormat::Jwks => to_full_jwks(bundle),
        BundleFormat::Spiffe => match refresh_hint {
            Some(hint) => {
                let mut b = bundle.clone();
                b.refresh_hint = i64::try_from(hint.as_secs()).unwrap_or(i64::MAX);
                to_spiffe_json(&b)
            }
            None => to_spiffe_json(bundle),
        },
    }
}

/// Publishes the bundle of `trust_domain` to every target now, on every change `bundles`
/// reports, and every `every`, until `stop`. A failed write is logged and retried.
pub fn spawn(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    targets: Vec<ConfigMapTarget>,
    store: Arc<dyn DataStore>,
    trust_domain: TrustDomain,
    mut bundles: watch::Receiver<u64>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    if targets.is_empty() {
        return;
    }
    tasks.spawn(async move {
        let mut writers: Vec<_> = targets.into_iter().map(configmap::Writer::new).collect();
        loop {
            bundles.borrow_and_update();
            let all_ok = match store.bundle(&trust_domain).await {
                Ok(Some(bundle)) => publish_all(&mut writers, &bundle).await,
                Ok(None) => {
                    tracing::warn!(trust_domain = %trust_domain, "No bundle to publish yet");
                    false
                }
                Err(error) => {
                    tracing::warn!(%error, "Cannot read the bundle to publish");
                    false
                }
            };
            let wait = if all_ok {
                every
            } else {
                every.min(RETRY_AFTER)
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = bundles.changed() => if changed.is_err() { return Ok(()) },
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    });
}

async fn publish_all(writers: &mut [configmap::Writer], bundle: &Bundle) -> bool {
    let mut all_ok = true;
    for w in writers.iter_mut() {
        let t = w.target();
        let content = render(bundle, t.format, t.refresh_hint);
        let (plugin, namespace, name) = (t.plugin, t.namespace.clone(), t.name.clone());
        match w.write(&content).await {
            Ok(true) => {
                tracing::info!(
                    plugin,
                    namespace,
                    name,
                    "Published the bundle to a ConfigMap"
                )
            }
            Ok(false) => tracing::debug!(plugin, namespace, name, "Bundle in ConfigMap is current"),
            Err(error) => {
                all_ok = false;
                tracing::warn!(plugin, %error, "Publishing the bundle failed");
            }
        }
    }
    all_ok
}

#[cfg(test)]
mod tests;
