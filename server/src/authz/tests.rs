use super::*;
use signet_common::id::{parse_id, parse_trust_domain};

fn td() -> TrustDomain {
    parse_trust_domain("example.org").unwrap()
}

fn id(path: &str) -> SpiffeId {
    parse_id(&format!("spiffe://example.org{path}")).unwrap()
}

fn sels(items: &[&str]) -> SelectorSet {
    items.iter().map(|s| s.parse().unwrap()).collect()
}

fn entry(eid: &str, spiffe: &str, parent: &str, selectors: &[&str]) -> RegistrationEntry {
    RegistrationEntry::new(eid, id(spiffe), id(parent), sels(selectors))
}

fn ids(v: Vec<Arc<RegistrationEntry>>) -> Vec<String> {
    v.into_iter().map(|e| e.id.clone()).collect()
}

#[test]
fn agent_gets_direct_children_and_descendants() {
    let mut idx = AuthzIndex::new(&td());
    idx.upsert_entry(entry("a", "/web", "/spire/agent/jt/1", &["unix:uid:1"]));
    idx.upsert_entry(entry("b", "/web/child", "/web", &["unix:uid:2"]));
    idx.upsert_entry(entry("c", "/other", "/spire/agent/jt/2", &["unix:uid:3"]));
    assert_eq!(
        ids(idx.authorized_entries(&id("/spire/agent/jt/1"))),
        ["a", "b"]
    );
    assert_eq!(ids(idx.authorized_entries(&id("/spire/agent/jt/2"))), ["c"]);
}

#[test]
fn node_aliases_apply_when_their_selectors_are_a_subset_of_the_nodes() {
    let mut idx = AuthzIndex::new(&td());
    idx.upsert_entry(entry(
        "alias",
        "/cluster/a",
        "/spire/server",
        &["x509pop:san:cluster:a"],
    ));
    idx.upsert_entry(entry("w", "/w", "/cluster/a", &["unix:uid:1"]));
    let member = id("/spire/agent/x509pop/1");
    let stranger = id("/spire/agent/x509pop/2");
    idx.set_node_selectors(
        member.clone(),
        sels(&["x509pop:san:cluster:a", "x509pop:ca:fingerprint:f"]),
    );
    idx.set_node_selectors(stranger.clone(), sels(&["x509pop:san:cluster:b"]));
    assert_eq!(ids(idx.authorized_entries(&member)), ["w"]);
    assert!(idx.authorized_entries(&stranger).is_empty());
    assert_eq!(
        idx.agents_affected_by(idx.entry("w").unwrap()),
        BTreeSet::from([member])
    );
}

#[test]
fn cycles_terminate() {
    let mut idx = AuthzIndex::new(&td());
    idx.upsert_entry(entry("a", "/x", "/spire/agent/jt/1", &["t:1"]));
    idx.upsert_entry(entry("b", "/y", "/x", &["t:2"]));
    idx.upsert_entry(entry("c", "/x", "/y", &["t:3"]));
    assert_eq!(
        ids(idx.authorized_entries(&id("/spire/agent/jt/1"))),
        ["a", "b", "c"]
    );
}

#[test]
fn updates_and_deletes_are_reflected() {
    let mut idx = AuthzIndex::new(&td());
    let agent = id("/spire/agent/jt/1");
    idx.upsert_entry(entry("a", "/web", "/spire/agent/jt/1", &["t:1"]));
    assert!(idx.authorized_entry(&agent, "a").is_some());
    idx.upsert_entry(entry("a", "/web", "/spire/agent/jt/2", &["t:1"]));
    assert!(idx.authorized_entry(&agent, "a").is_none());
    assert!(idx.remove_entry("a").is_some());
    assert!(idx.is_empty());
}

#[test]
fn affected_agents_walk_up_the_parent_chain() {
    let mut idx = AuthzIndex::new(&td());
    idx.upsert_entry(entry("a", "/web", "/spire/agent/jt/1", &["t:1"]));
    idx.upsert_entry(entry("b", "/web/child", "/web", &["t:2"]));
    let affected = idx.agents_affected_by(idx.entry("b").unwrap());
    assert_eq!(affected, BTreeSet::from([id("/spire/agent/jt/1")]));
}
