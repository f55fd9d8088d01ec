//! Where a command reads and writes: the process's standard streams, or buffers in tests.

use std::io::{Read, Write};

/// Where a command reads and writes (the process's standard streams, or buffers in tests).
pub struct Env<'a> {
    /// Read by `--data -` and `bundle set` without `--path`.
    pub stdin: &'a mut dyn Read,
    /// Results.
    pub stdout: &'a mut dyn Write,
    /// Per-item failures and warnings (the caller prints the final `Error: ...` line).
    pub stderr: &'a mut dyn Write,
}
