//! TLS for the agent-facing TCP endpoint: the server presents its own, continuously renewed
//! SVID `spiffe://<td>/spire/server`; client certificates are requested, not required, and
//! when present must chain to the trust domain's current bundle and carry a SPIFFE ID in
//! the trust domain (or in `admin_ids`). rustls runs on the injected clock.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use signet_common::clock::Clock;
use signet_common::id::{self, SpiffeId, TrustDomain};
use tokio::sync::watch;

use crate::ca::{Ca, CsrPublicKey, SvidKind, X509SvidParams};
use crate::datastore::DataStore;
use signet_common::x509::spiffe_id_of_cert;

/// The one crypto provider (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

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

/// Verifies optional client SVIDs against the current trust bundle, which a background task
/// reloads from the store whenever the bundle changes (a handshake never waits on the store).
pub struct SpiffeClientVerifier {
    trust_domain: TrustDomain,
    admin_ids: Vec<SpiffeId>,
    algorithms: WebPkiSupportedAlgorithms,
    current: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
}

impl fmt::Debug for SpiffeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeClientVerifier")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

impl SpiffeClientVerifier {
    /// Loads the trust bundle now, then reloads it whenever `bundles` ticks, for as long as
    /// the verifier is in use.
    pub async fn start(
        trust_domain: TrustDomain,
        admin_ids: Vec<SpiffeId>,
        store: Arc<dyn DataStore>,
        mut bundles: watch::Receiver<u64>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let verifier = Arc::new(Self {
            trust_domain,
            admin_ids,
            algorithms: provider().signature_verification_algorithms,
            current: RwLock::new(None),
        });
        bundles.borrow_and_update();
        verifier.reload(store.as_ref()).await?;
        let weak = Arc::downgrade(&verifier);
        tokio::spawn(async move {
            while bundles.changed().await.is_ok() {
                let Some(verifier) = weak.upgrade() else {
                    return;
                };
                if let Err(error) = verifier.reload(store.as_ref()).await {
                    tracing::warn!(%error, "Keeping the previous trust bundle for client certificates");
                }
            }
        });
        Ok(verifier)
    }

    async fn reload(&self, store: &dyn DataStore) -> Result<(), rustls::Error> {
        let bundle = store
            .bundle(&self.trust_domain)
            .await
            .map_err(|e| rustls::Error::General(format!("cannot read trust bundle: {e}")))?
            .ok_or_else(|| rustls::Error::General("no trust bundle".into()))?;
        let mut roots = RootCertStore::empty();
        for a in &bundle.x509_authorities {
            roots
                .add(CertificateDer::from(a.der.clone()))
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        }
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(v);
        Ok(())
    }

    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| rustls::Error::General("no trust bundle".into()))
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()?
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = spiffe_id_of_cert(end_entity.as_ref())
            .ok_or_else(|| rustls::Error::General("client certificate has no SPIFFE ID".into()))?;
        if !id.is_member_of(&self.trust_domain) && !self.admin_ids.contains(&id) {
            return Err(rustls::Error::General(format!(
                "client SPIFFE ID {id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS configuration of the TCP endpoint.
pub fn server_config(
    identity: Arc<ServerIdentity>,
    verifier: Arc<SpiffeClientVerifier>,
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
