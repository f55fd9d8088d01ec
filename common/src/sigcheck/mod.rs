//! X.509 signature checks (certificates and PKCS#10 requests) done with aws-lc-rs, so that
//! Signet needs one crypto library only (x509-parser's own `verify` feature pulls in `ring`).
//!
//! Supported, picked from the signature algorithm OID and the signer's key:
//! - ECDSA with SHA-256/384/512 on P-256, P-384 and P-521 (any curve/hash pairing);
//! - RSA PKCS#1 v1.5 with SHA-256/384/512, 2048 to 8192-bit keys;
//! - RSASSA-PSS with SHA-256/384/512, MGF1 with the same hash, salt as long as the hash;
//! - Ed25519.
//!
//! Anything else (SHA-1, Ed448, DSA, ...) is [`SigError::Unsupported`].

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::asn1_rs::{BitString, Oid};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSAENCRYPTION,
    OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA,
    OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384, OID_SIG_ECDSA_WITH_SHA512,
    OID_SIG_ED25519,
};
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// id-mgf1 (RFC 8017), the only mask generation function for RSASSA-PSS.
const ID_MGF1: &str = "1.2.840.113549.1.1.8";

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The algorithm is supported but the signature does not verify under the key (or the
    /// key or signature is malformed).
    #[error("signature verification error")]
    BadSignature,
    /// The signature algorithm, its parameters, or the key type/curve is not supported,
    /// or the key does not fit the algorithm.
    #[error("signature unsupported algorithm: {0}")]
    Unsupported(String),
}

/// Checks that `signature` over `message` verifies under `spki` with the X.509
/// signature algorithm `algorithm`.
pub fn verify(
    spki: &SubjectPublicKeyInfo<'_>,
    algorithm: &AlgorithmIdentifier<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SigError> {
    let alg = select(spki, algorithm)?;
    let key = bit_string_bytes(&spki.subject_public_key)?;
    UnparsedPublicKey::new(alg, key)
        .verify(message, signature)
        .map_err(|_| SigError::BadSignature)
}

/// Checks that `cert` was signed by the holder of `issuer` (for a self-signed certificate,
/// pass `cert.public_key()`).
pub fn verify_cert(
    cert: &X509Certificate<'_>,
    issuer: &SubjectPublicKeyInfo<'_>,
) -> Result<(), SigError> {
    verify(
        issuer,
        &cert.signature_algorithm,
        cert.tbs_certificate.as_ref(),
        bit_string_bytes(&cert.signature_value)?,
    )
}

/// Checks a PKCS#10 request's self-signature (proof of possession of its key).
pub fn verify_csr(csr: &X509CertificationRequest<'_>) -> Result<(), SigError> {
    let info = &csr.certification_request_info;
    verify(
        &info.subject_pki,
        &csr.signature_algorithm,
        info.raw,
        bit_string_bytes(&csr.signature_value)?,
    )
}

/// A BIT STRING's bytes; signatures and keys are whole octets.
fn bit_string_bytes<'a>(bits: &'a BitString<'_>) -> Result<&'a [u8], SigError> {
    if bits.unused_bits == 0 {
        Ok(&bits.data)
    } else {
        Err(SigError::BadSignature)
    }
}

/// The aws-lc-rs algorithm for signature algorithm `sig` made with `spki`'s key.
fn select(
    spki: &SubjectPublicKeyInfo<'_>,
    sig: &AlgorithmIdentifier<'_>,
) -> Result<&'static dyn VerificationAlgorithm, SigError> {
    let sig_oid = &sig.algorithm;
    let key_oid = &spki.algorithm.algorithm;
    let mismatch = || {
        SigError::Unsupported(format!(
            "{} signature with a {} key",
            name(sig_oid),
            name(key_oid)
        ))
    };

    if let Some(alg) = rsa_pkcs1(sig_oid) {
        return if *key_oid == OID_PKCS1_RSAENCRYPTION {
            Ok(alg)
        } else {
            Err(mismatch())
        };
    }
    if *sig_oid == OID_PKCS1_RSASSAPSS {
        return if *key_oid == OID_PKCS1_RSAENCRYPTION || *key_oid == OID_PKCS1_RSASSAPSS {
            rsa_pss(sig)
        } else {
            Err(mismatch())
        };
    }
    if let Some(hash) = ecdsa_hash(sig_oid) {
        if *key_oid != OID_KEY_TYPE_EC_PUBLIC_KEY {
            return Err(mismatch());
        }
        return ecdsa(spki, hash);
    }
    if *sig_oid == OID_SIG_ED25519 {
        return if *key_oid == OID_SIG_ED25519 {
            Ok(&signature::ED25519)
        } else {
            Err(mismatch())
        };
    }
    Err(SigError::Unsupported(name(sig_oid)))
}

fn rsa_pkcs1(sig: &Oid<'_>) -> Option<&'static dyn VerificationAlgorithm> {
    if *sig == OID_PKCS1_SHA256WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA256)
    } else if *sig == OID_PKCS1_SHA384WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA384)
    } else if *sig == OID_PKCS1_SHA512WITHRSA {
        Some(&signature::RSA_PKCS1_2048_8192_SHA512)
    } else {
        None
    }
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_digest_oid(oid: &Oid<'_>) -> Option<Self> {
        if *oid == OID_NIST_HASH_SHA256 {
            Some(Self::Sha256)
        } else if *oid == OID_NIST_HASH_SHA384 {
            Some(Self::Sha384)
        } else if *oid == OID_NIST_HASH_SHA512 {
            Some(Self::Sha512)
        } else {
            None
        }
    }

    fn output_len(self) -> u32 {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }
}

fn ecdsa_hash(sig: &Oid<'_>) -> Option<Hash> {
    if *sig == OID_SIG_ECDSA_WITH_SHA256 {
        Some(Hash::Sha256)
    } else if *sig == OID_SIG_ECDSA_WITH_SHA384 {
        Some(Hash::Sha384)
    } else if *sig == OID_SIG_ECDSA_WITH_SHA512 {
        Some(Hash::Sha512)
    } else {
        None
    }
}

/// ECDSA by the key's named curve (the SPKI algorithm parameters) and the signature's hash.
fn ecdsa(
    spki: &SubjectPublicKeyInfo<'_>,
    hash: Hash,
) -> Result<&'static dyn VerificationAlgorithm, SigError> {
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .ok_or_else(|| SigError::Unsupported("EC key without a named curve".into()))?;
    let alg: &'static dyn VerificationAlgorithm = if curve == OID_EC_P256 {
        match hash {
            Hash::Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
            Hash::Sha384 => &signature::ECDSA_P256_SHA384_ASN1,
            Hash::Sha512 => &signature::ECDSA_P256_SHA512_ASN1,
        }
    } else if curve == OID_NIST_EC_P384 {
        match hash {
            Hash::Sha256 => &signature::ECDSA_P384_SHA256_ASN1,
            Hash::Sha384 => &signature::ECDSA_P384_SHA384_ASN1,
            Hash::Sha512 => &signature::ECDSA_P384_SHA512_ASN1,
        }
    } else if curve == OID_NIST_EC_P521 {
        match hash {
            Hash::Sha256 => &signature::ECDSA_P521_SHA256_ASN1,
            Hash::Sha384 => &signature::ECDSA_P521_SHA384_ASN1,
            Hash::Sha512 => &signature::ECDSA_P521_SHA512_ASN1,
        }
    } else {
        return Err(SigError::Unsupported(format!(
            "ECDSA on curve {}",
            name(&curve)
        )));
    };
    Ok(alg)
}

/// RSASSA-PSS (RFC 4055): aws-lc-rs verifies with MGF1 over the message hash and a salt as
/// long as that hash, so the parameters must say exactly that.
fn rsa_pss(sig: &AlgorithmIdentifier<'_>) -> Result<&'static dyn VerificationAlgorithm, SigError> {
    let bad = |why: &str| SigError::Unsupported(format!("RSASSA-PSS {why}"));
    let params = sig
        .parameters
        .as_ref()
        .ok_or_else(|| bad("without parameters (SHA-1)"))?;
    let params = RsaSsaPssParams::try_from(params).map_err(|_| bad("malformed parameters"))?;
    let hash_oid = params.hash_algorithm_oid();
    let hash = Hash::from_digest_oid(hash_oid)
        .ok_or_else(|| bad(&format!("with hash {}", name(hash_oid))))?;
    let mgf = params
        .mask_gen_algorithm()
        .map_err(|_| bad("malformed mask generation function"))?;
    if mgf.mgf.to_id_string() != ID_MGF1 || mgf.hash != *hash_oid {
        return Err(bad(
            "with a mask generation function other than MGF1 over the same hash",
        ));
    }
    if params.salt_length() != hash.output_len() {
        return Err(bad(&format!(
            "with a {}-byte salt (must be {})",
            params.salt_length(),
            hash.output_len()
        )));
    }
    if params.trailer_field() != 1 {
        return Err(bad("with a trailer field other than 1"));
    }
    Ok(match hash {
        Hash::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
        Hash::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
        Hash::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
    })
}

/// `sha1WithRSAEncryption (1.2.840.113549.1.1.5)`, or just the dotted OID if unknown.
fn name(oid: &Oid<'_>) -> String {
    match oid2sn(oid, oid_registry()) {
        Ok(sn) => format!("{sn} ({})", oid.to_id_string()),
        Err(_) => oid.to_id_string(),
    }
}

#[cfg(test)]
mod tests;
