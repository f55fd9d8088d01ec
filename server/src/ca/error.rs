//! Why the CA failed.

use crate::datastore::StoreError;
use crate::keys::KeyError;

/// Why the CA failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CSR could not be parsed or its signature does not verify.
    #[error("malformed CSR: {0}")]
    MalformedCsr(String),
    /// The request itself is invalid (SPIFFE ID, audience, DNS name).
    #[error("{0}")]
    InvalidRequest(String),
    /// The server's configuration refuses the operation (an upstream authority is or is
    /// not configured).
    #[error("{0}")]
    Refused(String),
    /// The CA has no active authority yet.
    #[error("server is initializing")]
    Initializing,
    /// The operation was valid but could not be applied (the bundle does not hold the
    /// authority, or it is not in the state the operation needs).
    #[error("{0}")]
    Failed(String),
    /// No active authority (should not happen after `Ca::new`).
    #[error("no active {0} authority")]
    NotReady(&'static str),
    /// Building or signing a certificate or token failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The upstream authority's files are unusable.
    #[error("upstream authority: {0}")]
    Upstream(String),
    /// Keys.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
}
