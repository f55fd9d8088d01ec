//! `join_token`: single-use, expiring tokens. The agent ID is
//! `spiffe://<td>/spire/agent/join_token/<token>`; the token is deleted before its expiry is
//! even checked, so it can never be used twice.

use std::sync::Arc;

use signet_common::clock::Clock;
use signet_common::id::{self, TrustDomain};

use crate::attestation::{AttestError, Attested, NodeAttestor};
use crate::datastore::DataStore;

/// The join-token attestor.
#[derive(Debug)]
pub struct JoinTokenAttestor {
    trust_domain: TrustDomain,
    store: Arc<dyn DataStore>,
    clock: Arc<dyn Clock>,
}

impl JoinTokenAttestor {
    /// An attestor over the store's tokens.
    pub fn new(
        trust_domain: TrustDomain,
        store: Arc<dyn DataStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            trust_domain,
            store,
            clock,
        }
    }
}

#[tonic::async_trait]
impl NodeAttestor for JoinTokenAttestor {
    fn name(&self) -> &'static str {
        "join_token"
    }

    async fn attest(&self, payload: &[u8]) -> Result<Attested, AttestError> {
        let token = std::str::from_utf8(payload)
            .map_err(|_| AttestError::Invalid("join token is not valid UTF-8".into()))?;
        if token.is_empty() {
            return Err(AttestError::Invalid("join token is empty".into()));
        }
        let stored = self.store.take_join_token(token).await?.ok_or_else(|| {
            AttestError::Invalid("join token does not exist or has already been used".into())
        })?;
        if stored.expires_at < self.clock.unix_now() {
            return Err(AttestError::Invalid("join token expired".into()));
        }
        let agent_id = id::agent_id(&self.trust_domain, "join_token", token).map_err(|e| {
            AttestError::Invalid(format!("join token cannot form an agent ID: {e}"))
        })?;
        Ok(Attested {
            agent_id,
            selectors: vec![],
            can_reattest: false,
        })
    }
}
