//! Public keys between their X.509 form (SubjectPublicKeyInfo DER) and their JWK form
//! (RFC 7517/7518 `kty` with `crv`/`x`/`y` or `n`/`e`). EC P-256/P-384/P-521 and RSA only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The key members of a JWK.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct KeyParams {
    pub(crate) kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) e: Option<String>,
}

// DER of the algorithm OIDs (tag and length included).
const OID_EC_PUBLIC_KEY_DER: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_RSA_ENCRYPTION_DER: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const DER_NULL: &[u8] = &[0x05, 0x00];

struct Curve {
    name: &'static str,
    coord_len: usize,
    oid_der: &'static [u8],
}

const CURVES: [Curve; 3] = [
    Curve {
        name: "P-256",
        coord_len: 32,
        oid_der: &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    },
    Curve {
        name: "P-384",
        coord_len: 48,
        oid_der: &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
    },
    Curve {
        name: "P-521",
        coord_len: 66,
        oid_der: &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
    },
];

/// The JWK members describing the key in `spki_der`.
pub(crate) fn params_from_spki(spki_der: &[u8]) -> Result<KeyParams, String> {
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| format!("invalid SubjectPublicKeyInfo: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after SubjectPublicKeyInfo".into());
    }
    params_from_parsed_spki(&spki)
}

/// The JWK members describing the key in a parsed SubjectPublicKeyInfo.
pub(crate) fn params_from_parsed_spki(
    spki: &SubjectPublicKeyInfo<'_>,
) -> Result<KeyParams, String> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve_oid = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or("EC key without a named curve")?;
        let curve = if curve_oid == OID_EC_P256 {
            &CURVES[0]
        } else if curve_oid == OID_NIST_EC_P384 {
            &CURVES[1]
        } else if curve_oid == OID_NIST_EC_P521 {
            &CURVES[2]
        } else {
            return Err(format!("unsupported EC curve {curve_oid}"));
        };
        let point = spki.subject_public_key.data.as_ref();
        let n = curve.coord_len;
        if point.len() != 1 + 2 * n || point.first() != Some(&0x04) {
            return Err("EC point is not an uncompressed point on the curve".into());
        }
        Ok(KeyParams {
            kty: "EC".into(),
            crv: Some(curve.name.into()),
            x: Some(URL_SAFE_NO_PAD.encode(&point[1..=n])),
            y: Some(URL_SAFE_NO_PAD.encode(&point[1 + n..])),
            ..KeyParams::default()
        })
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err("invalid RSA public key".into());
        };
        Ok(KeyParams {
            kty: "RSA".into(),
            n: Some(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.modulus))),
            e: Some(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent))),
            ..KeyParams::default()
        })
    } else {
        Err(format!("unsupported key algorithm {alg}"))
    }
}

/// The SubjectPublicKeyInfo DER for the JWK members `p`.
pub(crate) fn spki_from_params(p: &KeyParams) -> Result<Vec<u8>, String> {
    let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let v = v
            .as_deref()
            .ok_or_else(|| format!("{} key without {name:?}", p.kty))?;
        URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("{name:?} is not base64url"))
    };
    match p.kty.as_str() {
        "EC" => {
            let crv = p.crv.as_deref().ok_or("EC key without \"crv\"")?;
            let curve = CURVES
                .iter()
                .find(|c| c.name == crv)
                .ok_or_else(|| format!("unsupported EC curve {crv:?}"))?;
            let (x, y) = (field(&p.x, "x")?, field(&p.y, "y")?);
            if x.len() != curve.coord_len || y.len() != curve.coord_len {
                return Err(format!(
                    "{crv} coordinates must be {} bytes",
                    curve.coord_len
                ));
            }
            let alg = tlv(0x30, &[OID_EC_PUBLIC_KEY_DER, curve.oid_der].concat());
            let point = [&[0x00, 0x04][..], &x, &y].concat();
            Ok(tlv(0x30, &[alg, tlv(0x03, &point)].concat()))
        }
        "RSA" => {
            let (n, e) = (field(&p.n, "n")?, field(&p.e, "e")?);
            if strip_zeros(&n).is_empty() || strip_zeros(&e).is_empty() {
                return Err("RSA key with a zero modulus or exponent".into());
            }
            let alg = tlv(0x30, &[OID_RSA_ENCRYPTION_DER, DER_NULL].concat());
            let key = tlv(0x30, &[uint(&n), uint(&e)].concat());
            let bits = [&[0x00][..], &key].concat();
            Ok(tlv(0x30, &[alg, tlv(0x03, &bits)].concat()))
        }
        other => Err(format!("unsupported key type {other:?}")),
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// A DER INTEGER holding the unsigned big-endian value `b`.
fn uint(b: &[u8]) -> Vec<u8> {
    let b = strip_zeros(b);
    let mut content = Vec::with_capacity(b.len() + 1);
    if b.first().is_none_or(|&x| x & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(b);
    tlv(0x02, &content)
}

/// A DER tag-length-value with a definite length.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let len_bytes = strip_zeros(&bytes);
        out.push(0x80 | len_bytes.len() as u8);
        out.extend_from_slice(len_bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Arbitrary coordinates: the encoding does not check that the point is on the curve.
    fn p256_params() -> KeyParams {
        KeyParams {
            kty: "EC".into(),
            crv: Some("P-256".into()),
            x: Some(URL_SAFE_NO_PAD.encode([1u8; 32])),
            y: Some(URL_SAFE_NO_PAD.encode([2u8; 32])),
            ..KeyParams::default()
        }
    }

    #[test]
    fn ec_params_round_trip_through_spki() {
        let spki = spki_from_params(&p256_params()).unwrap();
        assert_eq!(spki.len(), 91);
        assert_eq!(params_from_spki(&spki).unwrap(), p256_params());
    }

    #[test]
    fn rsa_params_round_trip_through_spki() {
        let mut n = vec![0xc5u8; 256];
        n[255] = 0x01;
        let p = KeyParams {
            kty: "RSA".into(),
            n: Some(URL_SAFE_NO_PAD.encode(&n)),
            e: Some(URL_SAFE_NO_PAD.encode([1, 0, 1])),
            ..KeyParams::default()
        };
        let spki = spki_from_params(&p).unwrap();
        assert_eq!(params_from_spki(&spki).unwrap(), p);
    }

    #[test]
    fn rejects_bad_params() {
        let mut p = p256_params();
        p.x = Some(URL_SAFE_NO_PAD.encode([1u8; 31]));
        assert!(spki_from_params(&p).is_err());
        let mut p = p256_params();
        p.crv = Some("P-192".into());
        assert!(spki_from_params(&p).is_err());
        let p = KeyParams {
            kty: "oct".into(),
            ..KeyParams::default()
        };
        assert!(spki_from_params(&p).is_err());
        assert!(params_from_spki(b"garbage").is_err());
    }
}
