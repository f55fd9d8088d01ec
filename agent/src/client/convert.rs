//! Server API messages → the agent's model. The server is trusted but its messages are
//! still network input: anything malformed is an error, never a panic.

use signet_common::bundle::{Bundle, JwtKey, X509Authority};
use signet_common::entry::RegistrationEntry;
use signet_common::id::{self, SpiffeId, TrustDomain};
use signet_common::selector::{Selector, SelectorSet};
use signet_proto::types;

use crate::client::error::ClientError;

fn malformed(what: impl Into<String>) -> ClientError {
    ClientError::Malformed(what.into())
}

/// `SPIFFEID{trust_domain, path}` → a parsed ID.
pub fn spiffe_id(field: &str, id: Option<&types::Spiffeid>) -> Result<SpiffeId, ClientError> {
    let id = id.ok_or_else(|| malformed(format!("{field}: missing")))?;
    id::from_parts(&id.trust_domain, &id.path).map_err(|e| malformed(format!("{field}: {e}")))
}

/// A registration entry as the server sent it.
pub fn entry(e: &types::Entry) -> Result<RegistrationEntry, ClientError> {
    let ctx = |m: String| malformed(format!("entry {:?}: {m}", e.id));
    if e.id.is_empty() {
        return Err(malformed("entry without an ID"));
    }
    let selectors = e
        .selectors
        .iter()
        .map(|s| Selector::new(s.r#type.clone(), s.value.clone()))
        .collect::<Result<SelectorSet, _>>()
        .map_err(|err| ctx(format!("selectors: {err}")))?;
    let federates_with = e
        .federates_with
        .iter()
        .map(|t| {
            id::parse_trust_domain(t)
                .map(|td| td.to_string())
                .map_err(|err| ctx(format!("federates_with: {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RegistrationEntry {
        id: e.id.clone(),
        spiffe_id: spiffe_id("spiffe_id", e.spiffe_id.as_ref())
            .map_err(|err| ctx(err.to_string()))?,
        parent_id: spiffe_id("parent_id", e.parent_id.as_ref())
            .map_err(|err| ctx(err.to_string()))?,
        selectors,
        x509_svid_ttl: e.x509_svid_ttl,
        jwt_svid_ttl: e.jwt_svid_ttl,
        dns_names: e.dns_names.clone(),
        federates_with,
        admin: e.admin,
        downstream: e.downstream,
        hint: e.hint.clone(),
        expires_at: e.expires_at,
        revision_number: e.revision_number,
        created_at: e.created_at,
        store_svid: e.store_svid,
    })
}

/// A bundle as the server sent it; it must be for `expected`.
pub fn bundle(b: types::Bundle, expected: &TrustDomain) -> Result<Bundle, ClientError> {
    let td = id::parse_trust_domain(&b.trust_domain)
        .map_err(|e| malformed(format!("bundle trust_domain: {e}")))?;
    if td != *expected {
        return Err(malformed(format!(
            "bundle for {td} where {expected} was asked for"
        )));
    }
    Ok(Bundle {
        trust_domain: td,
        x509_authorities: b
            .x509_authorities
            .into_iter()
            .map(|a| X509Authority {
                der: a.asn1,
                tainted: a.tainted,
            })
            .collect(),
        jwt_authorities: b
            .jwt_authorities
            .into_iter()
            .map(|k| JwtKey {
                public_key: k.public_key,
                key_id: k.key_id,
                expires_at: k.expires_at,
                tainted: k.tainted,
            })
            .collect(),
        refresh_hint: b.refresh_hint,
        sequence_number: b.sequence_number,
    })
}

/// An X509-SVID: its chain, which must be non-empty and whose leaf must carry `expected`
/// (when given) as its SPIFFE ID.
pub fn x509_svid(
    svid: Option<types::X509svid>,
    expected: Option<&SpiffeId>,
) -> Result<(SpiffeId, Vec<Vec<u8>>), ClientError> {
    let svid = svid.ok_or_else(|| malformed("response without an SVID"))?;
    let id = spiffe_id("svid id", svid.id.as_ref())?;
    let leaf = svid
        .cert_chain
        .first()
        .ok_or_else(|| malformed("SVID with an empty chain"))?;
    let info = signet_common::x509::cert_info(leaf)
        .ok_or_else(|| malformed("SVID leaf without a valid SPIFFE ID"))?;
    if info.id != id || expected.is_some_and(|e| *e != id) {
        return Err(malformed(format!(
            "SVID for {} where {} was expected",
            info.id,
            expected.unwrap_or(&id)
        )));
    }
    Ok((id, svid.cert_chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_entry() -> types::Entry {
        types::Entry {
            id: "e1".into(),
            spiffe_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: "/web".into(),
            }),
            parent_id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: "/spire/agent/join_token/t".into(),
            }),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1000".into(),
            }],
            federates_with: vec!["spiffe://other.org".into()],
            revision_number: 3,
            created_at: 7,
            ..Default::default()
        }
    }

    #[test]
    fn converts_an_entry() {
        let e = entry(&proto_entry()).unwrap();
        assert_eq!(e.spiffe_id.to_string(), "spiffe://example.org/web");
        assert_eq!(e.federates_with, vec!["other.org".to_owned()]);
        assert_eq!((e.revision_number, e.created_at), (3, 7));
        assert_eq!(e.selectors.len(), 1);
    }

    #[test]
    fn malformed_entries_are_errors() {
        let mut p = proto_entry();
        p.spiffe_id = None;
        assert!(entry(&p).is_err());
        let mut p = proto_entry();
        p.selectors[0].r#type = String::new();
        assert!(entry(&p).is_err());
        let mut p = proto_entry();
        p.id = String::new();
        assert!(entry(&p).is_err());
    }

    #[test]
    fn a_bundle_for_another_trust_domain_is_refused() {
        let td = id::parse_trust_domain("example.org").unwrap();
        let b = types::Bundle {
            trust_domain: "other.org".into(),
            ..Default::default()
        };
        assert!(bundle(b, &td).is_err());
    }
}
