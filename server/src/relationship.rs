//! A federation relationship with a foreign trust domain, as the store keeps it and the
//! config and the TrustDomain API build it: the trust domain, its bundle endpoint URL and how
//! that endpoint is authenticated.

use serde::{Deserialize, Serialize};
use signet_common::id::{self, SpiffeId, TrustDomain};

/// The profile of a foreign bundle endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointProfile {
    /// Web PKI: the endpoint's certificate chains to the system roots and covers the host.
    HttpsWeb,
    /// SPIFFE authentication: the endpoint presents an X509-SVID with this ID, verified
    /// against the bundle of the ID's trust domain.
    HttpsSpiffe {
        /// The SPIFFE ID the endpoint must present.
        #[serde(with = "id::serde_id")]
        endpoint_spiffe_id: SpiffeId,
    },
}

impl EndpointProfile {
    /// `https_web` or `https_spiffe`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::HttpsWeb => "https_web",
            Self::HttpsSpiffe { .. } => "https_spiffe",
        }
    }
}

/// A federation relationship with a foreign trust domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// The foreign trust domain.
    #[serde(with = "signet_common::bundle::serde_td")]
    pub trust_domain: TrustDomain,
    /// Its bundle endpoint (an `https://` URL with a host).
    pub bundle_endpoint_url: String,
    /// How the endpoint is authenticated.
    pub profile: EndpointProfile,
}

/// Checks a bundle endpoint URL as SPIRE does: parseable, `https`, a host, no user info.
pub fn check_endpoint_url(url: &str) -> Result<(), String> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| format!("invalid bundle endpoint URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "invalid bundle endpoint URL {url:?}: scheme must be https"
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("invalid bundle endpoint URL {url:?}: no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "invalid bundle endpoint URL {url:?}: must not contain user info"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("invalid bundle endpoint URL {url:?}: no host"));
    }
    Ok(())
}

impl Relationship {
    /// Builds a relationship from its parts, refusing what SPIRE refuses: the server's own
    /// trust domain, a URL that is not `https://host...`.
    pub fn new(
        own: &TrustDomain,
        trust_domain: TrustDomain,
        bundle_endpoint_url: String,
        profile: EndpointProfile,
    ) -> Result<Self, String> {
        if &trust_domain == own {
            return Err(format!(
                "cannot federate with the server's own trust domain {trust_domain:?}"
            ));
        }
        check_endpoint_url(&bundle_endpoint_url)?;
        Ok(Self {
            trust_domain,
            bundle_endpoint_url,
            profile,
        })
    }
}
