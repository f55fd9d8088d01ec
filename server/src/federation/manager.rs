//! The relationships in force and the loop that keeps their bundles fresh. Static
//! relationships (`federates_with` in the config) override dynamic ones (the TrustDomain
//! API, kept in the store) for the same trust domain. Each relationship gets a task that
//! fetches the bundle, stores it when it changed and announces the change (so agents get it
//! pushed at once), then waits the remote's refresh hint; failures are logged with the
//! reason, leave the stored bundle alone and are retried with doubling waits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use signet_common::bundle::Bundle;
use signet_common::id::TrustDomain;
use tokio::sync::{Notify, watch};
use tokio::task::{AbortHandle, JoinSet};

use super::fetch::{self, FetchContext, FetchError};
use crate::datastore::StoreError;
use crate::registry::Registry;
use crate::relationship::Relationship;

/// Refresh interval when the remote publishes no hint (SPIRE: 5 min).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// How often the relationships are re-read without a local change (others may share the
/// store).
const RELIST_EVERY: Duration = Duration::from_secs(30);

/// Why a refresh did not store a bundle.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The endpoint could not be fetched or served something unusable.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The federation relationships of one server and their refreshers.
pub struct Federation {
    own: TrustDomain,
    statics: BTreeMap<String, Relationship>,
    registry: Arc<Registry>,
    ctx: FetchContext,
    floor: Duration,
    changed: Notify,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("own", &self.own)
            .field("statics", &self.statics.keys())
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// Relationships of a server in `own`; `floor` is the shortest refresh interval
    /// ([`crate::config::MIN_REFRESH`] outside tests).
    pub fn new(
        own: TrustDomain,
        statics: Vec<Relationship>,
        registry: Arc<Registry>,
        ctx: FetchContext,
        floor: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            own,
            statics: statics
                .into_iter()
                .map(|r| (r.trust_domain.to_string(), r))
                .collect(),
            registry,
            ctx,
            floor,
            changed: Notify::new(),
        })
    }

    /// The server's own trust domain.
    pub fn own(&self) -> &TrustDomain {
        &self.own
    }

    /// Whether `td`'s relationship comes from the config file.
    pub fn is_static(&self, td: &TrustDomain) -> bool {
        self.statics.contains_key(td.as_str())
    }

    /// The static relationships, by trust domain.
    pub fn statics(&self) -> impl Iterator<Item = &Relationship> {
        self.statics.values()
    }

    /// Every relationship in force, by trust domain (static ones win).
    pub async fn relationships(&self) -> Result<Vec<Relationship>, StoreError> {
        let mut all: BTreeMap<String, Relationship> = self
            .registry
            .store()
            .list_federations()
            .await?
            .into_iter()
            .map(|r| (r.trust_domain.to_string(), r))
            .collect();
        all.extend(self.statics.clone());
        Ok(all.into_values().collect())
    }

    /// The relationship in force with `td`, if any.
    pub async fn relationship(&self, td: &TrustDomain) -> Result<Option<Relationship>, StoreError> {
        if let Some(r) = self.statics.get(td.as_str()) {
            return Ok(Some(r.clone()));
        }
        self.registry.store().federation(td).await
    }

    /// Tells the refreshers that relationships were created, changed or deleted.
    pub fn relationships_changed(&self) {
        self.changed.notify_one();
    }

    /// Fetches `rel`'s bundle now and stores it if it changed; returns the refresh hint the
    /// remote published (0 if none).
    pub async fn refresh(&self, rel: &Relationship) -> Result<i64, RefreshError> {
        let store = self.registry.store();
        let endpoint_bundle = match &rel.profile {
            super::EndpointProfile::HttpsWeb => None,
            super::EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => {
                store.bundle(endpoint_spiffe_id.trust_domain()).await?
            }
        };
        let fetched = fetch::fetch(&self.ctx, rel, endpoint_bundle.as_ref()).await?;
        let hint = fetched.refresh_hint;
        let mut changed = false;
        store
            .update_bundle_with(&rel.trust_domain, &mut |stored: &mut Bundle| {
                changed = !same_content(stored, &fetched);
                if changed {
                    *stored = fetched.clone();
                }
                changed
            })
            .await?;
        if changed {
            tracing::info!(
                trust_domain = %rel.trust_domain,
                sequence = fetched.sequence_number,
                x509_authorities = fetched.x509_authorities.len(),
                jwt_authorities = fetched.jwt_authorities.len(),
                "Federated bundle updated"
            );
            self.registry.bundles_changed();
        }
        Ok(hint)
    }

    /// Starts the refreshers; they follow relationship changes until `stop`.
    pub fn spawn(
        self: &Arc<Self>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        stop: watch::Receiver<bool>,
    ) {
        let federation = Arc::clone(self);
        tasks.spawn(async move {
            federation.supervise(stop).await;
            Ok(())
        });
    }

    async fn supervise(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut running: BTreeMap<String, (Relationship, AbortHandle)> = BTreeMap::new();
        let mut refreshers = JoinSet::new();
        loop {
            match self.relationships().await {
                Ok(rels) => {
                    let wanted: BTreeMap<String, Relationship> = rels
                        .into_iter()
                        .map(|r| (r.trust_domain.to_string(), r))
                        .collect();
                    running.retain(|td, (rel, handle)| {
                        let keep = wanted.get(td) == Some(rel);
                        if !keep {
                            handle.abort();
                        }
                        keep
                    });
                    for (td, rel) in wanted {
                        if running.contains_key(&td) {
                            continue;
                        }
                        let this = Arc::clone(&self);
                        let handle = refreshers.spawn({
                            let rel = rel.clone();
                            async move { this.keep_fresh(rel).await }
                        });
                        running.insert(td, (rel, handle));
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "Cannot read federation relationships; keeping the refreshers as they are")
                }
            }
            // Reap finished (aborted) refreshers.
            while refreshers.try_join_next().is_some() {}
            let stopping = tokio::select! {
                () = self.changed.notified() => false,
                () = tokio::time::sleep(RELIST_EVERY) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopping {
                refreshers.shutdown().await;
                return;
            }
        }
    }

    async fn keep_fresh(self: Arc<Self>, rel: Relationship) {
        let mut failures = 0u32;
        loop {
            let wait = match self.refresh(&rel).await {
                Ok(hint) => {
                    failures = 0;
                    refresh_interval(hint, self.floor)
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let wait = retry_interval(failures, self.floor);
                    tracing::warn!(
                        trust_domain = %rel.trust_domain,
                        url = %rel.bundle_endpoint_url,
                        %error,
                        retry_in = ?wait,
                        "Failed to refresh the federated bundle; keeping the stored one"
                    );
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Whether two bundles hold the same keys, hint and sequence (then nothing is written).
fn same_content(a: &Bundle, b: &Bundle) -> bool {
    a.x509_authorities == b.x509_authorities
        && a.jwt_authorities == b.jwt_authorities
        && a.refresh_hint == b.refresh_hint
        && a.sequence_number == b.sequence_number
}

/// The wait after a successful fetch: the remote's hint (default when absent), never under
/// `floor`.
pub fn refresh_interval(hint: i64, floor: Duration) -> Duration {
    let hinted = u64::try_from(hint)
        .ok()
        .filter(|s| *s > 0)
        .map_or(DEFAULT_REFRESH, Duration::from_secs);
    hinted.max(floor)
}

/// The wait after the `failures`-th failure in a row: `floor`, doubling, at most the
/// default refresh interval.
pub fn retry_interval(failures: u32, floor: Duration) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    floor.saturating_mul(factor).min(DEFAULT_REFRESH.max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MIN_REFRESH;

    #[test]
    fn refresh_follows_the_hint_within_floor_and_default() {
        assert_eq!(refresh_interval(0, MIN_REFRESH), DEFAULT_REFRESH);
        assert_eq!(refresh_interval(-5, MIN_REFRESH), DEFAULT_REFRESH);
        assert_eq!(refresh_interval(10, MIN_REFRESH), MIN_REFRESH);
        assert_eq!(refresh_interval(120, MIN_REFRESH), Duration::from_secs(120));
        assert_eq!(
            refresh_interval(3600, MIN_REFRESH),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn retries_back_off_from_the_floor_to_the_default() {
        let waits: Vec<u64> = (1..=5)
            .map(|n| retry_interval(n, MIN_REFRESH).as_secs())
            .collect();
        assert_eq!(waits, [60, 120, 240, 300, 300]);
        assert_eq!(retry_interval(u32::MAX, MIN_REFRESH), DEFAULT_REFRESH);
    }
}
