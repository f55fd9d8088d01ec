//! Registration entries inside sled transactions: the entry tree, its secondary indexes and
//! the keys they use (see the parent module's table).
//!
//! Index keys start with a short digest of the indexed value rather than the value itself:
//! sled keeps keys in every leaf and as bounds of its (small) pages, so long SPIFFE IDs
//! repeated in four trees made most of the store. A digest shared by two values only costs an
//! extra read: every look-up re-checks the entry it finds (`keep`).

use std::ops::Bound;
use std::sync::atomic::Ordering;

use aws_lc_rs::digest;
use signet_common::entry::RegistrationEntry;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use crate::datastore::StoreError;
use crate::datastore::codec::similarity_key;
use crate::datastore::sled::SledStore;
use crate::datastore::sled::codec::{
    PRESENT, TxResult, abort, backend, decode_entry, encode_entry, read_entry,
};

/// Bytes of SHA-256 that start an index key (the value's share of it).
const INDEX_DIGEST_LEN: usize = 8;
/// Bytes of SHA-256 of the similarity key that key the similar-entry index: long enough that
/// no two different keys share one (it is the look-up, not a hint).
const SIMILARITY_DIGEST_LEN: usize = 16;

/// The prefix of the index keys of entries indexed under `value`.
pub(super) fn index_prefix(value: &str) -> Vec<u8> {
    let mut prefix = digest::digest(&digest::SHA256, value.as_bytes())
        .as_ref()
        .to_vec();
    prefix.truncate(INDEX_DIGEST_LEN);
    prefix
}

/// The similar-entry index's key of `entry`.
fn similarity_digest(entry: &RegistrationEntry) -> Vec<u8> {
    let key = similarity_key(entry);
    let mut out = digest::digest(&digest::SHA256, &key).as_ref().to_vec();
    out.truncate(SIMILARITY_DIGEST_LEN);
    out
}

impl SledStore {
    /// Runs `f` as one transaction over the entry tree and all its indexes, then flushes.
    /// `f` may run more than once if a concurrent transaction conflicts. Once it has
    /// committed, the maintained entry count moves by `added(&result)`.
    pub(super) async fn entry_transaction<T>(
        &self,
        f: impl Fn(&EntryTx<'_>) -> TxResult<T>,
        added: impl FnOnce(&T) -> i64,
    ) -> Result<T, StoreError> {
        let out = self.transact(f)?;
        self.entry_count.fetch_add(added(&out), Ordering::SeqCst);
        self.flush().await?;
        Ok(out)
    }

    /// Runs `f` as one transaction over the entry tree and all its indexes, without
    /// flushing or counting.
    pub(super) fn transact<T>(
        &self,
        f: impl Fn(&EntryTx<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let trees = (
            &self.entries,
            &self.by_parent,
            &self.by_spiffe_id,
            &self.by_selector,
            &self.by_similarity,
        );
        trees
            .transaction(
                |(entries, by_parent, by_spiffe_id, by_selector, by_similarity)| {
                    f(&EntryTx {
                        entries,
                        by_parent,
                        by_spiffe_id,
                        by_selector,
                        by_similarity,
                    })
                },
            )
            .map_err(|error| match error {
                TransactionError::Abort(error) => error,
                TransactionError::Storage(error) => backend(error),
            })
    }

    /// Up to `limit` entries with IDs after `after`, in ID order: a range scan of the
    /// entry tree.
    pub(super) fn entries_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let range = self
            .entries
            .range::<&[u8], _>((Bound::Excluded(after.as_bytes()), Bound::Unbounded));
        super::codec::decode_entries(range.take(limit))
    }

    /// Up to `limit` of the entries listed under `value` in `index` with IDs after `after`,
    /// in ID order (a range scan of the index from `after`), that still satisfy `keep`.
    pub(super) fn entries_by_index_after(
        &self,
        index: &Tree,
        value: &str,
        after: &str,
        limit: usize,
        keep: impl Fn(&RegistrationEntry) -> bool,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let prefix = index_prefix(value);
        let mut start = prefix.clone();
        start.extend_from_slice(after.as_bytes());
        let mut found = Vec::new();
        for item in index.range::<&[u8], _>((Bound::Excluded(start.as_slice()), Bound::Unbounded)) {
            let (key, _) = item.map_err(backend)?;
            if found.len() >= limit || !key.starts_with(&prefix) {
                break;
            }
            if let Some(entry) = self.indexed_entry(&key[prefix.len()..])?
                && keep(&entry)
            {
                found.push(entry);
            }
        }
        Ok(found)
    }

    /// The entry an index key's ID part names, if it still exists.
    fn indexed_entry(&self, id: &[u8]) -> Result<Option<RegistrationEntry>, StoreError> {
        if std::str::from_utf8(id).is_err() {
            return Err(StoreError::Corrupt(
                "entry index key is not an entry ID".into(),
            ));
        }
        read_entry(&self.entries, id)
    }

    /// The entries listed under `value` in `index` that still satisfy `keep` (an entry may
    /// change between reading the index and reading the entry).
    pub(super) fn entries_by_index(
        &self,
        index: &Tree,
        value: &str,
        keep: impl Fn(&RegistrationEntry) -> bool,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let prefix = index_prefix(value);
        let mut found = Vec::new();
        for item in index.scan_prefix(&prefix) {
            let (key, _) = item.map_err(backend)?;
            let id = key.get(prefix.len()..).unwrap_or_default();
            if let Some(entry) = self.indexed_entry(id)?
                && keep(&entry)
            {
                found.push(entry);
            }
        }
        Ok(found)
    }
}

// === impl EntryTx ===

/// The entry tree and its indexes inside one transaction.
pub(super) struct EntryTx<'a> {
    pub(super) entries: &'a TransactionalTree,
    by_parent: &'a TransactionalTree,
    by_spiffe_id: &'a TransactionalTree,
    by_selector: &'a TransactionalTree,
    by_similarity: &'a TransactionalTree,
}

impl EntryTx<'_> {
    pub(super) fn entry(&self, id: &str) -> TxResult<Option<RegistrationEntry>> {
        let Some(bytes) = self.entries.get(id.as_bytes())? else {
            return Ok(None);
        };
        decode_entry(id.as_bytes(), &bytes)
            .map(Some)
            .map_err(ConflictableTransactionError::Abort)
    }

    /// The stored entry with the same SPIFFE ID, parent and selector set as `entry`, if any.
    pub(super) fn similar_to(
        &self,
        entry: &RegistrationEntry,
    ) -> TxResult<Option<RegistrationEntry>> {
        let Some(id) = self.by_similarity.get(similarity_digest(entry))? else {
            return Ok(None);
        };
        let stored = match std::str::from_utf8(&id) {
            Ok(id) => self.entry(id)?,
            Err(_) => None,
        };
        match stored {
            Some(stored) if stored.is_similar(entry) => Ok(Some(stored)),
            Some(stored) => abort(StoreError::Corrupt(format!(
                "similar-entry index: entry {} shares the digest of entry {} without being similar",
                stored.id, entry.id
            ))),
            None => abort(StoreError::Corrupt(
                "similar-entry index names no entry".into(),
            )),
        }
    }

    /// Stores `entry` and its index keys.
    pub(super) fn put(&self, entry: &RegistrationEntry) -> TxResult<()> {
        self.entries
            .insert(entry.id.as_bytes(), encode_entry(entry))?;
        for (tree, key) in self.index_keys(entry) {
            tree.insert(key, PRESENT)?;
        }
        self.by_similarity
            .insert(similarity_digest(entry), entry.id.as_bytes())?;
        Ok(())
    }

    /// Removes `entry` (as stored) and its index keys.
    pub(super) fn remove(&self, entry: &RegistrationEntry) -> TxResult<()> {
        self.entries.remove(entry.id.as_bytes())?;
        for (tree, key) in self.index_keys(entry) {
            tree.remove(key)?;
        }
        self.by_similarity.remove(similarity_digest(entry))?;
        Ok(())
    }

    fn index_keys(&self, entry: &RegistrationEntry) -> Vec<(&TransactionalTree, Vec<u8>)> {
        let index_key = |value: &str| {
            let mut key = index_prefix(value);
            key.extend_from_slice(entry.id.as_bytes());
            key
        };
        let mut keys = vec![
            (self.by_parent, index_key(&entry.parent_id.to_string())),
            (self.by_spiffe_id, index_key(&entry.spiffe_id.to_string())),
        ];
        keys.extend(
            entry
                .selectors
                .iter()
                .map(|s| (self.by_selector, index_key(&s.to_string()))),
        );
        keys
    }
}
