//! Server-side node attestation: turns the evidence an agent presents into its agent ID and
//! node selectors. Attestors are chosen by the `NodeAttestor` plugins of the config.

use std::fmt::Debug;

use signet_common::id::SpiffeId;
use signet_common::selector::Selector;

pub mod join_token;

/// What a successful attestation establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// `spiffe://<td>/spire/agent/<attestor>/<...>`.
    pub agent_id: SpiffeId,
    /// Node selectors (for node aliases).
    pub selectors: Vec<Selector>,
    /// Whether the agent may attest again (false = trust on first use; it must renew).
    pub can_reattest: bool,
}

/// Why attestation failed. Every message starts like SPIRE's ("failed to attest: ...").
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The evidence is unusable (unknown, used or expired token, bad payload).
    #[error("failed to attest: {0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::datastore::StoreError),
}

/// A server-side node attestor.
pub trait NodeAttestor: Send + Sync + Debug {
    /// The attestor's name as agents send it in `AttestationData.type`.
    fn name(&self) -> &'static str;
    /// Checks `payload` and returns who the agent is.
    fn attest(&self, payload: &[u8]) -> Result<Attested, AttestError>;
}
