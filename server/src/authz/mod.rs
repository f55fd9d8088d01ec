//! The in-memory authorization index: which registration entries each agent may mint.
//! Built once from the store at start-up, then updated on every change, so a lookup costs
//! O(authorized entries), never a scan of the store.
//!
//! An agent is authorized for the entries parented to its ID, their descendants, and the
//! entries under every node alias (an entry parented to `spiffe://<td>/spire/server`) whose
//! selectors are a subset of the agent's node selectors. Alias entries themselves are not
//! returned.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use id_set::IdSet;

use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain, server_id};
use signet_common::selector::SelectorSet;

/// The index. Not synchronised: the registry wraps it in a lock. Each entry ID is allocated
/// once and shared by the three maps.
#[derive(Debug)]
pub struct AuthzIndex {
    server_id: SpiffeId,
    entries: HashMap<Arc<str>, Arc<RegistrationEntry>>,
    by_parent: HashMap<SpiffeId, IdSet>,
    by_spiffe_id: HashMap<SpiffeId, IdSet>,
    aliases: BTreeMap<String, SelectorSet>,
    node_selectors: HashMap<SpiffeId, SelectorSet>,
}

impl AuthzIndex {
    /// An empty index for `td`.
    pub fn new(td: &TrustDomain) -> Self {
        Self {
            server_id: server_id(td),
            entries: HashMap::new(),
            by_parent: HashMap::new(),
            by_spiffe_id: HashMap::new(),
            aliases: BTreeMap::new(),
            node_selectors: HashMap::new(),
        }
    }

    /// Adds or replaces an entry.
    pub fn upsert_entry(&mut self, entry: RegistrationEntry) {
        self.remove_entry(&entry.id);
        let id: Arc<str> = Arc::from(entry.id.as_str());
        list_under(&mut self.by_parent, &entry.parent_id, &id);
        list_under(&mut self.by_spiffe_id, &entry.spiffe_id, &id);
        if entry.parent_id == self.server_id {
            self.aliases
                .insert(entry.id.clone(), entry.selectors.clone());
        }
        self.entries.insert(id, Arc::new(entry));
    }

    /// Removes an entry; returns it if it was there.
    pub fn remove_entry(&mut self, id: &str) -> Option<Arc<RegistrationEntry>> {
        let old = self.entries.remove(id)?;
        remove_from(&mut self.by_parent, &old.parent_id, id);
        remove_from(&mut self.by_spiffe_id, &old.spiffe_id, id);
        self.aliases.remove(id);
        Some(old)
    }

    /// Records (or replaces) an agent's node selectors.
    pub fn set_node_selectors(&mut self, agent: SpiffeId, selectors: SelectorSet) {
        self.node_selectors.insert(agent, selectors);
    }

    /// Forgets an agent's node selectors.
    pub fn remove_node(&mut self, agent: &SpiffeId) {
        self.node_selectors.remove(agent);
    }

    /// The entry with this ID.
    pub fn entry(&self, id: &str) -> Option<&Arc<RegistrationEntry>> {
        self.entries.get(id)
    }

    /// Every entry `agent` is authorized for, ordered by entry ID.
    pub fn authorized_entries(&self, agent: &SpiffeId) -> Vec<Arc<RegistrationEntry>> {
        let mut roots = vec![agent.clone()];
        if let Some(node) = self.node_selectors.get(agent) {
            for (alias_id, selectors) in &self.aliases {
                if selectors.is_subset_of(node)
                    && let Some(alias) = self.entries.get(alias_id.as_str())
                {
                    roots.push(alias.spiffe_id.clone());
                }
            }
        }
        let mut found: BTreeMap<&str, Arc<RegistrationEntry>> = BTreeMap::new();
        let mut seen: HashSet<SpiffeId> = HashSet::new();
        let mut queue: VecDeque<SpiffeId> = roots.into();
        while let Some(parent) = queue.pop_front() {
            if parent == self.server_id || !seen.insert(parent.clone()) {
                continue;
            }
            for id in self
                .by_parent
                .get(&parent)
                .into_iter()
                .flat_map(IdSet::iter)
            {
                if let Some(e) = self.entries.get(id)
                    && found.insert(&**id, Arc::clone(e)).is_none()
                {
                    queue.push_back(e.spiffe_id.clone());
                }
            }
        }
        found.into_values().collect()
    }

    /// Whether `agent` may mint `entry_id`; returns the entry if so. Walks up the entry's
    /// parent chain (O(depth), not O(entries of the agent)); agrees with
    /// [`Self::authorized_entries`].
    pub fn authorized_entry(
        &self,
        agent: &SpiffeId,
        entry_id: &str,
    ) -> Option<Arc<RegistrationEntry>> {
        let entry = self.entries.get(entry_id)?;
        let node = self.node_selectors.get(agent);
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([&entry.parent_id]);
        while let Some(parent) = queue.pop_front() {
            if *parent == self.server_id || !seen.insert(parent) {
                continue;
            }
            if parent == agent {
                return Some(Arc::clone(entry));
            }
            for id in self
                .by_spiffe_id
                .get(parent)
                .into_iter()
                .flat_map(IdSet::iter)
            {
                let Some(ancestor) = self.entries.get(id) else {
                    continue;
                };
                if ancestor.parent_id == self.server_id {
                    if node.is_some_and(|node| ancestor.selectors.is_subset_of(node)) {
                        return Some(Arc::clone(entry));
                    }
                } else {
                    queue.push_back(&ancestor.parent_id);
                }
            }
        }
        None
    }

    /// The agents whose authorized set contains `entry` (walking up its parent chain), so
    /// that only they are told about a change to it.
    pub fn agents_affected_by(&self, entry: &RegistrationEntry) -> BTreeSet<SpiffeId> {
        let mut agents = BTreeSet::new();
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([entry.parent_id.clone()]);
        while let Some(parent) = queue.pop_front() {
            if !seen.insert(parent.clone()) {
                continue;
            }
            if parent == self.server_id {
                continue;
            }
            if self.node_selectors.contains_key(&parent) || signet_common::id::is_agent_id(&parent)
            {
                agents.insert(parent.clone());
            }
            for id in self
                .by_spiffe_id
                .get(&parent)
                .into_iter()
                .flat_map(IdSet::iter)
            {
                let Some(ancestor) = self.entries.get(id) else {
                    continue;
                };
                if ancestor.parent_id == self.server_id {
                    agents.extend(
                        self.node_selectors
                            .iter()
                            .filter(|(_, node)| ancestor.selectors.is_subset_of(node))
                            .map(|(agent, _)| agent.clone()),
                    );
                } else {
                    queue.push_back(ancestor.parent_id.clone());
                }
            }
        }
        agents
    }

    /// Whether an entry held expired before `before` (`expires_at` set and earlier).
    pub fn has_expired(&self, before: i64) -> bool {
        self.entries.values().any(|e| e.expired_before(before))
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Lists `id` under `key`.
fn list_under(map: &mut HashMap<SpiffeId, IdSet>, key: &SpiffeId, id: &Arc<str>) {
    match map.get_mut(key) {
        Some(set) => set.insert(Arc::clone(id)),
        None => {
            map.insert(key.clone(), IdSet::One(Arc::clone(id)));
        }
    }
}

fn remove_from(map: &mut HashMap<SpiffeId, IdSet>, key: &SpiffeId, id: &str) {
    if let Some(set) = map.get_mut(key)
        && set.remove(id)
    {
        map.remove(key);
    }
}

mod id_set;
#[cfg(test)]
mod tests;
