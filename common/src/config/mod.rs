//! The pieces both binaries' configuration files share: reading SPIRE's syntax (HCL1 or
//! JSON, [`hcl1`]), port and duration values, `plugin_data` blocks, the `health_checks {}`
//! block, and SPIRE's `-expandEnv`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub mod hcl1;
mod overrides;
mod process;

pub use hcl1::Raw;
pub use overrides::CommonOverrides;
pub use process::{ProcessConfig, ProcessKeys};

/// Why a configuration file was refused: always the file, and the key when the fault is in
/// one.
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
    /// The file is not valid HCL1 / JSON, or has unknown or mistyped keys.
    #[error("invalid config file {path}{}: {}{error}", at.map(|p| format!(":{p}")).unwrap_or_default(), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Parse {
        /// The file.
        path: String,
        /// Line and column, when known.
        at: Option<hcl1::Pos>,
        /// The key (dotted path), when the fault is in a value.
        key: Option<String>,
        /// What is wrong.
        error: String,
    },
    /// A value was out of range or inconsistent.
    #[error("invalid config file {path}{}: {error}", error.at.map(|p| format!(":{p}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: String,
        /// The key and what was expected of it.
        error: KeyError,
    },
}

/// A key the file got wrong: its dotted path from the top of the file
/// (`server.ca_ttl`, `plugins.KeyManager "disk".plugin_data.keys_path`), what was expected
/// of it and what it held, and where it is when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key.
    pub key: String,
    /// What was expected (and what was found).
    pub reason: String,
    /// Line and column, when known.
    pub at: Option<hcl1::Pos>,
    /// `reason` continues the key as a sentence (`server.data_dir is required`).
    sentence: bool,
}

impl KeyError {
    /// `key: reason`.
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
            at: None,
            sentence: false,
        }
    }

    /// `key is required`.
    pub fn required(key: impl Into<String>) -> Self {
        Self {
            sentence: true,
            ..Self::new(key, "is required")
        }
    }

    /// `key <reason>`, one sentence (`agent.join_token and agent.join_token_file are
    /// mutually exclusive`).
    pub fn sentence(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            sentence: true,
            ..Self::new(key, reason)
        }
    }

    /// The same error, inside `prefix` (`plugins.DataStore "sql"`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.key = format!("{prefix}.{}", self.key);
        self
    }
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.sentence { " " } else { ": " };
        write!(f, "{}{sep}{}", self.key, self.reason)
    }
}

impl std::error::Error for KeyError {}

/// Reads a config file, expanding `$VAR` / `${VAR}` first when `expand` (`--expand-env`).
pub fn read_file(path: &std::path::Path, expand: bool) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.display().to_string(),
        error,
    })?;
    Ok(if expand { expand_env(&text) } else { text })
}

/// Parses a config file (SPIRE's HCL1, or JSON by extension or content) into the file's
/// serde shape; errors name the file, line and column, and the key.
pub fn parse_hcl<T: serde::de::DeserializeOwned>(text: &str, path: &str) -> Result<T, ConfigError> {
    let body = hcl1::parse(text, hcl1::is_json(text, path)).map_err(|e| ConfigError::Parse {
        path: path.into(),
        at: Some(e.pos),
        key: None,
        error: e.message,
    })?;
    check_plugins(&body).map_err(|(pos, error)| ConfigError::Parse {
        path: path.into(),
        at: Some(pos),
        key: Some("plugins".into()),
        error,
    })?;
    hcl1::from_body(&body).map_err(|e| de_error(path, e))
}

/// Reads, parses and builds a config file: [`read_file`], then [`parse_with`].
pub fn load_with<F: serde::de::DeserializeOwned, C>(
    path: &std::path::Path,
    expand: bool,
    build: impl FnOnce(F) -> Result<C, KeyError>,
) -> Result<C, ConfigError> {
    let text = read_file(path, expand)?;
    parse_with(&text, &path.display().to_string(), build)
}

/// Parses config text into the file's serde shape and builds the typed configuration from
/// it; a value `build` refuses is reported against the file (`path` only names it).
pub fn parse_with<F: serde::de::DeserializeOwned, C>(
    text: &str,
    path: &str,
    build: impl FnOnce(F) -> Result<C, KeyError>,
) -> Result<C, ConfigError> {
    let file = parse_hcl(text, path)?;
    build(file).map_err(|error| ConfigError::Invalid {
        path: path.into(),
        error,
    })
}

fn de_error(path: &str, e: hcl1::DeError) -> ConfigError {
    ConfigError::Parse {
        path: path.into(),
        at: e.pos,
        key: e.path.filter(|p| !p.is_empty()),
        error: e.message,
    }
}

/// Refuses a plugin declared twice under `plugins` (however its blocks are nested), as
/// SPIRE does; HCL's merging would otherwise combine the two silently.
fn check_plugins(body: &hcl1::Body) -> Result<(), (hcl1::Pos, String)> {
    fn walk(
        items: &[hcl1::Item],
        prefix: &[String],
        seen: &mut Vec<(String, String)>,
    ) -> Result<(), (hcl1::Pos, String)> {
        for item in items {
            let mut keys = prefix.to_vec();
            keys.extend(item.keys.iter().map(|k| k.name.clone()));
            if keys.len() >= 2 {
                let ident = (keys[0].clone(), keys[1].clone());
                if seen.contains(&ident) {
                    let pos = item.keys[0].pos;
                    return Err((
                        pos,
                        format!("plugin {:?}/{:?} declared more than once", ident.0, ident.1),
                    ));
                }
                seen.push(ident);
            } else if let hcl1::Value::Object(b) = &item.value.value {
                walk(&b.items, &keys, seen)?;
            }
        }
        Ok(())
    }
    let mut seen = Vec::new();
    for item in &body.items {
        if !item.keys[0].name.eq_ignore_ascii_case("plugins") {
            continue;
        }
        let prefix: Vec<String> = item.keys[1..].iter().map(|k| k.name.clone()).collect();
        match &item.value.value {
            hcl1::Value::Object(b) if prefix.len() < 2 => walk(&b.items, &prefix, &mut seen)?,
            _ => {}
        }
    }
    Ok(())
}

/// One `Type "name" { plugin_data {} enabled = ... }` block of `plugins {}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginBlock {
    /// The plugin's own settings.
    pub plugin_data: Option<Raw>,
    /// A file holding the plugin's settings instead (HCL or JSON).
    pub plugin_data_file: Option<std::path::PathBuf>,
    /// `false` leaves the plugin out.
    pub enabled: Option<bool>,
    /// An external plugin binary: refused (Signet's plugins are built in).
    pub plugin_cmd: Option<String>,
    /// The external plugin's arguments: refused with `plugin_cmd`.
    pub plugin_args: Option<Vec<String>>,
    /// The external plugin's checksum: refused with `plugin_cmd`.
    pub plugin_checksum: Option<String>,
}

impl PluginBlock {
    /// Whether the plugin is on (`enabled` absent or true).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The plugin's settings from `plugin_data` or `plugin_data_file`, refusing external
    /// plugins and both sources at once; `what` names the plugin in errors.
    pub fn data(self, what: &str) -> Result<Option<Raw>, KeyError> {
        for (key, set) in [
            ("plugin_cmd", self.plugin_cmd.is_some()),
            ("plugin_args", self.plugin_args.is_some()),
            ("plugin_checksum", self.plugin_checksum.is_some()),
        ] {
            if set {
                return Err(KeyError::new(
                    format!("{what}.{key}"),
                    "external plugins are not supported; Signet's plugins are built in",
                ));
            }
        }
        match (self.plugin_data, self.plugin_data_file) {
            (Some(_), Some(_)) => Err(KeyError::new(
                what,
                "only one of [plugin_data, plugin_data_file] can be used",
            )),
            (Some(d), None) => Ok(Some(d)),
            (None, None) => Ok(None),
            (None, Some(file)) => {
                let key = format!("{what}.plugin_data_file");
                let name = file.display().to_string();
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| KeyError::new(&key, format!("cannot read {name}: {e}")))?;
                let body = hcl1::parse(&text, hcl1::is_json(&text, &name))
                    .map_err(|e| KeyError::new(&key, format!("{name}:{e}")))?;
                Ok(Some(Raw::from_body(body, &format!("{what}.plugin_data"))))
            }
        }
    }
}

/// One enabled plugin of `plugins {}`, its settings read.
#[derive(Debug)]
pub struct EnabledPlugin {
    /// The plugin type (`KeyManager`, `NodeAttestor`, ...).
    pub kind: String,
    /// The plugin's name (`disk`, `join_token`, ...).
    pub name: String,
    /// How errors name it: `plugins.Kind "name"`.
    pub what: String,
    /// Its `plugin_data` (or the file's), if any.
    pub data: Option<Raw>,
}

/// Every enabled plugin of `plugins {}`, type by type, with its settings read; a second
/// enabled plugin of a type in `singular` is refused.
pub fn enabled_plugins(
    plugins: BTreeMap<String, BTreeMap<String, PluginBlock>>,
    singular: &[&str],
) -> Result<Vec<EnabledPlugin>, KeyError> {
    let mut out = Vec::new();
    for (kind, named) in plugins {
        let enabled: Vec<_> = named.into_iter().filter(|(_, b)| b.is_enabled()).collect();
        if enabled.len() > 1 && singular.contains(&kind.as_str()) {
            return Err(KeyError::new(
                format!("plugins.{kind}"),
                format!("at most one {kind} may be configured"),
            ));
        }
        for (name, block) in enabled {
            let what = format!("plugins.{kind} \"{name}\"");
            let data = block.data(&what)?;
            out.push(EnabledPlugin {
                kind: kind.clone(),
                name,
                what,
                data,
            });
        }
    }
    Ok(out)
}

impl EnabledPlugin {
    /// The error for a plugin this binary has no arm for: an unknown name of a type in
    /// `known`, a type in `unsupported`, or an unknown type.
    pub fn refusal(&self, known: &[&str], unsupported: &[&str]) -> KeyError {
        let (kind, name) = (self.kind.as_str(), self.name.as_str());
        if known.contains(&kind) {
            KeyError::new(&self.what, format!("unknown plugin name {name:?}"))
        } else if unsupported.contains(&kind) {
            KeyError::new(
                &self.what,
                format!("{kind} plugins are not supported by Signet"),
            )
        } else {
            KeyError::new(
                format!("plugins.{kind}"),
                format!("unknown plugin type {kind:?}"),
            )
        }
    }
}

/// A binary's table of built-in plugins: the types it knows, those of which at most one may
/// be enabled, those SPIRE has and Signet refuses, and what it keeps of each enabled block.
pub trait PluginTable: Default {
    /// Plugin types this binary has.
    const KNOWN: &'static [&'static str];
    /// Types of which at most one may be enabled.
    const SINGULAR: &'static [&'static str];
    /// SPIRE's types that Signet does not support.
    const UNSUPPORTED: &'static [&'static str];

    /// Keeps `plugin` (its `data` taken); `Ok(false)` when this binary has no plugin of
    /// that type and name.
    fn take(&mut self, plugin: &mut EnabledPlugin, data_dir: &Path) -> Result<bool, KeyError>;
}

/// Every enabled plugin of `plugins {}` offered to a new `T`; one it has no arm for is
/// refused as [`EnabledPlugin::refusal`] says.
pub fn read_plugins<T: PluginTable>(
    plugins: BTreeMap<String, BTreeMap<String, PluginBlock>>,
    data_dir: &Path,
) -> Result<T, KeyError> {
    let mut table = T::default();
    for mut plugin in enabled_plugins(plugins, T::SINGULAR)? {
        if !table.take(&mut plugin, data_dir)? {
            return Err(plugin.refusal(T::KNOWN, T::UNSUPPORTED));
        }
    }
    Ok(table)
}

/// The plugin of type `kind` the configuration must enable; `choices` names the plugins
/// that would do (`KeyManager "disk" or "memory"`).
pub fn required_plugin<T>(plugin: Option<T>, kind: &str, choices: &str) -> Result<T, KeyError> {
    plugin.ok_or_else(|| KeyError::new("plugins", format!("a {kind} is required ({choices})")))
}

/// The `plugin_data` of a plugin that has no settings: absent or empty.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EmptyData {}

/// A port written as a number or, as SPIRE's samples do, as a string (the HCL1 reader
/// converts; a bad value is refused at its line and column, naming the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortValue(pub u16);

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u16::try_from(n).map(PortValue).map_err(|_| {
            serde::de::Error::custom(format!("expected a port number (0 to 65535), got {n}"))
        })
    }
}

/// The port (kept for the callers that name the key).
pub fn port(_name: &str, p: PortValue) -> Result<u16, KeyError> {
    Ok(p.0)
}

/// A positive duration (`"1h"`, `"90s"`), `default` when absent, or an error naming `name`.
pub fn duration(name: &str, text: Option<&str>, default: Duration) -> Result<Duration, KeyError> {
    let Some(text) = text else { return Ok(default) };
    let d = humantime::parse_duration(text).map_err(|e| {
        KeyError::new(
            name,
            format!("expected a duration such as \"90s\" or \"1h\", got {text:?} ({e})"),
        )
    })?;
    if d.is_zero() {
        return Err(KeyError::sentence(name, "must be greater than zero"));
    }
    Ok(d)
}

/// A plugin's `plugin_data {}` as `T` (its own struct with `deny_unknown_fields`), or
/// `T::default()` when the block is absent.
pub fn plugin_data<T: serde::de::DeserializeOwned + Default>(
    what: &str,
    data: Option<Raw>,
) -> Result<T, KeyError> {
    match data {
        None => Ok(T::default()),
        Some(raw) => raw_data(what, &raw),
    }
}

/// A plugin's `plugin_data {}` as `T`, which it must have.
pub fn required_plugin_data<T: serde::de::DeserializeOwned>(
    what: &str,
    data: Option<Raw>,
) -> Result<T, KeyError> {
    match data {
        None => Err(KeyError::required(format!("{what}.plugin_data"))),
        Some(raw) => raw_data(what, &raw),
    }
}

fn raw_data<T: serde::de::DeserializeOwned>(what: &str, raw: &Raw) -> Result<T, KeyError> {
    raw.parse().map_err(|e: hcl1::DeError| {
        let key = match e.path {
            Some(p) if !p.is_empty() => p,
            _ => format!("{what}.plugin_data"),
        };
        KeyError {
            at: e.pos,
            ..KeyError::new(key, e.message)
        }
    })
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
    pub fn into_config(self) -> Result<Option<HealthConfig>, KeyError> {
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

/// Records the keys of a section that SPIRE users have and Signet accepts: a key that only
/// tunes SPIRE's internals is noted as having no effect (logged once at start-up and printed
/// by `validate`); a key for a feature Signet lacks is refused unless it has its default.
pub struct KeyCheck<'a> {
    section: &'a str,
    notes: &'a mut Vec<String>,
}

impl<'a> KeyCheck<'a> {
    /// Checks keys of `section` (`server`, `agent.experimental`, ...), noting into `notes`.
    pub fn new(section: &'a str, notes: &'a mut Vec<String>) -> Self {
        Self { section, notes }
    }

    /// Notes `key` as accepted without effect when it is set.
    pub fn no_effect<T>(&mut self, key: &str, value: &Option<T>, why: &str) {
        if value.is_some() {
            self.notes.push(format!(
                "{}.{key} has no effect in Signet: {why}",
                self.section
            ));
        }
    }

    /// Refuses `key` when `set` (it is present with a value other than SPIRE's default).
    pub fn refuse(&self, key: &str, set: bool, why: &str) -> Result<(), KeyError> {
        if set {
            return Err(KeyError::sentence(
                format!("{}.{key}", self.section),
                format!("is not supported by Signet: {why}"),
            ));
        }
        Ok(())
    }
}

/// SPIRE's Go-only keys both binaries take: `log_source_location` and `profiling_*`.
pub struct GoOnlyKeys<'a> {
    /// `log_source_location`.
    pub log_source_location: &'a Option<bool>,
    /// `profiling_enabled`.
    pub profiling_enabled: &'a Option<bool>,
    /// `profiling_port`.
    pub profiling_port: &'a Option<PortValue>,
    /// `profiling_freq`.
    pub profiling_freq: &'a Option<i64>,
    /// `profiling_names`.
    pub profiling_names: &'a Option<Vec<String>>,
}

impl KeyCheck<'_> {
    /// Notes the Go-only keys that are set.
    pub fn go_only(&mut self, keys: GoOnlyKeys<'_>) {
        self.no_effect(
            "log_source_location",
            keys.log_source_location,
            "log lines carry no source location",
        );
        let go = "Go profiling does not apply";
        self.no_effect("profiling_enabled", keys.profiling_enabled, go);
        self.no_effect("profiling_port", keys.profiling_port, go);
        self.no_effect("profiling_freq", keys.profiling_freq, go);
        self.no_effect("profiling_names", keys.profiling_names, go);
    }
}

/// `Some(true)` as a refusal trigger.
pub fn is_true(v: Option<bool>) -> bool {
    v == Some(true)
}

/// A non-empty list as a refusal trigger.
pub fn non_empty<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|l| !l.is_empty())
}

/// `telemetry {}` as SPIRE writes it (metric sinks). `Prometheus` and `MetricPrefix` are
/// served ([`TelemetryBlock::metrics`]); the other sinks are accepted so that SPIRE's files
/// load, and [`TelemetryBlock::note`] says once that they have no effect.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBlock {
    /// `Prometheus { host, port }`.
    #[serde(rename = "Prometheus")]
    pub prometheus: Option<PrometheusBlock>,
    /// `DogStatsd { address }`, repeatable.
    #[serde(rename = "DogStatsd")]
    pub dogstatsd: Option<Vec<SinkBlock>>,
    /// `Statsd { address }`, repeatable.
    #[serde(rename = "Statsd")]
    pub statsd: Option<Vec<SinkBlock>>,
    /// `M3 { address, env }`, repeatable.
    #[serde(rename = "M3")]
    pub m3: Option<Vec<SinkBlock>>,
    /// `InMem {}`.
    #[serde(rename = "InMem")]
    pub inmem: Option<EmptyBlock>,
    /// Metric name prefix.
    #[serde(rename = "MetricPrefix")]
    pub metric_prefix: Option<String>,
    /// Trust-domain label on metrics.
    #[serde(rename = "EnableTrustDomainLabel")]
    pub enable_trust_domain_label: Option<bool>,
    /// Host-name label on metrics.
    #[serde(rename = "EnableHostnameLabel")]
    pub enable_hostname_label: Option<bool>,
    /// Metric prefixes to keep.
    #[serde(rename = "AllowedPrefixes")]
    pub allowed_prefixes: Option<Vec<String>>,
    /// Metric prefixes to drop.
    #[serde(rename = "BlockedPrefixes")]
    pub blocked_prefixes: Option<Vec<String>>,
    /// Labels to keep.
    #[serde(rename = "AllowedLabels")]
    pub allowed_labels: Option<Vec<String>>,
    /// Labels to drop.
    #[serde(rename = "BlockedLabels")]
    pub blocked_labels: Option<Vec<String>>,
}

/// `Prometheus { host, port }`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusBlock {
    /// Listen host (SPIRE's default `localhost`).
    pub host: Option<String>,
    /// Listen port.
    pub port: Option<PortValue>,
}

/// The Prometheus `/metrics` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Host or address to bind.
    pub host: String,
    /// Port (0: any free port).
    pub port: u16,
    /// Prefix of every metric name (`MetricPrefix`), without the trailing `_`.
    pub prefix: String,
}

/// A metrics sink (`address`, and `env` for M3).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkBlock {
    /// Where metrics go.
    pub address: Option<String>,
    /// M3's environment.
    pub env: Option<String>,
}

/// A block with no keys.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyBlock {}

impl TelemetryBlock {
    /// The metrics listener, when a `Prometheus` block is written; `default_prefix` when no
    /// `MetricPrefix` is.
    pub fn metrics(&self, default_prefix: &str) -> Result<Option<MetricsConfig>, KeyError> {
        let Some(p) = &self.prometheus else {
            return Ok(None);
        };
        let port = p
            .port
            .map(|v| port("telemetry.Prometheus.port", v))
            .transpose()?
            .ok_or_else(|| KeyError::required("telemetry.Prometheus.port"))?;
        let prefix = match self.metric_prefix.as_deref() {
            None => default_prefix.to_owned(),
            Some(text) => {
                let prefix = text.trim_end_matches('_');
                let valid = prefix
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(KeyError::new(
                        "telemetry.MetricPrefix",
                        format!(
                            "expected a Prometheus metric name prefix ([a-zA-Z_][a-zA-Z0-9_]*), got {text:?}"
                        ),
                    ));
                }
                prefix.to_owned()
            }
        };
        Ok(Some(MetricsConfig {
            host: p.host.clone().unwrap_or_else(|| "localhost".into()),
            port,
            prefix,
        }))
    }

    /// Notes the sinks and filters that have no effect (only Prometheus is served).
    pub fn note(&self, notes: &mut Vec<String>) {
        let unsupported = [
            ("DogStatsd", self.dogstatsd.is_some()),
            ("Statsd", self.statsd.is_some()),
            ("M3", self.m3.is_some()),
            ("InMem", self.inmem.is_some()),
            (
                "EnableTrustDomainLabel",
                self.enable_trust_domain_label.is_some(),
            ),
            ("EnableHostnameLabel", self.enable_hostname_label.is_some()),
            ("AllowedPrefixes", self.allowed_prefixes.is_some()),
            ("BlockedPrefixes", self.blocked_prefixes.is_some()),
            ("AllowedLabels", self.allowed_labels.is_some()),
            ("BlockedLabels", self.blocked_labels.is_some()),
        ];
        for (key, set) in unsupported {
            if set {
                notes.push(format!(
                    "telemetry.{key} has no effect in Signet: only the Prometheus sink is served"
                ));
            }
        }
    }
}
