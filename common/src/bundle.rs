//! Trust bundles: the X.509 roots and JWT public keys of one trust domain, and their
//! SPIFFE bundle (JWKS) form.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::id::TrustDomain;
use crate::jwk::{self, KeyParams};

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
        let len = self.x509_authorities.iter().map(|a| a.der.len()).sum();
        let mut out = Vec::with_capacity(len);
        for a in &self.x509_authorities {
            out.extend_from_slice(&a.der);
        }
        out
    }
}

/// Why a bundle document could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The document is not the expected JSON shape.
    #[error("invalid bundle document: {0}")]
    Json(String),
    /// A JWK could not be used (unsupported type, bad parameters, missing `kid`, ...).
    #[error("invalid key in bundle: {0}")]
    Key(String),
    /// A certificate could not be parsed.
    #[error("invalid certificate in bundle: {0}")]
    Certificate(String),
    /// PEM input could not be decoded.
    #[error("invalid PEM: {0}")]
    Pem(String),
}

const USE_X509_SVID: &str = "x509-svid";
const USE_JWT_SVID: &str = "jwt-svid";

/// One JWK as a SPIFFE bundle (or a plain JWKS) carries it.
#[derive(Debug, Serialize, Deserialize)]
struct Jwk {
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    use_: Option<String>,
    #[serde(flatten)]
    key: KeyParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x5c: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct JwkSet {
    keys: Option<Vec<Jwk>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spiffe_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spiffe_refresh_hint: Option<i64>,
}

/// The bundle in the SPIFFE bundle format (a JWK Set with `use` `x509-svid` and `jwt-svid`
/// entries, `spiffe_sequence` and, when set, `spiffe_refresh_hint`), as served by bundle
/// endpoints and shown by `bundle show -format spiffe`. Roots or keys whose public key is
/// not EC (P-256/P-384/P-521) or RSA are left out, with a warning.
pub fn to_spiffe_json(bundle: &Bundle) -> String {
    let mut keys = Vec::new();
    for a in &bundle.x509_authorities {
        match x509_key_params(&a.der) {
            Ok(key) => keys.push(Jwk {
                use_: Some(USE_X509_SVID.into()),
                key,
                kid: None,
                x5c: Some(vec![STANDARD.encode(&a.der)]),
            }),
            Err(error) => tracing::warn!(%error, "Leaving an X.509 authority out of the bundle"),
        }
    }
    keys.extend(jwt_jwks(bundle, Some(USE_JWT_SVID)));
    let set = JwkSet {
        keys: Some(keys),
        spiffe_sequence: Some(bundle.sequence_number),
        spiffe_refresh_hint: (bundle.refresh_hint > 0).then_some(bundle.refresh_hint),
    };
    to_json(&set)
}

/// The JWT authorities as a plain RFC 7517 JWK Set (`kid` and key members, no `use`): what
/// the Workload API's `FetchJWTBundles` serves per trust domain.
pub fn to_jwks(bundle: &Bundle) -> String {
    let set = JwkSet {
        keys: Some(jwt_jwks(bundle, None)),
        spiffe_sequence: None,
        spiffe_refresh_hint: None,
    };
    to_json(&set)
}

/// The whole bundle as a plain RFC 7517 JWK Set: every X.509 root as a key with its
/// certificate in `x5c`, every JWT key with its `kid`, no `use` and no SPIFFE members (SPIRE's
/// `jwks` bundle format, as its bundle publishers write it).
pub fn to_full_jwks(bundle: &Bundle) -> String {
    let mut keys = Vec::new();
    for a in &bundle.x509_authorities {
        match x509_key_params(&a.der) {
            Ok(key) => keys.push(Jwk {
                use_: None,
                key,
                kid: None,
                x5c: Some(vec![STANDARD.encode(&a.der)]),
            }),
            Err(error) => tracing::warn!(%error, "Leaving an X.509 authority out of the bundle"),
        }
    }
    keys.extend(jwt_jwks(bundle, None));
    to_json(&JwkSet {
        keys: Some(keys),
        spiffe_sequence: None,
        spiffe_refresh_hint: None,
    })
}

/// Parses a SPIFFE bundle document for `trust_domain`. Entries with an unknown `use` are
/// ignored; an `x509-svid` entry must carry exactly one certificate whose key matches the
/// JWK members; a `jwt-svid` entry must have a `kid`. JWT keys get `expires_at` 0 (the
/// format carries no expiry) and nothing is tainted.
pub fn from_spiffe_json(trust_domain: TrustDomain, json: &str) -> Result<Bundle, BundleError> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| BundleError::Json(e.to_string()))?;
    let keys = set
        .keys
        .ok_or_else(|| BundleError::Json("missing \"keys\"".into()))?;
    let mut bundle = Bundle::new(trust_domain);
    for jwk in keys {
        match jwk.use_.as_deref() {
            Some(USE_X509_SVID) => {
                let der = x509_from_jwk(&jwk)?;
                bundle.x509_authorities.push(X509Authority {
                    der,
                    tainted: false,
                });
            }
            Some(USE_JWT_SVID) => {
                let key_id = jwk
                    .kid
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| BundleError::Key("jwt-svid entry without a \"kid\"".into()))?;
                let public_key = jwk::spki_from_params(&jwk.key).map_err(BundleError::Key)?;
                bundle.jwt_authorities.push(JwtKey {
                    public_key,
                    key_id,
                    expires_at: 0,
                    tainted: false,
                });
            }
            _ => {}
        }
    }
    bundle.sequence_number = set.spiffe_sequence.unwrap_or(0);
    bundle.refresh_hint = set.spiffe_refresh_hint.unwrap_or(0).max(0);
    Ok(bundle)
}

/// The X.509 authorities as concatenated PEM `CERTIFICATE` blocks.
pub fn x509_authorities_pem(bundle: &Bundle) -> String {
    crate::pem::certificates(bundle.x509_authorities.iter().map(|a| &a.der))
}

/// The DER of every `CERTIFICATE` block in `pem`, in order (other blocks are skipped). Each
/// must parse as an X.509 certificate. No blocks at all gives an empty list.
pub fn parse_pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, BundleError> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = item.map_err(|e| BundleError::Pem(e.to_string()))?;
        check_certificate(&cert)?;
        out.push(cert.to_vec());
    }
    Ok(out)
}

fn jwt_jwks(bundle: &Bundle, use_: Option<&str>) -> Vec<Jwk> {
    let mut keys = Vec::new();
    for k in &bundle.jwt_authorities {
        match jwk::params_from_spki(&k.public_key) {
            Ok(key) => keys.push(Jwk {
                use_: use_.map(str::to_owned),
                key,
                kid: Some(k.key_id.clone()),
                x5c: None,
            }),
            Err(error) => {
                tracing::warn!(%error, key_id = %k.key_id, "Leaving a JWT authority out of the bundle");
            }
        }
    }
    keys
}

fn to_json(set: &JwkSet) -> String {
    // Serializing plain strings and integers cannot fail; fall back to an empty set anyway.
    serde_json::to_string_pretty(set).unwrap_or_else(|_| r#"{"keys": []}"#.to_owned())
}

fn check_certificate(
    der: &[u8],
) -> Result<x509_parser::certificate::X509Certificate<'_>, BundleError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(BundleError::Certificate(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(BundleError::Certificate(e.to_string())),
    }
}

fn x509_key_params(der: &[u8]) -> Result<KeyParams, BundleError> {
    let cert = check_certificate(der)?;
    jwk::params_from_parsed_spki(cert.public_key()).map_err(BundleError::Key)
}

fn x509_from_jwk(jwk: &Jwk) -> Result<Vec<u8>, BundleError> {
    if jwk.kid.is_some() {
        return Err(BundleError::Key(
            "x509-svid entry must not have a \"kid\"".into(),
        ));
    }
    let [cert] = jwk.x5c.as_deref().unwrap_or_default() else {
        return Err(BundleError::Key(
            "x509-svid entry must have exactly one \"x5c\" certificate".into(),
        ));
    };
    let der = STANDARD
        .decode(cert.as_bytes())
        .map_err(|_| BundleError::Certificate("\"x5c\" is not standard base64".into()))?;
    if x509_key_params(&der)? != jwk.key {
        return Err(BundleError::Key(
            "x509-svid key members do not match the certificate".into(),
        ));
    }
    Ok(der)
}

/// Serde helpers that store a `TrustDomain` as its name.
pub mod serde_td {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::id::TrustDomain;

    /// Writes the name.
    pub fn serialize<S: Serializer>(td: &TrustDomain, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(td)
    }

    /// Reads and checks the name.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TrustDomain, D::Error> {
        let s = String::deserialize(d)?;
        crate::id::parse_trust_domain(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, IsCa, KeyPair, PublicKeyData};

    use super::*;
    use crate::id::parse_trust_domain;

    fn root(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn sample() -> Bundle {
        let td = parse_trust_domain("example.org").unwrap();
        let mut b = Bundle::new(td);
        b.x509_authorities.push(X509Authority {
            der: root(&rcgen::PKCS_ECDSA_P256_SHA256),
            tainted: false,
        });
        b.x509_authorities.push(X509Authority {
            der: root(&rcgen::PKCS_ECDSA_P384_SHA384),
            tainted: false,
        });
        for (alg, kid) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, "k1"),
            (&rcgen::PKCS_ECDSA_P384_SHA384, "k2"),
        ] {
            let key = KeyPair::generate_for(alg).unwrap();
            b.jwt_authorities.push(JwtKey {
                public_key: key.subject_public_key_info(),
                key_id: kid.into(),
                expires_at: 0,
                tainted: false,
            });
        }
        b.sequence_number = 7;
        b.refresh_hint = 300;
        b
    }

    #[test]
    fn spiffe_format_round_trips() {
        let b = sample();
        let json = to_spiffe_json(&b);
        let back = from_spiffe_json(b.trust_domain.clone(), &json).unwrap();
        assert_eq!(back, b);

        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["spiffe_sequence"], 7);
        assert_eq!(v["spiffe_refresh_hint"], 300);
        let x = &v["keys"][0];
        assert_eq!(
            (x["use"].as_str(), x["kty"].as_str(), x["crv"].as_str()),
            (Some("x509-svid"), Some("EC"), Some("P-256"))
        );
        assert_eq!(x["x5c"].as_array().unwrap().len(), 1);
        assert!(x.get("kid").is_none());
        let j = &v["keys"][3];
        assert_eq!(
            (j["use"].as_str(), j["kid"].as_str(), j["crv"].as_str()),
            (Some("jwt-svid"), Some("k2"), Some("P-384"))
        );
    }

    #[test]
    fn refresh_hint_is_omitted_when_unset() {
        let mut b = sample();
        b.refresh_hint = 0;
        let v: serde_json::Value = serde_json::from_str(&to_spiffe_json(&b)).unwrap();
        assert!(v.get("spiffe_refresh_hint").is_none());
    }

    #[test]
    fn jwks_has_jwt_keys_only_with_kid_and_no_use() {
        let b = sample();
        let v: serde_json::Value = serde_json::from_str(&to_jwks(&b)).unwrap();
        let keys = v["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        for k in keys {
            assert!(k.get("use").is_none() && k.get("x5c").is_none());
            assert!(k["kid"].is_string());
        }
        assert!(v.get("spiffe_sequence").is_none());
    }

    #[test]
    fn parsing_follows_go_spiffe_rules() {
        let td = parse_trust_domain("example.org").unwrap();
        let b = sample();
        let mut v: serde_json::Value = serde_json::from_str(&to_spiffe_json(&b)).unwrap();
        v["keys"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"use": "wit-svid", "kty": "OKP"}));
        assert_eq!(
            from_spiffe_json(td.clone(), &v.to_string())
                .unwrap()
                .x509_authorities
                .len(),
            2
        );

        let mut two = v.clone();
        let x5c = two["keys"][0]["x5c"][0].clone();
        two["keys"][0]["x5c"].as_array_mut().unwrap().push(x5c);
        assert!(matches!(
            from_spiffe_json(td.clone(), &two.to_string()),
            Err(BundleError::Key(_))
        ));

        let mut no_kid = v.clone();
        no_kid["keys"][2].as_object_mut().unwrap().remove("kid");
        assert!(matches!(
            from_spiffe_json(td.clone(), &no_kid.to_string()),
            Err(BundleError::Key(_))
        ));

        let mut mismatch = v.clone();
        mismatch["keys"][0]["x"] = v["keys"][2]["x"].clone();
        assert!(from_spiffe_json(td.clone(), &mismatch.to_string()).is_err());

        assert!(matches!(
            from_spiffe_json(td.clone(), "{}"),
            Err(BundleError::Json(_))
        ));
        assert!(matches!(
            from_spiffe_json(td, "nope"),
            Err(BundleError::Json(_))
        ));
    }

    #[test]
    fn pem_round_trips() {
        let b = sample();
        let pem = x509_authorities_pem(&b);
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
        let ders = parse_pem_certs(&pem).unwrap();
        let want: Vec<_> = b.x509_authorities.iter().map(|a| a.der.clone()).collect();
        assert_eq!(ders, want);
        assert!(parse_pem_certs("").unwrap().is_empty());
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_pem_certs(bad),
            Err(BundleError::Certificate(_))
        ));
        let unterminated = "-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(matches!(
            parse_pem_certs(unterminated),
            Err(BundleError::Pem(_))
        ));
    }
}
