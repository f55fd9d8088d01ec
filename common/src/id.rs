//! SPIFFE IDs and trust domains: the `spiffe` crate's types, parsed strictly (canonical
//! lowercase, as go-spiffe and SPIRE demand), plus the IDs SPIRE reserves for its own parts.

pub use spiffe::{SpiffeId, SpiffeIdError, TrustDomain};

/// Trust domain names longer than this are refused.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// SPIFFE IDs longer than this are refused.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// Why a SPIFFE ID or trust domain was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdError {
    /// The `spiffe` crate refused it.
    #[error("invalid SPIFFE ID {id:?}: {source}")]
    Invalid {
        /// The text that was parsed.
        id: String,
        /// What was wrong with it.
        source: SpiffeIdError,
    },
    /// Scheme or trust domain was not in canonical lowercase.
    #[error("invalid SPIFFE ID {0:?}: scheme and trust domain must be lowercase")]
    NotLowercase(String),
    /// Too long.
    #[error("invalid SPIFFE ID {0:?}: longer than {MAX_SPIFFE_ID_LEN} bytes")]
    TooLong(String),
    /// The trust domain part was too long.
    #[error("invalid trust domain {0:?}: longer than {MAX_TRUST_DOMAIN_LEN} bytes")]
    TrustDomainTooLong(String),
    /// A path was required but the ID had none.
    #[error("invalid SPIFFE ID {0:?}: path is empty")]
    EmptyPath(String),
    /// The ID was in another trust domain.
    #[error("invalid SPIFFE ID {id:?}: not a member of trust domain {trust_domain:?}")]
    ForeignTrustDomain {
        /// The ID.
        id: String,
        /// The trust domain it had to be in.
        trust_domain: String,
    },
    /// The ID lies under a path SPIRE reserves for itself.
    #[error("invalid SPIFFE ID {0:?}: paths under /spire are reserved")]
    Reserved(String),
}

/// Parses a SPIFFE ID strictly: the `spiffe` crate's rules, plus canonical lowercase scheme
/// and trust domain and the length limits of the SPIFFE ID specification.
pub fn parse_id(s: &str) -> Result<SpiffeId, IdError> {
    if s.len() > MAX_SPIFFE_ID_LEN {
        return Err(IdError::TooLong(s.to_owned()));
    }
    let id = SpiffeId::new(s).map_err(|source| IdError::Invalid {
        id: s.to_owned(),
        source,
    })?;
    let prefix_len = "spiffe://".len() + id.trust_domain_name().len();
    if s.get(..prefix_len) != Some(&format!("spiffe://{}", id.trust_domain_name())) {
        return Err(IdError::NotLowercase(s.to_owned()));
    }
    if id.trust_domain_name().len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong(s.to_owned()));
    }
    Ok(id)
}

/// Parses a trust domain name (`example.org`) or ID (`spiffe://example.org`) strictly.
pub fn parse_trust_domain(s: &str) -> Result<TrustDomain, IdError> {
    let td = TrustDomain::new(s).map_err(|source| IdError::Invalid {
        id: s.to_owned(),
        source,
    })?;
    if td.as_str().len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong(s.to_owned()));
    }
    if !s.ends_with(td.as_str()) && !s.contains(&format!("//{}", td.as_str())) {
        return Err(IdError::NotLowercase(s.to_owned()));
    }
    Ok(td)
}

/// Builds `spiffe://<td><path>` from the two halves SPIRE's API sends (`SPIFFEID{td, path}`).
pub fn from_parts(trust_domain: &str, path: &str) -> Result<SpiffeId, IdError> {
    if trust_domain.contains(':') || trust_domain.contains('/') {
        return Err(IdError::Invalid {
            id: format!("{trust_domain}{path}"),
            source: SpiffeIdError::BadTrustDomainChar,
        });
    }
    if !path.is_empty() && !path.starts_with('/') {
        return Err(IdError::Invalid {
            id: format!("spiffe://{trust_domain}{path}"),
            source: SpiffeIdError::BadPathSegmentChar,
        });
    }
    parse_id(&format!("spiffe://{trust_domain}{path}"))
}

/// Requires `id` to be in `td` and to have a non-empty path (a workload or agent ID).
pub fn require_member_with_path(id: &SpiffeId, td: &TrustDomain) -> Result<(), IdError> {
    if !id.is_member_of(td) {
        return Err(IdError::ForeignTrustDomain {
            id: id.to_string(),
            trust_domain: td.to_string(),
        });
    }
    if id.path().is_empty() {
        return Err(IdError::EmptyPath(id.to_string()));
    }
    Ok(())
}

/// Whether the ID lies under `/spire/` (reserved for servers and agents).
pub fn is_reserved(id: &SpiffeId) -> bool {
    id.path() == "/spire" || id.path().starts_with("/spire/")
}

/// The server's own ID: `spiffe://<td>/spire/server`.
pub fn server_id(td: &TrustDomain) -> SpiffeId {
    child(td, "/spire/server")
}

/// An agent ID: `spiffe://<td>/spire/agent/<attestor>/<rest>`.
pub fn agent_id(td: &TrustDomain, attestor: &str, rest: &str) -> Result<SpiffeId, IdError> {
    parse_id(&format!("spiffe://{td}/spire/agent/{attestor}/{rest}"))
}

/// Whether the ID is an agent ID (`/spire/agent/...`).
pub fn is_agent_id(id: &SpiffeId) -> bool {
    id.path().starts_with("/spire/agent/")
}

/// The trust domain's own ID: `spiffe://<td>`.
pub fn trust_domain_id(td: &TrustDomain) -> SpiffeId {
    child(td, "")
}

#[expect(
    clippy::expect_used,
    reason = "fixed paths of valid characters under a valid trust domain"
)]
fn child(td: &TrustDomain, path: &str) -> SpiffeId {
    SpiffeId::new(format!("{}{path}", td.id_string())).expect("reserved IDs are valid")
}

/// Serde helpers that store a `SpiffeId` as its string form.
pub mod serde_id {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::SpiffeId;

    /// Serializes as a string.
    pub fn serialize<S: Serializer>(id: &SpiffeId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    /// Deserializes from a string, re-validating it.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SpiffeId, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_id(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_canonical_ids() {
        let id = parse_id("spiffe://example.org/ns/default/sa/web").unwrap();
        assert_eq!(id.trust_domain_name(), "example.org");
        assert_eq!(id.path(), "/ns/default/sa/web");
    }

    #[test]
    fn rejects_each_rule_of_the_spec() {
        for bad in [
            "",
            "http://example.org/a",
            "spiffe:///a",
            "spiffe://Example.org/a",
            "SPIFFE://example.org/a",
            "spiffe://exa mple.org/a",
            "spiffe://example.org:8080/a",
            "spiffe://user@example.org/a",
            "spiffe://example.org/a//b",
            "spiffe://example.org/a/./b",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a/",
            "spiffe://example.org/a%20b",
            "spiffe://example.org/a?q=1",
            "spiffe://example.org/a#f",
        ] {
            assert!(parse_id(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("spiffe://example.org/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        assert!(matches!(parse_id(&long), Err(IdError::TooLong(_))));
        let long_td = format!("spiffe://{}/a", "a".repeat(256));
        assert!(parse_id(&long_td).is_err());
    }

    #[test]
    fn builds_reserved_ids() {
        let td = parse_trust_domain("example.org").unwrap();
        assert_eq!(
            server_id(&td).to_string(),
            "spiffe://example.org/spire/server"
        );
        assert_eq!(trust_domain_id(&td).to_string(), "spiffe://example.org");
        let agent = agent_id(&td, "join_token", "abc").unwrap();
        assert!(is_agent_id(&agent) && is_reserved(&agent));
    }

    #[test]
    fn from_parts_checks_both_halves() {
        assert!(from_parts("example.org", "/a").is_ok());
        assert!(from_parts("example.org", "a").is_err());
        assert!(from_parts("spiffe://example.org", "/a").is_err());
    }

    #[test]
    fn member_with_path_is_required_for_workloads() {
        let td = parse_trust_domain("example.org").unwrap();
        let other = parse_id("spiffe://other.org/a").unwrap();
        assert!(matches!(
            require_member_with_path(&other, &td),
            Err(IdError::ForeignTrustDomain { .. })
        ));
        let root = parse_id("spiffe://example.org").unwrap();
        assert!(matches!(
            require_member_with_path(&root, &td),
            Err(IdError::EmptyPath(_))
        ));
    }
}
