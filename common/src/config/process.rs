//! The part of both binaries' configs that is about the process itself: logging, the health
//! and metrics listeners, `telemetry {}`, and the notes on keys that have no effect. Read
//! the same way for the agent and the server, so it is read once, here.

use std::path::PathBuf;

use super::{CommonOverrides, HealthBlock, HealthConfig, KeyError, MetricsConfig, TelemetryBlock};
use crate::telemetry::LogFormat;

/// How the process logs and is observed.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Log filter (`info`, `debug`, ...).
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Where logs go besides stderr (`log_file`).
    pub log_file: Option<PathBuf>,
    /// HTTP health listener, if enabled.
    pub health: Option<HealthConfig>,
    /// `telemetry {}` as written.
    pub telemetry: TelemetryBlock,
    /// The Prometheus listener (`telemetry { Prometheus {} }`), if configured.
    pub metrics: Option<MetricsConfig>,
    /// Keys accepted without effect, one message each (logged once at start-up).
    pub no_effect: Vec<String>,
}

/// What a binary's file says about its process, as read.
#[derive(Debug)]
pub struct ProcessKeys {
    /// The file's section (`agent`, `server`), which names the keys in errors.
    pub section: &'static str,
    /// The metric name prefix when `telemetry` sets none (`signet_agent`, ...).
    pub metrics_prefix: &'static str,
    /// `<section>.log_level`.
    pub log_level: Option<String>,
    /// `<section>.log_format`.
    pub log_format: Option<String>,
    /// `<section>.log_file`.
    pub log_file: Option<PathBuf>,
    /// `health_checks {}`.
    pub health_checks: Option<HealthBlock>,
    /// `telemetry {}`.
    pub telemetry: Option<TelemetryBlock>,
}

impl ProcessConfig {
    /// Checks `keys` with the command-line overrides applied; `notes` (the section's keys
    /// without effect) gains the telemetry sinks that have none.
    pub fn build(
        keys: ProcessKeys,
        overrides: &CommonOverrides,
        mut notes: Vec<String>,
    ) -> Result<Self, KeyError> {
        let telemetry = keys.telemetry.unwrap_or_default();
        telemetry.note(&mut notes);
        let metrics = telemetry.metrics(keys.metrics_prefix)?;
        let (log_level, log_format) =
            overrides.resolve_logging(keys.section, keys.log_level, keys.log_format.as_deref())?;
        let health = keys
            .health_checks
            .map(HealthBlock::into_config)
            .transpose()?
            .flatten();
        Ok(Self {
            log_level,
            log_format,
            log_file: keys.log_file,
            health,
            telemetry,
            metrics,
            no_effect: notes,
        })
    }

    /// Starts logging as configured, then warns once about each key that has no effect
    /// (the first thing `run` does).
    pub fn start_logging(&self) -> std::io::Result<()> {
        crate::telemetry::init_with_file(
            &self.log_level,
            self.log_format,
            self.log_file.as_deref(),
        )?;
        for note in &self.no_effect {
            tracing::warn!("{note}");
        }
        Ok(())
    }
}
