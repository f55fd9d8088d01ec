//! Cross-server propagation benchmark: two `signet-server` processes on one throwaway
//! PostgreSQL, a `signet-agent` process connected to server B only (push only: its safety-net
//! sync is 1 h), and a workload in this process watching its X509 context through the `spiffe`
//! crate. Entries are created one at a time through server A's admin API; each is timed from
//! `BatchCreateEntry` returning on A until the workload's open stream carries its SVID (A's
//! change log row → NOTIFY → B's index → B's Watch push → the agent asks B for the SVID → the
//! Workload API stream). Prints figures; asserts nothing about time. Target: p99 under 1 s
//! (SPIRE's HA servers reload their entry cache every 5 s, and agents sync every 5 s). Each
//! entry is then deleted through A and timed until it leaves the stream, so the workload holds
//! two SVIDs throughout.
//!
//!     cargo build --release -p signet-server -p signet-agent --bins
//!     cargo bench -p signet-tests --bench ha_propagation
//!
//! (or `--profile dev` for both, with the debug binaries). `HA_BENCH_ENTRIES` sets how many
//! entries are created (default 100).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark"
)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, BatchDeleteEntryRequest,
};
use signet_proto::types;
use signet_server::datastore::postgres::testing::PgCluster;
use signet_tests::agent_proc::{bundle_roots, join_token, my_uid};
use signet_tests::bench::print_latencies;
use signet_tests::ha::{agent_text, entry, two_servers};
use signet_tests::procs::{spawn, wait_for};
use signet_tests::uds_channel;
use tonic::transport::Channel;

const DEFAULT_ENTRIES: usize = 100;

/// Panics unless `status` is OK.
fn assert_ok(status: Option<&types::Status>, what: &str) {
    assert_eq!(status.map(|s| s.code), Some(0), "{what}: {status:?}");
}

/// Creates `e` through the admin API; its ID.
async fn create(admin: &mut EntryClient<Channel>, e: types::Entry) -> String {
    let what = format!("create {:?}", e.spiffe_id);
    let request = BatchCreateEntryRequest {
        entries: vec![e],
        output_mask: None,
    };
    let result = admin
        .batch_create_entry(request)
        .await
        .unwrap()
        .into_inner();
    assert_ok(result.results[0].status.as_ref(), &what);
    result.results[0].entry.as_ref().unwrap().id.clone()
}

/// Deletes entry `id` through the admin API.
async fn delete(admin: &mut EntryClient<Channel>, id: String) {
    let what = format!("delete {id}");
    let request = BatchDeleteEntryRequest { ids: vec![id] };
    let result = admin
        .batch_delete_entry(request)
        .await
        .unwrap()
        .into_inner();
    assert_ok(result.results[0].status.as_ref(), &what);
}

#[tokio::main]
async fn main() {
    let entries: usize = std::env::var("HA_BENCH_ENTRIES")
        .ok()
        .map_or(DEFAULT_ENTRIES, |n| n.parse().expect("HA_BENCH_ENTRIES"));
    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_servers(&db, dir.path()).await;

    // The agent trusts the shared bundle, attests through B and knows no other server.
    std::fs::write(
        dir.path().join("bootstrap.pem"),
        signet_common::pem::certificates(&bundle_roots(&b.socket()).await),
    )
    .unwrap();
    let token = join_token(&b.socket()).await;
    let conf = dir.path().join("agent.conf");
    std::fs::write(&conf, agent_text(dir.path(), "agent", b.port, &[])).unwrap();
    let _agent = spawn(
        "signet-agent",
        &[
            "run",
            "--config",
            conf.to_str().unwrap(),
            "--join-token",
            &token,
        ],
        &dir.path().join("agent.log"),
    );
    let socket = dir.path().join("agent/public/api.sock");
    wait_for(&socket, Duration::from_secs(30)).await;
    let parent = format!("/spire/agent/join_token/{token}");
    let me = format!("uid:{}", my_uid());

    // Through A's admin API, one channel for the whole run.
    let mut admin_a = EntryClient::new(uds_channel(&a.socket()).await);

    // The workload's stream, open before the first measured entry.
    create(&mut admin_a, entry("/bench/ha/anchor", &parent, &me, 0)).await;
    let client = spiffe::WorkloadApiClient::connect_to(format!("unix:{}", socket.display()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        if let Ok(mut stream) = client.stream_x509_contexts().await
            && let Some(Ok(ctx)) = stream.next().await
            && !ctx.svids().is_empty()
        {
            break stream;
        }
        assert!(Instant::now() < deadline, "the workload never got an SVID");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Until the workload's stream says `path` is (or is no longer) among its SVIDs.
    let mut until_held = async |path: &str, held: bool| {
        loop {
            let ctx = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .unwrap_or_else(|_| panic!("{path}: no change on the workload's stream in 30 s"))
                .expect("the workload's stream ended")
                .unwrap();
            if ctx.svids().iter().any(|s| s.spiffe_id().path() == path) == held {
                return Instant::now();
            }
        }
    };

    let (mut call, mut created, mut total, mut deleted) = (vec![], vec![], vec![], vec![]);
    for i in 0..entries {
        let path = format!("/bench/ha/{i}");
        let started = Instant::now();
        let id = create(&mut admin_a, entry(&path, &parent, &me, 0)).await;
        let returned = Instant::now();
        let seen = until_held(&path, true).await;
        call.push(returned - started);
        created.push(seen - returned);
        total.push(seen - started);

        // Deleted through A again, so the workload's context stays at two SVIDs.
        let started = Instant::now();
        delete(&mut admin_a, id).await;
        deleted.push(until_held(&path, false).await - started);
    }

    let profile = if cfg!(debug_assertions) {
        "dev (debug)"
    } else {
        "release"
    };
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "Signet HA propagation: 2 signet-servers on one PostgreSQL (throwaway cluster, fsync off, \
         Unix socket), signet-agent on B only (push, no polling), a workload on the agent's \
         stream; {entries} entries created (then deleted) one at a time through A; {profile} \
         build, {cpus} CPUs, load average {}",
        load.join(" ")
    );
    print_latencies("BatchCreateEntry call on A", call);
    print_latencies("created on A -> workload under B has the SVID", created);
    print_latencies("create call on A -> workload has the SVID", total);
    print_latencies("delete call on A -> workload no longer has it", deleted);
}
