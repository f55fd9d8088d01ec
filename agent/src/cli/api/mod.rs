//! `signet-agent api ...`: one-shot Workload API calls and `watch`.

mod fetch_x509;
pub(super) mod jwt;
mod watch;

use std::future::Future;

use crate::cli::env::{Env, Io};
use crate::cli::flags::{ApiCommand, FetchKind, ValidateCommand};

/// Runs an `api` command: 0 on success, else its error as one line on stderr and 1.
pub(crate) async fn execute(
    cmd: ApiCommand,
    env: &Env,
    io: &mut Io<'_>,
    interrupt: impl Future<Output = ()>,
) -> u8 {
    let result = match cmd {
        ApiCommand::Fetch(fetch) => match fetch.kind {
            None => fetch_x509::run(&fetch.x509, env, io).await,
            Some(FetchKind::X509(flags)) => fetch_x509::run(&flags, env, io).await,
            Some(FetchKind::Jwt(flags)) => jwt::fetch(&flags, env, io).await,
        },
        ApiCommand::Validate(ValidateCommand::Jwt(flags)) => jwt::validate(&flags, env, io).await,
        ApiCommand::Watch(flags) => watch::run(&flags, env, io, interrupt).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io.err, "{e}");
            1
        }
    }
}
