//! The `signet-agent` command line: `run`, `healthcheck`, `doctor`, and `api ...`, a SPIFFE Workload API
//! client shaped like `spire-agent api ...` (same output, same `-write` files), whose
//! `api watch --write DIR` / `--config helper.conf` also does spiffe-helper's job.
//!
//! Flags are kebab-case (`--socket-path`); SPIRE's spelling (`-socketPath`) is accepted too.
//! Everything here writes through the [`Io`] it is given, so tests can capture the output.

mod addr;
mod api;
mod atomic_file;
mod client;
mod cmd_args;
mod doctor;
mod env;
mod flags;
mod format;
mod healthcheck;
mod helper_config;
mod helper_files;
mod json;
mod jwt_files;
mod renew;
mod run_agent;
mod spire_flags;
mod watch_plan;
mod write;
mod x509;
mod x509_writer;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::future::Future;

use clap::{CommandFactory, Parser};

pub use self::env::{Env, Io};
use self::flags::{Cli, Command};

/// Parses `args` (including the program name), runs the command and returns the exit code.
/// `api watch` stops on Ctrl-C.
pub fn main(args: impl IntoIterator<Item = OsString>, env: &Env, io: &mut Io<'_>) -> u8 {
    let cli = match parse(args) {
        Ok(cli) => cli,
        Err(e) => return report_parse_error(&e, io),
    };
    let runtime = match &cli.command {
        Command::Run(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(io.err, "failed to start the async runtime: {e}");
            return 1;
        }
    };
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    runtime.block_on(dispatch(cli, env, io, interrupt))
}

/// Parses the command line, accepting SPIRE's single-dash camelCase flags as well.
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, clap::Error> {
    let args = spire_flags::normalize(args, &Cli::command());
    Cli::try_parse_from(args)
}

fn report_parse_error(e: &clap::Error, io: &mut Io<'_>) -> u8 {
    let text = e.render().to_string();
    let sink = if e.use_stderr() {
        &mut *io.err
    } else {
        &mut *io.out
    };
    let _ = write!(sink, "{text}");
    u8::try_from(e.exit_code()).unwrap_or(2)
}

/// Runs a parsed command; `interrupt` resolving ends `api watch`.
async fn dispatch(cli: Cli, env: &Env, io: &mut Io<'_>, interrupt: impl Future<Output = ()>) -> u8 {
    match cli.command {
        Command::Run(flags) => run_agent::execute(flags, io).await,
        Command::Validate(flags) => run_agent::validate(flags, io),
        Command::Healthcheck(flags) => healthcheck::execute(&flags, env, io).await,
        Command::Doctor(flags) => doctor::execute(flags, io).await,
        Command::Api(api) => api::execute(api, env, io, interrupt).await,
    }
}
