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
    idx.upsert_entry(&entry("a", "/web", "/spire/agent/jt/1", &["unix:uid:1"]));
    idx.upsert_entry(&entry("b", "/web/child", "/web", &["unix:uid:2"]));
    idx.upsert_entry(&entry("c", "/other", "/spire/agent/jt/2", &["unix:uid:3"]));
    assert_eq!(
        ids(idx.authorized_entries(&id("/spire/agent/jt/1"))),
        ["a", "b"]
    );
    assert_eq!(ids(idx.authorized_entries(&id("/spire/agent/jt/2"))), ["c"]);
}

#[test]
fn node_aliases_apply_when_their_selectors_are_a_subset_of_the_nodes() {
    let mut idx = AuthzIndex::new(&td());
    idx.upsert_entry(&entry(
        "alias",
        "/cluster/a",
        "/spire/server",
        &["x509pop:san:cluster:a"],
    ));
    idx.upsert_entry(&entry("w", "/w", "/cluster/a", &["unix:uid:1"]));
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
        idx.agents_affected_by(&idx.entry("w").unwrap()),
        BTreeSet::from([member])
    );
}

#[test]
fn cycles_terminate() {
    let mut idx = AuthzIndex::new(&td());
    idx.upsert_entry(&entry("a", "/x", "/spire/agent/jt/1", &["t:1"]));
    idx.upsert_entry(&entry("b", "/y", "/x", &["t:2"]));
    idx.upsert_entry(&entry("c", "/x", "/y", &["t:3"]));
    assert_eq!(
        ids(idx.authorized_entries(&id("/spire/agent/jt/1"))),
        ["a", "b", "c"]
    );
}

#[test]
fn updates_and_deletes_are_reflected() {
    let mut idx = AuthzIndex::new(&td());
    let agent = id("/spire/agent/jt/1");
    idx.upsert_entry(&entry("a", "/web", "/spire/agent/jt/1", &["t:1"]));
    assert!(idx.authorized_entry(&agent, "a").is_some());
    idx.upsert_entry(&entry("a", "/web", "/spire/agent/jt/2", &["t:1"]));
    assert!(idx.authorized_entry(&agent, "a").is_none());
    assert!(idx.remove_entry("a"));
    assert!(idx.is_empty());
}

#[test]
fn affected_agents_walk_up_the_parent_chain() {
    let mut idx = AuthzIndex::new(&td());
    idx.upsert_entry(&entry("a", "/web", "/spire/agent/jt/1", &["t:1"]));
    idx.upsert_entry(&entry("b", "/web/child", "/web", &["t:2"]));
    let affected = idx.agents_affected_by(&idx.entry("b").unwrap());
    assert_eq!(affected, BTreeSet::from([id("/spire/agent/jt/1")]));
}

#[test]
fn authorized_entry_agrees_with_the_authorized_set_on_tangled_graphs() {
    // A deterministic pseudo-random graph of entries, aliases, chains and cycles: the
    // parent-chain walk of `authorized_entry` must give the same answer as membership in the
    // set `authorized_entries` builds, for every (agent, entry).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut idx = AuthzIndex::new(&td());
    let agents: Vec<String> = (0..4).map(|i| format!("/spire/agent/jt/{i}")).collect();
    let paths: Vec<String> = (0..12).map(|i| format!("/w/{i}")).collect();
    for (i, agent) in agents.iter().enumerate() {
        let node = match i % 3 {
            0 => sels(&["n:a", "n:b"]),
            1 => sels(&["n:b"]),
            _ => sels(&["n:c"]),
        };
        idx.set_node_selectors(id(agent), node);
    }
    for i in 0..60 {
        let spiffe = &paths[usize::try_from(next(12)).unwrap()];
        let (parent, selectors): (String, Vec<&str>) = match next(5) {
            0 => (
                agents[usize::try_from(next(4)).unwrap()].clone(),
                vec!["u:1"],
            ),
            1 => (
                "/spire/server".into(),
                match next(3) {
                    0 => vec!["n:a"],
                    1 => vec!["n:b"],
                    _ => vec!["n:a", "n:c"],
                },
            ),
            _ => (
                paths[usize::try_from(next(12)).unwrap()].clone(),
                vec!["u:2"],
            ),
        };
        idx.upsert_entry(&entry(&format!("e{i:02}"), spiffe, &parent, &selectors));
    }
    let mut some = 0;
    for agent in agents.iter().map(|a| id(a)) {
        let set: BTreeSet<String> = ids(idx.authorized_entries(&agent)).into_iter().collect();
        for i in 0..60 {
            let eid = format!("e{i:02}");
            let one = idx.authorized_entry(&agent, &eid).map(|e| e.id.clone());
            assert_eq!(one.is_some(), set.contains(&eid), "{agent} {eid}");
            some += usize::from(one.is_some());
        }
    }
    assert!(some > 0, "the graph authorizes something");
    assert!(
        idx.authorized_entry(&id("/spire/agent/jt/0"), "missing")
            .is_none()
    );
}

#[test]
fn has_expired_sees_only_entries_with_an_expiry_before_the_instant() {
    let mut idx = AuthzIndex::new(&td());
    let mut never = entry("never", "/a", "/spire/agent/jt/1", &["unix:uid:1"]);
    never.expires_at = 0;
    let mut later = entry("later", "/b", "/spire/agent/jt/1", &["unix:uid:1"]);
    later.expires_at = 200;
    idx.upsert_entry(&never);
    idx.upsert_entry(&later);
    assert!(!idx.has_expired(200));
    assert!(idx.has_expired(201));
    idx.remove_entry("later");
    assert!(!idx.has_expired(i64::MAX));
}
