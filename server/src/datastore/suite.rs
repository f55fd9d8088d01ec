//! The conformance suite every `DataStore` implementation must pass: one case per contract
//! clause of the trait's docs. An implementation's tests call [`run_all`] with a factory of
//! fresh, empty stores.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;

use signet_common::bundle::{Bundle, JwtKey, X509Authority};
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain, parse_id, parse_trust_domain};
use signet_common::node::AttestedNode;
use signet_common::selector::Selector;

use crate::datastore::{DataStore, EntryScan, JoinToken, StoreError};

/// One conformance case: runs against a fresh store and panics on a broken contract.
pub(crate) type CaseFn = fn(Arc<dyn DataStore>) -> BoxFuture<'static, ()>;

/// A named conformance case.
pub(crate) type Case = (&'static str, CaseFn);

/// Names each case after its function.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        &[$((stringify!($case), (|store| Box::pin($case(store)) as BoxFuture<'static, ()>) as CaseFn)),*]
    };
}

/// Every case, in the trait's order.
pub(crate) const CASES: &[Case] = cases![
    created_entry_reads_back_unchanged,
    missing_entry_is_none_and_not_found,
    create_refuses_a_taken_id_and_stores_nothing,
    create_refuses_a_similar_entry_and_returns_it,
    entries_differing_in_selectors_or_parent_are_not_similar,
    update_bumps_revision_and_keeps_created_at,
    update_refuses_to_duplicate_another_entry_and_stores_nothing,
    lookups_return_exact_matches_ordered_by_id,
    lookups_follow_an_updated_entry,
    lookups_forget_a_deleted_entry,
    prune_entries_removes_only_expired_entries,
    entry_pages_are_ordered_scans_from_the_cursor,
    entry_count_follows_creates_deletes_and_prunes,
    racing_similar_creates_store_exactly_one,
    nodes_are_put_read_listed_and_replaced,
    deleting_a_node_returns_it_once,
    join_tokens_are_single_use,
    create_refuses_a_duplicate_join_token,
    racing_takers_of_a_join_token_have_one_winner,
    prune_join_tokens_removes_only_expired_tokens,
    create_bundle_refuses_an_existing_trust_domain,
    update_bundle_replaces_only_an_existing_bundle,
    set_bundle_creates_or_replaces,
    update_bundle_with_stores_only_when_asked,
    racing_bundle_updates_lose_no_change,
    deleting_a_bundle_returns_it_once,
    bundles_are_listed_by_trust_domain,
    ca_journals_are_kept_per_key,
    federation_relationships_are_kept_per_trust_domain,
];

/// Runs every case, each on a fresh store from `make`, as its own task (so a failed case is
/// reported and the others still run). `make` also returns a guard (such as the store's
/// temporary directory) that is dropped after the store. Panics naming every failed case.
pub(crate) async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<dyn DataStore>, Box<dyn Any + Send>)>,
{
    let mut failed = Vec::new();
    for (name, case) in CASES {
        let (store, guard) = make().await;
        if tokio::spawn(case(store)).await.is_err() {
            failed.push(*name);
        }
        drop(guard);
    }
    assert!(failed.is_empty(), "conformance cases failed: {failed:?}");
}

// === Fixtures ===

fn id(s: &str) -> SpiffeId {
    parse_id(s).unwrap()
}

fn td(s: &str) -> TrustDomain {
    parse_trust_domain(s).unwrap()
}

fn selector(s: &str) -> Selector {
    s.parse().unwrap()
}

const AGENT: &str = "spiffe://example.org/spire/agent/x/1";

/// Entry `entry_id` for `spiffe://example.org/<path>` under `parent`, with `selectors`.
fn entry(entry_id: &str, path: &str, parent: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry {
        id: entry_id.into(),
        spiffe_id: id(&format!("spiffe://example.org/{path}")),
        parent_id: id(parent),
        selectors: selectors.iter().map(|s| selector(s)).collect(),
        x509_svid_ttl: 0,
        jwt_svid_ttl: 0,
        dns_names: vec![],
        federates_with: vec![],
        admin: false,
        downstream: false,
        hint: String::new(),
        expires_at: 0,
        revision_number: 0,
        created_at: 1_000,
        store_svid: false,
    }
}

fn node(spiffe_id: &str, serial: &str) -> AttestedNode {
    AttestedNode {
        spiffe_id: id(spiffe_id),
        attestation_type: "join_token".into(),
        serial: serial.into(),
        expires_at: 2_000,
        new_serial: String::new(),
        new_expires_at: 0,
        can_reattest: false,
        selectors: vec![selector("join_token:abc")],
        agent_version: "0.1.0".into(),
    }
}

fn token(value: &str, expires_at: i64) -> JoinToken {
    JoinToken {
        token: value.into(),
        expires_at,
    }
}

fn bundle(trust_domain: &str, root: u8) -> Bundle {
    let mut b = Bundle::new(td(trust_domain));
    b.x509_authorities.push(X509Authority {
        der: vec![root; 4],
        tainted: false,
    });
    b
}

/// Runs `n` copies of a task at once (on a multi-threaded runtime they race on separate
/// threads) and returns their results in order; a panic in one is a panic here.
async fn race<T, Fut>(n: u8, task: impl Fn(u8) -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(task(i))).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

fn ids(entries: &[RegistrationEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

// === Registration entries ===

pub(crate) async fn created_entry_reads_back_unchanged(store: Arc<dyn DataStore>) {
    let mut e = entry("e1", "web", AGENT, &["unix:uid:1000", "unix:gid:1000"]);
    e.dns_names = vec!["web.example.org".into()];
    e.federates_with = vec!["other.org".into()];
    e.x509_svid_ttl = 60;
    e.expires_at = 9_999;
    assert_eq!(store.create_entry(e.clone()).await.unwrap(), e);
    assert_eq!(store.entry("e1").await.unwrap(), Some(e.clone()));
    assert_eq!(store.list_entries().await.unwrap(), vec![e]);
}

pub(crate) async fn missing_entry_is_none_and_not_found(store: Arc<dyn DataStore>) {
    assert_eq!(store.entry("nope").await.unwrap(), None);
    let update = store
        .update_entry(entry("nope", "web", AGENT, &["a:1"]))
        .await;
    assert!(matches!(update, Err(StoreError::NotFound(_))), "{update:?}");
    assert!(matches!(
        store.delete_entry("nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.entry("nope").await.unwrap(),
        None,
        "a refused update stores nothing"
    );
}

pub(crate) async fn create_refuses_a_taken_id_and_stores_nothing(store: Arc<dyn DataStore>) {
    let first = store
        .create_entry(entry("e1", "web", AGENT, &["a:1"]))
        .await
        .unwrap();
    let clash = entry("e1", "db", "spiffe://example.org/other", &["b:2"]);
    let result = store.create_entry(clash.clone()).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "{result:?}"
    );
    assert_eq!(store.entry("e1").await.unwrap(), Some(first.clone()));
    assert_eq!(store.list_entries().await.unwrap(), vec![first]);
    assert!(
        store
            .entries_by_spiffe_id(&clash.spiffe_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .entries_by_parent(&clash.parent_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .entries_by_selector(&selector("b:2"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn create_refuses_a_similar_entry_and_returns_it(store: Arc<dyn DataStore>) {
    let first = store
        .create_entry(entry("e1", "web", AGENT, &["a:1", "b:2"]))
        .await
        .unwrap();
    // Same SPIFFE ID, parent and selector set (given in another order), other ID.
    let result = store
        .create_entry(entry("e2", "web", AGENT, &["b:2", "a:1"]))
        .await;
    match result {
        Err(StoreError::SimilarEntry(existing)) => assert_eq!(*existing, first),
        other => panic!("expected SimilarEntry, got {other:?}"),
    }
    assert_eq!(store.entry("e2").await.unwrap(), None);
    assert_eq!(ids(&store.list_entries().await.unwrap()), ["e1"]);
    assert_eq!(
        ids(&store.entries_by_parent(&id(AGENT)).await.unwrap()),
        ["e1"]
    );
    assert_eq!(
        ids(&store.entries_by_selector(&selector("a:1")).await.unwrap()),
        ["e1"]
    );
}

pub(crate) async fn entries_differing_in_selectors_or_parent_are_not_similar(
    store: Arc<dyn DataStore>,
) {
    store
        .create_entry(entry("e1", "web", AGENT, &["a:1", "b:2"]))
        .await
        .unwrap();
    store
        .create_entry(entry("e2", "web", AGENT, &["a:1"]))
        .await
        .unwrap();
    store
        .create_entry(entry("e3", "web", AGENT, &["a:1", "b:2", "c:3"]))
        .await
        .unwrap();
    store
        .create_entry(entry("e4", "web", "spiffe://example.org/other", &["a:1"]))
        .await
        .unwrap();
    store
        .create_entry(entry("e5", "db", AGENT, &["a:1"]))
        .await
        .unwrap();
    assert_eq!(store.list_entries().await.unwrap().len(), 5);
}

pub(crate) async fn update_bumps_revision_and_keeps_created_at(store: Arc<dyn DataStore>) {
    store
        .create_entry(entry("e1", "web", AGENT, &["a:1"]))
        .await
        .unwrap();
    let mut change = entry("e1", "web", AGENT, &["a:1"]);
    change.x509_svid_ttl = 300;
    change.revision_number = 41; // ignored: the store counts
    change.created_at = 5_000; // ignored: kept from the stored entry
    let updated = store.update_entry(change).await.unwrap();
    assert_eq!(
        (
            updated.revision_number,
            updated.created_at,
            updated.x509_svid_ttl
        ),
        (1, 1_000, 300)
    );
    assert_eq!(store.entry("e1").await.unwrap(), Some(updated.clone()));
    // An update that leaves the entry similar to itself is fine, and counts again.
    let again = store.update_entry(updated).await.unwrap();
    assert_eq!(again.revision_number, 2);
    assert_eq!(store.entry("e1").await.unwrap(), Some(again));
}

pub(crate) async fn update_refuses_to_duplicate_another_entry_and_stores_nothing(
    store: Arc<dyn DataStore>,
) {
    let first = store
        .create_entry(entry("e1", "web", AGENT, &["a:1"]))
        .await
        .unwrap();
    let second = store
        .create_entry(entry("e2", "db", AGENT, &["b:2"]))
        .await
        .unwrap();
    let result = store
        .update_entry(entry("e2", "web", AGENT, &["a:1"]))
        .await;
    match result {
        Err(StoreError::SimilarEntry(existing)) => assert_eq!(*existing, first),
        other => panic!("expected SimilarEntry, got {other:?}"),
    }
    assert_eq!(store.entry("e2").await.unwrap(), Some(second));
    assert_eq!(
        ids(&store.entries_by_selector(&selector("a:1")).await.unwrap()),
        ["e1"]
    );
    assert_eq!(
        ids(&store.entries_by_selector(&selector("b:2")).await.unwrap()),
        ["e2"]
    );
    assert_eq!(
        ids(&store.entries_by_spiffe_id(&first.spiffe_id).await.unwrap()),
        ["e1"]
    );
}

pub(crate) async fn lookups_return_exact_matches_ordered_by_id(store: Arc<dyn DataStore>) {
    let other_parent = "spiffe://example.org/spire/agent/x/10";
    for e in [
        entry("c", "w", AGENT, &["unix:uid:1", "k8s:ns:a"]),
        entry("a", "w", AGENT, &["unix:uid:1"]),
        entry("b", "w2", AGENT, &["unix:uid:10"]),
        entry("d", "w", other_parent, &["unix:uid:1"]),
    ] {
        store.create_entry(e).await.unwrap();
    }
    assert_eq!(
        ids(&store.list_entries().await.unwrap()),
        ["a", "b", "c", "d"]
    );
    // An ID or selector that is a prefix of another's matches only itself.
    assert_eq!(
        ids(&store.entries_by_parent(&id(AGENT)).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        ids(&store.entries_by_parent(&id(other_parent)).await.unwrap()),
        ["d"]
    );
    let w = id("spiffe://example.org/w");
    assert_eq!(
        ids(&store.entries_by_spiffe_id(&w).await.unwrap()),
        ["a", "c", "d"]
    );
    assert_eq!(
        ids(&store
            .entries_by_selector(&selector("unix:uid:1"))
            .await
            .unwrap()),
        ["a", "c", "d"]
    );
    assert_eq!(
        ids(&store
            .entries_by_selector(&selector("unix:uid:10"))
            .await
            .unwrap()),
        ["b"]
    );
    assert_eq!(
        ids(&store
            .entries_by_selector(&selector("k8s:ns:a"))
            .await
            .unwrap()),
        ["c"]
    );
    assert!(
        store
            .entries_by_selector(&selector("unix:uid"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .entries_by_parent(&id("spiffe://example.org/nobody"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn lookups_follow_an_updated_entry(store: Arc<dyn DataStore>) {
    let old_parent = id(AGENT);
    let new_parent = id("spiffe://example.org/spire/agent/x/2");
    store
        .create_entry(entry("e1", "old", AGENT, &["a:1", "b:2"]))
        .await
        .unwrap();
    let updated = store
        .update_entry(entry(
            "e1",
            "new",
            "spiffe://example.org/spire/agent/x/2",
            &["b:2", "c:3"],
        ))
        .await
        .unwrap();
    assert!(
        store
            .entries_by_parent(&old_parent)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.entries_by_parent(&new_parent).await.unwrap(),
        vec![updated.clone()]
    );
    assert!(
        store
            .entries_by_spiffe_id(&id("spiffe://example.org/old"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .entries_by_spiffe_id(&updated.spiffe_id)
            .await
            .unwrap(),
        vec![updated.clone()]
    );
    assert!(
        store
            .entries_by_selector(&selector("a:1"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.entries_by_selector(&selector("b:2")).await.unwrap(),
        vec![updated.clone()]
    );
    assert_eq!(
        store.entries_by_selector(&selector("c:3")).await.unwrap(),
        vec![updated]
    );
    // The old shape is no longer taken.
    store
        .create_entry(entry("e2", "old", AGENT, &["a:1", "b:2"]))
        .await
        .unwrap();
}

pub(crate) async fn lookups_forget_a_deleted_entry(store: Arc<dyn DataStore>) {
    let e = store
        .create_entry(entry("e1", "web", AGENT, &["a:1"]))
        .await
        .unwrap();
    assert_eq!(store.delete_entry("e1").await.unwrap(), e);
    assert_eq!(store.entry("e1").await.unwrap(), None);
    assert!(store.list_entries().await.unwrap().is_empty());
    assert!(
        store
            .entries_by_parent(&e.parent_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .entries_by_spiffe_id(&e.spiffe_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .entries_by_selector(&selector("a:1"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.delete_entry("e1").await,
        Err(StoreError::NotFound(_))
    ));
    // Neither its ID nor its shape is taken any more.
    store
        .create_entry(entry("e1", "web", AGENT, &["a:1"]))
        .await
        .unwrap();
    store
        .create_entry(entry("e2", "web", AGENT, &["a:1", "b:2"]))
        .await
        .unwrap();
}

pub(crate) async fn prune_entries_removes_only_expired_entries(store: Arc<dyn DataStore>) {
    for (entry_id, expires_at) in [("never", 0), ("e050", 50), ("e100", 100), ("e150", 150)] {
        let mut e = entry(entry_id, entry_id, AGENT, &["a:1"]);
        e.expires_at = expires_at;
        store.create_entry(e).await.unwrap();
    }
    let pruned = store.prune_entries(100).await.unwrap();
    assert_eq!(ids(&pruned), ["e050"], "strictly before, and never 0");
    assert_eq!(
        ids(&store.list_entries().await.unwrap()),
        ["e100", "e150", "never"]
    );
    assert_eq!(
        ids(&store.entries_by_selector(&selector("a:1")).await.unwrap()),
        ["e100", "e150", "never"]
    );
    assert!(store.prune_entries(100).await.unwrap().is_empty());
}

pub(crate) async fn racing_similar_creates_store_exactly_one(store: Arc<dyn DataStore>) {
    let results = race(8, |n| {
        let store = store.clone();
        async move {
            store
                .create_entry(entry(&format!("e{n}"), "web", AGENT, &["a:1"]))
                .await
        }
    })
    .await;
    let mut created = 0;
    for result in results {
        match result {
            Ok(_) => created += 1,
            Err(StoreError::SimilarEntry(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store.list_entries().await.unwrap().len(), 1);
    assert_eq!(store.entries_by_parent(&id(AGENT)).await.unwrap().len(), 1);
}

// === Attested nodes ===

pub(crate) async fn nodes_are_put_read_listed_and_replaced(store: Arc<dyn DataStore>) {
    let b = store
        .put_node(node("spiffe://example.org/spire/agent/x/b", "01"))
        .await
        .unwrap();
    let a = store
        .put_node(node("spiffe://example.org/spire/agent/x/a", "02"))
        .await
        .unwrap();
    assert_eq!(store.node(&a.spiffe_id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        store.list_nodes().await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    let mut renewed = a.clone();
    renewed.new_serial = "03".into();
    renewed.new_expires_at = 3_000;
    store.put_node(renewed.clone()).await.unwrap();
    assert_eq!(
        store.node(&a.spiffe_id).await.unwrap(),
        Some(renewed.clone())
    );
    assert_eq!(store.list_nodes().await.unwrap(), vec![renewed, b]);
    assert_eq!(
        store
            .node(&id("spiffe://example.org/spire/agent/x/c"))
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn deleting_a_node_returns_it_once(store: Arc<dyn DataStore>) {
    let n = store
        .put_node(node("spiffe://example.org/spire/agent/x/a", "01"))
        .await
        .unwrap();
    assert_eq!(store.delete_node(&n.spiffe_id).await.unwrap(), n);
    assert_eq!(store.node(&n.spiffe_id).await.unwrap(), None);
    assert!(store.list_nodes().await.unwrap().is_empty());
    assert!(matches!(
        store.delete_node(&n.spiffe_id).await,
        Err(StoreError::NotFound(_))
    ));
}

// === Join tokens ===

pub(crate) async fn join_tokens_are_single_use(store: Arc<dyn DataStore>) {
    store.create_join_token(token("t1", 100)).await.unwrap();
    assert_eq!(
        store.take_join_token("t1").await.unwrap(),
        Some(token("t1", 100))
    );
    assert_eq!(store.take_join_token("t1").await.unwrap(), None);
    assert_eq!(store.take_join_token("never-made").await.unwrap(), None);
}

pub(crate) async fn create_refuses_a_duplicate_join_token(store: Arc<dyn DataStore>) {
    store.create_join_token(token("t1", 100)).await.unwrap();
    let result = store.create_join_token(token("t1", 999)).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "{result:?}"
    );
    assert_eq!(
        store.take_join_token("t1").await.unwrap(),
        Some(token("t1", 100))
    );
}

pub(crate) async fn racing_takers_of_a_join_token_have_one_winner(store: Arc<dyn DataStore>) {
    store.create_join_token(token("t1", 100)).await.unwrap();
    let taken = race(8, |_| {
        let store = store.clone();
        async move { store.take_join_token("t1").await.unwrap() }
    })
    .await;
    assert_eq!(taken.iter().filter(|t| t.is_some()).count(), 1);
}

pub(crate) async fn prune_join_tokens_removes_only_expired_tokens(store: Arc<dyn DataStore>) {
    for (value, expires_at) in [("t10", 10), ("t20", 20), ("t30", 30)] {
        store
            .create_join_token(token(value, expires_at))
            .await
            .unwrap();
    }
    assert_eq!(
        store.prune_join_tokens(20).await.unwrap(),
        1,
        "strictly before"
    );
    assert_eq!(store.take_join_token("t10").await.unwrap(), None);
    assert!(store.take_join_token("t20").await.unwrap().is_some());
    assert!(store.take_join_token("t30").await.unwrap().is_some());
    assert_eq!(store.prune_join_tokens(1_000).await.unwrap(), 0);
}

// === Bundles ===

pub(crate) async fn create_bundle_refuses_an_existing_trust_domain(store: Arc<dyn DataStore>) {
    let b = store.create_bundle(bundle("example.org", 1)).await.unwrap();
    assert_eq!(
        store.bundle(&b.trust_domain).await.unwrap(),
        Some(b.clone())
    );
    let result = store.create_bundle(bundle("example.org", 2)).await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists(_))),
        "{result:?}"
    );
    assert_eq!(store.bundle(&b.trust_domain).await.unwrap(), Some(b));
    assert_eq!(store.bundle(&td("other.org")).await.unwrap(), None);
}

pub(crate) async fn update_bundle_replaces_only_an_existing_bundle(store: Arc<dyn DataStore>) {
    let result = store.update_bundle(bundle("example.org", 1)).await;
    assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
    assert_eq!(store.bundle(&td("example.org")).await.unwrap(), None);
    store.create_bundle(bundle("example.org", 1)).await.unwrap();
    let mut next = bundle("example.org", 2);
    next.sequence_number = 7;
    next.refresh_hint = 60;
    assert_eq!(store.update_bundle(next.clone()).await.unwrap(), next);
    assert_eq!(store.bundle(&td("example.org")).await.unwrap(), Some(next));
}

pub(crate) async fn set_bundle_creates_or_replaces(store: Arc<dyn DataStore>) {
    let first = store.set_bundle(bundle("example.org", 1)).await.unwrap();
    assert_eq!(
        store.bundle(&first.trust_domain).await.unwrap(),
        Some(first)
    );
    let second = store.set_bundle(bundle("example.org", 2)).await.unwrap();
    assert_eq!(
        store.bundle(&second.trust_domain).await.unwrap(),
        Some(second)
    );
    assert_eq!(store.list_bundles().await.unwrap().len(), 1);
}

pub(crate) async fn update_bundle_with_stores_only_when_asked(store: Arc<dyn DataStore>) {
    let example = td("example.org");
    let key = JwtKey {
        public_key: vec![9; 4],
        key_id: "k1".into(),
        expires_at: 500,
        tainted: false,
    };
    // Absent and unchanged: nothing is stored.
    let seen = store
        .update_bundle_with(&example, &mut |b| {
            assert_eq!(
                *b,
                Bundle::new(td("example.org")),
                "starts from an empty bundle"
            );
            false
        })
        .await;
    assert_eq!(seen.unwrap(), Bundle::new(example.clone()));
    assert_eq!(store.bundle(&example).await.unwrap(), None);
    // Absent and changed: created.
    let created = store
        .update_bundle_with(&example, &mut |b| {
            b.merge(&bundle("example.org", 1).x509_authorities, &[])
        })
        .await
        .unwrap();
    assert_eq!(created, bundle("example.org", 1));
    assert_eq!(store.bundle(&example).await.unwrap(), Some(created.clone()));
    // Present and changed: applied to the stored bundle.
    let merged = store
        .update_bundle_with(&example, &mut |b| {
            assert_eq!(*b, created);
            b.sequence_number += 1;
            b.merge(&[], std::slice::from_ref(&key))
        })
        .await
        .unwrap();
    assert_eq!(
        (
            merged.x509_authorities.len(),
            merged.jwt_authorities.as_slice()
        ),
        (1, [key].as_slice())
    );
    assert_eq!(merged.sequence_number, 1);
    // Present and unchanged: the stored bundle comes back as it was.
    let unchanged = store
        .update_bundle_with(&example, &mut |b| {
            b.refresh_hint = 1;
            false
        })
        .await
        .unwrap();
    assert_eq!(unchanged, merged);
    assert_eq!(store.bundle(&example).await.unwrap(), Some(merged));
}

pub(crate) async fn racing_bundle_updates_lose_no_change(store: Arc<dyn DataStore>) {
    let example = td("example.org");
    race(8, |n| {
        let (store, example) = (store.clone(), example.clone());
        async move {
            let root = X509Authority {
                der: vec![n; 4],
                tainted: false,
            };
            store
                .update_bundle_with(&example, &mut |b| b.merge(std::slice::from_ref(&root), &[]))
                .await
                .unwrap();
        }
    })
    .await;
    let mut roots: Vec<u8> = store
        .bundle(&example)
        .await
        .unwrap()
        .unwrap()
        .x509_authorities
        .iter()
        .map(|a| a.der[0])
        .collect();
    roots.sort_unstable();
    assert_eq!(roots, (0..8).collect::<Vec<u8>>());
}

pub(crate) async fn deleting_a_bundle_returns_it_once(store: Arc<dyn DataStore>) {
    let b = store.create_bundle(bundle("other.org", 1)).await.unwrap();
    assert_eq!(store.delete_bundle(&b.trust_domain).await.unwrap(), b);
    assert_eq!(store.bundle(&b.trust_domain).await.unwrap(), None);
    assert!(matches!(
        store.delete_bundle(&b.trust_domain).await,
        Err(StoreError::NotFound(_))
    ));
    // Deleted means absent: update refuses and create succeeds again.
    assert!(matches!(
        store.update_bundle(b.clone()).await,
        Err(StoreError::NotFound(_))
    ));
    store.create_bundle(b).await.unwrap();
}

pub(crate) async fn bundles_are_listed_by_trust_domain(store: Arc<dyn DataStore>) {
    for name in ["zeta.org", "alpha.org", "mid.org"] {
        store.create_bundle(bundle(name, 1)).await.unwrap();
    }
    let names: Vec<String> = store
        .list_bundles()
        .await
        .unwrap()
        .iter()
        .map(|b| b.trust_domain.to_string())
        .collect();
    assert_eq!(names, ["alpha.org", "mid.org", "zeta.org"]);
}

// === CA journal ===

pub(crate) async fn ca_journals_are_kept_per_key(store: Arc<dyn DataStore>) {
    assert_eq!(store.ca_journal("server-a").await.unwrap(), None);
    store
        .set_ca_journal("server-a", b"journal a")
        .await
        .unwrap();
    store
        .set_ca_journal("server-b", b"journal b")
        .await
        .unwrap();
    assert_eq!(
        store.ca_journal("server-a").await.unwrap().as_deref(),
        Some(&b"journal a"[..])
    );
    assert_eq!(
        store.ca_journal("server-b").await.unwrap().as_deref(),
        Some(&b"journal b"[..])
    );
    store.set_ca_journal("server-a", b"").await.unwrap();
    assert_eq!(store.ca_journal("server-a").await.unwrap(), Some(vec![]));
    assert_eq!(
        store.ca_journal("server-b").await.unwrap().as_deref(),
        Some(&b"journal b"[..])
    );
}

pub(crate) async fn entry_pages_are_ordered_scans_from_the_cursor(store: Arc<dyn DataStore>) {
    let other = "spiffe://example.org/other";
    // Created out of ID order; IDs that are prefixes of each other.
    for (eid, path, parent, sels) in [
        ("e3", "web", AGENT, &["a:1", "b:2"][..]),
        ("e1", "web", other, &["a:1"][..]),
        ("e10", "db", AGENT, &["b:2"][..]),
        ("e2", "db", AGENT, &["a:1"][..]),
        ("e4", "web2", other, &["c:3"][..]),
    ] {
        store
            .create_entry(entry(eid, path, parent, sels))
            .await
            .unwrap();
    }
    let page = |scan, after: &'static str, limit| {
        let store = Arc::clone(&store);
        async move {
            let page = store.entries_page(scan, after, limit).await.unwrap();
            page.into_iter().map(|e| e.id).collect::<Vec<String>>()
        }
    };
    assert_eq!(
        page(EntryScan::All, "", 10).await,
        ["e1", "e10", "e2", "e3", "e4"]
    );
    assert_eq!(page(EntryScan::All, "", 2).await, ["e1", "e10"]);
    assert_eq!(page(EntryScan::All, "e10", 2).await, ["e2", "e3"]);
    assert_eq!(page(EntryScan::All, "e4", 2).await, Vec::<String>::new());
    // A cursor that is not itself an entry ID still starts after it.
    assert_eq!(page(EntryScan::All, "e1x", 10).await, ["e2", "e3", "e4"]);
    let agent = id(AGENT);
    assert_eq!(
        page(EntryScan::Parent(&agent), "", 10).await,
        ["e10", "e2", "e3"]
    );
    assert_eq!(page(EntryScan::Parent(&agent), "e10", 1).await, ["e2"]);
    let web = id("spiffe://example.org/web");
    assert_eq!(page(EntryScan::SpiffeId(&web), "e1", 10).await, ["e3"]);
    let a1 = selector("a:1");
    assert_eq!(
        page(EntryScan::Selector(&a1), "", 10).await,
        ["e1", "e2", "e3"]
    );
    assert_eq!(page(EntryScan::Selector(&a1), "e1", 1).await, ["e2"]);
    let nobody = id("spiffe://example.org/nobody");
    assert!(page(EntryScan::Parent(&nobody), "", 10).await.is_empty());
    // An updated entry is found under its new index values only.
    let mut moved = entry("e2", "db", other, &["c:3"]);
    moved.created_at = 1_000;
    store.update_entry(moved).await.unwrap();
    assert_eq!(page(EntryScan::Parent(&agent), "", 10).await, ["e10", "e3"]);
    let c3 = selector("c:3");
    assert_eq!(page(EntryScan::Selector(&c3), "", 10).await, ["e2", "e4"]);
}

pub(crate) async fn entry_count_follows_creates_deletes_and_prunes(store: Arc<dyn DataStore>) {
    assert_eq!(store.count_entries().await.unwrap(), 0);
    for i in 0..4 {
        let mut e = entry(&format!("e{i}"), &format!("w{i}"), AGENT, &["a:1"]);
        e.expires_at = if i < 2 { 10 } else { 0 };
        store.create_entry(e).await.unwrap();
    }
    // Refused creates and updates change nothing.
    assert!(
        store
            .create_entry(entry("e0", "other", AGENT, &["a:1"]))
            .await
            .is_err()
    );
    store
        .update_entry(entry("e3", "w3", AGENT, &["b:2"]))
        .await
        .unwrap();
    assert_eq!(store.count_entries().await.unwrap(), 4);
    store.delete_entry("e3").await.unwrap();
    assert!(store.delete_entry("e3").await.is_err());
    assert_eq!(store.count_entries().await.unwrap(), 3);
    assert_eq!(store.prune_entries(20).await.unwrap().len(), 2);
    assert_eq!(store.count_entries().await.unwrap(), 1);
    assert_eq!(
        store.count_entries().await.unwrap(),
        store.list_entries().await.unwrap().len() as u64
    );
}

async fn federation_relationships_are_kept_per_trust_domain(store: Arc<dyn DataStore>) {
    use crate::relationship::{EndpointProfile, Relationship};
    let own = td("own.test");
    let rel = |name: &str, url: &str| {
        Relationship::new(&own, td(name), url.into(), EndpointProfile::HttpsWeb).unwrap()
    };
    assert_eq!(store.list_federations().await.unwrap(), vec![]);
    assert!(store.federation(&td("b.test")).await.unwrap().is_none());
    store
        .create_federation(rel("b.test", "https://b.test/bundle"))
        .await
        .unwrap();
    store
        .create_federation(rel("a.test", "https://a.test"))
        .await
        .unwrap();
    let dup = store
        .create_federation(rel("b.test", "https://other.test"))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::AlreadyExists(_)), "{dup}");
    let mut spiffe = rel("b.test", "https://b.test:8443");
    spiffe.profile = EndpointProfile::HttpsSpiffe {
        endpoint_spiffe_id: id("spiffe://b.test/spire/server"),
    };
    store.update_federation(spiffe.clone()).await.unwrap();
    assert_eq!(
        store.federation(&td("b.test")).await.unwrap(),
        Some(spiffe.clone())
    );
    let missing = store
        .update_federation(rel("c.test", "https://c.test"))
        .await
        .unwrap_err();
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");
    let names: Vec<String> = store
        .list_federations()
        .await
        .unwrap()
        .iter()
        .map(|r| r.trust_domain.to_string())
        .collect();
    assert_eq!(names, ["a.test", "b.test"]);
    assert_eq!(
        store.delete_federation(&td("b.test")).await.unwrap(),
        spiffe
    );
    let gone = store.delete_federation(&td("b.test")).await.unwrap_err();
    assert!(matches!(gone, StoreError::NotFound(_)), "{gone}");
    assert_eq!(store.list_federations().await.unwrap().len(), 1);
}
