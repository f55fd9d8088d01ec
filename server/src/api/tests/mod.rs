//! The API services' shared test harness: an in-memory `DataStore`,
//! an in-memory `KeyManager` with real keys, and both services served over a Unix socket in
//! a temp dir (so the caller is `Local`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use signet_common::bundle::Bundle;
use signet_common::clock::{Clock, FakeClock};
use signet_common::entry::RegistrationEntry;
use signet_common::id::{self, SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use signet_common::selector::Selector;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_proto::spire::api::server::bundle::v1::bundle_server::BundleServer;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::entry_server::EntryServer;
use tempfile::TempDir;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};

use crate::api::ApiState;
use crate::api::bundle::BundleService;
use crate::api::entry::EntryService;
use crate::ca::{Ca, CaConfig, CaSubject};
use crate::datastore::{DataStore, JoinToken, StoreError};
use crate::keys::{KeyError, KeyManager, KeyType, ManagedKey};
use crate::registry::Registry;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An in-memory `DataStore` with the trait's documented semantics.
#[derive(Debug, Default)]
pub(crate) struct FakeStore {
    entries: Mutex<BTreeMap<String, RegistrationEntry>>,
    nodes: Mutex<BTreeMap<SpiffeId, AttestedNode>>,
    tokens: Mutex<BTreeMap<String, JoinToken>>,
    bundles: Mutex<BTreeMap<TrustDomain, Bundle>>,
    journals: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl FakeStore {
    fn similar_to<'a>(
        entries: &'a BTreeMap<String, RegistrationEntry>,
        e: &RegistrationEntry,
    ) -> Option<&'a RegistrationEntry> {
        entries.values().find(|o| o.id != e.id && o.is_similar(e))
    }

    fn entries_where(&self, f: impl Fn(&RegistrationEntry) -> bool) -> Vec<RegistrationEntry> {
        lock(&self.entries)
            .values()
            .filter(|e| f(e))
            .cloned()
            .collect()
    }
}

impl DataStore for FakeStore {
    fn create_entry(&self, entry: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
        let mut entries = lock(&self.entries);
        if entries.contains_key(&entry.id) {
            return Err(StoreError::AlreadyExists(format!(
                "entry {:?} already exists",
                entry.id
            )));
        }
        if let Some(other) = Self::similar_to(&entries, &entry) {
            return Err(StoreError::SimilarEntry(Box::new(other.clone())));
        }
        entries.insert(entry.id.clone(), entry.clone());
        Ok(entry)
    }

    fn update_entry(&self, mut entry: RegistrationEntry) -> Result<RegistrationEntry, StoreError> {
        let mut entries = lock(&self.entries);
        let stored = entries
            .get(&entry.id)
            .ok_or_else(|| StoreError::NotFound("entry".into()))?;
        entry.revision_number = stored.revision_number + 1;
        entry.created_at = stored.created_at;
        if let Some(other) = Self::similar_to(&entries, &entry) {
            return Err(StoreError::SimilarEntry(Box::new(other.clone())));
        }
        entries.insert(entry.id.clone(), entry.clone());
        Ok(entry)
    }

    fn delete_entry(&self, id: &str) -> Result<RegistrationEntry, StoreError> {
        lock(&self.entries)
            .remove(id)
            .ok_or_else(|| StoreError::NotFound("entry".into()))
    }

    fn entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError> {
        Ok(lock(&self.entries).get(id).cloned())
    }

    fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        Ok(self.entries_where(|_| true))
    }

    fn entries_by_parent(&self, parent: &SpiffeId) -> Result<Vec<RegistrationEntry>, StoreError> {
        Ok(self.entries_where(|e| e.parent_id == *parent))
    }

    fn entries_by_spiffe_id(&self, id: &SpiffeId) -> Result<Vec<RegistrationEntry>, StoreError> {
        Ok(self.entries_where(|e| e.spiffe_id == *id))
    }

    fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        Ok(self.entries_where(|e| e.selectors.contains(selector)))
    }

    fn prune_entries(&self, before: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        let mut entries = lock(&self.entries);
        let expired: Vec<_> = entries
            .values()
            .filter(|e| e.expires_at > 0 && e.expires_at < before)
            .cloned()
            .collect();
        for e in &expired {
            entries.remove(&e.id);
        }
        Ok(expired)
    }

    fn put_node(&self, node: AttestedNode) -> Result<AttestedNode, StoreError> {
        lock(&self.nodes).insert(node.spiffe_id.clone(), node.clone());
        Ok(node)
    }

    fn node(&self, id: &SpiffeId) -> Result<Option<AttestedNode>, StoreError> {
        Ok(lock(&self.nodes).get(id).cloned())
    }

    fn list_nodes(&self) -> Result<Vec<AttestedNode>, StoreError> {
        Ok(lock(&self.nodes).values().cloned().collect())
    }

    fn delete_node(&self, id: &SpiffeId) -> Result<AttestedNode, StoreError> {
        lock(&self.nodes)
            .remove(id)
            .ok_or_else(|| StoreError::NotFound("node".into()))
    }

    fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError> {
        let mut tokens = lock(&self.tokens);
        if tokens.contains_key(&token.token) {
            return Err(StoreError::AlreadyExists(
                "join token already exists".into(),
            ));
        }
        tokens.insert(token.token.clone(), token);
        Ok(())
    }

    fn take_join_token(&self, token: &str) -> Result<Option<JoinToken>, StoreError> {
        Ok(lock(&self.tokens).remove(token))
    }

    fn prune_join_tokens(&self, before: i64) -> Result<usize, StoreError> {
        let mut tokens = lock(&self.tokens);
        let n = tokens.len();
        tokens.retain(|_, t| t.expires_at >= before);
        Ok(n - tokens.len())
    }

    fn bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        Ok(lock(&self.bundles).get(td).cloned())
    }

    fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        Ok(lock(&self.bundles).values().cloned().collect())
    }

    fn create_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        let mut bundles = lock(&self.bundles);
        if bundles.contains_key(&bundle.trust_domain) {
            return Err(StoreError::AlreadyExists("bundle already exists".into()));
        }
        bundles.insert(bundle.trust_domain.clone(), bundle.clone());
        Ok(bundle)
    }

    fn update_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        let mut bundles = lock(&self.bundles);
        let slot = bundles
            .get_mut(&bundle.trust_domain)
            .ok_or_else(|| StoreError::NotFound("bundle".into()))?;
        *slot = bundle.clone();
        Ok(bundle)
    }

    fn set_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        lock(&self.bundles).insert(bundle.trust_domain.clone(), bundle.clone());
        Ok(bundle)
    }

    fn update_bundle_with(
        &self,
        td: &TrustDomain,
        f: &mut dyn FnMut(&mut Bundle) -> bool,
    ) -> Result<Bundle, StoreError> {
        let mut bundles = lock(&self.bundles);
        let mut bundle = bundles
            .get(td)
            .cloned()
            .unwrap_or_else(|| Bundle::new(td.clone()));
        if f(&mut bundle) {
            bundles.insert(td.clone(), bundle.clone());
        }
        Ok(bundle)
    }

    fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        lock(&self.bundles)
            .remove(td)
            .ok_or_else(|| StoreError::NotFound("bundle".into()))
    }

    fn ca_journal(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.journals).get(key).cloned())
    }

    fn set_ca_journal(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        lock(&self.journals).insert(key.to_owned(), data.to_vec());
        Ok(())
    }
}

/// An in-memory `KeyManager` holding real ECDSA keys (so a real CA can use it).
#[derive(Debug, Default)]
pub(crate) struct FakeKeys {
    keys: Mutex<BTreeMap<String, Arc<ManagedKey>>>,
}

impl KeyManager for FakeKeys {
    fn generate(&self, id: &str, key_type: KeyType) -> Result<Arc<ManagedKey>, KeyError> {
        let alg = match key_type {
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        };
        let pair =
            rcgen::KeyPair::generate_for(alg).map_err(|e| KeyError::Generate(e.to_string()))?;
        let key = Arc::new(ManagedKey {
            id: id.to_owned(),
            key_type,
            pkcs8: pair.serialize_der(),
        });
        lock(&self.keys).insert(id.to_owned(), key.clone());
        Ok(key)
    }

    fn key(&self, id: &str) -> Result<Option<Arc<ManagedKey>>, KeyError> {
        Ok(lock(&self.keys).get(id).cloned())
    }
}

/// The trust domain the tests use.
pub(crate) fn td() -> TrustDomain {
    id::parse_trust_domain("example.org").unwrap()
}

/// API state over a fresh fake store, with a fake clock.
pub(crate) fn api_state() -> (Arc<ApiState>, Arc<FakeStore>) {
    let store = Arc::new(FakeStore::default());
    let dyn_store: Arc<dyn DataStore> = store.clone();
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::at_unix(1_700_000_000));
    let config = CaConfig {
        trust_domain: td(),
        key_type: KeyType::EcP256,
        ca_ttl: Duration::from_secs(24 * 3600),
        ca_subject: CaSubject::default(),
        default_x509_svid_ttl: Duration::from_secs(3600),
        default_jwt_svid_ttl: Duration::from_secs(300),
        agent_ttl: Duration::from_secs(3600),
        jwt_issuer: None,
        upstream: None,
        journal_key: "test".into(),
    };
    let ca = Ca::new(
        config,
        clock.clone(),
        Arc::new(FakeKeys::default()),
        dyn_store.clone(),
    )
    .unwrap();
    let state = ApiState {
        trust_domain: td(),
        registry: Arc::new(Registry::load(dyn_store, &td()).unwrap()),
        ca: Arc::new(ca),
        clock,
        admin_ids: vec![],
        join_token_enabled: false,
    };
    (Arc::new(state), store)
}

/// Both services on a Unix socket in a temp dir, and clients connected to it.
pub(crate) struct Harness {
    pub(crate) state: Arc<ApiState>,
    pub(crate) store: Arc<FakeStore>,
    pub(crate) entries: EntryClient<Channel>,
    pub(crate) bundles: BundleClient<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: TempDir,
}

impl Harness {
    /// Starts the server and connects.
    pub(crate) async fn start() -> Self {
        let (state, store) = api_state();
        let dir = TempDir::new().unwrap();
        let path: PathBuf = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let router = Server::builder()
            .add_service(EntryServer::new(EntryService::new(state.clone())))
            .add_service(BundleServer::new(BundleService::new(state.clone())));
        tokio::spawn(router.serve_with_incoming_shutdown(
            UnixListenerStream::new(listener),
            async {
                let _ = rx.await;
            },
        ));
        let channel = Endpoint::try_from("http://localhost")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
            }))
            .await
            .unwrap();
        Self {
            state,
            store,
            entries: EntryClient::new(channel.clone()),
            bundles: BundleClient::new(channel),
            shutdown: Some(tx),
            _dir: dir,
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A self-signed CA certificate, DER.
pub(crate) fn ca_cert_der(cn: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.self_signed(&key).unwrap().der().to_vec()
}

/// A fresh public key, PKIX DER.
pub(crate) fn public_key_der() -> Vec<u8> {
    use rcgen::PublicKeyData;
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .subject_public_key_info()
}
