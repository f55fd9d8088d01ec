//! `NodeAttestor "join_token"`: the payload is the token itself; the server deletes the token
//! on first use and names the agent `spiffe://<td>/spire/agent/join_token/<token>`. There are
//! no challenges, and the agent cannot attest again (it renews with `RenewAgent`).

use signet_proto::types::AttestationData;

use crate::attestor::node::NodeAttestor;

/// The join-token attestor.
pub struct JoinToken {
    token: String,
}

impl JoinToken {
    /// An attestor presenting `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
        }
    }
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken").finish_non_exhaustive()
    }
}

impl NodeAttestor for JoinToken {
    fn name(&self) -> &'static str {
        "join_token"
    }

    fn attestation_data(&self) -> Result<AttestationData, String> {
        Ok(AttestationData {
            r#type: self.name().into(),
            payload: self.token.as_bytes().to_vec(),
        })
    }

    fn answer(&self, _challenge: &[u8]) -> Result<Vec<u8>, String> {
        Err("join_token attestation has no challenges".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_the_raw_token_and_it_is_not_logged() {
        let a = JoinToken::new("secret-token");
        let data = a.attestation_data().unwrap();
        assert_eq!(data.r#type, "join_token");
        assert_eq!(data.payload, b"secret-token");
        assert!(!format!("{a:?}").contains("secret"));
        assert!(a.answer(b"x").is_err());
    }
}
