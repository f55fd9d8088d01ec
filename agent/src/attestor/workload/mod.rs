//! Workload attestation: every configured attestor runs for the caller's PID; their
//! selectors are united; attestation fails only if all of them fail.

use std::fmt::Debug;
use std::sync::Arc;

use signet_common::selector::Selector;

pub mod unix;

/// Why a workload attestor failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The process is gone (or its PID was reused).
    #[error("process {0} is gone")]
    Gone(i32),
    /// Reading the process' details failed.
    #[error("{0}")]
    Failed(String),
}

/// The caller of the Workload API, from the socket's peer credentials.
#[derive(Debug, Clone)]
pub struct Peer {
    /// PID at connect time.
    pub pid: i32,
    /// UID at connect time.
    pub uid: u32,
    /// GID at connect time.
    pub gid: u32,
    /// A pidfd pinned to the process (SO_PEERPIDFD), when the kernel gives one.
    pub pidfd: Option<Arc<std::os::fd::OwnedFd>>,
}

/// A workload attestor (SPIRE's WorkloadAttestor plugin).
#[async_trait::async_trait]
pub trait WorkloadAttestor: Send + Sync + Debug {
    /// The selector type it produces (`unix`).
    fn name(&self) -> &'static str;
    /// Selectors for the process.
    async fn attest(&self, peer: &Peer) -> Result<Vec<Selector>, AttestError>;
}

/// All configured attestors.
#[derive(Debug, Clone)]
pub struct Attestors {
    attestors: Vec<Arc<dyn WorkloadAttestor>>,
}

impl Attestors {
    /// The set.
    pub fn new(attestors: Vec<Arc<dyn WorkloadAttestor>>) -> Self {
        Self { attestors }
    }

    /// The attestors.
    pub fn all(&self) -> &[Arc<dyn WorkloadAttestor>] {
        &self.attestors
    }
}
