//! The manager: keeps the agent's view of its authorized entries, bundles and workload
//! SVIDs current and publishes it as a [`Snapshot`].

use std::fmt::Debug;
use std::sync::Arc;

use signet_common::entry::RegistrationEntry;

pub mod snapshot;

pub use snapshot::{Snapshot, WorkloadSvid};

/// A JWT-SVID handed to a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSvid {
    /// Compact JWS.
    pub token: String,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
}

/// Why a JWT-SVID could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The server could not be reached or refused.
    #[error("failed to fetch JWT-SVID: {0}")]
    Unavailable(String),
}

/// What the Workload API needs from the manager besides the snapshot.
#[async_trait::async_trait]
pub trait Identities: Send + Sync + Debug {
    /// A JWT-SVID for `entry` with `audience` (cached per SPIFFE ID and audience set until
    /// half its life).
    async fn jwt_svid(
        &self,
        entry: &RegistrationEntry,
        audience: &[String],
    ) -> Result<JwtSvid, JwtError>;

    /// Marks entries as in use by a connected workload, so their SVIDs are minted if the
    /// bounded cache does not hold them, and are not evicted while in use.
    fn want(&self, entries: &[Arc<RegistrationEntry>]);
}
