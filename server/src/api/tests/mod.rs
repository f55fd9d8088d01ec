//! The API services' shared test harness: a real sled store in a temp dir,
//! an in-memory `KeyManager` with real keys, and both services served over a Unix socket in
//! a temp dir (so the caller is `Local`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use signet_common::clock::{Clock, FakeClock};
use signet_common::id::{self, TrustDomain};
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
use crate::datastore::DataStore;
use crate::datastore::sled::SledStore;
use crate::datastore::testing::temp_sled;
use crate::keys::{KeyError, KeyManager, KeyType, ManagedKey};
use crate::registry::Registry;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

/// API state over a fresh sled store in a temp dir (dropped with the returned guard), with
/// a fake clock.
pub(crate) async fn api_state() -> (Arc<ApiState>, Arc<SledStore>, TempDir) {
    let (store, dir) = temp_sled();
    (api_state_on(store.clone()).await, store, dir)
}

/// API state over `store`, with a fake clock.
pub(crate) async fn api_state_on(dyn_store: Arc<dyn DataStore>) -> Arc<ApiState> {
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
    .await
    .unwrap();
    let state = ApiState {
        trust_domain: td(),
        registry: Arc::new(Registry::load(dyn_store, &td()).await.unwrap()),
        ca: Arc::new(ca),
        clock,
        admin_ids: vec![],
        join_token_enabled: false,
        metrics: Arc::default(),
    };
    Arc::new(state)
}

/// Both services on a Unix socket in a temp dir, and clients connected to it.
pub(crate) struct Harness {
    pub(crate) state: Arc<ApiState>,
    pub(crate) store: Arc<dyn DataStore>,
    pub(crate) entries: EntryClient<Channel>,
    pub(crate) bundles: BundleClient<Channel>,
    shutdown: Option<oneshot::Sender<()>>,
    _dirs: [TempDir; 2],
}

impl Harness {
    /// Starts the server on a fresh sled store and connects.
    pub(crate) async fn start() -> Self {
        let (store, store_dir) = temp_sled();
        Self::start_on(store, store_dir).await
    }

    /// Starts the server on `store` (kept with `store_dir`, dropped with the harness).
    pub(crate) async fn start_on(store: Arc<dyn DataStore>, store_dir: TempDir) -> Self {
        let state = api_state_on(store.clone()).await;
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
            _dirs: [dir, store_dir],
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
