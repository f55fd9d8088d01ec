//! The certificate authority: an X.509 CA and a JWT signing key, each in A/B slots that go
//! prepared -> active -> old on the injected clock; signs SVIDs with SPIRE's profile.

use std::sync::Arc;
use std::time::SystemTime;

use signet_common::clock::Clock;
use signet_common::id::TrustDomain;

use crate::datastore::DataStore;
use crate::keys::KeyManager;

mod authority;
mod error;
mod import;
mod journal;
mod jwt;
mod load;
mod local;
mod manager;
mod params;
mod template;
#[cfg(test)]
mod tests;
mod upstream;

pub use error::CaError;
pub use import::{ImportedJournal, ImportedJwt, ImportedX509, authority_id_of_key, import_journal};
pub use journal::{Slot, Status as AuthorityStatus};
pub use params::{
    AuthorityState, AuthorityStates, CaConfig, CaSubject, CsrPublicKey, JwtSvid, JwtSvidParams,
    SvidKind, UpstreamDisk, X509Svid, X509SvidParams,
};
pub use template::subject_key_id_hex;

/// The CA. Cheap to share behind an `Arc`; every method takes `&self`.
#[derive(Debug)]
pub struct Ca {
    inner: manager::Manager,
}

impl Ca {
    /// Loads this server's journal (so a restart resumes the same CA) or creates the first
    /// CA and JWT key; writes the roots and JWT keys into the own-trust-domain bundle.
    pub async fn new(
        config: CaConfig,
        clock: Arc<dyn Clock>,
        keys: Arc<dyn KeyManager>,
        store: Arc<dyn DataStore>,
    ) -> Result<Self, CaError> {
        Ok(Self {
            inner: manager::Manager::new(config, clock, keys, store).await?,
        })
    }

    /// One rotator tick at the clock's `now`: prepares the next authority at
    /// `NotAfter - min(life/2, 30d)` (publishing it in the bundle), activates it at
    /// `NotAfter - min(life/6, 7d)`, prunes authorities expired for over 24h from the
    /// bundle. Returns true when the stored bundle changed.
    pub async fn rotate(&self) -> Result<bool, CaError> {
        self.inner.rotate().await
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
    pub async fn next_event(&self) -> Option<SystemTime> {
        self.inner.next_event().await
    }
}
