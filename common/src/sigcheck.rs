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
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, RsaKeySize, SignatureAlgorithm,
    };
    use x509_parser::prelude::FromDer;

    fn key(alg: &'static SignatureAlgorithm) -> KeyPair {
        KeyPair::generate_for(alg).unwrap()
    }

    fn rsa_key() -> KeyPair {
        KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap()
    }

    fn self_signed(key: &KeyPair, cn: &str) -> Vec<u8> {
        let mut params = CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.self_signed(key).unwrap().der().to_vec()
    }

    fn csr(key: &KeyPair) -> Vec<u8> {
        let params = CertificateParams::new(vec!["signet.example.org".to_owned()]).unwrap();
        params.serialize_request(key).unwrap().der().to_vec()
    }

    fn cert(der: &[u8]) -> X509Certificate<'_> {
        let (rest, cert) = X509Certificate::from_der(der).unwrap();
        assert!(rest.is_empty());
        cert
    }

    fn check_cert(der: &[u8]) -> Result<(), SigError> {
        let c = cert(der);
        verify_cert(&c, c.public_key())
    }

    fn check_csr(der: &[u8]) -> Result<(), SigError> {
        let (rest, csr) = X509CertificationRequest::from_der(der).unwrap();
        assert!(rest.is_empty());
        verify_csr(&csr)
    }

    /// The DER with one bit of the signature's last byte flipped (the signature BIT STRING
    /// ends the structure, so the result still parses).
    fn flip_signature_bit(der: &[u8]) -> Vec<u8> {
        let mut der = der.to_vec();
        if let Some(last) = der.last_mut() {
            *last ^= 0x01;
        }
        der
    }

    /// The DER with one byte of `needle` (inside the signed part) changed.
    fn tamper_tbs(der: &[u8], needle: &[u8]) -> Vec<u8> {
        let at = der.windows(needle.len()).position(|w| w == needle).unwrap();
        let mut der = der.to_vec();
        der[at] ^= 0x20;
        der
    }

    fn all_keys() -> Vec<(&'static str, KeyPair)> {
        vec![
            ("P-256", key(&rcgen::PKCS_ECDSA_P256_SHA256)),
            ("P-384", key(&rcgen::PKCS_ECDSA_P384_SHA384)),
            ("P-521", key(&rcgen::PKCS_ECDSA_P521_SHA512)),
            ("Ed25519", key(&rcgen::PKCS_ED25519)),
            ("RSA-2048", rsa_key()),
        ]
    }

    #[test]
    fn self_signed_certs_verify_and_tampering_is_caught() {
        for (what, key) in all_keys() {
            let der = self_signed(&key, "signet sigcheck");
            assert_eq!(check_cert(&der), Ok(()), "{what}");
            assert_eq!(
                check_cert(&flip_signature_bit(&der)),
                Err(SigError::BadSignature),
                "{what}: flipped signature bit"
            );
            assert_eq!(
                check_cert(&tamper_tbs(&der, b"signet sigcheck")),
                Err(SigError::BadSignature),
                "{what}: changed subject"
            );
        }
    }

    #[test]
    fn csrs_verify_and_tampering_is_caught() {
        for (what, key) in all_keys() {
            let der = csr(&key);
            assert_eq!(check_csr(&der), Ok(()), "{what}");
            assert_eq!(
                check_csr(&flip_signature_bit(&der)),
                Err(SigError::BadSignature),
                "{what}: flipped signature bit"
            );
            assert_eq!(
                check_csr(&tamper_tbs(&der, b"signet.example.org")),
                Err(SigError::BadSignature),
                "{what}: changed requested SAN"
            );
        }
    }

    #[test]
    fn a_leaf_verifies_under_its_issuer_only() {
        let ca_key = key(&rcgen::PKCS_ECDSA_P384_SHA384);
        let ca_der = self_signed(&ca_key, "ca");
        let mut ca_params = CertificateParams::new(vec![]).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ca");
        let issuer = Issuer::new(ca_params, &ca_key);
        // A P-256 leaf signed by the P-384 CA: ecdsa-with-SHA384 on P-384.
        let leaf_key = key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let leaf_der = CertificateParams::new(vec!["leaf.example.org".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap()
            .der()
            .to_vec();
        let (ca, leaf) = (cert(&ca_der), cert(&leaf_der));
        assert_eq!(verify_cert(&leaf, ca.public_key()), Ok(()));

        // Same algorithm, wrong P-384 key.
        let other_der = self_signed(&key(&rcgen::PKCS_ECDSA_P384_SHA384), "ca");
        let other = cert(&other_der);
        assert_eq!(
            verify_cert(&leaf, other.public_key()),
            Err(SigError::BadSignature)
        );
        // The leaf's own P-256 key is on the wrong curve for that signature but still a
        // supported pairing (ECDSA P-256 with SHA-384): it just does not verify.
        assert_eq!(
            verify_cert(&leaf, leaf.public_key()),
            Err(SigError::BadSignature)
        );
        // An RSA key cannot have made an ECDSA signature.
        let rsa_der = self_signed(&rsa_key(), "rsa");
        let rsa = cert(&rsa_der);
        let err = verify_cert(&leaf, rsa.public_key()).unwrap_err();
        assert!(
            matches!(&err, SigError::Unsupported(m) if m.contains("ecdsa-with-SHA384") && m.contains("rsaEncryption")),
            "{err}"
        );
    }

    fn alg_id(der: &[u8]) -> AlgorithmIdentifier<'_> {
        let (rest, alg) = AlgorithmIdentifier::from_der(der).unwrap();
        assert!(rest.is_empty());
        alg
    }

    /// sha1WithRSAEncryption, NULL parameters.
    const SHA1_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
    ];
    /// Ed448.
    const ED448: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71];
    /// sha256WithRSAEncryption, NULL parameters.
    const SHA256_WITH_RSA: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
    ];

    #[test]
    fn unsupported_algorithms_are_named() {
        let key = rsa_key();
        let der = self_signed(&key, "rsa");
        let c = cert(&der);
        let message = c.tbs_certificate.as_ref();
        let signature: &[u8] = &c.signature_value.data;
        assert_eq!(
            verify(c.public_key(), &alg_id(SHA256_WITH_RSA), message, signature),
            Ok(())
        );

        let err = verify(c.public_key(), &alg_id(SHA1_WITH_RSA), message, signature).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signature unsupported algorithm: sha1WithRSAEncryption (1.2.840.113549.1.1.5)"
        );
        let err = verify(c.public_key(), &alg_id(ED448), message, signature).unwrap_err();
        assert!(
            matches!(&err, SigError::Unsupported(m) if m.contains("1.3.101.113")),
            "{err}"
        );
    }

    #[test]
    fn ecdsa_on_an_unsupported_curve_is_refused() {
        // secp256k1 SubjectPublicKeyInfo (the point itself is never looked at).
        let mut spki_der = vec![
            0x30, 0x56, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a, 0x03, 0x42, 0x00, 0x04,
        ];
        spki_der.extend([0x11; 64]);
        let (_, spki) = SubjectPublicKeyInfo::from_der(&spki_der).unwrap();
        let ecdsa_sha256: &[u8] = &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ];
        let err = verify(&spki, &alg_id(ecdsa_sha256), b"m", b"s").unwrap_err();
        assert!(
            matches!(&err, SigError::Unsupported(m) if m.contains("ECDSA on curve") && m.contains("1.3.132.0.10")),
            "{err}"
        );
    }

    /// RSASSA-PSS AlgorithmIdentifier (RFC 4055) with SHA-2 hash `sha` (1 = SHA-256,
    /// 2 = SHA-384, 3 = SHA-512) for both the message and MGF1, and salt length `salt`.
    fn pss_alg_id(sha: u8, mgf_sha: u8, salt: u8) -> Vec<u8> {
        let hash = |n: u8| {
            vec![
                0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n, 0x05,
                0x00,
            ]
        };
        let mut params = vec![0xa0, 0x0f];
        params.extend(hash(sha));
        params.extend([
            0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
            0x08,
        ]);
        params.extend(hash(mgf_sha));
        params.extend([0xa2, 0x03, 0x02, 0x01, salt]);
        let mut der = vec![
            0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30,
            0x34,
        ];
        der.extend(params);
        der
    }

    #[test]
    fn rsa_pss_verifies_with_matching_parameters() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{RSA_PSS_SHA256, RSA_PSS_SHA384, RsaKeyPair};

        let key = rsa_key();
        let der = self_signed(&key, "rsa");
        let c = cert(&der);
        let pair = RsaKeyPair::from_pkcs8(key.serialized_der()).unwrap();
        let message = b"signet proof of possession";
        let sign = |enc| {
            let mut sig = vec![0; pair.public_modulus_len()];
            pair.sign(enc, &SystemRandom::new(), message, &mut sig)
                .unwrap();
            sig
        };
        let (sig256, sig384) = (sign(&RSA_PSS_SHA256), sign(&RSA_PSS_SHA384));
        let spki = c.public_key();

        assert_eq!(
            verify(spki, &alg_id(&pss_alg_id(1, 1, 32)), message, &sig256),
            Ok(())
        );
        assert_eq!(
            verify(spki, &alg_id(&pss_alg_id(2, 2, 48)), message, &sig384),
            Ok(())
        );
        // Right parameters, wrong hash for this signature / tampered message / flipped bit.
        assert_eq!(
            verify(spki, &alg_id(&pss_alg_id(2, 2, 48)), message, &sig256),
            Err(SigError::BadSignature)
        );
        assert_eq!(
            verify(spki, &alg_id(&pss_alg_id(1, 1, 32)), b"another", &sig256),
            Err(SigError::BadSignature)
        );
        let mut flipped = sig256.clone();
        flipped[10] ^= 0x80;
        assert_eq!(
            verify(spki, &alg_id(&pss_alg_id(1, 1, 32)), message, &flipped),
            Err(SigError::BadSignature)
        );
        // Parameters aws-lc-rs would not honour are refused, not mis-verified.
        for (bad, why) in [
            (pss_alg_id(1, 1, 20), "salt"),
            (pss_alg_id(1, 2, 32), "MGF1"),
        ] {
            let err = verify(spki, &alg_id(&bad), message, &sig256).unwrap_err();
            assert!(
                matches!(&err, SigError::Unsupported(m) if m.contains(why)),
                "{err}"
            );
        }
        // RSASSA-PSS without parameters means SHA-1.
        let no_params: &[u8] = &[
            0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
        ];
        assert!(matches!(
            verify(spki, &alg_id(no_params), message, &sig256),
            Err(SigError::Unsupported(_))
        ));
    }

    #[test]
    fn signature_bit_strings_must_be_whole_octets() {
        let key = key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let der = self_signed(&key, "p256");
        let mut c = cert(&der);
        assert_eq!(verify_cert(&c, c.public_key()), Ok(()));
        c.signature_value.unused_bits = 1;
        let issuer = cert(&der);
        assert_eq!(
            verify_cert(&c, issuer.public_key()),
            Err(SigError::BadSignature)
        );
    }
}
