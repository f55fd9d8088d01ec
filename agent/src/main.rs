//! `signet-agent`: runs the agent, or talks to a running one (`healthcheck`, `api ...`).

use std::process::ExitCode;

use signet_agent::cli::{self, Env, Io};

/// jemalloc rather than glibc's malloc: it gives freed memory back to the system (on a
/// background thread, a second after it was freed: `.cargo/config.toml`), where glibc keeps
/// what a burst of connections or a scan of the store freed.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
