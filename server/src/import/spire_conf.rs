//! What the import needs from SPIRE's server.conf: the trust domain, the data directory,
//! the SQL datastore and the disk KeyManager. Read leniently (any other key or plugin is
//! left alone: a SPIRE file may configure plugins Signet does not have), with SPIRE's HCL1
//! or JSON syntax.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use signet_common::config::{PluginBlock, parse_hcl, plugin_data, read_file};
use signet_common::id::{TrustDomain, parse_trust_domain};

use crate::import::error::ImportError;

/// Where SPIRE's datastore is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SpireStore {
    /// A sqlite3 file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

/// The parts of SPIRE's server.conf the import reads.
#[derive(Debug, Clone)]
pub(super) struct SpireConf {
    pub(super) trust_domain: TrustDomain,
    pub(super) data_dir: PathBuf,
    pub(super) store: SpireStore,
    pub(super) keys_path: PathBuf,
}

#[derive(Deserialize)]
struct File {
    server: Server,
    #[serde(default)]
    plugins: BTreeMap<String, BTreeMap<String, PluginBlock>>,
}

#[derive(Deserialize)]
struct Server {
    trust_domain: Option<String>,
    data_dir: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
struct SqlData {
    database_type: Option<String>,
    connection_string: Option<String>,
}

#[derive(Deserialize, Default)]
struct DiskData {
    keys_path: Option<PathBuf>,
}

/// Reads `path` (with `$VAR` expansion if `expand_env`).
pub(super) fn read(path: &Path, expand_env: bool) -> Result<SpireConf, ImportError> {
    let name = path.display().to_string();
    let bad = |e: String| ImportError::Config(format!("{name}: {e}"));
    let bad_key = |e: signet_common::config::KeyError| bad(e.to_string());
    let text = read_file(path, expand_env).map_err(|e| ImportError::Config(e.to_string()))?;
    let file: File = parse_hcl(&text, &name).map_err(|e| ImportError::Config(e.to_string()))?;
    let td = file
        .server
        .trust_domain
        .ok_or_else(|| bad("server.trust_domain is required".into()))?;
    let trust_domain =
        parse_trust_domain(&td).map_err(|e| bad(format!("server.trust_domain: {e}")))?;
    let data_dir = file
        .server
        .data_dir
        .ok_or_else(|| bad("server.data_dir is required".into()))?;
    let mut store = None;
    let mut keys_path = None;
    for (kind, named) in file.plugins {
        for (plugin, block) in named {
            if block.enabled == Some(false) {
                continue;
            }
            let what = format!("plugins.{kind} \"{plugin}\"");
            match (kind.as_str(), plugin.as_str()) {
                ("DataStore", "sql") => {
                    let d: SqlData = plugin_data(&what, block.data(&what).map_err(&bad_key)?)
                        .map_err(&bad_key)?;
                    let cs = d.connection_string.ok_or_else(|| {
                        bad(format!("{what}: plugin_data.connection_string is required"))
                    })?;
                    store = Some(match d.database_type.as_deref() {
                        Some("sqlite3") => SpireStore::Sqlite(PathBuf::from(cs)),
                        Some("postgres") => SpireStore::Postgres(cs),
                        Some(other) => {
                            return Err(bad(format!(
                                "{what}: database_type {other:?} cannot be imported (sqlite3 or postgres)"
                            )));
                        }
                        None => {
                            return Err(bad(format!(
                                "{what}: plugin_data.database_type is required"
                            )));
                        }
                    });
                }
                ("DataStore", _) => {
                    return Err(bad(format!(
                        "{what}: not SPIRE's SQL datastore; only DataStore \"sql\" can be imported"
                    )));
                }
                ("KeyManager", "disk") => {
                    let d: DiskData = plugin_data(&what, block.data(&what).map_err(&bad_key)?)
                        .map_err(&bad_key)?;
                    keys_path = Some(d.keys_path.ok_or_else(|| {
                        bad(format!("{what}: plugin_data.keys_path is required"))
                    })?);
                }
                ("KeyManager", "memory") => {
                    return Err(bad(format!(
                        "{what}: SPIRE kept its CA keys in memory, so they are gone with the server; \
                         only a KeyManager \"disk\" server can be imported with its authorities"
                    )));
                }
                ("KeyManager", _) => {
                    return Err(bad(format!(
                        "{what}: its keys cannot be read; only KeyManager \"disk\" can be imported"
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(SpireConf {
        trust_domain,
        data_dir,
        store: store.ok_or_else(|| bad("plugins: no DataStore \"sql\" is configured".into()))?,
        keys_path: keys_path
            .ok_or_else(|| bad("plugins: no KeyManager \"disk\" is configured".into()))?,
    })
}
