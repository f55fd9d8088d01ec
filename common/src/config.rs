//! The pieces both binaries' HCL configuration files share: port and duration values,
//! `plugin_data` blocks, the `health_checks {}` block, and SPIRE's `-expandEnv`.

use std::time::Duration;

use serde::Deserialize;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// The HCL did not parse or had unknown or mistyped keys.
    #[error("invalid config file {path}: {error}")]
    Parse {
        /// The file.
        path: String,
        /// What serde / HCL said (names the key).
        error: String,
    },
    /// A value was out of range or inconsistent.
    #[error("invalid config file {path}: {error}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        error: String,
    },
}

/// Reads a config file, expanding `$VAR` / `${VAR}` first when `expand` (`--expand-env`).
pub fn read_file(path: &std::path::Path, expand: bool) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.display().to_string(),
        error,
    })?;
    Ok(if expand { expand_env(&text) } else { text })
}

/// Parses HCL into the file's serde shape; errors name the key and `path`.
pub fn parse_hcl<T: serde::de::DeserializeOwned>(text: &str, path: &str) -> Result<T, ConfigError> {
    hcl::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        error: e.to_string(),
    })
}

/// One `Type "name" { plugin_data {} enabled = ... }` block of `plugins {}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginBlock {
    /// The plugin's own settings.
    pub plugin_data: Option<hcl::Value>,
    /// `false` leaves the plugin out.
    pub enabled: Option<bool>,
}

/// A port written as a number or, as SPIRE's samples do, as a string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    /// `8081`
    Number(u16),
    /// `"8081"`
    Text(String),
}

/// The port, or an error naming `name`.
pub fn port(name: &str, p: PortValue) -> Result<u16, String> {
    match p {
        PortValue::Number(n) => Ok(n),
        PortValue::Text(t) => t
            .parse()
            .map_err(|_| format!("{name}: {t:?} is not a port number")),
    }
}

/// A positive duration (`"1h"`, `"90s"`), `default` when absent, or an error naming `name`.
pub fn duration(name: &str, text: Option<&str>, default: Duration) -> Result<Duration, String> {
    let Some(text) = text else { return Ok(default) };
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("{name}: {text:?} is not a duration: {e}"))?;
    if d.is_zero() {
        return Err(format!("{name} must be greater than zero"));
    }
    Ok(d)
}

/// A plugin's `plugin_data {}` as `T` (its own struct with `deny_unknown_fields`), or
/// `T::default()` when the block is absent.
pub fn plugin_data<T: serde::de::DeserializeOwned + Default>(
    what: &str,
    data: Option<hcl::Value>,
) -> Result<T, String> {
    match data {
        None => Ok(T::default()),
        Some(v) => hcl::from_value(v).map_err(|e| format!("{what} plugin_data: {e}")),
    }
}

/// `health_checks {}` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthBlock {
    listener_enabled: Option<bool>,
    bind_address: Option<String>,
    bind_port: Option<PortValue>,
    live_path: Option<String>,
    ready_path: Option<String>,
}

/// The HTTP health listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Host or address to bind.
    pub bind_address: String,
    /// Port.
    pub bind_port: u16,
    /// Liveness path.
    pub live_path: String,
    /// Readiness path.
    pub ready_path: String,
}

impl HealthBlock {
    /// The listener's settings with SPIRE's defaults, or `None` unless enabled.
    pub fn into_config(self) -> Result<Option<HealthConfig>, String> {
        if !self.listener_enabled.unwrap_or(false) {
            return Ok(None);
        }
        Ok(Some(HealthConfig {
            bind_address: self.bind_address.unwrap_or_else(|| "localhost".into()),
            bind_port: self
                .bind_port
                .map(|p| port("health_checks.bind_port", p))
                .transpose()?
                .unwrap_or(80),
            live_path: self.live_path.unwrap_or_else(|| "/live".into()),
            ready_path: self.ready_path.unwrap_or_else(|| "/ready".into()),
        }))
    }
}

/// Expands `$VAR` and `${VAR}` from the environment (unset variables become empty), as
/// SPIRE's `-expandEnv` does.
pub fn expand_env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
        } else {
            out.push_str(&std::env::var(name).unwrap_or_default());
            rest = &after[consumed..];
        }
    }
    out.push_str(rest);
    out
}
