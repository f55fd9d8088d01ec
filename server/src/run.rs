//! Wiring: builds every component from the configuration, starts the listeners and the
//! background loops (CA rotation, server SVID renewal, pruning), and stops them cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use signet_common::clock::{Clock, SystemClock};
use signet_common::private_dir::ensure_private_dir;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::ApiState;
use crate::api::agent::AgentService;
use crate::api::bundle::BundleService;
use crate::api::entry::EntryService;
use crate::api::istio::IstioCaService;
use crate::api::localauthority::LocalAuthorityService;
use crate::api::svid::SvidService;
use crate::api::trustdomain::TrustDomainService;
use crate::api::watch::SyncService;
use crate::attestation::NodeAttestor;
use crate::attestation::join_token::JoinTokenAttestor;
use crate::attestation::k8s_psat::K8sPsatAttestor;
use crate::ca::Ca;
use crate::config::{Config, DataStoreConfig, KeyManagerConfig, RunArgs};
use crate::datastore::DataStore;
use crate::datastore::postgres::PgStore;
use crate::datastore::sled::SledStore;
use crate::endpoints::tls::{self, ServerIdentity};
use crate::endpoints::{self, Services};
use crate::keys::KeyManager;
use crate::keys::disk::DiskKeyManager;
use crate::keys::memory::MemoryKeyManager;
use crate::metrics::ServerMetrics;
use crate::registry::Registry;

/// How often the CA rotator looks at its slots (SPIRE: 10 s).
const ROTATE_EVERY: Duration = Duration::from_secs(10);
/// How long a graceful stop waits for open calls before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often expired entries and join tokens are pruned (SPIRE: 5 min).
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Loads the config, starts every endpoint and runs until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    config.process.start_logging()?;
    let server = Server::start(config, Arc::new(SystemClock)).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Received interrupt, stopping"),
        _ = term.recv() => tracing::info!("Received terminate, stopping"),
    }
    server.shutdown().await
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Where the agent API listens.
    pub tcp_addr: SocketAddr,
    /// The admin socket.
    pub socket_path: PathBuf,
    /// Where the health listener listens, if enabled.
    pub health_addr: Option<SocketAddr>,
    /// Where the Prometheus listener listens, if configured.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the SPIFFE bundle endpoint listens, if configured.
    pub bundle_endpoint_addr: Option<SocketAddr>,
    /// Where the OIDC discovery listener listens, if configured.
    pub oidc_discovery_addr: Option<SocketAddr>,
    /// Shared API state (for in-process tests).
    pub state: Arc<ApiState>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Server {
    /// Builds everything and starts serving.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        ensure_private_dir("data_dir", &config.data_dir).context("data_dir")?;
        let mut ca_config = config.ca.clone();
        let store: Arc<dyn DataStore> = match &config.datastore {
            DataStoreConfig::Sled {
                directory,
                cache_capacity,
            } => Arc::new(SledStore::open_with_cache(directory, *cache_capacity)?),
            DataStoreConfig::Sql { options, .. } => {
                config.check_runnable("the config file")?;
                let store = PgStore::connect(options).await?;
                // Servers sharing the database each keep their own CA journal.
                ca_config.journal_key = server_instance_id(&config.data_dir)?;
                tracing::info!(database = store.describe(), journal = %ca_config.journal_key, "Using the PostgreSQL datastore");
                Arc::new(store)
            }
        };
        let keys: Arc<dyn KeyManager> = match &config.key_manager {
            KeyManagerConfig::Disk { keys_path } => Arc::new(DiskKeyManager::open(keys_path)?),
            KeyManagerConfig::Memory => Arc::new(MemoryKeyManager::new()),
        };
        let ca = Arc::new(Ca::new(ca_config, Arc::clone(&clock), keys, Arc::clone(&store)).await?);
        let registry = Arc::new(Registry::load(Arc::clone(&store), &config.trust_domain).await?);
        let metrics = Arc::new(ServerMetrics::default());
        let state = Arc::new(ApiState {
            trust_domain: config.trust_domain.clone(),
            registry: Arc::clone(&registry),
            ca: Arc::clone(&ca),
            clock: Arc::clone(&clock),
            admin_ids: config.admin_ids.clone(),
            join_token_enabled: config.join_token,
            metrics: Arc::clone(&metrics),
        });
        let mut attestors: Vec<Arc<dyn NodeAttestor>> = vec![];
        if config.join_token {
            attestors.push(Arc::new(JoinTokenAttestor::new(
                config.trust_domain.clone(),
                Arc::clone(&store),
                Arc::clone(&clock),
            )));
        }
        if let Some(clusters) = &config.k8s_psat {
            attestors.push(Arc::new(K8sPsatAttestor::new(
                config.trust_domain.clone(),
                clusters.clone(),
            )));
        }
        let (shutdown, stop) = watch::channel(false);
        let federation = crate::federation::manager::Federation::new(
            config.trust_domain.clone(),
            config
                .federation
                .as_ref()
                .map(|f| f.federates_with.clone())
                .unwrap_or_default(),
            Arc::clone(&registry),
            crate::federation::fetch::FetchContext {
                web_roots: Arc::new(crate::federation::fetch::system_roots()),
                clock: Arc::clone(&clock),
                timeout: crate::federation::fetch::FETCH_TIMEOUT,
            },
            config.federation_refresh_floor,
        );
        let services = Services {
            agent: Arc::new(AgentService::new(Arc::clone(&state), attestors)),
            entry: Arc::new(EntryService::new(Arc::clone(&state))),
            bundle: Arc::new(BundleService::new(Arc::clone(&state))),
            svid: Arc::new(SvidService::new(Arc::clone(&state))),
            sync: Arc::new(SyncService::new(Arc::clone(&state), stop.clone())),
            local_authority: Arc::new(LocalAuthorityService::new(Arc::clone(&state))),
            trustdomain: Arc::new(TrustDomainService::new(
                Arc::clone(&state),
                Arc::clone(&federation),
            )),
            istio: match &config.istio_ca {
                Some(c) => Some(Arc::new(IstioCaService::new(Arc::clone(&state), c)?)),
                None => None,
            },
            rpc: metrics.rpc.clone(),
        };
        let server_dns_names = config
            .istio_ca
            .as_ref()
            .map(|c| c.server_dns_names.clone())
            .unwrap_or_default();
        let identity = Arc::new(ServerIdentity::issue_with_dns_names(
            &ca,
            Arc::clone(&clock),
            server_dns_names,
        )?);
        let bundle = tls::CurrentBundle::start(
            config.trust_domain.clone(),
            Arc::clone(&store),
            registry.subscribe_bundles(),
        )
        .await?;
        let verifier = Arc::new(tls::client_verifier(bundle, config.admin_ids.clone()));
        let tls =
            endpoints::tls::server_config(Arc::clone(&identity), verifier, Arc::clone(&clock))?;

        let mut tasks = JoinSet::new();
        let tcp = endpoints::bind_tcp(&config.bind_address, config.bind_port).await?;
        let tcp_addr = endpoints::local_addr(&tcp)?;
        endpoints::serve_tcp(&mut tasks, tcp, tls, &services, stop.clone());
        tracing::info!(address = %tcp_addr, "Starting Server APIs");
        let admin = endpoints::bind_admin_socket(&config.socket_path)?;
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        endpoints::serve_admin(&mut tasks, admin, &services, health, stop.clone());
        tracing::info!(path = %config.socket_path.display(), "Starting Server APIs");
        let health_addr = match &config.process.health {
            Some(h) => Some(
                endpoints::health::serve(&mut tasks, h, Arc::clone(&state), stop.clone()).await?,
            ),
            None => None,
        };
        let metrics_addr = match &config.process.metrics {
            Some(m) => Some(
                endpoints::metrics::serve(&mut tasks, m, Arc::clone(&state), stop.clone()).await?,
            ),
            None => None,
        };
        let bundle_endpoint_addr = match config
            .federation
            .as_ref()
            .and_then(|f| f.bundle_endpoint.as_ref())
        {
            Some(endpoint) => Some(
                crate::endpoints::bundle::start(
                    &mut tasks,
                    endpoint,
                    config.trust_domain.clone(),
                    Arc::clone(&store),
                    Arc::clone(&identity),
                    Arc::clone(&clock),
                    stop.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let oidc_discovery_addr = match &config.oidc_discovery {
            Some(oidc) => Some(
                endpoints::oidc::serve(
                    &mut tasks,
                    oidc,
                    Arc::clone(&state),
                    Arc::clone(&clock),
                    stop.clone(),
                )
                .await?,
            ),
            None => None,
        };
        spawn_rotator(&mut tasks, Arc::clone(&state), identity, stop.clone());
        crate::publish::spawn(
            &mut tasks,
            config.bundle_publishers.clone(),
            Arc::clone(&store),
            config.trust_domain.clone(),
            registry.subscribe_bundles(),
            config.bundle_publish_interval,
            stop.clone(),
        );
        if registry.is_shared() {
            let (registry, td, stop) = (
                Arc::clone(&registry),
                config.trust_domain.clone(),
                stop.clone(),
            );
            tasks.spawn(async move {
                registry.follow_changes(td, stop).await;
                Ok(())
            });
        }
        federation.spawn(&mut tasks, stop.clone());
        spawn_pruner(&mut tasks, Arc::clone(&state), stop);
        tracing::info!(trust_domain = %config.trust_domain, "Server started");
        Ok(Self {
            tcp_addr,
            socket_path: config.socket_path,
            health_addr,
            metrics_addr,
            bundle_endpoint_addr,
            oidc_discovery_addr,
            state,
            shutdown,
            tasks,
        })
    }

    /// Stops every listener and loop and waits for them.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let _ = std::fs::remove_file(&self.socket_path);
        let drain = async {
            while let Some(res) = self.tasks.join_next().await {
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(error = %format!("{error:#}"), "A server task failed")
                    }
                    Err(error) if error.is_cancelled() => {}
                    Err(error) => tracing::warn!(%error, "A server task panicked"),
                }
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("Connections still open after the grace period; closing them");
            self.tasks.shutdown().await;
        }
        tracing::info!("Server stopped");
        Ok(())
    }
}

/// This server's identity among servers sharing a database: `server-<uuid>`, made on first
/// start and kept in `data_dir/server_id` (0600), like the CA keys it goes with.
pub(crate) fn server_instance_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("server_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = format!("server-{}", uuid::Uuid::new_v4());
    signet_common::fs::write_private_atomically(&path, id.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

fn spawn_rotator(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    state: Arc<ApiState>,
    identity: Arc<ServerIdentity>,
    mut stop: watch::Receiver<bool>,
) {
    let mut bundles = state.registry.subscribe_bundles();
    tasks.spawn(async move {
        let (ca, registry, clock) = (&state.ca, &state.registry, &state.clock);
        loop {
            match ca.rotate().await {
                Ok(true) => registry.bundles_changed(),
                Ok(false) => {}
                Err(error) => {
                    state.metrics.rotation_failed();
                    tracing::error!(%error, "CA rotation failed")
                }
            }
            state.refresh_metrics().await;
            // A forced rotation (LocalAuthority) may taint the CA that signed the server's
            // own SVID: replace it at once, as SPIRE's NotifyTaintedX509Authority does.
            let stale = ca.active_x509_authority().is_some_and(|a| {
                identity
                    .issuer_key_id()
                    .is_some_and(|k| k != a.authority_id)
            });
            if stale || clock.unix_now() >= identity.renew_at() {
                match identity.renew(ca) {
                    Ok(()) => tracing::debug!("Renewed server SVID"),
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "Server SVID renewal failed")
                    }
                }
            }
            // Wake at the next tick, or sooner when the server SVID is due (short TTLs).
            let due = u64::try_from(identity.renew_at() - clock.unix_now()).unwrap_or(0);
            let nap = ROTATE_EVERY
                .min(Duration::from_secs(due))
                .max(Duration::from_millis(500));
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                _ = bundles.changed() => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    });
}

fn spawn_pruner(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    state: Arc<ApiState>,
    mut stop: watch::Receiver<bool>,
) {
    tasks.spawn(async move {
        loop {
            let now = state.clock.unix_now();
            let store = state.registry.store();
            if let Err(error) = store.prune_join_tokens(now).await {
                tracing::warn!(%error, "Pruning join tokens failed");
            }
            match state.registry.prune_entries(now).await {
                Ok(pruned) => {
                    for entry in pruned {
                        tracing::info!(entry_id = %entry.id, spiffe_id = %entry.spiffe_id, "Pruned expired entry");
                    }
                }
                Err(error) => tracing::warn!(%error, "Pruning entries failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(PRUNE_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    });
}
