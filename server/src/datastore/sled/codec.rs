//! How values are kept in sled's trees: JSON, read back strictly (anything that does not
//! decode is `Corrupt`), and sled's errors as `StoreError`s.

use serde::de::DeserializeOwned;
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

pub(super) fn backend(error: sled::Error) -> StoreError {
    match error {
        sled::Error::Corruption { .. } => StoreError::Corrupt(error.to_string()),
        error => StoreError::Backend(error.to_string()),
    }
}

pub(super) fn abort<T>(error: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(error))
}
