//! `agent.conf`: HCL in SPIRE's shape, parsed into typed configuration. Unknown keys are
//! refused with an error naming the key and the file; command-line flags override the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_common::config::{
    CommonOverrides, EmptyData, EnabledPlugin, GoOnlyKeys, HealthBlock, KeyCheck, KeyError,
    PluginBlock, PluginTable, PortValue, ProcessConfig, ProcessKeys, Raw, TelemetryBlock, duration,
    is_true, non_empty, plugin_data, port, read_plugins, required_plugin,
};
pub use signet_common::config::{ConfigError, HealthConfig, expand_env};
use signet_common::id::TrustDomain;

pub mod k8s;
#[cfg(test)]
mod tests;

pub use k8s::{
    ApiServerConfig, K8sConfig, KubeletAuth, KubeletConfig, KubeletVerification, SecureKubelet,
};

/// SPIRE's default public socket.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-agent/public/api.sock";
/// How often the agent re-syncs even without a push from the server.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(5);
/// SPIRE's default bound on cached X509-SVIDs (and JWT-SVIDs).
pub const DEFAULT_CACHE_SIZE: usize = 1000;

// === File shape (serde) ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    agent: AgentBlock,
    #[serde(default)]
    plugins: BTreeMap<String, BTreeMap<String, PluginBlock>>,
    health_checks: Option<HealthBlock>,
    telemetry: Option<TelemetryBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBlock {
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<String>,
    log_file: Option<PathBuf>,
    server_address: Option<String>,
    server_port: Option<PortValue>,
    server_addresses: Option<Vec<String>>,
    socket_path: Option<PathBuf>,
    trust_domain: Option<String>,
    trust_bundle_path: Option<PathBuf>,
    trust_bundle_format: Option<String>,
    insecure_bootstrap: Option<bool>,
    join_token: Option<String>,
    join_token_file: Option<PathBuf>,
    workload_x509_svid_key_type: Option<String>,
    x509_svid_cache_max_size: Option<i64>,
    jwt_svid_cache_max_size: Option<i64>,
    workload_api_max_conns_per_uid: Option<i64>,
    workload_api_max_streams_per_conn: Option<i64>,
    workload_api_idle_timeout: Option<String>,
    sds: Option<SdsBlock>,
    experimental: Option<ExperimentalBlock>,
    admin_socket_path: Option<PathBuf>,
    retry_bootstrap: Option<bool>,
    rebootstrap_mode: Option<String>,
    rebootstrap_delay: Option<String>,
    log_source_location: Option<bool>,
    log_selectors: Option<Vec<String>>,
    trust_bundle_url: Option<String>,
    trust_bundle_unix_socket: Option<String>,
    trust_bundle_spiffe_workload_api: Option<String>,
    allow_unauthenticated_verifiers: Option<bool>,
    allowed_foreign_jwt_claims: Option<Vec<String>>,
    availability_target: Option<String>,
    authorized_delegates: Option<Vec<String>>,
    disable_workload_api: Option<bool>,
    disable_sds_api: Option<bool>,
    profiling_enabled: Option<bool>,
    profiling_port: Option<PortValue>,
    profiling_freq: Option<i64>,
    profiling_names: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SdsBlock {
    default_svid_name: Option<String>,
    default_bundle_name: Option<String>,
    default_all_bundles_name: Option<String>,
    disable_spiffe_cert_validation: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentalBlock {
    sync_interval: Option<String>,
    named_pipe_name: Option<String>,
    admin_named_pipe_name: Option<String>,
    use_sync_authorized_entries: Option<bool>,
    require_pq_kem: Option<bool>,
    feature_flags: Option<Vec<String>>,
    jwt_svid_cache_hit_timeout: Option<String>,
    ratelimit: Option<Raw>,
    broker: Option<Raw>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DiskKeysData {
    directory: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PsatData {
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    token_path: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UnixData {
    discover_workload_path: Option<bool>,
    workload_size_limit: Option<i64>,
}

// === Typed configuration ===

/// `signet-agent run` flags; each overrides the matching key of the config file.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// The flags the server has too (`--config`, `--trust-domain`, `--log-level`, ...).
    pub common: CommonOverrides,
    /// `--join-token`.
    pub join_token: Option<String>,
    /// `--server-address`.
    pub server_address: Option<String>,
    /// `--trust-bundle` (PEM file).
    pub trust_bundle: Option<PathBuf>,
}

/// The shared flags read as fields of the agent's own (`args.config`, `args.trust_domain`).
impl std::ops::Deref for RunArgs {
    type Target = CommonOverrides;

    fn deref(&self) -> &CommonOverrides {
        &self.common
    }
}

/// `WorkloadAttestor "unix" { plugin_data { ... } }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixConfig {
    /// Adds `unix:path` and `unix:sha256` selectors.
    pub discover_workload_path: bool,
    /// Largest binary hashed for `unix:sha256` (0 = unlimited, negative = never).
    pub workload_size_limit: i64,
}

/// Limits on the public socket's connections (Signet's keys; SPIRE has none): every local
/// user may connect, so no one uid may hold the agent's file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// `workload_api_max_conns_per_uid`: connections one uid may hold (also capped at half
    /// of the agent's open file limit).
    pub max_conns_per_uid: usize,
    /// `workload_api_max_streams_per_conn`: concurrent calls on one connection (HTTP/2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_streams_per_conn: u32,
    /// `workload_api_idle_timeout`: how long a connection with no open call stays open.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_conns_per_uid: 256,
            max_streams_per_conn: 100,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// The agent's `sds {}` block (SPIRE's keys and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsConfig {
    /// Name of the caller's first identity.
    pub default_svid_name: String,
    /// Name of the own trust domain's bundle.
    pub default_bundle_name: String,
    /// Name of every bundle in one SPIFFE validator.
    pub default_all_bundles_name: String,
    /// Serve bundles as `trusted_ca` instead of the SPIFFE validator.
    pub disable_spiffe_cert_validation: bool,
}

impl Default for SdsConfig {
    fn default() -> Self {
        Self {
            default_svid_name: "default".into(),
            default_bundle_name: "ROOTCA".into(),
            default_all_bundles_name: "ALL".into(),
            disable_spiffe_cert_validation: false,
        }
    }
}

/// Where the agent gets the bundle it checks the server against before it has its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustBundleSource {
    /// A PEM file of the trust domain's root certificates (`trust_bundle_path`).
    Path(PathBuf),
    /// Trust the server on first contact, without verification (`insecure_bootstrap`).
    InsecureBootstrap,
}

/// The key type of workload X509-SVIDs (`workload_x509_svid_key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkloadKeyType {
    /// ECDSA P-256.
    #[default]
    EcP256,
    /// ECDSA P-384.
    EcP384,
}

/// Where the kubelet mounts the projected token in SPIRE's manifests (`k8s_psat`'s default
/// `token_path`).
pub const DEFAULT_PSAT_TOKEN_PATH: &str = "/var/run/secrets/tokens/spire-agent";

/// How the agent proves its node to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAttestorConfig {
    /// `join_token`: the token from `join_token`, `join_token_file` or `--join-token`.
    JoinToken,
    /// `k8s_psat`: the pod's projected service account token.
    K8sPsat(K8sPsatConfig),
}

/// `NodeAttestor "k8s_psat"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sPsatConfig {
    /// The cluster name the server knows this cluster by.
    pub cluster: String,
    /// The projected service account token file.
    pub token_path: PathBuf,
}

/// Where the agent keeps its own private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyManagerConfig {
    /// PKCS#8 files (mode 0600) in this directory; a restart reuses the SVID.
    Disk {
        /// The key directory.
        directory: PathBuf,
    },
    /// Memory only: a restart needs a new node attestation.
    Memory,
}

/// The agent's typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// Server host name or address.
    pub server_address: String,
    /// Server port.
    pub server_port: u16,
    /// More servers (`host:port`, from `server_addresses`), tried in order when
    /// `server_address` cannot be reached.
    pub other_servers: Vec<String>,
    /// Where `agent-data.json` (the agent SVID and the bundle) lives.
    pub data_dir: PathBuf,
    /// The public Workload API / SDS socket.
    pub socket_path: PathBuf,
    /// The bootstrap bundle.
    pub trust_bundle: TrustBundleSource,
    /// The join token for the first node attestation (`join_token` or `join_token_file`).
    pub join_token: Option<String>,
    /// The node attestor.
    pub node_attestor: NodeAttestorConfig,
    /// Key type of workload SVIDs.
    pub workload_key_type: WorkloadKeyType,
    /// Soft bound on cached X509-SVIDs (in-use entries are never evicted).
    pub x509_svid_cache_max_size: usize,
    /// Bound on cached JWT-SVIDs.
    pub jwt_svid_cache_max_size: usize,
    /// Safety-net re-sync period (the server also pushes changes).
    pub sync_interval: Duration,
    /// Envoy SDS names.
    pub sds: SdsConfig,
    /// Limits on the public socket's connections.
    pub conn_limits: ConnLimits,
    /// Where the agent's own key lives.
    pub key_manager: KeyManagerConfig,
    /// The `unix` workload attestor, if configured.
    pub unix_attestor: Option<UnixConfig>,
    /// The `k8s` workload attestor, if configured.
    pub k8s_attestor: Option<K8sConfig>,
    /// The admin socket (`admin_socket_path`; `signet-agent doctor` talks to it), if set.
    pub admin_socket_path: Option<PathBuf>,
    /// Logging, health and metrics listeners, telemetry, notes on keys without effect.
    pub process: ProcessConfig,
}

impl Config {
    /// Reads `args.config`, applies the command-line overrides and checks everything.
    pub fn load(args: &RunArgs) -> Result<Self, ConfigError> {
        signet_common::config::load_with(&args.config, args.expand_env, |file| build(file, args))
    }

    /// Parses config text (`path` only names the file in errors).
    pub fn parse(text: &str, path: &str, args: &RunArgs) -> Result<Self, ConfigError> {
        signet_common::config::parse_with(text, path, |file| build(file, args))
    }

    /// Every server, in order: `server_address:server_port`, then `server_addresses`.
    pub fn server_addrs(&self) -> Vec<String> {
        let mut all = vec![self.server_addr()];
        all.extend(self.other_servers.iter().cloned());
        all
    }

    /// `server_address:server_port`, as dialed.
    pub fn server_addr(&self) -> String {
        if self.server_address.contains(':') && !self.server_address.starts_with('[') {
            format!("[{}]:{}", self.server_address, self.server_port)
        } else {
            format!("{}:{}", self.server_address, self.server_port)
        }
    }
}

/// A `server_addresses` item must be `host:port` (`[v6]:port` for an IPv6 address).
fn host_port(i: usize, s: &str) -> Result<(), KeyError> {
    let bad = |why: &str| {
        KeyError::new(
            format!("agent.server_addresses[{i}]"),
            format!("expected \"host:port\", got {s:?}, which {why}"),
        )
    };
    let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    if host.is_empty() || (host.contains(':') && !(host.starts_with('[') && host.ends_with(']'))) {
        return Err(bad("has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(bad("has no valid port")),
    }
}

fn build(file: FileConfig, args: &RunArgs) -> Result<Config, KeyError> {
    let mut a = file.agent;
    let mut notes = Vec::new();
    agent_keys(&a, &mut notes)?;
    let conn_limits = conn_limits(&a)?;
    let process = ProcessConfig::build(
        ProcessKeys {
            section: "agent",
            metrics_prefix: "signet_agent",
            log_level: a.log_level.take(),
            log_format: a.log_format.take(),
            log_file: a.log_file.take(),
            health_checks: file.health_checks,
            telemetry: file.telemetry,
        },
        args,
        notes,
    )?;
    let trust_domain = args.resolve_trust_domain("agent", a.trust_domain)?;
    let server_address = args
        .server_address
        .clone()
        .or(a.server_address)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| KeyError::required("agent.server_address"))?;
    let server_port = match args.server_port {
        Some(p) => p,
        None => a
            .server_port
            .map(|p| port("agent.server_port", p))
            .transpose()?
            .ok_or_else(|| KeyError::required("agent.server_port"))?,
    };
    let other_servers = a
        .server_addresses
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, s)| host_port(i, &s).map(|()| s))
        .collect::<Result<Vec<_>, _>>()?;
    let data_dir = args
        .data_dir
        .clone()
        .or(a.data_dir)
        .unwrap_or_else(|| ".".into());
    // A `--trust-bundle` flag replaces whichever source the file names.
    let trust_bundle = match &args.trust_bundle {
        Some(path) => TrustBundleSource::Path(path.clone()),
        None => trust_bundle(
            a.trust_bundle_path,
            a.trust_bundle_format.as_deref(),
            a.insecure_bootstrap.unwrap_or(false),
        )?,
    };
    let join_token = join_token(args.join_token.clone().or(a.join_token), a.join_token_file)?;
    let workload_key_type = match a.workload_x509_svid_key_type.as_deref() {
        None | Some("ec-p256") => WorkloadKeyType::EcP256,
        Some("ec-p384") => WorkloadKeyType::EcP384,
        Some(other) => {
            return Err(KeyError::new(
                "agent.workload_x509_svid_key_type",
                format!("expected \"ec-p256\" or \"ec-p384\", got {other:?}"),
            ));
        }
    };
    let sync_interval = duration(
        "agent.experimental.sync_interval",
        a.experimental
            .as_ref()
            .and_then(|e| e.sync_interval.as_deref()),
        DEFAULT_SYNC_INTERVAL,
    )?;
    let plugins: Plugins = read_plugins(file.plugins, &data_dir)?;
    if plugins.unix.is_none() && plugins.k8s.is_none() {
        return Err(KeyError::new(
            "plugins",
            "a WorkloadAttestor is required (WorkloadAttestor \"unix\" or \"k8s\")",
        ));
    }
    let node_attestor = required_plugin(
        plugins.node_attestor,
        "NodeAttestor",
        "NodeAttestor \"join_token\" or \"k8s_psat\"",
    )?;
    let key_manager = required_plugin(
        plugins.key_manager,
        "KeyManager",
        "KeyManager \"disk\" or \"memory\"",
    )?;
    let socket_path = args
        .socket_path
        .clone()
        .or(a.socket_path)
        .unwrap_or_else(|| DEFAULT_SOCKET_PATH.into());
    if let Some(admin) = &a.admin_socket_path {
        admin_apart(admin, &socket_path)?;
    }
    Ok(Config {
        trust_domain,
        server_address,
        server_port,
        other_servers,
        socket_path,
        data_dir,
        trust_bundle,
        join_token,
        node_attestor,
        workload_key_type,
        x509_svid_cache_max_size: cache_size(
            "agent.x509_svid_cache_max_size",
            a.x509_svid_cache_max_size,
        )?,
        jwt_svid_cache_max_size: cache_size(
            "agent.jwt_svid_cache_max_size",
            a.jwt_svid_cache_max_size,
        )?,
        sync_interval,
        sds: a.sds.map(sds).unwrap_or_default(),
        conn_limits,
        key_manager,
        unix_attestor: plugins.unix,
        k8s_attestor: plugins.k8s,
        admin_socket_path: a.admin_socket_path,
        process,
    })
}

/// SPIRE's rule: the admin socket may not sit in (or under) the public socket's directory,
/// which every workload can reach.
fn admin_apart(admin: &Path, public: &Path) -> Result<(), KeyError> {
    let key = "agent.admin_socket_path";
    if admin.as_os_str().is_empty() {
        return Err(KeyError::new(
            key,
            "expected a socket path, got an empty one",
        ));
    }
    let public_dir = public.parent().unwrap_or(Path::new(""));
    let admin_dir = admin.parent().unwrap_or(Path::new(""));
    if !public_dir.as_os_str().is_empty() && admin_dir.starts_with(public_dir) {
        return Err(KeyError::new(
            key,
            format!(
                "{} is in the directory of the Workload API socket {}; put it in a directory of its own",
                admin.display(),
                public.display()
            ),
        ));
    }
    Ok(())
}

/// SPIRE's agent keys that Signet accepts without effect or refuses (README: Configuration).
fn agent_keys(a: &AgentBlock, notes: &mut Vec<String>) -> Result<(), KeyError> {
    let mut k = KeyCheck::new("agent", notes);
    k.refuse(
        "rebootstrap_mode",
        a.rebootstrap_mode.as_deref().is_some_and(|m| m != "never"),
        "the agent never re-bootstraps on its own; remove it or set it to \"never\"",
    )?;
    let bootstrap = "use trust_bundle_path or insecure_bootstrap";
    k.refuse("trust_bundle_url", a.trust_bundle_url.is_some(), bootstrap)?;
    k.refuse(
        "trust_bundle_unix_socket",
        a.trust_bundle_unix_socket.is_some(),
        bootstrap,
    )?;
    k.refuse(
        "trust_bundle_spiffe_workload_api",
        a.trust_bundle_spiffe_workload_api.is_some(),
        bootstrap,
    )?;
    k.refuse(
        "allow_unauthenticated_verifiers",
        is_true(a.allow_unauthenticated_verifiers),
        "bundles go only to attested workloads; remove it or set it to false",
    )?;
    k.refuse(
        "allowed_foreign_jwt_claims",
        non_empty(&a.allowed_foreign_jwt_claims),
        "remove it",
    )?;
    k.refuse(
        "availability_target",
        a.availability_target.is_some(),
        "SVIDs rotate at half-life; remove it",
    )?;
    k.refuse(
        "authorized_delegates",
        non_empty(&a.authorized_delegates),
        "there is no Delegated Identity API; remove it",
    )?;
    k.refuse(
        "disable_workload_api",
        is_true(a.disable_workload_api),
        "the Workload API is always served; remove it or set it to false",
    )?;
    k.refuse(
        "disable_sds_api",
        is_true(a.disable_sds_api),
        "SDS is always served; remove it or set it to false",
    )?;
    k.no_effect(
        "retry_bootstrap",
        &a.retry_bootstrap,
        "bootstrap is retried until it succeeds",
    );
    k.no_effect(
        "rebootstrap_delay",
        &a.rebootstrap_delay,
        "the agent never re-bootstraps on its own",
    );
    k.no_effect(
        "log_selectors",
        &a.log_selectors,
        "attested selectors are logged at DEBUG",
    );
    k.go_only(GoOnlyKeys {
        log_source_location: &a.log_source_location,
        profiling_enabled: &a.profiling_enabled,
        profiling_port: &a.profiling_port,
        profiling_freq: &a.profiling_freq,
        profiling_names: &a.profiling_names,
    });
    let Some(e) = &a.experimental else {
        return Ok(());
    };
    let mut k = KeyCheck::new("agent.experimental", notes);
    let pipe = "named pipes exist only on Windows";
    k.no_effect("named_pipe_name", &e.named_pipe_name, pipe);
    k.no_effect("admin_named_pipe_name", &e.admin_named_pipe_name, pipe);
    k.no_effect(
        "use_sync_authorized_entries",
        &e.use_sync_authorized_entries,
        "the agent always syncs with SyncAuthorizedEntries and the server's push",
    );
    k.no_effect(
        "feature_flags",
        &e.feature_flags,
        "SPIRE's feature flags do not apply",
    );
    k.no_effect(
        "jwt_svid_cache_hit_timeout",
        &e.jwt_svid_cache_hit_timeout,
        "JWT-SVID renewals use the agent's own timeout",
    );
    k.no_effect(
        "ratelimit",
        &e.ratelimit,
        "Workload API calls are not rate-limited",
    );
    k.refuse(
        "require_pq_kem",
        is_true(e.require_pq_kem),
        "remove it or set it to false",
    )?;
    k.refuse(
        "broker",
        e.broker.is_some(),
        "there is no SPIFFE Broker API; remove it",
    )
}

fn trust_bundle(
    path: Option<PathBuf>,
    format: Option<&str>,
    insecure: bool,
) -> Result<TrustBundleSource, KeyError> {
    if let Some(f) = format
        && f != "pem"
    {
        return Err(KeyError::new(
            "agent.trust_bundle_format",
            format!("expected \"pem\", got {f:?}"),
        ));
    }
    match (path, insecure) {
        (Some(_), true) => Err(KeyError::sentence(
            "agent.trust_bundle_path",
            "and agent.insecure_bootstrap are mutually exclusive",
        )),
        (Some(p), false) => Ok(TrustBundleSource::Path(p)),
        (None, true) => Ok(TrustBundleSource::InsecureBootstrap),
        (None, false) => Err(KeyError::new(
            "agent.trust_bundle_path",
            "a trust bundle source is required: agent.trust_bundle_path or agent.insecure_bootstrap",
        )),
    }
}

fn join_token(token: Option<String>, file: Option<PathBuf>) -> Result<Option<String>, KeyError> {
    match (token.filter(|t| !t.is_empty()), file) {
        (Some(_), Some(_)) => Err(KeyError::sentence(
            "agent.join_token",
            "and agent.join_token_file are mutually exclusive",
        )),
        (Some(t), None) => Ok(Some(t)),
        (None, Some(f)) => std::fs::read_to_string(&f)
            .map(|t| Some(t.trim().to_owned()))
            .map_err(|e| {
                KeyError::new(
                    "agent.join_token_file",
                    format!("cannot read {}: {e}", f.display()),
                )
            }),
        (None, None) => Ok(None),
    }
}

fn cache_size(name: &str, value: Option<i64>) -> Result<usize, KeyError> {
    let bad = |v: i64| {
        KeyError::new(
            name,
            format!("expected a number greater than zero, got {v}"),
        )
    };
    match value {
        None => Ok(DEFAULT_CACHE_SIZE),
        Some(v) if v > 0 => usize::try_from(v).map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

fn conn_limits(a: &AgentBlock) -> Result<ConnLimits, KeyError> {
    let d = ConnLimits::default();
    let count = |name: &str, value: Option<i64>, default: usize| match value {
        None => Ok(default),
        Some(v) if v > 0 => usize::try_from(v)
            .map_err(|_| KeyError::new(name, format!("expected a smaller number, got {v}"))),
        Some(v) => Err(KeyError::new(
            name,
            format!("expected a number greater than zero, got {v}"),
        )),
    };
    let streams_key = "agent.workload_api_max_streams_per_conn";
    let streams = count(
        streams_key,
        a.workload_api_max_streams_per_conn,
        d.max_streams_per_conn as usize,
    )?;
    Ok(ConnLimits {
        max_conns_per_uid: count(
            "agent.workload_api_max_conns_per_uid",
            a.workload_api_max_conns_per_uid,
            d.max_conns_per_uid,
        )?,
        max_streams_per_conn: u32::try_from(streams).map_err(|_| {
            KeyError::new(
                streams_key,
                format!("expected at most {}, got {streams}", u32::MAX),
            )
        })?,
        idle_timeout: duration(
            "agent.workload_api_idle_timeout",
            a.workload_api_idle_timeout.as_deref(),
            d.idle_timeout,
        )?,
    })
}

fn sds(s: SdsBlock) -> SdsConfig {
    let d = SdsConfig::default();
    SdsConfig {
        default_svid_name: s.default_svid_name.unwrap_or(d.default_svid_name),
        default_bundle_name: s.default_bundle_name.unwrap_or(d.default_bundle_name),
        default_all_bundles_name: s
            .default_all_bundles_name
            .unwrap_or(d.default_all_bundles_name),
        disable_spiffe_cert_validation: s.disable_spiffe_cert_validation.unwrap_or(false),
    }
}

/// The agent's plugins as the configuration enables them.
#[derive(Default)]
struct Plugins {
    key_manager: Option<KeyManagerConfig>,
    node_attestor: Option<NodeAttestorConfig>,
    unix: Option<UnixConfig>,
    k8s: Option<K8sConfig>,
}

impl PluginTable for Plugins {
    const KNOWN: &'static [&'static str] = &["KeyManager", "NodeAttestor", "WorkloadAttestor"];
    const SINGULAR: &'static [&'static str] = &["KeyManager", "NodeAttestor"];
    const UNSUPPORTED: &'static [&'static str] = &["SVIDStore"];

    fn take(&mut self, plugin: &mut EnabledPlugin, data_dir: &Path) -> Result<bool, KeyError> {
        let (what, data) = (plugin.what.as_str(), plugin.data.take());
        match (plugin.kind.as_str(), plugin.name.as_str()) {
            ("KeyManager", "disk") => {
                let d: DiskKeysData = plugin_data(what, data)?;
                self.key_manager = Some(KeyManagerConfig::Disk {
                    directory: d.directory.unwrap_or_else(|| data_dir.to_path_buf()),
                });
            }
            ("KeyManager", "memory") => {
                plugin_data::<EmptyData>(what, data)?;
                self.key_manager = Some(KeyManagerConfig::Memory);
            }
            ("NodeAttestor", "join_token") => {
                plugin_data::<EmptyData>(what, data)?;
                self.node_attestor = Some(NodeAttestorConfig::JoinToken);
            }
            ("NodeAttestor", "k8s_psat") => {
                let d: PsatData = plugin_data(what, data)?;
                if d.cluster.is_empty() {
                    return Err(KeyError::new(
                        format!("{what}.plugin_data.cluster"),
                        "missing required cluster block",
                    ));
                }
                let token_path = if d.token_path.is_empty() {
                    DEFAULT_PSAT_TOKEN_PATH.into()
                } else {
                    d.token_path.into()
                };
                self.node_attestor = Some(NodeAttestorConfig::K8sPsat(K8sPsatConfig {
                    cluster: d.cluster,
                    token_path,
                }));
            }
            ("WorkloadAttestor", "unix") => {
                let d: UnixData = plugin_data(what, data)?;
                self.unix = Some(UnixConfig {
                    discover_workload_path: d.discover_workload_path.unwrap_or(false),
                    workload_size_limit: d.workload_size_limit.unwrap_or(0),
                });
            }
            ("WorkloadAttestor", "k8s") => {
                let d: k8s::K8sData = plugin_data(what, data)?;
                self.k8s = Some(d.build(what, |name| std::env::var(name).ok())?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
