//! Test helpers: parse a command line and run it with captured standard streams.

use clap::Parser as _;

use super::{AdminCommand, Cli, Command, Env};

pub(crate) mod fake_agent;
pub(crate) mod fake_ca;
pub(crate) mod fake_entry;

/// Parses `signet-server <args>` into an admin command.
pub(crate) fn parse(args: &[&str]) -> AdminCommand {
    let argv = std::iter::once("signet-server").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Admin(cmd),
        }) => cmd,
        Ok(other) => panic!("not an admin command: {other:?}"),
        Err(e) => panic!("{args:?} did not parse: {e}"),
    }
}

/// Buffers standing in for the process's standard streams.
#[derive(Debug, Default)]
pub(crate) struct Captured {
    pub(crate) stdin: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Captured {
    /// Captured streams whose standard input holds `stdin`.
    pub(crate) fn with_stdin(stdin: impl Into<Vec<u8>>) -> Self {
        Self {
            stdin: stdin.into(),
            ..Self::default()
        }
    }

    /// Runs `cmd` against these streams.
    pub(crate) async fn run(&mut self, cmd: AdminCommand) -> anyhow::Result<()> {
        let mut stdin = self.stdin.as_slice();
        let mut env = Env {
            stdin: &mut stdin,
            stdout: &mut self.stdout,
            stderr: &mut self.stderr,
        };
        super::execute(cmd, &mut env).await
    }

    /// What was written to standard output.
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// What was written to standard error.
    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}
