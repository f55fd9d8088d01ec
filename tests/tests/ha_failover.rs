//! Two `signet-server` processes on one real PostgreSQL, one killed with SIGKILL while
//! entries are created through both: every acknowledged entry is still there, the agent
//! (configured with both servers) moves to the survivor, keeps its SVIDs and its push, and a
//! watching `spiffe` crate client never holds an expired SVID.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_agent::run::Agent;
use signet_common::clock::{Clock, SystemClock};
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::types;
use signet_server::datastore::postgres::testing::PgCluster;
use signet_tests::agent::parse;
use signet_tests::agent_proc::join_token;
use signet_tests::ha::{
    CreateLoad, agent_text, entry, expired_for, listed_entry_ids, seen, two_servers, watch_x509,
};
use signet_tests::uds_channel;

/// Creates one entry through the admin socket; its ID if the server said it was created.
async fn create(socket: &std::path::Path, e: types::Entry) -> Option<String> {
    let call = async {
        let resp = EntryClient::new(try_uds(socket).await?)
            .batch_create_entry(BatchCreateEntryRequest {
                entries: vec![e],
                output_mask: None,
            })
            .await
            .ok()?
            .into_inner();
        let r = resp.results.into_iter().next()?;
        (r.status.as_ref().map(|s| s.code) == Some(0)).then(|| r.entry.unwrap().id)
    };
    // A dead server's socket file remains; connecting to it fails at once.
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .ok()?
}

/// A channel to an admin socket, or `None` if nothing listens there.
async fn try_uds(socket: &std::path::Path) -> Option<tonic::transport::Channel> {
    let path = socket.to_path_buf();
    tonic::transport::Endpoint::try_from("http://localhost")
        .ok()?
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .ok()
}

fn uds_alive(socket: &std::path::Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_servers_loses_no_entry_and_the_agent_moves_to_the_other() {
    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = two_servers(&db, dir.path()).await;

    // The agent trusts the shared bundle (both roots) and knows both servers, A first.
    let bundle = signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient::new(
        uds_channel(&b.socket()).await,
    )
    .get_bundle(signet_proto::spire::api::server::bundle::v1::GetBundleRequest::default())
    .await
    .unwrap()
    .into_inner();
    assert_eq!(bundle.x509_authorities.len(), 2, "both servers' roots");
    let roots: Vec<Vec<u8>> = bundle
        .x509_authorities
        .into_iter()
        .map(|a| a.asn1)
        .collect();
    std::fs::write(
        dir.path().join("bootstrap.pem"),
        signet_common::pem::certificates(&roots),
    )
    .unwrap();
    let text = agent_text(dir.path(), "agent", a.port, &[b.port]);
    let token = join_token(&a.socket()).await;
    let agent = Agent::start(parse(&text, Some(&token)), Arc::new(SystemClock))
        .await
        .unwrap();
    let parent = format!("/spire/agent/join_token/{token}");
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let me = format!("uid:{uid}");
    create(&a.socket(), entry("/ha", &parent, &me, 10))
        .await
        .unwrap();

    // The workload watches its X509 context from the start.
    let updates = watch_x509(&agent.socket_path);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !seen(&updates, "/ha") {
        assert!(Instant::now() < deadline, "the workload never got its SVID");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watch_from = SystemClock.now();

    // Entries created through both servers, as fast as they answer.
    let load = CreateLoad::start(
        vec![("a", a.socket()), ("b", b.socket())],
        |socket, e| async move { create(&socket, e).await.ok_or(()) },
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.kill9().await;
    let killed = Instant::now();
    assert!(!uds_alive(&a.socket()), "A is dead");

    // Through B, a new identity for the workload: it arrives by B's push (no polling).
    create(&b.socket(), entry("/after-failover", &parent, &me, 10))
        .await
        .unwrap();
    let arrived = loop {
        if seen(&updates, "/after-failover") {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the entry created through B never reached the workload"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("A killed: an entry created through B reached the workload {arrived:?} later");

    // Long enough for the 10 s SVIDs to rotate through B.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (acked, _) = load.stop().await;
    let listed = listed_entry_ids(&b.socket()).await;
    let missing: Vec<_> = acked.difference(&listed).collect();
    println!(
        "{} acknowledged entries, {} missing after A's death",
        acked.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged entries lost: {missing:?}");

    // The workload never held an expired /ha SVID, and got a new one after A died.
    let (svids, expired) = expired_for(&updates, "/ha", watch_from);
    println!(
        "the workload saw {} /ha SVIDs, expired for {} ms",
        svids,
        expired.as_millis()
    );
    assert!(svids >= 3, "the SVID rotated through B: {svids} SVIDs");
    assert_eq!(expired, Duration::ZERO, "the workload held an expired SVID");
    agent.shutdown().await.unwrap();
    b.kill9().await;
}
