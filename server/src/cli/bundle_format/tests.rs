use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PublicKeyData as _, SanType};
use signet_proto::types;

use super::*;

fn ca(td: &str) -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
    let cert = params.self_signed(&key).unwrap();
    (key, cert.der().to_vec())
}

fn bundle_with(roots: Vec<Vec<u8>>) -> types::Bundle {
    types::Bundle {
        trust_domain: "example.org".into(),
        x509_authorities: roots
            .into_iter()
            .map(|asn1| types::X509Certificate {
                asn1,
                tainted: false,
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn pem_round_trips_each_root() {
    let (_, a) = ca("example.org");
    let (_, b) = ca("example.org");
    let bundle = bundle_with(vec![a.clone(), b.clone()]);
    let pem = to_pem(&bundle).unwrap();
    assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----\n").count(), 2);
    let back = from_pem("example.org", pem.as_bytes()).unwrap();
    assert_eq!(back, bundle);
}

#[test]
fn concatenated_der_is_split_into_blocks() {
    let (_, a) = ca("example.org");
    let (_, b) = ca("example.org");
    let pem = to_pem(&bundle_with(vec![[a.clone(), b.clone()].concat()])).unwrap();
    let back = from_pem("example.org", pem.as_bytes()).unwrap();
    assert_eq!(back, bundle_with(vec![a, b]));
}

#[test]
fn pem_input_errors_read_like_spire() {
    let err = from_pem("example.org", b"not pem at all").unwrap_err();
    assert_eq!(err.to_string(), "no PEM blocks");
    let (key, _) = ca("example.org");
    let err = from_pem("example.org", key.serialize_pem().as_bytes()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("expected block type \"CERTIFICATE\""),
        "{err}"
    );
    let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(from_pem("example.org", bad.as_bytes()).is_err());
}

#[test]
fn spiffe_json_is_laid_out_like_go_spiffe() {
    let (key, der) = ca("example.org");
    let raw = key.public_key_raw();
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&raw[1..33]),
        URL_SAFE_NO_PAD.encode(&raw[33..]),
    );
    let mut bundle = bundle_with(vec![der.clone()]);
    bundle.jwt_authorities.push(types::JwtKey {
        public_key: key.subject_public_key_info(),
        key_id: "kid-1".into(),
        expires_at: 0,
        tainted: false,
    });
    bundle.sequence_number = 3;
    bundle.refresh_hint = 300;
    let want = format!(
        r#"{{
    "keys": [
        {{
            "use": "x509-svid",
            "kty": "EC",
            "crv": "P-256",
            "x": "{x}",
            "y": "{y}",
            "x5c": [
                "{cert}"
            ]
        }},
        {{
            "use": "jwt-svid",
            "kty": "EC",
            "kid": "kid-1",
            "crv": "P-256",
            "x": "{x}",
            "y": "{y}"
        }}
    ],
    "spiffe_sequence": 3,
    "spiffe_refresh_hint": 300
}}"#,
        cert = STANDARD.encode(&der)
    );
    assert_eq!(to_spiffe_json(&bundle).unwrap(), want);
    assert_eq!(
        from_spiffe_json("example.org", want.as_bytes()).unwrap(),
        bundle
    );
}

#[test]
fn an_empty_bundle_has_null_keys_and_is_refused_on_input() {
    let json = to_spiffe_json(&bundle_with(vec![])).unwrap();
    assert_eq!(json, "{\n    \"keys\": null\n}");
    let err = from_spiffe_json("example.org", json.as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "no authorities found");
}

#[test]
fn jwt_keys_need_a_key_id() {
    let doc =
        r#"{"keys": [{"use": "jwt-svid", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}"#;
    let err = from_spiffe_json("example.org", doc.as_bytes()).unwrap_err();
    assert!(
        format!("{err:#}").contains("keyID cannot be empty"),
        "{err:#}"
    );
}

#[test]
fn ec_and_rsa_jwks_rebuild_the_exact_pkix_key() {
    for alg in [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_RSA_SHA256,
    ] {
        let key = KeyPair::generate_for(alg).unwrap();
        let spki_der = key.subject_public_key_info();
        let (_, spki) = SubjectPublicKeyInfo::from_der(&spki_der).unwrap();
        let jwk = jwk_from_spki(&spki).unwrap();
        assert_eq!(spki_from_jwk(&jwk).unwrap(), spki_der, "{alg:?}");
    }
}

#[test]
fn der_lengths_use_the_long_form_past_127_bytes() {
    assert_eq!(tlv(0x04, &[1; 3]), [0x04, 3, 1, 1, 1]);
    assert_eq!(&tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
    assert_eq!(&tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    assert_eq!(der_uint(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
    assert_eq!(der_uint(&[0x00, 0x01]), [0x02, 0x01, 0x01]);
}
