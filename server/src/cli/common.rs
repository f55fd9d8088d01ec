//! Flags and parsers shared by the admin commands.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use signet_common::id;
use signet_common::selector::Selector;
use signet_proto::types;

use crate::cli::client::DEFAULT_SOCKET_PATH;
use crate::cli::env::Env;
use crate::cli::output::OutputFormat;

/// `--socket-path`, taken by every admin command.
#[derive(Debug, Clone, Args)]
pub struct SocketArgs {
    /// Path to the server's admin API socket.
    #[arg(long, default_value = DEFAULT_SOCKET_PATH)]
    pub socket_path: PathBuf,
}

/// `--socket-path` and `--output`, taken by the commands SPIRE gives `-output`.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Output format.
    #[arg(long, value_enum, ignore_case = true, default_value_t)]
    pub output: OutputFormat,
}

/// How a selector (or federates-with) filter matches (`--match-selectors-on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum MatchMode {
    /// The sets are equal.
    Exact,
    /// The record's set is a subset of the given one.
    Subset,
    /// The record's set is a superset of the given one.
    #[default]
    Superset,
    /// The sets share at least one member.
    Any,
}

impl MatchMode {
    /// The `SelectorMatch.MatchBehavior` value.
    pub fn selector_match(self) -> i32 {
        use types::selector_match::MatchBehavior as M;
        match self {
            Self::Exact => M::MatchExact as i32,
            Self::Subset => M::MatchSubset as i32,
            Self::Superset => M::MatchSuperset as i32,
            Self::Any => M::MatchAny as i32,
        }
    }

    /// The `FederatesWithMatch.MatchBehavior` value.
    pub fn federates_with_match(self) -> i32 {
        use types::federates_with_match::MatchBehavior as M;
        match self {
            Self::Exact => M::MatchExact as i32,
            Self::Subset => M::MatchSubset as i32,
            Self::Superset => M::MatchSuperset as i32,
            Self::Any => M::MatchAny as i32,
        }
    }
}

/// Parses `type:value` (everything after the first `:` is the value).
pub fn parse_selector(s: &str) -> anyhow::Result<types::Selector> {
    let sel: Selector = s
        .parse()
        .with_context(|| format!("invalid selector {s:?}"))?;
    Ok(types::Selector {
        r#type: sel.kind().to_owned(),
        value: sel.value().to_owned(),
    })
}

/// Parses every selector flag.
pub fn parse_selectors(flags: &[String]) -> anyhow::Result<Vec<types::Selector>> {
    flags.iter().map(|s| parse_selector(s)).collect()
}

/// Parses a SPIFFE ID strictly and splits it into the API's `SPIFFEID`.
pub fn parse_id_proto(s: &str) -> anyhow::Result<types::Spiffeid> {
    Ok((&id::parse_id(s)?).into())
}

/// `spiffe://<td><path>`, or the empty string for a missing ID.
pub fn id_string(id: Option<&types::Spiffeid>) -> String {
    id.map(|id| format!("spiffe://{}{}", id.trust_domain, id.path))
        .unwrap_or_default()
}

/// Parses a trust domain name or ID (`example.org` or `spiffe://example.org`) into its name.
pub fn parse_td_name(s: &str) -> anyhow::Result<String> {
    Ok(id::parse_trust_domain(s)?.to_string())
}

/// Reads `path`, or standard input when `path` is `-` or absent.
pub fn read_input(path: Option<&str>, env: &mut Env<'_>) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    match path {
        None | Some("-") => {
            env.stdin
                .read_to_end(&mut data)
                .context("unable to read standard input")?;
        }
        Some(p) => {
            data = std::fs::read(p).with_context(|| format!("unable to read {p}"))?;
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_value_keeps_its_colons() {
        let s = parse_selector("unix:uid:1000").unwrap();
        assert_eq!((s.r#type.as_str(), s.value.as_str()), ("unix", "uid:1000"));
    }

    #[test]
    fn malformed_selectors_are_refused_with_the_input_named() {
        let err = parse_selector("unix").unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "invalid selector \"unix\": selector \"unix\" must be formatted as type:value"
        );
        assert!(parse_selector(":v").is_err());
        assert!(parse_selector("t:").is_err());
    }

    #[test]
    fn ids_split_into_trust_domain_and_path() {
        let id = parse_id_proto("spiffe://example.org/web").unwrap();
        assert_eq!(
            (id.trust_domain.as_str(), id.path.as_str()),
            ("example.org", "/web")
        );
        assert_eq!(id_string(Some(&id)), "spiffe://example.org/web");
        assert!(parse_id_proto("example.org/web").is_err());
        assert_eq!(
            parse_td_name("spiffe://example.org").unwrap(),
            "example.org"
        );
        assert_eq!(parse_td_name("example.org").unwrap(), "example.org");
    }
}
