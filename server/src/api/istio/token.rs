//! Offline verification of Kubernetes service-account tokens (the projected tokens that
//! istio-agent sends as `authorization: Bearer <jwt>`): signature against the cluster's
//! JWKS (looked up by `kid`), `exp`/`nbf` on the injected clock, `iss` and `aud`. The
//! caller's identity is the token's namespace and service account.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Clock skew allowed on `exp` and `nbf`, as go-jose (and so the Kubernetes API server).
const LEEWAY_SECS: i64 = 60;

/// Signature algorithms accepted (asymmetric only; Kubernetes signs with RS256 or ES256).
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Why a token was refused. Every variant means "not authenticated".
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS with a JSON header and claims.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// `alg` is not an accepted asymmetric algorithm, or does not fit the key.
    #[error("token algorithm {0} is not accepted")]
    Algorithm(String),
    /// The header has no `kid`.
    #[error("token header has no kid")]
    NoKeyId,
    /// No key in the JWKS has the token's `kid`.
    #[error("token key {0:?} is not in the cluster's JWKS")]
    UnknownKey(String),
    /// The JWKS entry could not be used as a verification key.
    #[error("JWKS key {0:?} is unusable: {1}")]
    UnusableKey(String, String),
    /// The signature does not verify with the key.
    #[error("token signature is invalid")]
    Signature,
    /// `exp` has passed (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not {0:?}")]
    Issuer(String),
    /// `aud` does not contain the configured audience.
    #[error("token audience does not include {0:?}")]
    Audience(String),
    /// A required claim is absent.
    #[error("token has no {0} claim")]
    MissingClaim(String),
    /// Neither `kubernetes.io` nor `sub` names a service account.
    #[error("token names no Kubernetes service account")]
    NoServiceAccount,
    /// The namespace or service account name cannot be part of a SPIFFE ID.
    #[error("token names an invalid {0} {1:?}")]
    InvalidName(&'static str, String),
}

/// The JWKS file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Reading failed.
    #[error("cannot read JWKS file {0}: {1}")]
    Read(String, std::io::Error),
    /// Not a JSON Web Key Set.
    #[error("invalid JWKS file {0}: {1}")]
    Parse(String, String),
}

/// A Kubernetes service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// Namespace.
    pub namespace: String,
    /// Service account name.
    pub name: String,
}

/// Verifies tokens for one issuer and audience against one JWKS file.
#[derive(Debug)]
pub struct TokenVerifier {
    issuer: String,
    audience: String,
    jwks: JwksFile,
}

impl TokenVerifier {
    /// Loads the JWKS file now; fails if it cannot be read or parsed.
    pub fn new(issuer: String, audience: String, jwks_path: &Path) -> Result<Self, JwksError> {
        Ok(Self {
            issuer,
            audience,
            jwks: JwksFile::open(jwks_path)?,
        })
    }

    /// Verifies `token` at `now` (Unix seconds) and returns whom it names.
    pub fn verify(&self, token: &str, now: i64) -> Result<ServiceAccount, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.as_deref().ok_or(TokenError::NoKeyId)?;
        let keys = self.jwks.keys();
        let jwk = keys
            .find(kid)
            .ok_or_else(|| TokenError::UnknownKey(kid.into()))?;
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string().parse::<Algorithm>().ok() != Some(header.alg)
        {
            return Err(TokenError::Algorithm(format!(
                "{:?} (key {kid:?} is {alg})",
                header.alg
            )));
        }
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| TokenError::UnusableKey(kid.into(), e.to_string()))?;
        let mut validation = Validation::new(header.alg);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Time is checked below against the injected clock, not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| self.classify(e, header.alg, kid))?
            .claims;
        let exp = claims
            .exp
            .ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        if now > exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
        {
            return Err(TokenError::NotYetValid);
        }
        claims.service_account()
    }

    fn classify(&self, e: jsonwebtoken::errors::Error, alg: Algorithm, kid: &str) -> TokenError {
        match e.into_kind() {
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::InvalidIssuer => TokenError::Issuer(self.issuer.clone()),
            ErrorKind::InvalidAudience => TokenError::Audience(self.audience.clone()),
            ErrorKind::MissingRequiredClaim(c) => TokenError::MissingClaim(c),
            ErrorKind::InvalidAlgorithm => {
                TokenError::Algorithm(format!("{alg:?} (does not fit the key)"))
            }
            kind @ (ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_)) => {
                TokenError::UnusableKey(kid.into(), format!("{kind:?}"))
            }
            other => TokenError::Malformed(format!("{other:?}")),
        }
    }
}

// === Claims ===

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(rename = "kubernetes.io", default)]
    kubernetes: Option<KubernetesClaims>,
}

/// The private claim of projected service-account tokens.
#[derive(Debug, Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    serviceaccount: Option<Named>,
}

#[derive(Debug, Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

impl Claims {
    /// `kubernetes.io.{namespace, serviceaccount.name}`, else
    /// `sub = system:serviceaccount:<namespace>:<name>`.
    fn service_account(self) -> Result<ServiceAccount, TokenError> {
        let projected = self
            .kubernetes
            .and_then(|k| Some((k.namespace?, k.serviceaccount?.name?)));
        let (namespace, name) = match projected {
            Some(pair) => pair,
            None => self
                .sub
                .as_deref()
                .and_then(|s| s.strip_prefix("system:serviceaccount:"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(ns, sa)| (ns.to_owned(), sa.to_owned()))
                .ok_or(TokenError::NoServiceAccount)?,
        };
        if !valid_k8s_name(&namespace) {
            return Err(TokenError::InvalidName("namespace", namespace));
        }
        if !valid_k8s_name(&name) {
            return Err(TokenError::InvalidName("service account", name));
        }
        Ok(ServiceAccount { namespace, name })
    }
}

/// A Kubernetes object name (RFC 1123 subdomain): lower-case letters, digits, `-` and
/// `.`, starting and ending with a letter or digit — always a valid SPIFFE path segment.
fn valid_k8s_name(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(&f), Some(&l)) if alnum(f) && alnum(l))
        && bytes.len() <= 253
        && bytes.iter().all(|&b| alnum(b) || b == b'-' || b == b'.')
}

// === JWKS file ===

/// The JWKS file, re-read when its modification time or size changes. A change that does
/// not parse is logged once and the previous keys stay in use.
#[derive(Debug)]
struct JwksFile {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    stamp: Option<(SystemTime, u64)>,
    keys: Arc<JwkSet>,
}

impl JwksFile {
    fn open(path: &Path) -> Result<Self, JwksError> {
        let stamp = stamp(path).ok();
        let keys = Arc::new(read_jwks(path)?);
        Ok(Self {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded { stamp, keys }),
        })
    }

    fn keys(&self) -> Arc<JwkSet> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match stamp(&self.path) {
            Ok(s) => Some(s),
            Err(error) => {
                if loaded.stamp.is_some() {
                    tracing::warn!(error = %JwksError::Read(self.path.display().to_string(), error), "Keeping the previous JWKS");
                    loaded.stamp = None;
                }
                return Arc::clone(&loaded.keys);
            }
        };
        if now != loaded.stamp {
            loaded.stamp = now;
            match read_jwks(&self.path) {
                Ok(keys) => {
                    tracing::info!(path = %self.path.display(), keys = keys.keys.len(), "Reloaded JWKS");
                    loaded.keys = Arc::new(keys);
                }
                Err(error) => tracing::warn!(%error, "Keeping the previous JWKS"),
            }
        }
        Arc::clone(&loaded.keys)
    }
}

fn stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

fn read_jwks(path: &Path) -> Result<JwkSet, JwksError> {
    let name = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| JwksError::Read(name(), e))?;
    serde_json::from_str(&text).map_err(|e| JwksError::Parse(name(), e.to_string()))
}
