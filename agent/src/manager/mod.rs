//! The manager: keeps the agent's view of its authorized entries, bundles and workload
//! SVIDs current and publishes it as a [`Snapshot`].

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use signet_common::clock::Clock;
use signet_common::entry::RegistrationEntry;
use signet_common::id::TrustDomain;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::client::{ClientError, Denial, JwtSvid};
use crate::config::{Config, KeyManagerConfig, WorkloadKeyType};
use crate::metrics::AgentMetrics;
use crate::retry::{Jitter, random_jitter};
use crate::svid::AgentIdentity;

pub mod api;
pub mod cache;
pub mod jwt;
pub mod persist;
mod reconcile;
pub mod snapshot;
#[cfg(test)]
mod tests;

pub use api::ServerApi;
pub use cache::IN_USE_FOR;
pub use snapshot::{Snapshot, WorkloadSvid};

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

/// How the manager behaves (from the agent configuration).
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// The agent's trust domain.
    pub trust_domain: TrustDomain,
    /// Key type of workload SVIDs.
    pub key_type: WorkloadKeyType,
    /// Soft bound on cached X509-SVIDs.
    pub x509_svid_cache_max_size: usize,
    /// Bound on cached JWT-SVIDs.
    pub jwt_svid_cache_max_size: usize,
    /// Safety-net full sync period (the server pushes changes as they happen).
    pub sync_interval: Duration,
    /// Where renewal jitter comes from (drawn once per SVID).
    pub jitter: Jitter,
    /// Where workload SVIDs are kept across restarts (none with `KeyManager "memory"`).
    pub persist_to: Option<PathBuf>,
}

impl ManagerConfig {
    /// The manager settings of an agent configuration.
    pub fn from_config(c: &Config) -> Self {
        Self {
            trust_domain: c.trust_domain.clone(),
            key_type: c.workload_key_type,
            x509_svid_cache_max_size: c.x509_svid_cache_max_size,
            jwt_svid_cache_max_size: c.jwt_svid_cache_max_size,
            sync_interval: c.sync_interval,
            jitter: random_jitter,
            persist_to: match c.key_manager {
                KeyManagerConfig::Disk { .. } => Some(c.data_dir.join(persist::WORKLOAD_FILE)),
                KeyManagerConfig::Memory => None,
            },
        }
    }
}

/// Keeps the agent's authorized entries, bundles and workload SVIDs current and publishes
/// them as [`Snapshot`]s; serves JWT-SVIDs and SVID demand to the Workload API.
#[derive(Debug)]
pub struct Manager {
    config: ManagerConfig,
    api: Arc<dyn ServerApi>,
    clock: Arc<dyn Clock>,
    identity: Option<Arc<AgentIdentity>>,
    cache: Mutex<cache::Cache>,
    jwt: jwt::JwtCache,
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// A workload wants an SVID that is not held.
    wake: Notify,
    /// The server pushed a change.
    push: Notify,
    /// A sync succeeded after failures: reopen the change push without waiting.
    reconnect: Notify,
    /// Set once the server refused the agent: both loops end.
    halted: watch::Sender<bool>,
    metrics: Arc<AgentMetrics>,
}

impl Manager {
    /// A manager talking to `api`. With `identity`, a refusal of the agent by the server
    /// removes the agent SVID and stops the agent, and bundle changes are persisted.
    pub fn new(
        config: ManagerConfig,
        api: Arc<dyn ServerApi>,
        clock: Arc<dyn Clock>,
        identity: Option<Arc<AgentIdentity>>,
    ) -> Arc<Self> {
        Self::with_metrics(config, api, clock, identity, Arc::default())
    }

    /// As [`Manager::new`], recording syncs, renewals and the server connection in `metrics`.
    pub fn with_metrics(
        config: ManagerConfig,
        api: Arc<dyn ServerApi>,
        clock: Arc<dyn Clock>,
        identity: Option<Arc<AgentIdentity>>,
        metrics: Arc<AgentMetrics>,
    ) -> Arc<Self> {
        let td = config.trust_domain.clone();
        let manager = Arc::new(Self {
            cache: Mutex::new(cache::Cache::new(
                td.clone(),
                config.x509_svid_cache_max_size,
            )),
            jwt: jwt::JwtCache::new(config.jwt_svid_cache_max_size),
            snapshot: watch::Sender::new(Arc::new(Snapshot::empty(td))),
            wake: Notify::new(),
            push: Notify::new(),
            reconnect: Notify::new(),
            halted: watch::Sender::new(false),
            config,
            api,
            clock,
            identity,
            metrics,
        });
        if let Some(path) = &manager.config.persist_to {
            manager.restore(path);
        }
        manager
    }

    /// Follows the published snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    /// Starts the sync loop and the change-push watcher; both end when `stop` turns true
    /// or the server refuses the agent.
    pub fn spawn(
        self: &Arc<Self>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        stop: watch::Receiver<bool>,
    ) {
        tasks.spawn(Arc::clone(self).run_sync(stop.clone()));
        if let Some(path) = self.config.persist_to.clone() {
            tasks.spawn(Arc::clone(self).run_persist(path, stop.clone()));
        }
        tasks.spawn(Arc::clone(self).run_watch(stop));
    }

    /// The SVID held for `entry_id` with its renewal schedule, expired or not (the snapshot
    /// leaves expired ones out); for `doctor`.
    pub fn held_svid(&self, entry_id: &str) -> Option<cache::Held> {
        self.cache().svids.get(entry_id).cloned()
    }

    fn cache(&self) -> MutexGuard<'_, cache::Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `err` means the server refused the agent for good (then the agent stops,
    /// and so do the manager's loops).
    fn refused(&self, err: &ClientError) -> bool {
        let refused = match &self.identity {
            Some(identity) => identity.refused(err),
            None => err.denial().is_some_and(|d| d != Denial::NotActive),
        };
        if refused {
            self.halted.send_replace(true);
        }
        refused
    }

    /// Resolves when `stop` turns true or the server refused the agent.
    async fn halted(&self, stop: &mut watch::Receiver<bool>) {
        let mut halted = self.halted.subscribe();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            _ = halted.wait_for(|h| *h) => {}
        }
    }
}

#[async_trait::async_trait]
impl Identities for Manager {
    async fn jwt_svid(
        &self,
        entry: &RegistrationEntry,
        audience: &[String],
    ) -> Result<JwtSvid, JwtError> {
        let key = jwt::JwtKey::new(&entry.spiffe_id, audience);
        let now = self.clock.unix_now();
        let stale = match self.jwt.get(&key, now) {
            jwt::Lookup::Fresh(svid) => return Ok(svid),
            jwt::Lookup::Stale(svid) => Some(svid),
            jwt::Lookup::Missing => None,
        };
        match self.api.new_jwt_svid(&entry.id, audience).await {
            Ok(svid) => {
                self.jwt.put(key, svid.clone(), now, (self.config.jitter)());
                Ok(svid)
            }
            Err(error) => {
                self.refused(&error);
                match stale {
                    Some(svid) => {
                        tracing::warn!(%error, entry_id = %entry.id, "Cannot renew JWT-SVID; serving the cached one");
                        Ok(svid)
                    }
                    None => Err(JwtError::Unavailable(error.to_string())),
                }
            }
        }
    }

    fn want(&self, entries: &[Arc<RegistrationEntry>]) {
        let now = self.clock.now();
        let missing = self.cache().want(entries.iter().map(|e| e.id.clone()), now);
        if missing {
            self.wake.notify_one();
        }
    }
}
