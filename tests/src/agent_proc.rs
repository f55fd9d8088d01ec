//! A real `signet-server` and a real `signet-agent` process with one join-token attested
//! agent, for tests that measure the agent process (its RSS) or attack its public socket from
//! another uid. The directories are traversable by every uid (the agent's `data_dir` stays
//! private); the public socket is `<dir>/public/api.sock`.
//!
//! `SIGNET_AGENT_BIN` names another agent binary to run instead (a build of an older
//! revision, for before/after figures); the agent is started with the open file limit
//! `SIGNET_AGENT_NOFILE` (`soft:hard`, default `1024:<this process's hard limit>`, as systemd
//! starts services), through `prlimit`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use signet_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::types;
use tokio::process::{Child, Command};

use crate::procs::{ServerProc, binary, wait_for};
use crate::{Options, uds_channel};

/// The server, the agent and their directory.
pub struct AgentProc {
    /// Everything lives here (0755).
    pub dir: tempfile::TempDir,
    /// The server process.
    pub server: ServerProc,
    /// The agent process.
    pub agent: Child,
    /// The agent's public socket.
    pub socket: PathBuf,
    /// The join token the agent attested with.
    pub token: String,
}

/// A started server with a join token and the agent's configuration written, the agent
/// not yet started: to register entries before the agent's first sync.
pub struct Prepared {
    /// Everything lives here (0755).
    pub dir: tempfile::TempDir,
    /// The server process.
    pub server: ServerProc,
    /// The join token the agent will attest with.
    pub token: String,
    conf: PathBuf,
}

impl Prepared {
    /// Starts the server and writes the agent's configuration, `agent_lines` added to the
    /// `agent {}` block.
    pub async fn new(agent_lines: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let public = dir.path().join("public");
        std::fs::create_dir(&public).unwrap();
        std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut server = ServerProc::new(dir.path().join("server"), &Options::default());
        server.start().await;
        let admin = server.socket();
        std::fs::write(
            dir.path().join("bootstrap.pem"),
            signet_common::pem::certificates(&bundle_roots(&admin).await),
        )
        .unwrap();
        let token = join_token(&admin).await;
        let conf = dir.path().join("agent.conf");
        std::fs::write(&conf, agent_config(dir.path(), server.port, agent_lines)).unwrap();
        Self {
            dir,
            server,
            token,
            conf,
        }
    }

    /// The agent's public socket (once it runs).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("public").join("api.sock")
    }

    /// Starts the agent and waits for its public socket.
    pub async fn start_agent(self) -> AgentProc {
        let agent = spawn_agent(&self.conf, &self.token, &self.dir.path().join("agent.log"));
        let socket = self.socket();
        wait_for(&socket, Duration::from_secs(30)).await;
        AgentProc {
            dir: self.dir,
            server: self.server,
            agent,
            socket,
            token: self.token,
        }
    }
}

impl AgentProc {
    /// Starts both, with `agent_lines` added to the `agent {}` block, and waits for the
    /// public socket.
    pub async fn start(agent_lines: &str) -> Self {
        Prepared::new(agent_lines).await.start_agent().await
    }

    /// The agent's PID.
    pub fn agent_pid(&self) -> u32 {
        self.agent.id().unwrap()
    }

    /// The agent's resident set size, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn agent_rss_kib(&self) -> u64 {
        rss_kib(self.agent_pid())
    }

    /// The agent's log so far.
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Registers `path` under the agent for callers with `selector` (`unix:uid:0`, ...).
    pub async fn create_entry(&self, path: &str, selector: &str) -> String {
        let (kind, value) = selector.split_once(':').unwrap();
        let resp = EntryClient::new(uds_channel(&self.server.socket()).await)
            .batch_create_entry(BatchCreateEntryRequest {
                entries: vec![types::Entry {
                    spiffe_id: Some(types::Spiffeid {
                        trust_domain: "example.org".into(),
                        path: path.into(),
                    }),
                    parent_id: Some(types::Spiffeid {
                        trust_domain: "example.org".into(),
                        path: format!("/spire/agent/join_token/{}", self.token),
                    }),
                    selectors: vec![types::Selector {
                        r#type: kind.into(),
                        value: value.into(),
                    }],
                    ..Default::default()
                }],
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        resp.results[0].entry.as_ref().unwrap().id.clone()
    }

    /// This process's first X509-SVID (leaf DER) through a `spiffe` crate client, polling
    /// until the agent has one.
    pub async fn first_svid(&self, within: Duration) -> Vec<u8> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Ok(svid)) =
                tokio::time::timeout(Duration::from_secs(5), self.fetch_svid()).await
            {
                return svid;
            }
            assert!(Instant::now() < deadline, "no SVID within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One X509-SVID fetch on a new connection (leaf DER).
    pub async fn fetch_svid(&self) -> Result<Vec<u8>, String> {
        let client =
            spiffe::WorkloadApiClient::connect_to(format!("unix:{}", self.socket.display()))
                .await
                .map_err(|e| e.to_string())?;
        let svid = client.fetch_x509_svid().await.map_err(|e| e.to_string())?;
        Ok(svid.leaf().as_bytes().to_vec())
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The uid this test runs as.
pub fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

fn spawn_agent(conf: &Path, token: &str, log: &Path) -> Child {
    let bin =
        std::env::var_os("SIGNET_AGENT_BIN").map_or_else(|| binary("signet-agent"), PathBuf::from);
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap()
        .1;
    let nofile = std::env::var("SIGNET_AGENT_NOFILE").unwrap_or_else(|_| format!("1024:{hard}"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new("prlimit")
        .arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(bin)
        .args([
            "run",
            "--config",
            conf.to_str().unwrap(),
            "--join-token",
            token,
        ])
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// An agent configuration under `dir` for a server on `port` (join token, disk keys in
/// `<dir>/agent/keys`, the `unix` workload attestor), `agent_lines` added to `agent {}`.
pub fn agent_config(dir: &Path, port: u16, agent_lines: &str) -> String {
    let d = dir.display();
    format!(
        r#"
agent {{
    data_dir = "{d}/agent"
    server_address = "127.0.0.1"
    server_port = {port}
    socket_path = "{d}/public/api.sock"
    trust_domain = "example.org"
    trust_bundle_path = "{d}/bootstrap.pem"
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

/// The X.509 roots of the server behind the admin socket `socket`.
pub async fn bundle_roots(socket: &Path) -> Vec<Vec<u8>> {
    use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
    use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
    BundleClient::new(uds_channel(socket).await)
        .get_bundle(GetBundleRequest::default())
        .await
        .unwrap()
        .into_inner()
        .x509_authorities
        .into_iter()
        .map(|a| a.asn1)
        .collect()
}

/// A new join token (valid 10 minutes) from the server behind the admin socket `socket`.
pub async fn join_token(socket: &Path) -> String {
    AgentClient::new(uds_channel(socket).await)
        .create_join_token(CreateJoinTokenRequest {
            ttl: 600,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .value
}
