//! Server-side node attestation: turns the evidence an agent presents into its agent ID and
//! node selectors. Attestors are chosen by the `NodeAttestor` plugins of the config.

use std::fmt::Debug;

use signet_common::id::SpiffeId;
use signet_common::selector::Selector;

pub mod join_token;
pub mod k8s_psat;

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

/// The gRPC code a plugin's refusal carries to the agent, as SPIRE's plugins choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The payload is malformed or names something not configured.
    InvalidArgument,
    /// The evidence is genuine but does not grant an identity.
    PermissionDenied,
    /// The plugin cannot attest at all (not configured).
    FailedPrecondition,
    /// Checking the evidence failed (an API server's error, an unexpected answer).
    Internal,
}

/// Why attestation failed. Every message starts like SPIRE's ("failed to attest: ...").
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The evidence is unusable (unknown, used or expired token, bad payload).
    #[error("failed to attest: {0}")]
    Invalid(String),
    /// A plugin refused the agent; SPIRE prefixes the plugin's message with its name.
    #[error("failed to attest: nodeattestor({plugin}): {message}")]
    Plugin {
        /// The plugin's name.
        plugin: &'static str,
        /// The code SPIRE's plugin returns for this case.
        code: Refusal,
        /// The plugin's message, in SPIRE's words.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::datastore::StoreError),
}

/// A server-side node attestor.
#[tonic::async_trait]
pub trait NodeAttestor: Send + Sync + Debug {
    /// The attestor's name as agents send it in `AttestationData.type`.
    fn name(&self) -> &'static str;
    /// Checks `payload` and returns who the agent is. Attestors that call out (an API
    /// server) bound every call, so this always ends.
    async fn attest(&self, payload: &[u8]) -> Result<Attested, AttestError>;
}
