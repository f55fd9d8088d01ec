//! The registry: every change to entries and nodes goes through here, so that the store,
//! the in-memory authorization index and the change push never disagree.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::Mutex;

use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::authz::AuthzIndex;
use crate::datastore::{Change, ChangeKind, Changes, DataStore, EntryScan, StoreError};
use crate::events::Events;

/// Store + index + events.
#[derive(Debug)]
pub struct Registry {
    store: Arc<dyn DataStore>,
    index: RwLock<AuthzIndex>,
    /// Held across a write's store call and index update, so that writes reach the index
    /// in the order the store committed them (the index lock itself is never held across
    /// an await).
    writer: Mutex<()>,
    events: Events,
    /// The store's change-log position the index was loaded at (`None`: no change log).
    loaded_at: Option<i64>,
}

/// How often the change log is read when no NOTIFY arrives.
const CHANGE_POLL: Duration = Duration::from_millis(500);
/// How long change log rows are kept; a server that falls further behind reloads.
const CHANGE_RETENTION: Duration = Duration::from_secs(3600);
/// How often old change log rows are pruned.
const CHANGE_PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Changes read per query.
const CHANGE_BATCH: i64 = 1000;
/// Entries read per page while the index is built.
const BUILD_PAGE: usize = 1000;

impl Registry {
    /// Builds the index from the store (the only full read).
    pub async fn load(store: Arc<dyn DataStore>, td: &TrustDomain) -> Result<Self, StoreError> {
        // The position first: a change committed while listing is applied again later
        // (applying is idempotent), never lost.
        let loaded_at = store.change_position().await?;
        let index = Self::build(&store, td).await?;
        Ok(Self {
            store,
            index: RwLock::new(index),
            writer: Mutex::new(()),
            events: Events::new(),
            loaded_at,
        })
    }

    async fn build(store: &Arc<dyn DataStore>, td: &TrustDomain) -> Result<AuthzIndex, StoreError> {
        let mut index = AuthzIndex::new(td);
        // In pages, so that the whole store is never decoded at once (the held form is a
        // fraction of the decoded one, and a full decode would leave its memory behind),
        // each read on another worker while the one before is indexed.
        let mut next = Some(read_page(store, String::new()));
        while let Some(reading) = next.take() {
            let page = reading
                .await
                .map_err(|e| StoreError::Backend(format!("reading the entries: {e}")))??;
            if page.len() == BUILD_PAGE
                && let Some(last) = page.last()
            {
                next = Some(read_page(store, last.id.clone()));
            }
            for entry in &page {
                index.upsert_entry(entry);
            }
        }
        for node in store.list_nodes().await? {
            index.set_node_selectors(
                node.spiffe_id.clone(),
                node.selectors.iter().cloned().collect(),
            );
        }
        Ok(index)
    }

    /// Whether the store is shared (has a change log to follow).
    pub fn is_shared(&self) -> bool {
        self.loaded_at.is_some()
    }

    /// Follows the store's change log until `stop`: each change committed by any server
    /// sharing the database is applied to the index (one record re-read, never a full
    /// reload) and pushed to the agents it concerns. Woken by the store's signal (NOTIFY),
    /// else every `CHANGE_POLL`. Prunes the log past `CHANGE_RETENTION`; if this server
    /// fell behind past it, the index is rebuilt once.
    pub async fn follow_changes(self: Arc<Self>, td: TrustDomain, mut stop: watch::Receiver<bool>) {
        let Some(mut cursor) = self.loaded_at else {
            return;
        };
        let mut signal = self.store.change_signal();
        let mut last_prune = tokio::time::Instant::now();
        loop {
            let woken = async {
                match signal.as_mut() {
                    Some(s) => {
                        if s.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = woken => {}
                () = tokio::time::sleep(CHANGE_POLL) => {}
            }
            cursor = self.catch_up(&td, cursor).await;
            if last_prune.elapsed() >= CHANGE_PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                if let Err(error) = self.store.prune_changes(CHANGE_RETENTION).await {
                    tracing::warn!(%error, "Could not prune the change log");
                }
            }
        }
    }

    /// Applies every change after `cursor`; returns the new position (unchanged on error:
    /// the changes are read again next time).
    async fn catch_up(&self, td: &TrustDomain, mut cursor: i64) -> i64 {
        loop {
            let changes = match self.store.changes_after(cursor, CHANGE_BATCH).await {
                Ok(Changes::Rows(rows)) => rows,
                Ok(Changes::Pruned) => match self.rebuild(td).await {
                    Ok(position) => {
                        tracing::warn!(
                            retention = %humantime::format_duration(CHANGE_RETENTION),
                            "This server fell behind the change log past its retention: rebuilt the authorization index from the database"
                        );
                        cursor = position;
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Could not rebuild the authorization index");
                        return cursor;
                    }
                },
                Err(error) => {
                    tracing::debug!(%error, "Could not read the change log");
                    return cursor;
                }
            };
            let Some(last) = changes.last().map(|c| c.seq) else {
                return cursor;
            };
            for change in &changes {
                if let Err(error) = self.apply(change).await {
                    tracing::debug!(%error, seq = change.seq, "Could not apply a change yet");
                    return cursor;
                }
                cursor = change.seq;
            }
            debug_assert_eq!(cursor, last);
        }
    }

    /// Applies one change: re-reads the record (under the writer lock, so a local write
    /// cannot be overtaken by an older read) and updates the index if it differs.
    async fn apply(&self, change: &Change) -> Result<(), StoreError> {
        match change.kind {
            ChangeKind::Bundle => {
                self.events.bundles_changed();
                Ok(())
            }
            ChangeKind::Entry => {
                let _writer = self.writer.lock().await;
                let fresh = self.store.entry(&change.key).await?;
                let mut index = self.write();
                let current = index.entry(&change.key);
                if current.as_ref() == fresh.as_ref() {
                    return Ok(());
                }
                let mut affected = current
                    .map(|e| index.agents_affected_by(&e))
                    .unwrap_or_default();
                match fresh {
                    Some(entry) => {
                        affected.extend(index.agents_affected_by(&entry));
                        index.upsert_entry(&entry);
                    }
                    None => {
                        index.remove_entry(&change.key);
                    }
                }
                self.events.entries_changed(&affected);
                Ok(())
            }
            ChangeKind::Node => {
                let id = match signet_common::id::parse_id(&change.key) {
                    Ok(id) => id,
                    Err(_) => return Ok(()),
                };
                let _writer = self.writer.lock().await;
                let fresh = self.store.node(&id).await?;
                let mut index = self.write();
                match fresh {
                    Some(node) => {
                        index.set_node_selectors(
                            id.clone(),
                            node.selectors.iter().cloned().collect(),
                        );
                    }
                    None => index.remove_node(&id),
                }
                self.events.entries_changed([&id]);
                Ok(())
            }
        }
    }

    /// Rebuilds the whole index; returns the change-log position it reflects.
    async fn rebuild(&self, td: &TrustDomain) -> Result<i64, StoreError> {
        let _writer = self.writer.lock().await;
        let position = self.store.change_position().await?.unwrap_or(0);
        let fresh = Self::build(&self.store, td).await?;
        let agents: Vec<SpiffeId> = self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .map(|n| n.spiffe_id)
            .collect();
        *self.write() = fresh;
        self.events.entries_changed(&agents);
        self.events.bundles_changed();
        Ok(position)
    }

    /// The underlying store (for reads and for records the index does not cover).
    pub fn store(&self) -> &Arc<dyn DataStore> {
        &self.store
    }

    /// Creates an entry and pushes the change.
    pub async fn create_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        let _writer = self.writer.lock().await;
        let created = self.store.create_entry(entry).await?;
        let mut index = self.write();
        index.upsert_entry(&created);
        self.events
            .entries_changed(&index.agents_affected_by(&created));
        Ok(created)
    }

    /// Updates an entry and pushes the change to the agents that had it and that have it.
    pub async fn update_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        let _writer = self.writer.lock().await;
        let updated = self.store.update_entry(entry).await?;
        let mut index = self.write();
        let before = index
            .entry(&updated.id)
            .map(|e| index.agents_affected_by(&e))
            .unwrap_or_default();
        index.upsert_entry(&updated);
        let after = index.agents_affected_by(&updated);
        self.events
            .entries_changed(before.iter().chain(after.iter()));
        Ok(updated)
    }

    /// Deletes an entry and pushes the change.
    pub async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry, StoreError> {
        let _writer = self.writer.lock().await;
        let deleted = self.store.delete_entry(id).await?;
        let mut index = self.write();
        let affected = index
            .entry(id)
            .map(|e| index.agents_affected_by(&e))
            .unwrap_or_default();
        index.remove_entry(id);
        self.events.entries_changed(&affected);
        Ok(deleted)
    }

    /// Deletes entries that expired before `before` and pushes the change. The store is only
    /// asked (a scan of every entry) when the index holds an expired one: the periodic prune
    /// of a large store that has none costs a walk over the index, not a decode of the store.
    pub async fn prune_entries(&self, before: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        let _writer = self.writer.lock().await;
        if !self.read().has_expired(before) {
            return Ok(Vec::new());
        }
        let pruned = self.store.prune_entries(before).await?;
        let mut index = self.write();
        for entry in &pruned {
            let affected = index.agents_affected_by(entry);
            index.remove_entry(&entry.id);
            self.events.entries_changed(&affected);
        }
        Ok(pruned)
    }

    /// Creates or replaces a node record; its selectors may change which aliases apply.
    pub async fn put_node(&self, node: AttestedNode) -> Result<AttestedNode, StoreError> {
        let _writer = self.writer.lock().await;
        let stored = self.store.put_node(node).await?;
        let mut index = self.write();
        index.set_node_selectors(
            stored.spiffe_id.clone(),
            stored.selectors.iter().cloned().collect(),
        );
        self.events.entries_changed([&stored.spiffe_id]);
        Ok(stored)
    }

    /// Deletes a node record (evict).
    pub async fn delete_node(&self, id: &SpiffeId) -> Result<AttestedNode, StoreError> {
        let _writer = self.writer.lock().await;
        let deleted = self.store.delete_node(id).await?;
        let mut index = self.write();
        index.remove_node(id);
        self.events.entries_changed([id]);
        Ok(deleted)
    }

    /// Number of entries in the authorization index.
    pub fn entry_count(&self) -> usize {
        self.read().len()
    }

    /// Entries `agent` is authorized for, ordered by ID.
    pub fn authorized_entries(&self, agent: &SpiffeId) -> Vec<Arc<RegistrationEntry>> {
        self.read().authorized_entries(agent)
    }

    /// The entry if `agent` is authorized for it.
    pub fn authorized_entry(
        &self,
        agent: &SpiffeId,
        entry_id: &str,
    ) -> Option<Arc<RegistrationEntry>> {
        self.read().authorized_entry(agent, entry_id)
    }

    /// Wakes whenever `agent`'s authorized entries change.
    pub fn subscribe_agent(&self, agent: &SpiffeId) -> watch::Receiver<u64> {
        self.events.subscribe_agent(agent)
    }

    /// Wakes whenever a bundle changes.
    pub fn subscribe_bundles(&self) -> watch::Receiver<u64> {
        self.events.subscribe_bundles()
    }

    /// Announces a bundle change (CA rotation, federated bundle written).
    pub fn bundles_changed(&self) {
        self.events.bundles_changed();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, AuthzIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, AuthzIndex> {
        self.index.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts reading the page of entries after `after`.
fn read_page(
    store: &Arc<dyn DataStore>,
    after: String,
) -> JoinHandle<Result<Vec<RegistrationEntry>, StoreError>> {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.entries_page(EntryScan::All, &after, BUILD_PAGE).await })
}

#[cfg(test)]
mod tests;
