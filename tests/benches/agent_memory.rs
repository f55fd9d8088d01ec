//! Agent memory per cached X509-SVID: a real `signet-server` and `signet-agent` process
//! (disk key manager, so `workload-svids.json` is written as in production); N entries, all
//! authorized for this process (`unix:uid:<uid>`), are created in batches of 500, then a
//! workload stream (`FetchX509SVID`) is read until it carries all N SVIDs. Prints the agent's
//! memory (`VmRSS`/`RssAnon` of `/proc/<pid>/status`, `Pss`/`Pss_Anon` of `smaps_rollup`)
//! idle, with N SVIDs and one stream, with a second stream, and after both closed; the cost
//! per SVID over idle, and the DER size of one chain + key (+ bundle) for comparison.
//! Asserts nothing about memory or time.
//!
//!     cargo bench -p signet-tests --bench agent_memory            # N = 1000 and 10000
//!     AGENT_MEMORY_N=2000 cargo bench -p signet-tests --bench agent_memory
//!
//! `SIGNET_AGENT_BIN` runs another agent binary (an older build, for before/after figures);
//! `AGENT_MEMORY_PAUSE=<seconds>` keeps the rig up at the end, one stream open, to look at
//! the agent from outside (`gdb -p <pid>`, `/proc/<pid>/smaps`).
//! The stream is read with the generated client and a 256 MiB message limit: the `spiffe`
//! crate's client keeps tonic's 4 MiB default, which 10,000 SVIDs exceed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark"
)]

use std::time::{Duration, Instant};

use signet_proto::types;
use signet_proto::workload::X509svidResponse;
use signet_tests::agent_proc::{AgentProc, my_uid};
use signet_tests::bench::{until_svids, workload_stream};
use signet_tests::{batch_create_entries, uds_channel};
use tonic::Streaming;

const MINT_WITHIN: Duration = Duration::from_secs(900);

/// Memory figures of one process, KiB.
#[derive(Debug, Clone, Copy)]
struct Mem {
    rss: u64,
    rss_anon: u64,
    pss: u64,
    pss_anon: u64,
}

fn field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc"))
}

fn mem(pid: u32) -> Mem {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    Mem {
        rss: field(&status, "VmRSS:"),
        rss_anon: field(&status, "RssAnon:"),
        pss: field(&rollup, "Pss:"),
        pss_anon: field(&rollup, "Pss_Anon:"),
    }
}

fn print_mem(label: &str, m: Mem) {
    println!(
        "  {label:<34} VmRSS {:>8.1} MiB  RssAnon {:>8.1} MiB  Pss {:>8.1} MiB  Pss_Anon {:>8.1} MiB",
        mib(m.rss),
        mib(m.rss_anon),
        mib(m.pss),
        mib(m.pss_anon)
    );
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// KiB per SVID between two figures, in bytes.
fn per_svid(after: u64, before: u64, n: usize) -> f64 {
    (after.saturating_sub(before) * 1024) as f64 / n as f64
}

async fn create_entries(rig: &AgentProc, n: usize) {
    let uid = my_uid();
    let channel = uds_channel(&rig.server.socket()).await;
    let entries = (0..n)
        .map(|i| types::Entry {
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: format!("/bench/memory/{i}"),
            }),
            parent_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: format!("/spire/agent/join_token/{}", rig.token),
            }),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: format!("uid:{uid}"),
            }],
            ..Default::default()
        })
        .collect();
    batch_create_entries(channel, entries).await;
}

async fn open_stream(rig: &AgentProc) -> Streaming<X509svidResponse> {
    workload_stream(&rig.socket).await
}

/// Reads `stream` until a response carries `n` SVIDs; that response.
async fn until_n(stream: &mut Streaming<X509svidResponse>, n: usize) -> X509svidResponse {
    until_svids(stream, n, MINT_WITHIN).await
}

/// Lets the agent settle (persistence, renewal timers) before a figure is taken.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

async fn run(n: usize) {
    let rig = AgentProc::start(&format!("x509_svid_cache_max_size = {}", n.max(1000))).await;
    let pid = rig.agent_pid();
    settle().await;
    let idle = mem(pid);

    let started = Instant::now();
    create_entries(&rig, n).await;
    let created = started.elapsed();
    let mut first = open_stream(&rig).await;
    let resp = until_n(&mut first, n).await;
    let held = started.elapsed();
    settle().await;
    let one_stream = mem(pid);

    let mut second = open_stream(&rig).await;
    until_n(&mut second, n).await;
    settle().await;
    let two_streams = mem(pid);

    drop(first);
    drop(second);
    settle().await;
    let closed = mem(pid);

    let svid = &resp.svids[0];
    let der = svid.x509_svid.len() + svid.x509_svid_key.len();
    let bundle = svid.bundle.len();
    println!(
        "Agent memory, N = {n} SVIDs (entries created in {created:.1?}, all held by the workload after {held:.1?}):"
    );
    print_mem("idle (synced, no entries)", idle);
    print_mem("N SVIDs, 1 stream open", one_stream);
    print_mem("N SVIDs, 2 streams open", two_streams);
    print_mem("N SVIDs, streams closed", closed);
    println!(
        "  per SVID over idle, 1 stream:      VmRSS {:>7.0} B   Pss_Anon {:>7.0} B",
        per_svid(one_stream.rss, idle.rss, n),
        per_svid(one_stream.pss_anon, idle.pss_anon, n)
    );
    println!(
        "  per SVID over idle, streams closed: VmRSS {:>7.0} B   Pss_Anon {:>7.0} B",
        per_svid(closed.rss, idle.rss, n),
        per_svid(closed.pss_anon, idle.pss_anon, n)
    );
    println!(
        "  second stream, per SVID:            VmRSS {:>7.0} B",
        per_svid(two_streams.rss, one_stream.rss, n)
    );
    println!(
        "  DER of one SVID: chain {} B + key {} B = {der} B (bundle {bundle} B, shared); \
         VmRSS per SVID (1 stream) - DER = {:.0} B",
        svid.x509_svid.len(),
        svid.x509_svid_key.len(),
        per_svid(one_stream.rss, idle.rss, n) - der as f64
    );
    if let Some(secs) = std::env::var("AGENT_MEMORY_PAUSE")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        let _stream = open_stream(&rig).await;
        println!("  pausing {secs} s (agent pid {pid}, one stream open) for a look from outside");
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = match std::env::var("AGENT_MEMORY_N") {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().parse().expect("AGENT_MEMORY_N: numbers"))
            .collect(),
        Err(_) => vec![1000, 10_000],
    };
    for n in sizes {
        run(n).await;
    }
}
