//! The sled store at scale: a real `signet-server` process (release build) on the default
//! sled store gets N registration entries (`BatchCreateEntry`, 500 a call); then prints the
//! store's size on disk (allocated blocks of the datastore directory, as `du`), the server's
//! RSS, the time from a restart to answering `CountEntries` with N (warm, then after dropping
//! the page cache when run as root), the RSS after that restart, and the time to list every
//! entry in pages of 500 (`ListEntries`). Asserts nothing about size or time.
//!
//!     cargo bench -p signet-tests --bench store_size              # N = 100,000
//!     STORE_SIZE_N=10000 cargo bench -p signet-tests --bench store_size
//!
//! `SIGNET_SERVER_BIN` runs another server binary (an older build, for before/after figures).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark"
)]

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{CountEntriesRequest, ListEntriesRequest};
use signet_proto::types;
use signet_tests::procs::ServerProc;
use signet_tests::{Options, batch_create_entries, uds_channel};

/// Allocated and apparent bytes of everything under `path`.
fn disk_usage(path: &Path) -> (u64, u64) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if !meta.is_dir() {
        return (meta.blocks() * 512, meta.len());
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| disk_usage(&e.unwrap().path()))
        .fold((meta.blocks() * 512, 0), |(a, b), (c, d)| (a + c, b + d))
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib as f64 / 1024.0
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn entries(n: usize) -> Vec<types::Entry> {
    let id = |path: String| {
        Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path,
        })
    };
    (0..n)
        .map(|i| types::Entry {
            spiffe_id: id(format!("/bench/store/{i}")),
            parent_id: id(format!("/spire/agent/join_token/node-{}", i % 100)),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: format!("uid:{}", i % 1000),
            }],
            ..Default::default()
        })
        .collect()
}

/// Stops the server with SIGTERM (as a service manager does) and waits for it.
async fn stop(server: &mut ServerProc) {
    let mut child = server.child.take().expect("running");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the server did not stop within a minute")
        .unwrap();
}

/// Starts the server; the time until it answers `CountEntries` with `n`.
async fn restart(server: &mut ServerProc, n: usize) -> Duration {
    let started = Instant::now();
    server.start().await;
    let mut client = EntryClient::new(uds_channel(&server.socket()).await);
    let count = client
        .count_entries(CountEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(usize::try_from(count).unwrap(), n);
    started.elapsed()
}

fn drop_page_cache() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Lists every entry in pages of 500; how many, and how long it took.
async fn list_all(server: &ServerProc) -> (usize, Duration) {
    let mut client =
        EntryClient::new(uds_channel(&server.socket()).await).max_decoding_message_size(64 << 20);
    let started = Instant::now();
    let (mut listed, mut token) = (0, String::new());
    loop {
        let page = client
            .list_entries(ListEntriesRequest {
                page_size: 500,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed += page.entries.len();
        if page.next_page_token.is_empty() {
            return (listed, started.elapsed());
        }
        token = page.next_page_token;
    }
}

fn pid(server: &ServerProc) -> u32 {
    server.child.as_ref().and_then(|c| c.id()).expect("running")
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("STORE_SIZE_N")
        .map(|v| v.parse().expect("STORE_SIZE_N: a number"))
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::new(dir.path().to_path_buf(), &Options::default());
    let store = dir.path().join("data").join("datastore");
    server.start().await;

    let started = Instant::now();
    batch_create_entries(uds_channel(&server.socket()).await, entries(n)).await;
    let created = started.elapsed();
    let (allocated, apparent) = disk_usage(&store);
    let rss_created = rss_mib(pid(&server));

    stop(&mut server).await;
    let (reopened_allocated, _) = disk_usage(&store);
    let warm = restart(&mut server, n).await;
    let rss_restarted = rss_mib(pid(&server));
    let (listed, list_time) = list_all(&server).await;
    let rss_listed = rss_mib(pid(&server));

    stop(&mut server).await;
    let cold = if drop_page_cache() {
        Some(restart(&mut server, n).await)
    } else {
        None
    };

    println!("Store size, N = {n} entries (created in {created:.1?}):");
    println!(
        "  store on disk after creation:   {:>7.1} MiB allocated ({:.1} MiB apparent), {:.0} B per entry",
        mib(allocated),
        mib(apparent),
        allocated as f64 / n as f64
    );
    println!(
        "  store on disk after a restart:  {:>7.1} MiB allocated",
        mib(reopened_allocated)
    );
    println!("  server RSS after creation:      {rss_created:>7.1} MiB");
    println!("  server RSS after a restart:     {rss_restarted:>7.1} MiB");
    println!("  server RSS after listing:       {rss_listed:>7.1} MiB");
    println!("  restart to CountEntries, warm:  {warm:>9.2?}");
    match cold {
        Some(cold) => {
            println!("  restart to CountEntries, cold:  {cold:>9.2?} (page cache dropped)")
        }
        None => println!(
            "  restart to CountEntries, cold:  skipped (dropping the page cache needs root)"
        ),
    }
    println!("  ListEntries, pages of 500:      {list_time:>9.2?} for {listed} entries");
    if let Some(server) = server.child.as_mut() {
        let _ = server.kill().await;
    }
}
