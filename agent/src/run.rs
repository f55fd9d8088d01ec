//! Starting the agent from the command line (placeholder; the wiring lands separately).

use std::path::PathBuf;

/// `signet-agent run` flags; each overrides the matching key of the config file.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// `--config`.
    pub config: PathBuf,
    /// `--join-token`.
    pub join_token: Option<String>,
    /// `--server-address`.
    pub server_address: Option<String>,
    /// `--server-port`.
    pub server_port: Option<u16>,
    /// `--socket-path`.
    pub socket_path: Option<PathBuf>,
    /// `--trust-bundle` (PEM file).
    pub trust_bundle: Option<PathBuf>,
    /// `--trust-domain`.
    pub trust_domain: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--expand-env`.
    pub expand_env: bool,
}

/// Loads the config, attests, serves until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("agent not wired yet (config {})", args.config.display())
}
