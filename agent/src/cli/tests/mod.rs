//! Tests of the command line: parsing, output formats, `--write`, and end to end against an
//! in-test Workload API server.

mod certs;
mod e2e;
mod fake_agent;
mod output;
mod parse;
mod watch_files;
mod watch_plan;
