//! Serving gRPC on a Unix socket, as both binaries do (the agent's Workload API / SDS
//! socket, the server's admin socket): binding with explicit permissions, the accept loop,
//! and the connection type tonic serves, which carries the caller's credentials and
//! accepts whatever `:authority` a gRPC client sends ([`authority`]).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::server::Connected;

/// The body of an `AsyncWrite` impl that writes straight through to the wrapper's `io` field
/// (the socket wrappers only change what is read). The caller has `io`, `Pin`, `Context` and
/// `Poll` in scope.
#[macro_export]
macro_rules! forward_async_write {
    () => {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.io.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    };
}

pub mod authority;
pub mod hpack;
#[cfg(feature = "test-util")]
pub mod raw_client;

pub use authority::AuthorityRewriter;

/// How long to pause after a failed `accept` (for example out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A socket that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {}: {source}", path.display())]
pub struct BindError {
    /// The step that failed.
    pub what: &'static str,
    /// The file it failed on.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Who may use a socket.
#[derive(Debug, Clone, Copy)]
pub struct Access {
    /// The socket file's mode.
    pub socket_mode: u32,
    /// The mode of the parent directory when it has to be created (`None`: the umask's).
    pub new_parent_mode: Option<u32>,
}

/// Binds `path` (creating the parent directory if missing, replacing a stale socket left by
/// an earlier run but never any other kind of file) and sets the socket's mode. Must run
/// inside a tokio runtime.
pub fn bind(path: &Path, access: Access) -> Result<UnixListener, BindError> {
    let fail = |what, p: &Path| {
        let path = p.to_path_buf();
        move |source| BindError { what, path, source }
    };
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::create_dir_all(parent).map_err(fail("create", parent))?;
        if let Some(mode) = access.new_parent_mode {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode))
                .map_err(fail("set permissions on", parent))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(fail("replace", path)(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        std::fs::remove_file(path).map_err(fail("remove stale socket", path))?;
    }
    let listener = UnixListener::bind(path).map_err(fail("bind socket", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.socket_mode))
        .map_err(fail("set permissions on", path))?;
    Ok(listener)
}

/// The accept loop: every connection on `listener`, with what `identify` reads from it
/// (peer credentials) as its connect info. Connections `identify` refuses are dropped and
/// logged; accept errors are logged and retried after a short pause. The stream never ends
/// and never yields an error.
pub fn incoming<I, F>(
    listener: UnixListener,
    identify: F,
) -> impl Stream<Item = io::Result<UdsConn<I>>>
where
    F: FnMut(&UnixStream) -> io::Result<I>,
{
    futures::stream::unfold(
        (listener, identify),
        |(listener, mut identify)| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => match identify(&stream) {
                        Ok(info) => {
                            return Some((Ok(UdsConn::new(stream, info)), (listener, identify)));
                        }
                        Err(error) => {
                            tracing::warn!(%error, "Dropping a connection without peer credentials");
                        }
                    },
                    Err(error) => {
                        tracing::warn!(%error, "Failed to accept a connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        },
    )
}

/// tonic's own connect info for a Unix stream (peer address and credentials).
pub fn tonic_connect_info(
    stream: &UnixStream,
) -> io::Result<tonic::transport::server::UdsConnectInfo> {
    Ok(stream.connect_info())
}

// === impl UdsConn ===

/// An accepted connection: its caller's identity `I` (handed to every request as an
/// extension) and a stream that accepts any `:authority`.
#[derive(Debug)]
pub struct UdsConn<I> {
    io: AuthorityRewriter<UnixStream>,
    info: I,
}

impl<I> UdsConn<I> {
    /// Wraps an accepted stream.
    pub fn new(stream: UnixStream, info: I) -> Self {
        Self {
            io: AuthorityRewriter::new(stream),
            info,
        }
    }

    /// The caller.
    pub fn info(&self) -> &I {
        &self.info
    }

    /// The socket.
    pub fn stream(&self) -> &UnixStream {
        self.io.get_ref()
    }
}

impl<I: Clone + Send + Sync + 'static> Connected for UdsConn<I> {
    type ConnectInfo = I;

    fn connect_info(&self) -> I {
        self.info.clone()
    }
}

impl<I: Unpin> AsyncRead for UdsConn<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: Unpin> AsyncWrite for UdsConn<I> {
    forward_async_write!();
}
