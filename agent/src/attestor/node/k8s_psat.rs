//! `NodeAttestor "k8s_psat"` (SPIRE `pkg/agent/plugin/nodeattestor/k8spsat`): the payload is
//! `{"cluster":"<cluster>","token":"<projected service account token>"}`, the token read from
//! `token_path` on every attestation (the kubelet rotates it). No challenges; the server lets
//! the agent attest again, which is how it gets a new SVID.

use std::path::PathBuf;

use signet_common::psat::{PSAT, Payload};
use signet_proto::types::AttestationData;

use super::NodeAttestor;
use crate::config::K8sPsatConfig;

/// The k8s_psat attestor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sPsat {
    /// The cluster name the server knows this cluster by.
    pub cluster: String,
    /// The projected service account token file.
    pub token_path: PathBuf,
}

impl From<&K8sPsatConfig> for K8sPsat {
    fn from(c: &K8sPsatConfig) -> Self {
        Self {
            cluster: c.cluster.clone(),
            token_path: c.token_path.clone(),
        }
    }
}

impl NodeAttestor for K8sPsat {
    fn name(&self) -> &'static str {
        PSAT
    }

    fn attestation_data(&self) -> Result<AttestationData, String> {
        let path = self.token_path.display();
        let token = std::fs::read_to_string(&self.token_path)
            .map_err(|e| format!("unable to load token from {path}: {e}"))?;
        if token.is_empty() {
            return Err(format!("{path:?} is empty"));
        }
        let payload = serde_json::to_vec(&Payload {
            cluster: self.cluster.clone(),
            token,
        })
        .map_err(|e| format!("unable to marshal attestation data: {e}"))?;
        Ok(AttestationData {
            r#type: PSAT.into(),
            payload,
        })
    }

    fn answer(&self, _challenge: &[u8]) -> Result<Vec<u8>, String> {
        Err("k8s_psat attestation has no challenges".into())
    }

    fn can_reattest(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_token_on_every_attestation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spire-agent");
        let a = K8sPsat {
            cluster: "c1".into(),
            token_path: path.clone(),
        };
        let err = a.attestation_data().unwrap_err();
        assert!(
            err.starts_with(&format!("unable to load token from {}: ", path.display())),
            "{err}"
        );
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            a.attestation_data().unwrap_err(),
            format!("{:?} is empty", path.display().to_string())
        );
        std::fs::write(&path, "tok-1\n").unwrap();
        let d = a.attestation_data().unwrap();
        assert_eq!(d.r#type, "k8s_psat");
        assert_eq!(d.payload, br#"{"cluster":"c1","token":"tok-1\n"}"#);
        std::fs::write(&path, "tok-2").unwrap();
        assert_eq!(
            a.attestation_data().unwrap().payload,
            br#"{"cluster":"c1","token":"tok-2"}"#
        );
        assert!(a.can_reattest());
    }
}
