//! Kubernetes API access (feature `k8s`) for the server's `k8s_psat` and ConfigMap bundle
//! publishers (SPIRE `pkg/common/plugin/k8s/apiserver`) and the agent's `ns-label`
//! selectors: a client from a kubeconfig file, or from the pod's service account when none
//! is given, and API calls that always end, with an error naming the API server when it
//! cannot be reached.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// How long one API call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the API server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig file could not be read or used.
    #[error("unable to load kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// Not in a pod, or its service account files are missing.
    #[error("unable to load in-cluster configuration: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    /// The client could not be set up (TLS material, URL).
    #[error("unable to create client: {0}")]
    Client(#[source] kube::Error),
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The API server answered with an error status.
    #[error("{message}")]
    Api {
        /// HTTP status code (404 not found, 409 conflict, ...).
        code: u16,
        /// The server's message (`pods "x" not found`).
        message: String,
    },
    /// The API server could not be reached, or its answer could not be read.
    #[error("{reason} (API server {server})")]
    Transport {
        /// Its URL.
        server: String,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// No answer within the call timeout.
    #[error("no answer from the API server {server} within {}", humantime::format_duration(*after))]
    Timeout {
        /// Its URL.
        server: String,
        /// The bound.
        after: Duration,
    },
}

impl CallError {
    /// The API server said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { code: 404, .. })
    }

    /// The API server refused a write made against a stale resource version.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Api { code: 409, .. })
    }
}

/// A client for one API server.
#[derive(Clone)]
pub struct Kube {
    client: kube::Client,
    server: String,
    timeout: Duration,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube")
            .field("server", &self.server)
            .finish()
    }
}

impl Kube {
    /// A client from `kubeconfig` (its current context), or from the in-cluster service
    /// account (`KUBERNETES_SERVICE_HOST`/`_PORT` and
    /// `/var/run/secrets/kubernetes.io/serviceaccount/`) when `None`. The file is read now,
    /// so a rotated credential is picked up by the next client.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self, ConnectError> {
        let config = match kubeconfig {
            Some(path) => {
                let err = |source| ConnectError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                };
                let file = Kubeconfig::read_from(path).map_err(err)?;
                kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(err)?
            }
            None => kube::Config::incluster().map_err(ConnectError::InCluster)?,
        };
        Self::from_config(config)
    }

    /// A client for `config` (however it was found), with the bounds of [`Kube::connect`].
    pub fn from_config(mut config: kube::Config) -> Result<Self, ConnectError> {
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(CALL_TIMEOUT);
        config.write_timeout = Some(CALL_TIMEOUT);
        // Retrying 429/503 inside the client would stretch a call past its bound.
        config.default_retry = false;
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(ConnectError::Client)?;
        Ok(Self {
            client,
            server,
            timeout: CALL_TIMEOUT,
        })
    }

    /// The same client with calls bounded by `timeout` instead of [`CALL_TIMEOUT`].
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client, for `kube::Api`.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Runs one API call, bounded by the call timeout.
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CallError> {
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(CallError::Timeout {
                server: self.server.clone(),
                after: self.timeout,
            }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(kube::Error::Api(status))) => Err(CallError::Api {
                code: status.code,
                message: status.message,
            }),
            Ok(Err(e)) => Err(CallError::Transport {
                server: self.server.clone(),
                reason: chain(&e),
            }),
        }
    }
}

/// An error and its causes, `a: b: c`, without repeating a cause a message already holds.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// Stand-ins for an API server that is down or silent, for tests of its callers (feature
/// `test-util`).
#[cfg(any(test, feature = "test-util"))]
#[allow(clippy::unwrap_used, reason = "test stand-ins")]
pub mod testing {
    use std::path::{Path, PathBuf};

    /// A kubeconfig for `server` (TLS unchecked, a dummy token).
    pub fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
            ),
        )
        .unwrap();
        path
    }

    /// `https://127.0.0.1:<port>` where nothing listens.
    pub fn closed_server() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", listener.local_addr().unwrap())
    }

    /// `https://127.0.0.1:<port>` that accepts connections and never answers, until the
    /// handle is aborted.
    pub async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = format!("https://{}", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = vec![];
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        (server, hold)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{closed_server, kubeconfig, silent_server};
    use super::*;

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope");
        let err = Kube::connect(Some(&path)).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("unable to load kubeconfig {}", path.display())),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_api_server_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let server = closed_server();
        let kube = Kube::connect(Some(&kubeconfig(dir.path(), &server)))
            .await
            .unwrap();
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(kube.client());
        let err = kube.call(api.get("n")).await.unwrap_err();
        assert!(matches!(err, CallError::Transport { .. }), "{err:?}");
        assert!(err.to_string().contains(&server), "{err}");
    }

    #[tokio::test]
    async fn a_silent_api_server_times_out() {
        let (server, hold) = silent_server().await;
        let dir = tempfile::tempdir().unwrap();
        let kube = Kube::connect(Some(&kubeconfig(dir.path(), &server)))
            .await
            .unwrap()
            .with_call_timeout(Duration::from_millis(300));
        let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(kube.client());
        let err = kube.call(api.get("n")).await.unwrap_err();
        assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("no answer from the API server {server}/ within 300ms")
        );
        hold.abort();
    }
}
