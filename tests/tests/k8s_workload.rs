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

use std::time::Duration;

use signet_tests::k8s_node::{Node, NodeOptions, WORKLOAD_UID, interop_bin, run_in};
use signet_tests::kube::KubeCluster;
use signet_tests::kubelet::{PodCgroup, set_container};

/// go-spiffe's FetchX509Context from inside `cgroup`, once: whether it got `want`, and its
/// output.
async fn x509_once(node: &Node, cgroup: &PodCgroup, want: &str) -> (bool, String) {
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
    (ok, out)
}

/// go-spiffe's FetchX509Context from inside `cgroup`: exactly one SVID, `want`.
async fn x509_exactly(node: &Node, cgroup: &PodCgroup, want: &str) {
    let (ok, out) = x509_once(node, cgroup, want).await;
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

/// [`x509_once`] until it succeeds (at most `tries` times, a second apart); the last output.
async fn x509_until(node: &Node, cgroup: &PodCgroup, want: &str, tries: u32) -> String {
    let mut last = String::new();
    for _ in 0..tries {
        let (ok, out) = x509_once(node, cgroup, want).await;
        if ok {
            return out;
        }
        last = out;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("no {want} after {tries} tries:\n{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver, the Go clients (tests/interop/build.sh) and root; run by tests/interop/run.sh 80"]
async fn ns_label_selectors_come_from_the_namespace_the_api_server_holds() {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let cluster = KubeCluster::shared();
    let agent_ns = "wl-nslabel-spire";
    let node = Node::start_with(
        cluster,
        agent_ns,
        "wl-node-3",
        NodeOptions {
            namespace_labels: true,
        },
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(node.kube.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "labelled", "labels": {"team": "blue", "tier": "gold"}}
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let blue = node
        .register_selectors("/team/blue", &["ns-label:team:blue", "ns-label:tier:gold"])
        .await;
    let red = node
        .register_selectors("/team/red", &["ns-label:team:red"])
        .await;
    let pod = node.pod("labelled", "worker", "worker-0", true).await;

    // The agent's service account may not read Namespaces yet: the caller is told why.
    let (ok, out) = x509_once(&node, &pod, &blue).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("Unavailable")
            && out.contains(
                "workloadattestor(k8s): unable to get namespace labels for \"labelled\": \
                 unable to get namespace \"labelled\": "
            )
            && out.contains("forbidden"),
        "{out}"
    );

    // Granted (SPIRE's RBAC for the option: get on namespaces), the labels select the entry.
    cluster.apply(&serde_json::json!([
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "wl-nslabel-read"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "wl-nslabel-read"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "wl-nslabel-read"},
            "subjects": [{"kind": "ServiceAccount", "name": "spire-agent", "namespace": agent_ns}],
        },
    ]));
    x509_until(&node, &pod, &blue, 20).await;
    // Exactly that one: the entry with a label the namespace does not have is not served.
    x509_exactly(&node, &pod, &blue).await;

    // Relabelled: once the cached labels are older than the poll interval (500 ms), new
    // attestations see the new ones.
    namespaces
        .patch(
            "labelled",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"team": "red", "tier": null}}}),
            ),
        )
        .await
        .unwrap();
    x509_until(&node, &pod, &red, 20).await;
    x509_exactly(&node, &pod, &red).await;
}
