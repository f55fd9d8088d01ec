//! `entry create|update|delete|show|count`.

use clap::Subcommand;

use crate::cli::env::Env;

mod create;
mod data;
mod delete;
mod print;
mod show;
mod update;

pub use create::CreateArgs;
pub use delete::DeleteArgs;
pub use show::{CountArgs, FilterArgs, ShowArgs};
pub use update::UpdateArgs;

/// `entry` subcommands.
#[derive(Debug, Subcommand)]
pub enum EntryCommand {
    /// Creates registration entries.
    Create(CreateArgs),
    /// Updates registration entries (every field is replaced, as in SPIRE).
    Update(UpdateArgs),
    /// Deletes registration entries.
    Delete(DeleteArgs),
    /// Displays configured registration entries.
    Show(ShowArgs),
    /// Counts registration entries.
    Count(CountArgs),
}

/// Runs one `entry` subcommand.
pub(crate) async fn execute(cmd: EntryCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    match cmd {
        EntryCommand::Create(args) => create::run(&args, env).await,
        EntryCommand::Update(args) => update::run(&args, env).await,
        EntryCommand::Delete(args) => delete::run(&args, env).await,
        EntryCommand::Show(args) => show::run_show(&args, env).await,
        EntryCommand::Count(args) => show::run_count(&args, env).await,
    }
}

#[cfg(test)]
mod tests;
