//! What the agent keeps across restarts: `<data_dir>/agent-data.json` (its SVID chain and the
//! trust bundle it last saw, as SPIRE's `agent-data.json`) and its private key, in one of two
//! key slots (`agent-svid-A` / `agent-svid-B`, PKCS#8, mode 0600) so that a renewal writes the
//! new key beside the old one and only the final rename of `agent-data.json` switches over:
//! a crash at any point leaves a matching SVID and key.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::KeyManagerConfig;

/// The file SPIRE's agent keeps its state in.
pub const DATA_FILE: &str = "agent-data.json";

/// Why the agent's state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file could not be read, written or removed.
    #[error("{what} {path}: {error}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// Why it failed.
        error: std::io::Error,
    },
    /// A file's content is not what the agent writes.
    #[error("{path} is corrupt: {error}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        error: String,
    },
}

/// The persisted state, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The agent SVID chain, leaf first, DER.
    pub chain: Vec<Vec<u8>>,
    /// The SVID's private key, PKCS#8 DER (present only if it matches the leaf).
    pub key: Option<Vec<u8>>,
    /// The key slot the SVID's key is in.
    pub key_slot: KeySlot,
    /// The trust bundle's X.509 roots, DER.
    pub bundle: Vec<Vec<u8>>,
    /// Whether the server lets the agent attest again.
    pub reattestable: bool,
}

/// One of the two key slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum KeySlot {
    /// `agent-svid-A`.
    #[default]
    #[serde(rename = "agent-svid-A")]
    A,
    /// `agent-svid-B`.
    #[serde(rename = "agent-svid-B")]
    B,
}

impl KeySlot {
    /// The other slot.
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    fn id(self) -> &'static str {
        match self {
            Self::A => "agent-svid-A",
            Self::B => "agent-svid-B",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DataFile {
    /// DER certificates, base64 (Go's `[][]byte` JSON form), leaf first.
    svid: Vec<String>,
    /// DER roots, base64.
    bundle: Vec<String>,
    /// Join-token agents cannot attest again.
    #[serde(default)]
    reattestable: bool,
    /// Which key slot holds the SVID's key.
    key_id: KeySlot,
}

/// The agent's on-disk (and, with `KeyManager "memory"`, in-memory) state.
#[derive(Debug)]
pub struct Storage {
    data_file: PathBuf,
    keys: Keys,
}

#[derive(Debug)]
enum Keys {
    Disk(PathBuf),
    Memory(Mutex<HashMap<KeySlot, Vec<u8>>>),
}

impl Storage {
    /// The state under `data_dir`, keys as `key_manager` says.
    pub fn new(data_dir: &Path, key_manager: &KeyManagerConfig) -> Self {
        Self {
            data_file: data_dir.join(DATA_FILE),
            keys: match key_manager {
                KeyManagerConfig::Disk { directory } => Keys::Disk(directory.clone()),
                KeyManagerConfig::Memory => Keys::Memory(Mutex::default()),
            },
        }
    }

    /// Reads the stored state; `None` if there is none. The key is returned only if it is
    /// the key of the stored leaf.
    pub fn load(&self) -> Result<Option<Stored>, StorageError> {
        let text = match fs::read(&self.data_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(self.io("reading", &self.data_file, error)),
        };
        let file: DataFile =
            serde_json::from_slice(&text).map_err(|e| self.corrupt(&self.data_file, e))?;
        let decode = |v: &[String]| {
            v.iter()
                .map(|s| STANDARD.decode(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.corrupt(&self.data_file, e))
        };
        let chain = decode(&file.svid)?;
        let bundle = decode(&file.bundle)?;
        let key = self
            .read_key(file.key_id)?
            .filter(|k| chain.first().is_some_and(|leaf| key_matches(leaf, k)));
        Ok(Some(Stored {
            chain,
            key,
            key_slot: file.key_id,
            bundle,
            reattestable: file.reattestable,
        }))
    }

    /// Stores a new SVID whose key goes into `slot`: the key first, then the data file
    /// (atomically), so the switch happens at the data file's rename.
    pub fn store(
        &self,
        chain: &[Vec<u8>],
        key: &[u8],
        slot: KeySlot,
        bundle: &[Vec<u8>],
        reattestable: bool,
    ) -> Result<(), StorageError> {
        self.write_key(slot, key)?;
        self.write_data(chain, slot, bundle, reattestable)
    }

    /// Rewrites the data file with a new bundle (same SVID and key slot).
    pub fn store_bundle(
        &self,
        chain: &[Vec<u8>],
        slot: KeySlot,
        bundle: &[Vec<u8>],
        reattestable: bool,
    ) -> Result<(), StorageError> {
        self.write_data(chain, slot, bundle, reattestable)
    }

    /// Removes the SVID and both keys (after a ban).
    pub fn delete(&self) -> Result<(), StorageError> {
        remove(&self.data_file).map_err(|e| self.io("removing", &self.data_file, e))?;
        match &self.keys {
            Keys::Disk(dir) => {
                for slot in [KeySlot::A, KeySlot::B] {
                    let path = key_path(dir, slot);
                    remove(&path).map_err(|e| self.io("removing", &path, e))?;
                }
            }
            Keys::Memory(keys) => keys.lock().unwrap_or_else(PoisonError::into_inner).clear(),
        }
        Ok(())
    }

    fn write_data(
        &self,
        chain: &[Vec<u8>],
        slot: KeySlot,
        bundle: &[Vec<u8>],
        reattestable: bool,
    ) -> Result<(), StorageError> {
        let file = DataFile {
            svid: chain.iter().map(|c| STANDARD.encode(c)).collect(),
            bundle: bundle.iter().map(|c| STANDARD.encode(c)).collect(),
            reattestable,
            key_id: slot,
        };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| self.corrupt(&self.data_file, e))?;
        write_atomically(&self.data_file, &json)
    }

    fn read_key(&self, slot: KeySlot) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.keys {
            Keys::Memory(keys) => Ok(keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&slot)
                .cloned()),
            Keys::Disk(dir) => {
                let path = key_path(dir, slot);
                match fs::read(&path) {
                    Ok(pem) => PrivatePkcs8KeyDer::from_pem_slice(&pem)
                        .map(|k| Some(k.secret_pkcs8_der().to_vec()))
                        .map_err(|e| self.corrupt(&path, e)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(self.io("reading", &path, e)),
                }
            }
        }
    }

    fn write_key(&self, slot: KeySlot, key: &[u8]) -> Result<(), StorageError> {
        match &self.keys {
            Keys::Memory(keys) => {
                keys.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(slot, key.to_vec());
                Ok(())
            }
            Keys::Disk(dir) => {
                fs::create_dir_all(dir).map_err(|e| self.io("creating", dir, e))?;
                write_atomically(
                    &key_path(dir, slot),
                    signet_common::pem::encode("PRIVATE KEY", key).as_bytes(),
                )
            }
        }
    }

    fn io(&self, what: &'static str, path: &Path, error: std::io::Error) -> StorageError {
        StorageError::Io {
            what,
            path: path.display().to_string(),
            error,
        }
    }

    fn corrupt(&self, path: &Path, error: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt {
            path: path.display().to_string(),
            error: error.to_string(),
        }
    }
}

fn key_path(dir: &Path, slot: KeySlot) -> PathBuf {
    dir.join(format!("{}.key", slot.id()))
}

fn remove(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Whether `key` (PKCS#8 DER) is the private key of the certificate `leaf` (DER).
pub fn key_matches(leaf: &[u8], key: &[u8]) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return false;
    };
    let Ok(pair) = rcgen::KeyPair::try_from(&PrivatePkcs8KeyDer::from(key.to_vec())) else {
        return false;
    };
    rcgen::PublicKeyData::subject_public_key_info(&pair) == cert.tbs_certificate.subject_pki.raw
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<(), StorageError> {
    signet_common::fs::write_private_atomically(path, data).map_err(|e| StorageError::Io {
        what: e.what,
        path: e.path,
        error: e.error,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn cert_and_key() -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::default()
            .self_signed(&key)
            .unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }

    #[test]
    fn stores_and_reloads_svid_key_and_bundle_privately() {
        let dir = tempfile::tempdir().unwrap();
        let km = KeyManagerConfig::Disk {
            directory: dir.path().join("keys"),
        };
        let s = Storage::new(dir.path(), &km);
        assert_eq!(s.load().unwrap(), None);
        let (leaf, key) = cert_and_key();
        let (root, _) = cert_and_key();
        s.store(
            std::slice::from_ref(&leaf),
            &key,
            KeySlot::B,
            std::slice::from_ref(&root),
            true,
        )
        .unwrap();
        let back = Storage::new(dir.path(), &km).load().unwrap().unwrap();
        assert!(back.reattestable);
        assert_eq!(back.chain, vec![leaf.clone()]);
        assert_eq!(back.key.as_deref(), Some(key.as_slice()));
        assert_eq!((back.key_slot, back.bundle), (KeySlot::B, vec![root]));
        for f in [
            dir.path().join(DATA_FILE),
            dir.path().join("keys/agent-svid-B.key"),
        ] {
            let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        s.delete().unwrap();
        assert_eq!(s.load().unwrap(), None);
        assert!(!dir.path().join("keys/agent-svid-B.key").exists());
    }

    #[test]
    fn a_key_that_does_not_match_the_leaf_is_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path(), &KeyManagerConfig::Memory);
        let (leaf, _) = cert_and_key();
        let (_, other_key) = cert_and_key();
        s.store(&[leaf], &other_key, KeySlot::A, &[], false)
            .unwrap();
        assert_eq!(s.load().unwrap().unwrap().key, None);
    }

    #[test]
    fn memory_keys_do_not_survive_a_new_storage() {
        let dir = tempfile::tempdir().unwrap();
        let (leaf, key) = cert_and_key();
        Storage::new(dir.path(), &KeyManagerConfig::Memory)
            .store(&[leaf], &key, KeySlot::A, &[], false)
            .unwrap();
        let again = Storage::new(dir.path(), &KeyManagerConfig::Memory);
        let back = again.load().unwrap().unwrap();
        assert_eq!(back.key, None, "the SVID is there but its key is gone");
    }

    #[test]
    fn a_corrupt_data_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(DATA_FILE), b"{not json").unwrap();
        let err = Storage::new(dir.path(), &KeyManagerConfig::Memory)
            .load()
            .unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
