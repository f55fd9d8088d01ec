//! A tiny in-memory `DataStore` for CA tests: bundles and journals only (everything else
//! answers `Backend`). Replace with a temp sled store once that lands.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use signet_common::selector::Selector;

use crate::datastore::{DataStore, JoinToken, StoreError};

#[derive(Debug, Default)]
pub(super) struct MemStore {
    bundles: Mutex<BTreeMap<String, Bundle>>,
    journals: Mutex<BTreeMap<String, Vec<u8>>>,
}

fn unsupported<T>() -> Result<T, StoreError> {
    Err(StoreError::Backend(
        "not supported by the CA test store".into(),
    ))
}

impl DataStore for MemStore {
    fn create_entry(&self, _: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
        unsupported()
    }
    fn update_entry(&self, _: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
        unsupported()
    }
    fn delete_entry(&self, _: &str) -> Result<RegistrationEntry, StoreError> {
        unsupported()
    }
    fn entry(&self, _: &str) -> Result<Option<RegistrationEntry>, StoreError> {
        unsupported()
    }
    fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        unsupported()
    }
    fn entries_by_parent(&self, _: &SpiffeId) -> Result<Vec<RegistrationEntry>, StoreError> {
        unsupported()
    }
    fn entries_by_spiffe_id(&self, _: &SpiffeId) -> Result<Vec<RegistrationEntry>, StoreError> {
        unsupported()
    }
    fn entries_by_selector(&self, _: &Selector) -> Result<Vec<RegistrationEntry>, StoreError> {
        unsupported()
    }
    fn prune_entries(&self, _: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        unsupported()
    }
    fn put_node(&self, _: AttestedNode) -> Result<AttestedNode, StoreError> {
        unsupported()
    }
    fn node(&self, _: &SpiffeId) -> Result<Option<AttestedNode>, StoreError> {
        unsupported()
    }
    fn list_nodes(&self) -> Result<Vec<AttestedNode>, StoreError> {
        unsupported()
    }
    fn delete_node(&self, _: &SpiffeId) -> Result<AttestedNode, StoreError> {
        unsupported()
    }
    fn create_join_token(&self, _: JoinToken) -> Result<(), StoreError> {
        unsupported()
    }
    fn take_join_token(&self, _: &str) -> Result<Option<JoinToken>, StoreError> {
        unsupported()
    }
    fn prune_join_tokens(&self, _: i64) -> Result<usize, StoreError> {
        unsupported()
    }

    fn bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        Ok(self
            .bundles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(td.as_str())
            .cloned())
    }
    fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        Ok(self
            .bundles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect())
    }
    fn create_bundle(&self, b: Bundle) -> Result<Bundle, StoreError> {
        let mut m = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        if m.contains_key(b.trust_domain.as_str()) {
            return Err(StoreError::AlreadyExists(b.trust_domain.to_string()));
        }
        m.insert(b.trust_domain.to_string(), b.clone());
        Ok(b)
    }
    fn update_bundle(&self, b: Bundle) -> Result<Bundle, StoreError> {
        let mut m = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        match m.get_mut(b.trust_domain.as_str()) {
            Some(slot) => {
                *slot = b.clone();
                Ok(b)
            }
            None => Err(StoreError::NotFound(b.trust_domain.to_string())),
        }
    }
    fn set_bundle(&self, b: Bundle) -> Result<Bundle, StoreError> {
        let mut m = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        m.insert(b.trust_domain.to_string(), b.clone());
        Ok(b)
    }
    fn update_bundle_with(
        &self,
        td: &TrustDomain,
        f: &mut dyn FnMut(&mut Bundle) -> bool,
    ) -> Result<Bundle, StoreError> {
        let mut m = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        let mut b = m
            .get(td.as_str())
            .cloned()
            .unwrap_or_else(|| Bundle::new(td.clone()));
        if f(&mut b) {
            m.insert(td.to_string(), b.clone());
            return Ok(b);
        }
        Ok(m.get(td.as_str()).cloned().unwrap_or(b))
    }
    fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        let mut m = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        m.remove(td.as_str())
            .ok_or_else(|| StoreError::NotFound(td.to_string()))
    }

    fn ca_journal(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .journals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned())
    }
    fn set_ca_journal(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        self.journals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), data.to_vec());
        Ok(())
    }
}
