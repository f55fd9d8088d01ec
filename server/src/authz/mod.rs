//! The in-memory authorization index: which registration entries each agent may mint.
//! Built once from the store at start-up, then updated on every change, so a lookup costs
//! O(authorized entries), never a scan of the store.
//!
//! An agent is authorized for the entries parented to its ID, their descendants, and the
//! entries under every node alias (an entry parented to `spiffe://<td>/spire/server`) whose
//! selectors are a subset of the agent's node selectors. Alias entries themselves are not
//! returned.
//!
//! Entries are held compactly (see `held`) and decoded when handed out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use held::{Held, Names};
use id_set::IdSet;

use signet_common::entry::{RegistrationEntry, expires_before};
use signet_common::id::{SpiffeId, TrustDomain, is_agent_id, parse_id, server_id};
use signet_common::selector::SelectorSet;

/// An agent's node selectors, under its name.
#[derive(Debug)]
struct Node {
    id: SpiffeId,
    selectors: SelectorSet,
}

/// The index. Not synchronised: the registry wraps it in a lock. Each entry ID is allocated
/// once and shared by the maps, and so is each SPIFFE ID (see [`Names`]).
#[derive(Debug)]
pub struct AuthzIndex {
    server_id: Arc<str>,
    names: Names,
    entries: HashMap<Arc<str>, Held>,
    by_parent: HashMap<Arc<str>, IdSet>,
    by_spiffe_id: HashMap<Arc<str>, IdSet>,
    aliases: BTreeMap<Arc<str>, SelectorSet>,
    nodes: HashMap<Arc<str>, Node>,
}

impl AuthzIndex {
    /// An empty index for `td`.
    pub fn new(td: &TrustDomain) -> Self {
        Self {
            server_id: Arc::from(server_id(td).to_string()),
            names: Names::default(),
            entries: HashMap::new(),
            by_parent: HashMap::new(),
            by_spiffe_id: HashMap::new(),
            aliases: BTreeMap::new(),
            nodes: HashMap::new(),
        }
    }

    /// Adds or replaces an entry.
    pub fn upsert_entry(&mut self, entry: &RegistrationEntry) {
        self.remove_entry(&entry.id);
        let id: Arc<str> = Arc::from(entry.id.as_str());
        let held = Held::new(entry, &mut self.names);
        list_under(&mut self.by_parent, &held.parent_id, &id);
        list_under(&mut self.by_spiffe_id, &held.spiffe_id, &id);
        if held.parent_id == self.server_id {
            self.aliases
                .insert(Arc::clone(&id), entry.selectors.clone());
        }
        self.entries.insert(id, held);
    }

    /// Removes an entry; returns whether it was there.
    pub fn remove_entry(&mut self, id: &str) -> bool {
        let Some(old) = self.entries.remove(id) else {
            return false;
        };
        remove_from(&mut self.by_parent, &old.parent_id, id);
        remove_from(&mut self.by_spiffe_id, &old.spiffe_id, id);
        self.aliases.remove(id);
        self.names.release(old.parent_id);
        self.names.release(old.spiffe_id);
        true
    }

    /// Records (or replaces) an agent's node selectors.
    pub fn set_node_selectors(&mut self, agent: SpiffeId, selectors: SelectorSet) {
        let name = Arc::from(agent.to_string());
        self.nodes.insert(
            name,
            Node {
                id: agent,
                selectors,
            },
        );
    }

    /// Forgets an agent's node selectors.
    pub fn remove_node(&mut self, agent: &SpiffeId) {
        self.nodes.remove(agent.to_string().as_str());
    }

    /// The entry with this ID.
    pub fn entry(&self, id: &str) -> Option<RegistrationEntry> {
        let (id, held) = self.entries.get_key_value(id)?;
        decoded(id, held)
    }

    /// Every entry `agent` is authorized for, ordered by entry ID.
    pub fn authorized_entries(&self, agent: &SpiffeId) -> Vec<Arc<RegistrationEntry>> {
        let mut roots: Vec<&str> = Vec::new();
        let agent = agent.to_string();
        if let Some(node) = self.nodes.get(agent.as_str()) {
            for (alias_id, selectors) in &self.aliases {
                if selectors.is_subset_of(&node.selectors)
                    && let Some(alias) = self.entries.get(alias_id)
                {
                    roots.push(&alias.spiffe_id);
                }
            }
        }
        roots.push(&agent);
        let mut found: BTreeMap<&Arc<str>, &Held> = BTreeMap::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut queue: VecDeque<&str> = roots.into();
        while let Some(parent) = queue.pop_front() {
            if parent == &*self.server_id || !seen.insert(parent) {
                continue;
            }
            for id in self.by_parent.get(parent).into_iter().flat_map(IdSet::iter) {
                if let Some(held) = self.entries.get(id)
                    && found.insert(id, held).is_none()
                {
                    queue.push_back(&held.spiffe_id);
                }
            }
        }
        found
            .into_iter()
            .filter_map(|(id, held)| decoded(id, held))
            .map(Arc::new)
            .collect()
    }

    /// Whether `agent` may mint `entry_id`; returns the entry if so. Walks up the entry's
    /// parent chain (O(depth), not O(entries of the agent)); agrees with
    /// [`Self::authorized_entries`].
    pub fn authorized_entry(
        &self,
        agent: &SpiffeId,
        entry_id: &str,
    ) -> Option<Arc<RegistrationEntry>> {
        let (id, held) = self.entries.get_key_value(entry_id)?;
        let agent = agent.to_string();
        let node = self.nodes.get(agent.as_str());
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([&*held.parent_id]);
        while let Some(parent) = queue.pop_front() {
            if parent == &*self.server_id || !seen.insert(parent) {
                continue;
            }
            if parent == agent {
                return decoded(id, held).map(Arc::new);
            }
            for ancestor_id in self
                .by_spiffe_id
                .get(parent)
                .into_iter()
                .flat_map(IdSet::iter)
            {
                let Some(ancestor) = self.entries.get(ancestor_id) else {
                    continue;
                };
                if let Some(alias) = self.aliases.get(ancestor_id) {
                    if node.is_some_and(|node| alias.is_subset_of(&node.selectors)) {
                        return decoded(id, held).map(Arc::new);
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
        let start = entry.parent_id.to_string();
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([start.as_str()]);
        while let Some(parent) = queue.pop_front() {
            if parent == &*self.server_id || !seen.insert(parent) {
                continue;
            }
            if let Some(node) = self.nodes.get(parent) {
                agents.insert(node.id.clone());
            } else if let Ok(id) = parse_id(parent)
                && is_agent_id(&id)
            {
                agents.insert(id);
            }
            for ancestor_id in self
                .by_spiffe_id
                .get(parent)
                .into_iter()
                .flat_map(IdSet::iter)
            {
                let Some(ancestor) = self.entries.get(ancestor_id) else {
                    continue;
                };
                if let Some(alias) = self.aliases.get(ancestor_id) {
                    agents.extend(
                        self.nodes
                            .values()
                            .filter(|node| alias.is_subset_of(&node.selectors))
                            .map(|node| node.id.clone()),
                    );
                } else {
                    queue.push_back(&ancestor.parent_id);
                }
            }
        }
        agents
    }

    /// Whether an entry held expired before `before` (`expires_at` set and earlier).
    pub fn has_expired(&self, before: i64) -> bool {
        self.entries
            .values()
            .any(|e| expires_before(e.expires_at, before))
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

/// The held entry `id` decoded; a failure (a bug: see [`Held::decode`]) is logged and the
/// entry left out.
fn decoded(id: &str, held: &Held) -> Option<RegistrationEntry> {
    held.decode(id)
        .inspect_err(
            |error| tracing::error!(entry = id, %error, "a held registration entry did not decode"),
        )
        .ok()
}

/// Lists `id` under `key`.
fn list_under(map: &mut HashMap<Arc<str>, IdSet>, key: &Arc<str>, id: &Arc<str>) {
    match map.get_mut(key) {
        Some(set) => set.insert(Arc::clone(id)),
        None => {
            map.insert(Arc::clone(key), IdSet::One(Arc::clone(id)));
        }
    }
}

fn remove_from(map: &mut HashMap<Arc<str>, IdSet>, key: &str, id: &str) {
    if let Some(set) = map.get_mut(key)
        && set.remove(id)
    {
        map.remove(key);
    }
}

mod held;
mod id_set;
#[cfg(test)]
mod tests;
