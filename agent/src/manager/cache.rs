//! The manager's state and its pure decisions: which entries get an SVID (bounded by
//! `x509_svid_cache_max_size`, in-use entries always, then the most recently wanted), which
//! SVIDs must be (re)minted (missing, past their jittered half life, entry revision changed,
//! or chaining to a tainted authority), and the snapshot it all amounts to.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use signet_common::bundle::Bundle;
use signet_common::clock::from_unix_seconds;
use signet_common::entry::RegistrationEntry;
use signet_common::id::TrustDomain;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::manager::snapshot::{Snapshot, WorkloadSvid};
use crate::retry::retry_bound;

/// How long after its last `want` an entry counts as in use (never evicted). Workloads
/// holding a stream open call `want` again with each update they send.
pub const IN_USE_FOR: Duration = Duration::from_secs(600);

/// An SVID held for an entry, and when to renew it (its jitter drawn once, at mint time).
#[derive(Debug, Clone)]
pub struct Held {
    /// The SVID.
    pub svid: Arc<WorkloadSvid>,
    /// When it should be renewed.
    pub renew_at: SystemTime,
    /// When it arrived (its renewal times are reckoned from then, or from NotBefore if later).
    pub received_at: SystemTime,
    /// When it enters its last sixth of life (renewal is then retried every few seconds).
    pub urgent_at: SystemTime,
}

/// Everything the manager knows.
#[derive(Debug)]
pub struct Cache {
    /// Authorized entries, by ID.
    pub entries: BTreeMap<String, Arc<RegistrationEntry>>,
    /// SVIDs held, by entry ID.
    pub svids: BTreeMap<String, Held>,
    /// When each entry was last wanted.
    pub wanted: HashMap<String, SystemTime>,
    /// The own trust domain's bundle.
    pub bundle: Arc<Bundle>,
    /// Federated bundles, by trust domain.
    pub federated: BTreeMap<TrustDomain, Arc<Bundle>>,
    /// Whether a full sync has completed.
    pub synced: bool,
    max_svids: usize,
    tainted_keys: Vec<Vec<u8>>,
}

/// What to do next with SVIDs.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Entries to mint SVIDs for.
    pub mint: Vec<Arc<RegistrationEntry>>,
    /// Entry IDs whose SVIDs to drop to respect the bound.
    pub evict: Vec<String>,
}

impl Cache {
    /// An empty cache for `trust_domain`, holding at most `max_svids` SVIDs (softly).
    pub fn new(trust_domain: TrustDomain, max_svids: usize) -> Self {
        Self {
            entries: BTreeMap::new(),
            svids: BTreeMap::new(),
            wanted: HashMap::new(),
            bundle: Arc::new(Bundle::new(trust_domain)),
            federated: BTreeMap::new(),
            synced: false,
            max_svids: max_svids.max(1),
            tainted_keys: vec![],
        }
    }

    /// Replaces the entries; SVIDs and want marks of removed entries go. Logs what changed.
    pub fn set_entries(&mut self, entries: Vec<Arc<RegistrationEntry>>) {
        let next: BTreeMap<_, _> = entries.into_iter().map(|e| (e.id.clone(), e)).collect();
        for (id, e) in &next {
            match self.entries.get(id) {
                None => {
                    tracing::debug!(entry_id = %id, spiffe_id = %e.spiffe_id, "Entry created")
                }
                Some(old) if old != e => {
                    tracing::debug!(entry_id = %id, spiffe_id = %e.spiffe_id, revision = e.revision_number, "Entry updated")
                }
                Some(_) => {}
            }
        }
        for (id, e) in &self.entries {
            if !next.contains_key(id) {
                tracing::debug!(entry_id = %id, spiffe_id = %e.spiffe_id, "Entry deleted");
            }
        }
        self.svids.retain(|id, _| next.contains_key(id));
        self.wanted.retain(|id, _| next.contains_key(id));
        self.entries = next;
    }

    /// Replaces the own bundle (and remembers its tainted X.509 authorities).
    pub fn set_bundle(&mut self, bundle: Bundle) {
        self.tainted_keys = bundle
            .x509_authorities
            .iter()
            .filter(|a| a.tainted)
            .filter_map(|a| subject_key_id(&a.der))
            .collect();
        self.bundle = Arc::new(bundle);
    }

    /// The trust domains the entries federate with.
    pub fn federated_tds(&self) -> Vec<String> {
        let mut tds: Vec<_> = self
            .entries
            .values()
            .flat_map(|e| e.federates_with.iter().cloned())
            .collect();
        tds.sort_unstable();
        tds.dedup();
        tds
    }

    /// Marks entries as wanted at `now`; true if any of them has no SVID yet.
    pub fn want(&mut self, ids: impl IntoIterator<Item = String>, now: SystemTime) -> bool {
        let mut missing = false;
        for id in ids {
            if !self.entries.contains_key(&id) {
                continue;
            }
            missing |= !self.svids.contains_key(&id);
            self.wanted.insert(id, now);
        }
        missing
    }

    /// Which SVIDs to mint and which to evict at `now`.
    pub fn plan(&self, now: SystemTime) -> Plan {
        let in_use = |id: &str| self.wanted.get(id).is_some_and(|t| now < *t + IN_USE_FOR);
        let (mut keep, mut rest): (Vec<_>, Vec<_>) =
            self.entries.values().partition(|e| in_use(&e.id));
        // Others by priority: most recently wanted, then already held, then by ID.
        rest.sort_by_key(|e| {
            (
                Reverse(self.wanted.get(&e.id).copied().unwrap_or(UNIX_EPOCH)),
                !self.svids.contains_key(&e.id),
            )
        });
        let room = self.max_svids.saturating_sub(keep.len());
        keep.extend(rest.iter().take(room));
        let keep_ids: HashSet<&str> = keep.iter().map(|e| e.id.as_str()).collect();
        Plan {
            mint: keep
                .into_iter()
                .filter(|e| self.needs_mint(e, now))
                .cloned()
                .collect(),
            evict: self
                .svids
                .keys()
                .filter(|id| !keep_ids.contains(id.as_str()))
                .cloned()
                .collect(),
        }
    }

    fn needs_mint(&self, entry: &RegistrationEntry, now: SystemTime) -> bool {
        let Some(held) = self.svids.get(&entry.id) else {
            return true;
        };
        let minted_for = &held.svid.entry;
        minted_for.revision_number != entry.revision_number
            || minted_for.created_at != entry.created_at
            || now >= held.renew_at
            || self.is_tainted(&held.svid.chain)
    }

    /// Whether `chain` was signed by an authority the bundle marks tainted.
    pub fn is_tainted(&self, chain: &[impl AsRef<[u8]>]) -> bool {
        !self.tainted_keys.is_empty()
            && chain.iter().any(|c| {
                authority_key_id(c.as_ref()).is_some_and(|aki| self.tainted_keys.contains(&aki))
            })
    }

    /// The earliest instant after `now` at which something is due: a renewal or an expiry.
    /// Renewals already due are left out (they are retried after a backoff, not in a loop).
    pub fn next_deadline(&self, now: SystemTime) -> Option<SystemTime> {
        self.svids
            .values()
            .flat_map(|h| [h.renew_at, from_unix_seconds(h.svid.not_after)])
            .filter(|t| *t > now)
            .min()
    }

    /// The longest a retry after a failed sync may wait at `now` (see [`retry_bound`]): set
    /// by the held SVID closest to expiry, none if every held SVID has expired.
    pub fn retry_bound(&self, now: SystemTime) -> Option<Duration> {
        self.svids
            .values()
            .filter_map(|h| retry_bound(h.urgent_at, from_unix_seconds(h.svid.not_after), now))
            .min()
    }

    /// The snapshot of this state at `now` (expired SVIDs are not served).
    pub fn snapshot(&self, revision: u64, now: SystemTime) -> Snapshot {
        Snapshot {
            trust_domain: self.bundle.trust_domain.clone(),
            revision,
            synced: self.synced,
            bundle: Arc::clone(&self.bundle),
            federated: self.federated.clone(),
            entries: self.entries.values().cloned().collect(),
            svids: self
                .svids
                .iter()
                .filter(|(_, h)| from_unix_seconds(h.svid.not_after) > now)
                .map(|(id, h)| (id.clone(), Arc::clone(&h.svid)))
                .collect(),
        }
    }
}

fn subject_key_id(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

fn authority_key_id(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(k) => {
                k.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
}
