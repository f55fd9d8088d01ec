//! The embedded default `DataStore`: one sled database with a tree per noun, plus secondary
//! indexes over registration entries that multi-tree transactions keep consistent with the
//! primary tree.
//!
//! Trees and their keys (`d8(x)` is the first 8 bytes of SHA-256 of `x`: a prefix scan over
//! `d8(x)` finds the keys for `x`, and perhaps a few for another value, which every look-up
//! drops by re-checking the entry; `d16` likewise, 16 bytes, taken as unique):
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `entries` | entry ID | protobuf `spire.api.types.Entry` without its ID |
//! | `entries_by_parent` | `d8(parent ID)` ++ entry ID | empty |
//! | `entries_by_spiffe_id` | `d8(SPIFFE ID)` ++ entry ID | empty |
//! | `entries_by_selector` | `d8(type:value)` ++ entry ID | empty |
//! | `entries_by_similarity` | `d16(lp(SPIFFE ID) lp(parent ID) lp(selector)...)` | entry ID |
//! | `nodes` | SPIFFE ID | JSON `AttestedNode` |
//! | `join_tokens` | keyed digest of the token (`token_digest`) | JSON `{"expires_at": n}` |
//! | `bundles` | trust domain name | JSON `Bundle` |
//! | `ca_journals` | journal key | the journal bytes |
//! | `federations` | trust domain name | JSON federation `Relationship` |
//!
//! Every successful write flushes the database before returning. The database lives in
//! `sled3/` under the store directory, with 8 MiB log segments (sled's default of 512 KiB left
//! the store at 1.7 times the size for the same records) and a bounded page cache. A store of
//! an older layout (`sled/`, schema 1 or 2, JSON entries) is copied into that form at open
//! (`migrate`, which says why that is crash-safe).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use serde::de::DeserializeOwned;
use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use signet_common::private_dir::{PrivateDirError, ensure_private_dir};
use signet_common::selector::Selector;
use sled::Tree;

use crate::relationship::Relationship;

use crate::datastore::sled::codec::{
    abort, backend, decode, decode_all, decode_entries, encode, read, read_entry,
};
use crate::datastore::token_digest::join_token_digest;
use crate::datastore::{DataStore, EntryScan, JoinToken, StoreError};

mod codec;
mod entries;
mod federations;
mod migrate;

/// The sled database's directory under the directory given to [`SledStore::open`].
pub(crate) const DB_DIR: &str = "sled3";
/// Key, in the default tree, of the on-disk layout version.
const SCHEMA_KEY: &[u8] = b"schema_version";
/// The layout described in the module docs.
const SCHEMA_VERSION: &[u8] = b"3";
/// sled's log segment size for this layout (fixed for a database once created).
const SEGMENT_SIZE: usize = 8 << 20;
/// The page cache's bound unless configured (`cache_capacity_mb`).
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 << 20;

/// The sled-backed `DataStore`. Cheap to share behind an `Arc`; every method is short and
/// synchronous.
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    entries: Tree,
    by_parent: Tree,
    by_spiffe_id: Tree,
    by_selector: Tree,
    by_similarity: Tree,
    nodes: Tree,
    join_tokens: Tree,
    bundles: Tree,
    ca_journals: Tree,
    /// How many entries the entry tree holds (counted at open, then kept by each write).
    entry_count: AtomicI64,
    federations: Tree,
}

impl SledStore {
    /// Opens (creating if needed) the store kept under `dir`. Fails with `Backend` if the
    /// directory cannot be created or another process holds the database open, and with
    /// `Corrupt` if it was written with an unknown layout.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with_cache(dir, DEFAULT_CACHE_CAPACITY)
    }

    /// [`SledStore::open`] with sled's page cache bounded to `cache_capacity` bytes.
    pub fn open_with_cache(dir: &Path, cache_capacity: u64) -> Result<SledStore, StoreError> {
        // 0700, and what an older release left readable is tightened: the store holds the
        // attested nodes and (hashed) join tokens.
        let private = |e: PrivateDirError| StoreError::Backend(e.to_string());
        ensure_private_dir("datastore directory", dir).map_err(private)?;
        let db = open_db(&db_config(&dir.join(DB_DIR), cache_capacity))?;
        ensure_private_dir("datastore directory", dir).map_err(private)?;
        let store = SledStore::from_db(dir, db)?;
        let legacy = migrate::legacy_store(dir);
        match store.db.get(SCHEMA_KEY).map_err(backend)? {
            Some(version) if version.as_ref() == SCHEMA_VERSION => {}
            Some(version) => {
                return Err(StoreError::Corrupt(format!(
                    "unsupported schema version {:?}",
                    String::from_utf8_lossy(&version)
                )));
            }
            None => {
                if let Some(legacy) = &legacy {
                    migrate::copy(legacy, &store, cache_capacity)?;
                }
                // The commit of a migration: see `migrate`.
                store
                    .db
                    .insert(SCHEMA_KEY, SCHEMA_VERSION)
                    .map_err(backend)?;
                store.db.flush().map_err(backend)?;
            }
        }
        if let Some(legacy) = &legacy {
            migrate::remove_legacy(legacy)?;
            tracing::info!(directory = %dir.display(), "Migrated the datastore to schema 3");
        }
        let count = i64::try_from(store.entries.len()).unwrap_or(i64::MAX);
        store.entry_count.store(count, Ordering::SeqCst);
        Ok(store)
    }

    /// The store over an opened database, its layout not yet checked.
    fn from_db(dir: &Path, db: sled::Db) -> Result<SledStore, StoreError> {
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        Ok(SledStore {
            dir: dir.to_path_buf(),
            entries: tree("entries")?,
            entry_count: AtomicI64::new(0),
            by_parent: tree("entries_by_parent")?,
            by_spiffe_id: tree("entries_by_spiffe_id")?,
            by_selector: tree("entries_by_selector")?,
            by_similarity: tree("entries_by_similarity")?,
            nodes: tree("nodes")?,
            join_tokens: tree("join_tokens")?,
            bundles: tree("bundles")?,
            ca_journals: tree("ca_journals")?,
            federations: tree("federations")?,
            db,
        })
    }

    /// Every tree but the default one.
    fn trees(&self) -> [&Tree; 10] {
        [
            &self.entries,
            &self.by_parent,
            &self.by_spiffe_id,
            &self.by_selector,
            &self.by_similarity,
            &self.nodes,
            &self.join_tokens,
            &self.bundles,
            &self.ca_journals,
            &self.federations,
        ]
    }

    /// Makes every write so far durable, on tokio's blocking pool so no runtime worker waits
    /// on the disk. Not `flush_async`: in sled 0.34 concurrent `flush_async` calls can
    /// deadlock (spacejam/sled#1308, fixed only on sled's unreleased main branch), which hung
    /// every writer for good.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(flushed) => flushed.map(drop).map_err(backend),
            Err(e) => Err(StoreError::Backend(format!("datastore flush failed: {e}"))),
        }
    }

    /// Stores `value` at `key` unless the key is taken (then `AlreadyExists(taken)`).
    async fn insert_new(
        &self,
        tree: &Tree,
        key: &[u8],
        value: Vec<u8>,
        taken: String,
    ) -> Result<(), StoreError> {
        let swapped = tree
            .compare_and_swap(key, None::<&[u8]>, Some(value))
            .map_err(backend)?;
        if swapped.is_err() {
            return Err(StoreError::AlreadyExists(taken));
        }
        self.flush().await
    }

    /// Removes and returns the record at `key` (`NotFound(what)` if absent).
    async fn remove<T: DeserializeOwned>(
        &self,
        tree: &Tree,
        key: &[u8],
        what: String,
    ) -> Result<T, StoreError> {
        let Some(bytes) = tree.remove(key).map_err(backend)? else {
            return Err(StoreError::NotFound(what));
        };
        self.flush().await?;
        decode(&what, &bytes)
    }
}

// === impl DataStore for SledStore ===

#[async_trait::async_trait]
impl DataStore for SledStore {
    async fn create_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        self.entry_transaction(
            |tx| {
                if tx.entries.get(entry.id.as_bytes())?.is_some() {
                    return abort(StoreError::AlreadyExists(format!(
                        "entry {} already exists",
                        entry.id
                    )));
                }
                if let Some(similar) = tx.similar_to(&entry)? {
                    return abort(StoreError::SimilarEntry(Box::new(similar)));
                }
                tx.put(&entry)
            },
            |()| 1,
        )
        .await?;
        Ok(entry)
    }

    async fn update_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        self.entry_transaction(
            |tx| {
                let Some(stored) = tx.entry(&entry.id)? else {
                    return abort(StoreError::NotFound(format!("entry {}", entry.id)));
                };
                let updated = RegistrationEntry {
                    revision_number: stored.revision_number.saturating_add(1),
                    created_at: stored.created_at,
                    ..entry.clone()
                };
                if let Some(similar) = tx.similar_to(&updated)?
                    && similar.id != updated.id
                {
                    return abort(StoreError::SimilarEntry(Box::new(similar)));
                }
                tx.remove(&stored)?;
                tx.put(&updated)?;
                Ok(updated)
            },
            |_| 0,
        )
        .await
    }

    async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry, StoreError> {
        self.entry_transaction(
            |tx| {
                let Some(stored) = tx.entry(id)? else {
                    return abort(StoreError::NotFound(format!("entry {id}")));
                };
                tx.remove(&stored)?;
                Ok(stored)
            },
            |_| -1,
        )
        .await
    }

    async fn entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError> {
        read_entry(&self.entries, id.as_bytes())
    }

    async fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        decode_entries(self.entries.iter())
    }

    async fn entries_by_parent(
        &self,
        parent: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries_by_index(&self.by_parent, &parent.to_string(), |e| {
            e.parent_id == *parent
        })
    }

    async fn entries_by_spiffe_id(
        &self,
        id: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries_by_index(&self.by_spiffe_id, &id.to_string(), |e| e.spiffe_id == *id)
    }

    async fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries_by_index(&self.by_selector, &selector.to_string(), |e| {
            e.selectors.contains(selector)
        })
    }

    async fn entries_page(
        &self,
        scan: EntryScan<'_>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        match scan {
            EntryScan::All => self.entries_after(after, limit),
            EntryScan::Parent(parent) => self.entries_by_index_after(
                &self.by_parent,
                &parent.to_string(),
                after,
                limit,
                |e| e.parent_id == *parent,
            ),
            EntryScan::SpiffeId(id) => self.entries_by_index_after(
                &self.by_spiffe_id,
                &id.to_string(),
                after,
                limit,
                |e| e.spiffe_id == *id,
            ),
            EntryScan::Selector(selector) => self.entries_by_index_after(
                &self.by_selector,
                &selector.to_string(),
                after,
                limit,
                |e| e.selectors.contains(selector),
            ),
        }
    }

    async fn count_entries(&self) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.entry_count.load(Ordering::SeqCst)).unwrap_or(0))
    }

    async fn prune_entries(&self, before: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        let expired = |e: &RegistrationEntry| e.expired_before(before);
        let candidates: Vec<String> = decode_entries(self.entries.iter())?
            .into_iter()
            .filter(expired)
            .map(|e| e.id)
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // Re-checked inside the transaction: an entry may have been updated meanwhile.
        self.entry_transaction(
            |tx| {
                let mut pruned = Vec::new();
                for id in &candidates {
                    if let Some(stored) = tx.entry(id)?
                        && expired(&stored)
                    {
                        tx.remove(&stored)?;
                        pruned.push(stored);
                    }
                }
                Ok(pruned)
            },
            |pruned| -i64::try_from(pruned.len()).unwrap_or(i64::MAX),
        )
        .await
    }

    async fn put_node(&self, node: AttestedNode) -> Result<AttestedNode, StoreError> {
        self.nodes
            .insert(node.spiffe_id.to_string().as_bytes(), encode(&node)?)
            .map_err(backend)?;
        self.flush().await?;
        Ok(node)
    }

    async fn node(&self, id: &SpiffeId) -> Result<Option<AttestedNode>, StoreError> {
        read(&self.nodes, id.to_string().as_bytes(), "node")
    }

    async fn list_nodes(&self) -> Result<Vec<AttestedNode>, StoreError> {
        decode_all(&self.nodes, "node")
    }

    async fn delete_node(&self, id: &SpiffeId) -> Result<AttestedNode, StoreError> {
        self.remove(&self.nodes, id.to_string().as_bytes(), format!("node {id}"))
            .await
    }

    async fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError> {
        let taken = "join token already exists".to_owned();
        let stored = StoredToken {
            expires_at: token.expires_at,
        };
        self.insert_new(
            &self.join_tokens,
            join_token_digest(&token.token).as_bytes(),
            encode(&stored)?,
            taken,
        )
        .await
    }

    async fn take_join_token(&self, token: &str) -> Result<Option<JoinToken>, StoreError> {
        // sled's remove is atomic: of several concurrent callers exactly one gets the value.
        let key = join_token_digest(token);
        let Some(bytes) = self.join_tokens.remove(key.as_bytes()).map_err(backend)? else {
            return Ok(None);
        };
        self.flush().await?;
        let stored: StoredToken = decode("join token", &bytes)?;
        Ok(Some(JoinToken {
            token: token.to_owned(),
            expires_at: stored.expires_at,
        }))
    }

    async fn prune_join_tokens(&self, before: i64) -> Result<usize, StoreError> {
        // Decode everything first, so that a corrupt record fails the call before any write.
        let mut expired = Vec::new();
        for item in self.join_tokens.iter() {
            let (key, bytes) = item.map_err(backend)?;
            let token: StoredToken = decode("join token", &bytes)?;
            if token.expires_at < before {
                expired.push((key, bytes));
            }
        }
        let mut pruned = 0;
        for (key, bytes) in expired {
            // A token taken meanwhile is not counted.
            let swapped = self
                .join_tokens
                .compare_and_swap(key, Some(bytes), None::<&[u8]>);
            pruned += usize::from(swapped.map_err(backend)?.is_ok());
        }
        if pruned > 0 {
            self.flush().await?;
        }
        Ok(pruned)
    }

    async fn bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        read(&self.bundles, td.as_str().as_bytes(), "bundle")
    }

    async fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        decode_all(&self.bundles, "bundle")
    }

    async fn create_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        let key = bundle.trust_domain.as_str();
        let taken = format!("bundle for {key} already exists");
        self.insert_new(&self.bundles, key.as_bytes(), encode(&bundle)?, taken)
            .await?;
        Ok(bundle)
    }

    async fn update_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        let key = bundle.trust_domain.as_str();
        let new = encode(&bundle)?;
        // Compare-and-swap loop, so that a concurrently deleted bundle is not resurrected.
        loop {
            let Some(current) = self.bundles.get(key).map_err(backend)? else {
                return Err(StoreError::NotFound(format!("bundle for {key}")));
            };
            let swapped = self
                .bundles
                .compare_and_swap(key, Some(current), Some(new.as_slice()));
            if swapped.map_err(backend)?.is_ok() {
                self.flush().await?;
                return Ok(bundle);
            }
        }
    }

    async fn set_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        self.bundles
            .insert(bundle.trust_domain.as_str(), encode(&bundle)?)
            .map_err(backend)?;
        self.flush().await?;
        Ok(bundle)
    }

    async fn update_bundle_with(
        &self,
        td: &TrustDomain,
        f: &mut (dyn for<'b> FnMut(&'b mut Bundle) -> bool + Send),
    ) -> Result<Bundle, StoreError> {
        // Compare-and-swap loop: `f` runs again on the fresh value if another writer won.
        loop {
            let current = self.bundles.get(td.as_str()).map_err(backend)?;
            let mut bundle = match &current {
                Some(bytes) => decode("bundle", bytes)?,
                None => Bundle::new(td.clone()),
            };
            let before = bundle.clone();
            if !f(&mut bundle) {
                return Ok(before);
            }
            let swapped = self
                .bundles
                .compare_and_swap(td.as_str(), current, Some(encode(&bundle)?))
                .map_err(backend)?;
            if swapped.is_ok() {
                self.flush().await?;
                return Ok(bundle);
            }
        }
    }

    async fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        self.remove(
            &self.bundles,
            td.as_str().as_bytes(),
            format!("bundle for {td}"),
        )
        .await
    }

    async fn create_federation(&self, rel: Relationship) -> Result<Relationship, StoreError> {
        self.create_federation_row(rel).await
    }

    async fn update_federation(&self, rel: Relationship) -> Result<Relationship, StoreError> {
        self.update_federation_row(rel).await
    }

    async fn delete_federation(&self, td: &TrustDomain) -> Result<Relationship, StoreError> {
        self.delete_federation_row(td).await
    }

    async fn federation(&self, td: &TrustDomain) -> Result<Option<Relationship>, StoreError> {
        self.federation_row(td).await
    }

    async fn list_federations(&self) -> Result<Vec<Relationship>, StoreError> {
        self.federation_rows().await
    }

    async fn ca_journal(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = self.ca_journals.get(key.as_bytes()).map_err(backend)?;
        Ok(bytes.map(|bytes| bytes.to_vec()))
    }

    async fn set_ca_journal(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        self.ca_journals
            .insert(key.as_bytes(), data)
            .map_err(backend)?;
        self.flush().await
    }
}

impl fmt::Debug for SledStore {
    // sled's own Debug for a tree prints its contents, so it is kept out of here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Opens the sled database. sled releases its directory lock only once its background
/// flusher lets go of a dropped handle, so a store reopened straight after being dropped (an
/// in-process restart) may briefly find the lock held: retry for a few seconds before
/// reporting it.
fn open_db(config: &sled::Config) -> Result<sled::Db, StoreError> {
    let mut attempts = 0;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if lock_held(&e) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

/// How this layout's database is opened.
fn db_config(path: &Path, cache_capacity: u64) -> sled::Config {
    sled::Config::new()
        .path(path)
        .segment_size(SEGMENT_SIZE)
        .cache_capacity(cache_capacity)
}

/// A join token as this store keeps it: under its digest, without the value.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredToken {
    expires_at: i64,
}

/// Whether opening failed because another handle holds the directory lock. sled reports it
/// as an `Other` error wrapping the `WouldBlock` of `flock`, so the kind alone does not say.
fn lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.to_string().starts_with("could not acquire lock on ")
}

#[cfg(test)]
mod tests;
