//! Attested nodes (agents) as the server records them.

use serde::{Deserialize, Serialize};

use crate::id::{SpiffeId, serde_id};
use crate::selector::Selector;

/// An agent that completed node attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedNode {
    /// The agent's SPIFFE ID.
    #[serde(with = "serde_id")]
    pub spiffe_id: SpiffeId,
    /// The node attestor that vouched for it (`join_token`, `x509pop`, ...).
    pub attestation_type: String,
    /// Serial (lower-case hex) of the agent's current SVID; empty once banned.
    pub serial: String,
    /// Unix seconds when the current SVID expires.
    pub expires_at: i64,
    /// Serial of an SVID issued by RenewAgent but not yet presented; empty if none.
    pub new_serial: String,
    /// Expiry of that new SVID.
    pub new_expires_at: i64,
    /// Whether the agent can attest again (false for join tokens: trust on first use).
    pub can_reattest: bool,
    /// Node selectors from attestation.
    pub selectors: Vec<Selector>,
    /// The agent's version, as it reported it.
    pub agent_version: String,
}

impl AttestedNode {
    /// A banned node keeps its record, with both serials cleared.
    pub fn is_banned(&self) -> bool {
        self.serial.is_empty() && self.new_serial.is_empty()
    }
}
