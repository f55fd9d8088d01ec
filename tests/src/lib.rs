//! Test harness: in-process Signet servers in temporary directories, and gRPC channels to
//! them that behave as real agents and administrators do (UDS for the admin API; TLS, then
//! mTLS with the agent SVID, for the agent API); and, in [`agent`], in-process agents
//! configured against such a server.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use signet_common::clock::{Clock, SystemClock};
use signet_common::id::{SpiffeId, parse_id};
use signet_common::tls::{Authorizer, ServerSvidVerifier};
use signet_proto::spire::api::server::agent::v1 as agent_pb;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::types;
use signet_server::config::Config;
use signet_server::config::RunArgs;
use signet_server::run::Server;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Uri};

pub mod agent;
pub mod agent_proc;
pub mod bench;
pub mod controller;
pub mod ha;
pub mod k8s_node;
pub mod kube;
pub mod kubelet;
pub mod mtls;
pub mod procs;
pub mod raw_grpc;

/// The trust domain every test server uses.
pub const TRUST_DOMAIN: &str = "example.org";

/// A server running in this process.
pub struct TestServer {
    /// The running server.
    pub server: Option<Server>,
    /// Its directory (config, data, socket).
    pub dir: TempDir,
    /// Its configuration.
    pub config: Config,
}

/// Extra lines for the `server {}` block.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// e.g. `ca_ttl = "1h"`.
    pub server_lines: Vec<String>,
    /// Extra top-level blocks, e.g. a `health_checks { ... }` block.
    pub blocks: Vec<String>,
    /// Extra plugin blocks inside `plugins {}`, e.g. a `NodeAttestor "k8s_psat"` block.
    pub plugins: Vec<String>,
    /// How often the bundle is published without a change, instead of 30 s.
    pub publish_interval: Option<std::time::Duration>,
    /// A `DataStore` block instead of sled in the temp dir (see [`postgres_datastore`]).
    pub datastore: Option<String>,
    /// The trust domain instead of [`TRUST_DOMAIN`].
    pub trust_domain: Option<String>,
    /// The shortest wait between federated bundle refreshes, instead of 1 min.
    pub federation_refresh_floor: Option<std::time::Duration>,
}

impl Options {
    /// A server of trust domain `td` serving its bundle on an `https_spiffe` bundle endpoint
    /// (127.0.0.1, free port, refresh hint 1 s) and refreshing federated bundles at least
    /// every 500 ms: one side of a federation.
    pub fn bundle_endpoint(td: &str) -> Self {
        Self {
            trust_domain: Some(td.into()),
            server_lines: vec![
                r#"federation {
        bundle_endpoint {
            address = "127.0.0.1"
            port = 0
            refresh_hint = "1s"
            profile "https_spiffe" {}
        }
    }"#
                .into(),
            ],
            federation_refresh_floor: Some(std::time::Duration::from_millis(500)),
            ..Self::default()
        }
    }
}

/// The `DataStore "sql"` block for a PostgreSQL connection string.
pub fn postgres_datastore(connection_string: &str) -> String {
    format!(
        r#"DataStore "sql" {{
        plugin_data {{
            database_type = "postgres"
            connection_string = "{connection_string}"
        }}
    }}"#
    )
}

impl TestServer {
    /// Starts a server on 127.0.0.1 (free port), sled store and disk keys in a temp dir.
    pub async fn start(opts: Options) -> Self {
        Self::start_with_clock(opts, Arc::new(SystemClock)).await
    }

    /// As [`TestServer::start`] with an injected clock.
    pub async fn start_with_clock(opts: Options, clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Self::config(dir.path(), &opts);
        let server = Server::start(config.clone(), clock).await.unwrap();
        Self {
            server: Some(server),
            dir,
            config,
        }
    }

    /// The configuration text a test server uses.
    pub fn config_text(dir: &Path, opts: &Options) -> String {
        let d = dir.display();
        format!(
            r#"
server {{
    bind_address = "127.0.0.1"
    bind_port = 0
    socket_path = "{d}/api.sock"
    trust_domain = "{}"
    data_dir = "{d}/data"
    log_level = "DEBUG"
    {}
}}
plugins {{
    {}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = "{d}/data/keys.json"
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    {}
}}
{}
"#,
            opts.trust_domain.as_deref().unwrap_or(TRUST_DOMAIN),
            opts.server_lines.join("\n    "),
            opts.datastore.clone().unwrap_or_else(|| format!(
                r#"DataStore "sled" {{
        plugin_data {{
            directory = "{d}/data/datastore"
        }}
    }}"#
            )),
            opts.plugins.join("\n    "),
            opts.blocks.join("\n")
        )
    }

    fn config(dir: &Path, opts: &Options) -> Config {
        let mut config = Config::parse(
            &Self::config_text(dir, opts),
            "test.conf",
            &RunArgs::default(),
        )
        .unwrap();
        if let Some(every) = opts.publish_interval {
            config.bundle_publish_interval = every;
        }
        if let Some(floor) = opts.federation_refresh_floor {
            config.federation_refresh_floor = floor;
        }
        config
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// The admin socket.
    pub fn socket(&self) -> PathBuf {
        self.server().socket_path.clone()
    }

    /// A channel to the admin socket.
    pub async fn admin(&self) -> Channel {
        uds_channel(&self.socket()).await
    }

    /// The trust bundle's X.509 roots, DER.
    pub async fn roots(&self) -> Vec<Vec<u8>> {
        let bundle = BundleClient::new(self.admin().await)
            .get_bundle(signet_proto::spire::api::server::bundle::v1::GetBundleRequest::default())
            .await
            .unwrap()
            .into_inner();
        bundle
            .x509_authorities
            .into_iter()
            .map(|a| a.asn1)
            .collect()
    }

    /// A TLS channel to the agent API, with or without a client SVID.
    pub async fn tls(&self, client: Option<&Identity>) -> Result<Channel, tonic::transport::Error> {
        let roots = self.roots().await;
        tls_channel(self.server().tcp_addr, &roots, client).await
    }

    /// Creates a join token with `ttl` seconds.
    pub async fn join_token(&self, ttl: i32) -> String {
        AgentClient::new(self.admin().await)
            .create_join_token(agent_pb::CreateJoinTokenRequest {
                ttl,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .value
    }

    /// Attests as an agent with `token`; returns the agent's identity.
    pub async fn attest(&self, token: &str) -> Result<Identity, tonic::Status> {
        attest(self.tls(None).await.unwrap(), token).await
    }

    /// Runs `signet-server <args>` (SPIRE's or Signet's flag spelling) in-process against the
    /// admin socket, as `main` does; returns its result (stdout, or the error) and stderr.
    pub async fn cli(&self, args: &[&str]) -> (anyhow::Result<String>, String) {
        use signet_server::cli::{Cli, Command, Env, compat, execute};
        let argv = ["signet-server"]
            .iter()
            .chain(args)
            .map(std::ffi::OsString::from)
            .chain(["--socket-path".into(), self.socket().into_os_string()]);
        let cli = <Cli as clap::Parser>::try_parse_from(compat::normalize(argv)).unwrap();
        let Command::Admin(cmd) = cli.command else {
            panic!("not an admin command: {args:?}")
        };
        let (mut stdin, mut stdout, mut stderr) = (std::io::empty(), Vec::new(), Vec::new());
        let mut env = Env {
            stdin: &mut stdin,
            stdout: &mut stdout,
            stderr: &mut stderr,
        };
        let result = execute(cmd, &mut env).await;
        let stderr = String::from_utf8(stderr).unwrap();
        (result.map(|()| String::from_utf8(stdout).unwrap()), stderr)
    }

    /// Stops the server.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }
}

/// An X509-SVID and its key.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The SPIFFE ID.
    pub id: SpiffeId,
    /// Chain, leaf first, DER.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER.
    pub key: Vec<u8>,
}

/// A fresh P-256 key and a CSR for it (with `uri` as URI SAN if given).
pub fn key_and_csr(uri: Option<&str>) -> (rcgen::KeyPair, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    if let Some(uri) = uri {
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    }
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    (key, csr)
}

/// Runs AttestAgent with a join token.
pub async fn attest(channel: Channel, token: &str) -> Result<Identity, tonic::Status> {
    let data = types::AttestationData {
        r#type: "join_token".into(),
        payload: token.as_bytes().to_vec(),
    };
    attest_with(channel, data)
        .await
        .map(|(identity, _)| identity)
}

/// Runs AttestAgent (one request, no challenge) with `data`; the identity and whether the
/// server says the agent may attest again.
pub async fn attest_with(
    channel: Channel,
    data: types::AttestationData,
) -> Result<(Identity, bool), tonic::Status> {
    let (key, csr) = key_and_csr(None);
    let req = agent_pb::AttestAgentRequest {
        step: Some(agent_pb::attest_agent_request::Step::Params(
            agent_pb::attest_agent_request::Params {
                data: Some(data),
                params: Some(agent_pb::AgentX509svidParams { csr }),
            },
        )),
    };
    let mut stream = AgentClient::new(channel)
        .attest_agent(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let resp = stream
        .message()
        .await?
        .ok_or_else(|| tonic::Status::internal("no response"))?;
    let Some(agent_pb::attest_agent_response::Step::Result(result)) = resp.step else {
        return Err(tonic::Status::internal("no result"));
    };
    let svid = result.svid.unwrap();
    let id = svid.id.unwrap();
    let identity = Identity {
        id: parse_id(&format!("spiffe://{}{}", id.trust_domain, id.path)).unwrap(),
        chain: svid.cert_chain,
        key: key.serialize_der(),
    };
    Ok((identity, result.reattestable))
}

/// `BatchCreateEntry` of `entries` through the admin `channel`, 500 at a time (SPIRE's
/// batch size); their IDs (each creation must succeed).
pub async fn batch_create_entries(channel: Channel, entries: Vec<types::Entry>) -> Vec<String> {
    use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
    use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
    let mut client = EntryClient::new(channel);
    let mut ids = Vec::with_capacity(entries.len());
    for batch in entries.chunks(500) {
        let resp = client
            .batch_create_entry(BatchCreateEntryRequest {
                entries: batch.to_vec(),
                output_mask: None,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(resp.results.into_iter().map(|r| {
            assert_eq!(r.status.as_ref().map(|s| s.code), Some(0), "{r:?}");
            r.entry.unwrap().id
        }));
    }
    ids
}

/// A plaintext HTTP/2 channel over a Unix socket.
pub async fn uds_channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::try_from("http://localhost")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

/// A TLS client configuration (ALPN h2) that requires the server SVID
/// `spiffe://<td>/spire/server` under `roots`, presenting `client` if given.
pub fn tls_client_config(roots: &[Vec<u8>], client: Option<&Identity>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_id = parse_id(&format!("spiffe://{TRUST_DOMAIN}/spire/server")).unwrap();
    let verifier = ServerSvidVerifier::new(roots, Authorizer::exact(server_id), &provider).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                c.chain
                    .iter()
                    .map(|d| CertificateDer::from(d.clone()))
                    .collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// A TLS channel to `addr` that requires the server SVID `spiffe://<td>/spire/server` under
/// `roots`, presenting `client` if given.
pub async fn tls_channel(
    addr: std::net::SocketAddr,
    roots: &[Vec<u8>],
    client: Option<&Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let config = tls_client_config(roots, client);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Endpoint::try_from(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                // As agents do: without it, Nagle plus delayed ACKs add ~40 ms per call.
                tcp.set_nodelay(true)?;
                let tls = connector
                    .connect(ServerName::try_from("signet-server").unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}
