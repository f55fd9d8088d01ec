//! Older layouts copied into this one at open: `sled/` under the store directory, schema 1
//! (join tokens kept under their clear value) or 2, with JSON entries, index keys that carry
//! the indexed values whole, and sled's default 512 KiB segments, which a database cannot
//! change once created: so the copy is a new database (`sled3/`), not an update in place.
//!
//! Crash safety: the old directory is only read until the copy is complete. The new database
//! gets its schema version last, after everything copied is flushed, and that stamp is the
//! commit: a new database without it next to an old directory is a copy cut short, emptied
//! and made again; with it, the old directory only remains to be removed. A file is then put
//! in its place (named `sled`, saying where the store went), so that an older release fails to
//! open it rather than start on an empty store.

use std::path::Path;

use signet_common::entry::RegistrationEntry;
use sled::Tree;

use super::codec::{backend, decode, encode};
use super::{SCHEMA_KEY, SledStore, StoredToken, open_db};
use crate::datastore::StoreError;
use crate::datastore::token_digest::{self, join_token_digest};

/// The older layouts' database directory.
pub(super) const LEGACY_DIR: &str = "sled";
/// Join tokens under their clear value.
pub(super) const SCHEMA_V1: &[u8] = b"1";
/// Join tokens as digests; JSON entries.
pub(super) const SCHEMA_V2: &[u8] = b"2";
/// Entries written per transaction of the copy.
const CHUNK: usize = 1000;
/// What the file left in place of the old directory says.
const MOVED: &str = "This store was migrated to schema 3 and moved to ./sled3 by signet-server; \
                     this file keeps older releases from starting on an empty store here.\n";

/// The older layout's database under `dir`, if there is one.
pub(super) fn legacy_store(dir: &Path) -> Option<std::path::PathBuf> {
    let legacy = dir.join(LEGACY_DIR);
    legacy.is_dir().then_some(legacy)
}

/// Empties `store` (a copy cut short, or a new database) and writes every record of the
/// store in `legacy` into it, then flushes. The caller stamps the schema version.
pub(super) fn copy(
    legacy: &Path,
    store: &SledStore,
    cache_capacity: u64,
) -> Result<(), StoreError> {
    let old = open_db(
        &sled::Config::new()
            .path(legacy)
            .cache_capacity(cache_capacity),
    )?;
    let v1 = match old.get(SCHEMA_KEY).map_err(backend)? {
        Some(version) if version.as_ref() == SCHEMA_V1 => true,
        Some(version) if version.as_ref() == SCHEMA_V2 => false,
        None => false,
        Some(version) => {
            return Err(StoreError::Corrupt(format!(
                "unsupported schema version {:?} in {}",
                String::from_utf8_lossy(&version),
                legacy.display()
            )));
        }
    };
    for tree in store.trees() {
        tree.clear().map_err(backend)?;
    }
    copy_entries(&old.open_tree("entries").map_err(backend)?, store)?;
    let verbatim = [
        ("nodes", &store.nodes),
        ("bundles", &store.bundles),
        ("ca_journals", &store.ca_journals),
        ("federations", &store.federations),
    ];
    for (name, to) in verbatim {
        for item in old.open_tree(name).map_err(backend)?.iter() {
            let (key, value) = item.map_err(backend)?;
            to.insert(key, value).map_err(backend)?;
        }
    }
    copy_tokens(
        &old.open_tree("join_tokens").map_err(backend)?,
        &store.join_tokens,
        v1,
    )?;
    store.db.flush().map_err(backend)?;
    Ok(())
}

/// Replaces the migrated store's directory by a file saying where it went.
pub(super) fn remove_legacy(legacy: &Path) -> Result<(), StoreError> {
    std::fs::remove_dir_all(legacy).map_err(io("remove the migrated store"))?;
    // 0600 like the rest of the directory, and synced with it.
    signet_common::fs::write_private_atomically(legacy, MOVED.as_bytes())
        .map_err(|e| StoreError::Backend(format!("cannot mark the migrated store: {e}")))
}

/// The JSON entries of `from` into `to`'s entry tree and indexes, `CHUNK` per transaction.
fn copy_entries(from: &Tree, to: &SledStore) -> Result<(), StoreError> {
    let put_all = |entries: &[RegistrationEntry]| {
        to.transact(|tx| entries.iter().try_for_each(|entry| tx.put(entry)))
    };
    let mut chunk = Vec::with_capacity(CHUNK);
    for item in from.iter() {
        let (key, value) = item.map_err(backend)?;
        let what = format!("entry {}", String::from_utf8_lossy(&key));
        let entry: RegistrationEntry = decode(&what, &value)?;
        if entry.id.as_bytes() != key.as_ref() {
            return Err(StoreError::Corrupt(format!(
                "{what}: the record holds entry {}",
                entry.id
            )));
        }
        chunk.push(entry);
        if chunk.len() == CHUNK {
            put_all(&chunk)?;
            chunk.clear();
        }
    }
    put_all(&chunk)
}

/// The join tokens of `from` into `to`; a schema 1 store's clear keys become digests.
fn copy_tokens(from: &Tree, to: &Tree, v1: bool) -> Result<(), StoreError> {
    for item in from.iter() {
        let (key, value) = item.map_err(backend)?;
        if !v1 || key.starts_with(token_digest::PREFIX.as_bytes()) {
            to.insert(key, value).map_err(backend)?;
            continue;
        }
        let old: StoredToken = decode("join token", &value)?;
        let token = String::from_utf8_lossy(&key);
        to.insert(join_token_digest(&token).as_bytes(), encode(&old)?)
            .map_err(backend)?;
    }
    Ok(())
}

fn io(doing: &'static str) -> impl Fn(std::io::Error) -> StoreError {
    move |error| StoreError::Backend(format!("cannot {doing}: {error}"))
}
