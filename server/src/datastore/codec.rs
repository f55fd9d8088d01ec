//! What both stores share about how records are kept: JSON values read back strictly
//! (anything that does not decode is `Corrupt`), and the key that makes entries similar.

use serde::Serialize;
use serde::de::DeserializeOwned;
use signet_common::entry::RegistrationEntry;

use crate::datastore::StoreError;

pub(crate) fn encode(value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value)
        .map_err(|error| StoreError::Backend(format!("cannot encode: {error}")))
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|error| StoreError::Corrupt(format!("{what}: {error}")))
}

/// `value` prefixed with its length, so that concatenations of such pieces are unambiguous.
pub(crate) fn length_prefixed(value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&(value.len() as u64).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
    out
}

/// What makes two entries similar: SPIFFE ID, parent ID and the (sorted) selector set.
pub(crate) fn similarity_key(entry: &RegistrationEntry) -> Vec<u8> {
    let mut key = length_prefixed(&entry.spiffe_id.to_string());
    key.extend(length_prefixed(&entry.parent_id.to_string()));
    for selector in entry.selectors.iter() {
        key.extend(length_prefixed(&selector.to_string()));
    }
    key
}
