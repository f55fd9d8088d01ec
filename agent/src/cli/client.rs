//! Connecting to the Workload API (every call carries `workload.spiffe.io: true`) and turning
//! failures into the one-line errors SPIRE's CLI prints (grpc-go's `rpc error: code = ...`).

use std::error::Error as _;
use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tokio::net::UnixStream;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Uri};
use tonic::{Code, Request, Status};

use crate::cli::addr::{self, Endpoint};
use crate::cli::env::Env;
use crate::cli::flags::SocketFlag;

/// A Workload API client that adds the security header to every call.
pub(crate) type WorkloadClient =
    SpiffeWorkloadApiClient<InterceptedService<Channel, SecurityHeader>>;

/// Adds `workload.spiffe.io: true` (SPIFFE Workload Endpoint §3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecurityHeader;

impl Interceptor for SecurityHeader {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert("workload.spiffe.io", MetadataValue::from_static("true"));
        Ok(req)
    }
}

/// A failure, already worded as the line the CLI prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError(pub(crate) String);

impl CliError {
    pub(crate) fn new(line: impl Into<String>) -> Self {
        Self(line.into())
    }

    /// Prefixes the message: `context: message`.
    pub(crate) fn context(self, context: &str) -> Self {
        Self(format!("{context}: {}", self.0))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Status> for CliError {
    fn from(status: Status) -> Self {
        Self(status_line(status.code(), status.message()))
    }
}

/// grpc-go's rendering of a status: `rpc error: code = PermissionDenied desc = ...`.
pub(crate) fn status_line(code: Code, message: &str) -> String {
    format!("rpc error: code = {} desc = {message}", go_code_name(code))
}

/// The names grpc-go gives status codes (`codes.Code.String()`).
fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The line for a call that ran out of time, as grpc-go words it.
pub(crate) fn deadline_exceeded() -> CliError {
    CliError(status_line(
        Code::DeadlineExceeded,
        "context deadline exceeded",
    ))
}

/// Runs `fut` with a time limit (zero means none); `None` when time ran out.
pub(crate) async fn timed<F: Future>(timeout: Duration, fut: F) -> Option<F::Output> {
    if timeout.is_zero() {
        return Some(fut.await);
    }
    tokio::time::timeout(timeout, fut).await.ok()
}

/// Runs `fut` with a time limit (zero means none), failing with grpc-go's deadline line.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    timed(timeout, fut)
        .await
        .unwrap_or_else(|| Err(deadline_exceeded()))
}

/// A Workload API client on `endpoint`.
pub(crate) async fn workload_client(endpoint: &Endpoint) -> Result<WorkloadClient, CliError> {
    let channel = connect(endpoint).await?;
    Ok(SpiffeWorkloadApiClient::with_interceptor(
        channel,
        SecurityHeader,
    ))
}

/// A plaintext HTTP/2 channel to `endpoint`, connected now so that a missing socket is
/// reported before any call.
pub(crate) async fn connect(endpoint: &Endpoint) -> Result<Channel, CliError> {
    let result = match endpoint {
        Endpoint::Unix(path) => {
            let path = path.clone();
            let connector = tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            });
            tonic::transport::Endpoint::from_static("http://localhost")
                .connect_with_connector(connector)
                .await
        }
        Endpoint::Tcp(addr) => {
            match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
                Ok(ep) => ep.connect().await,
                Err(e) => Err(e),
            }
        }
    };
    result.map_err(|e| dial_error(endpoint, &e))
}

/// grpc-go's wording for a failed dial: `... dial unix /p: connect: connection refused`.
fn dial_error(endpoint: &Endpoint, err: &tonic::transport::Error) -> CliError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    let mut reason = err.to_string();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            reason = io_reason(io);
            break;
        }
        source = e.source();
    }
    CliError(status_line(
        Code::Unavailable,
        &format!(
            "connection error: desc = \"transport: Error while dialing: dial {endpoint}: connect: {reason}\""
        ),
    ))
}

/// An OS error as Go prints it (`no such file or directory`), else the error's text.
fn io_reason(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let desc = nix::errno::Errno::from_raw(code).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => err.to_string(),
            }
        }
        None => err.to_string(),
    }
}

/// The endpoint named by the flag, the environment or the default.
pub(crate) fn endpoint(socket: &SocketFlag, env: &Env) -> Result<Endpoint, CliError> {
    addr::resolve(
        socket.socket_path.as_deref(),
        env.endpoint_socket.as_deref(),
    )
    .map_err(CliError::new)
}

/// A failed write to stdout.
pub(crate) fn stdout_error(e: io::Error) -> CliError {
    CliError::new(format!("write to stdout: {e}"))
}

/// Writes `text` to `out`.
pub(crate) fn emit(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_use_grpc_go_code_names() {
        let e = CliError::from(Status::permission_denied("no identity issued"));
        assert_eq!(
            e.0,
            "rpc error: code = PermissionDenied desc = no identity issued"
        );
        let e = CliError::from(Status::cancelled("gone"));
        assert_eq!(e.0, "rpc error: code = Canceled desc = gone");
    }

    #[tokio::test]
    async fn missing_socket_is_one_unavailable_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let err = connect(&Endpoint::Unix(path.clone())).await.unwrap_err();
        assert_eq!(
            err.0,
            format!(
                "rpc error: code = Unavailable desc = connection error: desc = \"transport: \
                 Error while dialing: dial unix {}: connect: no such file or directory\"",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn socket_nobody_listens_on_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = connect(&Endpoint::Unix(path)).await.unwrap_err();
        assert!(err.0.ends_with("connect: connection refused\""), "{err}");
    }

    #[tokio::test]
    async fn timeout_reads_like_grpc_go() {
        let never = std::future::pending::<Result<(), CliError>>();
        let err = with_timeout(Duration::from_millis(10), never)
            .await
            .unwrap_err();
        assert_eq!(
            err.0,
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
        );
    }
}
