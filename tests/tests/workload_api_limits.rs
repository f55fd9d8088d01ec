//! The public socket under a local attacker (issue 9 item 2), with the real `signet-agent`
//! process started as systemd starts services (open files 1024 soft, the hard limit above):
//! uid 65534 (through `setpriv`) opens and holds 3,000 idle connections; it keeps at most
//! its limit (256 by default) and the rest are closed, while root still gets its X509-SVID
//! from a real `spiffe` crate client. Idle connections are closed after
//! `workload_api_idle_timeout`, connections with an open stream are not, and HTTP/2 tells
//! clients `workload_api_max_streams_per_conn`.
//!
//! Figures (agent RSS, root fetch latency before and under attack) are printed; run with
//! `SIGNET_AGENT_BIN=<older signet-agent>` for the figures of a build without the limits.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use signet_proto::workload::X509svidRequest;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_tests::agent_proc::{AgentProc, my_uid};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// The attacker (tests/helpers/hold_conns.py).
const HOLD_CONNS: &str = include_str!("../helpers/hold_conns.py");

/// Connections the attacker opens.
const ATTACK: usize = 3000;

/// The default `workload_api_max_conns_per_uid`.
const PER_UID: u64 = 256;

#[derive(Debug, serde::Deserialize)]
struct Report {
    uid: u32,
    opened: u64,
    failed: u64,
    open: u64,
    closed: u64,
}

/// Root's fetch latencies (ms) over `n` fetches on new connections, and how many failed.
async fn fetches(rig: &AgentProc, n: usize) -> (Vec<u128>, Vec<String>) {
    let mut ms = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        match tokio::time::timeout(Duration::from_secs(10), rig.fetch_svid()).await {
            Ok(Ok(_)) => ms.push(started.elapsed().as_millis()),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("no answer within 10 s".into()),
        }
    }
    (ms, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_at_its_connection_limit_does_not_keep_root_from_its_svid() {
    let rig = AgentProc::start("").await;
    rig.create_entry("/root-workload", &format!("unix:uid:{}", my_uid()))
        .await;
    rig.first_svid(Duration::from_secs(30)).await;
    let (calm, calm_errors) = fetches(&rig, 5).await;
    assert!(calm_errors.is_empty(), "{calm_errors:?}");
    let rss_before = rig.agent_rss_kib();

    let helper = rig.dir.path().join("hold_conns.py");
    std::fs::write(&helper, HOLD_CONNS).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut attacker = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg("/usr/bin/python3")
        .arg(&helper)
        .arg(&rig.socket)
        .arg(ATTACK.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut to_attacker = attacker.stdin.take().unwrap();
    let mut reports = BufReader::new(attacker.stdout.take().unwrap()).lines();
    let mut report = async || -> Report {
        let line = tokio::time::timeout(Duration::from_secs(120), reports.next_line())
            .await
            .expect("the attacker reports")
            .unwrap()
            .expect("the attacker runs");
        serde_json::from_str(&line).unwrap()
    };
    let first = report().await;
    assert_eq!(first.uid, 65534);

    let (attacked, attacked_errors) = fetches(&rig, 5).await;
    let rss_attacked = rig.agent_rss_kib();
    // The closing of the connections over the limit may trail the attacker's first look.
    let mut last = first;
    for _ in 0..40 {
        if last.open <= PER_UID {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        to_attacker.write_all(b"report\n").await.unwrap();
        last = report().await;
    }
    println!(
        "agent RSS {} MB before, {} MB under attack; root fetch ms before {calm:?}, \
         under attack {attacked:?} ({} failed: {attacked_errors:?}); attacker (uid {}): \
         {} opened, {} refused at connect, {} still open, {} closed by the agent",
        rss_before / 1024,
        rss_attacked / 1024,
        attacked_errors.len(),
        last.uid,
        last.opened,
        last.failed,
        last.open,
        last.closed
    );
    assert!(
        attacked_errors.is_empty(),
        "root's fetches failed under attack: {attacked_errors:?}"
    );
    assert!(last.open <= PER_UID, "{last:?}");
    assert!(
        last.open > 0,
        "the attacker's first connections are served: {last:?}"
    );
    assert_eq!(
        last.open + last.closed + last.failed,
        ATTACK as u64,
        "{last:?}"
    );
    assert!(
        rig.agent_log()
            .contains("this uid holds its connection limit"),
        "the refusal is logged"
    );
    drop(to_attacker);
    let _ = attacker.wait().await;
}

/// The SETTINGS frame the server sends first: its `SETTINGS_MAX_CONCURRENT_STREAMS`.
async fn max_concurrent_streams(conn: &mut tokio::net::UnixStream) -> Option<u32> {
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut header = [0u8; 9];
    conn.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 4, "the server's first frame is SETTINGS");
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload).await.unwrap();
    payload.chunks_exact(6).find_map(|s| {
        (u16::from_be_bytes([s[0], s[1]]) == 3)
            .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_connections_with_a_stream_are_not() {
    let rig = AgentProc::start(
        r#"workload_api_idle_timeout = "1s"
    workload_api_max_streams_per_conn = 7"#,
    )
    .await;
    let selector = format!("unix:uid:{}", my_uid());
    rig.create_entry("/first", &selector).await;
    rig.first_svid(Duration::from_secs(30)).await;

    let mut idle = tokio::net::UnixStream::connect(&rig.socket).await.unwrap();
    assert_eq!(max_concurrent_streams(&mut idle).await, Some(7));

    let channel = signet_tests::uds_channel(&rig.socket).await;
    let mut client =
        SpiffeWorkloadApiClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("workload.spiffe.io", "true".parse().unwrap());
            Ok(r)
        });
    let mut stream = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().svids.len(), 1);

    // The idle connection ends (EOF after whatever frames the server sent).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), idle.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(_))),
        "the idle connection was not closed: {read:?}"
    );

    // Well past the idle timeout, the stream still carries the next update.
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.create_entry("/second", &selector).await;
    let update = tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("an update within 30 s")
        .expect("the stream is still open")
        .expect("the stream did not end");
    assert_eq!(update.svids.len(), 2);
}
