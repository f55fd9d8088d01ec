//! In-memory key manager (`KeyManager "memory"`): keys are lost when the process exits, so
//! every start creates a new CA.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::keys::{KeyError, KeyManager, KeyType, ManagedKey, generate_key};

/// Keeps keys in a map; nothing survives a restart.
#[derive(Debug, Default)]
pub struct MemoryKeyManager {
    keys: Mutex<HashMap<String, Arc<ManagedKey>>>,
}

impl MemoryKeyManager {
    /// An empty key manager.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KeyManager for MemoryKeyManager {
    fn generate(&self, id: &str, key_type: KeyType) -> Result<Arc<ManagedKey>, KeyError> {
        let key = Arc::new(generate_key(id, key_type)?);
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), Arc::clone(&key));
        Ok(key)
    }

    fn key(&self, id: &str) -> Result<Option<Arc<ManagedKey>>, KeyError> {
        Ok(self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_replaces_and_looks_up_keys() {
        let km = MemoryKeyManager::new();
        assert!(km.key("x509-CA-A").unwrap().is_none());
        let a = km.generate("x509-CA-A", KeyType::EcP256).unwrap();
        assert_eq!(a.key_type, KeyType::EcP256);
        assert_eq!(KeyType::of_pkcs8(&a.pkcs8), Some(KeyType::EcP256));
        assert_eq!(km.key("x509-CA-A").unwrap().unwrap().pkcs8, a.pkcs8);
        let b = km.generate("x509-CA-A", KeyType::EcP384).unwrap();
        assert_ne!(a.pkcs8, b.pkcs8);
        assert_eq!(KeyType::of_pkcs8(&b.pkcs8), Some(KeyType::EcP384));
        assert_eq!(
            km.key("x509-CA-A").unwrap().unwrap().key_type,
            KeyType::EcP384
        );
    }

    #[test]
    fn keys_are_lost_when_dropped() {
        let km = MemoryKeyManager::new();
        km.generate("JWT-Signer-A", KeyType::EcP256).unwrap();
        drop(km);
        let km = MemoryKeyManager::new();
        assert!(km.key("JWT-Signer-A").unwrap().is_none());
    }

    #[test]
    fn debug_output_hides_the_private_key() {
        let km = MemoryKeyManager::new();
        let key = km.generate("k", KeyType::EcP256).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
