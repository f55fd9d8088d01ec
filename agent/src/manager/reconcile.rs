//! The manager's loops. `run_watch` keeps the server's change push open and turns each
//! event into a full sync (reopening it after 1 s, doubling to 5 s, or at once when a sync
//! succeeds again); `run_sync` does full syncs (entries, own and federated bundles, then
//! SVIDs) on a push, every `sync_interval` as a safety net, and after failures (with a
//! backoff bounded by the soonest-expiring SVID, see [`crate::retry::retry_bound`]); between
//! them it mints SVIDs when one is due for renewal or a workload wants
//! one, and republishes when an SVID expires. While the server is unreachable the current
//! SVIDs keep being served until they expire.

use std::sync::Arc;
use std::time::SystemTime;

use signet_common::clock::from_unix_seconds;
use signet_common::entry::RegistrationEntry;
use signet_common::id::parse_trust_domain;
use signet_common::rotation::renew_at;
use signet_common::x509::cert_info;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::client::ClientError;
use crate::config::WorkloadKeyType;
use crate::manager::Manager;
use crate::manager::api::X509Results;
use crate::manager::cache::{Held, Plan};
use crate::manager::snapshot::WorkloadSvid;
use crate::retry::{Backoff, WATCH_BACKOFF, retry_delay, sleep_until, urgent_from};
use crate::svid::csr_for;

/// Most SVIDs asked for in one `BatchNewX509SVID` (SPIRE asks for up to 500): small enough
/// that several requests are in flight while there is much to mint, so the server signs
/// them in parallel and the agent makes the next batch's keys meanwhile.
pub(super) const BATCH: usize = 200;

/// Most `BatchNewX509SVID` requests in flight at once (each with its keys made on the
/// blocking pool first).
const IN_FLIGHT: usize = 4;

impl Manager {
    pub(super) async fn run_sync(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let interval = self.config.sync_interval;
        let mut backoff = Backoff::default();
        let mut full_due = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut pushed = true;
        loop {
            if retry_at.is_none_or(|t| Instant::now() >= t) {
                let full = pushed || Instant::now() >= full_due;
                let result = if full {
                    let started = Instant::now();
                    let synced = self.full_sync().await;
                    self.metrics.synced(&synced, started.elapsed());
                    synced
                } else {
                    self.mint().await
                };
                match result {
                    Ok(()) => {
                        if retry_at.is_some() {
                            // Back after a failure: reopen the change push now too.
                            self.reconnect.notify_one();
                        }
                        backoff.reset();
                        retry_at = None;
                        if full {
                            pushed = false;
                            full_due = Instant::now() + interval;
                        }
                    }
                    Err(e) if self.refused(&e) => return Ok(()),
                    Err(e) => {
                        let bound = self.cache().retry_bound(self.clock.now());
                        let delay =
                            retry_delay(backoff.next_delay(), bound, (self.config.jitter)());
                        let error = if full {
                            format!("failed to fetch authorized entries: {e}")
                        } else {
                            format!("failed to mint SVIDs: {e}")
                        };
                        tracing::warn!(%error, retry_in = ?delay, "Sync with the server failed");
                        retry_at = Some(Instant::now() + delay);
                        pushed = true;
                    }
                }
            }
            self.publish();
            let deadline = self.cache().next_deadline(self.clock.now());
            let timer = retry_at.unwrap_or(full_due);
            tokio::select! {
                () = self.push.notified() => {
                    pushed = true;
                    retry_at = None;
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(timer) => {}
                () = self.sleep_until_clock(deadline) => {}
                () = self.halted(&mut stop) => return Ok(()),
            }
        }
    }

    pub(super) async fn run_watch(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut backoff = Backoff::capped(WATCH_BACKOFF, WATCH_BACKOFF * 5);
        loop {
            let opened = self.api.watch().await;
            self.metrics.set_server_connected(opened.is_ok());
            match opened {
                Ok(mut events) => loop {
                    tokio::select! {
                        item = events.next() => match item {
                            Some(Ok(())) => {
                                backoff.reset();
                                self.push.notify_one();
                            }
                            Some(Err(e)) if self.refused(&e) => {
                                self.metrics.set_server_connected(false);
                                return Ok(());
                            }
                            Some(Err(error)) => {
                                tracing::debug!(%error, "Change push stream failed");
                                break;
                            }
                            None => {
                                tracing::debug!("Change push stream ended");
                                break;
                            }
                        },
                        () = self.halted(&mut stop) => return Ok(()),
                    }
                },
                Err(e) if self.refused(&e) => return Ok(()),
                Err(error) => tracing::debug!(%error, "Cannot open the change push stream"),
            }
            self.metrics.set_server_connected(false);
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = self.reconnect.notified() => {}
                () = self.halted(&mut stop) => return Ok(()),
            }
        }
    }

    /// Entries, bundles, then SVIDs; publishes.
    async fn full_sync(&self) -> Result<(), ClientError> {
        let known = self.cache().entries.clone();
        let entries = self.api.authorized_entries(&known).await?;
        let bundle = self.api.bundle().await?;
        {
            let mut cache = self.cache();
            cache.set_entries(entries);
            cache.set_bundle(bundle);
        }
        self.sync_federated().await?;
        let (roots, tainted_kids) = {
            let cache = self.cache();
            let b = &cache.bundle;
            (
                b.x509_authorities.iter().map(|a| a.der.clone()).collect(),
                b.jwt_authorities
                    .iter()
                    .filter(|k| k.tainted)
                    .map(|k| k.key_id.clone())
                    .collect::<Vec<_>>(),
            )
        };
        if let Some(identity) = &self.identity {
            if let Err(error) = identity.update_roots(roots) {
                tracing::warn!(%error, "Cannot store the trust bundle");
            }
            // As SPIRE's agent does: its own SVID is renewed at once when its signing
            // authority is tainted, before that authority is revoked.
            if self.cache().is_tainted(&identity.current().chain) {
                tracing::info!("The agent SVID's authority is tainted; renewing it now");
                identity.renew_now();
            }
        }
        self.jwt.prune(&tainted_kids, self.clock.unix_now());
        self.mint().await?;
        self.cache().synced = true;
        self.publish();
        Ok(())
    }

    /// Fetches the bundle of every trust domain the entries federate with. A bundle that
    /// cannot be had keeps its previous copy (if any).
    async fn sync_federated(&self) -> Result<(), ClientError> {
        let wanted = self.cache().federated_tds();
        let mut fetched = std::collections::BTreeMap::new();
        for name in wanted {
            let Ok(td) = parse_trust_domain(&name) else {
                continue;
            };
            match self.api.federated_bundle(&td).await {
                Ok(b) => {
                    fetched.insert(td, Arc::new(b));
                }
                Err(e) if e.denial().is_some() || e.is_unavailable() => return Err(e),
                Err(error) => {
                    tracing::warn!(%error, trust_domain = %td, "Cannot fetch a federated bundle");
                    if let Some(old) = self.cache().federated.get(&td) {
                        fetched.insert(td, Arc::clone(old));
                    }
                }
            }
        }
        self.cache().federated = fetched;
        Ok(())
    }

    /// Mints what the plan says, in batches of [`BATCH`] with up to [`IN_FLIGHT`] of them
    /// under way at once (keys made on the blocking pool), publishing after each batch in
    /// the plan's order.
    async fn mint(&self) -> Result<(), ClientError> {
        let Plan { mint, evict } = self.cache().plan(self.clock.now());
        if !evict.is_empty() {
            let mut cache = self.cache();
            for id in &evict {
                cache.svids.remove(id);
            }
            tracing::debug!(
                count = evict.len(),
                "Evicted SVIDs beyond x509_svid_cache_max_size"
            );
        }
        let batches: Vec<Vec<Arc<RegistrationEntry>>> =
            mint.chunks(BATCH).map(<[_]>::to_vec).collect();
        let requests = futures::stream::iter(batches.into_iter().map(|b| self.mint_batch(b)));
        let mut batches = futures::StreamExt::buffered(requests, IN_FLIGHT);
        // In the plan's order (wanted entries first); the first failure ends the round as
        // before, batches still in flight are dropped and minted on the retry.
        while let Some(batch) = batches.next().await {
            let (keyed, results) = batch?;
            let mut cache = self.cache();
            for ((entry, key, _), result) in keyed.into_iter().zip(results) {
                let held = result.and_then(|chain| self.held(entry.clone(), chain, key));
                self.metrics.renewed(&held);
                match held {
                    Ok(h) => {
                        tracing::debug!(entry_id = %entry.id, spiffe_id = %entry.spiffe_id, expires_at = h.svid.not_after, "SVID updated");
                        cache.svids.insert(entry.id.clone(), h);
                    }
                    Err(error) => {
                        tracing::warn!(%error, entry_id = %entry.id, spiffe_id = %entry.spiffe_id, "Cannot mint an X509-SVID");
                    }
                }
            }
            drop(cache);
            self.publish();
        }
        Ok(())
    }

    /// Keys and CSRs for `batch` (on the blocking pool), then one `BatchNewX509SVID`.
    async fn mint_batch(
        &self,
        batch: Vec<Arc<RegistrationEntry>>,
    ) -> Result<(Vec<Keyed>, X509Results), ClientError> {
        let keyed = new_keys(self.config.key_type, batch).await?;
        let params = keyed
            .iter()
            .map(|(e, _, csr)| (e.id.clone(), csr.clone()))
            .collect();
        let results = self.api.new_x509_svids(params).await?;
        Ok((keyed, results))
    }

    fn held(
        &self,
        entry: Arc<RegistrationEntry>,
        chain: Vec<Vec<u8>>,
        key_pkcs8: Vec<u8>,
    ) -> Result<Held, ClientError> {
        held_since(
            entry,
            chain,
            key_pkcs8,
            self.clock.now(),
            (self.config.jitter)(),
        )
    }

    /// Publishes a new snapshot if anything changed (expired SVIDs drop out here). The
    /// cache lock is released before the watch is written, so a reader holding a snapshot
    /// borrow may call `want` without a deadlock.
    pub(super) fn publish(&self) {
        let mut next = self.cache().snapshot(0, self.clock.now());
        self.snapshot.send_if_modified(move |current| {
            next.revision = current.revision;
            if next == **current {
                return false;
            }
            next.revision += 1;
            *current = Arc::new(next);
            true
        });
    }

    async fn sleep_until_clock(&self, at: Option<SystemTime>) {
        match at {
            Some(at) => sleep_until(&self.clock, at, self.config.sync_interval).await,
            None => std::future::pending().await,
        }
    }
}

/// An SVID for `entry` that arrived at `received_at`, and when to renew it.
pub(super) fn held_since(
    entry: Arc<RegistrationEntry>,
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
    received_at: SystemTime,
    jitter: f64,
) -> Result<Held, ClientError> {
    let info = chain
        .first()
        .and_then(|leaf| cert_info(leaf))
        .ok_or_else(|| ClientError::Malformed("SVID leaf does not parse".into()))?;
    if info.id != entry.spiffe_id {
        return Err(ClientError::Malformed(format!(
            "SVID for {} where {} was asked for",
            info.id, entry.spiffe_id
        )));
    }
    // Half life measured from when the SVID arrived: NotBefore is back-dated, which would
    // make a short-lived SVID due for renewal the moment it is issued.
    let start = from_unix_seconds(info.not_before).max(received_at);
    let expires = from_unix_seconds(info.not_after);
    Ok(Held {
        renew_at: renew_at(start, expires, jitter),
        urgent_at: urgent_from(start, expires),
        received_at,
        svid: Arc::new(WorkloadSvid::new(
            entry,
            &chain,
            key_pkcs8,
            info.not_before,
            info.not_after,
        )),
    })
}

/// An entry, the PKCS#8 DER of a new key for it and a CSR for that key.
type Keyed = (Arc<RegistrationEntry>, Vec<u8>, Vec<u8>);

/// A fresh key and CSR for each of `entries`, made on the blocking pool (key generation and
/// signing are CPU work that must not hold a reactor thread).
async fn new_keys(
    kind: WorkloadKeyType,
    entries: Vec<Arc<RegistrationEntry>>,
) -> Result<Vec<Keyed>, ClientError> {
    tokio::task::spawn_blocking(move || {
        entries
            .into_iter()
            .map(|e| new_key(kind).map(|(key, csr)| (e, key, csr)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ClientError::Malformed(format!("key generation task failed: {e}")))?
    .map_err(|e| ClientError::Malformed(format!("cannot create a key: {e}")))
}

/// A fresh workload key (PKCS#8 DER) and a CSR for it.
fn new_key(kind: WorkloadKeyType) -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    let alg = match kind {
        WorkloadKeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        WorkloadKeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let key = rcgen::KeyPair::generate_for(alg)?;
    let csr = csr_for(&key)?;
    Ok((key.serialize_der(), csr))
}
