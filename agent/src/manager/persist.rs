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
use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use signet_common::bundle::Bundle;
use signet_common::clock::{from_unix_seconds, unix_seconds};
use signet_common::entry::RegistrationEntry;
use signet_common::fs::write_private_atomically_with;
use tokio::sync::watch;

use crate::manager::Manager;
use crate::manager::cache::{Cache, Held};
use crate::manager::reconcile::held_since;
use crate::manager::snapshot::WorkloadSvid;

/// The file, under `data_dir`.
pub const WORKLOAD_FILE: &str = "workload-svids.json";

/// The format written; another one is ignored (the agent then waits for the server).
const VERSION: u32 = 1;

/// The shortest pause between two writes (changes in between are written together).
pub const WRITE_EVERY: Duration = Duration::from_millis(200);

/// What the file holds, as read back.
#[derive(Debug, Deserialize)]
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

/// One held SVID, as read back.
#[derive(Debug, Deserialize)]
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

/// What is to be written: the cache's entries, bundles and SVIDs, shared with it. Nothing
/// is copied until it is serialized, straight into the file (a copy of every chain and key,
/// base64 and JSON, held at once, would be the agent's largest allocation).
#[derive(Debug)]
pub struct ToStore {
    entries: Vec<Arc<RegistrationEntry>>,
    bundle: Arc<Bundle>,
    federated: Vec<Arc<Bundle>>,
    svids: Vec<(Arc<WorkloadSvid>, i64)>,
}

/// [`Stored`] as written, borrowing from [`ToStore`].
#[derive(Serialize)]
struct StoredRef<'a> {
    version: u32,
    entries: Vec<&'a RegistrationEntry>,
    bundle: &'a Bundle,
    federated: Vec<&'a Bundle>,
    svids: Vec<StoredSvidRef<'a>>,
}

/// [`StoredSvid`] as written.
#[derive(Serialize)]
struct StoredSvidRef<'a> {
    entry_id: &'a str,
    revision: i64,
    #[serde(serialize_with = "base64_each")]
    chain: &'a [Bytes],
    #[serde(serialize_with = "base64")]
    key: &'a [u8],
    received_at: i64,
}

/// Bytes serialized as base64, encoded as they are written.
struct Base64<'a>(&'a [u8]);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Base64Display::new(self.0, &STANDARD))
    }
}

fn base64<S: Serializer>(bytes: &&[u8], s: S) -> Result<S::Ok, S::Error> {
    Base64(bytes).serialize(s)
}

fn base64_each<S: Serializer>(certs: &&[Bytes], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(certs.iter().map(|c| Base64(c)))
}

impl ToStore {
    fn write_json(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let stored = StoredRef {
            version: VERSION,
            entries: self.entries.iter().map(|e| &**e).collect(),
            bundle: &self.bundle,
            federated: self.federated.iter().map(|b| &**b).collect(),
            svids: self
                .svids
                .iter()
                .map(|(svid, received_at)| StoredSvidRef {
                    entry_id: &svid.entry.id,
                    revision: svid.entry.revision_number,
                    chain: &svid.chain,
                    key: &svid.key_pkcs8,
                    received_at: *received_at,
                })
                .collect(),
        };
        serde_json::to_writer(out, &stored).map_err(std::io::Error::from)
    }
}

/// What `cache` amounts to on disk (expired SVIDs left out).
pub fn encode(cache: &Cache, now: SystemTime) -> ToStore {
    let svid = |h: &Held| (Arc::clone(&h.svid), unix_seconds(h.received_at));
    ToStore {
        entries: cache.entries.values().cloned().collect(),
        bundle: Arc::clone(&cache.bundle),
        federated: cache.federated.values().cloned().collect(),
        svids: cache
            .svids
            .values()
            .filter(|h| from_unix_seconds(h.svid.not_after) > now)
            .map(svid)
            .collect(),
    }
}

/// Writes `stored` to `path` (0600, atomically), off the async threads.
pub async fn write(path: PathBuf, stored: ToStore) {
    let written = tokio::task::spawn_blocking(move || {
        write_private_atomically_with(&path, |out| stored.write_json(out))
    })
    .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "Cannot store the workload SVIDs"),
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
