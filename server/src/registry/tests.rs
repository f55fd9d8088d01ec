use std::sync::Arc;

use signet_common::entry::RegistrationEntry;
use signet_common::id::{parse_id, parse_trust_domain};

use super::Registry;
use crate::datastore::DataStore;
use crate::datastore::testing::{FailingStore, temp_sled};

fn entry(eid: &str, path: &str, expires_at: i64) -> RegistrationEntry {
    let id = |p: &str| parse_id(&format!("spiffe://example.org{p}")).unwrap();
    let selectors = ["unix:uid:1".parse().unwrap()].into_iter().collect();
    let mut e = RegistrationEntry::new(eid, id(path), id("/spire/agent/jt/1"), selectors);
    e.expires_at = expires_at;
    e
}

#[tokio::test]
async fn prune_asks_the_store_only_when_the_index_holds_an_expired_entry() {
    let (sled, _dir) = temp_sled();
    let failing = Arc::new(FailingStore::new(sled));
    let td = parse_trust_domain("example.org").unwrap();
    let registry = Registry::load(failing.clone(), &td).await.unwrap();
    registry
        .create_entry(entry("never", "/a", 0))
        .await
        .unwrap();
    registry
        .create_entry(entry("later", "/b", 200))
        .await
        .unwrap();

    // Nothing expired before 200: the store is not asked, so its failure is not met.
    failing.fail_writes(true);
    assert!(registry.prune_entries(200).await.unwrap().is_empty());
    // "later" expired before 201: the store is asked (and fails, changing nothing).
    assert!(registry.prune_entries(201).await.is_err());
    assert_eq!(registry.entry_count(), 2);
    failing.fail_writes(false);

    let pruned = registry.prune_entries(201).await.unwrap();
    let ids: Vec<&str> = pruned.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["later"]);
    assert_eq!(registry.entry_count(), 1);
    assert!(failing.entry("later").await.unwrap().is_none());
    assert!(failing.entry("never").await.unwrap().is_some());
}
