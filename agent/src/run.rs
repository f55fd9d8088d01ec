//! Wiring: loads (or attests for) the agent SVID, starts the SVID rotator, the manager's
//! sync and change-push loops, the public Workload API socket and the health listener, and
//! stops them cleanly, on a signal or when the server refuses the agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use signet_common::clock::{Clock, SystemClock};
use signet_common::id::SpiffeId;
use signet_common::private_dir::ensure_private_dir;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::attestor::workload::k8s::K8sAttestor;
use crate::attestor::workload::unix::UnixAttestor;
use crate::attestor::workload::{Attestors, WorkloadAttestor};
use crate::client::ServerClient;
use crate::config::{Config, RunArgs};
use crate::doctor::Doctor;
use crate::endpoints::admin;
use crate::endpoints::health::{self, Readiness};
use crate::endpoints::{self, WorkloadApi};
use crate::manager::{Manager, ManagerConfig, Snapshot};
use crate::metrics::AgentMetrics;
use crate::retry::random_jitter;
use crate::svid::{self, AgentIdentity};

/// Loads the config, attests, serves until SIGINT or SIGTERM. Fails if the server refuses
/// the agent (banned or evicted): the agent SVID is then removed.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    config.process.start_logging()?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut agent = tokio::select! {
        agent = Agent::start(config, Arc::new(SystemClock)) => agent?,
        _ = tokio::signal::ctrl_c() => return Ok(()),
        _ = term.recv() => return Ok(()),
    };
    let refused = tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("Received interrupt, stopping");
            None
        }
        _ = term.recv() => {
            tracing::info!("Received terminate, stopping");
            None
        }
        reason = agent.stopped() => Some(reason),
    };
    agent.shutdown().await?;
    match refused {
        Some(reason) => anyhow::bail!("agent stopped: {reason}"),
        None => Ok(()),
    }
}

/// The configured workload attestors (the k8s one reads its kubelet credentials now).
fn workload_attestors(
    config: &Config,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Vec<Arc<dyn WorkloadAttestor>>> {
    let mut out: Vec<Arc<dyn WorkloadAttestor>> = Vec::new();
    if let Some(unix) = &config.unix_attestor {
        out.push(Arc::new(UnixAttestor::new(unix.clone(), Arc::clone(clock))));
    }
    if let Some(k8s) = &config.k8s_attestor {
        out.push(Arc::new(
            K8sAttestor::new(k8s.clone()).map_err(anyhow::Error::msg)?,
        ));
    }
    Ok(out)
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    /// The public Workload API socket.
    pub socket_path: PathBuf,
    /// The agent's SPIFFE ID.
    pub agent_id: SpiffeId,
    /// The admin socket, if configured.
    pub admin_socket_path: Option<PathBuf>,
    /// Where the health listener listens, if enabled.
    pub health_addr: Option<SocketAddr>,
    /// Where the Prometheus listener listens, if configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The manager (JWT-SVIDs, SVID demand) and its snapshots.
    pub manager: Arc<Manager>,
    /// The agent's own SVID and bundle.
    pub identity: Arc<AgentIdentity>,
    shutdown: watch::Sender<bool>,
    stopped: watch::Receiver<Option<String>>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Agent {
    /// Loads or obtains the agent SVID and starts everything.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        ensure_private_dir("data_dir", &config.data_dir).context("data_dir")?;
        let identity = Arc::new(AgentIdentity::load_or_attest(&config, Arc::clone(&clock)).await?);
        let agent_id = identity.current().id.clone();
        let servers = config.server_addrs();
        let client = Arc::new(ServerClient::new(
            servers.clone(),
            config.trust_domain.clone(),
            Arc::clone(&clock),
            Arc::clone(&identity) as _,
        ));
        let metrics = Arc::new(AgentMetrics::default());
        let manager = Manager::with_metrics(
            ManagerConfig::from_config(&config),
            Arc::clone(&client) as _,
            Arc::clone(&clock),
            Some(Arc::clone(&identity)),
            Arc::clone(&metrics),
        );

        let (shutdown, stop) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(svid::rotate(
            Arc::clone(&identity),
            Arc::clone(&client),
            Arc::clone(&clock),
            random_jitter,
            stop.clone(),
        ));
        manager.spawn(&mut tasks, stop.clone());

        let listener = endpoints::bind(&config.socket_path)?;
        let attestors = Arc::new(Attestors::new(workload_attestors(&config, &clock)?));
        if let Some(path) = &config.admin_socket_path {
            let doctor = Doctor {
                identity: Arc::clone(&identity),
                client,
                manager: Arc::clone(&manager),
                attestors: Arc::clone(&attestors),
                clock: Arc::clone(&clock),
                servers,
            };
            admin::serve(&mut tasks, admin::bind(path)?, doctor, stop.clone());
        }
        let api = WorkloadApi {
            snapshot: manager.subscribe(),
            identities: Arc::clone(&manager) as _,
            attestors,
            clock: Arc::clone(&clock),
        };
        endpoints::serve_with_sds(
            &mut tasks,
            listener,
            api,
            config.sds.clone(),
            config.conn_limits,
            metrics.rpc.clone(),
            stop.clone(),
        );
        tracing::info!(path = %config.socket_path.display(), "Starting agent APIs");

        let metrics_addr = match &config.process.metrics {
            Some(m) => Some(
                crate::metrics::serve(
                    &mut tasks,
                    m,
                    metrics,
                    {
                        let snapshot = manager.subscribe();
                        move || snapshot.borrow().held()
                    },
                    Arc::clone(&clock),
                    stop.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let health_addr = match &config.process.health {
            Some(h) => {
                let readiness = Readiness {
                    snapshot: manager.subscribe(),
                    svid: identity.subscribe(),
                    clock,
                };
                Some(health::serve(&mut tasks, h, readiness, stop).await?)
            }
            None => None,
        };
        Ok(Self {
            socket_path: config.socket_path,
            admin_socket_path: config.admin_socket_path,
            agent_id,
            health_addr,
            metrics_addr,
            stopped: identity.stopped(),
            manager,
            identity,
            shutdown,
            tasks,
        })
    }

    /// Follows the published snapshots.
    pub fn snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.manager.subscribe()
    }

    /// Resolves, with the reason, when the server refuses the agent (banned, evicted or
    /// expired); the agent SVID has then been removed.
    pub async fn stopped(&mut self) -> String {
        match self.stopped.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops every loop and listener, waits for them and removes the socket.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        while let Some(res) = self.tasks.join_next().await {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %format!("{error:#}"), "An agent task failed")
                }
                Err(error) => tracing::warn!(%error, "An agent task panicked"),
            }
        }
        let _ = std::fs::remove_file(&self.socket_path);
        if let Some(admin) = &self.admin_socket_path {
            let _ = std::fs::remove_file(admin);
        }
        tracing::info!("Agent stopped");
        Ok(())
    }
}
