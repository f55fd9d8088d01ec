//! The real `signet-server` and `signet-agent` binaries, killed with SIGKILL: an agent
//! restarted while its server is down serves the workload SVIDs it stored at once (the
//! workload, a `spiffe` crate client, has its SVID within a second), and the SVID rotates once
//! the server is back.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::types;
use signet_tests::agent_proc::{agent_config, bundle_roots, join_token};
use signet_tests::procs::{ServerProc, spawn, wait_for};
use signet_tests::{Options, uds_channel};
use spiffe::WorkloadApiClient;
use tokio_stream::StreamExt;

fn expiry(der: &[u8]) -> i64 {
    signet_common::x509::cert_info(der).unwrap().not_after
}

/// The workload's first X509-SVID (leaf DER), polling the socket until the agent answers.
async fn first_svid(socket: &Path, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(client) =
            WorkloadApiClient::connect_to(format!("unix:{}", socket.display())).await
            && let Ok(svid) = client.fetch_x509_svid().await
        {
            return svid.leaf().as_bytes().to_vec();
        }
        assert!(Instant::now() < deadline, "no SVID within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_while_the_server_is_down_serves_its_stored_svids_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProc::new(dir.path().join("server"), &Options::default());
    let port = server.port;
    let admin = server.socket();
    let agent_log = dir.path().join("agent.log");
    server.start().await;

    std::fs::write(
        dir.path().join("bootstrap.pem"),
        signet_common::pem::certificates(&bundle_roots(&admin).await),
    )
    .unwrap();
    let token = join_token(&admin).await;
    let agent_conf = dir.path().join("agent.conf");
    std::fs::write(
        &agent_conf,
        agent_config(dir.path(), port, r#"log_level = "DEBUG""#),
    )
    .unwrap();
    let agent_args = ["run", "--config", agent_conf.to_str().unwrap()];
    let mut with_token = agent_args.to_vec();
    with_token.extend(["--join-token", &token]);
    let mut agent = spawn("signet-agent", &with_token, &agent_log);
    let socket = dir.path().join("public/api.sock");
    wait_for(&socket, Duration::from_secs(20)).await;

    // A 20 s SVID for this test's uid, under the agent.
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let created = EntryClient::new(uds_channel(&admin).await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                spiffe_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/restarted".into(),
                }),
                parent_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: format!("/spire/agent/join_token/{token}"),
                }),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: format!("uid:{uid}"),
                }],
                x509_svid_ttl: 20,
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.results[0].status.as_ref().map(|s| s.code), Some(0));
    let before = first_svid(&socket, Duration::from_secs(10)).await;
    // Stored within the write interval.
    let stored = dir.path().join("agent/workload-svids.json");
    wait_for(&stored, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.kill9().await;
    agent.kill().await.unwrap();
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the stored workload SVIDs and keys are private"
    );

    // The agent alone: the workload has its SVID within a second.
    let _ = std::fs::remove_file(&socket);
    let restarted = Instant::now();
    let mut agent = spawn("signet-agent", &agent_args, &agent_log);
    let served = first_svid(&socket, Duration::from_secs(5)).await;
    let took = restarted.elapsed();
    println!("agent restarted with the server down: the workload had its SVID after {took:?}");
    assert_eq!(served, before, "the stored SVID is served");
    assert!(
        took < Duration::from_secs(1),
        "the workload waited {took:?} for its SVID"
    );

    // The server returns: the SVID rotates, before the stored one expires.
    server.start().await;
    let client = WorkloadApiClient::connect_to(format!("unix:{}", socket.display()))
        .await
        .unwrap();
    let mut updates = client.stream_x509_svids().await.unwrap();
    let old_expiry = expiry(&before);
    let rotated = tokio::time::timeout(Duration::from_secs(25), async {
        while let Some(Ok(svid)) = updates.next().await {
            let leaf = svid.leaf().as_bytes().to_vec();
            if leaf != before {
                return leaf;
            }
        }
        panic!("the stream ended");
    })
    .await
    .expect("the SVID rotated after the server came back");
    assert!(expiry(&rotated) > old_expiry, "a later SVID");
    let now = signet_common::clock::Clock::unix_now(&signet_common::clock::SystemClock);
    assert!(now < old_expiry, "rotated before the stored SVID expired");

    agent.kill().await.unwrap();
    server.kill9().await;
}
