//! Attested nodes → SPIRE's `types.Agent`.

use signet_common::node::AttestedNode;

use crate::types;

impl From<&AttestedNode> for types::Agent {
    fn from(n: &AttestedNode) -> Self {
        agent_to_proto(n, None)
    }
}

/// A node → SPIRE's `Agent`, keeping only the fields in `mask` (all when `mask` is `None`).
/// The ID is always set.
pub fn agent_to_proto(n: &AttestedNode, mask: Option<&types::AgentMask>) -> types::Agent {
    let all = types::AgentMask {
        attestation_type: true,
        x509svid_serial_number: true,
        x509svid_expires_at: true,
        selectors: true,
        banned: true,
        can_reattest: true,
        agent_version: true,
    };
    let m = mask.unwrap_or(&all);
    types::Agent {
        id: Some((&n.spiffe_id).into()),
        attestation_type: if m.attestation_type {
            n.attestation_type.clone()
        } else {
            String::new()
        },
        x509svid_serial_number: if m.x509svid_serial_number {
            n.serial.clone()
        } else {
            String::new()
        },
        x509svid_expires_at: if m.x509svid_expires_at {
            n.expires_at
        } else {
            0
        },
        selectors: if m.selectors {
            n.selectors.iter().map(types::Selector::from).collect()
        } else {
            vec![]
        },
        banned: m.banned && n.is_banned(),
        can_reattest: m.can_reattest && n.can_reattest,
        agent_version: if m.agent_version {
            n.agent_version.clone()
        } else {
            String::new()
        },
    }
}
