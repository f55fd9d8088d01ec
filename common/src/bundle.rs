//! Trust bundles: the X.509 roots and JWT public keys of one trust domain, and their
//! SPIFFE bundle (JWKS) form.

use serde::{Deserialize, Serialize};

use crate::id::TrustDomain;

/// One X.509 root (or upstream root) of a trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X509Authority {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Set when the key is suspected compromised; agents re-issue what chains to it.
    pub tainted: bool,
}

/// One JWT signing public key of a trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtKey {
    /// The public key, PKIX (SubjectPublicKeyInfo) DER.
    pub public_key: Vec<u8>,
    /// The `kid` tokens carry.
    pub key_id: String,
    /// Unix seconds after which the key signs nothing valid.
    pub expires_at: i64,
    /// Set when the key is suspected compromised.
    pub tainted: bool,
}

/// The bundle of one trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The trust domain name (`example.org`).
    #[serde(with = "serde_td")]
    pub trust_domain: TrustDomain,
    /// X.509 roots.
    pub x509_authorities: Vec<X509Authority>,
    /// JWT public keys.
    pub jwt_authorities: Vec<JwtKey>,
    /// Seconds; how often consumers should refresh (0 = unset).
    pub refresh_hint: i64,
    /// Bumped on every change.
    pub sequence_number: u64,
}

impl Bundle {
    /// An empty bundle for `trust_domain`.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            x509_authorities: vec![],
            jwt_authorities: vec![],
            refresh_hint: 0,
            sequence_number: 0,
        }
    }

    /// Adds the roots and keys of `other` that this bundle lacks (by DER, by key ID).
    /// Returns whether anything was added.
    pub fn merge(&mut self, x509: &[X509Authority], jwt: &[JwtKey]) -> bool {
        let mut changed = false;
        for a in x509 {
            if !self.x509_authorities.iter().any(|have| have.der == a.der) {
                self.x509_authorities.push(a.clone());
                changed = true;
            }
        }
        for k in jwt {
            if !self
                .jwt_authorities
                .iter()
                .any(|have| have.key_id == k.key_id)
            {
                self.jwt_authorities.push(k.clone());
                changed = true;
            }
        }
        changed
    }

    /// The X.509 roots as one buffer of concatenated DER (the Workload API's form).
    pub fn x509_der_concat(&self) -> Vec<u8> {
        self.x509_authorities
            .iter()
            .flat_map(|a| a.der.iter().copied())
            .collect()
    }
}

mod serde_td {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::id::TrustDomain;

    pub(super) fn serialize<S: Serializer>(td: &TrustDomain, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(td)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TrustDomain, D::Error> {
        let s = String::deserialize(d)?;
        crate::id::parse_trust_domain(&s).map_err(serde::de::Error::custom)
    }
}
