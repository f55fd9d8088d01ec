//! The agent's own X509-SVID (SPIRE `pkg/agent/svid`): loaded from `data_dir` on start, or
//! obtained by node attestation; replaced at its jittered half life, the old one staying in
//! use until the new one is stored: by attesting again when the server allows it (`k8s_psat`,
//! with a freshly read token), else with `RenewAgent` (a join-token agent cannot attest
//! again); and removed, stopping the agent, when the server says the agent is banned or gone
//! (a re-attestable agent that was evicted or expired attests again instead).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use signet_common::bundle::parse_pem_certs;
use signet_common::clock::{Clock, from_unix_seconds};
use signet_common::id::{self, SpiffeId};
use signet_common::rotation::renew_at;
use signet_common::x509::cert_info;
use tokio::sync::watch;

use crate::attestor::node::NodeAttestor;
use crate::attestor::node::join_token::JoinToken;
use crate::attestor::node::k8s_psat::K8sPsat;
use crate::client::{ClientError, ClientSvid, Credentials, Denial, ServerClient, ServerTrust};
use crate::config::{Config, NodeAttestorConfig, TrustBundleSource};
use crate::retry::{Backoff, Jitter, retry_bound, retry_delay, sleep_until, urgent_from};

pub mod storage;

pub use storage::{KeySlot, Storage, StorageError};

/// How often, at most, the renewal time is looked at again (SPIRE: 5 s).
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The exact line SPIRE logs (integration tests grep for it).
pub const BANNED_LOG: &str = "Agent is banned: removing SVID and shutting down";

/// The agent's SVID and key.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentSvid {
    /// `spiffe://<td>/spire/agent/...`.
    pub id: SpiffeId,
    /// Chain, leaf first, DER.
    pub chain: Vec<Vec<u8>>,
    /// Private key, PKCS#8 DER.
    pub key: Vec<u8>,
    /// The key slot the key is stored in.
    pub key_slot: KeySlot,
    /// Leaf NotBefore, Unix seconds.
    pub not_before: i64,
    /// Leaf NotAfter, Unix seconds.
    pub not_after: i64,
    /// Whether the server lets this agent attest again (it then does so instead of renewing).
    pub reattestable: bool,
}

impl AgentSvid {
    /// Reads the leaf; it must carry an agent ID of `td`.
    pub fn new(
        chain: Vec<Vec<u8>>,
        key: Vec<u8>,
        key_slot: KeySlot,
        td: &id::TrustDomain,
    ) -> Result<Self, String> {
        let leaf = chain.first().ok_or("empty SVID chain")?;
        let info = cert_info(leaf).ok_or("SVID leaf has no valid SPIFFE ID")?;
        if !info.id.is_member_of(td) || !id::is_agent_id(&info.id) {
            return Err(format!("{} is not an agent ID of {td}", info.id));
        }
        Ok(Self {
            id: info.id,
            chain,
            key,
            key_slot,
            not_before: info.not_before,
            not_after: info.not_after,
            reattestable: false,
        })
    }
}

impl fmt::Debug for AgentSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentSvid")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl ClientSvid for AgentSvid {
    fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    fn private_key(&self) -> &[u8] {
        &self.key
    }
}

/// The agent's identity as every component sees it: the current SVID and trust bundle
/// roots (both published through `watch` channels and persisted), and whether the agent
/// has been told to stop.
#[derive(Debug)]
pub struct AgentIdentity {
    svid: watch::Sender<Arc<AgentSvid>>,
    roots: watch::Sender<Arc<Vec<Vec<u8>>>>,
    storage: Storage,
    stopped: watch::Sender<Option<String>>,
    attestation: Attestation,
    reattest_now: tokio::sync::Notify,
}

/// How the agent attests: the configured node attestor and where the server is.
#[derive(Debug, Clone)]
struct Attestation {
    /// `None`: a join-token agent without a token (fine while its stored SVID lasts).
    attestor: Option<Arc<dyn NodeAttestor>>,
    servers: Vec<String>,
    trust_domain: id::TrustDomain,
}

impl AgentIdentity {
    /// Uses the stored SVID if it is still valid and its key is there ("SVID loaded"),
    /// otherwise attests with the join token ("SVID is not found. Starting node
    /// attestation") and stores the result.
    pub async fn load_or_attest(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let storage = Storage::new(&config.data_dir, &config.key_manager);
        let td = &config.trust_domain;
        let attestation = Attestation {
            attestor: node_attestor(config),
            servers: config.server_addrs(),
            trust_domain: td.clone(),
        };
        let now = clock.unix_now();
        let loaded = match storage.load() {
            Ok(stored) => stored.and_then(|s| {
                let key = s.key?;
                let mut svid = AgentSvid::new(s.chain, key, s.key_slot, td)
                    .map_err(|error| tracing::warn!(%error, "Ignoring the stored SVID"))
                    .ok()?;
                svid.reattestable = s.reattestable;
                let usable = svid.not_after > now && !s.bundle.is_empty();
                usable.then_some((svid, s.bundle))
            }),
            Err(error) => {
                tracing::warn!(%error, "Cannot read the stored SVID");
                None
            }
        };
        if let Some((svid, bundle)) = loaded {
            tracing::info!(agent_id = %svid.id, expires_at = svid.not_after, "SVID loaded");
            return Ok(Self::with(svid, bundle, storage, attestation));
        }
        tracing::info!("SVID is not found. Starting node attestation");
        anyhow::ensure!(
            attestation.attestor.is_some(),
            "node attestation needs a join token (agent.join_token or --join-token)"
        );
        let trust = bootstrap_trust(&config.trust_bundle)?;
        let (svid, bundle) = attest(&attestation, &trust, KeySlot::A, clock)
            .await
            .context("failed to attest")?;
        storage
            .store(
                &svid.chain,
                &svid.key,
                svid.key_slot,
                &bundle,
                svid.reattestable,
            )
            .context("cannot store the agent SVID")?;
        tracing::info!(agent_id = %svid.id, expires_at = svid.not_after, "Node attestation was successful");
        Ok(Self::with(svid, bundle, storage, attestation))
    }

    fn with(
        svid: AgentSvid,
        roots: Vec<Vec<u8>>,
        storage: Storage,
        attestation: Attestation,
    ) -> Self {
        Self {
            svid: watch::Sender::new(Arc::new(svid)),
            roots: watch::Sender::new(Arc::new(roots)),
            storage,
            stopped: watch::Sender::new(None),
            attestation,
            reattest_now: tokio::sync::Notify::new(),
        }
    }

    /// The current SVID.
    pub fn current(&self) -> Arc<AgentSvid> {
        Arc::clone(&self.svid.borrow())
    }

    /// Follows the current SVID.
    pub fn subscribe(&self) -> watch::Receiver<Arc<AgentSvid>> {
        self.svid.subscribe()
    }

    /// Follows the trust bundle's X.509 roots.
    pub fn roots(&self) -> watch::Receiver<Arc<Vec<Vec<u8>>>> {
        self.roots.subscribe()
    }

    /// Turns `Some(reason)` when the agent must stop (banned, evicted, expired).
    pub fn stopped(&self) -> watch::Receiver<Option<String>> {
        self.stopped.subscribe()
    }

    /// Stores a renewed SVID, then starts presenting it.
    pub fn replace(&self, svid: AgentSvid) -> Result<(), StorageError> {
        self.storage.store(
            &svid.chain,
            &svid.key,
            svid.key_slot,
            &self.roots.borrow(),
            svid.reattestable,
        )?;
        self.svid.send_replace(Arc::new(svid));
        Ok(())
    }

    /// Wakes the renewal loop to renew (or attest again) at once, for example when the SVID's
    /// signing authority was tainted.
    pub fn renew_now(&self) {
        self.reattest_now.notify_one();
    }

    /// Stores and publishes new trust bundle roots, if they differ. Empty roots are ignored.
    pub fn update_roots(&self, roots: Vec<Vec<u8>>) -> Result<bool, StorageError> {
        if roots.is_empty() || **self.roots.borrow() == roots {
            return Ok(false);
        }
        let svid = self.current();
        self.storage
            .store_bundle(&svid.chain, svid.key_slot, &roots, svid.reattestable)?;
        self.roots.send_replace(Arc::new(roots));
        Ok(true)
    }

    /// If `err` says the server refused this agent for good, removes the SVID, tells
    /// everyone to stop and returns true. Logs the ban line exactly once.
    pub fn refused(&self, err: &ClientError) -> bool {
        let again = matches!(
            err.denial(),
            Some(Denial::NotAttested | Denial::Expired | Denial::MustReattest)
        );
        if again && self.current().reattestable {
            tracing::warn!(error = %err, "The server no longer accepts the agent SVID; attesting again");
            self.reattest_now.notify_one();
            return false;
        }
        let reason = match err.denial() {
            None | Some(Denial::NotActive) => return false,
            Some(Denial::Banned) => "agent is banned",
            Some(Denial::NotAttested) => "agent is no longer attested",
            Some(Denial::Expired) => "agent SVID has expired",
            Some(Denial::MustReattest) => "agent must attest again",
        };
        let first = self.stopped.send_if_modified(|s| {
            let first = s.is_none();
            if first {
                *s = Some(reason.to_owned());
            }
            first
        });
        if !first {
            return true;
        }
        if err.denial() == Some(Denial::Banned) {
            tracing::error!(error = %err, "{BANNED_LOG}");
        } else {
            tracing::error!(error = %err, reason, "Agent was refused by the server: removing SVID and shutting down");
        }
        if let Err(error) = self.storage.delete() {
            tracing::error!(%error, "Cannot remove the agent SVID");
        }
        true
    }
}

impl Credentials for AgentIdentity {
    fn svid(&self) -> Arc<dyn ClientSvid> {
        self.current()
    }

    fn bundle_roots(&self) -> Arc<Vec<Vec<u8>>> {
        Arc::clone(&self.roots.borrow())
    }
}

/// The configured node attestor (none for a join-token agent without a token).
fn node_attestor(config: &Config) -> Option<Arc<dyn NodeAttestor>> {
    match &config.node_attestor {
        NodeAttestorConfig::JoinToken => config
            .join_token
            .as_deref()
            .map(|token| Arc::new(JoinToken::new(token)) as Arc<dyn NodeAttestor>),
        NodeAttestorConfig::K8sPsat(psat) => Some(Arc::new(K8sPsat::from(psat))),
    }
}

/// How the server is checked on first contact.
fn bootstrap_trust(source: &TrustBundleSource) -> anyhow::Result<ServerTrust> {
    Ok(match source {
        TrustBundleSource::Path(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read trust_bundle_path {}", path.display()))?;
            let roots = parse_pem_certs(&pem)
                .with_context(|| format!("trust_bundle_path {}", path.display()))?;
            anyhow::ensure!(
                !roots.is_empty(),
                "trust_bundle_path {} holds no certificates",
                path.display()
            );
            ServerTrust::Roots(roots)
        }
        TrustBundleSource::InsecureBootstrap => {
            tracing::warn!("Insecure bootstrap: the server is not verified on first contact");
            ServerTrust::Insecure
        }
    })
}

/// Node attestation: a new key in `slot`, the attestor's evidence, the server's SVID and
/// bundle roots.
async fn attest(
    a: &Attestation,
    trust: &ServerTrust,
    slot: KeySlot,
    clock: Arc<dyn Clock>,
) -> Result<(AgentSvid, Vec<Vec<u8>>), Renewal> {
    let (key, csr) = new_key_and_csr()
        .map_err(|e| Renewal::Other(format!("cannot create the agent key: {e}")))?;
    let attestor = a
        .attestor
        .as_deref()
        .ok_or_else(|| Renewal::Other("no node attestor to attest with".into()))?;
    let attested =
        ServerClient::attest(&a.servers, &a.trust_domain, trust, clock, attestor, csr).await?;
    let mut svid = AgentSvid::new(attested.chain, key, slot, &a.trust_domain)
        .map_err(|e| Renewal::Other(format!("server returned an unusable agent SVID: {e}")))?;
    svid.reattestable = attested.reattestable;
    if svid.id != attested.id {
        return Err(Renewal::Other(format!(
            "server returned an SVID for {} but named {}",
            svid.id, attested.id
        )));
    }
    let roots: Vec<_> = attested
        .bundle
        .x509_authorities
        .into_iter()
        .map(|a| a.der)
        .collect();
    if roots.is_empty() {
        return Err(Renewal::Other("server returned an empty bundle".into()));
    }
    Ok((svid, roots))
}

/// A fresh P-256 key (PKCS#8 DER) and a CSR for it. The server takes only the key.
pub fn new_key_and_csr() -> Result<(Vec<u8>, Vec<u8>), rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = csr_for(&key)?;
    Ok((key.serialize_der(), csr))
}

/// A CSR with an empty subject for `key`.
pub fn csr_for(key: &rcgen::KeyPair) -> Result<Vec<u8>, rcgen::Error> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    Ok(params.serialize_request(key)?.der().to_vec())
}

/// Renews the agent SVID at its jittered half life, until `stop` or until the server refuses
/// the agent. While the server is unreachable it retries with backoff, keeping the old SVID.
pub async fn rotate(
    identity: Arc<AgentIdentity>,
    client: Arc<ServerClient>,
    clock: Arc<dyn Clock>,
    jitter: Jitter,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        // Half of the life left from now (or from NotBefore, if later): NotBefore is
        // back-dated, which would make a short-lived SVID due the moment it is issued.
        let svid = identity.current();
        let start = from_unix_seconds(svid.not_before).max(clock.now());
        let at = renew_at(start, from_unix_seconds(svid.not_after), jitter());
        tokio::select! {
            () = sleep_until(&clock, at, CHECK_EVERY) => {}
            () = identity.reattest_now.notified() => {}
            _ = stop.wait_for(|s| *s) => return Ok(()),
        }
        let mut backoff = Backoff::default();
        let expires = from_unix_seconds(svid.not_after);
        let urgent_at = urgent_from(start, expires);
        loop {
            let result = if identity.current().reattestable {
                reattest(&identity, &clock).await
            } else {
                renew(&identity, &client).await
            };
            match result {
                Ok(()) => break,
                Err(Renewal::Client(e)) if identity.refused(&e) => return Ok(()),
                Err(error) => {
                    let expired = clock.unix_now() >= svid.not_after;
                    tracing::warn!(%error, expired, "Agent SVID renewal failed; retrying");
                }
            }
            let bound = retry_bound(urgent_at, expires, clock.now());
            tokio::select! {
                () = tokio::time::sleep(retry_delay(backoff.next_delay(), bound, jitter())) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Renewal {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Other(String),
}

/// A new SVID by attesting again (the token is read again), checking the server against the
/// current bundle.
async fn reattest(identity: &AgentIdentity, clock: &Arc<dyn Clock>) -> Result<(), Renewal> {
    let current = identity.current();
    let trust = ServerTrust::Roots(identity.roots.borrow().to_vec());
    let (svid, roots) = attest(
        &identity.attestation,
        &trust,
        current.key_slot.other(),
        Arc::clone(clock),
    )
    .await?;
    if svid.id != current.id {
        return Err(Renewal::Other(format!(
            "attesting again gave the SVID of {}, not {}",
            svid.id, current.id
        )));
    }
    let expires_at = svid.not_after;
    identity
        .update_roots(roots)
        .map_err(|e| Renewal::Other(e.to_string()))?;
    identity
        .replace(svid)
        .map_err(|e| Renewal::Other(e.to_string()))?;
    tracing::info!(agent_id = %current.id, expires_at, "Attested again: new agent SVID");
    Ok(())
}

async fn renew(identity: &AgentIdentity, client: &ServerClient) -> Result<(), Renewal> {
    let current = identity.current();
    let (key, csr) = new_key_and_csr().map_err(|e| Renewal::Other(e.to_string()))?;
    let chain = client.renew_agent(csr).await?;
    let mut svid = AgentSvid::new(chain, key, current.key_slot.other(), client.trust_domain())
        .map_err(Renewal::Other)?;
    svid.reattestable = current.reattestable;
    if svid.id != current.id {
        return Err(Renewal::Other(format!(
            "renewed SVID is for {}, not {}",
            svid.id, current.id
        )));
    }
    let expires_at = svid.not_after;
    identity
        .replace(svid)
        .map_err(|e| Renewal::Other(e.to_string()))?;
    tracing::info!(agent_id = %current.id, expires_at, "Renewed agent SVID");
    Ok(())
}
