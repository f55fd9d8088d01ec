//! One Kubernetes node for the `k8s` workload attestor tests: signet-server with
//! `k8s_psat`, signet-agent in its agent pod (`k8s_psat` + `unix` + `k8s` on the kubelet
//! stand-in's secure port), and workloads run as uid 1337 inside a pod's cgroup.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_agent::config::ApiServerConfig;
use signet_agent::run::Agent;
use signet_common::clock::SystemClock;
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::types;

use crate::kube::{KubeCluster, PodFixture, psat_agent_config_with};
use crate::kubelet::{KubeletStandIn, PodCgroup, container_id, set_container, workload_pod};
use crate::{Options, TestServer};

/// The cluster name the server knows the cluster by.
pub const CLUSTER: &str = "c1";
/// Every workload runs as Istio's sidecar uid.
pub const WORKLOAD_UID: u32 = 1337;

/// A binary `tests/interop/build.sh` built (`$KUBE_BIN_DIR`, else `tests/interop/bin`).
pub fn interop_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("KUBE_BIN_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/bin"),
        PathBuf::from,
    );
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run tests/interop/build.sh",
        p.display()
    );
    p
}

/// One node: signet-server with k8s_psat, signet-agent in its agent pod (k8s_psat + unix +
/// k8s), and the node's kubelet stand-in.
#[allow(missing_debug_implementations, reason = "test harness")]
pub struct Node {
    /// signet-server.
    pub server: TestServer,
    /// signet-agent.
    pub agent: Agent,
    /// The node's kubelet.
    pub kubelet: KubeletStandIn,
    /// An admin client of the cluster.
    pub kube: kube::Client,
    /// The node's name.
    pub node: String,
    /// The agent pod's objects.
    pub agent_pod: crate::kube::AgentPod,
    _dir: tempfile::TempDir,
}

/// What [`Node::start_with`] turns on beyond [`Node::start`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeOptions {
    /// `enable_namespace_labels = true`, the API server reached with the agent's service
    /// account (which has no RBAC of its own: grant `get` on `namespaces` to
    /// `<ns>:spire-agent` for it to work).
    pub namespace_labels: bool,
}

impl Node {
    /// Starts the node `node` with its agent pod in namespace `ns`.
    pub async fn start(cluster: &KubeCluster, ns: &str, node: &str) -> Self {
        Self::start_with(cluster, ns, node, NodeOptions::default()).await
    }

    /// [`Node::start`] with `options`.
    pub async fn start_with(
        cluster: &KubeCluster,
        ns: &str,
        node: &str,
        options: NodeOptions,
    ) -> Self {
        let agent_pod =
            cluster.agent_pod(&PodFixture::new(ns, "spire-agent", node, "spire-agent-0"));
        let server = TestServer::start(Options {
            plugins: vec![cluster.psat_server_plugin(CLUSTER, &[&format!("{ns}:spire-agent")])],
            ..Options::default()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        // Workloads run as another user and must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let psat_token = dir.path().join("psat-token");
        cluster.write_token(
            &psat_token,
            ns,
            "spire-agent",
            "spire-agent-0",
            &["spire-server"],
        );
        // The agent's own service account token, as the kubelet's bearer credential.
        let sa_token = dir.path().join("sa-token");
        cluster.write_token(&sa_token, ns, "spire-agent", "spire-agent-0", &[]);
        let kubelet = KubeletStandIn::start(cluster, node, dir.path()).await;
        let bundle = dir.path().join("bootstrap.pem");
        std::fs::write(
            &bundle,
            signet_common::pem::certificates(&server.roots().await),
        )
        .unwrap();
        let k8s = format!(
            r#"WorkloadAttestor "k8s" {{
        plugin_data {{
            kubelet_secure_port = {port}
            kubelet_ca_path = "{ca}"
            token_path = "{token}"
            node_name_env = "SIGNET_TEST_UNSET_NODE_NAME"
            enable_namespace_labels = {labels}
        }}
    }}"#,
            port = kubelet.port,
            ca = kubelet.ca_file.display(),
            token = sa_token.display(),
            labels = options.namespace_labels,
        );
        let mut config = psat_agent_config_with(
            server.server().tcp_addr.port(),
            dir.path(),
            CLUSTER,
            &psat_token,
            &bundle,
            &k8s,
        );
        if options.namespace_labels {
            // What `KUBECONFIG=<file>` in the agent's environment gives (the agent runs in
            // this process, whose environment the tests share).
            let kubeconfig = dir.path().join("agent-kubeconfig");
            cluster.service_account_kubeconfig(ns, "spire-agent", &kubeconfig);
            config.k8s_attestor.as_mut().unwrap().namespace_labels = Some(ApiServerConfig {
                kubeconfig: vec![kubeconfig],
                home_kubeconfig: None,
            });
        }
        let agent = Agent::start(config, Arc::new(SystemClock)).await.unwrap();
        std::fs::set_permissions(
            agent.socket_path.parent().unwrap(),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        Self {
            server,
            agent,
            kubelet,
            kube: cluster.client().await,
            node: node.to_owned(),
            agent_pod,
            _dir: dir,
        }
    }

    /// The agent's socket as a client address.
    pub fn addr(&self) -> String {
        format!("unix://{}", self.agent.socket_path.display())
    }

    /// An entry `/ns/<ns>/sa/<sa>` under the agent for `k8s:ns:<ns>` + `k8s:sa:<sa>`
    /// (X509-SVIDs of 6 s, so that sds-check sees a pushed rotation).
    pub async fn register(&self, ns: &str, sa: &str) -> String {
        self.register_selectors(
            &format!("/ns/{ns}/sa/{sa}"),
            &[&format!("ns:{ns}"), &format!("sa:{sa}")],
        )
        .await
    }

    /// An entry `path` under the agent for the `k8s:<value>` selectors `values` (X509-SVIDs
    /// of 6 s); waits until the agent has it.
    pub async fn register_selectors(&self, path: &str, values: &[&str]) -> String {
        let id = format!("spiffe://example.org{path}");
        let entry = types::Entry {
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: path.to_owned(),
            }),
            parent_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: self.agent.agent_id.path().to_owned(),
            }),
            selectors: values
                .iter()
                .map(|v| types::Selector {
                    r#type: "k8s".into(),
                    value: (*v).to_owned(),
                })
                .collect(),
            x509_svid_ttl: 6,
            ..Default::default()
        };
        let resp = EntryClient::new(self.server.admin().await)
            .batch_create_entry(BatchCreateEntryRequest {
                entries: vec![entry],
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.results[0].status.as_ref().map(|s| s.code), Some(0));
        let mut snap = self.agent.snapshot();
        crate::agent::until(&mut snap, Duration::from_secs(10), |s| {
            s.entries.iter().any(|e| e.spiffe_id.to_string() == id)
        })
        .await;
        id
    }

    /// A pod `pod` of `ns/sa` on this node whose container `app` runs (listed with its
    /// container ID unless `listed` is false); returns its cgroup.
    pub async fn pod(&self, ns: &str, sa: &str, pod: &str, listed: bool) -> PodCgroup {
        let uid = workload_pod(&self.kube, ns, sa, &self.node, pod, &[("app", pod)]).await;
        let cgroup = PodCgroup::create(&uid, &container_id());
        let runtime_id = cgroup.runtime_id();
        set_container(&self.kube, ns, pod, listed.then_some(runtime_id.as_str())).await;
        cgroup
    }
}

/// Runs `program args` as uid 1337 inside `cgroup` (bash moves itself in, then execs).
pub async fn run_in(cgroup: &PodCgroup, program: &Path, args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(r#"echo $$ > "$0" && exec setpriv --reuid="$1" --regid="$1" --clear-groups "${@:2}""#)
        .arg(cgroup.procs())
        .arg(WORKLOAD_UID.to_string())
        .arg(program)
        .args(args)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, started.elapsed())
}
