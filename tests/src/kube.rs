//! A real Kubernetes API server for tests (kube-apiserver on kine, started by
//! `tests/interop/lib/kube.py`, built by `tests/interop/build.sh`): the cluster, the objects
//! an agent pod needs (namespace, service account, Node, Pod bound to it), pod-bound
//! service account tokens from the TokenRequest API, kubeconfigs, and a `kube` client.
//!
//! These tests need the binaries, so they are `#[ignore]`d in `cargo test --workspace` and
//! run by the interop suite (`tests/interop/scenarios/80-k8s-rust.sh`, which passes
//! `--ignored`). The binaries are looked up in `$KUBE_BIN_DIR`, else `tests/interop/bin`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use tempfile::TempDir;

/// What `kube.py up` wrote to `cluster.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterInfo {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// The admin bearer token (`system:masters`).
    pub token: String,
    /// The API server's CA certificate (PEM).
    pub ca_file: PathBuf,
    /// An admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The service account token issuer.
    pub issuer: String,
    /// The service account signing key (PKCS#8 PEM).
    pub sa_key: PathBuf,
}

/// The objects of an agent pod, as the API server stored them.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentPod {
    /// The Node's UID.
    pub node_uid: String,
    /// The Pod's UID.
    pub pod_uid: String,
    /// The service account's UID.
    pub sa_uid: String,
}

/// An agent pod: namespace `ns`, service account `sa`, Node `node` with `node_labels`, and
/// Pod `pod` running as `sa`, bound to `node`, with `pod_labels` and `status.hostIP`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodFixture<'a> {
    /// Namespace.
    pub ns: &'a str,
    /// Service account.
    pub sa: &'a str,
    /// Node name.
    pub node: &'a str,
    /// Pod name.
    pub pod: &'a str,
    /// The Node's labels.
    pub node_labels: &'a [(&'a str, &'a str)],
    /// The Pod's labels.
    pub pod_labels: &'a [(&'a str, &'a str)],
    /// `status.hostIP`.
    pub host_ip: Option<&'a str>,
}

impl<'a> PodFixture<'a> {
    /// A pod `pod` of service account `ns/sa` on node `node`, no labels, no host IP.
    pub fn new(ns: &'a str, sa: &'a str, node: &'a str, pod: &'a str) -> Self {
        Self {
            ns,
            sa,
            node,
            pod,
            ..Self::default()
        }
    }
}

/// A running kube-apiserver + kine; stopped on drop.
#[derive(Debug)]
pub struct KubeCluster {
    dir: TempDir,
    /// Where it is and how to reach it.
    pub info: ClusterInfo,
}

fn kube_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/lib/kube.py")
}

fn run(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(kube_py())
        .args(args)
        .output()
        .expect("python3 runs kube.py");
    assert!(
        out.status.success(),
        "kube.py {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl KubeCluster {
    /// Starts a new cluster whose service account tokens carry `issuer` (default
    /// `https://kubernetes.default.svc`).
    pub fn start(issuer: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("signet-k8s-")
            .tempdir()
            .unwrap();
        let pid = std::process::id().to_string();
        let d = dir.path().to_str().unwrap().to_owned();
        let mut args = vec!["up", &d, "--owner-pid", &pid, "--cleanup"];
        if let Some(i) = issuer {
            args.extend(["--issuer", i]);
        }
        let path = run(&args);
        let info: ClusterInfo =
            serde_json::from_str(&std::fs::read_to_string(path.trim()).unwrap()).unwrap();
        Self { dir, info }
    }

    /// One cluster shared by every test of this test binary (each test uses namespaces of
    /// its own). It is stopped by its watchdog when the test binary exits.
    pub fn shared() -> &'static KubeCluster {
        static SHARED: OnceLock<KubeCluster> = OnceLock::new();
        SHARED.get_or_init(|| Self::start(None))
    }

    fn dir(&self) -> String {
        self.dir.path().to_str().unwrap().to_owned()
    }

    /// A client with the admin credential.
    pub async fn client(&self) -> kube::Client {
        let file = kube::config::Kubeconfig::read_from(&self.info.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Creates (if missing) the namespace, service account, Node and Pod of `f`.
    pub fn agent_pod(&self, f: &PodFixture<'_>) -> AgentPod {
        let d = self.dir();
        let mut args = vec![
            "fixture", &d, "--ns", f.ns, "--sa", f.sa, "--node", f.node, "--pod", f.pod,
        ];
        let labels: Vec<(String, String)> = f
            .node_labels
            .iter()
            .map(|(k, v)| ("--node-label".to_owned(), format!("{k}={v}")))
            .chain(
                f.pod_labels
                    .iter()
                    .map(|(k, v)| ("--pod-label".to_owned(), format!("{k}={v}"))),
            )
            .collect();
        for (flag, value) in &labels {
            args.push(flag);
            args.push(value);
        }
        if let Some(ip) = f.host_ip {
            args.extend(["--host-ip", ip]);
        }
        serde_json::from_str(&run(&args)).unwrap()
    }

    /// A TokenRequest token for `ns/sa`, bound to `pod` if given, for `audiences` (none:
    /// the API server's), valid `seconds` (at least 600).
    pub fn token(
        &self,
        ns: &str,
        sa: &str,
        pod: Option<&str>,
        audiences: &[&str],
        seconds: u32,
    ) -> String {
        let d = self.dir();
        let secs = seconds.to_string();
        let mut args = vec!["token", &d, "--ns", ns, "--sa", sa, "--seconds", &secs];
        if let Some(p) = pod {
            args.extend(["--pod", p]);
        }
        for a in audiences {
            args.extend(["--audience", a]);
        }
        run(&args).trim().to_owned()
    }

    /// Writes the token to `path` the way the kubelet does (a new file renamed over the old).
    pub fn write_token(&self, path: &Path, ns: &str, sa: &str, pod: &str, audiences: &[&str]) {
        let d = self.dir();
        let out = path.to_str().unwrap();
        let mut args = vec![
            "token", &d, "--ns", ns, "--sa", sa, "--pod", pod, "--out", out,
        ];
        for a in audiences {
            args.extend(["--audience", a]);
        }
        run(&args);
    }

    /// A kubeconfig at `path` authenticating as service account `ns/sa`.
    pub fn service_account_kubeconfig(&self, ns: &str, sa: &str, path: &Path) {
        let d = self.dir();
        run(&[
            "kubeconfig",
            &d,
            "--ns",
            ns,
            "--sa",
            sa,
            "--out",
            path.to_str().unwrap(),
        ]);
    }

    /// Creates the objects of a JSON document (an object or a list).
    pub fn apply(&self, doc: &serde_json::Value) {
        let file = self.dir.path().join(format!("apply-{}.json", uuid_like()));
        std::fs::write(&file, doc.to_string()).unwrap();
        run(&["apply", &self.dir(), file.to_str().unwrap()]);
    }

    /// [`KubeCluster::apply`], reporting failure (a custom resource whose CRD is not
    /// served yet) instead of panicking.
    pub fn try_apply(&self, doc: &serde_json::Value) -> bool {
        let file = self.dir.path().join(format!("apply-{}.json", uuid_like()));
        std::fs::write(&file, doc.to_string()).unwrap();
        Command::new("python3")
            .arg(kube_py())
            .args(["apply", &self.dir(), file.to_str().unwrap()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Installs spire-controller-manager's CRDs (from its module, `tests/interop/build.sh`).
    pub fn install_controller_crds(&self) {
        let dir = crate::k8s_node::interop_bin("scm-crds");
        let mut docs = Vec::new();
        for f in std::fs::read_dir(&dir).unwrap() {
            let path = f.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                for doc in
                    yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap())
                        .unwrap()
                {
                    docs.push(yaml_to_json(&doc));
                }
            }
        }
        assert!(docs.len() >= 3, "CRDs in {}", dir.display());
        self.apply(&serde_json::Value::Array(docs));
    }

    /// Deletes a pod at once (no kubelet will ever confirm it stopped).
    pub fn delete_pod(&self, ns: &str, pod: &str) {
        run(&[
            "delete",
            &self.dir(),
            &format!("/api/v1/namespaces/{ns}/pods/{pod}"),
            "--force",
        ]);
    }
}

impl KubeCluster {
    /// The server's `NodeAttestor "k8s_psat"` block: cluster `cluster` of this API server
    /// (admin kubeconfig), allowing the `"<ns>:<sa>"` in `allowed`, node label
    /// `topology.kubernetes.io/zone` and pod label `app` as selectors.
    pub fn psat_server_plugin(&self, cluster: &str, allowed: &[&str]) -> String {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        format!(
            r#"NodeAttestor "k8s_psat" {{
        plugin_data {{
            clusters = {{
                "{cluster}" = {{
                    service_account_allow_list = [{}]
                    kube_config_file = "{}"
                    allowed_node_label_keys = ["topology.kubernetes.io/zone"]
                    allowed_pod_label_keys = ["app"]
                }}
            }}
        }}
    }}"#,
            allowed.join(", "),
            self.info.kubeconfig.display()
        )
    }
}

/// signet-agent's configuration in `dir`: `NodeAttestor "k8s_psat"` for `cluster` with the
/// token at `token_path`, the server on 127.0.0.1:`port` checked against `trust_bundle`,
/// disk keys, and an hour between safety-net syncs (entries arrive by push).
pub fn psat_agent_config(
    port: u16,
    dir: &Path,
    cluster: &str,
    token_path: &Path,
    trust_bundle: &Path,
) -> signet_agent::config::Config {
    psat_agent_config_with(port, dir, cluster, token_path, trust_bundle, "")
}

/// [`psat_agent_config`] with more plugin blocks (`WorkloadAttestor "k8s" { .. }`).
pub fn psat_agent_config_with(
    port: u16,
    dir: &Path,
    cluster: &str,
    token_path: &Path,
    trust_bundle: &Path,
    more_plugins: &str,
) -> signet_agent::config::Config {
    let d = dir.display();
    let text = format!(
        r#"
agent {{
    data_dir = "{d}/agent"
    server_address = "127.0.0.1"
    server_port = {port}
    socket_path = "{d}/public/api.sock"
    trust_domain = "example.org"
    trust_bundle_path = "{bundle}"
    log_level = "DEBUG"
    experimental {{
        sync_interval = "1h"
    }}
}}
plugins {{
    KeyManager "disk" {{
        plugin_data {{
            directory = "{d}/agent/keys"
        }}
    }}
    NodeAttestor "k8s_psat" {{
        plugin_data {{
            cluster = "{cluster}"
            token_path = "{token}"
        }}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
    {more_plugins}
}}
"#,
        bundle = trust_bundle.display(),
        token = token_path.display(),
    );
    signet_agent::config::Config::parse(&text, "agent.conf", &Default::default()).unwrap()
}

/// AttestAgent over TLS (no client certificate) with a k8s_psat payload for `cluster`.
pub async fn attest_psat(
    server: &crate::TestServer,
    cluster: &str,
    token: &str,
) -> Result<(crate::Identity, bool), tonic::Status> {
    let roots = server.roots().await;
    let channel = crate::tls_channel(server.server().tcp_addr, &roots, None)
        .await
        .unwrap();
    let data = signet_proto::types::AttestationData {
        r#type: "k8s_psat".into(),
        payload: serde_json::to_vec(&serde_json::json!({"cluster": cluster, "token": token}))
            .unwrap(),
    };
    crate::attest_with(channel, data).await
}

/// A YAML document as JSON (for `apply`).
pub fn yaml_to_json(y: &yaml_rust2::Yaml) -> serde_json::Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::String(s) => s.clone().into(),
        Yaml::Integer(i) => (*i).into(),
        Yaml::Real(r) => r
            .parse::<f64>()
            .map_or_else(|_| r.clone().into(), Into::into),
        Yaml::Boolean(b) => (*b).into(),
        Yaml::Array(a) => a.iter().map(yaml_to_json).collect(),
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), yaml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        _ => serde_json::Value::Null,
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(kube_py())
            .args(["down", &self.dir()])
            .status();
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
