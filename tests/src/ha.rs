//! For the HA tests (several `signet-server` processes on one PostgreSQL): entries, an
//! agent configuration for join-token agents of given servers, a workload watching its
//! X509 context with the `spiffe` crate, how long it held an expired SVID, a loop creating
//! entries through several servers, and every entry ID a server lists.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use signet_common::clock::{Clock, SystemClock, from_unix_seconds};
use signet_proto::spire::api::server::entry::v1::ListEntriesRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::types;
use spiffe::WorkloadApiClient;
use tokio_stream::StreamExt;

use crate::procs::ServerProc;
use crate::{Options, postgres_datastore, uds_channel};

/// What a workload received: when, and each SVID's SPIFFE ID and NotAfter.
pub type Updates = Arc<Mutex<Vec<(SystemTime, Vec<(String, SystemTime)>)>>>;

/// Two server processes, `dir/a` and `dir/b`, started on the PostgreSQL database of
/// `connection_string`.
pub async fn two_servers(connection_string: &str, dir: &Path) -> (ServerProc, ServerProc) {
    let opts = Options {
        datastore: Some(postgres_datastore(connection_string)),
        ..Options::default()
    };
    let mut a = ServerProc::new(dir.join("a"), &opts);
    let mut b = ServerProc::new(dir.join("b"), &opts);
    a.start().await;
    b.start().await;
    (a, b)
}

/// An entry of `example.org` with one `unix` selector.
pub fn entry(path: &str, parent: &str, selector: &str, ttl: i32) -> types::Entry {
    let id = |path: &str| types::Spiffeid {
        trust_domain: "example.org".into(),
        path: path.into(),
    };
    types::Entry {
        spiffe_id: Some(id(path)),
        parent_id: Some(id(parent)),
        selectors: vec![types::Selector {
            r#type: "unix".into(),
            value: selector.into(),
        }],
        x509_svid_ttl: ttl,
        ..Default::default()
    }
}

/// A join-token agent's configuration in `dir/name` for the server on 127.0.0.1:`port`
/// (then `others`, as `server_addresses`), trusting `dir/bootstrap.pem`, syncing by push
/// only (`sync_interval` 1 h).
pub fn agent_text(dir: &Path, name: &str, port: u16, others: &[u16]) -> String {
    let d = dir.display();
    let others: Vec<String> = others
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let others = if others.is_empty() {
        String::new()
    } else {
        format!("server_addresses = [{}]", others.join(", "))
    };
    format!(
        r#"
agent {{
    data_dir = "{d}/{name}"
    server_address = "127.0.0.1"
    server_port = {port}
    {others}
    socket_path = "{d}/{name}/public/api.sock"
    trust_domain = "example.org"
    trust_bundle_path = "{d}/bootstrap.pem"
    log_level = "DEBUG"
    experimental {{
        sync_interval = "1h"
    }}
}}
plugins {{
    KeyManager "disk" {{
        plugin_data {{
            directory = "{d}/{name}/keys"
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
}}
"#
    )
}

/// A workload watching its X509 context through the agent socket `socket` from now on
/// (reconnecting whenever the stream ends).
pub fn watch_x509(socket: &Path) -> Updates {
    let updates: Updates = Arc::default();
    let socket = format!("unix:{}", socket.display());
    let out = Arc::clone(&updates);
    tokio::spawn(async move {
        loop {
            if let Ok(client) = WorkloadApiClient::connect_to(&socket).await
                && let Ok(mut stream) = client.stream_x509_contexts().await
            {
                while let Some(Ok(ctx)) = stream.next().await {
                    let svids = ctx
                        .svids()
                        .iter()
                        .filter_map(|s| signet_common::x509::cert_info(s.leaf().as_bytes()))
                        .map(|info| (info.id.to_string(), from_unix_seconds(info.not_after)))
                        .collect();
                    out.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((SystemClock.now(), svids));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    updates
}

/// Whether the workload was given an SVID whose ID ends with `path`.
pub fn seen(updates: &Updates, path: &str) -> bool {
    updates
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|(_, s)| s.iter().any(|(id, _)| id.ends_with(path)))
}

/// For the SVIDs whose ID ends with `path`: how many were seen (distinct NotAfters), and
/// how long since `from` the workload held only an expired one.
pub fn expired_for(updates: &Updates, path: &str, from: SystemTime) -> (usize, Duration) {
    let updates = updates
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let held: Vec<(SystemTime, SystemTime)> = updates
        .iter()
        .filter_map(|(t, s)| {
            s.iter()
                .find(|(id, _)| id.ends_with(path))
                .map(|(_, e)| (*t, *e))
        })
        .collect();
    let end = SystemClock.now();
    let mut expired = Duration::ZERO;
    for (i, (got, expiry)) in held.iter().enumerate() {
        let until = held.get(i + 1).map_or(end, |(t, _)| *t);
        if let Ok(d) = until.duration_since((*got).max(*expiry).max(from)) {
            expired += d;
        }
    }
    let expiries: BTreeSet<_> = held.iter().map(|(_, e)| *e).collect();
    (expiries.len(), expired)
}

/// Every entry ID the server behind the admin socket `socket` lists (all pages).
pub async fn listed_entry_ids(socket: &Path) -> BTreeSet<String> {
    let mut listed = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let resp = EntryClient::new(uds_channel(socket).await)
            .list_entries(ListEntriesRequest {
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("ListEntries through {}: {e}", socket.display()))
            .into_inner();
        listed.extend(resp.entries.into_iter().map(|e| e.id));
        if resp.next_page_token.is_empty() {
            return listed;
        }
        page_token = resp.next_page_token;
    }
}

/// Writers creating entries (`/load/<name>/<n>`, under no agent) through each server's
/// admin socket, one after another as fast as they answer (50 ms apart after a refusal).
pub struct CreateLoad<E> {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    refused: Arc<Mutex<Vec<E>>>,
    writers: Vec<tokio::task::JoinHandle<(&'static str, usize, usize)>>,
}

impl<E: Send + 'static> CreateLoad<E> {
    /// Starts one writer per `(name, admin socket)`; `create` makes one entry, giving its
    /// ID if the server acknowledged it.
    pub fn start<F, Fut>(servers: Vec<(&'static str, PathBuf)>, create: F) -> Self
    where
        F: Fn(PathBuf, types::Entry) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<String, E>> + Send,
    {
        let load = Self {
            stop: Arc::default(),
            acked: Arc::default(),
            refused: Arc::default(),
            writers: vec![],
        };
        let writers = servers
            .into_iter()
            .map(|(name, socket)| {
                let (stop, acked, refused) = (
                    Arc::clone(&load.stop),
                    Arc::clone(&load.acked),
                    Arc::clone(&load.refused),
                );
                let create = create.clone();
                tokio::spawn(async move {
                    let (mut ok, mut failed) = (0, 0);
                    while !stop.load(Ordering::Relaxed) {
                        let path = format!("/load/{name}/{}", ok + failed + 1);
                        let e = entry(&path, "/spire/agent/elsewhere", "uid:1", 0);
                        match create(socket.clone(), e).await {
                            Ok(id) => {
                                acked
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .insert(id);
                                ok += 1;
                            }
                            Err(why) => {
                                refused
                                    .lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(why);
                                failed += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    (name, ok, failed)
                })
            })
            .collect();
        Self { writers, ..load }
    }

    /// Stops the writers (printing each one's counts); the acknowledged entry IDs and the
    /// refusals.
    pub async fn stop(self) -> (BTreeSet<String>, Vec<E>) {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            let (name, ok, failed) = writer.await.unwrap_or_else(|e| panic!("writer: {e}"));
            println!("writer through {name}: {ok} entries acknowledged, {failed} refused");
        }
        (taken(&self.acked), taken(&self.refused))
    }
}

fn taken<T: Default>(m: &Mutex<T>) -> T {
    std::mem::take(&mut *m.lock().unwrap_or_else(PoisonError::into_inner))
}
