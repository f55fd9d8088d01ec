//! Workload API latency: how long a workload waits for the first `FetchX509SVID` response,
//! through the real `spiffe` crate client over the agent's Unix socket — on a new
//! connection (what a workload does at start) and as a new stream on an open connection.
//! Prints p50/p99; asserts nothing about time.
//!
//!     cargo bench --workspace --bench workload_latency
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark"
)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use signet_tests::agent::{Setup, until};
use signet_tests::bench::print_latencies;

const ROUNDS: usize = 400;
const WARMUP: usize = 40;

#[tokio::main]
async fn main() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let uid = nix::unistd::geteuid().as_raw();
    let entry = setup
        .create_entry_selector(&agent.agent_id, "/bench/latency", &format!("uid:{uid}"))
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.synced && s.svids.contains_key(&entry)
    })
    .await;
    let socket = format!("unix:{}", agent.socket_path.display());

    let mut new_connection = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS + WARMUP {
        let started = Instant::now();
        let client = spiffe::WorkloadApiClient::connect_to(&socket)
            .await
            .unwrap();
        let svid = client.fetch_x509_svid().await.unwrap();
        let took = started.elapsed();
        assert_eq!(svid.spiffe_id().path(), "/bench/latency");
        if i >= WARMUP {
            new_connection.push(took);
        }
    }

    let client = spiffe::WorkloadApiClient::connect_to(&socket)
        .await
        .unwrap();
    let mut open_connection = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS + WARMUP {
        let started = Instant::now();
        let mut stream = client.stream_x509_svids().await.unwrap();
        let svid = stream.next().await.unwrap().unwrap();
        let took = started.elapsed();
        assert_eq!(svid.spiffe_id().path(), "/bench/latency");
        if i >= WARMUP {
            open_connection.push(took);
        }
    }

    println!("Workload API FetchX509SVID, first response (spiffe crate, {ROUNDS} rounds):");
    print_latencies("new connection + FetchX509SVID", new_connection);
    print_latencies("FetchX509SVID on an open connection", open_connection);
    agent.shutdown().await.unwrap();
}
