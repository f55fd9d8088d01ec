//! `api fetch [x509]`: the first `FetchX509SVID` message, printed (and optionally written to
//! disk) like SPIRE's `spire-agent api fetch x509`.

use std::time::Instant;

use signet_common::clock::{Clock as _, SystemClock};
use signet_proto::workload::{X509svidRequest, X509svidResponse};

use crate::cli::addr::Endpoint;
use crate::cli::client::{CliError, emit, endpoint, stdout_error, with_timeout, workload_client};
use crate::cli::env::{Env, Io};
use crate::cli::flags::{FetchX509Flags, Output};
use crate::cli::{json, write, x509};

pub(super) async fn run(
    flags: &FetchX509Flags,
    env: &Env,
    io: &mut Io<'_>,
) -> Result<(), CliError> {
    let endpoint = endpoint(&flags.call.socket, env)?;
    let start = Instant::now();
    let resp = with_timeout(flags.call.timeout, fetch_first(&endpoint)).await?;
    let elapsed = start.elapsed();
    match flags.call.output {
        Output::Json => emit(io.out, &json::encode(vec![json::x509_svid_response(&resp)])),
        Output::Pretty => {
            let ctx = x509::parse_response(&resp)?;
            x509::verify(&ctx, SystemClock.unix_now())?;
            if !flags.silent {
                x509::print(io.out, &ctx, elapsed).map_err(stdout_error)?;
            }
            match &flags.write {
                Some(dir) => write::write_files(dir, &ctx, io.out),
                None => Ok(()),
            }
        }
    }
}

/// Opens the stream and takes its first message.
pub(super) async fn fetch_first(endpoint: &Endpoint) -> Result<X509svidResponse, CliError> {
    let mut client = workload_client(endpoint).await?;
    let mut stream = client
        .fetch_x509svid(X509svidRequest {})
        .await?
        .into_inner();
    stream.message().await?.ok_or_else(|| CliError::new("EOF"))
}
