//! The `signet-server` command line: `run`, plus the admin commands that talk to a running
//! server over its admin Unix socket with SPIRE's server API (`doctor`, `entry`, `agent`, `token`,
//! `bundle`, `x509`, `jwt`, `federation`, `localauthority`, `upstreamauthority`, `healthcheck`), and `validate`. Flags are SPIRE's, kebab-cased
//! (`-spiffeID` becomes `--spiffe-id`); [`compat::normalize`] also accepts SPIRE's spelling.
//! Output matches `spire-server` 1.13, human-readable or `--output json`.

use clap::{Parser, Subcommand};

pub mod agent;
pub mod authority;
pub mod bundle;
mod bundle_format;
pub mod client;
pub mod common;
pub mod compat;
pub mod doctor;
pub mod entry;
mod env;
pub mod federation;
pub mod health;
pub mod import;
pub mod mint;
mod output;
mod protojson;
pub mod run;
pub mod token;

pub use env::Env;
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
    /// Imports another server's data (entries, agents, bundles, CA keys) into Signet's store.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// A command for a running server, sent over its admin socket.
    #[command(flatten)]
    Admin(AdminCommand),
}

/// The commands that talk to a running server.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Determines server health status.
    Healthcheck(health::HealthArgs),
    /// Diagnoses the server's side of mTLS: CA, datastore, agents authorized for an entry.
    Doctor(doctor::DoctorArgs),
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
    /// Manages federation relationships with foreign trust domains.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Mints X509-SVIDs.
    #[command(subcommand)]
    X509(mint::X509Command),
    /// Mints JWT-SVIDs.
    #[command(subcommand)]
    Jwt(mint::JwtCommand),
    /// Manages the server's local X.509 and JWT authorities (forced rotation).
    #[command(subcommand, name = "localauthority")]
    LocalAuthority(authority::LocalAuthorityCommand),
    /// Manages the upstream X.509 authority's roots in the bundle.
    #[command(subcommand, name = "upstreamauthority")]
    UpstreamAuthority(authority::UpstreamAuthorityCommand),
}

/// Runs one admin command. An `Err` is the one-line reason the command failed; the caller
/// prints it as `Error: <reason>` and exits with status 1.
pub async fn execute(command: AdminCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    match command {
        AdminCommand::Healthcheck(args) => health::run(&args, env).await,
        AdminCommand::Doctor(args) => doctor::execute(&args, env).await,
        AdminCommand::Entry(cmd) => entry::execute(cmd, env).await,
        AdminCommand::Agent(cmd) => agent::execute(cmd, env).await,
        AdminCommand::Token(cmd) => token::execute(cmd, env).await,
        AdminCommand::Bundle(cmd) => bundle::execute(cmd, env).await,
        AdminCommand::Federation(cmd) => federation::execute(cmd, env).await,
        AdminCommand::X509(cmd) => mint::execute_x509(cmd, env).await,
        AdminCommand::Jwt(cmd) => mint::execute_jwt(cmd, env).await,
        AdminCommand::LocalAuthority(cmd) => authority::execute(cmd, env).await,
        AdminCommand::UpstreamAuthority(cmd) => authority::execute_upstream(cmd, env).await,
    }
}

/// `validate`: loads and checks the config as `run` would, starting nothing; prints SPIRE's
/// verdict line (after one `warning:` line per key that has no effect) and returns whether
/// the file is valid.
pub fn validate(flags: run::RunFlags, env: &mut Env<'_>) -> bool {
    match crate::config::Config::load(&flags.into()) {
        Ok(config) => {
            for note in &config.process.no_effect {
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
pub(crate) mod tests;
