//! Token verification with real keys (ES256 and RS256) and a JWKS file in a temp dir, and
//! the handler end to end below the transport: what is signed, for whom, for how long.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;
use tonic::Code;
use tonic::metadata::MetadataMap;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use super::*;
use crate::api::tests::api_state;

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE: &str = "istio-ca";

/// A token signing key and its public JWK (with `kid` and `alg`).
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Key {
    fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(&pair.serialize_der()),
        )
    }

    fn rs256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let encoding = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
        Self::new(kid, Algorithm::RS256, encoding)
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        Self {
            kid: kid.into(),
            alg,
            encoding,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signs with this key but names `kid` in the header.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn write_jwks(path: &Path, keys: &[&Key]) {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    };
    std::fs::write(path, serde_json::to_string_pretty(&set).unwrap()).unwrap();
}

/// A projected service-account token's claims, as the kubelet requests them.
fn claims(namespace: &str, sa: &str) -> Value {
    json!({
        "aud": [AUDIENCE],
        "exp": NOW + 3600,
        "iat": NOW,
        "nbf": NOW,
        "iss": ISSUER,
        "sub": format!("system:serviceaccount:{namespace}:{sa}"),
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": "web-7d9f", "uid": "0d5f4a4e-2a8e-4d0b-9d1c-3c1f6f0a9b11"},
            "serviceaccount": {"name": sa, "uid": "5b8c1d0e-6a43-4a8e-b7b1-0f5e2c3d4a55"}
        }
    })
}

struct Fixture {
    _dir: TempDir,
    jwks: PathBuf,
    key: Key,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let jwks = dir.path().join("jwks.json");
        let key = Key::es256("k8s-key-1");
        write_jwks(&jwks, &[&key]);
        Self {
            _dir: dir,
            jwks,
            key,
        }
    }

    fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(ISSUER.into(), AUDIENCE.into(), &self.jwks).unwrap()
    }

    fn verify(&self, token: &str) -> Result<ServiceAccount, TokenError> {
        self.verifier().verify(token, NOW)
    }

    fn config(&self) -> IstioCaConfig {
        IstioCaConfig {
            token_issuer: ISSUER.into(),
            token_audience: AUDIENCE.into(),
            jwks_path: self.jwks.clone(),
            max_validity: Duration::from_secs(12 * 3600),
            default_validity: Duration::from_secs(6 * 3600),
            server_dns_names: vec![],
        }
    }
}

fn account(namespace: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        namespace: namespace.into(),
        name: name.into(),
    }
}

// === Token verification ===

#[test]
fn accepts_a_projected_es256_token() {
    let fx = Fixture::new();
    let token = fx.key.sign(&claims("web", "frontend"));
    assert_eq!(fx.verify(&token).unwrap(), account("web", "frontend"));
}

#[test]
fn accepts_an_rs256_token_with_a_string_audience() {
    let fx = Fixture::new();
    let rsa = Key::rs256("rsa-1");
    write_jwks(&fx.jwks, &[&fx.key, &rsa]);
    let mut c = claims("payments", "api");
    c["aud"] = json!(AUDIENCE);
    let token = rsa.sign(&c);
    assert_eq!(fx.verify(&token).unwrap(), account("payments", "api"));
}

#[test]
fn accepts_an_audience_among_several() {
    let fx = Fixture::new();
    let mut c = claims("web", "frontend");
    c["aud"] = json!(["https://kubernetes.default.svc", AUDIENCE]);
    assert!(fx.verify(&fx.key.sign(&c)).is_ok());
}

#[test]
fn rejects_a_token_signed_by_another_key() {
    let fx = Fixture::new();
    let other = Key::es256("other");
    let token = other.sign_as(&fx.key.kid, &claims("web", "frontend"));
    let err = fx.verify(&token).unwrap_err();
    assert!(matches!(err, TokenError::Signature), "{err:?}");
    assert_eq!(err.to_string(), "token signature is invalid");
}

#[test]
fn rejects_a_tampered_token() {
    let fx = Fixture::new();
    let token = fx.key.sign(&claims("web", "frontend"));
    let forged = fx.key.sign(&claims("kube-system", "admin"));
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[1] = forged.split('.').nth(1).unwrap();
    let err = fx.verify(&parts.join(".")).unwrap_err();
    assert!(matches!(err, TokenError::Signature), "{err:?}");
}

#[test]
fn rejects_a_wrong_audience() {
    let fx = Fixture::new();
    let mut c = claims("web", "frontend");
    c["aud"] = json!(["https://kubernetes.default.svc"]);
    let err = fx.verify(&fx.key.sign(&c)).unwrap_err();
    assert!(matches!(err, TokenError::Audience(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "token audience does not include \"istio-ca\""
    );
}

#[test]
fn rejects_a_token_expired_on_the_injected_clock() {
    let fx = Fixture::new();
    let token = fx.key.sign(&claims("web", "frontend"));
    let v = fx.verifier();
    // Within go-jose's one-minute leeway it still passes; past it, it is expired.
    assert!(v.verify(&token, NOW + 3600 + 59).is_ok());
    let err = v.verify(&token, NOW + 3600 + 61).unwrap_err();
    assert!(matches!(err, TokenError::Expired), "{err:?}");
    assert_eq!(err.to_string(), "token has expired");
}

#[test]
fn rejects_a_token_not_valid_yet() {
    let fx = Fixture::new();
    let token = fx.key.sign(&claims("web", "frontend"));
    let err = fx.verifier().verify(&token, NOW - 120).unwrap_err();
    assert!(matches!(err, TokenError::NotYetValid), "{err:?}");
}

#[test]
fn rejects_a_wrong_issuer() {
    let fx = Fixture::new();
    let mut c = claims("web", "frontend");
    c["iss"] = json!("https://evil.example");
    let err = fx.verify(&fx.key.sign(&c)).unwrap_err();
    assert!(matches!(err, TokenError::Issuer(_)), "{err:?}");
}

#[test]
fn requires_exp_iss_and_aud() {
    let fx = Fixture::new();
    for claim in ["exp", "iss", "aud"] {
        let mut c = claims("web", "frontend");
        c.as_object_mut().unwrap().remove(claim);
        let err = fx.verify(&fx.key.sign(&c)).unwrap_err();
        assert!(
            matches!(err, TokenError::MissingClaim(_)),
            "{claim}: {err:?}"
        );
    }
}

#[test]
fn rejects_a_token_without_a_namespace() {
    let fx = Fixture::new();
    let mut c = claims("web", "frontend");
    c["kubernetes.io"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    c["sub"] = json!("someone");
    let err = fx.verify(&fx.key.sign(&c)).unwrap_err();
    assert!(matches!(err, TokenError::NoServiceAccount), "{err:?}");
}

#[test]
fn falls_back_to_the_service_account_subject() {
    let fx = Fixture::new();
    let mut c = claims("web", "frontend");
    c.as_object_mut().unwrap().remove("kubernetes.io");
    c["sub"] = json!("system:serviceaccount:shop:cart");
    assert_eq!(
        fx.verify(&fx.key.sign(&c)).unwrap(),
        account("shop", "cart")
    );
}

#[test]
fn rejects_names_that_are_not_kubernetes_names() {
    let fx = Fixture::new();
    for (ns, sa) in [("a/b", "x"), ("web", ".."), ("Web", "x"), ("web", "")] {
        let err = fx.verify(&fx.key.sign(&claims(ns, sa))).unwrap_err();
        assert!(
            matches!(err, TokenError::InvalidName(..)),
            "{ns}/{sa}: {err:?}"
        );
    }
}

#[test]
fn rejects_unknown_or_missing_kid_and_symmetric_algorithms() {
    let fx = Fixture::new();
    let c = claims("web", "frontend");
    let err = fx.verify(&fx.key.sign_as("nope", &c)).unwrap_err();
    assert!(matches!(err, TokenError::UnknownKey(_)), "{err:?}");

    let no_kid =
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &c, &fx.key.encoding).unwrap();
    assert!(matches!(fx.verify(&no_kid), Err(TokenError::NoKeyId)));

    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(fx.key.kid.clone());
    let hs = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(b"secret")).unwrap();
    assert!(matches!(fx.verify(&hs), Err(TokenError::Algorithm(_))));

    assert!(matches!(
        fx.verify("not-a-jwt"),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn rejects_an_algorithm_that_does_not_fit_the_key() {
    let fx = Fixture::new();
    let rsa = Key::rs256("rsa-1");
    // An RS256 token naming the EC key's kid.
    let token = rsa.sign_as(&fx.key.kid, &claims("web", "frontend"));
    assert!(matches!(fx.verify(&token), Err(TokenError::Algorithm(_))));
}

#[test]
fn reloads_the_jwks_when_the_file_changes() {
    let fx = Fixture::new();
    let v = fx.verifier();
    let rotated = Key::es256("k8s-key-2");
    let token = rotated.sign(&claims("web", "frontend"));
    assert!(matches!(
        v.verify(&token, NOW),
        Err(TokenError::UnknownKey(_))
    ));

    write_jwks(&fx.jwks, &[&fx.key, &rotated]);
    assert_eq!(v.verify(&token, NOW).unwrap(), account("web", "frontend"));

    // A broken rewrite keeps the keys in use.
    std::fs::write(&fx.jwks, "{ not json").unwrap();
    assert!(v.verify(&token, NOW).is_ok());
    std::fs::remove_file(&fx.jwks).unwrap();
    assert!(v.verify(&token, NOW).is_ok());
}

#[test]
fn a_missing_or_invalid_jwks_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    let err = TokenVerifier::new(ISSUER.into(), AUDIENCE.into(), &missing).unwrap_err();
    assert!(err.to_string().contains("none.json"), "{err}");
    std::fs::write(&missing, "[]").unwrap();
    assert!(matches!(
        TokenVerifier::new(ISSUER.into(), AUDIENCE.into(), &missing),
        Err(JwksError::Parse(..))
    ));
}

// === The handler ===

fn bearer(token: &str) -> MetadataMap {
    let mut m = MetadataMap::new();
    m.insert("authorization", format!("Bearer {token}").parse().unwrap());
    m
}

fn csr_pem(uri: Option<&str>) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    if let Some(uri) = uri {
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    }
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn request(csr: String, validity: i64) -> pb::IstioCertificateRequest {
    pb::IstioCertificateRequest {
        csr,
        validity_duration: validity,
        metadata: None,
    }
}

/// The service over a fresh store (kept while the returned guard lives).
async fn service(fx: &Fixture) -> (IstioCaService, tempfile::TempDir) {
    let (state, _store, dir) = api_state().await;
    (IstioCaService::new(state, &fx.config()).unwrap(), dir)
}

fn pem_ders(pem: &str) -> Vec<Vec<u8>> {
    signet_common::bundle::parse_pem_certs(pem).unwrap()
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = vec![];
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::URI(u) = name {
                    out.push((*u).to_owned());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn signs_for_the_token_identity_with_the_root_last() {
    let fx = Fixture::new();
    let (svc, _dir) = service(&fx).await;
    let token = fx.key.sign(&claims("web", "frontend"));
    let resp = svc
        .create(
            &bearer(&token),
            &request(csr_pem(Some("spiffe://example.org/evil")), 3600),
        )
        .await
        .unwrap();
    assert_eq!(resp.cert_chain.len(), 2);
    assert!(resp.cert_chain.iter().all(|c| c.ends_with('\n')));
    assert!(resp.cert_chain.iter().all(|c| pem_ders(c).len() == 1));

    let leaf_der = &pem_ders(&resp.cert_chain[0])[0];
    let root_der = &pem_ders(&resp.cert_chain[1])[0];
    let (_, leaf) = X509Certificate::from_der(leaf_der).unwrap();
    let (_, root) = X509Certificate::from_der(root_der).unwrap();
    assert_eq!(uri_sans(&leaf), ["spiffe://example.org/ns/web/sa/frontend"]);
    signet_common::sigcheck::verify_cert(&leaf, root.public_key()).unwrap();
    assert_eq!(
        Some(root_der.clone()),
        svc.state.ca.active_x509_ca_der(),
        "the last element is the trust root"
    );
    assert_eq!(leaf.validity().not_after.timestamp(), NOW + 3600);
}

#[tokio::test]
async fn validity_defaults_and_is_capped() {
    let fx = Fixture::new();
    let (svc, _dir) = service(&fx).await;
    let token = fx.key.sign(&claims("web", "frontend"));
    for (asked, expected) in [(0, 6 * 3600), (7 * 24 * 3600, 12 * 3600), (60, 60)] {
        let resp = svc
            .create(&bearer(&token), &request(csr_pem(None), asked))
            .await
            .unwrap();
        let der = &pem_ders(&resp.cert_chain[0])[0];
        let (_, leaf) = X509Certificate::from_der(der).unwrap();
        assert_eq!(
            leaf.validity().not_after.timestamp(),
            NOW + expected,
            "{asked}"
        );
    }
    let err = svc
        .create(&bearer(&token), &request(csr_pem(None), -1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn refuses_callers_without_a_valid_bearer_token() {
    let fx = Fixture::new();
    let (svc, _dir) = service(&fx).await;
    let other = Key::es256("k8s-key-1");
    let forged = other.sign(&claims("web", "frontend"));
    let mut basic = MetadataMap::new();
    basic.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    for (metadata, needle) in [
        (MetadataMap::new(), "no authorization header"),
        (basic, "Bearer"),
        (bearer(""), "Bearer"),
        (bearer(&forged), "token signature is invalid"),
    ] {
        let err = svc
            .create(&metadata, &request(csr_pem(None), 0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
}

#[tokio::test]
async fn refuses_a_malformed_csr() {
    let fx = Fixture::new();
    let (svc, _dir) = service(&fx).await;
    let token = fx.key.sign(&claims("web", "frontend"));
    // A CSR whose signature no longer verifies.
    let mut der = CertificateSigningRequestDer::from_pem_slice(csr_pem(None).as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    *der.last_mut().unwrap() ^= 1;
    let tampered = pem_cert(&der).replace("CERTIFICATE", "CERTIFICATE REQUEST");
    for csr in [String::new(), "garbage".into(), tampered] {
        let err = svc
            .create(&bearer(&token), &request(csr, 0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    }
}

#[test]
fn status_code_is_unauthenticated() {
    let status = Status::from(ApiError::Unauthenticated("token has expired".into()));
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "token has expired");
}
