//! The certificate authority: an X.509 CA and a JWT signing key, each in A/B slots that go
//! prepared -> active -> old on the injected clock; signs SVIDs with SPIRE's profile.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_common::clock::Clock;
use signet_common::id::{SpiffeId, TrustDomain};

use crate::datastore::{DataStore, StoreError};
use crate::keys::{KeyError, KeyManager, KeyType};

mod jwt;
mod manager;
mod template;
pub mod upstream;

pub use upstream::UpstreamDisk;

/// Subject of the CA certificate (`ca_subject`); SPIRE's default is `C=US, O=SPIFFE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSubject {
    /// `C`
    pub country: Vec<String>,
    /// `O`
    pub organization: Vec<String>,
    /// `CN`
    pub common_name: String,
}

impl Default for CaSubject {
    fn default() -> Self {
        Self {
            country: vec!["US".into()],
            organization: vec!["SPIFFE".into()],
            common_name: String::new(),
        }
    }
}

/// What the CA needs from the configuration.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// The server's trust domain.
    pub trust_domain: TrustDomain,
    /// `ca_key_type` (also used for the JWT key).
    pub key_type: KeyType,
    /// `ca_ttl`, default 24h.
    pub ca_ttl: Duration,
    /// `ca_subject`.
    pub ca_subject: CaSubject,
    /// `default_x509_svid_ttl`, default 1h.
    pub default_x509_svid_ttl: Duration,
    /// `default_jwt_svid_ttl`, default 5m.
    pub default_jwt_svid_ttl: Duration,
    /// `agent_ttl`, defaults to the X509-SVID TTL.
    pub agent_ttl: Duration,
    /// `jwt_issuer`: sets `iss` on JWT-SVIDs when present.
    pub jwt_issuer: Option<String>,
    /// `UpstreamAuthority "disk"`: the CA becomes an intermediate under it.
    pub upstream: Option<UpstreamDisk>,
    /// Key under which this server's journal is stored (`DataStore::ca_journal`).
    pub journal_key: String,
}

/// Which kind of X509-SVID is being signed (decides the default TTL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvidKind {
    /// A workload SVID for a registration entry (default TTL: `default_x509_svid_ttl`).
    Workload,
    /// An agent SVID (default TTL: `agent_ttl`).
    Agent,
    /// The server's own SVID (default TTL: `default_x509_svid_ttl`).
    Server,
}

/// A public key taken from a CSR whose signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrPublicKey {
    /// SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

/// What to put in an X509-SVID. Everything comes from the entry (or the server), never
/// from the CSR, which contributes only its public key.
#[derive(Debug, Clone)]
pub struct X509SvidParams {
    /// The SVID's only URI SAN. Must be in the trust domain with a non-empty path.
    pub spiffe_id: SpiffeId,
    /// The subject's public key.
    pub public_key: CsrPublicKey,
    /// Requested TTL; zero means the default for `kind`. Capped at the CA's NotAfter.
    pub ttl: Duration,
    /// DNS SANs; the first also becomes the subject CN.
    pub dns_names: Vec<String>,
    /// Which default TTL applies.
    pub kind: SvidKind,
}

/// A signed X509-SVID.
#[derive(Debug, Clone)]
pub struct X509Svid {
    /// Leaf first, then intermediates (the server CA when it is under an upstream); never
    /// the root. With a self-signed CA this is the leaf alone, as in SPIRE.
    pub chain: Vec<Vec<u8>>,
    /// Leaf serial, lower-case hex without leading zeros.
    pub serial: String,
    /// Leaf NotAfter, Unix seconds.
    pub expires_at: i64,
}

/// What to put in a JWT-SVID.
#[derive(Debug, Clone)]
pub struct JwtSvidParams {
    /// `sub`.
    pub spiffe_id: SpiffeId,
    /// `aud`; empty strings are dropped; at least one required.
    pub audience: Vec<String>,
    /// Requested TTL; zero means `default_jwt_svid_ttl`. Capped at the key's NotAfter.
    pub ttl: Duration,
}

/// A signed JWT-SVID.
#[derive(Debug, Clone)]
pub struct JwtSvid {
    /// Compact JWS.
    pub token: String,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
}

/// Why the CA failed.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CSR could not be parsed or its signature does not verify.
    #[error("malformed CSR: {0}")]
    MalformedCsr(String),
    /// The request itself is invalid (SPIFFE ID, audience, DNS name).
    #[error("{0}")]
    InvalidRequest(String),
    /// No active authority (should not happen after `Ca::new`).
    #[error("no active {0} authority")]
    NotReady(&'static str),
    /// Building or signing a certificate or token failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The upstream authority's files are unusable.
    #[error("upstream authority: {0}")]
    Upstream(String),
    /// Keys.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// State of one authority slot, as the local-authority view reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityState {
    /// X.509: lower-case hex SKI of the CA cert; JWT: the `kid`.
    pub authority_id: String,
    /// NotAfter, Unix seconds.
    pub expires_at: i64,
}

/// The CA. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Ca {
    inner: manager::Manager,
}

impl Ca {
    /// Loads this server's journal (so a restart resumes the same CA) or creates the first
    /// CA and JWT key; writes the roots and JWT keys into the own-trust-domain bundle.
    pub fn new(
        config: CaConfig,
        clock: Arc<dyn Clock>,
        keys: Arc<dyn KeyManager>,
        store: Arc<dyn DataStore>,
    ) -> Result<Self, CaError> {
        Ok(Self {
            inner: manager::Manager::new(config, clock, keys, store)?,
        })
    }

    /// One rotator tick at the clock's `now`: prepares the next authority at
    /// `NotAfter - min(life/2, 30d)` (publishing it in the bundle), activates it at
    /// `NotAfter - min(life/6, 7d)`, prunes authorities expired for over 24h from the
    /// bundle. Returns true when the stored bundle changed.
    pub fn rotate(&self) -> Result<bool, CaError> {
        self.inner.rotate()
    }

    /// Checks a PKCS#10 CSR's signature and returns its public key. Nothing else in the
    /// CSR is used.
    pub fn verify_csr(csr_der: &[u8]) -> Result<CsrPublicKey, CaError> {
        template::verify_csr(csr_der)
    }

    /// Signs an X509-SVID with the active X.509 authority.
    pub fn sign_x509_svid(&self, params: X509SvidParams) -> Result<X509Svid, CaError> {
        self.inner.sign_x509_svid(params)
    }

    /// Signs a JWT-SVID with the active JWT key.
    pub fn sign_jwt_svid(&self, params: JwtSvidParams) -> Result<JwtSvid, CaError> {
        self.inner.sign_jwt_svid(params)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.inner.trust_domain()
    }

    /// The active X.509 authority (for logs and tests).
    pub fn active_x509_authority(&self) -> Option<AuthorityState> {
        self.inner.active_x509()
    }

    /// The active X.509 CA certificate, DER.
    pub fn active_x509_ca_der(&self) -> Option<Vec<u8>> {
        self.inner.active_x509_ca_der()
    }

    /// When the next rotator tick has something to do (prepare or activate), for sleeping.
    pub fn next_event(&self) -> Option<SystemTime> {
        self.inner.next_event()
    }
}
