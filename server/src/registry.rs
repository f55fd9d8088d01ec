//! The registry: every change to entries and nodes goes through here, so that the store,
//! the in-memory authorization index and the change push never disagree.

use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::Mutex;

use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use tokio::sync::watch;

use crate::authz::AuthzIndex;
use crate::datastore::{DataStore, StoreError};
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
}

impl Registry {
    /// Builds the index from the store (the only full read).
    pub async fn load(store: Arc<dyn DataStore>, td: &TrustDomain) -> Result<Self, StoreError> {
        let mut index = AuthzIndex::new(td);
        for entry in store.list_entries().await? {
            index.upsert_entry(entry);
        }
        for node in store.list_nodes().await? {
            index.set_node_selectors(
                node.spiffe_id.clone(),
                node.selectors.iter().cloned().collect(),
            );
        }
        Ok(Self {
            store,
            index: RwLock::new(index),
            writer: Mutex::new(()),
            events: Events::new(),
        })
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
        index.upsert_entry(created.clone());
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
            .map(|e| index.agents_affected_by(e))
            .unwrap_or_default();
        index.upsert_entry(updated.clone());
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
            .map(|e| index.agents_affected_by(e))
            .unwrap_or_default();
        index.remove_entry(id);
        self.events.entries_changed(&affected);
        Ok(deleted)
    }

    /// Deletes entries that expired before `before` and pushes the change.
    pub async fn prune_entries(&self, before: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        let _writer = self.writer.lock().await;
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
