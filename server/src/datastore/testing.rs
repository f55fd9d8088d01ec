//! Stores for tests: the real sled store in a temporary directory, and a thin wrapper that
//! makes chosen calls fail (for tests of how callers handle a store error). There is no
//! other test store: every store a test uses passes the conformance suite.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use signet_common::selector::Selector;
use tempfile::TempDir;

use crate::datastore::sled::SledStore;
use crate::datastore::{DataStore, EntryScan, JoinToken, StoreError};

/// A fresh sled store in its own temporary directory (removed when the guard drops).
pub(crate) fn temp_sled() -> (Arc<SledStore>, TempDir) {
    let dir = TempDir::new().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let store = SledStore::open(dir.path()).unwrap_or_else(|e| panic!("sled store: {e}"));
    (Arc::new(store), dir)
}

/// Passes every call to the inner store, except that while `fail_writes` is set every call
/// that would change state fails with `Backend` and changes nothing.
#[derive(Debug)]
pub(crate) struct FailingStore {
    inner: Arc<dyn DataStore>,
    fail_writes: AtomicBool,
}

impl FailingStore {
    pub(crate) fn new(inner: Arc<dyn DataStore>) -> Self {
        Self {
            inner,
            fail_writes: AtomicBool::new(false),
        }
    }

    /// Makes writes fail (`true`) or pass again (`false`).
    pub(crate) fn fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    fn write(&self) -> Result<&dyn DataStore, StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("injected write failure".into()));
        }
        Ok(self.inner.as_ref())
    }
}

#[async_trait::async_trait]
impl DataStore for FailingStore {
    async fn create_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        self.write()?.create_entry(entry).await
    }
    async fn update_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        self.write()?.update_entry(entry).await
    }
    async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry, StoreError> {
        self.write()?.delete_entry(id).await
    }
    async fn entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError> {
        self.inner.entry(id).await
    }
    async fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.inner.list_entries().await
    }
    async fn entries_by_parent(
        &self,
        parent: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.inner.entries_by_parent(parent).await
    }
    async fn entries_by_spiffe_id(
        &self,
        id: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.inner.entries_by_spiffe_id(id).await
    }
    async fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.inner.entries_by_selector(selector).await
    }
    async fn entries_page(
        &self,
        scan: EntryScan<'_>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.inner.entries_page(scan, after, limit).await
    }
    async fn count_entries(&self) -> Result<u64, StoreError> {
        self.inner.count_entries().await
    }
    async fn prune_entries(&self, before: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.write()?.prune_entries(before).await
    }
    async fn put_node(&self, node: AttestedNode) -> Result<AttestedNode, StoreError> {
        self.write()?.put_node(node).await
    }
    async fn node(&self, id: &SpiffeId) -> Result<Option<AttestedNode>, StoreError> {
        self.inner.node(id).await
    }
    async fn list_nodes(&self) -> Result<Vec<AttestedNode>, StoreError> {
        self.inner.list_nodes().await
    }
    async fn delete_node(&self, id: &SpiffeId) -> Result<AttestedNode, StoreError> {
        self.write()?.delete_node(id).await
    }
    async fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError> {
        self.write()?.create_join_token(token).await
    }
    async fn take_join_token(&self, token: &str) -> Result<Option<JoinToken>, StoreError> {
        self.write()?.take_join_token(token).await
    }
    async fn prune_join_tokens(&self, before: i64) -> Result<usize, StoreError> {
        self.write()?.prune_join_tokens(before).await
    }
    async fn bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        self.inner.bundle(td).await
    }
    async fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        self.inner.list_bundles().await
    }
    async fn create_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        self.write()?.create_bundle(bundle).await
    }
    async fn update_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        self.write()?.update_bundle(bundle).await
    }
    async fn set_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        self.write()?.set_bundle(bundle).await
    }
    async fn update_bundle_with(
        &self,
        td: &TrustDomain,
        f: &mut (dyn for<'b> FnMut(&'b mut Bundle) -> bool + Send),
    ) -> Result<Bundle, StoreError> {
        self.write()?.update_bundle_with(td, f).await
    }
    async fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        self.write()?.delete_bundle(td).await
    }
    async fn create_federation(
        &self,
        rel: crate::relationship::Relationship,
    ) -> Result<crate::relationship::Relationship, StoreError> {
        self.write()?.create_federation(rel).await
    }
    async fn update_federation(
        &self,
        rel: crate::relationship::Relationship,
    ) -> Result<crate::relationship::Relationship, StoreError> {
        self.write()?.update_federation(rel).await
    }
    async fn delete_federation(
        &self,
        td: &TrustDomain,
    ) -> Result<crate::relationship::Relationship, StoreError> {
        self.write()?.delete_federation(td).await
    }
    async fn federation(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<crate::relationship::Relationship>, StoreError> {
        self.inner.federation(td).await
    }
    async fn list_federations(&self) -> Result<Vec<crate::relationship::Relationship>, StoreError> {
        self.inner.list_federations().await
    }
    async fn ca_journal(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.ca_journal(key).await
    }
    async fn set_ca_journal(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        self.write()?.set_ca_journal(key, data).await
    }
}
