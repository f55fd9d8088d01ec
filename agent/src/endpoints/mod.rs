//! The agent's public socket: SPIFFE Workload API (and, later, Envoy SDS) over a Unix
//! socket every local process may connect to; identity comes only from attestation.
//! (Placeholder signatures; replaced by the workload API work.)

use std::path::Path;
use std::sync::Arc;

use signet_common::clock::Clock;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::attestor::workload::Attestors;
use crate::manager::{Identities, Snapshot};

pub mod sds;

/// What the public socket serves from.
#[derive(Debug, Clone)]
pub struct WorkloadApi {
    /// The manager's current snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// JWT-SVIDs and SVID demand.
    pub identities: Arc<dyn Identities>,
    /// Workload attestors.
    pub attestors: Arc<Attestors>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// Binds the public socket (0777; parent directory created if missing).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    Ok(UnixListener::bind(path)?)
}

/// Serves the Workload API on `listener` until `shutdown` turns true.
pub fn serve(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    listener: UnixListener,
    api: WorkloadApi,
    shutdown: watch::Receiver<bool>,
) {
    let _ = (tasks, listener, api, shutdown);
}
