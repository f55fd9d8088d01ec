//! Fuzz target for JWT-SVID validation (`ValidateJWTSVID`'s input): tokens assembled from
//! headers and claims of every shape, really signed by a key of the bundle (so that they
//! reach the signature and claim checks) or carrying a wrong signature, then often mutated
//! as text; and raw strings. Budget: `signet_common::fuzz` (`SIGNET_FUZZ_CASES`,
//! `SIGNET_FUZZ_SECONDS`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use proptest::prelude::*;
use signet_common::bundle::{Bundle, JwtKey};
use signet_common::fuzz;
use signet_common::id::parse_trust_domain;

use super::jwt::{claims_struct, validate};

const NOW: i64 = 1_800_000_000;

/// JWT syntax and claim pieces for the text mutations.
const JWT_TOKENS: &[&[u8]] = &[
    b".", b"..", b"=", b"+", b"/", b"\r\n", b"eyJ", b"e30", b"AA",
];

/// One JSON member value of the header or the claims, or none.
fn member(choices: Vec<&'static str>) -> impl Strategy<Value = Option<&'static str>> {
    prop::option::weighted(0.85, prop::sample::select(choices))
}

/// A header and claims JSON object (with members missing, mistyped, out of range) and how
/// to sign them.
#[derive(Debug, Clone)]
struct Parts {
    header: String,
    claims: String,
    signature: Signature,
}

#[derive(Debug, Clone)]
enum Signature {
    Valid,
    Random(Vec<u8>),
    Empty,
}

fn object(members: &[(&str, Option<&str>)], extra: &str) -> String {
    let mut fields: Vec<String> = members
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("\"{k}\":{v}")))
        .collect();
    if !extra.is_empty() {
        fields.push(extra.to_owned());
    }
    format!("{{{}}}", fields.join(","))
}

fn parts() -> impl Strategy<Value = Parts> {
    let header = (
        member(vec![
            "\"ES256\"",
            "\"ES384\"",
            "\"RS256\"",
            "\"PS256\"",
            "\"HS256\"",
            "\"none\"",
            "\"EdDSA\"",
            "\"\"",
            "1",
            "null",
        ]),
        member(vec!["\"kid-1\"", "\"kid-2\"", "\"\"", "7", "[\"kid-1\"]"]),
        member(vec!["\"JWT\"", "\"JOSE\"", "\"jwt\"", "\"x\"", "1"]),
        member(vec!["\"x\"", "[]", "{}"]),
    )
        .prop_map(|(alg, kid, typ, crit)| {
            object(
                &[("alg", alg), ("kid", kid), ("typ", typ), ("crit", crit)],
                "",
            )
        });
    let claims = (
        member(vec![
            "\"spiffe://example.org/workload\"",
            "\"spiffe://other.org/workload\"",
            "\"spiffe://example.org\"",
            "\"spiffe://Example.org/x\"",
            "\"not an id\"",
            "\"\"",
            "12",
        ]),
        member(vec![
            "\"aud\"",
            "[\"aud\"]",
            "[\"x\",\"aud\"]",
            "[]",
            "[1]",
            "\"\"",
            "null",
            "{}",
        ]),
        member(vec![
            "1800000300",
            "1799999000",
            "1800000000.5",
            "1e308",
            "-1e308",
            "-1",
            "\"1800000300\"",
            "9223372036854775807",
            "18446744073709551616",
            "null",
        ]),
        member(vec!["1799999000", "1800000500", "\"x\"", "1e400"]),
        member(vec!["1799999000", "1800000500", "[]"]),
        prop::sample::select(vec![
            "",
            "\"iss\":\"x\"",
            "\"sub\":\"dup\"",
            "\"x\":{\"y\":[1,2,{}]}",
        ]),
    )
        .prop_map(|(sub, aud, exp, nbf, iat, extra)| {
            object(
                &[
                    ("sub", sub),
                    ("aud", aud),
                    ("exp", exp),
                    ("nbf", nbf),
                    ("iat", iat),
                ],
                extra,
            )
        });
    let signature = prop_oneof![
        6 => Just(Signature::Valid),
        1 => fuzz::raw_bytes(80).prop_map(Signature::Random),
        1 => Just(Signature::Empty),
    ];
    (header, claims, signature).prop_map(|(header, claims, signature)| Parts {
        header,
        claims,
        signature,
    })
}

struct Keys {
    pair: EcdsaKeyPair,
    bundles: Vec<Arc<Bundle>>,
}

fn keys() -> Keys {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
    let mut bundle = Bundle::new(parse_trust_domain("example.org").unwrap());
    bundle.jwt_authorities.push(JwtKey {
        public_key: spki,
        key_id: "kid-1".into(),
        expires_at: NOW + 3600,
        tainted: false,
    });
    Keys {
        pair,
        bundles: vec![Arc::new(bundle)],
    }
}

fn token(keys: &Keys, p: &Parts) -> String {
    let signing_input = format!("{}.{}", B64.encode(&p.header), B64.encode(&p.claims));
    let sig = match &p.signature {
        Signature::Valid => keys
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec(),
        Signature::Random(b) => b.clone(),
        Signature::Empty => Vec::new(),
    };
    format!("{signing_input}.{}", B64.encode(sig))
}

/// A token: assembled from parts, a text mutation of a valid token, or any string.
#[derive(Debug, Clone)]
enum Input {
    Assembled(Parts),
    Mutated(Vec<u8>),
    Raw(String),
}

#[test]
fn jwt_svid_validation() {
    let keys = keys();
    let valid = |claims: &str| Parts {
        header: r#"{"alg":"ES256","kid":"kid-1","typ":"JWT"}"#.into(),
        claims: claims.into(),
        signature: Signature::Valid,
    };
    let seeds: Vec<String> = [
        r#"{"sub":"spiffe://example.org/workload","aud":["aud"],"exp":1800000300}"#,
        r#"{"sub":"spiffe://example.org/w","aud":"aud","exp":1800000300,"iat":1799999000}"#,
    ]
    .iter()
    .map(|c| token(&keys, &valid(c)))
    .collect();
    for t in &seeds {
        let ok = validate(t, "aud", &keys.bundles, NOW).unwrap();
        assert_eq!(ok.spiffe_id.trust_domain_name(), "example.org");
    }

    let input = prop_oneof![
        4 => parts().prop_map(Input::Assembled),
        3 => fuzz::mutated(seeds.iter().map(|t| t.clone().into_bytes()).collect(), JWT_TOKENS)
            .prop_map(Input::Mutated),
        1 => fuzz::text(seeds, JWT_TOKENS).prop_map(Input::Raw),
    ];
    let outcomes = fuzz::Outcomes::default();
    fuzz::run("jwt_svid_validation", input, |input| {
        let token = match &input {
            Input::Assembled(p) => token(&keys, p),
            Input::Mutated(m) => String::from_utf8_lossy(m).into_owned(),
            Input::Raw(s) => s.clone(),
        };
        let result = validate(&token, "aud", &keys.bundles, NOW);
        outcomes.add(&result, 4);
        if let Ok(v) = result {
            if v.spiffe_id.trust_domain_name() != "example.org" {
                return Err(format!("{token} validated for {}", v.spiffe_id));
            }
            let _ = claims_struct(v.claims, false);
        }
        Ok(())
    });
    outcomes.print("jwt_svid_validation");
    assert!(outcomes.ok() > 0, "no token validated");
}
