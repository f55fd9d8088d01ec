//! `signet-agent healthcheck`: gRPC health `Check` on the agent's public socket, worded like
//! SPIRE's (`Agent is healthy.` / `Agent is unhealthy: ...`). `--shallow` is accepted for
//! compatibility; like SPIRE's on Unix it changes nothing.

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::addr;
use crate::cli::client::{CliError, connect, with_timeout};
use crate::cli::env::{Env, Io};
use crate::cli::flags::HealthcheckFlags;

/// SPIRE waits forever; a hung agent should not hang the probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn execute(flags: &HealthcheckFlags, env: &Env, io: &mut Io<'_>) -> u8 {
    if flags.verbose {
        let _ = writeln!(io.out, "Checking agent health...");
    }
    match check(flags, env, io).await {
        Ok(()) => match writeln!(io.out, "Agent is healthy.") {
            Ok(()) => 0,
            Err(_) => 1,
        },
        Err(reason) => {
            let _ = writeln!(io.err, "Agent is unhealthy: {reason}");
            1
        }
    }
}

async fn check(flags: &HealthcheckFlags, env: &Env, io: &mut Io<'_>) -> Result<(), String> {
    let endpoint = addr::resolve(
        flags.socket.socket_path.as_deref(),
        env.endpoint_socket.as_deref(),
    )?;
    let call = async {
        let mut client = HealthClient::new(connect(&endpoint).await?);
        let resp = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(CliError::from)?;
        Ok(resp.into_inner())
    };
    let resp = match with_timeout(CHECK_TIMEOUT, call).await {
        Ok(resp) => resp,
        Err(e) => {
            if flags.verbose {
                let _ = writeln!(io.err, "Failed to check health: {e}");
            }
            return Err("unable to determine health".into());
        }
    };
    let status = resp.status();
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(format!("agent returned status {:?}", status.as_str_name()))
    }
}
