//! The `unix` workload attestor (placeholder; replaced by the workload API work).

use super::{AttestError, Peer, WorkloadAttestor};
use signet_common::selector::Selector;

/// `WorkloadAttestor "unix" { plugin_data { ... } }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixConfig {
    /// Adds `unix:path` and `unix:sha256` selectors.
    pub discover_workload_path: bool,
    /// Largest binary hashed for `unix:sha256` (0 = unlimited, negative = never).
    pub workload_size_limit: i64,
}

/// The unix attestor.
#[derive(Debug)]
pub struct UnixAttestor {
    config: UnixConfig,
}

impl UnixAttestor {
    /// An attestor with this configuration.
    pub fn new(config: UnixConfig) -> Self {
        Self { config }
    }
}

#[async_trait::async_trait]
impl WorkloadAttestor for UnixAttestor {
    fn name(&self) -> &'static str {
        "unix"
    }

    async fn attest(&self, peer: &Peer) -> Result<Vec<Selector>, AttestError> {
        let _ = &self.config;
        Err(AttestError::Failed(format!(
            "placeholder: cannot attest pid {}",
            peer.pid
        )))
    }
}
