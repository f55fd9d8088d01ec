use std::any::Any;
use std::sync::Arc;

use super::testing::PgCluster;
use super::*;
use crate::datastore::suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store_passes_the_conformance_suite() {
    let cluster = Arc::new(PgCluster::start());
    suite::run_all(|| {
        let cluster = cluster.clone();
        async move {
            let url = cluster.create_database().await;
            let store = PgStore::connect(&PgOptions::new(url)).await.unwrap();
            (
                Arc::new(store) as Arc<dyn DataStore>,
                Box::new(()) as Box<dyn Any + Send>,
            )
        }
    })
    .await;
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused_and_left_alone() {
    let cluster = PgCluster::start();
    let url = cluster.create_database().await;
    PgStore::connect(&PgOptions::new(url.clone()))
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute("UPDATE signet_schema SET version = version + 1", &[])
        .await
        .unwrap();
    let err = PgStore::connect(&PgOptions::new(url)).await.unwrap_err();
    assert!(matches!(err, StoreError::Schema(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("version {}", SCHEMA_VERSION + 1)) && msg.contains("upgrade"),
        "{msg}"
    );
    let row = client
        .query_one("SELECT version FROM signet_schema", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), SCHEMA_VERSION + 1, "nothing changed");
}

#[tokio::test]
async fn migrations_run_once_and_disable_migration_refuses_an_empty_database() {
    let cluster = PgCluster::start();
    let url = cluster.create_database().await;
    let mut off = PgOptions::new(url.clone());
    off.migrate = false;
    let err = PgStore::connect(&off).await.unwrap_err().to_string();
    assert!(err.contains("disable_migration"), "{err}");
    // Two servers starting at once: both end on the current schema, the records intact.
    let on = PgOptions::new(url.clone());
    let (a, b) = tokio::join!(PgStore::connect(&on), PgStore::connect(&on));
    let (a, _b) = (a.unwrap(), b.unwrap());
    a.set_ca_journal("server-a", b"j").await.unwrap();
    let again = PgStore::connect(&off).await.unwrap();
    assert_eq!(
        again.ca_journal("server-a").await.unwrap(),
        Some(b"j".to_vec())
    );
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("host={} port=1 user=signet dbname=x", dir.path().display());
    let started = std::time::Instant::now();
    let err = PgStore::connect(&PgOptions::new(url)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string().contains("cannot connect to PostgreSQL at"),
        "{err}"
    );
    assert!(started.elapsed() < connect::CONNECT_TIMEOUT * 2);
}

#[tokio::test]
async fn a_restarted_database_is_unavailable_then_recovers_by_itself() {
    let cluster = PgCluster::start();
    let url = cluster.create_database().await;
    let store = PgStore::connect(&PgOptions::new(url)).await.unwrap();
    store.set_ca_journal("k", b"1").await.unwrap();
    cluster.stop();
    let err = store.ca_journal("k").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    cluster.start_again();
    let mut last = None;
    for _ in 0..50 {
        match store.ca_journal("k").await {
            Ok(v) => {
                assert_eq!(v, Some(b"1".to_vec()));
                return;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never recovered: {last:?}");
}
