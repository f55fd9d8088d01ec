//! Peer credentials of the public socket's callers: read once per connection at accept time
//! (SO_PEERCRED and SO_PEERPIDFD) and handed to every request on that connection as its
//! [`Peer`] extension.
//!
//! The PID alone is not enough to identify a process for longer than an instant: the caller
//! may exit and its PID be reused. The pidfd pins the very process that connected, so
//! [`Peer::is_alive`] after attestation proves that what was read from `/proc/<pid>` belonged
//! to the caller. Without a pidfd (kernels before 6.5) the process start time from
//! `/proc/<pid>/stat`, captured at accept, serves the same purpose.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use futures::Stream;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt};
use signet_common::uds::{self, UdsConn};
use tokio::net::UnixListener;

use crate::attestor::workload::Peer;

// === impl Peer ===

impl Peer {
    /// Reads the credentials of the process on the other end of a connected Unix socket.
    pub fn of_socket<S: AsFd>(socket: &S) -> io::Result<Self> {
        let cred = getsockopt(socket, sockopt::PeerCredentials).map_err(io::Error::from)?;
        let pidfd = getsockopt(socket, sockopt::PeerPidfd).ok().map(Arc::new);
        let pid = cred.pid();
        if pid <= 0 {
            return Err(io::Error::other("peer credentials carry no PID"));
        }
        Ok(Self {
            pid,
            uid: cred.uid(),
            gid: cred.gid(),
            start_time: if pidfd.is_some() {
                None
            } else {
                start_time(pid)
            },
            pidfd,
        })
    }

    /// Whether the process that connected is still running. With a pidfd this is exact
    /// (a pidfd polls readable once its process has exited); without one, the PID must
    /// still exist with the start time seen at accept.
    pub fn is_alive(&self) -> bool {
        if let Some(fd) = &self.pidfd {
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            return match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
                Ok(0) => true,
                Ok(_) => false,
                Err(error) => {
                    tracing::warn!(%error, pid = self.pid, "Failed to poll the caller's pidfd");
                    false
                }
            };
        }
        match (self.start_time, start_time(self.pid)) {
            (Some(then), Some(now)) => then == now,
            (None, Some(_)) => true,
            (_, None) => false,
        }
    }
}

/// The process start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything, spaces and
    // parentheses included; the fields after the last `)` are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state), so field 22 is its 20th.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

// === accepting ===

/// An accepted connection on the public socket with its caller's credentials (and
/// tolerant of any `:authority`; see [`signet_common::uds`]).
pub type PeerStream = UdsConn<Peer>;

/// The accept loop: every connection on `listener` with its caller's credentials.
/// Connections whose credentials cannot be read are dropped; accept errors are logged and
/// retried after a short pause. The stream never ends and never yields an error.
pub fn incoming(listener: UnixListener) -> impl Stream<Item = io::Result<PeerStream>> {
    uds::incoming(listener, Peer::of_socket)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::process::{Child, Command};

    use super::*;

    /// Set in a re-executed test binary: connect to this socket path, then exit.
    const CHILD_CONNECT_ENV: &str = "SIGNET_TEST_PEER_CONNECT";

    /// Not a test of its own: the body of a child process spawned by
    /// [`spawn_connecting_child`]. Does nothing in a normal run.
    #[test]
    fn child_connect_helper() {
        if let Ok(path) = std::env::var(CHILD_CONNECT_ENV) {
            let _stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        }
    }

    /// Spawns a copy of this test binary that connects to `path` and exits.
    pub(crate) fn spawn_connecting_child(path: &std::path::Path) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "peer::tests::child_connect_helper", "--quiet"])
            .env(CHILD_CONNECT_ENV, path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Accepts a connection from a child process that then exits; returns its peer
    /// credentials (read before it exited) after it is gone and reaped.
    pub(crate) async fn dead_peer() -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut child = spawn_connecting_child(&path);
        let (stream, _) = listener.accept().await.unwrap();
        let peer = Peer::of_socket(&stream).unwrap();
        assert_eq!(peer.pid, i32::try_from(child.id()).unwrap());
        assert!(child.wait().unwrap().success());
        peer
    }

    #[test]
    fn reads_own_credentials_and_pidfd() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let peer = Peer::of_socket(&a).unwrap();
        assert_eq!(peer.pid, i32::try_from(std::process::id()).unwrap());
        assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
        assert_eq!(peer.gid, nix::unistd::getegid().as_raw());
        assert!(
            peer.pidfd.is_some(),
            "this kernel should support SO_PEERPIDFD"
        );
        assert!(peer.is_alive());
    }

    #[tokio::test]
    async fn exited_caller_is_not_alive() {
        let peer = dead_peer().await;
        assert!(!peer.is_alive());
        let without_pidfd = Peer {
            pidfd: None,
            start_time: Some(1),
            ..peer
        };
        assert!(!without_pidfd.is_alive());
    }

    #[test]
    fn start_time_fallback_detects_a_different_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let now = start_time(me).unwrap();
        let peer = |start_time| Peer {
            pid: me,
            uid: 0,
            gid: 0,
            pidfd: None,
            start_time,
        };
        assert!(peer(Some(now)).is_alive());
        assert!(!peer(Some(now + 1)).is_alive());
    }
}
