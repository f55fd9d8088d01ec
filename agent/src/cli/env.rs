//! What a command reads from the process and where it writes: passed in, so that tests can
//! supply their own environment and capture the output.

use std::io::Write;

/// The process environment the commands read (only `main` touches the real one).
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `SPIFFE_ENDPOINT_SOCKET`, used when `--socket-path` is not given.
    pub endpoint_socket: Option<String>,
}

/// Where a command writes.
pub struct Io<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}
