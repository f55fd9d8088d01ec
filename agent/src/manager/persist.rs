//! Workload SVIDs across agent restarts: `<data_dir>/workload-svids.json` (mode 0600, written
//! atomically after every published change once the agent has synced) holds the authorized
//! entries, the own and federated bundles and every held X509-SVID with its key, so that an
//! agent restarted while the server is away serves the still-valid ones at once. Nothing is
//! written with `KeyManager "memory"` (keys then never touch the disk), and the file is
//! removed when the server refuses the agent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use signet_common::bundle::Bundle;
use signet_common::clock::{from_unix_seconds, unix_seconds};
use signet_common::entry::RegistrationEntry;
use signet_common::fs::write_private_atomically;
use tokio::sync::watch;

use crate::manager::Manager;
use crate::manager::cache::{Cache, Held};
use crate::manager::reconcile::held_since;

/// The file, under `data_dir`.
pub const WORKLOAD_FILE: &str = "workload-svids.json";

/// The format written; another one is ignored (the agent then waits for the server).
const VERSION: u32 = 1;

/// The shortest pause between two writes (changes in between are written together).
pub const WRITE_EVERY: Duration = Duration::from_millis(200);

/// What the file holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stored {
    version: u32,
    /// Authorized entries.
    pub entries: Vec<RegistrationEntry>,
    /// The own trust domain's bundle.
    pub bundle: Bundle,
    /// Federated bundles.
    pub federated: Vec<Bundle>,
    /// Held SVIDs.
    pub svids: Vec<StoredSvid>,
}

/// One held SVID.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredSvid {
    /// The entry it was minted for, by ID.
    pub entry_id: String,
    /// The entry revision it was minted for.
    pub revision: i64,
    /// Chain, leaf first, DER base64.
    pub chain: Vec<String>,
    /// PKCS#8 DER base64.
    pub key: String,
    /// Unix seconds when it arrived (its renewal time is reckoned from then).
    pub received_at: i64,
}

/// A restored SVID, decoded.
#[derive(Debug)]
pub struct RestoredSvid {
    /// The entry ID.
    pub entry_id: String,
    /// Chain, DER.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER.
    pub key: Vec<u8>,
    /// When it arrived, Unix seconds.
    pub received_at: i64,
}

/// Reads the file; `None` (with a warning when it exists but is unusable) if there is none.
pub fn load(path: &Path) -> Option<(Stored, Vec<RestoredSvid>)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "Cannot read the stored workload SVIDs");
            return None;
        }
    };
    let stored: Stored = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "Ignoring corrupt stored workload SVIDs");
            return None;
        }
    };
    if stored.version != VERSION {
        tracing::warn!(version = stored.version, path = %path.display(), "Ignoring stored workload SVIDs of another format");
        return None;
    }
    let decode = |s: &StoredSvid| -> Option<RestoredSvid> {
        Some(RestoredSvid {
            entry_id: s.entry_id.clone(),
            chain: s
                .chain
                .iter()
                .map(|c| STANDARD.decode(c).ok())
                .collect::<Option<_>>()?,
            key: STANDARD.decode(&s.key).ok()?,
            received_at: s.received_at,
        })
    };
    let svids = stored.svids.iter().filter_map(decode).collect();
    Some((stored, svids))
}

/// What `cache` amounts to on disk (expired SVIDs left out).
pub fn encode(cache: &Cache, now: SystemTime) -> Stored {
    let svid = |(id, h): (&String, &Held)| StoredSvid {
        entry_id: id.clone(),
        revision: h.svid.entry.revision_number,
        chain: h.svid.chain.iter().map(|c| STANDARD.encode(c)).collect(),
        key: STANDARD.encode(&h.svid.key_pkcs8),
        received_at: unix_seconds(h.received_at),
    };
    Stored {
        version: VERSION,
        entries: cache.entries.values().map(|e| (**e).clone()).collect(),
        bundle: (*cache.bundle).clone(),
        federated: cache.federated.values().map(|b| (**b).clone()).collect(),
        svids: cache
            .svids
            .iter()
            .filter(|(_, h)| from_unix_seconds(h.svid.not_after) > now)
            .map(svid)
            .collect(),
    }
}

/// Writes `stored` to `path` (0600, atomically), off the async threads.
pub async fn write(path: PathBuf, stored: Stored) {
    let written = tokio::task::spawn_blocking(move || {
        let json = serde_json::to_vec(&stored)?;
        write_private_atomically(&path, &json)?;
        anyhow::Ok(())
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(error = %format!("{error:#}"), "Cannot store the workload SVIDs")
        }
        Err(error) => tracing::warn!(%error, "Cannot store the workload SVIDs"),
    }
}

/// Removes the file (the server refused the agent).
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "Cannot remove the stored workload SVIDs")
        }
    }
}

impl Manager {
    /// Serves what `path` holds until the server answers: its entries and bundles, and every
    /// SVID that has not expired (one minted for an older revision of its entry is served
    /// but due for renewal). The snapshot then counts as synced.
    pub(super) fn restore(&self, path: &Path) {
        let Some((stored, svids)) = load(path) else {
            return;
        };
        if stored.bundle.trust_domain != self.config.trust_domain {
            tracing::warn!(path = %path.display(), "Ignoring stored workload SVIDs of another trust domain");
            return;
        }
        let now = self.clock.now();
        let revisions: HashMap<&str, i64> = stored
            .svids
            .iter()
            .map(|s| (s.entry_id.as_str(), s.revision))
            .collect();
        let mut cache = self.cache();
        cache.set_entries(stored.entries.into_iter().map(Arc::new).collect());
        cache.set_bundle(stored.bundle);
        cache.federated = stored
            .federated
            .into_iter()
            .map(|b| (b.trust_domain.clone(), Arc::new(b)))
            .collect();
        let mut restored = 0;
        for s in svids {
            let Some(entry) = cache.entries.get(&s.entry_id).cloned() else {
                continue;
            };
            let received = from_unix_seconds(s.received_at);
            match held_since(entry, s.chain, s.key, received, (self.config.jitter)()) {
                Ok(mut held) if from_unix_seconds(held.svid.not_after) > now => {
                    if revisions.get(s.entry_id.as_str()) != Some(&held.svid.entry.revision_number)
                    {
                        held.renew_at = now;
                    }
                    cache.svids.insert(s.entry_id, held);
                    restored += 1;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, entry_id = %s.entry_id, "Ignoring a stored workload SVID")
                }
            }
        }
        cache.synced = true;
        drop(cache);
        tracing::info!(svids = restored, path = %path.display(), "Serving stored workload SVIDs until the server answers");
        self.publish();
    }

    /// Writes the state after every published change (at most every [`WRITE_EVERY`]) once
    /// synced, until `stop`; removes the file when the server refuses the agent.
    pub(super) async fn run_persist(
        self: Arc<Self>,
        path: PathBuf,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut rx = self.subscribe();
        let mut halted = self.halted.subscribe();
        loop {
            let synced = rx.borrow_and_update().synced;
            if synced {
                let stored = encode(&self.cache(), self.clock.now());
                write(path.clone(), stored).await;
            }
            tokio::time::sleep(WRITE_EVERY).await;
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return Ok(()) },
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = halted.wait_for(|h| *h) => {
                    remove(&path);
                    return Ok(());
                }
            }
        }
    }
}
