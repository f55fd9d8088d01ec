//! Agent sync throughput: a real `signet-server` and `signet-agent` process; N entries for
//! this process (`unix:uid:<uid>` + `unix:gid:<gid>`) are registered before the agent
//! starts, then the agent is started and a workload stream (`FetchX509SVID`, generated
//! client with a 256 MiB message limit: the `spiffe` crate keeps tonic's 4 MiB default) is
//! read until it carries all N SVIDs. Prints agent start → N SVIDs held, and SVIDs/s. Then,
//! the agent running, N more entries are registered at once (a burst) and the time until
//! the stream carries all 2N is printed too.
//!
//! A probe process (this binary again, run with another gid, so only its own entry matches
//! it) opens a new connection and reads the first `FetchX509SVID` response over and over.
//! The Workload API answers nobody before the agent's first sync has minted everything, so
//! during the start-up sync the probe's first call only shows that wait; its latencies while
//! the burst's N are minted, and after, are the figures that show whether minting starves
//! the Workload API. Needs root (for the probe's gid); without it the probe is skipped.
//! Asserts nothing about time.
//!
//!     cargo bench -p signet-tests --bench sync_throughput       # N = 1000
//!     SYNC_N=4000 cargo bench -p signet-tests --bench sync_throughput
//!
//! `SIGNET_AGENT_BIN` runs another agent binary (an older build, for before/after figures).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark"
)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signet_proto::types;
use signet_tests::agent_proc::{Prepared, my_uid};
use signet_tests::bench::{print_latencies, try_workload_stream, until_svids, workload_stream};
use signet_tests::{batch_create_entries, uds_channel};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const MINT_WITHIN: Duration = Duration::from_secs(900);
/// The probe's gid (`nogroup` on most systems).
const PROBE_GID: u32 = 65534;
/// How long the probe keeps measuring after the sync, for the idle figure.
const AFTER: Duration = Duration::from_secs(2);
const PROBE_ENV: &str = "SYNC_PROBE_SOCKET";

fn entry(token: &str, path: String, uid: u32, gid: u32) -> types::Entry {
    let selector = |value: String| types::Selector {
        r#type: "unix".into(),
        value,
    };
    types::Entry {
        spiffe_id: Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path,
        }),
        parent_id: Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: format!("/spire/agent/join_token/{token}"),
        }),
        selectors: vec![
            selector(format!("uid:{uid}")),
            selector(format!("gid:{gid}")),
        ],
        ..Default::default()
    }
}

/// The probe process: waits for the socket, then measures new connection + first
/// `FetchX509SVID` response forever, printing one line of microseconds per call.
async fn probe(socket: &Path) {
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    loop {
        let started = Instant::now();
        let Ok(mut stream) = try_workload_stream(socket).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(Some(resp)) = stream.message().await else {
            // Not synced yet, or shutting down.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let took = started.elapsed();
        assert_eq!(resp.svids.len(), 1, "the probe holds its own SVID only");
        println!("{}", took.as_micros());
    }
}

/// Starts the probe; each of its samples is stored with when it arrived.
fn spawn_probe(
    socket: &Path,
    samples: Arc<Mutex<Vec<(Instant, Duration)>>>,
) -> Option<tokio::process::Child> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(PROBE_ENV, socket)
        .gid(PROBE_GID)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| println!("  (probe skipped: cannot run with gid {PROBE_GID}: {e})"))
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let took = Duration::from_micros(line.trim().parse().unwrap());
            samples.lock().unwrap().push((Instant::now(), took));
        }
    });
    Some(child)
}

async fn create(channel: &tonic::transport::Channel, token: &str, range: std::ops::Range<usize>) {
    let uid = my_uid();
    let gid = std::fs::metadata("/proc/self").unwrap().gid();
    let entries = range
        .map(|i| entry(token, format!("/bench/sync/{i}"), uid, gid))
        .collect();
    batch_create_entries(channel.clone(), entries).await;
}

/// CPU time (user + system) `pid` has used, assuming the usual 100 clock ticks a second.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): state is the first, utime
    // and stime the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

fn durations(v: &[(Instant, Duration)]) -> Vec<Duration> {
    v.iter().map(|(_, d)| *d).collect()
}

async fn run(n: usize) {
    let rig = Prepared::new(&format!("x509_svid_cache_max_size = {}", 2 * n + 1)).await;
    let channel = uds_channel(&rig.server.socket()).await;
    let created = Instant::now();
    create(&channel, &rig.token, 0..n).await;
    let probe_entry = entry(&rig.token, "/bench/probe".into(), my_uid(), PROBE_GID);
    batch_create_entries(channel.clone(), vec![probe_entry]).await;
    let created = created.elapsed();

    let samples = Arc::new(Mutex::new(Vec::new()));
    let socket = rig.socket();
    let mut prober = spawn_probe(&socket, Arc::clone(&samples));
    let server_pid = rig.server.child.as_ref().unwrap().id().unwrap();
    let server_cpu = cpu(server_pid);
    let started = Instant::now();
    let agent = rig.start_agent().await;
    let listening = started.elapsed();
    let mut stream = workload_stream(&agent.socket).await;
    until_svids(&mut stream, n, MINT_WITHIN).await;
    let held = started.elapsed();
    let (agent_cpu, server_cpu) = (cpu(agent.agent_pid()), cpu(server_pid) - server_cpu);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    // The probe's first answer (it waited for the first sync) and a few idle ones.
    tokio::time::sleep(AFTER).await;

    let burst_at = Instant::now();
    create(&channel, &agent.token, n..2 * n).await;
    let burst_created = burst_at.elapsed();
    until_svids(&mut stream, 2 * n, MINT_WITHIN).await;
    let burst_held = burst_at.elapsed();
    let burst_done = Instant::now();
    if prober.is_some() {
        tokio::time::sleep(AFTER).await;
    }
    if let Some(p) = prober.as_mut() {
        p.kill().await.unwrap();
    }

    println!(
        "Agent sync, N = {n} entries registered before the agent starts (created in {created:.1?}):"
    );
    println!(
        "  agent start → public socket {listening:.1?}; → all {n} SVIDs on a FetchX509SVID stream {held:.2?}: {:.0} SVIDs/s",
        n as f64 / held.as_secs_f64()
    );
    println!(
        "  CPU used meanwhile: agent {agent_cpu:.2?}, server {server_cpu:.2?} (of {:.2?} on {cores} cores)",
        held * cores
    );
    println!(
        "  burst: {n} more entries (created in {burst_created:.1?}) → all {} on the stream {burst_held:.2?}: {:.0} SVIDs/s",
        2 * n,
        n as f64 / burst_held.as_secs_f64()
    );
    if prober.is_some() {
        let samples = samples.lock().unwrap().clone();
        let Some(((first_at, first), rest)) = samples.split_first() else {
            println!("  (the probe got no answer)");
            return;
        };
        println!(
            "  probe: first answer {first:.1?}, {:.2?} after agent start (the start-up sync)",
            first_at.duration_since(started)
        );
        let (before, rest): (Vec<_>, Vec<_>) = rest.iter().partition(|(at, _)| *at < burst_at);
        let (during, after): (Vec<_>, Vec<_>) =
            rest.into_iter().partition(|(at, _)| *at <= burst_done);
        for (name, v) in [
            ("  probe, idle before the burst", before),
            ("  probe, while the burst is minted", during),
            ("  probe, idle after the burst", after),
        ] {
            if v.is_empty() {
                println!("{name}: no samples");
            } else {
                print_latencies(name, durations(&v));
            }
        }
    }
}

#[tokio::main]
async fn main() {
    if let Some(socket) = std::env::var_os(PROBE_ENV) {
        probe(Path::new(&socket)).await;
        return;
    }
    let n = std::env::var("SYNC_N").map_or(1000, |v| v.trim().parse().expect("SYNC_N: a number"));
    run(n).await;
}
