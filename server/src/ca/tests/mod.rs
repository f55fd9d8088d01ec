//! CA tests, all on a `FakeClock` (no sleeps) with a real sled store in a temp dir.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair, PublicKeyData};
use signet_common::bundle::Bundle;
use signet_common::clock::FakeClock;
use signet_common::id::{SpiffeId, TrustDomain, parse_id, parse_trust_domain};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use super::{Ca, CaConfig, CaSubject, CsrPublicKey, SvidKind, X509SvidParams};
use crate::datastore::DataStore;
use crate::datastore::sled::SledStore;
use crate::datastore::testing::temp_sled;
use crate::keys::KeyManager;
use crate::keys::KeyType;
use crate::keys::memory::MemoryKeyManager;

mod local;
mod rotation;
mod signing;
mod upstream;

/// 2030-03-17: a fixed, realistic start.
const START: i64 = 1_900_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn td() -> TrustDomain {
    parse_trust_domain("example.org").unwrap()
}

fn id(s: &str) -> SpiffeId {
    parse_id(s).unwrap()
}

fn config() -> CaConfig {
    CaConfig {
        trust_domain: td(),
        key_type: KeyType::EcP256,
        ca_ttl: 24 * HOUR,
        ca_subject: CaSubject::default(),
        default_x509_svid_ttl: HOUR,
        default_jwt_svid_ttl: Duration::from_secs(300),
        agent_ttl: 2 * HOUR,
        jwt_issuer: None,
        upstream: None,
        journal_key: "server-1".into(),
    }
}

struct Fixture {
    clock: Arc<FakeClock>,
    store: Arc<SledStore>,
    keys: Arc<dyn KeyManager>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self::with_keys(Arc::new(MemoryKeyManager::new()))
    }

    fn with_keys(keys: Arc<dyn KeyManager>) -> Self {
        let (store, dir) = temp_sled();
        Self {
            clock: Arc::new(FakeClock::at_unix(START)),
            store,
            keys,
            _dir: dir,
        }
    }

    async fn ca(&self, config: CaConfig) -> Ca {
        Ca::new(
            config,
            self.clock.clone(),
            self.keys.clone(),
            self.store.clone(),
        )
        .await
        .unwrap()
    }

    async fn bundle(&self) -> Bundle {
        self.store.bundle(&td()).await.unwrap().unwrap()
    }

    async fn root_ders(&self) -> Vec<Vec<u8>> {
        self.bundle()
            .await
            .x509_authorities
            .into_iter()
            .map(|a| a.der)
            .collect()
    }
}

/// A workload key and the public key its CSR yields.
fn workload_key() -> (KeyPair, CsrPublicKey) {
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::new(vec![])
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let public_key = Ca::verify_csr(csr.der()).unwrap();
    (key, public_key)
}

fn svid_params(spiffe_id: &str, public_key: CsrPublicKey) -> X509SvidParams {
    X509SvidParams {
        spiffe_id: id(spiffe_id),
        public_key,
        ttl: Duration::ZERO,
        dns_names: vec![],
        kind: SvidKind::Workload,
    }
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap()
}

fn aki(cert: &X509Certificate<'_>) -> Vec<u8> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(k) => {
                k.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks that `child` names `parent` as its issuer and verifies under its key.
fn assert_signed_by(child: &[u8], parent: &[u8]) {
    let (c, p) = (parse(child), parse(parent));
    assert_eq!(c.issuer().as_raw(), p.subject().as_raw(), "issuer name");
    signet_common::sigcheck::verify_cert(&c, p.public_key()).expect("signature verifies");
    assert_eq!(aki(&c), ski(&p), "AKI is the issuer's SKI");
}
