//! `server.federation {}` as SPIRE writes it: a bundle endpoint and `federates_with`
//! relationships, checked into [`FederationConfig`]. ACME parses (SPIRE's files load) but is
//! refused when the server runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use signet_common::config::{KeyError, duration};
use signet_common::id::{TrustDomain, parse_id, parse_trust_domain};

use crate::relationship::{EndpointProfile, Relationship};

/// Shortest refresh interval whatever the hint says (SPIRE: 1 min).
pub const MIN_REFRESH: Duration = Duration::from_secs(60);

/// `federation { bundle_endpoint {...} federates_with "<td>" {...} }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationBlock {
    /// This server's bundle endpoint.
    pub bundle_endpoint: Option<BundleEndpointBlock>,
    /// Trust domains to federate with, by name.
    pub federates_with: Option<BTreeMap<String, FederatesWithBlock>>,
}

/// `bundle_endpoint { address port refresh_hint profile "<name>" {...} }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEndpointBlock {
    /// Listen address.
    pub address: Option<String>,
    /// Listen port.
    pub port: Option<signet_common::config::PortValue>,
    /// Refresh hint published in the bundle.
    pub refresh_hint: Option<String>,
    /// ACME (deprecated position; now under `profile "https_web"`).
    pub acme: Option<AcmeBlock>,
    /// `https_spiffe {}` or `https_web { acme {} | serving_cert_file {} }`.
    pub profile: Option<BTreeMap<String, EndpointProfileBlock>>,
}

/// The settings of one bundle endpoint profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointProfileBlock {
    /// ACME certificate.
    pub acme: Option<AcmeBlock>,
    /// A certificate from files.
    pub serving_cert_file: Option<ServingCertFileBlock>,
}

/// `acme {}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeBlock {
    /// ACME directory.
    pub directory_url: Option<String>,
    /// Domain.
    pub domain_name: Option<String>,
    /// Account e-mail.
    pub email: Option<String>,
    /// Terms of service accepted.
    pub tos_accepted: Option<bool>,
}

/// `serving_cert_file {}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingCertFileBlock {
    /// Certificate chain PEM.
    pub cert_file_path: Option<String>,
    /// Key PEM.
    pub key_file_path: Option<String>,
    /// How often the files are re-read.
    pub file_sync_interval: Option<String>,
}

/// `federates_with "<td>" { bundle_endpoint_url bundle_endpoint_profile "<name>" {...} }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatesWithBlock {
    /// The remote bundle endpoint.
    pub bundle_endpoint_url: Option<String>,
    /// `https_web {}` or `https_spiffe { endpoint_spiffe_id }`.
    pub bundle_endpoint_profile: Option<BTreeMap<String, RemoteProfileBlock>>,
}

/// The settings of a remote endpoint's profile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteProfileBlock {
    /// The SPIFFE ID the remote endpoint presents (`https_spiffe`).
    pub endpoint_spiffe_id: Option<String>,
}

// === Typed form ===

/// `server.federation {}` checked and typed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FederationConfig {
    /// This server's bundle endpoint, if it serves one.
    pub bundle_endpoint: Option<BundleEndpointConfig>,
    /// Static relationships (`federates_with`), by trust domain.
    pub federates_with: Vec<Relationship>,
}

/// Where and how this server serves its bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleEndpointConfig {
    /// Listen address (SPIRE: 0.0.0.0).
    pub address: String,
    /// Listen port (SPIRE: 443).
    pub port: u16,
    /// `spiffe_refresh_hint` published in the bundle (SPIRE: 5m).
    pub refresh_hint: Duration,
    /// The certificate the endpoint presents.
    pub profile: ServingProfile,
}

/// The certificate a bundle endpoint presents.
#[derive(Debug, Clone, PartialEq)]
pub enum ServingProfile {
    /// `https_spiffe`: the server's own SVID.
    HttpsSpiffe,
    /// `https_web` with `serving_cert_file`.
    HttpsWebFiles {
        /// Chain PEM.
        cert_file_path: PathBuf,
        /// Key PEM.
        key_file_path: PathBuf,
        /// How often the files are checked for changes (SPIRE: 1h).
        file_sync_interval: Duration,
    },
    /// `https_web` with `acme` (parsed, refused when run).
    Acme,
}

/// SPIRE's default bundle endpoint refresh hint.
pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);
const DEFAULT_FILE_SYNC: Duration = Duration::from_secs(3600);

impl FederationBlock {
    /// Checks the block for a server of trust domain `own`.
    pub fn build(self, own: &TrustDomain) -> Result<FederationConfig, KeyError> {
        let bundle_endpoint = self
            .bundle_endpoint
            .map(BundleEndpointBlock::build)
            .transpose()?;
        let mut federates_with = Vec::new();
        for (name, block) in self.federates_with.unwrap_or_default() {
            federates_with.push(block.build(own, &name)?);
        }
        Ok(FederationConfig {
            bundle_endpoint,
            federates_with,
        })
    }
}

impl BundleEndpointBlock {
    fn build(self) -> Result<BundleEndpointConfig, KeyError> {
        const AT: &str = "server.federation.bundle_endpoint";
        let refresh_hint = duration(
            &format!("{AT}.refresh_hint"),
            self.refresh_hint.as_deref(),
            DEFAULT_REFRESH_HINT,
        )?;
        let mut profiles = self.profile.unwrap_or_default();
        if profiles.len() > 1 {
            return Err(KeyError::new(
                format!("{AT}.profile"),
                "only one profile may be set",
            ));
        }
        let profile = match profiles.pop_first() {
            None if self.acme.is_some() => ServingProfile::Acme,
            None => ServingProfile::HttpsSpiffe,
            Some(_) if self.acme.is_some() => {
                return Err(KeyError::new(
                    format!("{AT}.acme"),
                    "acme is set both outside and inside profile",
                ));
            }
            Some((name, p)) => match name.as_str() {
                "https_spiffe" => {
                    if p.acme.is_some() || p.serving_cert_file.is_some() {
                        return Err(KeyError::sentence(
                            format!("{AT}.profile \"https_spiffe\""),
                            "takes no acme or serving_cert_file",
                        ));
                    }
                    ServingProfile::HttpsSpiffe
                }
                "https_web" => match (p.acme, p.serving_cert_file) {
                    (Some(_), None) => ServingProfile::Acme,
                    (None, Some(f)) => ServingProfile::HttpsWebFiles {
                        cert_file_path: f
                            .cert_file_path
                            .filter(|p| !p.is_empty())
                            .ok_or_else(|| {
                                KeyError::required(format!(
                                    "{AT}.profile \"https_web\".serving_cert_file.cert_file_path"
                                ))
                            })?
                            .into(),
                        key_file_path: f
                            .key_file_path
                            .filter(|p| !p.is_empty())
                            .ok_or_else(|| {
                                KeyError::required(format!(
                                    "{AT}.profile \"https_web\".serving_cert_file.key_file_path"
                                ))
                            })?
                            .into(),
                        file_sync_interval: duration(
                            &format!(
                                "{AT}.profile \"https_web\".serving_cert_file.file_sync_interval"
                            ),
                            f.file_sync_interval.as_deref(),
                            DEFAULT_FILE_SYNC,
                        )?,
                    },
                    _ => {
                        return Err(KeyError::sentence(
                            format!("{AT}.profile \"https_web\""),
                            "needs exactly one of acme or serving_cert_file",
                        ));
                    }
                },
                other => {
                    return Err(KeyError::new(
                        format!("{AT}.profile"),
                        format!("{other:?} is unknown (expected https_spiffe or https_web)"),
                    ));
                }
            },
        };
        Ok(BundleEndpointConfig {
            address: self
                .address
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into()),
            port: self.port.map_or(443, |p| p.0),
            refresh_hint,
            profile,
        })
    }
}

impl FederatesWithBlock {
    fn build(self, own: &TrustDomain, name: &str) -> Result<Relationship, KeyError> {
        let at = format!("server.federation.federates_with {name:?}");
        let trust_domain =
            parse_trust_domain(name).map_err(|e| KeyError::new(&at, e.to_string()))?;
        let url = self
            .bundle_endpoint_url
            .filter(|u| !u.is_empty())
            .ok_or_else(|| KeyError::required(format!("{at}.bundle_endpoint_url")))?;
        let mut profiles = self.bundle_endpoint_profile.unwrap_or_default();
        if profiles.len() != 1 {
            return Err(KeyError::new(
                format!("{at}.bundle_endpoint_profile"),
                "exactly one of \"https_web\" or \"https_spiffe\" is required",
            ));
        }
        let profile = match profiles.pop_first() {
            Some((p, block)) if p == "https_web" => {
                if block.endpoint_spiffe_id.is_some() {
                    return Err(KeyError::sentence(
                        format!("{at}.bundle_endpoint_profile \"https_web\""),
                        "takes no endpoint_spiffe_id",
                    ));
                }
                EndpointProfile::HttpsWeb
            }
            Some((p, block)) if p == "https_spiffe" => {
                let key =
                    format!("{at}.bundle_endpoint_profile \"https_spiffe\".endpoint_spiffe_id");
                let text = block
                    .endpoint_spiffe_id
                    .ok_or_else(|| KeyError::required(&key))?;
                EndpointProfile::HttpsSpiffe {
                    endpoint_spiffe_id: parse_id(&text)
                        .map_err(|e| KeyError::new(&key, e.to_string()))?,
                }
            }
            Some((other, _)) => {
                return Err(KeyError::new(
                    format!("{at}.bundle_endpoint_profile"),
                    format!("{other:?} is unknown (expected https_web or https_spiffe)"),
                ));
            }
            None => unreachable!("one profile checked above"),
        };
        Relationship::new(own, trust_domain, url, profile)
            .map_err(|e| KeyError::new(&at, e.to_string()))
    }
}
