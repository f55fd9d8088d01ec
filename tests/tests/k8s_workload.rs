//! The `k8s` workload attestor end to end: a real kube-apiserver holds the pods, a kubelet
//! stand-in serves their PodList on HTTPS (bearer token checked by TokenReview), and
//! workload processes are moved into kubelet-style cgroup v1 directories
//! (`/sys/fs/cgroup/pids/kubepods/besteffort/pod<uid>/<container id>`) before they call
//! signet-agent through real clients (go-spiffe's `spiffe-check`, go-control-plane's
//! `sds-check`), all as uid 1337 (Istio's sidecar user), so only the pod tells them apart.
//!
//! Ignored in `cargo test --workspace` (they need kube-apiserver and the Go clients from
//! `tests/interop/build.sh`, and root); `tests/interop/run.sh 80` runs them with `--ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_agent::run::Agent;
use signet_common::clock::SystemClock;
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::types;
use signet_tests::kube::{KubeCluster, PodFixture, psat_agent_config_with};
use signet_tests::kubelet::{KubeletStandIn, PodCgroup, container_id, set_container, workload_pod};
use signet_tests::{Options, TestServer};

const CLUSTER: &str = "c1";
/// Every workload runs as Istio's sidecar uid.
const WORKLOAD_UID: u32 = 1337;

fn interop_bin(name: &str) -> PathBuf {
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
struct Node {
    server: TestServer,
    agent: Agent,
    kubelet: KubeletStandIn,
    kube: kube::Client,
    node: String,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(cluster: &KubeCluster, ns: &str, node: &str) -> Self {
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
        }}
    }}"#,
            port = kubelet.port,
            ca = kubelet.ca_file.display(),
            token = sa_token.display(),
        );
        let config = psat_agent_config_with(
            server.server().tcp_addr.port(),
            dir.path(),
            CLUSTER,
            &psat_token,
            &bundle,
            &k8s,
        );
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
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        format!("unix://{}", self.agent.socket_path.display())
    }

    /// An entry `/ns/<ns>/sa/<sa>` under the agent for `k8s:ns:<ns>` + `k8s:sa:<sa>`
    /// (X509-SVIDs of 6 s, so that sds-check sees a pushed rotation).
    async fn register(&self, ns: &str, sa: &str) -> String {
        let id = format!("spiffe://example.org/ns/{ns}/sa/{sa}");
        let entry = types::Entry {
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: format!("/ns/{ns}/sa/{sa}"),
            }),
            parent_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: self.agent.agent_id.path().to_owned(),
            }),
            selectors: [("ns", ns), ("sa", sa)]
                .iter()
                .map(|(k, v)| types::Selector {
                    r#type: "k8s".into(),
                    value: format!("{k}:{v}"),
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
        signet_tests::agent::until(&mut snap, Duration::from_secs(10), |s| {
            s.entries.iter().any(|e| e.spiffe_id.to_string() == id)
        })
        .await;
        id
    }

    /// A pod `pod` of `ns/sa` on this node whose container `app` runs (listed with its
    /// container ID unless `listed` is false); returns its cgroup.
    async fn pod(&self, ns: &str, sa: &str, pod: &str, listed: bool) -> PodCgroup {
        let uid = workload_pod(&self.kube, ns, sa, &self.node, pod, &[("app", pod)]).await;
        let cgroup = PodCgroup::create(&uid, &container_id());
        let runtime_id = cgroup.runtime_id();
        set_container(&self.kube, ns, pod, listed.then_some(runtime_id.as_str())).await;
        cgroup
    }
}

/// Runs `program args` as uid 1337 inside `cgroup` (bash moves itself in, then execs).
async fn run_in(cgroup: &PodCgroup, program: &Path, args: &[&str]) -> (bool, String, Duration) {
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

/// go-spiffe's FetchX509Context from inside `cgroup`: exactly one SVID, `want`.
async fn x509_exactly(node: &Node, cgroup: &PodCgroup, want: &str) {
    let (ok, out, _) = run_in(
        cgroup,
        &interop_bin("spiffe-check"),
        &[
            "x509",
            "-addr",
            &node.addr(),
            "-expect",
            want,
            "-timeout",
            "20s",
        ],
    )
    .await;
    assert!(ok, "spiffe-check x509 -expect {want}:\n{out}");
    let svids: Vec<&str> = out.lines().filter(|l| l.starts_with("svid[")).collect();
    assert_eq!(svids.len(), 1, "exactly one SVID for {want}:\n{out}");
    assert!(svids[0].contains(want), "{out}");
}

/// Envoy SDS (go-control-plane) from inside `cgroup`: `default` is `want`, a pushed
/// rotation arrives, another identity's name is refused.
async fn sds_exactly(node: &Node, cgroup: &PodCgroup, want: &str, other: &str) {
    let (ok, out, _) = run_in(
        cgroup,
        &interop_bin("sds-check"),
        &["-addr", &node.addr(), "-expect", want, "-unknown", other],
    )
    .await;
    assert!(ok, "sds-check -expect {want}:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver, the Go clients (tests/interop/build.sh) and root; run by tests/interop/run.sh 80"]
async fn two_pods_with_the_same_uid_each_get_their_own_identity() {
    let cluster = KubeCluster::shared();
    let node = Node::start(cluster, "wl-spire", "wl-node-1").await;
    let a = node.register("shop", "frontend").await;
    let b = node.register("bank", "ledger").await;
    let pod_a = node.pod("shop", "frontend", "frontend-0", true).await;
    let pod_b = node.pod("bank", "ledger", "ledger-0", true).await;

    // Both at once, over the Workload API and over SDS.
    tokio::join!(
        x509_exactly(&node, &pod_a, &a),
        x509_exactly(&node, &pod_b, &b),
    );
    tokio::join!(
        sds_exactly(&node, &pod_a, &a, &b),
        sds_exactly(&node, &pod_b, &b, &a),
    );
    assert!(node.kubelet.calls() >= 1);

    // The same uid outside any pod has no identity: no k8s selectors, no kubelet call.
    let calls = node.kubelet.calls();
    let (ok, out) = {
        let out = tokio::process::Command::new("setpriv")
            .args([
                &format!("--reuid={WORKLOAD_UID}"),
                &format!("--regid={WORKLOAD_UID}"),
                "--clear-groups",
            ])
            .arg(interop_bin("spiffe-check"))
            .args([
                "x509",
                "-addr",
                &node.addr(),
                "-timeout",
                "5s",
                "-expect",
                &a,
            ])
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    assert!(!ok, "{out}");
    assert!(
        out.contains("PermissionDenied") && out.contains("no identity issued"),
        "{out}"
    );
    assert_eq!(
        node.kubelet.calls(),
        calls,
        "a process in no pod costs no kubelet call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver, the Go clients (tests/interop/build.sh) and root; run by tests/interop/run.sh 80"]
async fn a_container_not_listed_yet_gets_its_identity_once_listed_and_a_down_kubelet_is_a_clear_error()
 {
    let cluster = KubeCluster::shared();
    let node = Node::start(cluster, "wl-late-spire", "wl-node-2").await;
    let id = node.register("late", "worker").await;
    let pod = node.pod("late", "worker", "worker-0", false).await;

    // The workload calls before the kubelet lists its container; the agent polls.
    let client = {
        let addr = node.addr();
        let want = id.clone();
        let bin = interop_bin("spiffe-check");
        let cgroup_procs = pod.procs();
        tokio::spawn(async move {
            let out = tokio::process::Command::new("bash")
                .arg("-c")
                .arg(r#"echo $$ > "$0" && exec setpriv --reuid="$1" --regid="$1" --clear-groups "${@:2}""#)
                .arg(cgroup_procs)
                .arg(WORKLOAD_UID.to_string())
                .arg(bin)
                .args(["x509", "-addr", &addr, "-expect", &want, "-timeout", "25s"])
                .output()
                .await
                .unwrap();
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = node.kubelet.calls();
    assert!(
        before >= 2,
        "the agent polls the kubelet meanwhile ({before} calls)"
    );
    set_container(&node.kube, "late", "worker-0", Some(&pod.runtime_id())).await;
    let (ok, out) = client.await.unwrap();
    assert!(ok, "identity once listed:\n{out}");

    // Kubelet down: the caller gets the reason at once, well before its deadline.
    node.kubelet.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, out, took) = run_in(
        &pod,
        &interop_bin("spiffe-check"),
        &[
            "x509",
            "-addr",
            &node.addr(),
            "-expect",
            &id,
            "-timeout",
            "15s",
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("Unavailable")
            && out.contains(
                "workload attestation failed: workloadattestor(k8s): unable to perform request"
            )
            && out.contains("Connection refused"),
        "{out}"
    );
    assert!(
        took < Duration::from_secs(10),
        "failed after {took:?}:\n{out}"
    );
}
