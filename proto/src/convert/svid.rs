//! X509-SVIDs as the server returns them.

use signet_common::id::SpiffeId;

use super::ConvertError;
use super::id::spiffe_id;
use crate::types;

/// An X509-SVID → its SPIFFE ID and chain. The chain must be non-empty and its leaf must
/// carry the SVID's ID, and `expected` when given.
pub fn x509_svid(
    svid: Option<types::X509svid>,
    expected: Option<&SpiffeId>,
) -> Result<(SpiffeId, Vec<Vec<u8>>), ConvertError> {
    let svid = svid.ok_or_else(|| ConvertError::new("svid", "SVID is required"))?;
    let id = spiffe_id("svid.id", svid.id.as_ref())?;
    let leaf = svid
        .cert_chain
        .first()
        .ok_or_else(|| ConvertError::new("svid.cert_chain", "the chain is empty"))?;
    let info = signet_common::x509::cert_info(leaf)
        .ok_or_else(|| ConvertError::new("svid.cert_chain", "the leaf has no valid SPIFFE ID"))?;
    if info.id != id || expected.is_some_and(|e| *e != id) {
        return Err(ConvertError::new(
            "svid",
            format!(
                "SVID for {} where {} was expected",
                info.id,
                expected.unwrap_or(&id)
            ),
        ));
    }
    Ok((id, svid.cert_chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_missing_svid_or_an_empty_chain() {
        assert_eq!(x509_svid(None, None).unwrap_err().field, "svid");
        let svid = types::X509svid {
            id: Some(types::Spiffeid {
                trust_domain: "example.org".into(),
                path: "/spire/agent/x".into(),
            }),
            ..Default::default()
        };
        let err = x509_svid(Some(svid), None).unwrap_err();
        assert_eq!(err.field, "svid.cert_chain");
    }
}
