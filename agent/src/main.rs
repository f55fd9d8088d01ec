//! `signet-agent`: runs the agent, or talks to a running one (`healthcheck`, `api ...`).

use std::process::ExitCode;

use signet_agent::cli::{self, Env, Io};

fn main() -> ExitCode {
    let env = Env {
        endpoint_socket: std::env::var("SPIFFE_ENDPOINT_SOCKET").ok(),
    };
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
    };
    ExitCode::from(cli::main(std::env::args_os(), &env, &mut io))
}
