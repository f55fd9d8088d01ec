//! The real spire-controller-manager (v0.6.3, built by `tests/interop/build.sh` with its
//! CRDs from its module) against a real kube-apiserver and signet-server's admin socket:
//! Istio's `ClusterSPIFFEID` turns a Pod into an entry (parent = the node's `k8s_psat`
//! agent ID, selector `k8s:pod-uid:<uid>`), signet-agent's `k8s` attestor matches the
//! workload in that pod, whose open Workload API stream receives the SVID by push; deleting
//! the pod deletes the entry and takes the identity off the stream.
//!
//! A second controller, reconciling only `ClusterFederatedTrustDomain`s, turns them into
//! federation relationships through the TrustDomain API (and deletes undeclared ones), and
//! signet-server then federates for real with another server's bundle endpoint.
//! Webhooks are off (`ENABLE_WEBHOOKS=false`; `k8s_webhook.rs` runs the controller with them). `entryIDPrefix`
//! fences the first controller's entries off from the others, which it would otherwise delete.
//!
//! Ignored in `cargo test --workspace`; `tests/interop/run.sh 80` runs it with `--ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, UNIX_EPOCH};

use futures::StreamExt;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use signet_proto::spire::api::server::bundle::v1::GetFederatedBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{BatchCreateEntryRequest, ListEntriesRequest};
use signet_proto::spire::api::server::trustdomain::v1::ListFederationRelationshipsRequest;
use signet_proto::spire::api::server::trustdomain::v1::trust_domain_client::TrustDomainClient;
use signet_proto::types;
use signet_tests::controller::{ControllerOptions, start_controller};
use signet_tests::k8s_node::{CLUSTER, Node, WORKLOAD_UID};
use signet_tests::kube::{KubeCluster, yaml_to_json};
use signet_tests::kubelet::{PodCgroup, container_id, set_container, workload_pod};
use signet_tests::{Options, TestServer};
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

/// Starts the controller (webhook off) against `node`'s server; `reconcile` is its
/// `reconcile` block as a YAML flow mapping (e.g. `{clusterSPIFFEIDs: true}`).
fn controller(
    node: &Node,
    cluster: &KubeCluster,
    dir: &Path,
    reconcile: &str,
) -> tokio::process::Child {
    let options = ControllerOptions {
        cluster_name: CLUSTER,
        entry_id_prefix: &format!("scm-{CLUSTER}"),
        reconcile,
        webhook: false,
    };
    start_controller(cluster, &node.server.socket(), dir, options).0
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

    cluster.install_controller_crds();
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
    let mut scm = controller(
        &node,
        cluster,
        dir.path(),
        "{clusterSPIFFEIDs: true, clusterStaticEntries: true, clusterFederatedTrustDomains: false}",
    );

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

/// Every federation relationship of `node`'s server, one line each:
/// `<trust domain> <url> <profile> [<endpoint SPIFFE ID>]`, sorted.
async fn relationships(node: &Node) -> Vec<String> {
    use types::federation_relationship::BundleEndpointProfile;
    let mut out: Vec<String> = TrustDomainClient::new(node.server.admin().await)
        .list_federation_relationships(ListFederationRelationshipsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .federation_relationships
        .into_iter()
        .map(|r| {
            let profile = match r.bundle_endpoint_profile {
                Some(BundleEndpointProfile::HttpsWeb(_)) => "https_web".to_owned(),
                Some(BundleEndpointProfile::HttpsSpiffe(p)) => {
                    format!("https_spiffe {}", p.endpoint_spiffe_id)
                }
                None => "none".to_owned(),
            };
            format!("{} {} {profile}", r.trust_domain, r.bundle_endpoint_url)
        })
        .collect();
    out.sort();
    out
}

/// Waits until `node`'s relationships are `want`.
async fn wait_relationships(node: &Node, dir: &Path, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = relationships(node).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "relationships {got:?}, want {want:?}; the controller's log:\n{}",
            std::fs::read_to_string(dir.join("controller-manager.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The X.509 roots `node`'s server holds for `td`, if any.
async fn federated_roots(node: &Node, td: &str) -> Option<Vec<Vec<u8>>> {
    BundleClient::new(node.server.admin().await)
        .get_federated_bundle(GetFederatedBundleRequest {
            trust_domain: td.into(),
            output_mask: None,
        })
        .await
        .ok()
        .map(|b| {
            let b = b.into_inner();
            b.x509_authorities.into_iter().map(|a| a.asn1).collect()
        })
}

fn cftd(name: &str, spec: serde_json::Value) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &cftd_resource());
    obj.data = serde_json::json!({ "spec": spec });
    obj
}

fn cftd_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "spire.spiffe.io",
        "v1alpha1",
        "ClusterFederatedTrustDomain",
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver, spire-controller-manager (tests/interop/build.sh) and root; run by tests/interop/run.sh 80"]
async fn cluster_federated_trust_domains_become_relationships_and_federate() {
    let cluster = KubeCluster::shared();
    let node = Node::start(cluster, "scm-fed", "scm-fed-node-1").await;
    let dir = tempfile::tempdir().unwrap();
    // The other side: a server of b.test with an https_spiffe bundle endpoint.
    let b = TestServer::start(Options::bundle_endpoint("b.test")).await;
    let b_url = format!("https://{}", b.server().bundle_endpoint_addr.unwrap());
    let (b_bundle, stderr) = b.cli(&["bundle", "show", "-format", "spiffe"]).await;
    let b_bundle = b_bundle.unwrap_or_else(|e| panic!("bundle show: {e:#} {stderr}"));

    // A hand-made relationship: undeclared, so the controller deletes it.
    let (made, stderr) = node
        .server
        .cli(&[
            "federation",
            "create",
            "-trustDomain",
            "old.test",
            "-bundleEndpointURL",
            "https://127.0.0.1:1/bundle",
            "-bundleEndpointProfile",
            "https_web",
        ])
        .await;
    made.unwrap_or_else(|e| panic!("federation create: {e:#} {stderr}"));
    assert_eq!(
        relationships(&node).await,
        ["old.test https://127.0.0.1:1/bundle https_web"]
    );

    cluster.install_controller_crds();
    let api: kube::Api<DynamicObject> = kube::Api::all_with(node.kube.clone(), &cftd_resource());
    let declared = [
        cftd(
            "b-test",
            serde_json::json!({
                "trustDomain": "b.test",
                "bundleEndpointURL": b_url,
                "bundleEndpointProfile": {
                    "type": "https_spiffe",
                    "endpointSPIFFEID": "spiffe://b.test/spire/server",
                },
                "trustDomainBundle": b_bundle,
            }),
        ),
        cftd(
            "c-test",
            serde_json::json!({
                "trustDomain": "c.test",
                "bundleEndpointURL": "https://c.test.example/bundle",
                "bundleEndpointProfile": {"type": "https_web"},
            }),
        ),
    ];
    for obj in &declared {
        let mut created = false;
        for _ in 0..50 {
            // The CRD takes a moment to be served.
            if api.create(&PostParams::default(), obj).await.is_ok() {
                created = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(created, "{} created", obj.metadata.name.as_deref().unwrap());
    }
    let mut scm = controller(
        &node,
        cluster,
        dir.path(),
        "{clusterFederatedTrustDomains: true}",
    );

    let b_line = format!("b.test {b_url} https_spiffe spiffe://b.test/spire/server");
    wait_relationships(
        &node,
        dir.path(),
        &[&b_line, "c.test https://c.test.example/bundle https_web"],
    )
    .await;
    // b.test's bundle came with the declaration and stays current through its endpoint.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while federated_roots(&node, "b.test").await != Some(b.roots().await) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b.test's bundle never reached example.org's server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An edit of the declaration updates the relationship.
    api.patch(
        "c-test",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({
            "spec": {"bundleEndpointURL": "https://c.test.example/v2/bundle"}
        })),
    )
    .await
    .unwrap();
    wait_relationships(
        &node,
        dir.path(),
        &[&b_line, "c.test https://c.test.example/v2/bundle https_web"],
    )
    .await;

    // Deleting the declaration deletes the relationship; b.test's is untouched.
    api.delete("c-test", &DeleteParams::default())
        .await
        .unwrap();
    wait_relationships(&node, dir.path(), &[&b_line]).await;
    assert!(
        scm.try_wait().unwrap().is_none(),
        "the controller kept running"
    );
    api.delete("b-test", &DeleteParams::default())
        .await
        .unwrap();
    wait_relationships(&node, dir.path(), &[]).await;
    let _ = scm.kill().await;
}
