//! Node attestation, agent side: what the agent sends in `AttestAgent` to prove which node it
//! runs on, and how it answers the server's challenges (SPIRE's agent NodeAttestor plugins).

use std::fmt::Debug;

use signet_proto::types::AttestationData;

pub mod join_token;
pub mod k8s_psat;

/// An agent-side node attestor.
pub trait NodeAttestor: Send + Sync + Debug {
    /// The attestor's name, as configured and as the server knows it (`join_token`).
    fn name(&self) -> &'static str;

    /// The `AttestationData{type, payload}` of the first `AttestAgent` request, or why the
    /// evidence cannot be gathered (read again on every attestation).
    fn attestation_data(&self) -> Result<AttestationData, String>;

    /// The answer to a server challenge. Attestors without challenges refuse them.
    fn answer(&self, challenge: &[u8]) -> Result<Vec<u8>, String>;

    /// Whether the server lets this agent attest again (it then gets new SVIDs that way
    /// instead of with `RenewAgent`).
    fn can_reattest(&self) -> bool {
        false
    }
}
