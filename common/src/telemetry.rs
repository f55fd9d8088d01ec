//! Logging set-up shared by both binaries.
//!
//! Field names used across Signet (grep for them): `spiffe_id`, `trust_domain`, `entry_id`,
//! `agent_id`, `pid`, `uid`, `selectors`, `ttl`, `serial`, `expires_at`, `authority_id`,
//! `address`, `path`, `error`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt as _;

/// Filter directives for `level`: DEBUG and TRACE apply to Signet's own crates only, as
/// SPIRE's do; libraries (h2, rustls, sled, ...) stay at INFO.
fn directives(level: &str) -> String {
    match level {
        "debug" | "trace" => {
            format!("info,signet_server={level},signet_agent={level},signet_common={level}")
        }
        other => other.to_owned(),
    }
}

/// Log output formats (`log_format` in the config files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("expected \"text\" or \"json\", got {other:?}")),
        }
    }
}

/// Checks a `log_level` value (SPIRE's names: DEBUG, INFO, WARN, ERROR; any case) and
/// returns the tracing filter directive for it.
pub fn parse_level(level: &str) -> Result<&'static str, String> {
    match level.to_ascii_lowercase().as_str() {
        "trace" => Ok("trace"),
        "debug" => Ok("debug"),
        "info" => Ok("info"),
        "warn" | "warning" => Ok("warn"),
        "error" | "fatal" | "panic" => Ok("error"),
        _ => Err(format!(
            "expected one of DEBUG, INFO, WARN, ERROR (or TRACE), got {level:?}"
        )),
    }
}

/// Installs logging as the config says ([`init_with_file`]) and logs once each key that was
/// accepted without effect.
pub fn start(
    level: &str,
    format: LogFormat,
    log_file: Option<&std::path::Path>,
    no_effect: &[String],
) -> std::io::Result<()> {
    init_with_file(level, format, log_file)?;
    for note in no_effect {
        tracing::warn!("{note}");
    }
    Ok(())
}

/// Like [`init`], and also appends every line to `log_file` when given (SPIRE's
/// `log_file`; created 0600 if absent).
pub fn init_with_file(
    level: &str,
    format: LogFormat,
    log_file: Option<&std::path::Path>,
) -> std::io::Result<()> {
    let Some(path) = log_file else {
        init(level, format);
        return Ok(());
    };
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("log_file {}: {e}", path.display())))?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(level)));
    let writer = std::io::stderr.and(std::sync::Mutex::new(file));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

/// Installs the global subscriber, writing to stderr. `RUST_LOG` overrides `level`.
/// Returns quietly if a subscriber is already installed (tests start several components).
pub fn init(level: &str, format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives(level)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
