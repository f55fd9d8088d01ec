//! Starting the server from the command line (placeholder; the wiring lands separately).

use std::path::PathBuf;

/// `signet-server run` flags; each overrides the matching key of the config file.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// `--config`: the HCL file.
    pub config: PathBuf,
    /// `--bind-address`.
    pub bind_address: Option<String>,
    /// `--server-port`.
    pub server_port: Option<u16>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--trust-domain`.
    pub trust_domain: Option<String>,
    /// `--socket-path`.
    pub socket_path: Option<PathBuf>,
    /// `--expand-env`: expand `$VAR` / `${VAR}` in the config file.
    pub expand_env: bool,
}

/// Loads the config, starts every endpoint and runs until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("server not wired yet (config {})", args.config.display())
}
