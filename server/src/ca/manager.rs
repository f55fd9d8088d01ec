//! Placeholder: A/B slots, journal, rotation. Replaced by the CA work.

use std::sync::Arc;
use std::time::SystemTime;

use signet_common::clock::Clock;
use signet_common::id::TrustDomain;

use super::{AuthorityState, CaConfig, CaError, JwtSvid, JwtSvidParams, X509Svid, X509SvidParams};
use crate::datastore::DataStore;
use crate::keys::KeyManager;

#[derive(Debug)]
pub(super) struct Manager {
    config: CaConfig,
}

impl Manager {
    pub(super) fn new(
        config: CaConfig,
        _clock: Arc<dyn Clock>,
        _keys: Arc<dyn KeyManager>,
        _store: Arc<dyn DataStore>,
    ) -> Result<Self, CaError> {
        Ok(Self { config })
    }
    pub(super) fn rotate(&self) -> Result<bool, CaError> {
        Err(CaError::NotReady("x509"))
    }
    pub(super) fn sign_x509_svid(&self, _p: X509SvidParams) -> Result<X509Svid, CaError> {
        Err(CaError::NotReady("x509"))
    }
    pub(super) fn sign_jwt_svid(&self, _p: JwtSvidParams) -> Result<JwtSvid, CaError> {
        Err(CaError::NotReady("jwt"))
    }
    pub(super) fn trust_domain(&self) -> &TrustDomain {
        &self.config.trust_domain
    }
    pub(super) fn active_x509(&self) -> Option<AuthorityState> {
        None
    }
    pub(super) fn active_x509_ca_der(&self) -> Option<Vec<u8>> {
        None
    }
    pub(super) fn next_event(&self) -> Option<SystemTime> {
        None
    }
}
