//! Two `signet-server` processes on one real PostgreSQL, one killed with SIGKILL while
//! entries are created through both: every acknowledged entry is still there, the agent
//! (configured with both servers) moves to the survivor, keeps its SVIDs and its push, and a
//! watching `spiffe` crate client never holds an expired SVID.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use signet_agent::run::Agent;
use signet_common::clock::{Clock, SystemClock, from_unix_seconds};
use signet_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{BatchCreateEntryRequest, ListEntriesRequest};
use signet_proto::types;
use signet_server::datastore::postgres::testing::PgCluster;
use signet_tests::agent::parse;
use signet_tests::procs::ServerProc;
use signet_tests::{Options, postgres_datastore, uds_channel};
use spiffe::WorkloadApiClient;
use tokio_stream::StreamExt;

/// What the workload received: when, and each SVID's SPIFFE ID and NotAfter.
type Updates = Arc<Mutex<Vec<(SystemTime, Vec<(String, SystemTime)>)>>>;

fn entry(path: &str, parent: &str, selector: &str, ttl: i32) -> types::Entry {
    types::Entry {
        spiffe_id: Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: path.into(),
        }),
        parent_id: Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: parent.into(),
        }),
        selectors: vec![types::Selector {
            r#type: "unix".into(),
            value: selector.into(),
        }],
        x509_svid_ttl: ttl,
        ..Default::default()
    }
}

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
    let opts = Options {
        datastore: Some(postgres_datastore(&db)),
        ..Options::default()
    };
    let mut a = ServerProc::new(dir.path().join("a"), &opts);
    let mut b = ServerProc::new(dir.path().join("b"), &opts);
    a.start().await;
    b.start().await;

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
    let d = dir.path().display();
    let text = format!(
        r#"
agent {{
    data_dir = "{d}/agent"
    server_address = "127.0.0.1"
    server_port = {}
    server_addresses = ["127.0.0.1:{}"]
    socket_path = "{d}/public/api.sock"
    trust_domain = "example.org"
    trust_bundle_path = "{d}/bootstrap.pem"
    log_level = "DEBUG"
    experimental {{
        sync_interval = "1h"
    }}
}}
plugins {{
    KeyManager "disk" {{
        plugin_data {{
            directory = "{d}/agent/keys"
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
}}
"#,
        a.port, b.port
    );
    let token = AgentClient::new(uds_channel(&a.socket()).await)
        .create_join_token(CreateJoinTokenRequest {
            ttl: 600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .value;
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
    let updates: Updates = Arc::default();
    {
        let socket = format!("unix:{}", agent.socket_path.display());
        let updates = Arc::clone(&updates);
        tokio::spawn(async move {
            loop {
                if let Ok(client) = WorkloadApiClient::connect_to(&socket).await
                    && let Ok(mut stream) = client.stream_x509_contexts().await
                {
                    while let Some(Ok(ctx)) = stream.next().await {
                        let svids = ctx
                            .svids()
                            .iter()
                            .map(|s| {
                                let info =
                                    signet_common::x509::cert_info(s.leaf().as_bytes()).unwrap();
                                (info.id.to_string(), from_unix_seconds(info.not_after))
                            })
                            .collect();
                        updates.lock().unwrap().push((SystemClock.now(), svids));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while updates.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the workload never got its SVID");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watch_from = SystemClock.now();

    // Entries created through both servers, as fast as they answer.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut writers = vec![];
    for (name, socket) in [("a", a.socket()), ("b", b.socket())] {
        let (stop, acked) = (Arc::clone(&stop), Arc::clone(&acked));
        writers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let e = entry(
                    &format!("/load/{name}/{i}"),
                    "/spire/agent/elsewhere",
                    "uid:1",
                    0,
                );
                match create(&socket, e).await {
                    Some(id) => {
                        acked.lock().unwrap().insert(id);
                        ok += 1;
                    }
                    None => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (name, ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.kill9().await;
    let killed = Instant::now();
    assert!(!uds_alive(&a.socket()), "A is dead");

    // Through B, a new identity for the workload: it arrives by B's push (no polling).
    create(&b.socket(), entry("/after-failover", &parent, &me, 10))
        .await
        .unwrap();
    let arrived = loop {
        let seen = updates
            .lock()
            .unwrap()
            .iter()
            .any(|(_, s)| s.iter().any(|(id, _)| id.ends_with("/after-failover")));
        if seen {
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
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let (name, ok, failed) = w.await.unwrap();
        println!("writer through {name}: {ok} entries acknowledged, {failed} failed");
    }

    let mut listed = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let resp = EntryClient::new(uds_channel(&b.socket()).await)
            .list_entries(ListEntriesRequest {
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed.extend(resp.entries.into_iter().map(|e| e.id));
        if resp.next_page_token.is_empty() {
            break;
        }
        page_token = resp.next_page_token;
    }
    let acked = acked.lock().unwrap().clone();
    let missing: Vec<_> = acked.difference(&listed).collect();
    println!(
        "{} acknowledged entries, {} missing after A's death",
        acked.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged entries lost: {missing:?}");

    // The workload never held an expired /ha SVID, and got a new one after A died.
    let updates = updates.lock().unwrap().clone();
    let ha: Vec<(SystemTime, SystemTime)> = updates
        .iter()
        .filter_map(|(t, s)| {
            s.iter()
                .find(|(id, _)| id.ends_with("/ha"))
                .map(|(_, e)| (*t, *e))
        })
        .collect();
    let end = SystemClock.now();
    let mut expired = Duration::ZERO;
    for (i, (got, expiry)) in ha.iter().enumerate() {
        let until = ha.get(i + 1).map_or(end, |(t, _)| *t);
        if let Ok(d) = until.duration_since((*got).max(*expiry).max(watch_from)) {
            expired += d;
        }
    }
    let expiries: BTreeSet<_> = ha.iter().map(|(_, e)| *e).collect();
    println!(
        "the workload saw {} /ha SVIDs, expired for {} ms",
        expiries.len(),
        expired.as_millis()
    );
    assert!(
        expiries.len() >= 3,
        "the SVID rotated through B: {expiries:?}"
    );
    assert_eq!(expired, Duration::ZERO, "the workload held an expired SVID");
    agent.shutdown().await.unwrap();
    b.kill9().await;
}
