//! `x509 mint` and `jwt mint` produce credentials that independent tools accept: openssl
//! verifies the SVID against `bundle show`, the `spiffe` crate parses it as an X509-SVID,
//! and jsonwebtoken verifies the JWT against the SPIFFE-format bundle's JWKS.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::process::Command;

use common::ServerProcess;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[test]
fn a_minted_x509_svid_verifies_with_openssl_and_parses_with_the_spiffe_crate() {
    let server = ServerProcess::start();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    server.cli_ok(&[
        "x509",
        "mint",
        "--spiffe-id",
        "spiffe://example.org/minted",
        "--dns",
        "minted.example.org",
        "--write",
        dir,
    ]);
    let bundle = server.cli_ok(&["bundle", "show"]);
    let bundle_path = out.path().join("shown-bundle.pem");
    std::fs::write(&bundle_path, &bundle).unwrap();

    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&bundle_path)
        .arg(out.path().join("svid.pem"))
        .output()
        .expect("openssl is installed");
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && stdout.contains(": OK"),
        "{stdout} {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let chain: Vec<u8> = CertificateDer::pem_file_iter(out.path().join("svid.pem"))
        .unwrap()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    let key = match PrivateKeyDer::from_pem_file(out.path().join("key.pem")).unwrap() {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        other => panic!("key is not PKCS#8: {other:?}"),
    };
    let svid =
        spiffe::X509Svid::parse_from_der(&chain, &key).expect("the spiffe crate accepts the SVID");
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/minted");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.path().join("key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn a_minted_jwt_verifies_against_the_spiffe_bundle_jwks() {
    let server = ServerProcess::start();
    let token = server.cli_ok(&[
        "jwt",
        "mint",
        "--spiffe-id",
        "spiffe://example.org/jwt",
        "--audience",
        "aud1",
    ]);
    let token = token.trim();
    let bundle = server.cli_ok(&["bundle", "show", "--format", "spiffe"]);
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&bundle).expect("SPIFFE bundle is a JWK set");

    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.expect("kid is set");
    let jwk = jwks.find(&kid).expect("the token's key is in the bundle");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["aud1"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .expect("signature and claims verify");
    assert_eq!(data.claims["sub"], "spiffe://example.org/jwt");

    let mut wrong = jsonwebtoken::Validation::new(header.alg);
    wrong.set_audience(&["other"]);
    assert!(jsonwebtoken::decode::<serde_json::Value>(token, &key, &wrong).is_err());
}

#[test]
fn cli_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.sock");
    let out = common::cli_at(&missing, &["entry", "show"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("nope.sock"), "{err}");

    let server = ServerProcess::start();
    let out = server.cli(&[
        "entry",
        "create",
        "--parent-id",
        "spiffe://example.org/a",
        "--spiffe-id",
        "spiffe://Example.org/../x",
        "--selector",
        "unix:uid:1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
