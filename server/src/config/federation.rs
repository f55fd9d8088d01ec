//! `server.federation {}` as SPIRE writes it: a bundle endpoint and `federates_with`
//! relationships. Parsed into typed form so that SPIRE's files load (and `import` reads
//! them); the server refuses to run with it until federation exists.

use std::collections::BTreeMap;

use serde::Deserialize;

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
    pub port: Option<u16>,
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
