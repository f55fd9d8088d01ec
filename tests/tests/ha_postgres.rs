//! Several signet-servers on one real PostgreSQL (a throwaway cluster per test): one bundle
//! with every server's roots, join tokens used once across servers, entries written through
//! one server read through the other; and the start-up refusals of a bad database.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use signet_common::clock::SystemClock;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{BatchCreateEntryRequest, ListEntriesRequest};
use signet_proto::types;
use signet_server::config::{Config, RunArgs};
use signet_server::datastore::postgres::testing::PgCluster;
use signet_server::run::Server;
use signet_tests::{Options, TestServer, postgres_datastore};
use tonic::Code;

async fn server_on(connection_string: &str) -> TestServer {
    TestServer::start(Options {
        datastore: Some(postgres_datastore(connection_string)),
        ..Options::default()
    })
    .await
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
