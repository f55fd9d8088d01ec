//! The agent's memory is bounded by bytes, not only by counts (issue 9 item 3), measured on
//! the real `signet-agent` process: 1,350 FetchJWTSVID calls, each with 32 distinct audience
//! values of 2,048 bytes (the most a request may now carry), grow the agent's RSS by less than
//! [`MAX_GROWTH_MIB`]; a longer audience value, a 1 MB one and a 33rd value are refused with
//! InvalidArgument naming the limit. Before/after RSS figures are printed; run with
//! `SIGNET_AGENT_BIN=<older signet-agent>` for the figures of a build without the bounds.
//!
//! The bound: the JWT-SVID cache holds at most 8 MiB of keys and tokens, a request at most
//! 64 KiB of audience; 64 MiB leaves room for the allocator's own slack.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::Instant;

use signet_proto::workload::JwtsvidRequest;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_tests::agent_proc::{AgentProc, my_uid};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Calls in the abuse, as in the issue.
const CALLS: usize = 1350;
/// Calls in flight at once.
const CONCURRENCY: usize = 8;
/// The most audience values a request may carry, and the longest value.
const MAX_AUDIENCES: usize = 32;
const MAX_AUDIENCE_BYTES: usize = 2048;
/// The documented bound on RSS growth under the abuse.
const MAX_GROWTH_MIB: u64 = 64;

type Client = SpiffeWorkloadApiClient<
    InterceptedService<
        Channel,
        fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>,
    >,
>;

fn header(mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    r.metadata_mut()
        .insert("workload.spiffe.io", "true".parse().unwrap());
    Ok(r)
}

/// `n` distinct audience values of `len` bytes for call `call`.
fn audience(call: usize, n: usize, len: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let prefix = format!("{call}-{i}-");
            prefix.clone() + &"a".repeat(len - prefix.len())
        })
        .collect()
}

async fn fetch(client: &Client, audience: Vec<String>) -> Result<usize, tonic::Status> {
    let resp = client
        .clone()
        .fetch_jwtsvid(JwtsvidRequest {
            audience,
            spiffe_id: String::new(),
        })
        .await?;
    Ok(resp.into_inner().svids[0].svid.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_large_audiences_keep_the_agent_rss_bounded() {
    let rig = AgentProc::start("").await;
    rig.create_entry("/jwt", &format!("unix:uid:{}", my_uid()))
        .await;
    rig.first_svid(std::time::Duration::from_secs(30)).await;
    let channel = signet_tests::uds_channel(&rig.socket).await;
    let client: Client = SpiffeWorkloadApiClient::with_interceptor(channel, header as _);
    let token_len = fetch(&client, vec!["warm-up".into()]).await.unwrap();
    assert!(token_len > 0);
    let rss_before = rig.agent_rss_kib();

    let started = Instant::now();
    let client = Arc::new(client);
    let mut failures = Vec::new();
    let mut largest = 0;
    for batch in (0..CALLS).collect::<Vec<_>>().chunks(CONCURRENCY) {
        let calls = batch.iter().map(|&call| {
            let client = Arc::clone(&client);
            async move { fetch(&client, audience(call, MAX_AUDIENCES, MAX_AUDIENCE_BYTES)).await }
        });
        for result in futures::future::join_all(calls).await {
            match result {
                Ok(len) => largest = largest.max(len),
                Err(status) => failures.push(status),
            }
        }
    }
    let elapsed = started.elapsed();
    let rss_after = rig.agent_rss_kib();

    let too_long = fetch(&client, audience(0, 1, MAX_AUDIENCE_BYTES + 1)).await;
    let one_mb = fetch(&client, audience(0, 1, 1 << 20)).await;
    let too_many = fetch(&client, audience(0, MAX_AUDIENCES + 1, 8)).await;
    let rss_end = rig.agent_rss_kib();
    println!(
        "agent RSS {} MB before, {} MB after {CALLS} FetchJWTSVID calls with {MAX_AUDIENCES} \
         distinct {MAX_AUDIENCE_BYTES}-byte audiences each ({:.1} s, largest token {} KB, \
         {} failed), {} MB after the refused ones",
        rss_before / 1024,
        rss_after / 1024,
        elapsed.as_secs_f64(),
        largest / 1024,
        failures.len(),
        rss_end / 1024,
    );
    assert!(failures.is_empty(), "{:?}", failures.first());
    for (what, result, says) in [
        (
            "2049-byte value",
            too_long,
            "audience value too long: 2049 bytes (at most 2048)",
        ),
        (
            "1 MB value",
            one_mb,
            "audience value too long: 1048576 bytes (at most 2048)",
        ),
        (
            "33 values",
            too_many,
            "too many audience values: 33 (at most 32)",
        ),
    ] {
        let status = result.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(status.message(), says, "{what}");
    }
    let growth_mib = rss_end.saturating_sub(rss_before) / 1024;
    assert!(
        growth_mib < MAX_GROWTH_MIB,
        "RSS grew by {growth_mib} MiB (bound {MAX_GROWTH_MIB} MiB)"
    );
}
