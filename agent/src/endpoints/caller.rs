//! Caller attestation on the public socket, shared by the Workload API and SDS: every
//! workload attestor, then a check that the caller is still the process that connected.

use std::fmt::Debug;
use std::sync::Arc;

use signet_common::selector::SelectorSet;
use tonic::Status;
use tracing::Instrument;

use crate::attestor::workload::{Attestors, Peer};
use crate::endpoints::error::ApiError;

/// Attests the caller of a request (the same attestation the Workload API uses).
#[async_trait::async_trait]
pub trait CallerSelectors: Send + Sync + Debug {
    /// The caller's selectors, or the status to fail with.
    async fn caller_selectors(&self, extensions: &tonic::Extensions)
    -> Result<SelectorSet, Status>;
}

/// Attests callers of the public socket: every attestor, then a check that the caller is
/// still the process that connected. Shared by the Workload API and SDS.
#[derive(Debug, Clone)]
pub struct CallerAttestor {
    attestors: Arc<Attestors>,
}

impl CallerAttestor {
    /// Attests with `attestors`.
    pub fn new(attestors: Arc<Attestors>) -> Self {
        Self { attestors }
    }

    /// The caller's selectors.
    pub async fn attest(&self, peer: &Peer) -> Result<SelectorSet, ApiError> {
        let selectors = self
            .attestors
            .attest(peer)
            .await
            .map_err(ApiError::Attestation)?;
        if !peer.is_alive() {
            return Err(ApiError::CallerGone);
        }
        tracing::debug!(selectors = ?selectors, "Attested workload");
        Ok(selectors)
    }
}

#[async_trait::async_trait]
impl CallerSelectors for CallerAttestor {
    async fn caller_selectors(
        &self,
        extensions: &tonic::Extensions,
    ) -> Result<SelectorSet, Status> {
        let peer = extensions.get::<Peer>().ok_or(ApiError::NoPeer)?;
        let span = tracing::info_span!("sds", pid = peer.pid, uid = peer.uid);
        async { self.attest(peer).await.map_err(Status::from) }
            .instrument(span)
            .await
    }
}
