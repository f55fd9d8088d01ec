//! Registration entries: which SPIFFE ID a workload matching some selectors gets, under
//! which parent (an agent, or a node alias).

use serde::{Deserialize, Serialize};

use crate::id::{SpiffeId, serde_id};
use crate::selector::SelectorSet;

/// A registration entry as stored and served. Fields follow SPIRE's `types.Entry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationEntry {
    /// Entry ID (a UUID unless the creator chose one).
    pub id: String,
    /// The identity issued to matching workloads.
    #[serde(with = "serde_id")]
    pub spiffe_id: SpiffeId,
    /// The agent (or node alias) under which the entry applies.
    #[serde(with = "serde_id")]
    pub parent_id: SpiffeId,
    /// All of these must be among a workload's selectors for the entry to apply.
    pub selectors: SelectorSet,
    /// X509-SVID TTL in seconds; 0 means the server default.
    pub x509_svid_ttl: i32,
    /// JWT-SVID TTL in seconds; 0 means the server default.
    pub jwt_svid_ttl: i32,
    /// DNS SANs for the X509-SVID; the first is also the subject CN.
    pub dns_names: Vec<String>,
    /// Trust domain names whose bundles the workload also receives.
    pub federates_with: Vec<String>,
    /// Callers with this identity may use the admin APIs.
    pub admin: bool,
    /// Callers with this identity may act as downstream servers.
    pub downstream: bool,
    /// An opaque hint returned to workloads.
    pub hint: String,
    /// Unix seconds after which the entry is pruned; 0 means never.
    pub expires_at: i64,
    /// 0 on create, +1 on every update.
    pub revision_number: i64,
    /// Unix seconds when the entry was created.
    pub created_at: i64,
    /// The SVID goes to an SVID store rather than the Workload API.
    pub store_svid: bool,
}

impl RegistrationEntry {
    /// An entry giving `spiffe_id` to workloads under `parent_id` with all of `selectors`;
    /// every other field takes its default (server TTLs, no DNS names, no federation, not
    /// admin or downstream, never expiring, revision 0, created at 0).
    pub fn new(
        id: impl Into<String>,
        spiffe_id: SpiffeId,
        parent_id: SpiffeId,
        selectors: SelectorSet,
    ) -> Self {
        Self {
            id: id.into(),
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            dns_names: Vec::new(),
            federates_with: Vec::new(),
            admin: false,
            downstream: false,
            hint: String::new(),
            expires_at: 0,
            revision_number: 0,
            created_at: 0,
            store_svid: false,
        }
    }

    /// Whether this entry applies to a workload with `selectors`.
    pub fn matches(&self, selectors: &SelectorSet) -> bool {
        self.selectors.is_subset_of(selectors)
    }

    /// Whether another entry has the same SPIFFE ID, parent and exact selector set (SPIRE
    /// refuses such a duplicate with AlreadyExists).
    pub fn is_similar(&self, other: &RegistrationEntry) -> bool {
        self.spiffe_id == other.spiffe_id
            && self.parent_id == other.parent_id
            && self.selectors == other.selectors
    }

    /// Whether the entry has an expiry and it is before `before` (it is due to be pruned).
    pub fn expired_before(&self, before: i64) -> bool {
        expires_before(self.expires_at, before)
    }
}

/// Whether an entry with `expires_at` (0: never) expired before `before`.
pub fn expires_before(expires_at: i64, before: i64) -> bool {
    0 < expires_at && expires_at < before
}

/// Whether an entry ID is acceptable: 1 to 255 characters of `[A-Za-z0-9._-]`.
pub fn valid_entry_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether a DNS name is acceptable for an SVID: labels of letters, digits and hyphens, not
/// starting or ending with a hyphen, at most 63 bytes each and 253 in all; a leading `*.`
/// wildcard is allowed.
pub fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::parse_id;

    fn entry(sels: &[&str]) -> RegistrationEntry {
        RegistrationEntry::new(
            "e1",
            parse_id("spiffe://example.org/w").unwrap(),
            parse_id("spiffe://example.org/spire/agent/x/y").unwrap(),
            sels.iter().map(|s| s.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn entry_matches_when_its_selectors_are_a_subset() {
        let e = entry(&["unix:uid:1000"]);
        let workload: SelectorSet = ["unix:uid:1000", "unix:gid:1000"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(e.matches(&workload));
        assert!(!entry(&["unix:uid:1000", "unix:user:x"]).matches(&workload));
    }

    #[test]
    fn entry_round_trips_through_json() {
        let e = entry(&["unix:uid:1"]);
        let back: RegistrationEntry =
            serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn validates_entry_ids_and_dns_names() {
        assert!(valid_entry_id("abc-1.2_3"));
        assert!(!valid_entry_id("a/b") && !valid_entry_id(""));
        assert!(valid_dns_name("web.example.org") && valid_dns_name("*.example.org"));
        assert!(
            !valid_dns_name("-bad.example.org")
                && !valid_dns_name("a..b")
                && !valid_dns_name("a b")
        );
    }
}
