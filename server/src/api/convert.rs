//! Conversions between SPIRE's API types and Signet's model. Everything that arrives from
//! the network is parsed (and refused with a message naming the field) here.

use signet_common::bundle::{Bundle, JwtKey, X509Authority};
use signet_common::entry::{RegistrationEntry, valid_dns_name, valid_entry_id};
use signet_common::id::{self, SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use signet_common::selector::{MatchBehavior, Selector, SelectorSet};
use signet_proto::types;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::api::error::ApiError;

/// Longest hint SPIRE accepts.
const MAX_HINT_LEN: usize = 1024;

/// `SPIFFEID{trust_domain, path}` → `SpiffeId`; `field` names it in errors.
pub fn spiffe_id(field: &str, id: Option<&types::Spiffeid>) -> Result<SpiffeId, ApiError> {
    let id =
        id.ok_or_else(|| ApiError::InvalidArgument(format!("{field}: SPIFFE ID is required")))?;
    if id.trust_domain.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "{field}: trust domain is missing"
        )));
    }
    id::from_parts(&id.trust_domain, &id.path)
        .map_err(|e| ApiError::InvalidArgument(format!("{field}: {e}")))
}

/// `SpiffeId` → `SPIFFEID{trust_domain, path}`.
pub fn proto_id(id: &SpiffeId) -> types::Spiffeid {
    types::Spiffeid {
        trust_domain: id.trust_domain_name().to_owned(),
        path: id.path().to_owned(),
    }
}

/// Proto selectors → a set, refusing malformed ones.
pub fn selectors(field: &str, sels: &[types::Selector]) -> Result<SelectorSet, ApiError> {
    sels.iter()
        .map(|s| {
            Selector::new(s.r#type.clone(), s.value.clone())
                .map_err(|e| ApiError::InvalidArgument(format!("{field}: {e}")))
        })
        .collect()
}

/// A set → proto selectors.
pub fn proto_selectors<'a>(sels: impl IntoIterator<Item = &'a Selector>) -> Vec<types::Selector> {
    sels.into_iter()
        .map(|s| types::Selector {
            r#type: s.kind().to_owned(),
            value: s.value().to_owned(),
        })
        .collect()
}

/// SPIRE's match behaviour enum → ours.
pub fn match_behavior(value: i32) -> MatchBehavior {
    use types::selector_match::MatchBehavior as M;
    match M::try_from(value).unwrap_or(M::MatchExact) {
        M::MatchExact => MatchBehavior::Exact,
        M::MatchSubset => MatchBehavior::Subset,
        M::MatchSuperset => MatchBehavior::Superset,
        M::MatchAny => MatchBehavior::Any,
    }
}

/// Parses and checks an entry from the API (create, or a fully specified update), as
/// SPIRE validates registration entries. `id` and timestamps are left for the caller.
pub fn entry_from_proto(e: &types::Entry, td: &TrustDomain) -> Result<RegistrationEntry, ApiError> {
    let spiffe = spiffe_id("spiffe_id", e.spiffe_id.as_ref())?;
    let parent = spiffe_id("parent_id", e.parent_id.as_ref())?;
    let bad = |m: String| ApiError::InvalidArgument(m);
    id::require_member_with_path(&spiffe, td).map_err(|err| bad(format!("spiffe_id: {err}")))?;
    if id::is_reserved(&spiffe) {
        return Err(bad(format!(
            "spiffe_id: {spiffe} is reserved for servers and agents (path under /spire)"
        )));
    }
    id::require_member_with_path(&parent, td).map_err(|err| bad(format!("parent_id: {err}")))?;
    if e.selectors.is_empty() {
        return Err(bad("selectors: at least one selector is required".into()));
    }
    let selectors = selectors("selectors", &e.selectors)?;
    if !e.id.is_empty() && !valid_entry_id(&e.id) {
        return Err(bad(format!(
            "id: {:?} must be 1 to 255 characters of [A-Za-z0-9._-]",
            e.id
        )));
    }
    if e.x509_svid_ttl < 0 {
        return Err(bad("x509_svid_ttl: must not be negative".into()));
    }
    if e.jwt_svid_ttl < 0 {
        return Err(bad("jwt_svid_ttl: must not be negative".into()));
    }
    if e.expires_at < 0 {
        return Err(bad("expires_at: must not be negative".into()));
    }
    if let Some(dns) = e.dns_names.iter().find(|d| !valid_dns_name(d)) {
        return Err(bad(format!("dns_names: {dns:?} is not a valid DNS name")));
    }
    if e.hint.len() > MAX_HINT_LEN {
        return Err(bad(format!("hint: longer than {MAX_HINT_LEN} characters")));
    }
    let federates_with = e
        .federates_with
        .iter()
        .map(|t| {
            id::parse_trust_domain(t)
                .map(|td| td.to_string())
                .map_err(|err| bad(format!("federates_with: {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RegistrationEntry {
        id: e.id.clone(),
        spiffe_id: spiffe,
        parent_id: parent,
        selectors,
        x509_svid_ttl: e.x509_svid_ttl,
        jwt_svid_ttl: e.jwt_svid_ttl,
        dns_names: e.dns_names.clone(),
        federates_with,
        admin: e.admin,
        downstream: e.downstream,
        hint: e.hint.clone(),
        expires_at: e.expires_at,
        revision_number: 0,
        created_at: 0,
        store_svid: e.store_svid,
    })
}

/// An entry → proto, keeping only the fields in `mask` (all when `mask` is `None`). The ID
/// is always set.
pub fn entry_to_proto(e: &RegistrationEntry, mask: Option<&types::EntryMask>) -> types::Entry {
    let all = types::EntryMask {
        spiffe_id: true,
        parent_id: true,
        selectors: true,
        x509_svid_ttl: true,
        federates_with: true,
        admin: true,
        downstream: true,
        expires_at: true,
        dns_names: true,
        revision_number: true,
        store_svid: true,
        jwt_svid_ttl: true,
        hint: true,
        created_at: true,
        additional_attributes: true,
    };
    let m = mask.unwrap_or(&all);
    types::Entry {
        id: e.id.clone(),
        spiffe_id: m.spiffe_id.then(|| proto_id(&e.spiffe_id)),
        parent_id: m.parent_id.then(|| proto_id(&e.parent_id)),
        selectors: if m.selectors {
            proto_selectors(e.selectors.iter())
        } else {
            vec![]
        },
        x509_svid_ttl: if m.x509_svid_ttl { e.x509_svid_ttl } else { 0 },
        federates_with: if m.federates_with {
            e.federates_with.clone()
        } else {
            vec![]
        },
        admin: m.admin && e.admin,
        downstream: m.downstream && e.downstream,
        expires_at: if m.expires_at { e.expires_at } else { 0 },
        dns_names: if m.dns_names {
            e.dns_names.clone()
        } else {
            vec![]
        },
        revision_number: if m.revision_number {
            e.revision_number
        } else {
            0
        },
        store_svid: m.store_svid && e.store_svid,
        jwt_svid_ttl: if m.jwt_svid_ttl { e.jwt_svid_ttl } else { 0 },
        hint: if m.hint {
            e.hint.clone()
        } else {
            String::new()
        },
        created_at: if m.created_at { e.created_at } else { 0 },
        additional_attributes: None,
    }
}

/// A node → SPIRE's `Agent`.
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
        id: Some(proto_id(&n.spiffe_id)),
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
            proto_selectors(n.selectors.iter())
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

/// A bundle → proto, honouring `mask`.
pub fn bundle_to_proto(b: &Bundle, mask: Option<&types::BundleMask>) -> types::Bundle {
    let all = types::BundleMask {
        x509_authorities: true,
        jwt_authorities: true,
        refresh_hint: true,
        sequence_number: true,
        wit_authorities: true,
    };
    let m = mask.unwrap_or(&all);
    types::Bundle {
        trust_domain: b.trust_domain.to_string(),
        x509_authorities: if m.x509_authorities {
            b.x509_authorities
                .iter()
                .map(|a| types::X509Certificate {
                    asn1: a.der.clone(),
                    tainted: a.tainted,
                })
                .collect()
        } else {
            vec![]
        },
        jwt_authorities: if m.jwt_authorities {
            b.jwt_authorities
                .iter()
                .map(|k| types::JwtKey {
                    public_key: k.public_key.clone(),
                    key_id: k.key_id.clone(),
                    expires_at: k.expires_at,
                    tainted: k.tainted,
                })
                .collect()
        } else {
            vec![]
        },
        refresh_hint: if m.refresh_hint { b.refresh_hint } else { 0 },
        sequence_number: if m.sequence_number {
            b.sequence_number
        } else {
            0
        },
        wit_authorities: vec![],
    }
}

/// A proto bundle → ours, checking the trust domain and that every root parses as a CA
/// certificate and every JWT key has an ID and a parseable public key.
pub fn bundle_from_proto(b: &types::Bundle) -> Result<Bundle, ApiError> {
    let td = id::parse_trust_domain(&b.trust_domain)
        .map_err(|e| ApiError::InvalidArgument(format!("trust_domain: {e}")))?;
    let x509_authorities = b
        .x509_authorities
        .iter()
        .map(|a| {
            X509Certificate::from_der(&a.asn1).map_err(|e| {
                ApiError::InvalidArgument(format!("x509_authorities: not a DER certificate: {e}"))
            })?;
            Ok(X509Authority {
                der: a.asn1.clone(),
                tainted: a.tainted,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let jwt_authorities = b
        .jwt_authorities
        .iter()
        .map(|k| {
            if k.key_id.is_empty() {
                return Err(ApiError::InvalidArgument(
                    "jwt_authorities: key_id is required".into(),
                ));
            }
            x509_parser::x509::SubjectPublicKeyInfo::from_der(&k.public_key).map_err(|e| {
                ApiError::InvalidArgument(format!("jwt_authorities: malformed public key: {e}"))
            })?;
            Ok(JwtKey {
                public_key: k.public_key.clone(),
                key_id: k.key_id.clone(),
                expires_at: k.expires_at,
                tainted: k.tainted,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Bundle {
        trust_domain: td,
        x509_authorities,
        jwt_authorities,
        refresh_hint: b.refresh_hint,
        sequence_number: b.sequence_number,
    })
}

pub use signet_common::x509::{CertInfo, cert_info, serial_hex, spiffe_id_of_cert};

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        id::parse_trust_domain("example.org").unwrap()
    }

    fn pid(path: &str) -> Option<types::Spiffeid> {
        Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: path.into(),
        })
    }

    fn valid() -> types::Entry {
        types::Entry {
            spiffe_id: pid("/workload"),
            parent_id: pid("/spire/agent/join_token/t"),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1000".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_valid_entry() {
        let e = entry_from_proto(&valid(), &td()).unwrap();
        assert_eq!(e.spiffe_id.to_string(), "spiffe://example.org/workload");
        let back = entry_to_proto(&e, None);
        assert_eq!(back.spiffe_id, pid("/workload"));
    }

    #[test]
    fn refuses_bad_entries_naming_the_field() {
        type Mutation = Box<dyn Fn(&mut types::Entry)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|e| e.spiffe_id = None), "spiffe_id"),
            (Box::new(|e| e.spiffe_id = pid("/a//b")), "spiffe_id"),
            (Box::new(|e| e.spiffe_id = pid("/a/")), "spiffe_id"),
            (Box::new(|e| e.spiffe_id = pid("/a/../b")), "spiffe_id"),
            (Box::new(|e| e.spiffe_id = pid("")), "spiffe_id"),
            (
                Box::new(|e| e.spiffe_id = pid("/spire/agent/x")),
                "reserved",
            ),
            (
                Box::new(|e| {
                    e.spiffe_id = Some(types::Spiffeid {
                        trust_domain: "other.org".into(),
                        path: "/w".into(),
                    })
                }),
                "trust domain",
            ),
            (
                Box::new(|e| {
                    e.spiffe_id = Some(types::Spiffeid {
                        trust_domain: "Example.org".into(),
                        path: "/w".into(),
                    })
                }),
                "spiffe_id",
            ),
            (Box::new(|e| e.parent_id = None), "parent_id"),
            (Box::new(|e| e.selectors.clear()), "selectors"),
            (Box::new(|e| e.selectors[0].value.clear()), "selectors"),
            (
                Box::new(|e| e.selectors[0].r#type = "a:b".into()),
                "selectors",
            ),
            (Box::new(|e| e.x509_svid_ttl = -1), "x509_svid_ttl"),
            (
                Box::new(|e| e.dns_names = vec!["bad name".into()]),
                "dns_names",
            ),
            (Box::new(|e| e.id = "bad/id".into()), "id"),
            (
                Box::new(|e| e.federates_with = vec!["spiffe://Bad".into()]),
                "federates_with",
            ),
        ];
        for (mutate, needle) in cases {
            let mut e = valid();
            mutate(&mut e);
            let err = entry_from_proto(&e, &td()).unwrap_err();
            assert!(matches!(err, ApiError::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn serials_are_trimmed_lowercase_hex() {
        assert_eq!(serial_hex(&[0x00, 0x0a, 0xbc]), "abc");
        assert_eq!(serial_hex(&[0]), "0");
    }
}
