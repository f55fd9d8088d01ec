//! SPIRE's disk KeyManager file (`keys_path`): `{"keys": {"<key ID>": "<base64 PKCS#8>"}}`,
//! the format Signet's disk KeyManager also uses, and the choice of the CA journal that
//! belongs to these keys.

use std::io::ErrorKind;
use std::path::Path;

use crate::ca::authority_id_of_key;
use crate::import::error::ImportError;
use crate::import::source::JournalRow;
use crate::keys::ManagedKey;
use crate::keys::disk::decode_each;

/// The keys read from SPIRE's file.
#[derive(Debug)]
pub(super) struct SpireKeys {
    /// Keys Signet can sign with (EC P-256 / P-384), by ID.
    pub(super) usable: Vec<ManagedKey>,
    /// IDs of keys Signet cannot use (RSA keys, other curves).
    pub(super) unusable: Vec<String>,
}

/// Reads `path`; a missing or malformed file is an error.
pub(super) fn read(path: &Path) -> Result<SpireKeys, ImportError> {
    let fail = |error: String| ImportError::Keys {
        path: path.to_owned(),
        error,
    };
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => fail(
            "no such file (the keys_path of KeyManager \"disk\"; without it the CA keys cannot be imported)"
                .into(),
        ),
        _ => fail(e.to_string()),
    })?;
    let mut keys = SpireKeys {
        usable: Vec::new(),
        unusable: Vec::new(),
    };
    for k in decode_each(&bytes).map_err(|e| fail(e.to_string()))? {
        match k {
            Ok(k) => keys.usable.push(k),
            Err(id) => keys.unusable.push(id),
        }
    }
    Ok(keys)
}

/// The journal of the server that holds `keys`, found as SPIRE finds its own on boot: the
/// one whose active X.509 authority is the SKI of one of the keys (the newest such row when
/// several servers share the database).
pub(super) fn journal_for<'a>(
    keys: &SpireKeys,
    journals: &'a [JournalRow],
    keys_path: &Path,
) -> Result<&'a JournalRow, ImportError> {
    let ids: Vec<String> = keys
        .usable
        .iter()
        .filter(|k| k.id.starts_with("x509-CA-"))
        .filter_map(authority_id_of_key)
        .collect();
    if let Some(j) = journals
        .iter()
        .rev()
        .find(|j| ids.contains(&j.active_x509_authority_id.to_ascii_lowercase()))
    {
        return Ok(j);
    }
    let error = if journals.is_empty() {
        "the datastore has no CA journal (ca_journals is empty): was it written by SPIRE 1.8 or later?".to_owned()
    } else if keys.unusable.iter().any(|id| id.starts_with("x509-CA-")) {
        format!(
            "its X.509 CA keys ({}) are not EC P-256 or P-384 keys, which Signet cannot sign with",
            keys.unusable.join(", ")
        )
    } else {
        format!(
            "none of its keys is the active X.509 CA of any of the {} CA journal(s) in the datastore: is it this server's keys_path?",
            journals.len()
        )
    };
    Err(ImportError::Keys {
        path: keys_path.to_owned(),
        error,
    })
}
