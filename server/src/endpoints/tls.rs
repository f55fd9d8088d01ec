//! TLS for the agent-facing TCP endpoint: the server presents its own, continuously renewed
//! SVID `spiffe://<td>/spire/server`; client certificates are requested, not required, and
//! when present must chain to the trust domain's current bundle and carry a SPIFFE ID in
//! the trust domain (or in `admin_ids`). rustls runs on the injected clock.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use signet_common::clock::Clock;
use signet_common::id::{self, SpiffeId, TrustDomain};
use signet_common::tls::{Authorizer, ClientSvidVerifier, TrustAnchors, TrustSource};
use tokio::sync::watch;

use crate::ca::{Ca, CsrPublicKey, SvidKind, X509SvidParams};
use crate::datastore::DataStore;

pub use signet_common::tls::provider;

pub use signet_common::tls::ClockTime;

/// The server's own SVID, swapped in place when renewed.
pub struct ServerIdentity {
    current: RwLock<Arc<CertifiedKey>>,
    not_after: RwLock<i64>,
    renew_at: RwLock<i64>,
    clock: Arc<dyn Clock>,
    dns_names: Vec<String>,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("not_after", &self.not_after())
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// Issues the first server SVID.
    pub fn issue(ca: &Ca, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        Self::issue_with_dns_names(ca, clock, vec![])
    }

    /// Issues the first server SVID with DNS SANs too (kept on renewal), for clients that
    /// check a host name (istio-agent).
    pub fn issue_with_dns_names(
        ca: &Ca,
        clock: Arc<dyn Clock>,
        dns_names: Vec<String>,
    ) -> anyhow::Result<Self> {
        let (key, not_after) = mint_server_svid(ca, &dns_names)?;
        let renew_at = half_life(clock.unix_now(), not_after);
        Ok(Self {
            current: RwLock::new(key),
            not_after: RwLock::new(not_after),
            renew_at: RwLock::new(renew_at),
            clock,
            dns_names,
        })
    }

    /// Issues a new server SVID and starts presenting it.
    pub fn renew(&self, ca: &Ca) -> anyhow::Result<()> {
        let (key, not_after) = mint_server_svid(ca, &self.dns_names)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
        *self
            .not_after
            .write()
            .unwrap_or_else(PoisonError::into_inner) = not_after;
        *self
            .renew_at
            .write()
            .unwrap_or_else(PoisonError::into_inner) = half_life(self.clock.unix_now(), not_after);
        Ok(())
    }

    /// When the current SVID reaches half its life (Unix seconds): renew then.
    pub fn renew_at(&self) -> i64 {
        *self.renew_at.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// NotAfter of the current SVID, Unix seconds.
    pub fn not_after(&self) -> i64 {
        *self
            .not_after
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The hex key ID of the CA that signed the current SVID (the leaf's AKI).
    pub fn issuer_key_id(&self) -> Option<String> {
        use x509_parser::extensions::ParsedExtension;
        use x509_parser::prelude::FromDer;
        let current = self.current();
        let leaf = current.cert.first()?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref()).ok()?;
        cert.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(k) => k
                    .key_identifier
                    .as_ref()
                    .map(|id| id.0.iter().map(|b| format!("{b:02x}")).collect()),
                _ => None,
            })
    }

    /// The current chain and key.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ResolvesServerCert for ServerIdentity {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn half_life(issued: i64, not_after: i64) -> i64 {
    issued + (not_after - issued) / 2
}

fn mint_server_svid(ca: &Ca, dns_names: &[String]) -> anyhow::Result<(Arc<CertifiedKey>, i64)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let svid = ca.sign_x509_svid(X509SvidParams {
        spiffe_id: id::server_id(ca.trust_domain()),
        public_key: CsrPublicKey {
            spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
        },
        ttl: Duration::ZERO,
        dns_names: dns_names.to_vec(),
        kind: SvidKind::Server,
    })?;
    let chain = svid.chain.into_iter().map(CertificateDer::from).collect();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let certified = CertifiedKey::from_der(chain, der, &provider())?;
    Ok((Arc::new(certified), svid.expires_at))
}

/// The trust domain's bundle as the store holds it, kept current by a background task that
/// reloads it whenever the bundle changes (a handshake never waits on the store), so a
/// rotated or tainted CA is trusted or refused at once.
pub struct CurrentBundle {
    trust_domain: TrustDomain,
    current: RwLock<Option<Arc<TrustAnchors>>>,
}

impl fmt::Debug for CurrentBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentBundle")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl CurrentBundle {
    /// Loads the trust bundle now, then reloads it whenever `bundles` ticks, for as long as
    /// the source is in use.
    pub async fn start(
        trust_domain: TrustDomain,
        store: Arc<dyn DataStore>,
        mut bundles: watch::Receiver<u64>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let current = Arc::new(Self {
            trust_domain,
            current: RwLock::new(None),
        });
        bundles.borrow_and_update();
        current.reload(store.as_ref()).await?;
        let weak = Arc::downgrade(&current);
        tokio::spawn(async move {
            while bundles.changed().await.is_ok() {
                let Some(current) = weak.upgrade() else {
                    return;
                };
                if let Err(error) = current.reload(store.as_ref()).await {
                    tracing::warn!(%error, "Keeping the previous trust bundle for client certificates");
                }
            }
        });
        Ok(current)
    }

    async fn reload(&self, store: &dyn DataStore) -> Result<(), rustls::Error> {
        let bundle = store
            .bundle(&self.trust_domain)
            .await
            .map_err(|e| rustls::Error::General(format!("cannot read trust bundle: {e}")))?
            .ok_or_else(|| rustls::Error::General("no trust bundle".into()))?;
        let roots: Vec<Vec<u8>> = bundle.x509_authorities.into_iter().map(|a| a.der).collect();
        let anchors = Arc::new(TrustAnchors::bundle(&roots, &provider())?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(anchors);
        Ok(())
    }
}

impl TrustSource for CurrentBundle {
    fn anchors(&self) -> Result<Arc<TrustAnchors>, rustls::Error> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| rustls::Error::General("no trust bundle".into()))
    }
}

/// The agent endpoint's client verifier: client SVIDs are optional (agents attest without
/// one) and, when presented, must chain to the current bundle and carry an ID in the trust
/// domain or in `admin_ids`.
pub fn client_verifier(bundle: Arc<CurrentBundle>, admin_ids: Vec<SpiffeId>) -> ClientSvidVerifier {
    let authorizer = Authorizer::member_of(bundle.trust_domain.clone(), admin_ids);
    ClientSvidVerifier::with_trust(bundle, authorizer, &provider()).optional()
}

/// The TLS configuration of the TCP endpoint.
pub fn server_config(
    identity: Arc<ServerIdentity>,
    verifier: Arc<ClientSvidVerifier>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_details(provider(), Arc::new(ClockTime(clock)))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}
