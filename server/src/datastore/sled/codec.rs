//! How records are kept in sled's trees. Registration entries are SPIRE's `types.Entry`
//! protobuf (through the one conversion in `signet-proto`), without the ID, which is the key;
//! the few other records (nodes, bundles, tokens, federations) stay JSON. Everything is read
//! back strictly: anything that does not decode is `Corrupt`, naming the record. Also sled's
//! errors as `StoreError`s.

use prost::Message;
use serde::de::DeserializeOwned;
use signet_common::entry::RegistrationEntry;
use signet_proto::types;
use sled::Tree;
use sled::transaction::{ConflictableTransactionError, ConflictableTransactionResult};

use crate::datastore::StoreError;
pub(super) use crate::datastore::codec::{decode, encode};

/// A transaction step's result.
pub(super) type TxResult<T> = ConflictableTransactionResult<T, StoreError>;

/// Index values carry no data: the key says it all.
pub(super) const PRESENT: &[u8] = &[];

pub(super) fn read<T: DeserializeOwned>(
    tree: &Tree,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, StoreError> {
    let bytes = tree.get(key).map_err(backend)?;
    bytes.map(|bytes| decode(what, &bytes)).transpose()
}

pub(super) fn decode_all<T: DeserializeOwned>(
    tree: &Tree,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    tree.iter()
        .values()
        .map(|bytes| decode(what, &bytes.map_err(backend)?))
        .collect()
}

/// The stored form of `entry` (its ID is the key).
pub(super) fn encode_entry(entry: &RegistrationEntry) -> Vec<u8> {
    let mut proto = types::Entry::from(entry);
    proto.id = String::new();
    proto.encode_to_vec()
}

/// The entry stored under `key` as `value`.
pub(super) fn decode_entry(key: &[u8], value: &[u8]) -> Result<RegistrationEntry, StoreError> {
    let id = std::str::from_utf8(key).map_err(|_| {
        StoreError::Corrupt(format!(
            "entry key {:?} is not an entry ID",
            String::from_utf8_lossy(key)
        ))
    })?;
    let corrupt =
        |error: &dyn std::fmt::Display| StoreError::Corrupt(format!("entry {id}: {error}"));
    let mut proto = types::Entry::decode(value).map_err(|e| corrupt(&e))?;
    proto.id = id.to_owned();
    RegistrationEntry::try_from(&proto).map_err(|e| corrupt(&e))
}

/// The entry stored under `id`, if any.
pub(super) fn read_entry(tree: &Tree, id: &[u8]) -> Result<Option<RegistrationEntry>, StoreError> {
    let bytes = tree.get(id).map_err(backend)?;
    bytes.map(|bytes| decode_entry(id, &bytes)).transpose()
}

/// The entries `items` (a scan of the entry tree) yields, decoded.
pub(super) fn decode_entries(
    items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> Result<Vec<RegistrationEntry>, StoreError> {
    items
        .map(|item| {
            let (key, value) = item.map_err(backend)?;
            decode_entry(&key, &value)
        })
        .collect()
}

pub(super) fn backend(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Corruption { .. } => StoreError::Corrupt(error.to_string()),
        error => StoreError::Backend(error.to_string()),
    }
}

pub(super) fn abort<T>(error: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(error))
}
