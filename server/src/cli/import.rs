//! `import spire`: reads a stopped SPIRE server's datastore and keys (named by its
//! server.conf) into Signet's store; prints what it imported.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use signet_common::clock::{Clock, SystemClock};

use crate::cli::Env;
use crate::import::{ImportArgs, import_spire};

/// What to import from.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Imports a stopped SPIRE server: registration entries, attested agents, join tokens,
    /// bundles and federated bundles, and its CA and JWT signing keys.
    Spire(ImportFlags),
}

/// `import spire` flags.
#[derive(Debug, Clone, Args)]
pub struct ImportFlags {
    /// SPIRE's server.conf (its DataStore "sql" and KeyManager "disk" are read).
    #[arg(long, default_value = "conf/server/server.conf")]
    pub config: PathBuf,
    /// A Signet server.conf naming the target store and key file (default: the store in
    /// <data_dir>/datastore, and SPIRE's keys.json used in place).
    #[arg(long)]
    pub target_config: Option<PathBuf>,
    /// Import even if the target store already holds data.
    #[arg(long)]
    pub force: bool,
    /// Expand environment variables in the config files.
    #[arg(long)]
    pub expand_env: bool,
}

/// Runs the import; an `Err` is the one-line reason nothing (or, for a failed write, not
/// everything) was imported.
pub async fn execute(cmd: ImportCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    let ImportCommand::Spire(f) = cmd;
    let args = ImportArgs {
        config: f.config,
        target_config: f.target_config,
        force: f.force,
        expand_env: f.expand_env,
    };
    let report = import_spire(&args, SystemClock.now()).await?;
    write!(env.stdout, "{report}")?;
    Ok(())
}
