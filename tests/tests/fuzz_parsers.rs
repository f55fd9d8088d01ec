//! Fuzz targets for the parsers that read network and file input: CSRs, SPIFFE IDs,
//! selectors, SPIFFE bundles (JSON, JWKS, PEM, DER chains) and certificates. Each target
//! feeds raw bytes and mutations of valid inputs for the budget of `signet_common::fuzz`
//! (`SIGNET_FUZZ_CASES`, `SIGNET_FUZZ_SECONDS`); a panic fails the target with the minimal
//! input, and what parses is checked to round-trip.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use std::str::FromStr;

use proptest::prelude::*;
use signet_common::bundle::{self, Bundle, JwtKey, X509Authority};
use signet_common::fuzz;
use signet_common::id::{self, parse_id, parse_trust_domain};
use signet_common::selector::Selector;
use signet_common::x509;
use signet_proto::types;
use signet_server::ca::Ca;
use signet_tests::key_and_csr;

/// DER pieces: SEQUENCE and long-form lengths, the SAN and key-usage OIDs, NULL, context tags.
const DER_TOKENS: &[&[u8]] = &[
    &[0x30, 0x82, 0xff, 0xff],
    &[0x30, 0x80],
    &[0x30, 0x00],
    &[0x06, 0x03, 0x55, 0x1d, 0x11],
    &[0x06, 0x03, 0x55, 0x1d, 0x0f],
    &[0x05, 0x00],
    &[0xa0, 0x00],
    &[0xa0, 0x84, 0xff, 0xff, 0xff, 0xff],
    &[0x02, 0x01, 0x00],
    &[0x03, 0x01, 0x00],
    &[0x86, 0x1d],
    b"spiffe://example.org/w",
];

fn csr_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        key_and_csr(Some("spiffe://example.org/workload")).1,
        key_and_csr(None).1,
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/rsa1024.csr.der"
        ))
        .unwrap(),
    ];
    for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example.org".into()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org/x".try_into().unwrap(),
        ));
        seeds.push(params.serialize_request(&key).unwrap().der().to_vec());
    }
    seeds
}

/// `Ca::verify_csr` (every CSR the server signs goes through it first): raw bytes and
/// mutated P-256, P-384, Ed25519 and RSA-1024 CSRs. The unmutated seeds of accepted kinds
/// verify, so the target starts from inputs that get past the parser.
#[test]
fn csr() {
    let seeds = csr_seeds();
    assert!(Ca::verify_csr(&seeds[0]).is_ok());
    let outcomes = fuzz::Outcomes::default();
    fuzz::run("csr", fuzz::raw_or_mutated(seeds, DER_TOKENS, 512), |der| {
        outcomes.add(&Ca::verify_csr(&der), 4);
        Ok(())
    });
    outcomes.print("csr");
    assert!(
        outcomes.ok() > 0,
        "no CSR verified: the mutations never keep one valid"
    );
}

/// SPIFFE ID and trust-domain parsing, and the API's split form: grammar-shaped strings and
/// mutated valid IDs. Whatever parses prints back to the same ID and re-parses equal.
#[test]
fn spiffe_id() {
    let seeds = [
        "spiffe://example.org/workload",
        "spiffe://example.org",
        "spiffe://a-b.c_d.org/ns/default/sa/x",
        "spiffe://example.org/spire/agent/join_token/9f0c",
    ]
    .map(String::from)
    .to_vec();
    let tokens: &[&[u8]] = &[
        b"/", b"//", b"%2F", b"..", b".", b":", b"@", b"?", b"#", b"\0",
    ];
    let input = prop_oneof![fuzz::spiffe_id_text(), fuzz::text(seeds, tokens)];
    fuzz::run("spiffe_id", input, |s| {
        if let Ok(id) = parse_id(&s) {
            let again = parse_id(&id.to_string()).map_err(|e| format!("{id}: {e}"))?;
            if again != id {
                return Err(format!("{s:?} parsed as {id}, which re-parses as {again}"));
            }
            let parts = id::from_parts(id.trust_domain_name(), id.path())
                .map_err(|e| format!("{id} from its parts: {e}"))?;
            if parts != id {
                return Err(format!("{id} from its parts is {parts}"));
            }
        }
        let _ = parse_trust_domain(&s);
        if let Some((td, path)) = s.split_once('|') {
            let _ = id::from_parts(td, path);
            let _ = signet_proto::convert::spiffe_id(
                "id",
                Some(&types::Spiffeid {
                    trust_domain: td.into(),
                    path: path.into(),
                }),
            );
        }
        Ok(())
    });
}

/// Selector parsing (`type:value` from the CLI and config, type and value from the API):
/// what parses prints back to the input.
#[test]
fn selectors() {
    let seeds = [
        "unix:uid:1000",
        "k8s:ns:default",
        "k8s_psat:cluster:c1",
        "spiffe_id:spiffe://example.org/x",
    ]
    .map(String::from)
    .to_vec();
    let tokens: &[&[u8]] = &[b":", b"::", b"\0", b" ", b"\n", b"\xc3\xa9"];
    fuzz::run("selectors", fuzz::text(seeds, tokens), |s| {
        if let Ok(sel) = Selector::from_str(&s)
            && sel.to_string() != s
        {
            return Err(format!("{s:?} parsed as {sel}"));
        }
        let (kind, value) = s.split_once('|').unwrap_or((&s, ""));
        let _ = Selector::new(kind, value);
        let _ = signet_proto::convert::selectors(
            "selectors",
            &[types::Selector {
                r#type: kind.into(),
                value: value.into(),
            }],
        );
        Ok(())
    });
}

fn test_bundle() -> (Bundle, Vec<u8>) {
    let td = parse_trust_domain("example.org").unwrap();
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://example.org".try_into().unwrap(),
    )];
    let cert = params.self_signed(&ca_key).unwrap().der().to_vec();
    let jwt_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut b = Bundle::new(td);
    b.merge(
        &[X509Authority {
            der: cert.clone(),
            tainted: false,
        }],
        &[JwtKey {
            public_key: rcgen::PublicKeyData::subject_public_key_info(&jwt_key),
            key_id: "kid-1".into(),
            expires_at: 4_000_000_000,
            tainted: false,
        }],
    );
    b.refresh_hint = 300;
    b.sequence_number = 7;
    (b, cert)
}

/// JSON pieces: delimiters, the bundle's keys and values of the wrong type.
const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"null",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"\"keys\"",
    b"\"use\":\"x509-svid\"",
    b"\"use\":\"jwt-svid\"",
    b"\"kty\":\"RSA\"",
    b"\"kty\":\"EC\"",
    b"\"crv\":\"P-521\"",
    b"\"x5c\":[\"\"]",
    b"\"spiffe_refresh_hint\"",
    b"\"spiffe_sequence\"",
    b"\\u0000",
    b"\\ud800",
];

/// The SPIFFE bundle document (federation endpoints, `bundle set`, trust bundle files) and
/// the federation fetcher's checks on it: raw bytes and mutations of a bundle with an X.509
/// root and a JWT key. What parses prints as a document that parses to the same bundle.
#[test]
fn bundle_json() {
    let (b, _) = test_bundle();
    let td = b.trust_domain.clone();
    let seeds = vec![
        bundle::to_spiffe_json(&b).into_bytes(),
        bundle::to_jwks(&b).into_bytes(),
        bundle::to_full_jwks(&b).into_bytes(),
        br#"{"keys":[]}"#.to_vec(),
    ];
    assert!(bundle::from_spiffe_json(td.clone(), std::str::from_utf8(&seeds[0]).unwrap()).is_ok());
    let outcomes = fuzz::Outcomes::default();
    fuzz::run(
        "bundle_json",
        fuzz::raw_or_mutated(seeds, JSON_TOKENS, 256),
        |body| {
            let _ = signet_server::federation::fetch::parse("https://x/", &td, &body);
            let Ok(text) = std::str::from_utf8(&body) else {
                outcomes.add_error("not UTF-8", 2);
                return Ok(());
            };
            let result = bundle::from_spiffe_json(td.clone(), text);
            outcomes.add(&result, 3);
            if let Ok(parsed) = result {
                let printed = bundle::to_spiffe_json(&parsed);
                let again = bundle::from_spiffe_json(td.clone(), &printed)
                    .map_err(|e| format!("{printed} does not re-parse: {e}"))?;
                if again.x509_authorities != parsed.x509_authorities
                    || again.jwt_authorities != parsed.jwt_authorities
                {
                    return Err(format!("{text:?} does not round-trip through {printed}"));
                }
            }
            Ok(())
        },
    );
    outcomes.print("bundle_json");
    assert!(outcomes.ok() > 0, "no bundle parsed");
}

/// PEM bundles (trust bundle files, `bundle set -format pem`), DER chains (the API's
/// concatenated certificates) and certificate inspection: raw bytes and mutations of a CA
/// certificate in both forms.
#[test]
fn pem_and_der_certificates() {
    let (b, cert) = test_bundle();
    let pem = bundle::x509_authorities_pem(&b).into_bytes();
    let mut chain = cert.clone();
    chain.extend(&cert);
    let tokens: &[&[u8]] = &[
        b"-----BEGIN CERTIFICATE-----\n",
        b"-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\n",
        b"=",
        b"\r\n",
        &[0x30, 0x82, 0xff, 0xff],
        &[0x30, 0x80],
        &[0x86, 0x14],
    ];
    assert_eq!(
        bundle::parse_pem_certs(std::str::from_utf8(&pem).unwrap())
            .unwrap()
            .len(),
        1
    );
    fuzz::run(
        "pem_and_der_certificates",
        fuzz::raw_or_mutated(vec![pem, cert, chain], tokens, 512),
        |input| {
            if let Ok(text) = std::str::from_utf8(&input) {
                let _ = bundle::parse_pem_certs(text);
            }
            if let Some(certs) = x509::split_der_chain(&input) {
                for c in &certs {
                    let _ = x509::cert_info(c);
                    let _ = x509::spiffe_id_of_cert(c);
                }
            }
            let _ = x509::cert_info(&input);
            let _ = x509::spiffe_id_of_cert(&input);
            Ok(())
        },
    );
}
