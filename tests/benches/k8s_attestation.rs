//! Workload attestation with the `k8s` attestor: how long a workload in a pod waits for its
//! first `FetchX509SVID` response (new connection, `spiffe` crate), with the kubelet's pod
//! list cold (older than the poll interval: one kubelet call in the path) and warm (shared
//! from a call made within the interval); and how many kubelet calls 100 concurrent
//! connections from one pod cost. A real kube-apiserver, the kubelet stand-in (HTTPS, bearer
//! token) and signet-server + signet-agent in this process; the bench process itself moves
//! into the pod's kubelet-style cgroup, so its connections attest as that pod. Prints figures;
//! asserts nothing about time. Needs root, a cgroup v1 `pids` hierarchy and the binaries from
//! `tests/interop/build.sh`:
//!
//!     cargo bench --profile dev --bench k8s_attestation
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark"
)]

use std::time::{Duration, Instant};

use signet_tests::bench::print_latencies;
use signet_tests::k8s_node::Node;
use signet_tests::kube::KubeCluster;
use signet_tests::kubelet::CGROUP_ROOT;

const COLD_ROUNDS: usize = 20;
const WARM_ROUNDS: usize = 200;
const BURST: usize = 100;

async fn fetch(addr: &str, want: &str) -> Duration {
    let start = Instant::now();
    let client = spiffe::WorkloadApiClient::connect_to(addr).await.unwrap();
    let ctx = client.fetch_x509_context().await.unwrap();
    let took = start.elapsed();
    assert!(
        ctx.svids()
            .iter()
            .any(|s| s.spiffe_id().to_string() == want)
    );
    took
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let cluster = KubeCluster::start(None);
    let node = Node::start(&cluster, "bench-spire", "bench-node").await;
    let want = node.register("bench", "client").await;
    let cgroup = node.pod("bench", "client", "client-0", true).await;
    let addr = format!("unix:{}", node.agent.socket_path.display());
    // From here on every connection of this process comes from the pod.
    std::fs::write(cgroup.procs(), std::process::id().to_string()).unwrap();
    let poll_interval = Duration::from_millis(500);

    let mut cold = Vec::new();
    for _ in 0..COLD_ROUNDS {
        tokio::time::sleep(poll_interval + Duration::from_millis(100)).await;
        cold.push(fetch(&addr, &want).await);
    }
    let before = node.kubelet.calls();
    let mut warm = Vec::new();
    let started = Instant::now();
    for _ in 0..WARM_ROUNDS {
        warm.push(fetch(&addr, &want).await);
    }
    let warm_calls = node.kubelet.calls() - before;
    let warm_took = started.elapsed();

    tokio::time::sleep(poll_interval + Duration::from_millis(100)).await;
    let before = node.kubelet.calls();
    let started = Instant::now();
    let burst: Vec<Duration> =
        futures::future::join_all((0..BURST).map(|_| fetch(&addr, &want))).await;
    let burst_took = started.elapsed();
    let burst_calls = node.kubelet.calls() - before;

    std::fs::write(
        format!("{CGROUP_ROOT}/cgroup.procs"),
        std::process::id().to_string(),
    )
    .unwrap();
    println!(
        "k8s workload attestation (kubelet stand-in on HTTPS, pod list from a real kube-apiserver)"
    );
    print_latencies("new connection + FetchX509SVID, pod list cold", cold);
    print_latencies("new connection + FetchX509SVID, pod list warm", warm);
    println!(
        "{:<52} {warm_calls} kubelet calls for {WARM_ROUNDS} sequential attestations in {warm_took:.1?}",
        "warm rounds"
    );
    print_latencies(
        &format!("{BURST} concurrent connections from one pod"),
        burst,
    );
    println!(
        "{:<52} {burst_calls} kubelet call(s) for {BURST} concurrent attestations (all done in {burst_took:.1?})",
        "burst"
    );
}
