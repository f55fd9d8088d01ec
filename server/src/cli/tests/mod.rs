//! The CLI's tests, and their helpers: parse a command line and run it with captured standard
//! streams; fakes of the server's services on a real gRPC socket.

use clap::{CommandFactory, Parser as _};

use super::{AdminCommand, Cli, Command, Env};

mod agent_rpc;
mod ca_rpc;
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

// === The command line as a whole ===

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
