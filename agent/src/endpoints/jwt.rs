//! JWT-SVID validation for `ValidateJWTSVID`: the signature against the key the token's
//! `kid` names in the bundle of its subject's trust domain, then `exp`/`nbf`/`iat` against
//! the agent's clock and `aud` against the requested audience.

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prost_types::value::Kind;
use serde_json::{Map, Value};
use signet_common::bundle::{Bundle, to_jwks};
use signet_common::id::{SpiffeId, parse_id};

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (go-jose's default).
const LEEWAY: i64 = 60;

/// The signature algorithms a JWT-SVID may use (those of the JWT-SVID specification that
/// the verifier implements).
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Claims foreign trust domains' tokens keep in the response.
const FOREIGN_CLAIMS: [&str; 3] = ["sub", "aud", "exp"];

/// A token that passed validation.
#[derive(Debug)]
pub(super) struct Validated {
    /// Its `sub`.
    pub(super) spiffe_id: SpiffeId,
    /// All of its claims.
    pub(super) claims: Map<String, Value>,
}

/// Validates `token` for `audience` with the keys of `bundles` at Unix time `now`. The
/// error is the reason, for the client.
pub(super) fn validate(
    token: &str,
    audience: &str,
    bundles: &[Arc<Bundle>],
    now: i64,
) -> Result<Validated, String> {
    check_compact(token).map_err(|e| format!("unable to parse JWT token: {e}"))?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| format!("unable to parse JWT token: {e}"))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(format!(
            "unsupported token signature algorithm {:?}",
            header.alg
        ));
    }
    if let Some(typ) = header
        .typ
        .as_deref()
        .filter(|t| !matches!(*t, "JWT" | "JOSE"))
    {
        return Err(format!("token header type {typ:?} is not supported"));
    }
    let kid = header
        .kid
        .filter(|k| !k.is_empty())
        .ok_or("token header missing key id")?;

    let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode(token)
        .map_err(|e| format!("unable to parse JWT token: {e}"))?
        .claims;
    let sub = unverified
        .get("sub")
        .and_then(Value::as_str)
        .ok_or("token missing subject claim")?;
    let spiffe_id =
        parse_id(sub).map_err(|e| format!("token has an invalid subject claim: {e}"))?;
    let td = spiffe_id.trust_domain_name();
    let bundle = bundles
        .iter()
        .find(|b| b.trust_domain.as_str() == td)
        .ok_or_else(|| format!("no keys found for trust domain {td:?}"))?;
    let key = decoding_key(bundle, &kid)?;

    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims: Map<String, Value> = jsonwebtoken::decode(token, &key, &validation)
        .map_err(|e| format!("unable to validate JWT token: {e}"))?
        .claims;
    check_times(&claims, now)?;
    check_audience(&claims, audience)?;
    Ok(Validated { spiffe_id, claims })
}

/// The compact-serialization checks SPIRE's JWT library makes first, with its texts: three
/// parts, each unpadded base64url (Go's decoder: CR/LF ignored, the position of the first
/// bad byte, or of a lone trailing character, reported).
fn check_compact(token: &str) -> Result<(), String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("go-jose/go-jose: compact JWS format must have three parts".into());
    }
    for part in parts {
        let mut quantum_start = 0;
        let mut in_quantum = 0;
        for (i, b) in part.bytes().enumerate() {
            match b {
                b'\r' | b'\n' => continue,
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {
                    if in_quantum == 0 {
                        quantum_start = i;
                    }
                    in_quantum = (in_quantum + 1) % 4;
                }
                _ => return Err(format!("illegal base64 data at input byte {i}")),
            }
        }
        if in_quantum == 1 {
            return Err(format!("illegal base64 data at input byte {quantum_start}"));
        }
    }
    Ok(())
}

fn decoding_key(bundle: &Bundle, kid: &str) -> Result<DecodingKey, String> {
    let not_found = || {
        format!(
            "public key {kid:?} not found in trust domain {:?}",
            bundle.trust_domain.as_str()
        )
    };
    if !bundle.jwt_authorities.iter().any(|k| k.key_id == kid) {
        return Err(not_found());
    }
    let set: JwkSet = serde_json::from_str(&to_jwks(bundle)).map_err(|e| e.to_string())?;
    let jwk = set.find(kid).ok_or_else(not_found)?;
    DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable public key {kid:?}: {e}"))
}

fn check_times(claims: &Map<String, Value>, now: i64) -> Result<(), String> {
    let time = |name: &str| -> Result<Option<i64>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|t| t.is_finite())
                // Truncation is fine: times are whole seconds.
                .map(|t| Some(t as i64))
                .ok_or_else(|| format!("token has a malformed {name:?} claim")),
        }
    };
    let exp = time("exp")?.ok_or("token missing exp claim")?;
    // Saturating: a time of 1e308 is i64::MAX here, and must not overflow (`jwt_fuzz` found it).
    if exp.saturating_add(LEEWAY) < now {
        return Err("token has expired".into());
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY)) {
        return Err("token is not valid yet".into());
    }
    if time("iat")?.is_some_and(|iat| iat > now.saturating_add(LEEWAY)) {
        return Err("token issued in the future".into());
    }
    Ok(())
}

fn check_audience(claims: &Map<String, Value>, audience: &str) -> Result<(), String> {
    let aud = audiences(claims).ok_or("token has a missing or malformed aud claim")?;
    if aud.iter().any(|a| a == audience) {
        Ok(())
    } else {
        // SPIRE's order: the audience asked for, then the token's.
        Err(format!(
            "expected audience in {:?} (audience={aud:?})",
            [audience]
        ))
    }
}

/// `aud` as a list, whether the token carried a string or an array of strings.
fn audiences(claims: &Map<String, Value>) -> Option<Vec<String>> {
    match claims.get("aud")? {
        Value::String(a) => Some(vec![a.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// The claims as a `google.protobuf.Struct`, `aud` always a list; tokens of foreign trust
/// domains keep only `sub`, `aud` and `exp`.
pub(super) fn claims_struct(mut claims: Map<String, Value>, foreign: bool) -> prost_types::Struct {
    if let Some(aud) = audiences(&claims) {
        claims.insert(
            "aud".into(),
            Value::Array(aud.into_iter().map(Value::String).collect()),
        );
    }
    if foreign {
        claims.retain(|k, _| FOREIGN_CLAIMS.contains(&k.as_str()));
    }
    prost_types::Struct {
        fields: claims
            .into_iter()
            .map(|(k, v)| (k, proto_value(v)))
            .collect(),
    }
}

fn proto_value(v: Value) -> prost_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(proto_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map.into_iter().map(|(k, v)| (k, proto_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found by `jwt_fuzz`): times at the ends of the number range are far
    /// future or far past, never an overflow.
    #[test]
    fn extreme_times_do_not_overflow() {
        let claims = |json: &str| -> Map<String, Value> { serde_json::from_str(json).unwrap() };
        assert!(check_times(&claims(r#"{"exp":1e308}"#), i64::MAX).is_ok());
        assert_eq!(
            check_times(&claims(r#"{"exp":-1e308}"#), 0).unwrap_err(),
            "token has expired"
        );
        assert_eq!(
            check_times(&claims(r#"{"exp":1e308,"nbf":1e308}"#), 0).unwrap_err(),
            "token is not valid yet"
        );
        assert!(check_times(&claims(r#"{"exp":1e308,"iat":1e308}"#), i64::MAX).is_ok());
    }

    #[test]
    fn a_wrong_audience_names_the_asked_audience_first_as_spire_does() {
        let claims: Map<String, Value> = serde_json::from_str(r#"{"aud":["aud1"]}"#).unwrap();
        assert_eq!(
            check_audience(&claims, "wrong-aud").unwrap_err(),
            r#"expected audience in ["wrong-aud"] (audience=["aud1"])"#
        );
        assert!(check_audience(&claims, "aud1").is_ok());
        assert_eq!(
            check_compact("not.a.jwt").unwrap_err(),
            "illegal base64 data at input byte 0"
        );
        assert_eq!(
            check_compact("a.b").unwrap_err(),
            "go-jose/go-jose: compact JWS format must have three parts"
        );
        assert_eq!(
            check_compact("abcd.ab!c.x").unwrap_err(),
            "illegal base64 data at input byte 2"
        );
        assert!(check_compact("eyJh.e30.c2ln").is_ok());
        let single: Map<String, Value> = serde_json::from_str(r#"{"aud":"a"}"#).unwrap();
        assert_eq!(
            check_audience(&single, "b").unwrap_err(),
            r#"expected audience in ["b"] (audience=["a"])"#
        );
    }
}
