//! Bundle renderings for `bundle show|list|set` and `x509 mint`: the X.509 roots as PEM,
//! and the SPIFFE bundle document (a JWKS with `spiffe_sequence` / `spiffe_refresh_hint`)
//! laid out as go-spiffe marshals it and SPIRE indents it.
//!
//! These four functions are the seam to swap for `signet_common::bundle`'s JSON/PEM helpers
//! once they exist; they work on the API's `types::Bundle` directly.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::{Deserialize, Serialize};
use signet_proto::types;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION,
};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::cli::output::pem_block;

/// The bundle's X.509 roots, one PEM `CERTIFICATE` block each.
pub(crate) fn to_pem(bundle: &types::Bundle) -> anyhow::Result<String> {
    let mut out = String::new();
    for authority in &bundle.x509_authorities {
        for der in split_certificates(&authority.asn1)? {
            out.push_str(&pem_block("CERTIFICATE", der));
        }
    }
    Ok(out)
}

/// The SPIFFE bundle document, indented by four spaces, without a trailing newline.
pub(crate) fn to_spiffe_json(bundle: &types::Bundle) -> anyhow::Result<String> {
    let mut keys = Vec::new();
    for (i, authority) in bundle.x509_authorities.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(&authority.asn1)
            .map_err(|e| anyhow::anyhow!("unable to parse root CA {i}: {e}"))?;
        let mut jwk = jwk_from_spki(cert.public_key())?;
        jwk.use_ = "x509-svid".to_owned();
        jwk.x5c = Some(vec![STANDARD.encode(&authority.asn1)]);
        keys.push(jwk);
    }
    for (i, key) in bundle.jwt_authorities.iter().enumerate() {
        let (_, spki) = SubjectPublicKeyInfo::from_der(&key.public_key)
            .map_err(|e| anyhow::anyhow!("unable to parse JWT signing key {i}: {e}"))?;
        let mut jwk = jwk_from_spki(&spki)?;
        jwk.use_ = "jwt-svid".to_owned();
        jwk.kid = Some(key.key_id.clone());
        keys.push(jwk);
    }
    let doc = Doc {
        keys: (!keys.is_empty()).then_some(keys),
        spiffe_sequence: (bundle.sequence_number > 0).then_some(bundle.sequence_number),
        spiffe_refresh_hint: (bundle.refresh_hint > 0).then_some(bundle.refresh_hint),
    };
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    doc.serialize(&mut serde_json::Serializer::with_formatter(&mut buf, fmt))?;
    Ok(String::from_utf8(buf)?)
}

/// A bundle for `trust_domain` holding the PEM certificates in `bytes` as X.509 roots.
pub(crate) fn from_pem(trust_domain: &str, bytes: &[u8]) -> anyhow::Result<types::Bundle> {
    let mut x509_authorities = Vec::new();
    for (n, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes).enumerate() {
        let (kind, der) = section.map_err(|e| anyhow::anyhow!("{e}"))?;
        if kind != SectionKind::Certificate {
            anyhow::bail!("expected block type \"CERTIFICATE\"; got {kind:?}");
        }
        X509Certificate::from_der(&der).map_err(|e| {
            anyhow::anyhow!("unable to parse \"CERTIFICATE\" PEM block {}: {e}", n + 1)
        })?;
        x509_authorities.push(types::X509Certificate {
            asn1: der,
            tainted: false,
        });
    }
    if x509_authorities.is_empty() {
        anyhow::bail!("no PEM blocks");
    }
    Ok(types::Bundle {
        trust_domain: trust_domain.to_owned(),
        x509_authorities,
        ..Default::default()
    })
}

/// A bundle for `trust_domain` from a SPIFFE bundle document.
pub(crate) fn from_spiffe_json(trust_domain: &str, bytes: &[u8]) -> anyhow::Result<types::Bundle> {
    let doc: Doc = serde_json::from_slice(bytes).context("unable to parse JWKS")?;
    let Some(keys) = doc.keys else {
        anyhow::bail!("no authorities found");
    };
    let mut bundle = types::Bundle {
        trust_domain: trust_domain.to_owned(),
        refresh_hint: doc.spiffe_refresh_hint.unwrap_or_default(),
        sequence_number: doc.spiffe_sequence.unwrap_or_default(),
        ..Default::default()
    };
    for (i, key) in keys.into_iter().enumerate() {
        match key.use_.as_str() {
            "x509-svid" => {
                let certs = key.x5c.unwrap_or_default();
                let [cert] = certs.as_slice() else {
                    anyhow::bail!(
                        "expected a single certificate in x509-svid entry {i}; got {}",
                        certs.len()
                    );
                };
                let der = STANDARD.decode(cert).context("invalid x5c")?;
                X509Certificate::from_der(&der)
                    .map_err(|e| anyhow::anyhow!("invalid certificate in entry {i}: {e}"))?;
                bundle.x509_authorities.push(types::X509Certificate {
                    asn1: der,
                    tainted: false,
                });
            }
            "jwt-svid" => {
                let kid = key.kid.clone().unwrap_or_default();
                if kid.is_empty() {
                    anyhow::bail!("error adding authority {i} of JWKS: keyID cannot be empty");
                }
                let public_key = spki_from_jwk(&key)
                    .with_context(|| format!("error adding authority {i} of JWKS"))?;
                bundle.jwt_authorities.push(types::JwtKey {
                    public_key,
                    key_id: kid,
                    expires_at: 0,
                    tainted: false,
                });
            }
            _ => {}
        }
    }
    Ok(bundle)
}

/// The SPIFFE bundle document, fields in go-spiffe's order.
#[derive(Debug, Serialize, Deserialize)]
struct Doc {
    keys: Option<Vec<Jwk>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spiffe_sequence: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spiffe_refresh_hint: Option<i64>,
}

/// A public JWK, fields in go-jose's order.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Jwk {
    #[serde(rename = "use", default)]
    use_: String,
    #[serde(default)]
    kty: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x5c: Option<Vec<String>>,
}

/// Splits concatenated DER certificates.
fn split_certificates(mut der: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
    let mut certs = Vec::new();
    while !der.is_empty() {
        let (rest, _) = X509Certificate::from_der(der)
            .map_err(|e| anyhow::anyhow!("unable to parse certificates ASN.1 DER data: {e}"))?;
        let len = der.len() - rest.len();
        certs.push(&der[..len]);
        der = rest;
    }
    Ok(certs)
}

/// EC curves a JWK can name: JWK name, DER-encoded OID, coordinate size.
const CURVES: [(&str, &[u8], usize); 3] = [
    (
        "P-256",
        &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        32,
    ),
    ("P-384", &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22], 48),
    ("P-521", &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23], 66),
];
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const RSA_ENCRYPTION_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn jwk_from_spki(spki: &SubjectPublicKeyInfo<'_>) -> anyhow::Result<Jwk> {
    let key = spki
        .parsed()
        .map_err(|e| anyhow::anyhow!("unsupported public key: {e}"))?;
    match key {
        PublicKey::EC(point) if spki.algorithm.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .context("EC key without a named curve")?;
            let name = if curve == OID_EC_P256 {
                "P-256"
            } else if curve == OID_NIST_EC_P384 {
                "P-384"
            } else if curve == OID_NIST_EC_P521 {
                "P-521"
            } else {
                anyhow::bail!("unsupported EC curve {curve}");
            };
            let data = point.data();
            let size = (data.len().saturating_sub(1)) / 2;
            if data.first() != Some(&4) || size == 0 {
                anyhow::bail!("unsupported EC point encoding");
            }
            Ok(Jwk {
                kty: "EC".to_owned(),
                crv: Some(name.to_owned()),
                x: Some(URL_SAFE_NO_PAD.encode(&data[1..=size])),
                y: Some(URL_SAFE_NO_PAD.encode(&data[1 + size..])),
                ..Default::default()
            })
        }
        PublicKey::RSA(rsa) if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION => Ok(Jwk {
            kty: "RSA".to_owned(),
            n: Some(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.modulus))),
            e: Some(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent))),
            ..Default::default()
        }),
        _ => anyhow::bail!("unsupported public key type"),
    }
}

/// PKIX (SubjectPublicKeyInfo) DER for an EC or RSA JWK.
fn spki_from_jwk(jwk: &Jwk) -> anyhow::Result<Vec<u8>> {
    let b64 = |field: &Option<String>, name: &str| -> anyhow::Result<Vec<u8>> {
        let text = field
            .as_deref()
            .with_context(|| format!("missing {name}"))?;
        URL_SAFE_NO_PAD
            .decode(text.trim_end_matches('='))
            .with_context(|| format!("invalid {name}"))
    };
    match jwk.kty.as_str() {
        "EC" => {
            let crv = jwk.crv.as_deref().unwrap_or_default();
            let (_, oid, size) = CURVES
                .iter()
                .find(|(name, _, _)| *name == crv)
                .with_context(|| format!("unsupported elliptic curve {crv:?}"))?;
            let (x, y) = (b64(&jwk.x, "x")?, b64(&jwk.y, "y")?);
            if x.len() != *size || y.len() != *size {
                anyhow::bail!("invalid EC key: coordinates must be {size} bytes");
            }
            let mut point = vec![0x00, 0x04];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let alg = tlv(0x30, &[EC_PUBLIC_KEY_OID, oid].concat());
            Ok(tlv(0x30, &[alg, tlv(0x03, &point)].concat()))
        }
        "RSA" => {
            let (n, e) = (b64(&jwk.n, "n")?, b64(&jwk.e, "e")?);
            let key = tlv(0x30, &[der_uint(&n), der_uint(&e)].concat());
            let alg = tlv(0x30, &[RSA_ENCRYPTION_OID, &[0x05, 0x00]].concat());
            let bits = [&[0x00][..], &key].concat();
            Ok(tlv(0x30, &[alg, tlv(0x03, &bits)].concat()))
        }
        other => anyhow::bail!("unsupported key type {other:?}"),
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A DER INTEGER holding the unsigned big-endian `bytes`.
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let digits = strip_zeros(bytes);
    let mut body = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(digits);
    tlv(0x02, &body)
}

/// A DER tag-length-value.
fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.extend(u8::try_from(len));
    } else {
        let bytes = len.to_be_bytes();
        let digits = strip_zeros(&bytes);
        out.extend(u8::try_from(0x80 | digits.len()));
        out.extend_from_slice(digits);
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests;
