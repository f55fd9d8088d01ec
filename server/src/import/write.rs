//! The target: Signet's store and key file. Checked for emptiness before anything is
//! written, then written in an order that never leaves a journal naming missing keys:
//! keys, CA journal, bundles, entries, agents, join tokens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::node::AttestedNode;

use crate::ca::ImportedJournal;
use crate::datastore::postgres::{PgOptions, PgStore};
use crate::datastore::sled::SledStore;
use crate::datastore::{DataStore, JoinToken, StoreError};
use crate::import::error::ImportError;
use crate::keys::ManagedKey;
use crate::keys::disk::DiskKeyManager;

/// Signet's store the import writes to.
#[derive(Debug, Clone)]
pub enum TargetStore {
    /// `DataStore "sled"`: its directory.
    Sled(PathBuf),
    /// `DataStore "sql"` on PostgreSQL; this server's CA journal is keyed by the ID kept in
    /// `data_dir/server_id`, as `run` keys it.
    Postgres {
        /// The connection options.
        options: PgOptions,
        /// The server's data_dir.
        data_dir: PathBuf,
    },
}

/// Where the import writes.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// The store.
    pub store: TargetStore,
    /// Signet's disk KeyManager file. When it is SPIRE's own keys.json, Signet uses that
    /// file in place and nothing is written to it.
    pub keys_path: PathBuf,
    /// `CaConfig::journal_key` (for sled; a PostgreSQL target uses its server ID).
    pub journal_key: String,
}

/// Everything to write, converted and checked.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) keys: Vec<ManagedKey>,
    pub(super) journal: ImportedJournal,
    pub(super) bundle: Bundle,
    pub(super) federated: Vec<Bundle>,
    pub(super) entries: Vec<RegistrationEntry>,
    pub(super) nodes: Vec<AttestedNode>,
    pub(super) join_tokens: Vec<JoinToken>,
}

/// The opened target.
pub(super) struct Target {
    spec: TargetSpec,
    /// Names the store in messages.
    describe: String,
    journal_key: String,
    store: Arc<dyn DataStore>,
    /// `None` when the target key file is SPIRE's (used in place).
    keys: Option<DiskKeyManager>,
}

impl Target {
    /// Opens the store and, unless it is SPIRE's own file, the key file.
    pub(super) async fn open(spec: TargetSpec, spire_keys: &Path) -> Result<Self, ImportError> {
        let (store, describe, journal_key): (Arc<dyn DataStore>, String, String) = match &spec.store
        {
            TargetStore::Sled(dir) => {
                let describe = format!("the Signet store {}", dir.display());
                let store = SledStore::open(dir).map_err(|e| {
                    ImportError::target(&describe, format!("{e} (is signet-server running on it?)"))
                })?;
                (Arc::new(store), describe, spec.journal_key.clone())
            }
            TargetStore::Postgres { options, data_dir } => {
                let store = PgStore::connect(options)
                    .await
                    .map_err(|e| ImportError::target("the Signet PostgreSQL store", e))?;
                let describe = format!("the Signet store {}", store.describe());
                let key = crate::run::server_instance_id(data_dir)
                    .map_err(|e| ImportError::target(&describe, format!("{e:#}")))?;
                (Arc::new(store), describe, key)
            }
        };
        let keys = if same_file(&spec.keys_path, spire_keys) {
            None
        } else {
            Some(DiskKeyManager::open(&spec.keys_path).map_err(|e| {
                ImportError::target(format!("the key file {}", spec.keys_path.display()), e)
            })?)
        };
        Ok(Self {
            spec,
            describe,
            journal_key,
            store,
            keys,
        })
    }

    /// Names the store.
    pub(super) fn describe(&self) -> &str {
        &self.describe
    }

    /// Whether the target keys are SPIRE's file, used in place.
    pub(super) fn keys_in_place(&self) -> bool {
        self.keys.is_none()
    }

    /// What the target already holds, or `None` if it is empty.
    pub(super) async fn existing(&self) -> Result<Option<String>, ImportError> {
        let read = |e: StoreError| ImportError::target(&self.describe, e);
        let mut held = Vec::new();
        let n = self.store.list_entries().await.map_err(read)?.len();
        if n > 0 {
            held.push(format!("{n} registration entries"));
        }
        let n = self.store.list_nodes().await.map_err(read)?.len();
        if n > 0 {
            held.push(format!("{n} agents"));
        }
        let n = self.store.list_bundles().await.map_err(read)?.len();
        if n > 0 {
            held.push(format!("{n} bundles"));
        }
        if self
            .store
            .ca_journal(&self.journal_key)
            .await
            .map_err(read)?
            .is_some()
        {
            held.push("a CA journal".into());
        }
        let mut parts = Vec::new();
        if !held.is_empty() {
            parts.push(format!(
                "{} already holds {}",
                self.describe,
                held.join(", ")
            ));
        }
        if let Some(km) = &self.keys {
            let ids = km.key_ids();
            if !ids.is_empty() {
                parts.push(format!(
                    "the key file {} already holds keys ({})",
                    self.spec.keys_path.display(),
                    ids.join(", ")
                ));
            }
        }
        Ok((!parts.is_empty()).then(|| parts.join("; ")))
    }

    /// Writes the plan. With `force`, records with the same key (entry ID, agent ID, trust
    /// domain, token, key ID) are replaced, and an existing entry that the imported one
    /// duplicates (same SPIFFE ID, parent and selectors) is deleted first.
    pub(super) async fn write(&self, plan: Plan, force: bool) -> Result<(), ImportError> {
        if let Some(km) = &self.keys {
            km.put_keys(plan.keys).map_err(|e| {
                ImportError::write(format!("the key file {}", self.spec.keys_path.display()), e)
            })?;
        }
        let s = &self.store;
        s.set_ca_journal(&self.journal_key, &plan.journal.bytes)
            .await
            .map_err(|e| ImportError::write("the CA journal", e))?;
        for b in std::iter::once(plan.bundle).chain(plan.federated) {
            let td = b.trust_domain.to_string();
            s.set_bundle(b)
                .await
                .map_err(|e| ImportError::write(format!("bundle {td}"), e))?;
        }
        for e in plan.entries {
            let id = e.id.clone();
            let what = || format!("registration entry {id}");
            if force
                && s.entry(&e.id)
                    .await
                    .map_err(|err| ImportError::write(what(), err))?
                    .is_some()
            {
                s.delete_entry(&e.id)
                    .await
                    .map_err(|err| ImportError::write(what(), err))?;
            }
            match s.create_entry(e.clone()).await {
                Ok(_) => {}
                Err(StoreError::SimilarEntry(other)) if force => {
                    s.delete_entry(&other.id)
                        .await
                        .map_err(|err| ImportError::write(what(), err))?;
                    s.create_entry(e)
                        .await
                        .map_err(|err| ImportError::write(what(), err))?;
                }
                Err(err) => return Err(ImportError::write(what(), err)),
            }
        }
        for n in plan.nodes {
            let what = format!("agent {}", n.spiffe_id);
            s.put_node(n)
                .await
                .map_err(|e| ImportError::write(what, e))?;
        }
        for t in plan.join_tokens {
            match s.create_join_token(t).await {
                Ok(()) => {}
                Err(StoreError::AlreadyExists(_)) if force => {}
                Err(e) => return Err(ImportError::write("a join token", e)),
            }
        }
        Ok(())
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
