//! `server.conf`: HCL in SPIRE's shape, parsed into typed configuration. Unknown keys are
//! refused with an error naming the key and the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_common::config::{
    CommonOverrides, EmptyData, EnabledPlugin, GoOnlyKeys, HealthBlock, KeyCheck, KeyError,
    PluginBlock, PluginTable, PortValue, ProcessConfig, ProcessKeys, TelemetryBlock, duration,
    is_true, non_empty, plugin_data, port, read_plugins, required_plugin, required_plugin_data,
};
pub use signet_common::config::{ConfigError, HealthConfig, expand_env};
use signet_common::id::{SpiffeId, TrustDomain, parse_id};
use signet_common::rotation::max_svid_ttl_for_ca_ttl;

use crate::attestation::k8s_psat::PsatCluster;
use crate::ca::{CaConfig, CaSubject, UpstreamDisk};
use crate::keys::KeyType;
use crate::publish::{ConfigMapTarget, PUBLISH_EVERY};

mod federation;
mod istio;
mod k8s;
mod oidc;
pub use federation::{
    BundleEndpointConfig, DEFAULT_REFRESH_HINT, FederationBlock, FederationConfig, MIN_REFRESH,
    ServingProfile,
};
pub use istio::IstioCaConfig;
pub use oidc::OidcDiscoveryConfig;

/// SPIRE's default admin socket.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-server/private/api.sock";

/// Key under which the server's CA journal is stored (`CaConfig::journal_key`).
pub const JOURNAL_KEY: &str = "server";
/// The largest sled page cache `cache_capacity_mb` may ask for (1 TiB).
const MAX_SLED_CACHE_MB: u64 = 1 << 20;

// === File shape (serde) ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: ServerBlock,
    #[serde(default)]
    plugins: BTreeMap<String, BTreeMap<String, PluginBlock>>,
    health_checks: Option<HealthBlock>,
    telemetry: Option<TelemetryBlock>,
    istio_ca: Option<istio::IstioCaBlock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerBlock {
    bind_address: Option<String>,
    bind_port: Option<PortValue>,
    socket_path: Option<PathBuf>,
    trust_domain: Option<String>,
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<String>,
    log_file: Option<PathBuf>,
    ca_key_type: Option<String>,
    jwt_key_type: Option<String>,
    ca_ttl: Option<String>,
    ca_subject: Option<CaSubjectBlock>,
    default_x509_svid_ttl: Option<String>,
    default_jwt_svid_ttl: Option<String>,
    agent_ttl: Option<String>,
    jwt_issuer: Option<String>,
    oidc_discovery: Option<oidc::OidcDiscoveryBlock>,
    admin_ids: Option<Vec<String>>,
    federation: Option<FederationBlock>,
    experimental: Option<ExperimentalBlock>,
    audit_log_enabled: Option<bool>,
    log_source_location: Option<bool>,
    prune_attested_nodes_expired_for: Option<String>,
    prune_tofu_nodes: Option<bool>,
    prune_attested_nodes_batch_size: Option<i64>,
    ratelimit: Option<RateLimitBlock>,
    max_attested_node_info_staleness: Option<String>,
    disable_jwt_svids: Option<bool>,
    proxy_protocol_trusted_cidrs: Option<Vec<String>>,
    profiling_enabled: Option<bool>,
    profiling_port: Option<PortValue>,
    profiling_freq: Option<i64>,
    profiling_names: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentalBlock {
    cache_reload_interval: Option<String>,
    full_cache_reload_interval: Option<String>,
    events_based_cache: Option<bool>,
    prune_events_older_than: Option<String>,
    event_timeout: Option<String>,
    sql_transaction_timeout: Option<String>,
    named_pipe_name: Option<String>,
    feature_flags: Option<Vec<String>>,
    require_pq_kem: Option<bool>,
    auth_opa_policy_engine: Option<signet_common::config::Raw>,
    agent_spiffe_id_as_selector: Option<bool>,
    wit_key_type: Option<String>,
    wit_issuer: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitBlock {
    attestation: Option<bool>,
    signing: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaSubjectBlock {
    #[serde(default)]
    country: Vec<String>,
    #[serde(default)]
    organization: Vec<String>,
    #[serde(default)]
    common_name: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SledData {
    directory: Option<PathBuf>,
    cache_capacity_mb: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SqlData {
    database_type: Option<String>,
    connection_string: Option<String>,
    ro_connection_string: Option<String>,
    max_open_conns: Option<i64>,
    max_idle_conns: Option<i64>,
    conn_max_lifetime: Option<String>,
    disable_migration: Option<bool>,
    root_ca_path: Option<String>,
    client_cert_path: Option<String>,
    client_key_path: Option<String>,
    log_sql: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DiskKeysData {
    keys_path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamDiskData {
    cert_file_path: PathBuf,
    key_file_path: PathBuf,
    bundle_file_path: Option<PathBuf>,
}

// === Typed configuration ===

/// `signet-server run` flags; each overrides the matching key of the config file.
#[derive(Debug, Clone, Default)]
pub struct RunArgs {
    /// The flags the agent has too (`--config`, `--trust-domain`, `--log-level`, ...).
    pub common: CommonOverrides,
    /// `--bind-address`.
    pub bind_address: Option<String>,
}

/// The shared flags read as fields of the server's own (`args.config`, `args.trust_domain`).
impl std::ops::Deref for RunArgs {
    type Target = CommonOverrides;

    fn deref(&self) -> &CommonOverrides {
        &self.common
    }
}

/// Where registration data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataStoreConfig {
    /// Embedded sled database in this directory.
    Sled {
        /// The database directory.
        directory: PathBuf,
        /// The bound of sled's page cache, bytes (`cache_capacity_mb`; default 64 MiB).
        cache_capacity: u64,
    },
    /// SPIRE's SQL store (`DataStore "sql"`): served from with `database_type = "postgres"`
    /// (several servers may share the database); `sqlite3` and `mysql` are only read by
    /// `import spire`.
    Sql {
        /// `sqlite3`, `postgres` or `mysql`.
        database_type: String,
        /// The sqlite file or the database's connection string.
        connection_string: String,
        /// `ro_connection_string`, `max_open_conns`, `conn_max_lifetime`,
        /// `disable_migration` (the connection string is repeated in it).
        options: crate::datastore::postgres::PgOptions,
    },
}

/// Where CA private keys live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyManagerConfig {
    /// A 0600 PKCS#8 key file; survives restarts.
    Disk {
        /// The key file.
        keys_path: PathBuf,
    },
    /// Memory only: a new CA on every start.
    Memory,
}

/// The server's typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// TCP address of the agent API.
    pub bind_address: String,
    /// TCP port of the agent API.
    pub bind_port: u16,
    /// Admin Unix socket.
    pub socket_path: PathBuf,
    /// The trust domain.
    pub trust_domain: TrustDomain,
    /// Data directory.
    pub data_dir: PathBuf,
    /// CA settings.
    pub ca: CaConfig,
    /// Registration store.
    pub datastore: DataStoreConfig,
    /// Key manager.
    pub key_manager: KeyManagerConfig,
    /// Whether the `join_token` node attestor is configured.
    pub join_token: bool,
    /// The `k8s_psat` node attestor's clusters, if it is configured.
    pub k8s_psat: Option<BTreeMap<String, PsatCluster>>,
    /// ConfigMaps that hold the bundle (`BundlePublisher "k8s_configmap"`,
    /// `Notifier "k8sbundle"`).
    pub bundle_publishers: Vec<ConfigMapTarget>,
    /// How often the bundle is published without a change (30 s; not in the file).
    pub bundle_publish_interval: std::time::Duration,
    /// SPIFFE IDs that get admin rights over TCP.
    pub admin_ids: Vec<SpiffeId>,
    /// The Istio CA service (`istio_ca`), if configured.
    pub istio_ca: Option<IstioCaConfig>,
    /// The OIDC discovery listener (`server.oidc_discovery {}`), if configured.
    pub oidc_discovery: Option<OidcDiscoveryConfig>,
    /// `server.federation {}`, if written (ACME is refused by [`Config::check_runnable`]).
    pub federation: Option<FederationConfig>,
    /// Logging, health and metrics listeners, telemetry, notes on keys without effect.
    pub process: ProcessConfig,
    /// The shortest wait between refreshes of a federated bundle, whatever the remote's hint
    /// (SPIRE: 1 min; not in the file, tests shorten it).
    pub federation_refresh_floor: Duration,
}

impl Config {
    /// Reads `args.config`, applies the command-line overrides and checks everything,
    /// including that this server can run with it ([`Config::check_runnable`]).
    pub fn load(args: &RunArgs) -> Result<Self, ConfigError> {
        let config = Self::read(args)?;
        config.check_runnable(&args.config.display().to_string())?;
        Ok(config)
    }

    /// Reads and checks `args.config` like [`Config::load`], but accepts what only `import
    /// spire` can use (SPIRE's SQL store).
    pub fn read(args: &RunArgs) -> Result<Self, ConfigError> {
        signet_common::config::load_with(&args.config, args.expand_env, |file| build(file, args))
    }

    /// Refuses what parses but cannot run in Signet, with one line saying what to do.
    pub fn check_runnable(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |error: KeyError| ConfigError::Invalid {
            path: path.into(),
            error,
        };
        if let DataStoreConfig::Sql { database_type, .. } = &self.datastore
            && database_type != "postgres"
        {
            return Err(invalid(KeyError::sentence(
                "plugins.DataStore \"sql\".plugin_data.database_type",
                format!(
                    "{database_type:?} is not supported by signet-server \
                     (it serves from \"postgres\", or from DataStore \"sled\"): import its data with \
                     `signet-server import spire --config {path}`"
                ),
            )));
        }
        if let Some(FederationConfig {
            bundle_endpoint:
                Some(BundleEndpointConfig {
                    profile: ServingProfile::Acme,
                    ..
                }),
            ..
        }) = &self.federation
        {
            return Err(invalid(KeyError::new(
                "server.federation.bundle_endpoint",
                "ACME is not supported by Signet: use profile \"https_web\" { serving_cert_file { cert_file_path key_file_path } } or profile \"https_spiffe\" {}",
            )));
        }
        Ok(())
    }

    /// Parses config text (`path` only names the file in errors).
    pub fn parse(text: &str, path: &str, args: &RunArgs) -> Result<Self, ConfigError> {
        signet_common::config::parse_with(text, path, |file| build(file, args))
    }
}

fn build(file: FileConfig, args: &RunArgs) -> Result<Config, KeyError> {
    let mut s = file.server;
    let mut notes = Vec::new();
    server_keys(&s, &mut notes)?;
    let mut process = ProcessConfig::build(
        ProcessKeys {
            section: "server",
            metrics_prefix: "signet_server",
            log_level: s.log_level.take(),
            log_format: s.log_format.take(),
            log_file: s.log_file.take(),
            health_checks: file.health_checks,
            telemetry: file.telemetry,
        },
        args,
        notes,
    )?;
    let jwt_issuer = s.jwt_issuer.clone().filter(|i| !i.is_empty());
    let oidc_discovery = s
        .oidc_discovery
        .clone()
        .map(|o| o.into_config(jwt_issuer.as_deref()))
        .transpose()?;
    let trust_domain = args.resolve_trust_domain("server", s.trust_domain)?;
    let data_dir = args
        .data_dir
        .clone()
        .or(s.data_dir)
        .ok_or_else(|| KeyError::required("server.data_dir"))?;
    let bind_port = match args.server_port {
        Some(p) => p,
        None => s
            .bind_port
            .map(|p| port("server.bind_port", p))
            .transpose()?
            .unwrap_or(8081),
    };
    let key_type: KeyType = s
        .ca_key_type
        .as_deref()
        .unwrap_or("ec-p256")
        .parse()
        .map_err(|e: String| KeyError::new("server.ca_key_type", e))?;
    if let Some(jwt) = s.jwt_key_type.as_deref() {
        let jwt: KeyType = jwt
            .parse()
            .map_err(|e: String| KeyError::new("server.jwt_key_type", e))?;
        if jwt != key_type {
            return Err(KeyError::sentence(
                "server.jwt_key_type",
                "must equal ca_key_type in this version",
            ));
        }
    }
    let ca_ttl = duration(
        "server.ca_ttl",
        s.ca_ttl.as_deref(),
        Duration::from_secs(24 * 3600),
    )?;
    let x509_ttl = duration(
        "server.default_x509_svid_ttl",
        s.default_x509_svid_ttl.as_deref(),
        Duration::from_secs(3600),
    )?;
    let jwt_ttl = duration(
        "server.default_jwt_svid_ttl",
        s.default_jwt_svid_ttl.as_deref(),
        Duration::from_secs(300),
    )?;
    let agent_ttl = duration("server.agent_ttl", s.agent_ttl.as_deref(), x509_ttl)?;
    check_svid_ttls(
        ca_ttl,
        [
            ("default_x509_svid_ttl", x509_ttl, true),
            ("agent_ttl", agent_ttl, true),
            (
                "default_jwt_svid_ttl",
                jwt_ttl,
                s.default_jwt_svid_ttl.is_some(),
            ),
        ],
        &mut process.no_effect,
    )?;
    let ca_subject = s.ca_subject.map_or_else(CaSubject::default, |c| CaSubject {
        country: c.country,
        organization: c.organization,
        common_name: c.common_name,
    });
    let admin_ids = s
        .admin_ids
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, id)| {
            parse_id(id).map_err(|e| KeyError::new(format!("server.admin_ids[{i}]"), e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let plugins: Plugins = read_plugins(file.plugins, &data_dir)?;
    let datastore = required_plugin(plugins.datastore, "DataStore", "DataStore \"sled\"")?;
    let key_manager = required_plugin(
        plugins.key_manager,
        "KeyManager",
        "KeyManager \"disk\" or \"memory\"",
    )?;
    let istio_ca = file.istio_ca.map(istio::IstioCaBlock::build).transpose()?;
    let federation = s.federation.map(|f| f.build(&trust_domain)).transpose()?;
    Ok(Config {
        bind_address: args
            .bind_address
            .clone()
            .or(s.bind_address)
            .unwrap_or_else(|| "0.0.0.0".into()),
        bind_port,
        socket_path: args
            .socket_path
            .clone()
            .or(s.socket_path)
            .unwrap_or_else(|| DEFAULT_SOCKET_PATH.into()),
        ca: CaConfig {
            trust_domain: trust_domain.clone(),
            key_type,
            ca_ttl,
            ca_subject,
            default_x509_svid_ttl: x509_ttl,
            default_jwt_svid_ttl: jwt_ttl,
            agent_ttl,
            jwt_issuer: jwt_issuer.clone(),
            upstream: plugins.upstream,
            journal_key: JOURNAL_KEY.into(),
        },
        trust_domain,
        data_dir,
        datastore,
        key_manager,
        join_token: plugins.join_token,
        k8s_psat: plugins.k8s_psat,
        bundle_publishers: plugins.bundle_publishers,
        bundle_publish_interval: PUBLISH_EVERY,
        admin_ids,
        istio_ca,
        oidc_discovery,
        federation,
        process,
        federation_refresh_floor: MIN_REFRESH,
    })
}

/// SPIRE's rule for SVID TTLs (`MaxSVIDTTLForCATTL`): a CA is replaced at a sixth of its
/// life before it expires, so an SVID can only be given its whole TTL when
/// `ttl <= min(ca_ttl / 6, 7d)`. A TTL the file sets (or the X509-SVID default every agent
/// and workload SVID gets) that `ca_ttl` cannot hold is refused, naming both values; an unset
/// JWT-SVID TTL that does not fit (its 5 m default under a very short test `ca_ttl`) is only
/// noted, as SPIRE does, and its JWT-SVIDs are capped at the key's expiry.
fn check_svid_ttls(
    ca_ttl: Duration,
    ttls: [(&str, Duration, bool); 3],
    notes: &mut Vec<String>,
) -> Result<(), KeyError> {
    let max = max_svid_ttl_for_ca_ttl(ca_ttl);
    // Whole milliseconds: `1s / 6` reads 166ms, not 166ms 666us 666ns.
    let show = |d: Duration| {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        humantime::format_duration(Duration::from_millis(ms)).to_string()
    };
    for (name, ttl, enforced) in ttls {
        if ttl <= max {
            continue;
        }
        let advice = if ttl <= signet_common::rotation::SEVEN_DAYS {
            format!(
                "set ca_ttl to {} or more, or {name} to {} or less",
                show(ttl.saturating_mul(6)),
                show(max)
            )
        } else {
            format!("set {name} to {} or less", show(max))
        };
        let why = format!(
            "{} cannot hold server.{name} {}: an SVID TTL must be at most \
             min(ca_ttl/6, 7d), here {}; {advice}",
            show(ca_ttl),
            show(ttl),
            show(max),
        );
        if enforced {
            return Err(KeyError::new("server.ca_ttl", why));
        }
        notes.push(format!(
            "server.ca_ttl {why}; its SVIDs will be capped at the CA's expiry"
        ));
    }
    Ok(())
}

/// SPIRE's server keys that Signet accepts without effect or refuses (README: Configuration).
fn server_keys(s: &ServerBlock, notes: &mut Vec<String>) -> Result<(), KeyError> {
    let mut k = KeyCheck::new("server", notes);
    k.refuse(
        "audit_log_enabled",
        is_true(s.audit_log_enabled),
        "there is no audit log; remove it or set it to false",
    )?;
    let prune = "attested nodes are not pruned; remove it";
    k.refuse(
        "prune_attested_nodes_expired_for",
        s.prune_attested_nodes_expired_for.is_some(),
        prune,
    )?;
    k.refuse("prune_tofu_nodes", is_true(s.prune_tofu_nodes), prune)?;
    k.refuse(
        "prune_attested_nodes_batch_size",
        s.prune_attested_nodes_batch_size.is_some(),
        prune,
    )?;
    k.refuse(
        "disable_jwt_svids",
        is_true(s.disable_jwt_svids),
        "JWT-SVIDs are always served; remove it or set it to false",
    )?;
    k.refuse(
        "proxy_protocol_trusted_cidrs",
        non_empty(&s.proxy_protocol_trusted_cidrs),
        "the PROXY protocol is not read; remove it",
    )?;
    k.no_effect(
        "ratelimit",
        &s.ratelimit,
        "signing and attestation are not rate-limited per client",
    );
    k.no_effect(
        "max_attested_node_info_staleness",
        &s.max_attested_node_info_staleness,
        "agents are checked against the in-memory index, which is always current",
    );
    k.go_only(GoOnlyKeys {
        log_source_location: &s.log_source_location,
        profiling_enabled: &s.profiling_enabled,
        profiling_port: &s.profiling_port,
        profiling_freq: &s.profiling_freq,
        profiling_names: &s.profiling_names,
    });
    if let Some(r) = &s.ratelimit {
        let _ = (r.attestation, r.signing);
    }
    let Some(e) = &s.experimental else {
        return Ok(());
    };
    let mut k = KeyCheck::new("server.experimental", notes);
    let cache = "changes are pushed from the store as they happen, with no cache to reload";
    k.no_effect("cache_reload_interval", &e.cache_reload_interval, cache);
    k.no_effect(
        "full_cache_reload_interval",
        &e.full_cache_reload_interval,
        cache,
    );
    k.no_effect("events_based_cache", &e.events_based_cache, cache);
    k.no_effect("prune_events_older_than", &e.prune_events_older_than, cache);
    k.no_effect("event_timeout", &e.event_timeout, cache);
    k.no_effect(
        "sql_transaction_timeout",
        &e.sql_transaction_timeout,
        "there is no SQL store",
    );
    k.no_effect(
        "named_pipe_name",
        &e.named_pipe_name,
        "named pipes exist only on Windows",
    );
    k.no_effect(
        "feature_flags",
        &e.feature_flags,
        "SPIRE's feature flags do not apply",
    );
    k.no_effect("wit_key_type", &e.wit_key_type, "WIT-SVIDs are not issued");
    k.no_effect("wit_issuer", &e.wit_issuer, "WIT-SVIDs are not issued");
    k.refuse(
        "require_pq_kem",
        is_true(e.require_pq_kem),
        "remove it or set it to false",
    )?;
    k.refuse(
        "auth_opa_policy_engine",
        e.auth_opa_policy_engine.is_some(),
        "the authorization policy is built in; remove it",
    )?;
    k.refuse(
        "agent_spiffe_id_as_selector",
        is_true(e.agent_spiffe_id_as_selector),
        "remove it or set it to false",
    )
}

/// The server's plugins as the configuration enables them.
#[derive(Default)]
struct Plugins {
    datastore: Option<DataStoreConfig>,
    key_manager: Option<KeyManagerConfig>,
    join_token: bool,
    k8s_psat: Option<BTreeMap<String, PsatCluster>>,
    bundle_publishers: Vec<ConfigMapTarget>,
    upstream: Option<UpstreamDisk>,
}

impl PluginTable for Plugins {
    const KNOWN: &'static [&'static str] = &[
        "DataStore",
        "KeyManager",
        "NodeAttestor",
        "UpstreamAuthority",
    ];
    const SINGULAR: &'static [&'static str] = &["DataStore", "KeyManager", "UpstreamAuthority"];
    const UNSUPPORTED: &'static [&'static str] =
        &["Notifier", "BundlePublisher", "CredentialComposer"];

    fn take(&mut self, plugin: &mut EnabledPlugin, data_dir: &Path) -> Result<bool, KeyError> {
        let (what, data) = (plugin.what.as_str(), plugin.data.take());
        match (plugin.kind.as_str(), plugin.name.as_str()) {
            ("DataStore", "sql") => {
                let d: SqlData = plugin_data(what, data)?;
                let _ = (
                    d.max_idle_conns,
                    d.root_ca_path,
                    d.client_cert_path,
                    d.client_key_path,
                    d.log_sql,
                );
                let max_open_conns = match d.max_open_conns {
                    None => 100,
                    Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
                    Some(n) => {
                        return Err(KeyError::new(
                            format!("{what}.plugin_data.max_open_conns"),
                            format!("expected a positive number, got {n}"),
                        ));
                    }
                };
                let conn_max_lifetime = d
                    .conn_max_lifetime
                    .as_deref()
                    .map(|t| {
                        signet_common::config::duration(
                            &format!("{what}.plugin_data.conn_max_lifetime"),
                            Some(t),
                            Duration::ZERO,
                        )
                    })
                    .transpose()?;
                let database_type = d.database_type.ok_or_else(|| {
                    KeyError::required(format!("{what}.plugin_data.database_type"))
                })?;
                let connection_string = d.connection_string.ok_or_else(|| {
                    KeyError::required(format!("{what}.plugin_data.connection_string"))
                })?;
                let options = crate::datastore::postgres::PgOptions {
                    connection_string: connection_string.clone(),
                    ro_connection_string: d.ro_connection_string,
                    max_open_conns,
                    conn_max_lifetime,
                    migrate: !d.disable_migration.unwrap_or(false),
                };
                self.datastore = Some(DataStoreConfig::Sql {
                    database_type,
                    connection_string,
                    options,
                });
            }
            ("DataStore", "sled") => {
                let d: SledData = plugin_data(what, data)?;
                let cache_capacity = match d.cache_capacity_mb {
                    None => crate::datastore::sled::DEFAULT_CACHE_CAPACITY,
                    Some(mb @ 1..=MAX_SLED_CACHE_MB) => mb << 20,
                    Some(mb) => {
                        return Err(KeyError::new(
                            format!("{what}.plugin_data.cache_capacity_mb"),
                            format!("expected 1 to {MAX_SLED_CACHE_MB} (MiB), got {mb}"),
                        ));
                    }
                };
                self.datastore = Some(DataStoreConfig::Sled {
                    directory: d.directory.unwrap_or_else(|| data_dir.join("datastore")),
                    cache_capacity,
                });
            }
            ("KeyManager", "disk") => {
                let d: DiskKeysData = plugin_data(what, data)?;
                self.key_manager = Some(KeyManagerConfig::Disk {
                    keys_path: d.keys_path.unwrap_or_else(|| data_dir.join("keys.json")),
                });
            }
            ("KeyManager", "memory") => {
                plugin_data::<EmptyData>(what, data)?;
                self.key_manager = Some(KeyManagerConfig::Memory);
            }
            ("NodeAttestor", "join_token") => {
                plugin_data::<EmptyData>(what, data)?;
                self.join_token = true;
            }
            ("NodeAttestor", "k8s_psat") => {
                let d: k8s::PsatData = plugin_data(what, data)?;
                self.k8s_psat = Some(d.build(what)?);
            }
            ("BundlePublisher", "k8s_configmap") => {
                let d: k8s::ConfigMapPublisherData = plugin_data(what, data)?;
                self.bundle_publishers.extend(d.build(what)?);
            }
            ("Notifier", "k8sbundle") => {
                let d: k8s::K8sBundleData = plugin_data(what, data)?;
                self.bundle_publishers.extend(d.build(what)?);
            }
            ("UpstreamAuthority", "disk") => {
                let d: UpstreamDiskData = required_plugin_data(what, data)?;
                self.upstream = Some(UpstreamDisk {
                    cert_file_path: d.cert_file_path,
                    key_file_path: d.key_file_path,
                    bundle_file_path: d.bundle_file_path,
                });
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
