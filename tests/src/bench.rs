//! For the benchmarks (`tests/benches`, `harness = false`): their figures, one line each,
//! and a workload stream for many SVIDs.

use std::path::Path;
use std::time::{Duration, Instant};

use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::{X509svidRequest, X509svidResponse};
use tonic::Streaming;

use crate::uds_channel;

/// A `FetchX509SVID` stream on the agent's public `socket`, read with the generated client
/// and a 256 MiB message limit (the `spiffe` crate keeps tonic's 4 MiB default, which
/// thousands of SVIDs exceed).
pub async fn try_workload_stream(
    socket: &Path,
) -> Result<Streaming<X509svidResponse>, tonic::Status> {
    let channel = uds_channel(socket).await;
    let mut client =
        SpiffeWorkloadApiClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("workload.spiffe.io", "true".parse().expect("ASCII"));
            Ok(r)
        })
        .max_decoding_message_size(256 << 20);
    Ok(client
        .fetch_x509svid(X509svidRequest {})
        .await?
        .into_inner())
}

/// [`try_workload_stream`], panicking if the call fails.
#[allow(clippy::expect_used, reason = "benchmark helper")]
pub async fn workload_stream(socket: &Path) -> Streaming<X509svidResponse> {
    try_workload_stream(socket)
        .await
        .expect("FetchX509SVID failed")
}

/// Reads `stream` until a response carries `n` SVIDs (within `within`); that response.
#[allow(clippy::expect_used, reason = "benchmark helper")]
pub async fn until_svids(
    stream: &mut Streaming<X509svidResponse>,
    n: usize,
    within: Duration,
) -> X509svidResponse {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let resp = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("the workload never held {n} SVIDs"))
            .expect("the stream failed")
            .expect("the stream ended");
        if resp.svids.len() == n {
            return resp;
        }
    }
}

/// Prints `name`, how many samples, and their min, p50, p90, p99 and max (nearest rank).
#[allow(clippy::print_stdout, reason = "benchmark figures")]
pub fn print_latencies(name: &str, mut v: Vec<Duration>) {
    assert!(!v.is_empty(), "{name}: no samples");
    v.sort();
    let pct = |p: usize| v[(v.len() * p).div_ceil(100).saturating_sub(1)];
    println!(
        "{name:<48} n={:<4} min={:>9.1?} p50={:>9.1?} p90={:>9.1?} p99={:>9.1?} max={:>9.1?}",
        v.len(),
        v[0],
        pct(50),
        pct(90),
        pct(99),
        v[v.len() - 1]
    );
}
