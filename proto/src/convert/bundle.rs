//! Trust bundles: SPIRE's `types.Bundle` ↔ [`Bundle`].

use signet_common::bundle::{Bundle, JwtKey, X509Authority};
use signet_common::id;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

use super::ConvertError;
use crate::types;

/// A proto bundle → ours, checking the trust domain and that every root parses as a
/// certificate and every JWT key has an ID and a parseable public key.
impl TryFrom<&types::Bundle> for Bundle {
    type Error = ConvertError;

    fn try_from(b: &types::Bundle) -> Result<Self, ConvertError> {
        let trust_domain = id::parse_trust_domain(&b.trust_domain)
            .map_err(|e| ConvertError::new("trust_domain", e))?;
        let x509_authorities = b
            .x509_authorities
            .iter()
            .map(|a| {
                X509Certificate::from_der(&a.asn1).map_err(|e| {
                    ConvertError::new("x509_authorities", format!("not a DER certificate: {e}"))
                })?;
                Ok(X509Authority {
                    der: a.asn1.clone(),
                    tainted: a.tainted,
                })
            })
            .collect::<Result<Vec<_>, ConvertError>>()?;
        let jwt_authorities = b
            .jwt_authorities
            .iter()
            .map(|k| {
                if k.key_id.is_empty() {
                    return Err(ConvertError::new("jwt_authorities", "key_id is required"));
                }
                SubjectPublicKeyInfo::from_der(&k.public_key).map_err(|e| {
                    ConvertError::new("jwt_authorities", format!("malformed public key: {e}"))
                })?;
                Ok(JwtKey {
                    public_key: k.public_key.clone(),
                    key_id: k.key_id.clone(),
                    expires_at: k.expires_at,
                    tainted: k.tainted,
                })
            })
            .collect::<Result<Vec<_>, ConvertError>>()?;
        Ok(Bundle {
            trust_domain,
            x509_authorities,
            jwt_authorities,
            refresh_hint: b.refresh_hint,
            sequence_number: b.sequence_number,
        })
    }
}

impl From<&Bundle> for types::Bundle {
    fn from(b: &Bundle) -> Self {
        bundle_to_proto(b, None)
    }
}

/// A bundle → proto, keeping only the fields in `mask` (all when `mask` is `None`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_root_that_is_not_a_certificate_or_a_key_without_an_id() {
        let mut b = types::Bundle {
            trust_domain: "example.org".into(),
            x509_authorities: vec![types::X509Certificate {
                asn1: b"not der".to_vec(),
                tainted: false,
            }],
            ..Default::default()
        };
        let err = Bundle::try_from(&b).unwrap_err();
        assert_eq!(err.field, "x509_authorities");
        b.x509_authorities.clear();
        b.jwt_authorities.push(types::JwtKey::default());
        let err = Bundle::try_from(&b).unwrap_err();
        assert_eq!(err.to_string(), "jwt_authorities: key_id is required");
        b.jwt_authorities.clear();
        let back = types::Bundle::from(&Bundle::try_from(&b).unwrap());
        assert_eq!(back.trust_domain, "example.org");
    }
}
