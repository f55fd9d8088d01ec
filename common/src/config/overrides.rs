//! The `run` flags both binaries share, and how they override the config file's keys.

use std::path::PathBuf;

use super::KeyError;
use crate::id::{TrustDomain, parse_trust_domain};
use crate::telemetry::{LogFormat, parse_level};

/// The `run` flags the agent and the server share; each overrides the matching key of the
/// config file.
#[derive(Debug, Clone, Default)]
pub struct CommonOverrides {
    /// `--config`: the HCL file.
    pub config: PathBuf,
    /// `--server-port`.
    pub server_port: Option<u16>,
    /// `--socket-path`.
    pub socket_path: Option<PathBuf>,
    /// `--trust-domain`.
    pub trust_domain: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--expand-env`: expand `$VAR` / `${VAR}` in the config file.
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
