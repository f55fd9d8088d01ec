use std::any::Any;
use std::sync::Arc;

use signet_common::id::{parse_id, parse_trust_domain};

use super::codec::PRESENT;
use super::entries::index_prefix;
use super::migrate::{LEGACY_DIR, SCHEMA_V1};
use super::*;
use crate::datastore::{suite, token_digest};

async fn fresh() -> (Arc<dyn DataStore>, Box<dyn Any + Send>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    (Arc::new(store), Box::new(dir))
}

/// An old-layout database at `path`, opened as the store opens its own: waiting for a lock
/// that sled's background thread of a just-dropped handle still holds.
fn open_legacy(path: &std::path::Path) -> sled::Db {
    open_db(&sled::Config::new().path(path)).unwrap()
}

fn sample_entry() -> RegistrationEntry {
    RegistrationEntry {
        id: "e1".into(),
        spiffe_id: parse_id("spiffe://example.org/web").unwrap(),
        parent_id: parse_id("spiffe://example.org/spire/agent/x/1").unwrap(),
        selectors: ["unix:uid:1000".parse().unwrap()].into_iter().collect(),
        x509_svid_ttl: 0,
        jwt_svid_ttl: 0,
        dns_names: vec![],
        federates_with: vec![],
        admin: false,
        downstream: false,
        hint: String::new(),
        expires_at: 0,
        revision_number: 0,
        created_at: 1,
        store_svid: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_store_passes_the_conformance_suite() {
    suite::run_all(fresh).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let td = parse_trust_domain("example.org").unwrap();
    let e = sample_entry();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.create_entry(e.clone()).await.unwrap();
        store
            .create_join_token(JoinToken {
                token: "t1".into(),
                expires_at: 9,
            })
            .await
            .unwrap();
        store.create_bundle(Bundle::new(td.clone())).await.unwrap();
        store.set_ca_journal("server", b"journal").await.unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.entry("e1").await.unwrap(), Some(e.clone()));
    assert_eq!(store.count_entries().await.unwrap(), 1, "counted at open");
    assert_eq!(
        store.entries_by_parent(&e.parent_id).await.unwrap(),
        vec![e.clone()]
    );
    assert_eq!(
        store
            .entries_by_selector(&"unix:uid:1000".parse().unwrap())
            .await
            .unwrap(),
        vec![e.clone()]
    );
    assert!(matches!(
        store
            .create_entry(RegistrationEntry {
                id: "e2".into(),
                ..e
            })
            .await,
        Err(StoreError::SimilarEntry(_))
    ));
    assert!(store.take_join_token("t1").await.unwrap().is_some());
    assert_eq!(store.bundle(&td).await.unwrap(), Some(Bundle::new(td)));
    assert_eq!(
        store.ca_journal("server").await.unwrap(),
        Some(b"journal".to_vec())
    );
}

/// Tells `writer_killed_after_acknowledgement` where to write (and that it is wanted).
const KILL_TEST_DIR: &str = "SIGNET_SLED_KILL_TEST_DIR";

#[tokio::test]
#[ignore = "child process of acknowledged_writes_survive_kill_9"]
async fn writer_killed_after_acknowledgement() {
    let Ok(dir) = std::env::var(KILL_TEST_DIR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let store = SledStore::open(&dir).unwrap();
    store.create_entry(sample_entry()).await.unwrap();
    store
        .create_join_token(JoinToken {
            token: "t1".into(),
            expires_at: 9,
        })
        .await
        .unwrap();
    store.set_ca_journal("server", b"journal").await.unwrap();
    std::fs::write(dir.join("acknowledged"), b"").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let name = "datastore::sled::tests::writer_killed_after_acknowledgement";
    let mut writer = KillOnDrop(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--ignored"])
            .env(KILL_TEST_DIR, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.path().join("acknowledged").exists() {
        assert!(
            writer.0.try_wait().unwrap().is_none(),
            "writer exited early"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "writer never acknowledged"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(writer); // SIGKILL, then reap
    let store = SledStore::open(dir.path()).unwrap();
    let e = sample_entry();
    assert_eq!(store.entry("e1").await.unwrap(), Some(e.clone()));
    assert_eq!(
        store.entries_by_spiffe_id(&e.spiffe_id).await.unwrap(),
        vec![e]
    );
    assert!(store.take_join_token("t1").await.unwrap().is_some());
    assert_eq!(
        store.ca_journal("server").await.unwrap(),
        Some(b"journal".to_vec())
    );
}

#[tokio::test]
async fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/c");
    SledStore::open(&nested).unwrap();
    assert!(nested.join(DB_DIR).is_dir());
}

#[tokio::test]
async fn open_refuses_an_unknown_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store.db.insert(SCHEMA_KEY, b"99".as_slice()).unwrap();
        store.flush().await.unwrap();
    }
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn stored_garbage_reads_as_corrupt_instead_of_panicking() {
    let (dir, e) = (tempfile::tempdir().unwrap(), sample_entry());
    let store = SledStore::open(dir.path()).unwrap();
    store.create_entry(e.clone()).await.unwrap();
    store.entries.insert("e1", b"{not json".as_slice()).unwrap();
    store
        .nodes
        .insert(e.spiffe_id.to_string().as_bytes(), b"\xff".as_slice())
        .unwrap();
    store
        .bundles
        .insert("example.org", b"[]".as_slice())
        .unwrap();
    store
        .by_selector
        .insert(
            index_prefix("a:1")
                .into_iter()
                .chain([0xff])
                .collect::<Vec<u8>>(),
            PRESENT,
        )
        .unwrap();
    let corrupt = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Corrupt(_)));
    assert!(corrupt(store.entry("e1").await.map(drop)));
    assert!(corrupt(store.list_entries().await.map(drop)));
    assert!(corrupt(
        store.entries_by_parent(&e.parent_id).await.map(drop)
    ));
    assert!(corrupt(
        store
            .entries_by_selector(&"a:1".parse().unwrap())
            .await
            .map(drop)
    ));
    assert!(corrupt(store.update_entry(e.clone()).await.map(drop)));
    assert!(corrupt(store.node(&e.spiffe_id).await.map(drop)));
    assert!(corrupt(store.list_bundles().await.map(drop)));
    let td = parse_trust_domain("example.org").unwrap();
    assert!(corrupt(
        store.update_bundle_with(&td, &mut |_| true).await.map(drop)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn shared_store_hands_a_join_token_to_exactly_one_of_eight_threads() {
    let (store, _dir) = fresh().await;
    store
        .create_join_token(JoinToken {
            token: "race".into(),
            expires_at: 9,
        })
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.take_join_token("race").await.unwrap().is_some()
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.unwrap());
    }
    assert_eq!(winners, 1);
}

#[test]
fn opening_waits_for_a_lock_that_is_released_shortly_after() {
    // A restarted server in the same process (or one whose predecessor is still exiting)
    // finds sled's directory lock held for a moment: opening waits instead of failing.
    let dir = tempfile::tempdir().unwrap();
    let held = db_config(&dir.path().join(DB_DIR), DEFAULT_CACHE_CAPACITY)
        .open()
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        drop(held);
    });
    let reopened = SledStore::open(dir.path());
    release.join().unwrap();
    assert!(reopened.is_ok(), "{:?}", reopened.err());
}

#[tokio::test]
async fn join_tokens_are_kept_as_digests_and_a_version_1_store_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    {
        // A store as release 1 wrote it: the token as key and in the record.
        let db = open_legacy(&dir.path().join(LEGACY_DIR));
        db.insert(SCHEMA_KEY, SCHEMA_V1).unwrap();
        let tokens = db.open_tree("join_tokens").unwrap();
        tokens
            .insert(
                b"old-token",
                br#"{"token":"old-token","expires_at":77}"#.as_slice(),
            )
            .unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    let new = JoinToken {
        token: "new-token".into(),
        expires_at: 99,
    };
    store.create_join_token(new.clone()).await.unwrap();
    for (key, value) in store.join_tokens.iter().map(Result::unwrap) {
        assert!(key.starts_with(token_digest::PREFIX.as_bytes()), "{key:?}");
        let text = String::from_utf8_lossy(&value);
        assert!(!text.contains("token\""), "no value in the record: {text}");
    }
    assert_eq!(store.db.get(SCHEMA_KEY).unwrap().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.take_join_token("new-token").await.unwrap(), Some(new));
    assert_eq!(
        store.take_join_token("old-token").await.unwrap(),
        Some(JoinToken {
            token: "old-token".into(),
            expires_at: 77
        })
    );
    assert_eq!(store.join_tokens.len(), 0);
}

mod migration;

/// sled 0.34's `flush_async` deadlocks when many writers flush at once (spacejam/sled#1308):
/// hundreds of concurrent acknowledged writes must all return, and all be readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_concurrent_flushing_writes_all_complete() {
    let (store, _dir) = fresh().await;
    let writers: Vec<_> = (0..400)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .create_join_token(JoinToken {
                        token: format!("token-{i}"),
                        expires_at: 9,
                    })
                    .await
            })
        })
        .collect();
    let all = async {
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
    };
    // A hang is the defect; a minute is far beyond any healthy disk.
    tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("concurrent flushing writes hung");
    for i in 0..400 {
        let token = format!("token-{i}");
        assert!(
            store.take_join_token(&token).await.unwrap().is_some(),
            "{token}"
        );
    }
}
