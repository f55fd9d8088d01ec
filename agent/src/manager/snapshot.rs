//! What the manager publishes: an immutable snapshot of everything workloads may be served,
//! replaced as a whole (through a `tokio::sync::watch`) whenever anything changes.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::selector::SelectorSet;

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
/// every entry. Two more indexes, by SPIFFE ID and by hint, let a request for one SPIFFE ID
/// (FetchJWTSVID's `spiffe_id`) look only at that ID's entries. The indexes are built the
/// first time a caller is looked up in a snapshot, once for all the streams that look at it.
#[derive(Debug, Clone, Default)]
pub struct Authorized {
    list: Vec<Arc<RegistrationEntry>>,
    index: OnceLock<Indexes>,
}

/// Positions in an entry list by the hash of a key of each entry, sorted by hash.
#[derive(Debug, Clone)]
struct Index(Vec<(u64, usize)>);

impl Index {
    /// The entries of `list` that have a key, by `key`'s hash.
    fn new<'a, K: Hash>(
        hasher: &RandomState,
        list: &'a [Arc<RegistrationEntry>],
        key: impl Fn(&'a RegistrationEntry) -> Option<K>,
    ) -> Self {
        let mut by_hash: Vec<(u64, usize)> = list
            .iter()
            .enumerate()
            .filter_map(|(i, e)| key(e.as_ref()).map(|k| (hasher.hash_one(k), i)))
            .collect();
        by_hash.sort_unstable();
        Self(by_hash)
    }

    /// Positions of the entries whose key may be the one hashing to `hash`.
    fn get(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let from = self.0.partition_point(|&(h, _)| h < hash);
        self.0[from..]
            .iter()
            .take_while(move |&&(h, _)| h == hash)
            .map(|&(_, i)| i)
    }
}

#[derive(Debug, Clone)]
struct Indexes {
    hasher: RandomState,
    /// By each entry's smallest selector.
    by_first: Index,
    /// Positions of entries without selectors.
    unconditional: Vec<usize>,
    by_id: Index,
    /// Entries with a non-empty hint, by hint.
    by_hint: Index,
}

impl Indexes {
    fn new(list: &[Arc<RegistrationEntry>]) -> Self {
        let hasher = RandomState::new();
        let unconditional = (0..list.len())
            .filter(|&i| list[i].selectors.is_empty())
            .collect();
        Self {
            by_first: Index::new(&hasher, list, |e| e.selectors.iter().next()),
            by_id: Index::new(&hasher, list, |e| Some(&e.spiffe_id)),
            by_hint: Index::new(&hasher, list, |e| {
                (!e.hint.is_empty()).then_some(e.hint.as_str())
            }),
            unconditional,
            hasher,
        }
    }
}

impl Authorized {
    fn indexes(&self) -> &Indexes {
        self.index.get_or_init(|| Indexes::new(&self.list))
    }

    /// The entries whose selectors are all among `selectors`, ordered by entry ID.
    pub fn matching(&self, selectors: &SelectorSet) -> Vec<Arc<RegistrationEntry>> {
        let index = self.indexes();
        let found = selectors
            .iter()
            .flat_map(|s| index.by_first.get(index.hasher.hash_one(s)))
            .chain(index.unconditional.iter().copied());
        self.in_order(found.filter(|&i| self.list[i].matches(selectors)))
    }

    /// The entries with SPIFFE ID `id` whose selectors are all among `selectors`, ordered
    /// by entry ID.
    fn matching_id(&self, selectors: &SelectorSet, id: &SpiffeId) -> Vec<usize> {
        let index = self.indexes();
        let found = index.by_id.get(index.hasher.hash_one(id)).filter(|&i| {
            let e = &self.list[i];
            e.spiffe_id == *id && e.matches(selectors)
        });
        let mut found: Vec<usize> = found.collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Of the entries with hint `hint` whose selectors are all among `selectors`, the
    /// position of the oldest (then lowest ID).
    fn hint_winner(&self, selectors: &SelectorSet, hint: &str) -> Option<usize> {
        let index = self.indexes();
        index
            .by_hint
            .get(index.hasher.hash_one(hint))
            .filter(|&i| self.list[i].hint == hint && self.list[i].matches(selectors))
            .min_by(|&a, &b| {
                let (a, b) = (&self.list[a], &self.list[b]);
                (a.created_at, &a.id).cmp(&(b.created_at, &b.id))
            })
    }

    /// The entries at `positions`, once each, in list order.
    fn in_order(&self, positions: impl Iterator<Item = usize>) -> Vec<Arc<RegistrationEntry>> {
        let mut found: Vec<usize> = positions.collect();
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

    /// What [`Snapshot::entries_for`] gives for `selectors`, of SPIFFE ID `id` only; it
    /// looks only at the entries with that ID and at those sharing their hints.
    pub fn entries_for_id(
        &self,
        selectors: &SelectorSet,
        id: &SpiffeId,
    ) -> Vec<Arc<RegistrationEntry>> {
        let entries = &self.entries;
        let found = entries.matching_id(selectors, id).into_iter().filter(|&i| {
            let hint = &entries.list[i].hint;
            hint.is_empty() || entries.hint_winner(selectors, hint) == Some(i)
        });
        entries.in_order(found)
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
