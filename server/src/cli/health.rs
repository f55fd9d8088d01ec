//! `healthcheck`: grpc.health.v1 `Check` over the admin socket.

use clap::Args;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::SocketArgs;
use crate::cli::env::Env;

/// `healthcheck` flags.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Perform a less stringent health check (accepted for SPIRE compatibility; the
    /// server check is the same either way).
    #[arg(long)]
    pub shallow: bool,
    /// Print verbose information.
    #[arg(long)]
    pub verbose: bool,
}

pub(crate) async fn run(args: &HealthArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    if args.verbose {
        writeln!(env.stdout, "Checking server health...")?;
    }
    let mut client = Admin::new(&args.socket.socket_path)
        .health()
        .await
        .map_err(|e| anyhow::anyhow!("server is unhealthy: {e}"))?;
    let resp = match client.check(HealthCheckRequest::default()).await {
        Ok(resp) => resp.into_inner(),
        Err(status) => {
            if args.verbose {
                writeln!(env.stderr, "Failed to check health: {}", RpcError(status))?;
            }
            anyhow::bail!("server is unhealthy: unable to determine health");
        }
    };
    if resp.status != ServingStatus::Serving as i32 {
        let name = ServingStatus::try_from(resp.status)
            .map_or_else(|_| resp.status.to_string(), |s| s.as_str_name().to_owned());
        anyhow::bail!("server is unhealthy: server returned status {name:?}");
    }
    writeln!(env.stdout, "Server is healthy.")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::net::UnixListener;
    use tokio_stream::wrappers::UnixListenerStream;

    use crate::cli::tests::{Captured, parse};

    #[tokio::test]
    async fn reports_a_serving_server_as_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (_reporter, service) = tonic_health::server::health_reporter();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        let mut io = Captured::default();
        let sock = path.to_str().unwrap();
        io.run(parse(&["healthcheck", "--socket-path", sock, "--verbose"]))
            .await
            .unwrap();
        assert_eq!(
            io.stdout(),
            "Checking server health...\nServer is healthy.\n"
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_missing_socket_is_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let err = Captured::default()
            .run(parse(&[
                "healthcheck",
                "--socket-path",
                path.to_str().unwrap(),
            ]))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "server is unhealthy: connection error: cannot reach the server admin socket {}: No such file or directory",
                path.display()
            )
        );
    }
}
