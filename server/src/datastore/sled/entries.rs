//! Registration entries inside sled transactions: the entry tree, its secondary indexes and
//! the keys they use (see the parent module's table).

use std::ops::Bound;
use std::sync::atomic::Ordering;

use signet_common::entry::RegistrationEntry;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::{Transactional, Tree};

use crate::datastore::StoreError;
pub(super) use crate::datastore::codec::length_prefixed;
use crate::datastore::codec::similarity_key;
use crate::datastore::sled::SledStore;
use crate::datastore::sled::codec::{PRESENT, TxResult, abort, backend, decode, encode, read};

impl SledStore {
    /// Runs `f` as one transaction over the entry tree and all its indexes, then flushes.
    /// `f` may run more than once if a concurrent transaction conflicts. Once it has
    /// committed, the maintained entry count moves by `added(&result)`.
    pub(super) async fn entry_transaction<T>(
        &self,
        f: impl Fn(&EntryTx<'_>) -> TxResult<T>,
        added: impl FnOnce(&T) -> i64,
    ) -> Result<T, StoreError> {
        let trees = (
            &self.entries,
            &self.by_parent,
            &self.by_spiffe_id,
            &self.by_selector,
            &self.by_similarity,
        );
        let out = trees
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
            })?;
        self.entry_count.fetch_add(added(&out), Ordering::SeqCst);
        self.flush().await?;
        Ok(out)
    }

    /// Up to `limit` entries with IDs after `after`, in ID order: a range scan of the
    /// entry tree.
    pub(super) fn entries_after(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries
            .range::<&[u8], _>((Bound::Excluded(after.as_bytes()), Bound::Unbounded))
            .values()
            .take(limit)
            .map(|bytes| decode("entry", &bytes.map_err(backend)?))
            .collect()
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
        let prefix = length_prefixed(value);
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
        let id = std::str::from_utf8(id)
            .map_err(|_| StoreError::Corrupt("entry index key is not an entry ID".into()))?;
        read::<RegistrationEntry>(&self.entries, id.as_bytes(), "entry")
    }

    /// The entries listed under `value` in `index` that still satisfy `keep` (an entry may
    /// change between reading the index and reading the entry).
    pub(super) fn entries_by_index(
        &self,
        index: &Tree,
        value: &str,
        keep: impl Fn(&RegistrationEntry) -> bool,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let prefix = length_prefixed(value);
        let mut found = Vec::new();
        for item in index.scan_prefix(&prefix) {
            let (key, _) = item.map_err(backend)?;
            let id = key
                .get(prefix.len()..)
                .and_then(|id| std::str::from_utf8(id).ok())
                .ok_or_else(|| StoreError::Corrupt("entry index key is not an entry ID".into()))?;
            if let Some(entry) = read::<RegistrationEntry>(&self.entries, id.as_bytes(), "entry")?
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
        decode("entry", &bytes)
            .map(Some)
            .map_err(ConflictableTransactionError::Abort)
    }

    /// The stored entry with the same SPIFFE ID, parent and selector set as `entry`, if any.
    pub(super) fn similar_to(
        &self,
        entry: &RegistrationEntry,
    ) -> TxResult<Option<RegistrationEntry>> {
        let Some(id) = self.by_similarity.get(similarity_key(entry))? else {
            return Ok(None);
        };
        let stored = match std::str::from_utf8(&id) {
            Ok(id) => self.entry(id)?,
            Err(_) => None,
        };
        match stored {
            Some(stored) => Ok(Some(stored)),
            None => abort(StoreError::Corrupt(
                "similar-entry index names no entry".into(),
            )),
        }
    }

    /// Stores `entry` and its index keys.
    pub(super) fn put(&self, entry: &RegistrationEntry) -> TxResult<()> {
        let json = encode(entry).map_err(ConflictableTransactionError::Abort)?;
        self.entries.insert(entry.id.as_bytes(), json)?;
        for (tree, key) in self.index_keys(entry) {
            tree.insert(key, PRESENT)?;
        }
        self.by_similarity
            .insert(similarity_key(entry), entry.id.as_bytes())?;
        Ok(())
    }

    /// Removes `entry` (as stored) and its index keys.
    pub(super) fn remove(&self, entry: &RegistrationEntry) -> TxResult<()> {
        self.entries.remove(entry.id.as_bytes())?;
        for (tree, key) in self.index_keys(entry) {
            tree.remove(key)?;
        }
        self.by_similarity.remove(similarity_key(entry))?;
        Ok(())
    }

    fn index_keys(&self, entry: &RegistrationEntry) -> Vec<(&TransactionalTree, Vec<u8>)> {
        let index_key = |value: &str| {
            let mut key = length_prefixed(value);
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
