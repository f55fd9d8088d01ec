//! The real spire-controller-manager (v0.6.3, built by `tests/interop/build.sh` with its
//! CRDs from its module) against a real kube-apiserver and signet-server's admin socket:
//! Istio's `ClusterSPIFFEID` turns a Pod into an entry (parent = the node's `k8s_psat`
//! agent ID, selector `k8s:pod-uid:<uid>`), signet-agent's `k8s` attestor matches the
//! workload in that pod, whose open Workload API stream receives the SVID by push; deleting
//! the pod deletes the entry and takes the identity off the stream.
//!
//! Signet has no TrustDomain API yet, so the controller runs with
//! `reconcile.clusterFederatedTrustDomains` off; webhooks are off (`ENABLE_WEBHOOKS=false`,
//! they need in-cluster config). `entryIDPrefix` fences its entries off from the others,
//! which it would otherwise delete.
//!
//! Ignored in `cargo test --workspace`; `tests/interop/run.sh 80` runs it with `--ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, UNIX_EPOCH};

use futures::StreamExt;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{BatchCreateEntryRequest, ListEntriesRequest};
use signet_proto::types;
use signet_tests::k8s_node::{CLUSTER, Node, WORKLOAD_UID, interop_bin};
use signet_tests::kube::{KubeCluster, yaml_to_json};
use signet_tests::kubelet::{PodCgroup, container_id, set_container, workload_pod};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Set in the re-executed test binary: watch the Workload API at this address.
const WATCH_ENV: &str = "SIGNET_TEST_WATCH_ADDR";

/// Not a test of its own: the body of the workload process [`watch_in`] starts inside a
/// pod's cgroup. Streams X.509 contexts with the `spiffe` crate and prints one line per
/// update: `watch <unix ms> <SPIFFE IDs, comma-separated>`, or `watch <unix ms> error <why>`.
#[test]
fn workload_watch_helper() {
    let Ok(addr) = std::env::var(WATCH_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let client = spiffe::WorkloadApiClient::connect_to(addr).await.unwrap();
        let mut stream = client.stream_x509_contexts().await.unwrap();
        while let Some(update) = stream.next().await {
            let now = now_ms();
            match update {
                Ok(ctx) => {
                    let ids: Vec<String> = ctx
                        .svids()
                        .iter()
                        .map(|s| s.spiffe_id().to_string())
                        .collect();
                    println!("watch {now} {}", ids.join(","));
                }
                Err(e) => println!("watch {now} error {e}"),
            }
        }
        println!("watch {} error stream ended", now_ms());
    });
}

/// Wall-clock milliseconds (the watcher and the test are two processes).
fn now_ms() -> u128 {
    use signet_common::clock::{Clock, SystemClock};
    SystemClock
        .now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// The workload: this test binary re-executed as uid 1337 inside `cgroup`, watching.
fn watch_in(node: &Node, cgroup: &PodCgroup) -> tokio::process::Child {
    tokio::process::Command::new("bash")
        .arg("-c")
        .arg(r#"echo $$ > "$0" && exec setpriv --reuid="$1" --regid="$1" --clear-groups "${@:2}""#)
        .arg(cgroup.procs())
        .arg(WORKLOAD_UID.to_string())
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "workload_watch_helper", "--nocapture", "--quiet"])
        .env(
            WATCH_ENV,
            format!("unix:{}", node.agent.socket_path.display()),
        )
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Reads the watcher's lines until one satisfies `f`; returns its timestamp.
async fn line_where(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    within: Duration,
    what: &str,
    f: impl Fn(&str) -> bool,
) -> u128 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no update {what} within {within:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the watcher ended before {what}"));
        let Some((ts, ids)) = line.strip_prefix("watch ").and_then(|l| l.split_once(' ')) else {
            continue;
        };
        if f(ids) {
            return ts.parse().unwrap();
        }
    }
}

/// Every entry of the server.
async fn entries(node: &Node) -> Vec<types::Entry> {
    EntryClient::new(node.server.admin().await)
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
}

fn crds(cluster: &KubeCluster) {
    let dir = interop_bin("scm-crds");
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
    cluster.apply(&serde_json::Value::Array(docs));
}

fn controller(node: &Node, cluster: &KubeCluster, dir: &Path) -> tokio::process::Child {
    let config = dir.join("controller-manager-config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"apiVersion: spire.spiffe.io/v1alpha1
kind: ControllerManagerConfig
metadata:
  name: config
clusterName: {CLUSTER}
clusterDomain: cluster.local
trustDomain: example.org
spireServerSocketPath: {socket}
validatingWebhookConfigurationName: spire-controller-manager-webhook
ignoreNamespaces: [kube-system, kube-public, spire-system]
entryIDPrefix: scm-{CLUSTER}
reconcile:
  clusterSPIFFEIDs: true
  clusterStaticEntries: true
  clusterFederatedTrustDomains: false
metrics:
  bindAddress: "0"
health:
  healthProbeBindAddress: "0"
leaderElection:
  leaderElect: false
"#,
            socket = node.server.socket().display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("controller-manager.log")).unwrap();
    tokio::process::Command::new(interop_bin("spire-controller-manager"))
        .arg("--config")
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&cluster.info.kubeconfig)
        .env("ENABLE_WEBHOOKS", "false")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver, spire-controller-manager (tests/interop/build.sh) and root; run by tests/interop/run.sh 80"]
async fn cluster_spiffeid_entries_follow_pods_and_reach_the_workload_by_push() {
    let cluster = KubeCluster::shared();
    let node = Node::start(cluster, "scm-spire", "scm-node-1").await;
    let dir = tempfile::tempdir().unwrap();
    let agent_id = node.agent.agent_id.to_string();
    assert_eq!(
        agent_id,
        format!(
            "spiffe://example.org/spire/agent/k8s_psat/{CLUSTER}/{}",
            node.agent_pod.node_uid
        )
    );

    // A hand-made entry the controller must leave alone (it is outside its ID prefix): it
    // also gives the workload an identity from the start, so its stream stays open.
    let base = "spiffe://example.org/base";
    let resp = EntryClient::new(node.server.admin().await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                spiffe_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/base".into(),
                }),
                parent_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: node.agent.agent_id.path().into(),
                }),
                selectors: vec![types::Selector {
                    r#type: "k8s".into(),
                    value: "ns:shop".into(),
                }],
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].status.as_ref().unwrap().code, 0);
    let base_id = resp.results[0].entry.as_ref().unwrap().id.clone();

    crds(cluster);
    // Istio's ClusterSPIFFEID (conf/k8s/cluster-spiffeid.yaml).
    let csid = yaml_rust2::YamlLoader::load_from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/k8s/cluster-spiffeid.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let doc = serde_json::Value::Array(csid.iter().map(yaml_to_json).collect());
    let mut applied = false;
    for _ in 0..50 {
        // The CRD takes a moment to be served.
        if cluster.try_apply(&doc) {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(applied, "ClusterSPIFFEID applied");
    let mut scm = controller(&node, cluster, dir.path());

    // The pod exists first, unlabelled (no entry for it); its workload watches.
    let kube = &node.kube;
    let uid = workload_pod(kube, "shop", "frontend", &node.node, "frontend-0", &[]).await;
    let cgroup = PodCgroup::create(&uid, &container_id());
    set_container(kube, "shop", "frontend-0", Some(&cgroup.runtime_id())).await;
    let mut watcher = watch_in(&node, &cgroup);
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    line_where(
        &mut lines,
        Duration::from_secs(15),
        "with the base identity",
        |ids| ids == base,
    )
    .await;

    // Istio's injector labels the pod: the controller declares its entry.
    let want = "spiffe://example.org/ns/shop/sa/frontend";
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(kube.clone(), "shop");
    api.patch(
        "frontend-0",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({
            "metadata": {"labels": {"spiffe.io/spire-managed-identity": "true"}}
        })),
    )
    .await
    .unwrap();
    let (entry, seen_at) = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let found = entries(&node).await.into_iter().find(|e| {
                e.spiffe_id
                    .as_ref()
                    .is_some_and(|i| i.path == "/ns/shop/sa/frontend")
            });
            if let Some(e) = found {
                break (e, now_ms());
            }
            assert!(
                tokio::time::Instant::now() < deadline && scm.try_wait().unwrap().is_none(),
                "no entry from the controller; its log:\n{}",
                std::fs::read_to_string(dir.path().join("controller-manager.log")).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(
        entry.id.starts_with(&format!("scm-{CLUSTER}.")),
        "{entry:?}"
    );
    let parent = entry.parent_id.as_ref().unwrap();
    assert_eq!(
        format!("spiffe://{}{}", parent.trust_domain, parent.path),
        agent_id
    );
    let selectors: Vec<String> = entry
        .selectors
        .iter()
        .map(|s| format!("{}:{}", s.r#type, s.value))
        .collect();
    assert_eq!(selectors, [format!("k8s:pod-uid:{uid}")]);

    let got_at = line_where(
        &mut lines,
        Duration::from_secs(5),
        "with the pod's identity",
        |ids| ids.split(',').any(|i| i == want),
    )
    .await;
    let latency = got_at.saturating_sub(seen_at);
    println!("entry seen on the admin API -> SVID on the workload's stream: {latency} ms");
    assert!(
        latency < 1000,
        "the SVID took {latency} ms after the entry appeared"
    );

    // The hand-made entry is still there: the prefix fences it off.
    assert!(entries(&node).await.iter().any(|e| e.id == base_id));

    // Deleting the pod deletes the entry and ends that identity on the stream.
    api.delete(
        "frontend-0",
        &kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    line_where(
        &mut lines,
        Duration::from_secs(15),
        "without the pod's identity",
        |ids| !ids.split(',').any(|i| i == want),
    )
    .await;
    assert!(
        !entries(&node).await.iter().any(|e| e
            .spiffe_id
            .as_ref()
            .is_some_and(|i| i.path == "/ns/shop/sa/frontend")),
        "the controller deleted the entry"
    );
    assert!(entries(&node).await.iter().any(|e| e.id == base_id));
    let _ = watcher.kill().await;
}
