//! Certificate and token profiles, request validation, CSR checks.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use signet_common::bundle::to_jwks;
use x509_parser::oid_registry::OID_X509_SERIALNUMBER;
use x509_parser::prelude::FromDer;

use super::*;
use crate::ca::{CaError, JwtSvidParams};

fn subject_values(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_attributes()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn ca_certificate_has_the_spire_ca_profile() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let der = ca.active_x509_ca_der().unwrap();
    let cert = parse(&der);

    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        format!("{:?}", san.general_names),
        r#"[URI("spiffe://example.org")]"#
    );
    let serial = cert.serial.to_str_radix(10);
    let sn: Vec<_> = cert
        .subject()
        .iter_by_oid(&OID_X509_SERIALNUMBER)
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(sn, [serial.as_str()]);
    assert_eq!(subject_values(&cert), ["US", "SPIFFE", serial.as_str()]);
    assert!(cert.serial.bits() <= 128 && cert.serial.bits() > 0);

    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign() && !ku.value.digital_signature());
    assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
    let spk = &cert.public_key().subject_public_key.data;
    assert_eq!(ski(&cert), super::super::template::key_id(spk));
    assert_eq!(cert.validity().not_before.timestamp(), START - 10);
    assert_eq!(cert.validity().not_after.timestamp(), START + 24 * 3600);
    signet_common::sigcheck::verify_cert(&cert, cert.public_key()).expect("self-signed");

    let state = ca.active_x509_authority().unwrap();
    assert_eq!(state.authority_id, hex(&ski(&cert)));
    assert_eq!(state.expires_at, START + 24 * 3600);
    assert_eq!(fx.root_ders().await, [der]);
}

#[tokio::test]
async fn ca_subject_is_configurable() {
    let fx = Fixture::new();
    let mut cfg = config();
    cfg.ca_subject = CaSubject {
        country: vec!["DE".into()],
        organization: vec!["Acme".into(), "Acme Labs".into()],
        common_name: "Acme CA".into(),
    };
    let ca = fx.ca(cfg).await;
    let der = ca.active_x509_ca_der().unwrap();
    let cert = parse(&der);
    let values = subject_values(&cert);
    assert_eq!(values[..4], ["DE", "Acme", "Acme Labs", "Acme CA"]);
    // Leaves still name this subject byte for byte.
    let (_, pk) = workload_key();
    let svid = ca
        .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
        .unwrap();
    assert_signed_by(&svid.chain[0], &der);
}

#[tokio::test]
async fn x509_svid_has_the_spire_profile_and_parses_with_the_spiffe_crate() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let (key, pk) = workload_key();
    let mut params = svid_params("spiffe://example.org/ns/web", pk);
    params.dns_names = vec!["web.example.org".into(), "*.web.example.org".into()];
    let svid = ca.sign_x509_svid(params).unwrap();
    assert_eq!(svid.chain.len(), 1, "self-signed CA: the leaf alone");

    let parsed =
        spiffe::X509Svid::parse_from_der(&svid.chain.concat(), &key.serialize_der()).unwrap();
    assert_eq!(
        parsed.spiffe_id().to_string(),
        "spiffe://example.org/ns/web"
    );

    let leaf = parse(&svid.chain[0]);
    assert_eq!(subject_values(&leaf), ["US", "SPIRE", "web.example.org"]);
    let san = leaf.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        format!("{:?}", san.general_names),
        r#"[URI("spiffe://example.org/ns/web"), DNSName("web.example.org"), DNSName("*.web.example.org")]"#
    );
    let ku = leaf.key_usage().unwrap().unwrap();
    assert!(ku.critical);
    assert!(
        ku.value.digital_signature() && ku.value.key_encipherment() && ku.value.key_agreement()
    );
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(
        !leaf
            .basic_constraints()
            .unwrap()
            .expect("BasicConstraints present")
            .value
            .ca
    );
    assert_eq!(
        ski(&leaf),
        super::super::template::key_id(key.public_key_raw())
    );
    assert_eq!(leaf.serial.to_str_radix(16), svid.serial);
    assert_eq!(leaf.validity().not_before.timestamp(), START - 10);
    assert_eq!(leaf.validity().not_after.timestamp(), START + 3600);
    assert_eq!(svid.expires_at, START + 3600);

    let root = &fx.root_ders().await[0];
    assert_signed_by(&svid.chain[0], root);
    let bundle =
        spiffe::X509Bundle::parse_from_der(td(), &fx.bundle().await.x509_der_concat()).unwrap();
    assert_eq!(bundle.authorities().len(), 1);
}

#[tokio::test]
async fn svid_ttl_defaults_by_kind_and_never_outlives_the_ca() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let sign = |kind, ttl| {
        let (_, pk) = workload_key();
        let mut p = svid_params("spiffe://example.org/spire/agent/join_token/x", pk);
        (p.kind, p.ttl) = (kind, ttl);
        ca.sign_x509_svid(p).unwrap().expires_at - START
    };
    assert_eq!(sign(SvidKind::Workload, Duration::ZERO), 3600);
    assert_eq!(sign(SvidKind::Server, Duration::ZERO), 3600);
    assert_eq!(sign(SvidKind::Agent, Duration::ZERO), 7200);
    assert_eq!(sign(SvidKind::Workload, Duration::from_secs(90)), 90);
    assert_eq!(
        sign(SvidKind::Workload, 1000 * HOUR),
        24 * 3600,
        "capped at the CA's NotAfter"
    );
    assert_eq!(sign(SvidKind::Workload, Duration::MAX), 24 * 3600);
}

#[tokio::test]
async fn rejects_invalid_requests() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let (_, pk) = workload_key();
    for bad_id in ["spiffe://other.org/w", "spiffe://example.org"] {
        let r = ca.sign_x509_svid(svid_params(bad_id, pk.clone()));
        assert!(
            matches!(r, Err(CaError::InvalidRequest(_))),
            "{bad_id}: {r:?}"
        );
    }
    let mut p = svid_params("spiffe://example.org/w", pk.clone());
    p.dns_names = vec!["ok.example.org".into(), "bad name".into()];
    assert!(matches!(
        ca.sign_x509_svid(p),
        Err(CaError::InvalidRequest(_))
    ));
    let p = svid_params(
        "spiffe://example.org/w",
        CsrPublicKey {
            spki_der: vec![0x30, 0x00],
        },
    );
    assert!(matches!(
        ca.sign_x509_svid(p),
        Err(CaError::InvalidRequest(_))
    ));
}

#[test]
fn csr_checks_never_panic_on_arbitrary_bytes() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["a.example.org".into()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://example.org/w".try_into().unwrap(),
    ));
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    let good = Ca::verify_csr(&csr).unwrap();
    assert_eq!(
        rcgen::SubjectPublicKeyInfo::from_der(&good.spki_der)
            .unwrap()
            .der_bytes(),
        key.public_key_raw()
    );

    for garbage in [
        &b""[..],
        b"\x30",
        b"\x30\x80",
        b"not a csr at all",
        &[0xff; 64],
    ] {
        assert!(matches!(
            Ca::verify_csr(garbage),
            Err(CaError::MalformedCsr(_))
        ));
    }
    for len in 0..csr.len() {
        assert!(
            matches!(Ca::verify_csr(&csr[..len]), Err(CaError::MalformedCsr(_))),
            "truncated at {len}"
        );
    }
    let mut with_trailer = csr.clone();
    with_trailer.push(0);
    assert!(matches!(
        Ca::verify_csr(&with_trailer),
        Err(CaError::MalformedCsr(_))
    ));
    // x509-parser is lax about some outer tags, so a few flips outside the signed request
    // info still parse; none of them may change the key that comes out.
    let (_, parsed) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&csr).unwrap();
    let info = parsed.certification_request_info.raw;
    let info_start = info.as_ptr() as usize - csr.as_ptr() as usize;
    let signed = info_start..info_start + info.len();
    for i in 0..csr.len() * 8 {
        let mut flipped = csr.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        if let Ok(pk) = Ca::verify_csr(&flipped) {
            assert_eq!(pk, good, "bit {i}");
            assert!(
                !signed.contains(&(i / 8)),
                "flip of signed byte {} accepted",
                i / 8
            );
        }
    }

    // A CSR whose key was swapped after signing fails the signature check.
    let other = KeyPair::generate().unwrap();
    let mut swapped = csr.clone();
    let at = swapped
        .windows(65)
        .position(|w| w == key.public_key_raw())
        .unwrap();
    swapped[at..at + 65].copy_from_slice(other.public_key_raw());
    let err = Ca::verify_csr(&swapped).unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
}

fn jwt_params(aud: &[&str], ttl: Duration) -> JwtSvidParams {
    JwtSvidParams {
        spiffe_id: id("spiffe://example.org/ns/web"),
        audience: aud.iter().map(|a| (*a).to_owned()).collect(),
        ttl,
    }
}

#[derive(serde::Deserialize, Debug)]
struct TestClaims {
    sub: String,
    aud: Vec<String>,
    exp: i64,
    iat: i64,
    iss: Option<String>,
}

async fn verify_jwt(
    fx: &Fixture,
    token: &str,
    alg: Algorithm,
    aud: &str,
) -> (jsonwebtoken::Header, TestClaims) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwks: JwkSet = serde_json::from_str(&to_jwks(&fx.bundle().await)).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid is in the JWKS");
    let mut validation = Validation::new(alg);
    validation.set_audience(&[aud]);
    validation.validate_exp = false; // The fake clock is not the wall clock.
    let data = jsonwebtoken::decode::<TestClaims>(
        token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    (header, data.claims)
}

#[tokio::test]
async fn jwt_svid_verifies_against_the_bundle_jwks() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let svid = ca
        .sign_jwt_svid(jwt_params(&["", "aud-1", "aud-2"], Duration::ZERO))
        .unwrap();
    let (header, claims) = verify_jwt(&fx, &svid.token, Algorithm::ES256, "aud-2").await;
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.unwrap();
    assert_eq!(kid.len(), 32);
    assert!(kid.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(claims.sub, "spiffe://example.org/ns/web");
    assert_eq!(claims.aud, ["aud-1", "aud-2"]);
    assert_eq!((claims.iat, claims.exp), (START, START + 300));
    assert_eq!((svid.issued_at, svid.expires_at), (START, START + 300));
    assert_eq!(claims.iss, None);

    let wrong = jsonwebtoken::decode::<TestClaims>(
        &svid.token,
        &DecodingKey::from_jwk(
            &serde_json::from_str::<JwkSet>(&to_jwks(&fx.bundle().await))
                .unwrap()
                .keys[0],
        )
        .unwrap(),
        &{
            let mut v = Validation::new(Algorithm::ES256);
            v.set_audience(&["someone-else"]);
            v.validate_exp = false;
            v
        },
    );
    assert!(wrong.is_err(), "wrong audience is rejected");
}

#[tokio::test]
async fn jwt_svid_rules() {
    let fx = Fixture::new();
    let mut cfg = config();
    cfg.jwt_issuer = Some("https://oidc.example.org".into());
    let ca = fx.ca(cfg).await;
    for aud in [&[][..], &[""][..]] {
        assert!(matches!(
            ca.sign_jwt_svid(jwt_params(aud, Duration::ZERO)),
            Err(CaError::InvalidRequest(_))
        ));
    }
    let mut p = jwt_params(&["a"], Duration::ZERO);
    p.spiffe_id = id("spiffe://other.org/w");
    assert!(matches!(
        ca.sign_jwt_svid(p),
        Err(CaError::InvalidRequest(_))
    ));

    let svid = ca.sign_jwt_svid(jwt_params(&["a"], 1000 * HOUR)).unwrap();
    assert_eq!(
        svid.expires_at,
        START + 24 * 3600,
        "capped at the key's NotAfter"
    );
    let (_, claims) = verify_jwt(&fx, &svid.token, Algorithm::ES256, "a").await;
    assert_eq!(claims.iss.as_deref(), Some("https://oidc.example.org"));
}

#[tokio::test]
async fn p384_authorities_sign_with_sha384() {
    let fx = Fixture::new();
    let mut cfg = config();
    cfg.key_type = KeyType::EcP384;
    let ca = fx.ca(cfg).await;
    let (key, pk) = workload_key();
    let svid = ca
        .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
        .unwrap();
    spiffe::X509Svid::parse_from_der(&svid.chain.concat(), &key.serialize_der()).unwrap();
    assert_signed_by(&svid.chain[0], &fx.root_ders().await[0]);
    let jwt = ca
        .sign_jwt_svid(jwt_params(&["a"], Duration::ZERO))
        .unwrap();
    let (header, _) = verify_jwt(&fx, &jwt.token, Algorithm::ES384, "a").await;
    assert_eq!(header.alg, Algorithm::ES384);
}
