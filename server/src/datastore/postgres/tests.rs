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

#[tokio::test]
async fn every_change_is_logged_in_commit_order_and_pruning_is_detected() {
    let cluster = PgCluster::start();
    let url = cluster.create_database().await;
    let store = PgStore::connect(&PgOptions::new(url)).await.unwrap();
    let mut signal = store.change_signal().unwrap();
    let start = store.change_position().await.unwrap().unwrap();
    let td = signet_common::id::parse_trust_domain("example.org").unwrap();
    store.set_bundle(Bundle::new(td.clone())).await.unwrap();
    let node = AttestedNode {
        spiffe_id: signet_common::id::parse_id("spiffe://example.org/spire/agent/x/1").unwrap(),
        attestation_type: "join_token".into(),
        serial: "01".into(),
        expires_at: 2_000,
        new_serial: String::new(),
        new_expires_at: 0,
        can_reattest: false,
        selectors: vec![],
        agent_version: String::new(),
    };
    store.put_node(node.clone()).await.unwrap();
    store.delete_node(&node.spiffe_id).await.unwrap();
    // A failed write logs nothing.
    assert!(store.delete_node(&node.spiffe_id).await.is_err());
    let Changes::Rows(rows) = store.changes_after(start, 100).await.unwrap() else {
        panic!("not pruned");
    };
    let got: Vec<(ChangeKind, &str)> = rows
        .iter()
        .map(|c| (c.kind.clone(), c.key.as_str()))
        .collect();
    let agent = "spiffe://example.org/spire/agent/x/1";
    assert_eq!(
        got,
        [
            (ChangeKind::Bundle, "example.org"),
            (ChangeKind::Node, agent),
            (ChangeKind::Node, agent)
        ]
    );
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    tokio::time::timeout(std::time::Duration::from_secs(5), signal.changed())
        .await
        .expect("NOTIFY arrives")
        .unwrap();
    assert_eq!(
        store
            .prune_changes(std::time::Duration::ZERO)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store.changes_after(start, 100).await.unwrap(),
        Changes::Pruned
    );
    let now = store.change_position().await.unwrap().unwrap();
    assert_eq!(
        store.changes_after(now, 100).await.unwrap(),
        Changes::Rows(vec![])
    );
}

fn bench_entry(n: usize) -> RegistrationEntry {
    let id = |s: String| signet_common::id::parse_id(&s).unwrap();
    RegistrationEntry::new(
        format!("e{n:07}"),
        id(format!("spiffe://example.org/w/{n}")),
        id(format!("spiffe://example.org/spire/agent/x/{}", n % 100)),
        [format!("unix:uid:{n}").parse().unwrap()]
            .into_iter()
            .collect(),
    )
}

async fn creates_per_second(store: &dyn DataStore, n: usize) -> f64 {
    let started = std::time::Instant::now();
    for i in 0..n {
        store.create_entry(bench_entry(i)).await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Benchmark (figures, no assertion on time): entry creation throughput on PostgreSQL and
/// sled, and a cold start (index load) over 100k entries on PostgreSQL.
/// `cargo test -p signet-server --lib bench_ -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn bench_create_throughput_and_cold_start() {
    let cluster = PgCluster::start();
    let url = cluster.create_database().await;
    let pg = PgStore::connect(&PgOptions::new(url.clone()))
        .await
        .unwrap();
    let (sled, _dir) = crate::datastore::testing::temp_sled();
    let n = 2_000;
    println!("create_entry, sequential, {n} entries:");
    println!("  postgres: {:.0}/s", creates_per_second(&pg, n).await);
    println!(
        "  sled:     {:.0}/s",
        creates_per_second(sled.as_ref(), n).await
    );

    // 100k entries written in bulk straight into the tables, then a server's index load.
    let total = 100_000;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for chunk in (n..total).collect::<Vec<_>>().chunks(5_000) {
        let entries: Vec<RegistrationEntry> = chunk.iter().map(|i| bench_entry(*i)).collect();
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        let spiffe: Vec<String> = entries.iter().map(|e| e.spiffe_id.to_string()).collect();
        let parent: Vec<String> = entries.iter().map(|e| e.parent_id.to_string()).collect();
        let sim: Vec<Vec<u8>> = entries.iter().map(similarity_key).collect();
        let data: Vec<Vec<u8>> = entries.iter().map(|e| encode(e).unwrap()).collect();
        client
            .execute(
                "INSERT INTO registration_entries (id, spiffe_id, parent_id, similarity, expires_at, data)
                 SELECT a, b, c, s, 0, d FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[]) AS t(a, b, c, s, d)",
                &[&ids, &spiffe, &parent, &sim, &data],
            )
            .await
            .unwrap();
    }
    let store: Arc<dyn DataStore> = Arc::new(PgStore::connect(&PgOptions::new(url)).await.unwrap());
    let td = signet_common::id::parse_trust_domain("example.org").unwrap();
    let started = std::time::Instant::now();
    let registry = crate::registry::Registry::load(store, &td).await.unwrap();
    println!(
        "cold start: index of {total} entries loaded from PostgreSQL in {:?}",
        started.elapsed()
    );
    assert!(registry.is_shared());
}

#[tokio::test]
async fn join_tokens_are_kept_as_digests_and_clear_ones_are_migrated() {
    let cluster = PgCluster::start();
    let url = cluster.create_database().await;
    let store = PgStore::connect(&PgOptions::new(url.clone()))
        .await
        .unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    store
        .create_join_token(JoinToken {
            token: "new-token".into(),
            expires_at: 99,
        })
        .await
        .unwrap();
    // A row as schema 3 kept it (in the clear), and the schema put back to 3.
    client
        .batch_execute(
            "INSERT INTO join_tokens (token, expires_at) VALUES ('old-token', 77);
             UPDATE signet_schema SET version = 3",
        )
        .await
        .unwrap();
    drop(store);
    let store = PgStore::connect(&PgOptions::new(url)).await.unwrap();
    let rows = client
        .query("SELECT token FROM join_tokens ORDER BY token", &[])
        .await
        .unwrap();
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stored.len(), 2);
    for t in &stored {
        assert!(t.starts_with(crate::datastore::token_digest::PREFIX), "{t}");
    }
    assert_eq!(
        store.take_join_token("old-token").await.unwrap(),
        Some(JoinToken {
            token: "old-token".into(),
            expires_at: 77
        })
    );
    assert!(store.take_join_token("new-token").await.unwrap().is_some());
}

/// A CA (PEM) and, signed by it, a server certificate for DNS name `host` and its key (PEM).
fn ca_and_server_cert(host: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![host.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn tls_to_the_database_checks_the_server_as_libpq_does() {
    let (ca, cert, key) = ca_and_server_cert("db.internal");
    let (other_ca, _, _) = ca_and_server_cert("db.internal");
    let cluster = PgCluster::start_tls(&cert, &key);
    let unix = cluster.create_database().await;
    let dbname = unix.rsplit("dbname=").next().unwrap().to_owned();
    let files = tempfile::tempdir().unwrap();
    let ca_file = files.path().join("ca.pem");
    let other_file = files.path().join("other.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    std::fs::write(&other_file, &other_ca).unwrap();
    let url = |host: &str, rest: String| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user=signet dbname={dbname} {rest}",
            cluster.port()
        )
    };
    let root = |path: &std::path::Path| format!("sslrootcert={}", path.display());

    // Accepted: each connection is encrypted (pg_stat_ssl says so for its own backend).
    for (what, s) in [
        ("require", url("localhost", "sslmode=require".into())),
        (
            "verify-ca, host name not checked",
            url("localhost", format!("sslmode=verify-ca {}", root(&ca_file))),
        ),
        (
            "verify-full, name and chain",
            url(
                "db.internal",
                format!("sslmode=verify-full {}", root(&ca_file)),
            ),
        ),
    ] {
        let store = PgStore::connect(&PgOptions::new(s))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let client = store.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "{what}: not encrypted");
    }

    // Refused, each naming the database and why.
    for (what, s, why) in [
        (
            "verify-full, wrong host name",
            url(
                "localhost",
                format!("sslmode=verify-full {}", root(&ca_file)),
            ),
            "not valid for name",
        ),
        (
            "verify-ca, another CA",
            url(
                "db.internal",
                format!("sslmode=verify-ca {}", root(&other_file)),
            ),
            "invalid peer certificate",
        ),
    ] {
        let err = PgStore::connect(&PgOptions::new(s))
            .await
            .expect_err(what)
            .to_string();
        assert!(
            err.contains("cannot connect to") && err.to_lowercase().contains(why),
            "{what}: {err}"
        );
    }
}
