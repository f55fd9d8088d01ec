//! Federation with other trust domains: the relationships this server keeps with foreign
//! trust domains (static from `federates_with`, dynamic through the TrustDomain API), whose
//! bundles are fetched from their bundle endpoints and kept fresh. This server's own bundle
//! endpoint is `endpoints::bundle`.

pub mod fetch;
pub mod manager;

pub use crate::relationship::{EndpointProfile, Relationship, check_endpoint_url};
