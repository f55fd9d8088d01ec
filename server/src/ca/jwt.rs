//! JWT-SVID signing: compact JWS with ES256/ES384 over the JWT authority's key. The parsed
//! key is kept, so a token costs one ECDSA signature and two small JSON encodings.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::ca::error::CaError;
use crate::keys::KeyType;

const KID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A JWT signing key with its `kid`.
pub(super) struct JwtSigner {
    kid: String,
    alg: &'static str,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// The claims of a JWT-SVID, in the order SPIRE writes them.
#[derive(serde::Serialize)]
pub(super) struct Claims<'a> {
    pub(super) aud: &'a [String],
    pub(super) exp: i64,
    pub(super) iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) iss: Option<&'a str>,
    pub(super) sub: &'a str,
}

#[derive(serde::Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'static str,
}

impl JwtSigner {
    /// Parses the PKCS#8 key once.
    pub(super) fn new(kid: String, key_type: KeyType, pkcs8: &[u8]) -> Result<Self, CaError> {
        let (alg, signing) = match key_type {
            KeyType::EcP256 => ("ES256", &ECDSA_P256_SHA256_FIXED_SIGNING),
            KeyType::EcP384 => ("ES384", &ECDSA_P384_SHA384_FIXED_SIGNING),
        };
        let key = EcdsaKeyPair::from_pkcs8(signing, pkcs8)
            .map_err(|e| CaError::Signing(format!("JWT key: {e}")))?;
        Ok(Self {
            kid,
            alg,
            key,
            rng: SystemRandom::new(),
        })
    }

    /// The compact JWS of `claims`.
    pub(super) fn sign(&self, claims: &Claims<'_>) -> Result<String, CaError> {
        let header = Header {
            alg: self.alg,
            kid: &self.kid,
            typ: "JWT",
        };
        let mut token = URL_SAFE_NO_PAD.encode(json(&header)?);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(json(claims)?));
        let sig = self
            .key
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| CaError::Signing("ECDSA signing failed".into()))?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok(token)
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, CaError> {
    serde_json::to_vec(v).map_err(|e| CaError::Signing(e.to_string()))
}

/// A fresh `kid`: 32 random characters of `[a-zA-Z0-9]`, as SPIRE makes them.
pub(super) fn random_kid() -> Result<String, CaError> {
    let mut out = String::with_capacity(32);
    let mut buf = [0u8; 64];
    while out.len() < 32 {
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| CaError::Signing("no randomness".into()))?;
        // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == 32 {
                break;
            }
            out.push(char::from(KID_ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(out)
}
