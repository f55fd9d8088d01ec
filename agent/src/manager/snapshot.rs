//! What the manager publishes: an immutable snapshot of everything workloads may be served,
//! replaced as a whole (through a `tokio::sync::watch`) whenever anything changes.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id::TrustDomain;
use signet_common::selector::{Selector, SelectorSet};

/// An X509-SVID held for one registration entry. Its DER and key are held once and shared
/// (reference counted) by every response that carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSvid {
    /// The entry it was minted for.
    pub entry: Arc<RegistrationEntry>,
    /// Certificate chain, leaf first, DER each (slices of `chain_der`).
    pub chain: Vec<Bytes>,
    /// The chain's certificates concatenated, as the Workload API serves them.
    pub chain_der: Bytes,
    /// The private key, PKCS#8 DER.
    pub key_pkcs8: Bytes,
    /// Leaf NotBefore, Unix seconds.
    pub not_before: i64,
    /// Leaf NotAfter, Unix seconds.
    pub not_after: i64,
}

impl WorkloadSvid {
    /// The SVID of `entry` with `chain` (leaf first) and `key_pkcs8`.
    pub fn new(
        entry: Arc<RegistrationEntry>,
        chain: &[Vec<u8>],
        key_pkcs8: Vec<u8>,
        not_before: i64,
        not_after: i64,
    ) -> Self {
        let chain_der = Bytes::from(chain.concat());
        let mut at = 0;
        let chain = chain
            .iter()
            .map(|c| {
                let cert = chain_der.slice(at..at + c.len());
                at += c.len();
                cert
            })
            .collect();
        Self {
            entry,
            chain,
            chain_der,
            key_pkcs8: Bytes::from(key_pkcs8),
            not_before,
            not_after,
        }
    }
}

/// The entries an agent is authorized for, ordered by entry ID, with an index by each
/// entry's smallest selector: an entry applies to a caller only if the caller has that
/// selector, so finding a caller's entries looks at the entries its selectors name, not at
/// every entry. The index is built the first time a caller is looked up in a snapshot, once
/// for all the streams that look at it.
#[derive(Debug, Clone, Default)]
pub struct Authorized {
    list: Vec<Arc<RegistrationEntry>>,
    index: OnceLock<Index>,
}

/// Positions in an entry list by the hash of each entry's smallest selector.
#[derive(Debug, Clone)]
struct Index {
    hasher: RandomState,
    /// (hash, position), sorted.
    by_first: Vec<(u64, usize)>,
    /// Positions of entries without selectors.
    unconditional: Vec<usize>,
}

impl Index {
    fn new(list: &[Arc<RegistrationEntry>]) -> Self {
        let hasher = RandomState::new();
        let mut by_first = Vec::with_capacity(list.len());
        let mut unconditional = Vec::new();
        for (i, e) in list.iter().enumerate() {
            match e.selectors.iter().next() {
                Some(first) => by_first.push((hasher.hash_one(first), i)),
                None => unconditional.push(i),
            }
        }
        by_first.sort_unstable();
        Self {
            hasher,
            by_first,
            unconditional,
        }
    }

    /// Positions of the entries whose smallest selector may be `selector`.
    fn first(&self, selector: &Selector) -> impl Iterator<Item = usize> + '_ {
        let hash = self.hasher.hash_one(selector);
        let from = self.by_first.partition_point(|&(h, _)| h < hash);
        self.by_first[from..]
            .iter()
            .take_while(move |&&(h, _)| h == hash)
            .map(|&(_, i)| i)
    }
}

impl Authorized {
    /// The entries whose selectors are all among `selectors`, ordered by entry ID.
    pub fn matching(&self, selectors: &SelectorSet) -> Vec<Arc<RegistrationEntry>> {
        let index = self.index.get_or_init(|| Index::new(&self.list));
        let mut found: Vec<usize> = selectors
            .iter()
            .flat_map(|s| index.first(s))
            .chain(index.unconditional.iter().copied())
            .filter(|&i| self.list[i].matches(selectors))
            .collect();
        found.sort_unstable();
        found.dedup();
        found
            .into_iter()
            .map(|i| Arc::clone(&self.list[i]))
            .collect()
    }
}

impl From<Vec<Arc<RegistrationEntry>>> for Authorized {
    fn from(list: Vec<Arc<RegistrationEntry>>) -> Self {
        Self {
            list,
            index: OnceLock::new(),
        }
    }
}

impl FromIterator<Arc<RegistrationEntry>> for Authorized {
    fn from_iter<I: IntoIterator<Item = Arc<RegistrationEntry>>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl Deref for Authorized {
    type Target = [Arc<RegistrationEntry>];

    fn deref(&self) -> &Self::Target {
        &self.list
    }
}

/// Equal when they hold the same entries (the index follows from them).
impl PartialEq for Authorized {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for Authorized {}

/// Everything the agent can serve, at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The agent's trust domain.
    pub trust_domain: TrustDomain,
    /// Bumped on every published change.
    pub revision: u64,
    /// Whether the first sync with the server has completed (before that, callers wait).
    pub synced: bool,
    /// The own trust domain's bundle.
    pub bundle: Arc<Bundle>,
    /// Federated bundles the authorized entries refer to, by trust domain.
    pub federated: BTreeMap<TrustDomain, Arc<Bundle>>,
    /// Every entry the agent is authorized for, ordered by entry ID.
    pub entries: Authorized,
    /// SVIDs held, by entry ID.
    pub svids: BTreeMap<String, Arc<WorkloadSvid>>,
}

impl Snapshot {
    /// What the metrics show of it.
    pub fn held(&self) -> crate::metrics::Held {
        crate::metrics::Held {
            svids: self.svids.len(),
            entries: self.entries.len(),
            soonest_not_after: self.svids.values().map(|s| s.not_after).min(),
        }
    }

    /// An empty, not yet synced snapshot.
    pub fn empty(trust_domain: TrustDomain) -> Self {
        Self {
            bundle: Arc::new(Bundle::new(trust_domain.clone())),
            trust_domain,
            revision: 0,
            synced: false,
            federated: BTreeMap::new(),
            entries: Authorized::default(),
            svids: BTreeMap::new(),
        }
    }

    /// Entries whose selectors are all among `selectors`, ordered by entry ID, with
    /// duplicate non-empty hints removed (the oldest entry, then the lower ID, wins).
    pub fn entries_for(&self, selectors: &SelectorSet) -> Vec<Arc<RegistrationEntry>> {
        let matching = self.entries.matching(selectors);
        let mut winners: BTreeMap<&str, &Arc<RegistrationEntry>> = BTreeMap::new();
        for e in &matching {
            if e.hint.is_empty() {
                continue;
            }
            let keep = winners
                .get(e.hint.as_str())
                .is_none_or(|w| (e.created_at, &e.id) < (w.created_at, &w.id));
            if keep {
                winners.insert(e.hint.as_str(), e);
            }
        }
        matching
            .iter()
            .filter(|e| {
                e.hint.is_empty() || winners.get(e.hint.as_str()).is_some_and(|w| w.id == e.id)
            })
            .cloned()
            .collect()
    }

    /// The SVIDs for `entries`; `None` while any of them has no SVID yet.
    pub fn svids_for(&self, entries: &[Arc<RegistrationEntry>]) -> Option<Vec<Arc<WorkloadSvid>>> {
        entries
            .iter()
            .map(|e| self.svids.get(&e.id).cloned())
            .collect()
    }

    /// The federated bundles named by `entries`' `federates_with` (those the agent has).
    pub fn federated_for(
        &self,
        entries: &[Arc<RegistrationEntry>],
    ) -> BTreeMap<TrustDomain, Arc<Bundle>> {
        let mut out = BTreeMap::new();
        for e in entries {
            for td in &e.federates_with {
                if let Some((k, b)) = self.federated.iter().find(|(k, _)| k.as_str() == td) {
                    out.insert(k.clone(), Arc::clone(b));
                }
            }
        }
        out
    }
}
