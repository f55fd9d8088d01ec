use signet_common::bundle::{JwtKey, X509Authority, parse_pem_certs};
use signet_common::id::parse_trust_domain;

use super::*;

fn bundle() -> Bundle {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root = params.self_signed(&key).unwrap();
    let mut b = Bundle::new(parse_trust_domain("example.org").unwrap());
    b.x509_authorities.push(X509Authority {
        der: root.der().to_vec(),
        tainted: false,
    });
    b.jwt_authorities.push(JwtKey {
        public_key: rcgen::PublicKeyData::subject_public_key_info(&key),
        key_id: "k1".into(),
        expires_at: 0,
        tainted: false,
    });
    b.sequence_number = 3;
    b
}

#[test]
fn formats_parse_by_spires_names_only() {
    assert_eq!("pem".parse(), Ok(BundleFormat::Pem));
    assert_eq!("spiffe".parse(), Ok(BundleFormat::Spiffe));
    assert_eq!("jwks".parse(), Ok(BundleFormat::Jwks));
    assert!("PEM".parse::<BundleFormat>().is_err());
}

#[test]
fn pem_holds_exactly_the_roots() {
    let b = bundle();
    let pem = render(&b, BundleFormat::Pem, None);
    assert_eq!(
        parse_pem_certs(&pem).unwrap(),
        vec![b.x509_authorities[0].der.clone()]
    );
}

#[test]
fn jwks_has_roots_with_x5c_and_jwt_keys_with_kid_and_no_use() {
    let v: serde_json::Value =
        serde_json::from_str(&render(&bundle(), BundleFormat::Jwks, None)).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys[0]["x5c"].is_array() && keys[0].get("kid").is_none());
    assert_eq!(keys[1]["kid"], "k1");
    assert!(keys.iter().all(|k| k.get("use").is_none()));
    assert!(v.get("spiffe_sequence").is_none());
}

#[test]
fn spiffe_format_carries_the_refresh_hint_when_set() {
    let b = bundle();
    let plain: serde_json::Value =
        serde_json::from_str(&render(&b, BundleFormat::Spiffe, None)).unwrap();
    assert!(plain.get("spiffe_refresh_hint").is_none());
    assert_eq!(plain["spiffe_sequence"], 3);
    let hinted: serde_json::Value = serde_json::from_str(&render(
        &b,
        BundleFormat::Spiffe,
        Some(Duration::from_secs(300)),
    ))
    .unwrap();
    assert_eq!(hinted["spiffe_refresh_hint"], 300);
}
