//! Workload attestation: every configured attestor runs for the caller's PID; their
//! selectors are united. As in SPIRE, an attestor that fails is logged and left out, and
//! attestation fails only if all of them fail — except that an attestor that could not
//! reach what it needs ([`AttestError::Unavailable`], the kubelet) fails the attestation,
//! so that the caller gets the reason instead of the smaller identity of the others.

use std::fmt::Debug;
use std::sync::Arc;

use futures::future::join_all;
use signet_common::selector::{Selector, SelectorSet};

pub mod k8s;
mod ttl_cache;
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
    /// What the attestor asks (the kubelet) did not answer; a retry may succeed.
    #[error("{0}")]
    Unavailable(String),
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
    /// The process start time from `/proc/<pid>/stat` at connect time; only read (and
    /// only needed) when there is no pidfd. See [`Peer::is_alive`].
    pub start_time: Option<u64>,
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

    /// Runs every attestor for `peer` concurrently and unites their selectors. Failed
    /// attestors are logged and skipped; only if all of them fail is the result an error
    /// ([`AttestError::Gone`] if any saw the process gone). An [`AttestError::Unavailable`]
    /// is always the result. With no attestors configured the set is empty.
    pub async fn attest(&self, peer: &Peer) -> Result<SelectorSet, AttestError> {
        let results = join_all(self.attestors.iter().map(|a| a.attest(peer))).await;
        let mut selectors = SelectorSet::new();
        let mut succeeded = self.attestors.is_empty();
        let mut last_error = None;
        for (attestor, result) in self.attestors.iter().zip(results) {
            match result {
                Ok(found) => {
                    succeeded = true;
                    found.into_iter().for_each(|s| selectors.insert(s));
                }
                Err(error) => {
                    tracing::warn!(
                        %error,
                        attestor = attestor.name(),
                        pid = peer.pid,
                        "Workload attestor failed"
                    );
                    // Gone beats Unavailable beats Failed.
                    let rank = |e: &AttestError| match e {
                        AttestError::Gone(_) => 2,
                        AttestError::Unavailable(_) => 1,
                        AttestError::Failed(_) => 0,
                    };
                    if last_error.as_ref().is_none_or(|l| rank(&error) >= rank(l)) {
                        last_error = Some(error);
                    }
                }
            }
        }
        match (succeeded, last_error) {
            (_, Some(error @ AttestError::Unavailable(_))) | (false, Some(error)) => Err(error),
            _ => Ok(selectors),
        }
    }
}
