//! A schema 2 store (JSON records, length-prefixed index keys, sled's default segments), as
//! the previous release wrote it, opened by this one.

use signet_common::id::{parse_id, parse_trust_domain};
use signet_common::node::AttestedNode;

use super::super::migrate::{LEGACY_DIR, SCHEMA_V2};
use super::*;
use crate::datastore::codec::{encode, length_prefixed, similarity_key};

fn entries() -> Vec<RegistrationEntry> {
    let parent = "spiffe://example.org/spire/agent/join_token/t";
    (0..2500)
        .map(|i| RegistrationEntry {
            id: format!("entry-{i:05}"),
            spiffe_id: parse_id(&format!("spiffe://example.org/w/{}", i % 700)).unwrap(),
            parent_id: parse_id(parent).unwrap(),
            selectors: [
                format!("unix:uid:{i}").parse().unwrap(),
                "k8s:ns:a".parse().unwrap(),
            ]
            .into_iter()
            .collect(),
            x509_svid_ttl: i,
            jwt_svid_ttl: 7,
            dns_names: if i % 2 == 0 {
                vec![format!("w{i}.example.org")]
            } else {
                vec![]
            },
            federates_with: vec!["other.org".into()],
            admin: i % 3 == 0,
            downstream: i % 5 == 0,
            hint: format!("hint {i}"),
            expires_at: i64::from(i) * 10,
            revision_number: 3,
            created_at: 1_700_000_000,
            store_svid: i % 7 == 0,
        })
        .collect()
}

fn node() -> AttestedNode {
    AttestedNode {
        spiffe_id: parse_id("spiffe://example.org/spire/agent/join_token/t").unwrap(),
        attestation_type: "join_token".into(),
        serial: "1".into(),
        expires_at: 2_000,
        new_serial: String::new(),
        new_expires_at: 0,
        can_reattest: false,
        selectors: vec!["join_token:abc".parse().unwrap()],
        agent_version: "0.1.0".into(),
    }
}

/// Writes `entries` and one record of every other kind the way release 2 did.
fn write_v2(dir: &std::path::Path, entries: &[RegistrationEntry]) {
    let db = open_legacy(&dir.join(LEGACY_DIR));
    db.insert(SCHEMA_KEY, SCHEMA_V2).unwrap();
    let tree = |name: &str| db.open_tree(name).unwrap();
    let index_key = |value: &str, id: &str| {
        let mut key = length_prefixed(value);
        key.extend_from_slice(id.as_bytes());
        key
    };
    for e in entries {
        tree("entries")
            .insert(e.id.as_bytes(), encode(e).unwrap())
            .unwrap();
        tree("entries_by_parent")
            .insert(index_key(&e.parent_id.to_string(), &e.id), PRESENT)
            .unwrap();
        tree("entries_by_spiffe_id")
            .insert(index_key(&e.spiffe_id.to_string(), &e.id), PRESENT)
            .unwrap();
        for s in e.selectors.iter() {
            tree("entries_by_selector")
                .insert(index_key(&s.to_string(), &e.id), PRESENT)
                .unwrap();
        }
        tree("entries_by_similarity")
            .insert(similarity_key(e), e.id.as_bytes())
            .unwrap();
    }
    let n = node();
    tree("nodes")
        .insert(n.spiffe_id.to_string().as_bytes(), encode(&n).unwrap())
        .unwrap();
    let td = parse_trust_domain("example.org").unwrap();
    tree("bundles")
        .insert("example.org", encode(&Bundle::new(td)).unwrap())
        .unwrap();
    tree("join_tokens")
        .insert(
            join_token_digest("tok").as_bytes(),
            br#"{"expires_at":77}"#.as_slice(),
        )
        .unwrap();
    tree("ca_journals")
        .insert("server", b"journal".as_slice())
        .unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn a_schema_2_store_is_migrated_and_every_record_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let written = entries();
    write_v2(dir.path(), &written);

    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.db.get(SCHEMA_KEY).unwrap().unwrap(), SCHEMA_VERSION);
    assert!(
        dir.path().join(LEGACY_DIR).is_file(),
        "the old directory is replaced"
    );
    assert_eq!(store.list_entries().await.unwrap(), written);
    assert_eq!(store.count_entries().await.unwrap(), 2500);
    for e in written.iter().step_by(97) {
        assert_eq!(store.entry(&e.id).await.unwrap().as_ref(), Some(e));
        let same_id: Vec<_> = written
            .iter()
            .filter(|w| w.spiffe_id == e.spiffe_id)
            .cloned()
            .collect();
        assert_eq!(
            store.entries_by_spiffe_id(&e.spiffe_id).await.unwrap(),
            same_id
        );
        let own = e.selectors.iter().find(|s| s.kind() == "unix").unwrap();
        assert_eq!(
            store.entries_by_selector(own).await.unwrap(),
            vec![e.clone()]
        );
        let similar = RegistrationEntry {
            id: "new".into(),
            ..e.clone()
        };
        assert!(matches!(
            store.create_entry(similar).await,
            Err(StoreError::SimilarEntry(found)) if found.id == e.id
        ));
    }
    let parent = &written[0].parent_id;
    assert_eq!(store.entries_by_parent(parent).await.unwrap().len(), 2500);
    let page = store
        .entries_page(EntryScan::Parent(parent), "entry-01000", 3)
        .await
        .unwrap();
    assert_eq!(page, written[1001..1004].to_vec());
    assert_eq!(store.node(&node().spiffe_id).await.unwrap(), Some(node()));
    let td = parse_trust_domain("example.org").unwrap();
    assert_eq!(store.bundle(&td).await.unwrap(), Some(Bundle::new(td)));
    assert_eq!(
        store.ca_journal("server").await.unwrap(),
        Some(b"journal".to_vec())
    );
    assert_eq!(
        store.take_join_token("tok").await.unwrap(),
        Some(JoinToken {
            token: "tok".into(),
            expires_at: 77
        })
    );

    // Reopened: nothing is migrated again and everything is still there.
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.list_entries().await.unwrap(), written);
}

#[tokio::test]
async fn a_copy_cut_short_is_made_again_from_the_untouched_old_store() {
    let dir = tempfile::tempdir().unwrap();
    let written = entries();
    write_v2(dir.path(), &written[..10]);
    // What a crash mid-copy leaves: a new database with part of the records and no stamp.
    {
        let db = db_config(&dir.path().join(DB_DIR), DEFAULT_CACHE_CAPACITY)
            .open()
            .unwrap();
        let tree = db.open_tree("entries").unwrap();
        tree.insert("entry-00003", b"half".as_slice()).unwrap();
        tree.insert("stray", b"half".as_slice()).unwrap();
        db.flush().unwrap();
    }

    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.list_entries().await.unwrap(), written[..10].to_vec());
    assert_eq!(store.count_entries().await.unwrap(), 10);
}

#[tokio::test]
async fn a_crash_after_the_commit_only_leaves_the_old_directory_to_remove() {
    let dir = tempfile::tempdir().unwrap();
    let written = entries();
    write_v2(dir.path(), &written[..10]);
    drop(SledStore::open(dir.path()).unwrap());
    // The old directory back, as if the crash came between the rename and its removal.
    std::fs::remove_file(dir.path().join(LEGACY_DIR)).unwrap();
    write_v2(dir.path(), &written[..1]);

    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.list_entries().await.unwrap(), written[..10].to_vec());
    assert!(dir.path().join(LEGACY_DIR).is_file());
}

#[tokio::test]
async fn an_undecodable_old_entry_fails_the_open_naming_it_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_v2(dir.path(), &entries()[..3]);
    {
        let db = open_legacy(&dir.path().join(LEGACY_DIR));
        let tree = db.open_tree("entries").unwrap();
        tree.insert("entry-00001", b"{not json".as_slice()).unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("entry-00001")),
        "{err}"
    );
    assert!(dir.path().join(LEGACY_DIR).is_dir(), "the old store stays");
    let db = open_db(&db_config(&dir.path().join(DB_DIR), DEFAULT_CACHE_CAPACITY)).unwrap();
    assert_eq!(
        db.get(SCHEMA_KEY).unwrap(),
        None,
        "the copy is not committed"
    );
}
