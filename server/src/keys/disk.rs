//! Disk key manager (`KeyManager "disk"`): every key in one JSON file,
//! `{"keys": {"<id>": "<base64 PKCS#8 DER>"}}`, replaced atomically and readable by the
//! owner only (0600 from the moment the file exists).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::keys::{KeyError, KeyManager, KeyType, ManagedKey, generate_key};

/// Keys persisted in `keys_path`; survives restarts.
#[derive(Debug)]
pub struct DiskKeyManager {
    path: PathBuf,
    keys: Mutex<HashMap<String, Arc<ManagedKey>>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    keys: BTreeMap<String, String>,
}

impl DiskKeyManager {
    /// Loads the keys in `keys_path`, or starts empty if the file does not exist yet (it is
    /// created on the first `generate`). Fails on an unreadable or corrupt file.
    pub fn open(keys_path: &Path) -> Result<Self, KeyError> {
        let keys = match fs::read(keys_path) {
            Ok(bytes) => decode(&bytes)?,
            Err(e) if e.kind() == ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                return Err(KeyError::Storage(format!(
                    "reading {}: {e}",
                    keys_path.display()
                )));
            }
        };
        Ok(Self {
            path: keys_path.to_owned(),
            keys: Mutex::new(keys),
        })
    }

    /// The file the keys live in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// IDs of the keys held, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ids: Vec<_> = keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Stores `keys` (replacing any with the same IDs, keeping the others) in one atomic
    /// write: either all of them are durable when this returns or none is.
    pub fn put_keys(&self, new: Vec<ManagedKey>) -> Result<(), KeyError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = keys.clone();
        for k in new {
            next.insert(k.id.clone(), Arc::new(k));
        }
        write_atomically(&self.path, &encode(&next)?)?;
        *keys = next;
        Ok(())
    }
}

/// Decodes a key file in this format (SPIRE's disk KeyManager writes the same one), key by
/// key: keys Signet cannot use (RSA, other curves) come back as `Err` with their ID, so a
/// caller can tell which of them it needs.
pub fn decode_each(bytes: &[u8]) -> Result<Vec<Result<ManagedKey, String>>, KeyError> {
    let file: KeyFile = serde_json::from_slice(bytes)
        .map_err(|e| KeyError::Storage(format!("key file is not valid JSON: {e}")))?;
    Ok(file
        .keys
        .into_iter()
        .map(|(id, b64)| {
            let Ok(pkcs8) = STANDARD.decode(b64.as_bytes()) else {
                return Err(id);
            };
            match KeyType::of_pkcs8(&pkcs8) {
                Some(key_type) => Ok(ManagedKey {
                    id,
                    key_type,
                    pkcs8,
                }),
                None => Err(id),
            }
        })
        .collect())
}

impl KeyManager for DiskKeyManager {
    fn generate(&self, id: &str, key_type: KeyType) -> Result<Arc<ManagedKey>, KeyError> {
        let key = Arc::new(generate_key(id, key_type)?);
        // Hold the lock across the write so concurrent generates cannot lose each other's keys.
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = keys.clone();
        next.insert(id.to_owned(), Arc::clone(&key));
        write_atomically(&self.path, &encode(&next)?)?;
        *keys = next;
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

fn decode(bytes: &[u8]) -> Result<HashMap<String, Arc<ManagedKey>>, KeyError> {
    decode_each(bytes)?
        .into_iter()
        .map(|k| {
            k.map(|k| (k.id.clone(), Arc::new(k)))
                .map_err(KeyError::Corrupt)
        })
        .collect()
}

fn encode(keys: &HashMap<String, Arc<ManagedKey>>) -> Result<Vec<u8>, KeyError> {
    let file = KeyFile {
        keys: keys
            .iter()
            .map(|(id, k)| (id.clone(), STANDARD.encode(&k.pkcs8)))
            .collect(),
    };
    serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Storage(e.to_string()))
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), KeyError> {
    signet_common::fs::write_private_atomically(path, data)
        .map_err(|e| KeyError::Storage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let km = DiskKeyManager::open(&path).unwrap();
        assert!(!path.exists(), "nothing is written before the first key");
        let a = km.generate("x509-CA-A", KeyType::EcP256).unwrap();
        let b = km.generate("JWT-Signer-A", KeyType::EcP384).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(km);

        let km = DiskKeyManager::open(&path).unwrap();
        let a2 = km.key("x509-CA-A").unwrap().unwrap();
        assert_eq!(
            (a2.pkcs8.as_slice(), a2.key_type),
            (a.pkcs8.as_slice(), KeyType::EcP256)
        );
        let b2 = km.key("JWT-Signer-A").unwrap().unwrap();
        assert_eq!(
            (b2.pkcs8.as_slice(), b2.key_type),
            (b.pkcs8.as_slice(), KeyType::EcP384)
        );
        assert!(km.key("x509-CA-B").unwrap().is_none());

        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert!(json["keys"]["x509-CA-A"].is_string());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn replacing_a_key_persists_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let km = DiskKeyManager::open(&path).unwrap();
        km.generate("x509-CA-A", KeyType::EcP256).unwrap();
        let new = km.generate("x509-CA-A", KeyType::EcP256).unwrap();
        let reloaded = DiskKeyManager::open(&path).unwrap();
        assert_eq!(reloaded.key("x509-CA-A").unwrap().unwrap().pkcs8, new.pkcs8);
    }

    #[test]
    fn corrupt_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        fs::write(&path, b"not json").unwrap();
        assert!(matches!(
            DiskKeyManager::open(&path),
            Err(KeyError::Storage(_))
        ));
        fs::write(&path, br#"{"keys": {"k": "AAAA"}}"#).unwrap();
        assert!(matches!(DiskKeyManager::open(&path), Err(KeyError::Corrupt(id)) if id == "k"));
    }

    #[test]
    fn write_failure_leaves_memory_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("keys.json");
        let km = DiskKeyManager::open(&path).unwrap();
        assert!(km.generate("k", KeyType::EcP256).is_err());
        assert!(km.key("k").unwrap().is_none());
    }
}
