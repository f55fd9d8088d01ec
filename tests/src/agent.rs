//! For the `agent_*` tests and the propagation benchmark: a real in-process server, an agent
//! configured against it in a temp dir, and admin calls to create, update and delete entries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::{Options, TestServer, batch_create_entries};
use signet_agent::config::Config;
use signet_agent::config::RunArgs;
use signet_agent::manager::Snapshot;
use signet_agent::run::Agent;
use signet_common::clock::SystemClock;
use signet_common::id::SpiffeId;
use signet_proto::spire::api::server::agent::v1::BanAgentRequest;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{
    BatchDeleteEntryRequest, BatchUpdateEntryRequest,
};
use signet_proto::types;
use tempfile::TempDir;
use tokio::sync::watch;

/// A server and an agent directory.
pub struct Setup {
    pub server: TestServer,
    pub dir: TempDir,
}

impl Setup {
    /// A server with extra `server {}` lines (e.g. short TTLs).
    pub async fn new(server_lines: &[&str]) -> Self {
        Self::with_options(Options {
            server_lines: server_lines.iter().map(|s| (*s).to_owned()).collect(),
            ..Options::default()
        })
        .await
    }

    /// A server started with `opts`.
    pub async fn with_options(opts: Options) -> Self {
        let server = TestServer::start(opts).await;
        let dir = tempfile::tempdir().unwrap();
        let pem = signet_common::pem::certificates(&server.roots().await);
        std::fs::write(dir.path().join("bootstrap.pem"), pem).unwrap();
        Self { server, dir }
    }

    /// The agent configuration: trust bundle from the server, disk keys, `agent_lines`
    /// added to the `agent {}` block.
    pub fn config(&self, join_token: Option<&str>, agent_lines: &str) -> Config {
        self.config_via(
            self.server.server().tcp_addr.port(),
            join_token,
            agent_lines,
        )
    }

    /// As [`Setup::config`], dialing the server at `port` on 127.0.0.1 (e.g. a [`Proxy`]).
    pub fn config_via(&self, port: u16, join_token: Option<&str>, agent_lines: &str) -> Config {
        parse(&self.config_text(port, agent_lines), join_token)
    }

    /// The agent configuration text.
    pub fn config_text(&self, port: u16, agent_lines: &str) -> String {
        let d = self.dir.path().display();
        let td = self.server.config.trust_domain.as_str();
        format!(
            r#"
agent {{
    data_dir = "{d}/agent"
    server_address = "127.0.0.1"
    server_port = {port}
    socket_path = "{d}/public/api.sock"
    trust_domain = "{td}"
    trust_bundle_path = "{d}/bootstrap.pem"
    log_level = "DEBUG"
    {agent_lines}
}}
plugins {{
    KeyManager "disk" {{
        plugin_data {{
            directory = "{d}/agent/keys"
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

    /// Starts an agent with a fresh join token.
    pub async fn agent(&self, agent_lines: &str) -> Agent {
        let token = self.server.join_token(600).await;
        Agent::start(
            self.config(Some(&token), agent_lines),
            Arc::new(SystemClock),
        )
        .await
        .unwrap()
    }

    /// The agent's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    /// Creates an entry `spiffe://<trust domain><path>` under `parent`; returns its ID.
    pub async fn create_entry(&self, parent: &SpiffeId, path: &str) -> String {
        self.create_entries(parent, &[path]).await.remove(0)
    }

    /// Creates one entry per path under `parent`; returns their IDs.
    pub async fn create_entries(&self, parent: &SpiffeId, paths: &[&str]) -> Vec<String> {
        self.create_entries_with(parent, paths, 0, "uid:1000").await
    }

    /// As [`Setup::create_entry_selector`] with an X509-SVID TTL in seconds.
    pub async fn create_entry_selector_ttl(
        &self,
        parent: &SpiffeId,
        path: &str,
        unix_value: &str,
        ttl: i32,
    ) -> String {
        self.create_entries_with(parent, &[path], ttl, unix_value)
            .await
            .remove(0)
    }

    /// Creates an entry with the selector `unix:<unix_value>`; returns its ID.
    pub async fn create_entry_selector(
        &self,
        parent: &SpiffeId,
        path: &str,
        unix_value: &str,
    ) -> String {
        self.create_entries_with(parent, &[path], 0, unix_value)
            .await
            .remove(0)
    }

    /// Creates an entry whose X509-SVIDs live `ttl` seconds; returns its ID.
    pub async fn create_entry_with_ttl(&self, parent: &SpiffeId, path: &str, ttl: i32) -> String {
        self.create_entries_with(parent, &[path], ttl, "uid:1000")
            .await
            .remove(0)
    }

    /// Creates an entry with the selector `unix:<unix_value>` whose workloads also get the
    /// bundles of `federates_with` (trust domain names); returns its ID.
    pub async fn create_federated_entry(
        &self,
        parent: &SpiffeId,
        path: &str,
        unix_value: &str,
        federates_with: &[&str],
    ) -> String {
        self.create_entries_federated(parent, &[path], 0, unix_value, federates_with)
            .await
            .remove(0)
    }

    async fn create_entries_with(
        &self,
        parent: &SpiffeId,
        paths: &[&str],
        ttl: i32,
        unix_value: &str,
    ) -> Vec<String> {
        self.create_entries_federated(parent, paths, ttl, unix_value, &[])
            .await
    }

    async fn create_entries_federated(
        &self,
        parent: &SpiffeId,
        paths: &[&str],
        ttl: i32,
        unix_value: &str,
        federates_with: &[&str],
    ) -> Vec<String> {
        let entries = paths
            .iter()
            .map(|path| types::Entry {
                spiffe_id: Some(types::Spiffeid {
                    trust_domain: self.server.config.trust_domain.as_str().into(),
                    path: (*path).into(),
                }),
                parent_id: Some(proto_id(parent)),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: unix_value.into(),
                }],
                x509_svid_ttl: ttl,
                federates_with: federates_with.iter().map(|td| (*td).to_owned()).collect(),
                ..Default::default()
            })
            .collect();
        batch_create_entries(self.server.admin().await, entries).await
    }

    /// Sets an entry's DNS names (its revision goes up).
    pub async fn set_dns_names(&self, id: &str, dns: &[&str]) {
        let resp = EntryClient::new(self.server.admin().await)
            .batch_update_entry(BatchUpdateEntryRequest {
                entries: vec![types::Entry {
                    id: id.into(),
                    dns_names: dns.iter().map(|s| (*s).to_owned()).collect(),
                    ..Default::default()
                }],
                input_mask: Some(types::EntryMask {
                    dns_names: true,
                    ..Default::default()
                }),
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.results[0].status.as_ref().map(|s| s.code), Some(0));
    }

    /// Deletes an entry.
    pub async fn delete_entry(&self, id: &str) {
        let resp = EntryClient::new(self.server.admin().await)
            .batch_delete_entry(BatchDeleteEntryRequest {
                ids: vec![id.into()],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.results[0].status.as_ref().map(|s| s.code), Some(0));
    }

    /// Bans an agent.
    pub async fn ban(&self, agent: &SpiffeId) {
        AgentClient::new(self.server.admin().await)
            .ban_agent(BanAgentRequest {
                id: Some(proto_id(agent)),
            })
            .await
            .unwrap();
    }
}

/// A TCP proxy in front of the server, to cut the agent off (every connection dropped, new
/// ones refused at once) and let it back, as a network outage or a server restart would.
pub struct Proxy {
    /// The port the agent dials.
    pub port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    /// A proxy to `upstream`, passing traffic.
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = watch::Sender::new(true);
        let state = up.subscribe();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                if !*state.borrow() {
                    continue;
                }
                let mut down = state.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut conn, &mut server) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { port, up }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Passes traffic again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// Parses agent configuration text, with `join_token` as if given on the command line.
pub fn parse(text: &str, join_token: Option<&str>) -> Config {
    let args = RunArgs {
        join_token: join_token.map(str::to_owned),
        ..RunArgs::default()
    };
    Config::parse(text, "agent.conf", &args).unwrap()
}

/// `GET path` over plain HTTP/1.1; the whole response.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

pub fn proto_id(id: &SpiffeId) -> types::Spiffeid {
    types::Spiffeid {
        trust_domain: id.trust_domain_name().to_owned(),
        path: id.path().to_owned(),
    }
}

/// Waits (real time, at most `within`) for a snapshot satisfying `f`.
pub async fn until(
    rx: &mut watch::Receiver<Arc<Snapshot>>,
    within: Duration,
    f: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let got = tokio::time::timeout(within, rx.wait_for(|s| f(s)))
        .await
        .unwrap_or_else(|_| panic!("no such snapshot within {within:?}"))
        .unwrap();
    Arc::clone(&got)
}

/// The SVID's SPIFFE ID for an entry in a snapshot, if it holds one.
pub fn svid_id(s: &Snapshot, entry_id: &str) -> Option<String> {
    s.svids
        .get(entry_id)
        .and_then(|v| signet_common::x509::cert_info(&v.chain[0]))
        .map(|i| i.id.to_string())
}

/// Whether a path exists.
pub fn exists(p: &Path) -> bool {
    p.exists()
}
