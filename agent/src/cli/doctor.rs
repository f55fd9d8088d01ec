//! `signet-agent doctor`: asks the running agent, over its admin socket, to run the mTLS
//! checklist for one workload, and prints the report (exit 0 only if nothing FAILs). When
//! the agent cannot be reached, the report says why from what is on disk: no
//! `admin_socket_path`, or no (or an expired) agent SVID in `data_dir`.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use signet_common::clock::{Clock, SystemClock};
use signet_common::config::CommonOverrides;
use signet_common::doctor::{Report, seconds};
use tokio::net::UnixStream;

use crate::cli::env::Io;
use crate::cli::flags::{DoctorFlags, Output};
use crate::config::{Config, RunArgs};
use crate::doctor::DoctorRequest;
use crate::endpoints::admin::DOCTOR_PATH;
use crate::svid::Storage;

/// The agent's checks take at most a few seconds (the server probe times out at 5 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 4 << 20;
const RUNNING: &str = "agent running";

pub(crate) async fn execute(flags: DoctorFlags, io: &mut Io<'_>) -> u8 {
    let report = diagnose(&flags).await;
    let text = match flags.output {
        Output::Json => report.json(),
        Output::Pretty => report.human(),
    };
    match write!(io.out, "{text}") {
        Ok(()) => report.exit_code(),
        Err(_) => 1,
    }
}

async fn diagnose(flags: &DoctorFlags) -> Report {
    let args = RunArgs {
        common: CommonOverrides::with_config(&flags.config),
        ..RunArgs::default()
    };
    let config = match Config::load(&args) {
        Ok(c) => Some(c),
        Err(e) if flags.admin_socket_path.is_none() => {
            let mut r = Report::default();
            r.fail(
                RUNNING,
                format!("cannot find the admin socket: {e}"),
                "pass --admin-socket-path, or --config with the agent's configuration file",
            );
            return r;
        }
        Err(_) => None,
    };
    let Some(socket) = flags
        .admin_socket_path
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.admin_socket_path.clone()))
    else {
        let mut r = Report::default();
        r.fail(
            RUNNING,
            format!("agent.admin_socket_path is not set in {}", flags.config.display()),
            "set agent.admin_socket_path (for example /run/signet-agent/admin/api.sock) and restart the agent",
        );
        return r;
    };
    let req = DoctorRequest {
        pid: flags.pid,
        uid: flags.uid,
        spiffe_id: flags.spiffe_id.clone(),
        peer: flags.peer.clone(),
    };
    match call(&socket, &req).await {
        Ok(report) => report,
        Err(reason) => offline(&socket, &reason, config.as_ref()),
    }
}

/// `POST /v1/doctor` on the admin socket.
async fn call(socket: &Path, req: &DoctorRequest) -> Result<Report, String> {
    let body = serde_json::to_string(req).map_err(|e| e.to_string())?;
    let exchange = async {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| io_reason(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(conn);
        let request = hyper::Request::post(DOCTOR_PATH)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::<Bytes>::from(body))
            .map_err(|e| e.to_string())?;
        let result = async {
            let resp = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status != hyper::StatusCode::OK {
                return Err(format!(
                    "the agent answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                ));
            }
            serde_json::from_slice::<Report>(&bytes)
                .map_err(|e| format!("the agent's answer is not a report: {e}"))
        }
        .await;
        conn.abort();
        result
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {}", seconds(30)))?
}

/// The report when the agent did not answer: that, and what `data_dir` says about whether
/// it ever attested.
fn offline(socket: &Path, reason: &str, config: Option<&Config>) -> Report {
    let mut r = Report::default();
    r.fail(
        RUNNING,
        format!(
            "cannot reach the agent's admin socket {}: {reason}",
            socket.display()
        ),
        "start signet-agent with this admin_socket_path; if it exits at once, its log says why",
    );
    let Some(config) = config else {
        return r;
    };
    const NAME: &str = "agent attested";
    let attest = "create a new join token (signet-server token generate -spiffeID <agent ID>), set it as agent.join_token and start the agent; its log names the server's reason if it is refused";
    let storage = Storage::new(&config.data_dir, &config.key_manager);
    match storage.load() {
        Ok(Some(stored)) => {
            let not_after = stored
                .chain
                .first()
                .and_then(|leaf| signet_common::x509::cert_info(leaf))
                .map(|i| i.not_after);
            let now = SystemClock.unix_now();
            match not_after {
                Some(t) if t > now => r.pass(
                    NAME,
                    format!(
                        "an agent SVID in {} is valid for {} more",
                        config.data_dir.display(),
                        seconds(t - now)
                    ),
                ),
                Some(t) => r.fail(
                    NAME,
                    format!(
                        "the agent SVID in {} expired {} ago",
                        config.data_dir.display(),
                        seconds(now - t)
                    ),
                    attest,
                ),
                None => r.fail(
                    NAME,
                    format!("the agent SVID in {} is unreadable", config.data_dir.display()),
                    attest,
                ),
            }
        }
        Ok(None) => r.fail(
            NAME,
            format!(
                "no agent SVID in {}: the agent is not attested (it never attested, or the server refused it)",
                config.data_dir.display()
            ),
            attest,
        ),
        Err(e) => r.fail(NAME, format!("cannot read the agent's data_dir: {e}"), attest),
    }
    r
}

fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
