//! The gRPC channel to the server's admin Unix socket, and how its failures read.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::trustdomain::v1::trust_domain_client::TrustDomainClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_client::HealthClient;

/// SPIRE's default admin socket.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-server/private/api.sock";

/// The admin socket could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("connection error: cannot reach the server admin socket {}: {reason}", path.display())]
pub struct ConnectError {
    path: PathBuf,
    reason: String,
}

impl ConnectError {
    fn new(path: &Path, reason: impl fmt::Display) -> Self {
        Self {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// A failed RPC, worded as grpc-go words it (`rpc error: code = NotFound desc = ...`).
#[derive(Debug, thiserror::Error)]
#[error("rpc error: code = {} desc = {}", super::output::code_name(i32::from(.0.code())), .0.message())]
pub struct RpcError(pub tonic::Status);

/// A lazily connected admin client: commands validate their flags and build their requests
/// first, and only then dial (as SPIRE's CLI does).
#[derive(Debug)]
pub struct Admin {
    socket: PathBuf,
    channel: Option<Channel>,
}

impl Admin {
    /// A client for the admin socket at `socket`; nothing is dialed yet.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            channel: None,
        }
    }

    /// The channel, dialing on first use.
    pub async fn channel(&mut self) -> Result<Channel, ConnectError> {
        if let Some(channel) = &self.channel {
            return Ok(channel.clone());
        }
        let channel = connect(&self.socket).await?;
        self.channel = Some(channel.clone());
        Ok(channel)
    }

    /// An Entry API client.
    pub async fn entry(&mut self) -> Result<EntryClient<Channel>, ConnectError> {
        Ok(EntryClient::new(self.channel().await?))
    }

    /// An Agent API client.
    pub async fn agent(&mut self) -> Result<AgentClient<Channel>, ConnectError> {
        Ok(AgentClient::new(self.channel().await?))
    }

    /// A Bundle API client.
    pub async fn bundle(&mut self) -> Result<BundleClient<Channel>, ConnectError> {
        Ok(BundleClient::new(self.channel().await?))
    }

    /// An SVID API client.
    pub async fn svid(&mut self) -> Result<SvidClient<Channel>, ConnectError> {
        Ok(SvidClient::new(self.channel().await?))
    }

    /// A TrustDomain API client.
    pub async fn trust_domain(&mut self) -> Result<TrustDomainClient<Channel>, ConnectError> {
        Ok(TrustDomainClient::new(self.channel().await?))
    }

    /// A grpc.health.v1 client.
    pub async fn health(&mut self) -> Result<HealthClient<Channel>, ConnectError> {
        Ok(HealthClient::new(self.channel().await?))
    }
}

/// Dials `path`. The first connection is made here so that a missing socket or a stopped
/// server is reported with the OS error; the channel redials the same path if it must.
async fn connect(path: &Path) -> Result<Channel, ConnectError> {
    let first = UnixStream::connect(path)
        .await
        .map_err(|e| ConnectError::new(path, io_reason(&e)))?;
    let first = Arc::new(Mutex::new(Some(first)));
    let socket = path.to_path_buf();
    let connector = tower::service_fn(move |_: Uri| {
        let ready = first.lock().ok().and_then(|mut slot| slot.take());
        let socket = socket.clone();
        async move {
            let stream = match ready {
                Some(stream) => stream,
                None => UnixStream::connect(socket).await?,
            };
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|e| ConnectError::new(path, e))
}

/// The OS's words for an I/O error, without Rust's ` (os error N)` suffix.
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let err = Admin::new(&path).channel().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "connection error: cannot reach the server admin socket {}: No such file or directory",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn stopped_server_is_connection_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "the socket file stays behind");
        let err = Admin::new(&path).channel().await.unwrap_err();
        assert!(err.to_string().ends_with(": Connection refused"), "{err}");
    }

    #[test]
    fn rpc_errors_read_like_grpc_go() {
        let err = RpcError(tonic::Status::not_found("entry not found"));
        assert_eq!(
            err.to_string(),
            "rpc error: code = NotFound desc = entry not found"
        );
    }
}
