//! `signet-server import spire`: carries a stopped SPIRE server's state into Signet's store,
//! so that the signet-server started on it keeps the same registration entries, agents,
//! join tokens, bundles and signing authorities (same SKI, same JWT `kid`), and every SVID
//! SPIRE issued keeps verifying.
//!
//! Sources, named by SPIRE's server.conf: the SQL datastore (`sqlite` file or `postgres`
//! database, schema version 23 as SPIRE 1.8 to 1.13 write it) and the disk KeyManager's
//! `keys.json`. Everything is read, converted and checked first; the target is written only
//! when all of it can be carried over and the target is empty (or `--force`).
//!
//! | file | does |
//! | --- | --- |
//! | `spire_conf` | reads SPIRE's server.conf (leniently) |
//! | `source` | the queries, the same for every backend; schema version check |
//! | `sqlite`, `postgres` | the two backends |
//! | `proto` | SPIRE's `Bundle` and CA journal protobufs |
//! | `keys` | SPIRE's keys.json, and which CA journal is this server's |
//! | `convert` | rows into Signet records |
//! | `write` | the target: emptiness check, writes |

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use signet_common::config::CommonOverrides;

use crate::config::{Config, DataStoreConfig, JOURNAL_KEY, KeyManagerConfig, RunArgs};

mod convert;
mod error;
mod keys;
mod postgres;
mod proto;
mod source;
mod spire_conf;
mod sqlite;
#[cfg(test)]
mod tests;
mod write;

pub use error::ImportError;
pub use write::{TargetSpec, TargetStore};

use crate::import::source::Source;
use crate::import::spire_conf::SpireStore;

/// What `import spire` is asked to do.
#[derive(Debug, Clone)]
pub struct ImportArgs {
    /// SPIRE's server.conf.
    pub config: PathBuf,
    /// A Signet server.conf naming the target store and key file; by default the target is
    /// what Signet uses with SPIRE's file once its `DataStore "sql"` block is replaced by
    /// `DataStore "sled" {}`: the store in `<data_dir>/datastore`, SPIRE's keys.json in
    /// place.
    pub target_config: Option<PathBuf>,
    /// Import even if the target holds data (records with the same keys are replaced).
    pub force: bool,
    /// Expand `$VAR` in the config files.
    pub expand_env: bool,
}

/// What was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The SPIRE datastore read.
    pub source: String,
    /// The Signet store written.
    pub target: String,
    /// Registration entries.
    pub entries: usize,
    /// Attested agents (banned ones included).
    pub agents: usize,
    /// Of those, banned.
    pub banned_agents: usize,
    /// Join tokens.
    pub join_tokens: usize,
    /// The server's trust domain.
    pub trust_domain: String,
    /// Roots in its bundle.
    pub x509_roots: usize,
    /// JWT keys in its bundle.
    pub jwt_keys: usize,
    /// Federated trust domains whose bundles were imported.
    pub federated_bundles: Vec<String>,
    /// Active X.509 authority (hex SKI) and how many X.509 CAs were journaled.
    pub x509_authority: (String, usize),
    /// Active JWT `kid` and how many JWT keys were journaled.
    pub jwt_authority: (String, usize),
    /// The key file, and whether it is SPIRE's used in place (else written).
    pub keys: (PathBuf, bool),
    /// What was left behind, one line each.
    pub warnings: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Imported SPIRE datastore {} into {}",
            self.source,
            self.target.trim_start_matches("the Signet store ")
        )?;
        writeln!(f, "Registration entries: {}", self.entries)?;
        writeln!(f, "Agents: {} ({} banned)", self.agents, self.banned_agents)?;
        writeln!(f, "Join tokens: {}", self.join_tokens)?;
        writeln!(
            f,
            "Bundle {}: {} X.509 root(s), {} JWT key(s)",
            self.trust_domain, self.x509_roots, self.jwt_keys
        )?;
        writeln!(
            f,
            "Federated bundles: {}{}",
            self.federated_bundles.len(),
            if self.federated_bundles.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.federated_bundles.join(", "))
            }
        )?;
        writeln!(
            f,
            "X.509 authority: {} active ({} journaled)",
            self.x509_authority.0, self.x509_authority.1
        )?;
        writeln!(
            f,
            "JWT authority: {} active ({} journaled)",
            self.jwt_authority.0, self.jwt_authority.1
        )?;
        let how = if self.keys.1 {
            "used in place"
        } else {
            "written"
        };
        writeln!(f, "Keys: {} ({how})", self.keys.0.display())?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        Ok(())
    }
}

/// Runs the import at the clock's `now` (authorities must be unexpired then).
pub async fn import_spire(args: &ImportArgs, now: SystemTime) -> Result<Report, ImportError> {
    let conf = spire_conf::read(&args.config, args.expand_env)?;
    let spec = target_spec(args, &conf)?;
    let mut src: Box<dyn Source> = match &conf.store {
        SpireStore::Sqlite(path) => Box::new(sqlite::SqliteSource::open(path)?),
        SpireStore::Postgres(cs) => Box::new(postgres::PostgresSource::connect(cs).await?),
    };
    let source_name = src.describe();
    let rows = source::read_all(src.as_mut()).await?;
    drop(src);

    let spire_keys = keys::read(&conf.keys_path)?;
    let journal_row = keys::journal_for(&spire_keys, &rows.journals, &conf.keys_path)?;
    let (bundle, federated) = convert::bundles(&rows, &conf.trust_domain)?;
    let journal = convert::journal(
        journal_row,
        &conf.trust_domain,
        &bundle,
        &spire_keys.usable,
        now,
    )?;
    let entries = convert::entries(&rows)?;
    let nodes = convert::nodes(&rows)?;
    let join_tokens = convert::join_tokens(&rows);

    let mut warnings = Vec::new();
    if !rows.federations.is_empty() {
        warnings.push(format!(
            "{} federation relationship(s) not imported ({}): their current bundles were imported; \
             re-create the relationships with `signet-server federation create`",
            rows.federations.len(),
            rows.federations
                .iter()
                .map(|f| format!("{} at {}", f.trust_domain, f.bundle_endpoint_url))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if rows.journals.len() > 1 {
        warnings.push(format!(
            "the datastore holds {} CA journals (several servers shared it): only this server's authorities were imported; \
             the others' roots stay in the bundle",
            rows.journals.len()
        ));
    }

    let target = write::Target::open(spec.clone(), &conf.keys_path).await?;
    if target.keys_in_place() && !spire_keys.unusable.is_empty() {
        return Err(ImportError::Keys {
            path: conf.keys_path.clone(),
            error: format!(
                "it holds keys Signet cannot read ({}), so it cannot be used in place: \
                 name another keys_path with --target-config",
                spire_keys.unusable.join(", ")
            ),
        });
    }
    if !spire_keys.unusable.is_empty() {
        warnings.push(format!(
            "key(s) {} not imported: Signet signs with EC P-256 and P-384 keys only",
            spire_keys.unusable.join(", ")
        ));
    }
    if let Some(existing) = target.existing().await?
        && !args.force
    {
        return Err(ImportError::NotEmpty(existing));
    }
    let report = Report {
        source: source_name,
        target: target.describe().to_owned(),
        entries: entries.len(),
        agents: nodes.len(),
        banned_agents: nodes.iter().filter(|n| n.is_banned()).count(),
        join_tokens: join_tokens.len(),
        trust_domain: conf.trust_domain.to_string(),
        x509_roots: bundle.x509_authorities.len(),
        jwt_keys: bundle.jwt_authorities.len(),
        federated_bundles: federated
            .iter()
            .map(|b| b.trust_domain.to_string())
            .collect(),
        x509_authority: (journal.x509_authority_id.clone(), journal.x509_count),
        jwt_authority: (journal.jwt_kid.clone(), journal.jwt_count),
        keys: (spec.keys_path.clone(), target.keys_in_place()),
        warnings,
    };
    target
        .write(
            write::Plan {
                keys: spire_keys.usable,
                journal,
                bundle,
                federated,
                entries,
                nodes,
                join_tokens,
            },
            args.force,
        )
        .await?;
    Ok(report)
}

/// The target from `--target-config`, or Signet's defaults for SPIRE's file.
fn target_spec(args: &ImportArgs, conf: &spire_conf::SpireConf) -> Result<TargetSpec, ImportError> {
    let Some(path) = &args.target_config else {
        return Ok(TargetSpec {
            store: TargetStore::Sled(conf.data_dir.join("datastore")),
            keys_path: conf.keys_path.clone(),
            journal_key: JOURNAL_KEY.into(),
        });
    };
    let target = Config::load(&RunArgs {
        common: CommonOverrides {
            expand_env: args.expand_env,
            ..CommonOverrides::with_config(path)
        },
        ..RunArgs::default()
    })
    .map_err(|e| ImportError::Config(format!("--target-config: {e}")))?;
    let bad = |e: String| ImportError::Config(format!("--target-config {}: {e}", path.display()));
    if target.trust_domain != conf.trust_domain {
        return Err(bad(format!(
            "trust domain {} is not SPIRE's {}",
            target.trust_domain, conf.trust_domain
        )));
    }
    let store = match target.datastore {
        DataStoreConfig::Sled { directory, .. } => TargetStore::Sled(directory),
        DataStoreConfig::Sql { options, .. } => TargetStore::Postgres {
            options,
            data_dir: target.data_dir.clone(),
        },
    };
    let keys_path = match target.key_manager {
        KeyManagerConfig::Disk { keys_path } => keys_path,
        KeyManagerConfig::Memory => {
            return Err(bad(
                "the target must use KeyManager \"disk\": imported CA keys kept in memory would be lost".into(),
            ));
        }
    };
    Ok(TargetSpec {
        store,
        keys_path,
        journal_key: target.ca.journal_key,
    })
}
