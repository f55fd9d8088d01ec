//! `signet-server`: `run` starts the server; every other command talks to a running server
//! over its admin socket. Failures print one `Error: <reason>` line and exit with status 1.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use signet_server::cli::{self, Cli, Command, Env};

/// jemalloc rather than glibc's malloc: it gives freed memory back to the system (on a
/// background thread, a second after it was freed: `.cargo/config.toml`), where glibc keeps
/// what a burst of connections or a scan of the store freed.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args = cli::compat::normalize(std::env::args_os());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Run(flags) => run_server(flags),
        Command::Validate(flags) => return validate(flags),
        Command::Import(cmd) => import(cmd),
        Command::Admin(cmd) => run_admin(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "Error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run_server(flags: cli::run::RunFlags) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(signet_server::run::run(flags.into()))
}

fn validate(flags: cli::run::RunFlags) -> ExitCode {
    let (mut stdin, mut stdout, mut stderr) =
        (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let mut env = Env {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    if cli::validate(flags, &mut env) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn import(cmd: cli::import::ImportCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let (mut stdin, mut stdout, mut stderr) = (stdin.lock(), stdout.lock(), stderr.lock());
    let mut env = Env {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    runtime.block_on(cli::import::execute(cmd, &mut env))
}

fn run_admin(cmd: cli::AdminCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let (mut stdin, mut stdout, mut stderr) = (stdin.lock(), stdout.lock(), stderr.lock());
    let mut env = Env {
        stdin: &mut stdin,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let result = runtime.block_on(cli::execute(cmd, &mut env));
    let _ = env.stdout.flush();
    result
}

/// The error and its causes on one line (`a: b: c`), newlines flattened.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
