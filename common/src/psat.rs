//! `k8s_psat` node attestation as both sides see it on the wire: the plugin name (also the
//! attestation type and the selector type) and the payload the agent sends,
//! `{"cluster":"<name>","token":"<projected service account token>"}`.

use serde::{Deserialize, Serialize};

/// The plugin's name, attestation type and selector type.
pub const PSAT: &str = "k8s_psat";

/// The attestation payload. Missing members read as empty, as SPIRE's decoder leaves them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Payload {
    /// The cluster name the server is configured with.
    #[serde(default)]
    pub cluster: String,
    /// The projected service account token, as read from its file.
    #[serde(default)]
    pub token: String,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_spires_json_and_the_token_is_not_debug_printed() {
        let p = Payload {
            cluster: "c1".into(),
            token: "secret.jwt".into(),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"cluster":"c1","token":"secret.jwt"}"#
        );
        assert!(!format!("{p:?}").contains("secret"));
        let partial: Payload = serde_json::from_str(r#"{"cluster":"c1"}"#).unwrap();
        assert_eq!(partial.token, "");
    }
}
