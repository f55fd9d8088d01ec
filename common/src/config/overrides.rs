//! The `run` flags both binaries share, and how they override the config file's keys.

use std::path::PathBuf;

use super::KeyError;
use crate::id::{TrustDomain, parse_trust_domain};
use crate::telemetry::{LogFormat, parse_level};

/// The `run` flags the agent and the server share; each overrides the matching key of the
/// config file. Flattened into both binaries' clap `run` flags, which declare `--config` (its
/// default differs) and name the socket and the trust domain for their role (`mut_arg`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonOverrides {
    /// `--config`: the HCL file (declared by each binary).
    #[arg(skip)]
    pub config: PathBuf,
    /// `--server-port`.
    #[arg(long, alias = "serverPort", help = "Port number of the server")]
    pub server_port: Option<u16>,
    /// `--data-dir`.
    #[arg(long, alias = "dataDir", help = "Directory to store runtime data in")]
    pub data_dir: Option<PathBuf>,
    /// `--log-level`.
    #[arg(long, alias = "logLevel", help = "DEBUG, INFO, WARN or ERROR")]
    pub log_level: Option<String>,
    /// `--trust-domain`.
    #[arg(
        long,
        alias = "trustDomain",
        help = "The trust domain this process belongs to"
    )]
    pub trust_domain: Option<String>,
    /// `--socket-path`.
    #[arg(long, alias = "socketPath", help = "Path to bind the API socket to")]
    pub socket_path: Option<PathBuf>,
    /// `--expand-env`: expand `$VAR` / `${VAR}` in the config file.
    #[arg(
        long,
        alias = "expandEnv",
        help = "Expand environment variables in the config file"
    )]
    pub expand_env: bool,
}

impl CommonOverrides {
    /// No flag but `--config`.
    pub fn with_config(config: impl Into<PathBuf>) -> Self {
        Self {
            config: config.into(),
            ..Self::default()
        }
    }

    /// `--trust-domain`, else the file's `<section>.trust_domain` (required), checked.
    pub fn resolve_trust_domain(
        &self,
        section: &str,
        file: Option<String>,
    ) -> Result<TrustDomain, KeyError> {
        let key = format!("{section}.trust_domain");
        let text = self
            .trust_domain
            .clone()
            .or(file)
            .ok_or_else(|| KeyError::required(key.clone()))?;
        parse_trust_domain(&text).map_err(|e| KeyError::new(key, e.to_string()))
    }

    /// `--log-level`, else the file's `<section>.log_level` (default `INFO`), and the file's
    /// `<section>.log_format` (default `text`), both checked.
    pub fn resolve_logging(
        &self,
        section: &str,
        file_level: Option<String>,
        file_format: Option<&str>,
    ) -> Result<(String, LogFormat), KeyError> {
        let level = self
            .log_level
            .clone()
            .or(file_level)
            .unwrap_or_else(|| "INFO".into());
        let level = parse_level(&level)
            .map_err(|e| KeyError::new(format!("{section}.log_level"), e))?
            .to_owned();
        let format = file_format
            .unwrap_or("text")
            .parse()
            .map_err(|e| KeyError::new(format!("{section}.log_format"), e))?;
        Ok((level, format))
    }
}
