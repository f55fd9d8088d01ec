//! `api watch`: follows the `FetchX509SVID` stream and prints SPIRE's "Received ..." block
//! per update until interrupted. Like go-spiffe's watcher it reconnects after errors (each
//! printed on stderr) with a linear backoff (1s, 2s, ... 30s, reset by every update), and
//! gives up only on `InvalidArgument`.

use std::future::Future;
use std::time::{Duration, Instant};

use signet_proto::workload::X509svidRequest;
use tonic::Code;

use crate::cli::addr::Endpoint;
use crate::cli::client::{CliError, endpoint, stdout_error, workload_client};
use crate::cli::env::{Env, Io};
use crate::cli::flags::WatchFlags;
use crate::cli::x509;

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a stream ended.
enum End {
    /// Report and reconnect.
    Retry(CliError),
    /// Report and stop.
    Fatal(CliError),
}

pub(super) async fn run(
    flags: &WatchFlags,
    env: &Env,
    io: &mut Io<'_>,
    interrupt: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let endpoint = endpoint(&flags.socket, env)?;
    tokio::pin!(interrupt);
    let mut last_update = Instant::now();
    let mut backoff = Duration::ZERO;
    loop {
        let end = tokio::select! {
            () = &mut interrupt => return Ok(()),
            end = follow(&endpoint, io, &mut last_update, &mut backoff) => end,
        };
        match end {
            End::Fatal(e) => return Err(e),
            End::Retry(e) => {
                let _ = writeln!(io.err, "{e}");
            }
        }
        backoff = (backoff + Duration::from_secs(1)).min(MAX_BACKOFF);
        tokio::select! {
            () = &mut interrupt => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Connects and prints every update until the stream fails.
async fn follow(
    endpoint: &Endpoint,
    io: &mut Io<'_>,
    last_update: &mut Instant,
    backoff: &mut Duration,
) -> End {
    let mut client = match workload_client(endpoint).await {
        Ok(c) => c,
        Err(e) => return End::Retry(e),
    };
    let mut stream = match client.fetch_x509svid(X509svidRequest {}).await {
        Ok(resp) => resp.into_inner(),
        Err(s) => return status_end(s),
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => return End::Retry(CliError::new("EOF")),
            Err(s) => return status_end(s),
        };
        let mut ctx = match x509::parse_response(&resp) {
            Ok(ctx) => ctx,
            Err(e) => return End::Retry(e),
        };
        *backoff = Duration::ZERO;
        // go-spiffe keys federated bundles by trust domain name.
        ctx.federated = std::mem::take(&mut ctx.federated)
            .into_iter()
            .map(|(k, v)| (k.strip_prefix("spiffe://").unwrap_or(&k).to_owned(), v))
            .collect();
        if let Err(e) =
            x509::print(io.out, &ctx, last_update.elapsed()).and_then(|()| io.out.flush())
        {
            return End::Fatal(stdout_error(e));
        }
        *last_update = Instant::now();
    }
}

fn status_end(status: tonic::Status) -> End {
    if status.code() == Code::InvalidArgument {
        End::Fatal(status.into())
    } else {
        End::Retry(status.into())
    }
}
