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
        0x30, 0x56, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05,
        0x2b, 0x81, 0x04, 0x00, 0x0a, 0x03, 0x42, 0x00, 0x04,
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
            0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n, 0x05, 0x00,
        ]
    };
    let mut params = vec![0xa0, 0x0f];
    params.extend(hash(sha));
    params.extend([
        0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08,
    ]);
    params.extend(hash(mgf_sha));
    params.extend([0xa2, 0x03, 0x02, 0x01, salt]);
    let mut der = vec![
        0x30, 0x41, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a, 0x30, 0x34,
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
