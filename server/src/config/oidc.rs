//! `server.oidc_discovery {}`: the built-in OIDC discovery listener (SPIRE needs its separate
//! `oidc-discovery-provider` for this). Its issuer is the server's `jwt_issuer`, so relying
//! parties find the discovery document at `<jwt_issuer>/.well-known/openid-configuration`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use signet_common::config::{KeyError, PortValue, duration, port};

use super::federation::ServingCertFileBlock;

/// How often the serving certificate files are checked for changes by default.
const FILE_SYNC_DEFAULT: Duration = Duration::from_secs(10);

/// `oidc_discovery { address port serving_cert_file { cert_file_path key_file_path } }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OidcDiscoveryBlock {
    /// Listen address (default `0.0.0.0`).
    pub address: Option<String>,
    /// Listen port (default 443).
    pub port: Option<PortValue>,
    /// The HTTPS certificate and key, PEM files.
    pub serving_cert_file: Option<ServingCertFileBlock>,
}

/// The OIDC discovery listener, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcDiscoveryConfig {
    /// Listen address.
    pub address: String,
    /// Listen port (0: any free port).
    pub port: u16,
    /// Certificate chain PEM.
    pub cert_file: PathBuf,
    /// Private key PEM.
    pub key_file: PathBuf,
    /// How often the two files are checked for changes.
    pub file_sync_interval: Duration,
    /// `issuer` of the discovery document: `server.jwt_issuer` exactly (the `iss` of every
    /// JWT-SVID, which relying parties compare with it).
    pub issuer: String,
}

impl OidcDiscoveryConfig {
    /// `jwks_uri` of the discovery document: `/keys` under the issuer (this listener).
    pub fn jwks_uri(&self) -> String {
        format!("{}/keys", self.issuer.trim_end_matches('/'))
    }
}

const AT: &str = "server.oidc_discovery";

impl OidcDiscoveryBlock {
    /// The typed listener; `jwt_issuer` is the server's (required: it is the OIDC issuer).
    pub(super) fn into_config(
        self,
        jwt_issuer: Option<&str>,
    ) -> Result<OidcDiscoveryConfig, KeyError> {
        let issuer = jwt_issuer.ok_or_else(|| {
            KeyError::sentence(
                AT,
                "needs server.jwt_issuer: it is the issuer relying parties verify",
            )
        })?;
        let valid = issuer.strip_prefix("https://").is_some_and(|rest| {
            !rest.is_empty() && !rest.starts_with('/') && !rest.contains(['?', '#'])
        });
        if !valid {
            return Err(KeyError::new(
                "server.jwt_issuer",
                format!(
                    "{issuer:?} must be an https URL without query or fragment (the issuer of server.oidc_discovery)"
                ),
            ));
        }
        let files = self
            .serving_cert_file
            .ok_or_else(|| KeyError::required(format!("{AT}.serving_cert_file")))?;
        let cert_file = files
            .cert_file_path
            .ok_or_else(|| KeyError::required(format!("{AT}.serving_cert_file.cert_file_path")))?;
        let key_file = files
            .key_file_path
            .ok_or_else(|| KeyError::required(format!("{AT}.serving_cert_file.key_file_path")))?;
        let file_sync_interval = duration(
            &format!("{AT}.serving_cert_file.file_sync_interval"),
            files.file_sync_interval.as_deref(),
            FILE_SYNC_DEFAULT,
        )?;
        Ok(OidcDiscoveryConfig {
            address: self.address.unwrap_or_else(|| "0.0.0.0".into()),
            port: self
                .port
                .map(|p| port(&format!("{AT}.port"), p))
                .transpose()?
                .unwrap_or(443),
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            file_sync_interval,
            issuer: issuer.to_owned(),
        })
    }
}
