//! The `DataStore` seam: everything the server persists. Every write the API acknowledges
//! is durable before the method returns. Implementations: `sled` (embedded default).
//! `suite` is the conformance test suite every implementation must pass; `testing` has the
//! stores tests use (the real ones, plus a failure-injecting wrapper).

use std::fmt::Debug;

use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use signet_common::selector::Selector;

use crate::relationship::Relationship;

pub(crate) mod codec;
pub mod postgres;
pub mod sled;
#[cfg(test)]
pub(crate) mod suite;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod token_digest;

/// A join token as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinToken {
    /// The secret token value.
    pub token: String,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

/// What a committed change was about (a row of a shared store's change log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The registration entry with this ID was created, updated or deleted.
    Entry,
    /// The attested node with this SPIFFE ID was created, updated or deleted.
    Node,
    /// The bundle of this trust domain was created, updated or deleted.
    Bundle,
}

/// One committed change, in commit order (`seq` increases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Position in the log.
    pub seq: i64,
    /// What changed.
    pub kind: ChangeKind,
    /// The entry ID, node SPIFFE ID or trust domain.
    pub key: String,
}

/// What [`DataStore::changes_after`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// The changes after the position asked for, oldest first (maybe none).
    Rows(Vec<Change>),
    /// Changes after the position were pruned: the reader must reload everything.
    Pruned,
}

/// Which entries [`DataStore::entries_page`] walks, in entry ID order.
#[derive(Debug, Clone, Copy)]
pub enum EntryScan<'a> {
    /// Every entry.
    All,
    /// Entries whose parent is this ID.
    Parent(&'a SpiffeId),
    /// Entries whose SPIFFE ID is this ID.
    SpiffeId(&'a SpiffeId),
    /// Entries that have this selector among theirs.
    Selector(&'a Selector),
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A record with the same key (or a similar entry) exists; carries a description.
    #[error("{0}")]
    AlreadyExists(String),
    /// A similar entry (same SPIFFE ID, parent and selectors) exists; carries it.
    #[error("similar entry already exists")]
    SimilarEntry(Box<RegistrationEntry>),
    /// The stored bytes could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The backend failed.
    #[error("datastore error: {0}")]
    Backend(String),
    /// The database cannot be reached (down, restarting, or the pool is exhausted); the
    /// call changed nothing and may be retried.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// The database's schema is not one this binary can use (newer, or migrations are off
    /// and it is older).
    #[error("{0}")]
    Schema(String),
}

/// Everything the server persists, grouped by noun as SPIRE's DataStore is.
///
/// Methods are async: a networked backend waits on its database, the embedded one on its
/// flush. Every method that changes state has made the change durable before it returns
/// `Ok`.
#[async_trait::async_trait]
pub trait DataStore: Send + Sync + Debug {
    // === Registration entries ===

    /// Stores a new entry exactly as given (the caller assigns id, created_at, revision 0).
    /// Fails with `AlreadyExists` if the ID is taken and `SimilarEntry` if an entry with the
    /// same SPIFFE ID, parent ID and selector set exists.
    async fn create_entry(&self, entry: RegistrationEntry)
    -> Result<RegistrationEntry, StoreError>;
    /// Replaces the entry with the same ID, setting `revision_number` to the stored one + 1
    /// and keeping the stored `created_at`. `NotFound` if absent; `SimilarEntry` if the
    /// update would duplicate another entry.
    async fn update_entry(&self, entry: RegistrationEntry)
    -> Result<RegistrationEntry, StoreError>;
    /// Deletes an entry and returns it. `NotFound` if absent.
    async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry, StoreError>;
    /// The entry with this ID, if any.
    async fn entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError>;
    /// Every entry, ordered by ID.
    async fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError>;
    /// Entries whose parent is `parent`, ordered by ID (index lookup, not a scan).
    async fn entries_by_parent(
        &self,
        parent: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError>;
    /// Entries whose SPIFFE ID is `id`, ordered by ID (index lookup, not a scan).
    async fn entries_by_spiffe_id(
        &self,
        id: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError>;
    /// Entries that have `selector` among theirs, ordered by ID (index lookup, not a scan).
    async fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError>;
    /// Up to `limit` entries of `scan` whose IDs sort after `after` (from the first when
    /// empty), ordered by ID: one page of a listing, read as a range scan from `after`
    /// rather than by reading everything. The default reads the whole set (correct for any
    /// store; stores override it).
    async fn entries_page(
        &self,
        scan: EntryScan<'_>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let all = match scan {
            EntryScan::All => self.list_entries().await?,
            EntryScan::Parent(id) => self.entries_by_parent(id).await?,
            EntryScan::SpiffeId(id) => self.entries_by_spiffe_id(id).await?,
            EntryScan::Selector(s) => self.entries_by_selector(s).await?,
        };
        Ok(all
            .into_iter()
            .filter(|e| e.id.as_str() > after)
            .take(limit)
            .collect())
    }
    /// How many entries there are, without reading them (a maintained count or the
    /// database's). The default counts a full listing; stores override it.
    async fn count_entries(&self) -> Result<u64, StoreError> {
        Ok(self.list_entries().await?.len() as u64)
    }
    /// Deletes entries with `0 < expires_at < before`; returns them.
    async fn prune_entries(&self, before: i64) -> Result<Vec<RegistrationEntry>, StoreError>;

    // === Attested nodes ===

    /// Creates or replaces the node record with this SPIFFE ID.
    async fn put_node(&self, node: AttestedNode) -> Result<AttestedNode, StoreError>;
    /// The node with this SPIFFE ID, if any.
    async fn node(&self, id: &SpiffeId) -> Result<Option<AttestedNode>, StoreError>;
    /// Every node, ordered by SPIFFE ID.
    async fn list_nodes(&self) -> Result<Vec<AttestedNode>, StoreError>;
    /// Deletes a node and returns it. `NotFound` if absent.
    async fn delete_node(&self, id: &SpiffeId) -> Result<AttestedNode, StoreError>;

    // === Join tokens ===

    /// Stores a token. `AlreadyExists` if the value is taken.
    async fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError>;
    /// Atomically removes and returns the token (single use), or `None` if absent.
    async fn take_join_token(&self, token: &str) -> Result<Option<JoinToken>, StoreError>;
    /// Deletes tokens with `expires_at < before`; returns how many.
    async fn prune_join_tokens(&self, before: i64) -> Result<usize, StoreError>;

    // === Bundles (own and federated) ===

    /// The bundle of `td`, if any.
    async fn bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError>;
    /// Every bundle, ordered by trust domain.
    async fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError>;
    /// Stores a new bundle. `AlreadyExists` if one exists for the trust domain.
    async fn create_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError>;
    /// Replaces an existing bundle. `NotFound` if absent.
    async fn update_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError>;
    /// Creates or replaces.
    async fn set_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError>;
    /// Applies `f` to the stored bundle (or to an empty one if absent) atomically and stores
    /// the result when `f` returns true; returns the bundle as stored afterwards (the empty
    /// one, unstored, if it was absent and `f` returned false). `f` may run more than once,
    /// each time on a freshly read bundle, if another writer got in first; the result is
    /// stored as is (bumping `sequence_number` is up to `f`).
    async fn update_bundle_with(
        &self,
        td: &TrustDomain,
        f: &mut (dyn for<'b> FnMut(&'b mut Bundle) -> bool + Send),
    ) -> Result<Bundle, StoreError>;
    /// Deletes a bundle and returns it. `NotFound` if absent.
    async fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError>;

    // === Federation relationships (dynamic ones; static ones live in the config) ===

    /// Stores a new relationship. `AlreadyExists` if one exists for its trust domain.
    async fn create_federation(&self, rel: Relationship) -> Result<Relationship, StoreError>;
    /// Replaces the relationship for its trust domain. `NotFound` if absent.
    async fn update_federation(&self, rel: Relationship) -> Result<Relationship, StoreError>;
    /// Deletes the relationship with `td` and returns it. `NotFound` if absent.
    async fn delete_federation(&self, td: &TrustDomain) -> Result<Relationship, StoreError>;
    /// The relationship with `td`, if any.
    async fn federation(&self, td: &TrustDomain) -> Result<Option<Relationship>, StoreError>;
    /// Every relationship, ordered by trust domain.
    async fn list_federations(&self) -> Result<Vec<Relationship>, StoreError>;

    // === CA journal ===

    /// The CA journal stored under `key` (one per server), if any.
    async fn ca_journal(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores the CA journal under `key`.
    async fn set_ca_journal(&self, key: &str, data: &[u8]) -> Result<(), StoreError>;

    // === Change log (stores shared by several servers) ===

    /// The position of the newest committed change, or `None` if this store has no change
    /// log (it is not shared: this server's own writes are all there is).
    async fn change_position(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    /// Up to `limit` changes committed after `after`, in commit order.
    async fn changes_after(&self, after: i64, limit: i64) -> Result<Changes, StoreError> {
        let _ = (after, limit);
        Ok(Changes::Rows(Vec::new()))
    }

    /// Ticks when changes may have been committed (PostgreSQL's `NOTIFY`); `None` if the
    /// store cannot tell (then readers poll).
    fn change_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Deletes change log rows older than `retention`; returns how many.
    async fn prune_changes(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        let _ = retention;
        Ok(0)
    }
}
