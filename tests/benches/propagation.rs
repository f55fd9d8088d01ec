//! Propagation benchmark: how long from `BatchCreateEntry` returning on the server until a
//! workload that is already watching (`FetchX509SVID` stream through the `spiffe` crate)
//! receives the new identity; and from `BatchDeleteEntry` until the identity is gone.
//! Prints figures; asserts nothing about time. Target: well under one second (SPIRE's design
//! allows up to ~10 s: 5 s cache reload + 5 s agent sync).
//!
//!     cargo bench --workspace --bench propagation
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

const ROUNDS: usize = 20;

#[tokio::main]
async fn main() {
    let setup = Setup::new(&[]).await;
    // The safety-net poll is 5 s by default; the figures below come from the push path.
    let agent = setup.agent("").await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| s.synced).await;
    let socket = format!("unix:{}", agent.socket_path.display());

    let uid = nix::unistd::geteuid().as_raw();
    let _anchor = setup
        .create_entry_selector(&agent.agent_id, "/bench/anchor", &format!("uid:{uid}"))
        .await;
    let client = spiffe::WorkloadApiClient::connect_to(&socket)
        .await
        .unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.svids().len(), 1);

    let mut created = vec![];
    let mut deleted = vec![];
    let mut snapshot_only = vec![];
    for i in 0..ROUNDS {
        let path = format!("/bench/{i}");
        let started = Instant::now();
        let id = setup
            .create_entry_selector(&agent.agent_id, &path, &format!("uid:{uid}"))
            .await;
        loop {
            let ctx = stream.next().await.unwrap().unwrap();
            if ctx.svids().iter().any(|s| s.spiffe_id().path() == path) {
                break;
            }
        }
        created.push(started.elapsed());

        let started = Instant::now();
        setup.delete_entry(&id).await;
        loop {
            let ctx = stream.next().await.unwrap().unwrap();
            if !ctx.svids().iter().any(|s| s.spiffe_id().path() == path) {
                break;
            }
        }
        deleted.push(started.elapsed());

        let started = Instant::now();
        let other = setup
            .create_entry(&agent.agent_id, &format!("/bench/snap/{i}"))
            .await;
        until(&mut rx, Duration::from_secs(30), |s| {
            s.svids.contains_key(&other)
        })
        .await;
        snapshot_only.push(started.elapsed());
    }
    println!("Signet propagation (server and agent in one process, loopback, {ROUNDS} rounds):");
    print_latencies("entry create -> workload stream", created);
    print_latencies("entry delete -> identity gone", deleted);
    print_latencies("entry create -> agent snapshot", snapshot_only);
    agent.shutdown().await.unwrap();
}
