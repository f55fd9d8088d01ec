//! The `signet-server` command line: `run`, plus the admin commands that talk to a running
//! server over its admin Unix socket with SPIRE's server API (`entry`, `agent`, `token`,
//! `bundle`, `x509`, `jwt`, `healthcheck`), and `validate`. Flags are SPIRE's, kebab-cased
//! (`-spiffeID` becomes `--spiffe-id`); [`compat::normalize`] also accepts SPIRE's spelling.
//! Output matches `spire-server` 1.13, human-readable or `--output json`.

use std::io::{Read, Write};

use clap::{Parser, Subcommand};

pub mod agent;
pub mod bundle;
mod bundle_format;
pub mod client;
pub mod common;
pub mod compat;
pub mod entry;
pub mod health;
pub mod mint;
mod output;
mod protojson;
pub mod run;
pub mod token;

pub use output::OutputFormat;

/// `signet-server`: a SPIFFE server compatible with SPIRE's API and CLI.
#[derive(Debug, Parser)]
#[command(name = "signet-server", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server.
    Run(run::RunFlags),
    /// Validates a server configuration file.
    Validate(run::RunFlags),
    /// A command for a running server, sent over its admin socket.
    #[command(flatten)]
    Admin(AdminCommand),
}

/// The commands that talk to a running server.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Determines server health status.
    Healthcheck(health::HealthArgs),
    /// Manages registration entries.
    #[command(subcommand)]
    Entry(entry::EntryCommand),
    /// Manages attested agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Manages join tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Manages the server bundle and federated bundles.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Mints X509-SVIDs.
    #[command(subcommand)]
    X509(mint::X509Command),
    /// Mints JWT-SVIDs.
    #[command(subcommand)]
    Jwt(mint::JwtCommand),
}

/// Where a command reads and writes (the process's standard streams, or buffers in tests).
pub struct Env<'a> {
    /// Read by `--data -` and `bundle set` without `--path`.
    pub stdin: &'a mut dyn Read,
    /// Results.
    pub stdout: &'a mut dyn Write,
    /// Per-item failures and warnings (the caller prints the final `Error: ...` line).
    pub stderr: &'a mut dyn Write,
}

/// Runs one admin command. An `Err` is the one-line reason the command failed; the caller
/// prints it as `Error: <reason>` and exits with status 1.
pub async fn execute(command: AdminCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    match command {
        AdminCommand::Healthcheck(args) => health::run(&args, env).await,
        AdminCommand::Entry(cmd) => entry::execute(cmd, env).await,
        AdminCommand::Agent(cmd) => agent::execute(cmd, env).await,
        AdminCommand::Token(cmd) => token::execute(cmd, env).await,
        AdminCommand::Bundle(cmd) => bundle::execute(cmd, env).await,
        AdminCommand::X509(cmd) => mint::execute_x509(cmd, env).await,
        AdminCommand::Jwt(cmd) => mint::execute_jwt(cmd, env).await,
    }
}

#[cfg(test)]
mod agent_rpc_tests;
#[cfg(test)]
mod ca_rpc_tests;
#[cfg(test)]
pub(crate) mod testing;

/// `validate`: loads and checks the config as `run` would, starting nothing; prints SPIRE's
/// verdict line (after one `warning:` line per key that has no effect) and returns whether
/// the file is valid.
pub fn validate(flags: run::RunFlags, env: &mut Env<'_>) -> bool {
    match crate::config::Config::load(&flags.into()) {
        Ok(config) => {
            for note in &config.no_effect {
                let _ = writeln!(env.stderr, "warning: {note}");
            }
            let _ = writeln!(env.stdout, "SPIRE server configuration file is valid.");
            true
        }
        Err(e) => {
            let _ = writeln!(
                env.stderr,
                "SPIRE server configuration file is invalid: {e}"
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::testing::{Captured, parse};
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[tokio::test]
    async fn missing_socket_fails_with_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nope.sock");
        let sock = sock.to_str().unwrap();
        for args in [
            vec!["entry", "count", "--socket-path", sock],
            vec!["agent", "list", "--socket-path", sock],
            vec!["bundle", "show", "--socket-path", sock],
            vec!["token", "generate", "--socket-path", sock],
        ] {
            let mut io = Captured::default();
            let err = io.run(parse(&args)).await.unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                format!(
                    "connection error: cannot reach the server admin socket {sock}: No such file or directory"
                ),
                "{args:?}"
            );
            assert!(io.stdout().is_empty() && io.stderr().is_empty());
        }
    }

    #[tokio::test]
    async fn bad_input_is_reported_before_dialing() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nope.sock");
        let sock = sock.to_str().unwrap();
        let cases: [(&[&str], &str); 3] = [
            (
                &["agent", "show", "--spiffe-id", "not-an-id"],
                "invalid SPIFFE ID \"not-an-id\"",
            ),
            (
                &["entry", "show", "--selector", "unix"],
                "error parsing selectors: invalid selector \"unix\"",
            ),
            (
                &["entry", "create", "--spiffe-id", "spiffe://td/a", "--node"],
                "at least one selector is required",
            ),
        ];
        for (args, want) in cases {
            let mut all = args.to_vec();
            all.extend(["--socket-path", sock]);
            let err = Captured::default().run(parse(&all)).await.unwrap_err();
            let line = format!("{err:#}");
            assert!(line.starts_with(want), "{args:?}: {line}");
            assert!(!line.contains('\n'));
        }
    }
}
