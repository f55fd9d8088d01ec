//! The top-level `istio_ca { ... }` block: Signet as Istio's external CA
//! (`istio.v1.auth.IstioCertificateService` on the TCP port). Absent: not served.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use signet_common::config::{KeyError, duration};

/// Istio's default token audience (`TOKEN_AUDIENCES`).
const DEFAULT_TOKEN_AUDIENCE: &str = "istio-ca";
/// istio-agent's default `SECRET_TTL`.
const DEFAULT_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// `istio_ca` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IstioCaBlock {
    token_issuer: Option<String>,
    token_audience: Option<String>,
    jwks_path: Option<PathBuf>,
    max_validity: Option<String>,
    default_validity: Option<String>,
    server_dns_names: Option<Vec<String>>,
}

/// How the Istio CA service authenticates callers and bounds what it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IstioCaConfig {
    /// The `iss` every Kubernetes service-account token must carry.
    pub token_issuer: String,
    /// A member the token's `aud` must contain.
    pub token_audience: String,
    /// The cluster's service-account signing keys, as a JWKS file (re-read when it changes).
    pub jwks_path: PathBuf,
    /// Cap on `validity_duration`.
    pub max_validity: Duration,
    /// Lifetime when `validity_duration` is 0.
    pub default_validity: Duration,
    /// DNS names added to the server's own TLS certificate, so that istio-agent (which
    /// checks the `CA_ADDR` host name with Go's standard verification) accepts it.
    pub server_dns_names: Vec<String>,
}

impl IstioCaBlock {
    /// Checks the block and fills in the defaults.
    pub(super) fn build(self) -> Result<IstioCaConfig, KeyError> {
        let token_issuer = self
            .token_issuer
            .filter(|i| !i.is_empty())
            .ok_or_else(|| KeyError::required("istio_ca.token_issuer"))?;
        let token_audience = match self.token_audience {
            Some(a) if a.is_empty() => {
                return Err(KeyError::sentence(
                    "istio_ca.token_audience",
                    "must not be empty",
                ));
            }
            Some(a) => a,
            None => DEFAULT_TOKEN_AUDIENCE.into(),
        };
        let jwks_path = self
            .jwks_path
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| KeyError::required("istio_ca.jwks_path"))?;
        let max_validity = duration(
            "istio_ca.max_validity",
            self.max_validity.as_deref(),
            DEFAULT_VALIDITY,
        )?;
        let default_validity = duration(
            "istio_ca.default_validity",
            self.default_validity.as_deref(),
            DEFAULT_VALIDITY.min(max_validity),
        )?;
        if default_validity > max_validity {
            return Err(KeyError::sentence(
                "istio_ca.default_validity",
                "must not exceed max_validity",
            ));
        }
        let server_dns_names = self.server_dns_names.unwrap_or_default();
        if let Some(bad) = server_dns_names.iter().find(|d| !valid_dns_name(d)) {
            return Err(KeyError::new(
                "istio_ca.server_dns_names",
                format!("expected DNS names, got {bad:?}"),
            ));
        }
        Ok(IstioCaConfig {
            token_issuer,
            token_audience,
            jwks_path,
            max_validity,
            default_validity,
            server_dns_names,
        })
    }
}

/// Letters, digits, `-` and `.`; labels of 1 to 63 characters; at most 253 in all.
fn valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
