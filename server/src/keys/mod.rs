//! The `KeyManager` seam: where CA and JWT private keys live. `disk` keeps PKCS#8 keys in a
//! 0600 file and survives restarts; `memory` does not.

use std::fmt::Debug;
use std::sync::Arc;

pub mod disk;
pub mod memory;

/// Key algorithms Signet generates (`ca_key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA P-256 (ES256); the default.
    EcP256,
    /// ECDSA P-384 (ES384).
    EcP384,
}

impl std::str::FromStr for KeyType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ec-p256" => Ok(Self::EcP256),
            "ec-p384" => Ok(Self::EcP384),
            other => Err(format!(
                "expected \"ec-p256\" or \"ec-p384\", got {other:?}"
            )),
        }
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Generating a key failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// Reading or writing the key file failed.
    #[error("key storage: {0}")]
    Storage(String),
    /// A stored key could not be decoded.
    #[error("corrupt key {0}")]
    Corrupt(String),
}

/// A private key held by a key manager.
pub struct ManagedKey {
    /// The key manager's ID for it (`x509-CA-A`, `JWT-Signer-B`, ...).
    pub id: String,
    /// Algorithm.
    pub key_type: KeyType,
    /// The private key, PKCS#8 DER.
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for ManagedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedKey")
            .field("id", &self.id)
            .field("key_type", &self.key_type)
            .field("pkcs8", &"[redacted]")
            .finish()
    }
}

impl KeyType {
    /// The rcgen signature algorithm for this key type (ECDSA with the curve's hash).
    pub fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    /// The key type of a PKCS#8 EC private key, or `None` if it is neither P-256 nor P-384.
    pub fn of_pkcs8(pkcs8: &[u8]) -> Option<Self> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        };
        if EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).is_ok() {
            Some(Self::EcP256)
        } else if EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8).is_ok() {
            Some(Self::EcP384)
        } else {
            None
        }
    }
}

/// Generates a fresh key of `key_type` under `id` (PKCS#8).
fn generate_key(id: &str, key_type: KeyType) -> Result<ManagedKey, KeyError> {
    let pair = rcgen::KeyPair::generate_for(key_type.signature_algorithm())
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(ManagedKey {
        id: id.to_owned(),
        key_type,
        pkcs8: pair.serialize_der(),
    })
}

/// Holds private keys by ID, as SPIRE's KeyManager plugins do.
pub trait KeyManager: Send + Sync + Debug {
    /// Generates a new key under `id`, replacing any key with that ID, and returns it. With
    /// a persistent manager the key is durable before this returns.
    fn generate(&self, id: &str, key_type: KeyType) -> Result<Arc<ManagedKey>, KeyError>;
    /// The key with this ID, or `None` if there is none.
    fn key(&self, id: &str) -> Result<Option<Arc<ManagedKey>>, KeyError>;
}
