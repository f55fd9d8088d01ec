//! Several signet-servers on one real PostgreSQL (a throwaway cluster per test): one bundle
//! with every server's roots, join tokens used once across servers, entries written through
//! one server read through the other; and the start-up refusals of a bad database.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_agent::run::Agent;
use signet_tests::agent::{Setup, svid_id, until};

use signet_common::clock::SystemClock;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{BatchCreateEntryRequest, ListEntriesRequest};
use signet_proto::types;
use signet_server::config::{Config, RunArgs};
use signet_server::datastore::postgres::testing::PgCluster;
use signet_server::run::Server;
use signet_tests::agent_proc::bundle_roots;
use signet_tests::ha::two_servers;
use signet_tests::{Options, TestServer, postgres_datastore};
use tonic::Code;

async fn server_on(connection_string: &str) -> TestServer {
    server_with(connection_string, &[]).await
}

async fn server_with(connection_string: &str, lines: &[&str]) -> TestServer {
    TestServer::start(Options {
        datastore: Some(postgres_datastore(connection_string)),
        server_lines: lines.iter().map(|l| (*l).to_owned()).collect(),
        ..Options::default()
    })
    .await
}

/// An agent directory for `server`, trusting the shared bundle.
async fn setup(server: TestServer) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pem = signet_common::pem::certificates(&server.roots().await);
    std::fs::write(dir.path().join("bootstrap.pem"), pem).unwrap();
    Setup { server, dir }
}

/// Whether `leaf` (DER) is signed by one of `roots`.
fn signed_by_one_of(leaf: &[u8], roots: &[Vec<u8>]) -> bool {
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf).unwrap();
    roots.iter().any(|root| {
        let (_, root) = x509_parser::parse_x509_certificate(root).unwrap();
        leaf.issuer().as_raw() == root.subject().as_raw()
            && signet_common::sigcheck::verify_cert(&leaf, root.public_key()).is_ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_created_through_b_reaches_a_workload_under_a_and_a_ban_on_b_shuts_it_out() {
    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let a = setup(server_on(&db).await).await;
    let b = setup(server_on(&db).await).await;
    let mut agent = a.agent("experimental {\n sync_interval = \"1s\"\n }").await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(5), |s| s.synced).await;

    let started = Instant::now();
    let entry = b.create_entry(&agent.agent_id, "/web").await;
    let snap = until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    println!(
        "entry created on B reached the agent on A in {:?}",
        started.elapsed()
    );
    assert_eq!(
        svid_id(&snap, &entry).as_deref(),
        Some("spiffe://example.org/web")
    );
    // The SVID comes from A and verifies with the bundle served by B.
    let leaf = &snap.svids[&entry].chain[0];
    let own_a = a.server.server().state.ca.active_x509_ca_der().unwrap();
    assert!(signed_by_one_of(leaf, &[own_a]), "signed by A's CA");
    assert!(
        signed_by_one_of(leaf, &b.server.roots().await),
        "verifies with B's bundle"
    );

    b.ban(&agent.agent_id).await;
    let reason = tokio::time::timeout(Duration::from_secs(10), agent.stopped())
        .await
        .expect("a ban on B stops the agent connected to A");
    assert!(reason.contains("banned"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_attested_through_a_syncs_and_renews_through_b() {
    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let a = setup(server_with(&db, &["agent_ttl = \"6s\""]).await).await;
    let b = server_with(&db, &["agent_ttl = \"6s\""]).await;
    let token = a.server.join_token(600).await;
    let first = Agent::start(a.config(Some(&token), ""), Arc::new(SystemClock))
        .await
        .unwrap();
    let id = first.agent_id.clone();
    first.shutdown().await.unwrap();
    let entry = a.create_entry(&id, "/db").await;

    // The same agent, restarted against B with no token: its SVID from A is accepted.
    let agent = Agent::start(
        a.config_via(b.server().tcp_addr.port(), None, ""),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    assert_eq!(agent.agent_id, id);
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let own_b = b.server().state.ca.active_x509_ca_der().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = agent.identity.current();
        if signed_by_one_of(&current.chain[0], std::slice::from_ref(&own_b)) {
            assert_eq!(current.id, id);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent SVID was never renewed through B"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_bundle_and_the_join_tokens() {
    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let a = server_on(&db).await;
    let b = server_on(&db).await;

    // Each server has its own CA; the one bundle carries both roots.
    let (roots_a, roots_b) = (a.roots().await, b.roots().await);
    assert_eq!(roots_a.len(), 2, "both servers' roots");
    assert_eq!(sorted(roots_a), sorted(roots_b.clone()));
    let own_a = a.server().state.ca.active_x509_ca_der().unwrap();
    let own_b = b.server().state.ca.active_x509_ca_der().unwrap();
    assert_ne!(own_a, own_b, "one CA per server");
    assert!(roots_b.contains(&own_a) && roots_b.contains(&own_b));

    // A token made on A attests once, through B; A then refuses it.
    let token = a.join_token(600).await;
    let agent = b.attest(&token).await.expect("attests through B");
    assert!(agent.id.to_string().ends_with(&token));
    let again = a.attest(&token).await.expect_err("used on B");
    assert_eq!(again.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_server_keeps_its_own_ca_journal_and_resumes_its_ca_after_a_restart() {
    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = two_servers(&db, dir.path()).await;
    let mut before = bundle_roots(&b.socket()).await;
    before.sort();
    assert_eq!(before.len(), 2, "both servers' roots");
    // Restarted, each loads its own journal: the same CA, no new root in the bundle.
    for (name, server) in [("A", &mut a), ("B", &mut b)] {
        server.kill9().await;
        server.start().await;
        let mut after = bundle_roots(&server.socket()).await;
        after.sort();
        assert_eq!(after, before, "{name} resumed its own CA after a restart");
    }
    for server in [&a, &b] {
        let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap();
        assert!(
            !log.contains("Dropping journal entry"),
            "a server read another's CA journal:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_created_through_one_server_is_listed_by_the_other() {
    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let a = server_on(&db).await;
    let b = server_on(&db).await;
    let created = EntryClient::new(b.admin().await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                spiffe_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/web".into(),
                }),
                parent_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/spire/agent/x".into(),
                }),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: "uid:1".into(),
                }],
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0)
        .entry
        .unwrap();
    let listed = EntryClient::new(a.admin().await)
        .list_entries(ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(listed, vec![created]);
}

/// Starts a server on `datastore` and returns its error (it must refuse).
async fn refusal(datastore: String) -> String {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        datastore: Some(datastore),
        ..Options::default()
    };
    let config = Config::parse(
        &TestServer::config_text(dir.path(), &opts),
        "test.conf",
        &RunArgs::default(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = match Server::start(config, Arc::new(SystemClock)).await {
        Ok(_) => panic!("started on a bad database"),
        Err(e) => format!("{e:#}"),
    };
    assert!(started.elapsed().as_secs() < 15, "refused promptly");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_database_is_refused_with_one_clear_line() {
    let err = refusal(postgres_datastore("host=/nonexistent nonsense=1")).await;
    assert!(err.contains("connection_string"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let unreachable = format!("host={} port=1 user=signet dbname=x", dir.path().display());
    let err = refusal(postgres_datastore(&unreachable)).await;
    assert!(err.contains("cannot connect to PostgreSQL at"), "{err}");

    let cluster = PgCluster::start();
    let db = cluster.create_database().await;
    let mut a = server_on(&db).await;
    a.stop().await;
    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute("UPDATE signet_schema SET version = version + 1", &[])
        .await
        .unwrap();
    let err = refusal(postgres_datastore(&db)).await;
    assert!(err.contains("newer than this signet-server"), "{err}");
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}
