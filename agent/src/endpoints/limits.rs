//! Connection limits on the public socket, which every local user may connect to (issue 9
//! item 2): a uid may hold at most `workload_api_max_conns_per_uid` connections, and never
//! more than half of what the agent's file descriptors allow, so that other uids are still
//! served while one is at its limit; a connection with no open stream for
//! `workload_api_idle_timeout` is closed; the concurrent streams of one connection are capped
//! by HTTP/2 (`workload_api_max_streams_per_conn`, see [`super::router`]).
//!
//! Connections over a limit are accepted and closed at once, never left in the listen
//! backlog, where they would keep every other caller from connecting.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixListener;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use crate::attestor::workload::Peer;
use crate::config::ConnLimits;
use crate::peer::PeerStream;

/// File descriptors kept for the agent's own use (data files, server connections, logs)
/// out of the soft `RLIMIT_NOFILE`.
const OWN_FDS: u64 = 256;

/// A refusal is logged the first time a uid reaches its limit, then every this many.
const LOG_EVERY: u64 = 1000;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::debug!(from = soft, to = hard, "Raised the open file limit");
                hard
            }
            Err(error) => {
                tracing::warn!(%error, soft, hard, "Cannot raise the open file limit");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(error) => {
            tracing::warn!(%error, "Cannot read the open file limit");
            1024
        }
    }
}

// === impl ConnTable ===

/// Open connections per uid, shared by the accept loop and the connections' permits.
#[derive(Debug)]
pub struct ConnTable {
    per_uid: usize,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    by_uid: HashMap<u32, usize>,
    refused: HashMap<u32, u64>,
}

impl ConnTable {
    /// A table for `limits`, with `fd_limit` file descriptors for the whole agent: a uid
    /// holds at most `limits.max_conns_per_uid` connections, and at most half of the
    /// descriptors left after the agent's own.
    pub fn new(limits: &ConnLimits, fd_limit: u64) -> Arc<Self> {
        let budget = usize::try_from(fd_limit.saturating_sub(OWN_FDS) / 2).unwrap_or(usize::MAX);
        let per_uid = limits.max_conns_per_uid.min(budget).max(1);
        if per_uid < limits.max_conns_per_uid {
            tracing::warn!(
                configured = limits.max_conns_per_uid,
                per_uid,
                fd_limit,
                "workload_api_max_conns_per_uid lowered to half of the open file limit"
            );
        }
        Arc::new(Self {
            per_uid,
            inner: Mutex::default(),
        })
    }

    /// The connections one uid may hold.
    pub fn per_uid(&self) -> usize {
        self.per_uid
    }

    /// A permit for one more connection of `uid`, or `None` when it holds its limit.
    pub fn admit(self: &Arc<Self>, uid: u32) -> Option<Permit> {
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let held = counts.by_uid.entry(uid).or_default();
        if *held < self.per_uid {
            *held += 1;
            return Some(Permit {
                table: Arc::clone(self),
                uid,
            });
        }
        let refused = counts.refused.entry(uid).or_default();
        if refused.is_multiple_of(LOG_EVERY) {
            tracing::warn!(
                uid,
                limit = self.per_uid,
                refused_so_far = *refused,
                "Closing a Workload API connection: this uid holds its connection limit"
            );
        }
        *refused += 1;
        None
    }

    /// Connections `uid` holds now.
    pub fn held(&self, uid: u32) -> usize {
        let counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        counts.by_uid.get(&uid).copied().unwrap_or(0)
    }

    fn release(&self, uid: u32) {
        let mut counts = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = counts.by_uid.get_mut(&uid) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                counts.by_uid.remove(&uid);
                counts.refused.remove(&uid);
            }
        }
    }
}

/// One admitted connection; released when dropped.
#[derive(Debug)]
pub struct Permit {
    table: Arc<ConnTable>,
    uid: u32,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.table.release(self.uid);
    }
}

// === impl ConnState ===

/// What a connection and the calls on it share: how many streams are open, since when none
/// is, and the connection's permit (released once the connection and its calls are gone).
#[derive(Debug)]
pub struct ConnState {
    open: AtomicUsize,
    idle_since: Mutex<Instant>,
    _permit: Permit,
}

impl ConnState {
    fn new(permit: Permit) -> Self {
        Self {
            open: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            _permit: permit,
        }
    }

    /// Counts a stream open until the guard is dropped.
    pub fn open_stream(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        StreamGuard(Arc::clone(self))
    }

    /// When the connection became idle, or `None` while a stream is open.
    fn idle_since(&self) -> Option<Instant> {
        let since = *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (self.open.load(Ordering::SeqCst) == 0).then_some(since)
    }
}

/// An open stream; see [`ConnState::open_stream`].
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnState>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut since = self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

/// The connect info of a limited connection: the caller and the connection's state.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The caller's credentials.
    pub peer: Peer,
    /// The connection's stream count.
    pub state: Arc<ConnState>,
}

// === impl LimitedConn ===

/// An admitted connection that ends itself (EOF to the HTTP/2 server) once it has had no
/// open stream for the idle timeout.
#[derive(Debug)]
pub struct LimitedConn {
    io: PeerStream,
    info: ConnInfo,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl LimitedConn {
    fn new(io: PeerStream, permit: Permit, idle_timeout: Duration) -> Self {
        let info = ConnInfo {
            peer: io.info().clone(),
            state: Arc::new(ConnState::new(permit)),
        };
        Self {
            io,
            info,
            idle_timeout,
            timer: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    /// Whether the idle timeout has passed; re-arms the timer otherwise.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            let next = match self.info.state.idle_since() {
                Some(since) if since + self.idle_timeout <= Instant::now() => return true,
                Some(since) => since + self.idle_timeout,
                None => Instant::now() + self.idle_timeout,
            };
            self.timer.as_mut().reset(next);
        }
        false
    }
}

impl Connected for LimitedConn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.poll_idle(cx) {
            tracing::debug!(
                pid = self.info.peer.pid,
                uid = self.info.peer.uid,
                "Closing an idle Workload API connection"
            );
            // End of stream: the HTTP/2 server closes the connection.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConn {
    signet_common::forward_async_write!();
}

/// The accept loop with limits: every connection on `listener` whose uid is under its
/// limit in `table`; the others are closed as soon as accepted.
pub fn incoming(
    listener: UnixListener,
    table: Arc<ConnTable>,
    idle_timeout: Duration,
) -> impl Stream<Item = io::Result<LimitedConn>> {
    crate::peer::incoming(listener).filter_map(move |conn| {
        let admitted = conn.map(|conn| {
            table
                .admit(conn.info().uid)
                .map(|permit| LimitedConn::new(conn, permit, idle_timeout))
        });
        futures::future::ready(admitted.transpose())
    })
}
