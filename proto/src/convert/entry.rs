//! Registration entries: SPIRE's `types.Entry` ↔ [`RegistrationEntry`].

use signet_common::entry::{RegistrationEntry, valid_dns_name, valid_entry_id};
use signet_common::id::{self, SpiffeId, TrustDomain};
use signet_common::selector::SelectorSet;

use super::ConvertError;
use super::id::{selectors, spiffe_id, trust_domain_names};
use crate::types;

/// Longest hint SPIRE accepts.
const MAX_HINT_LEN: usize = 1024;

/// An entry as a server sent it: every field must be well-formed, nothing more is checked.
impl TryFrom<&types::Entry> for RegistrationEntry {
    type Error = ConvertError;

    fn try_from(e: &types::Entry) -> Result<Self, ConvertError> {
        if e.id.is_empty() {
            return Err(ConvertError::new("id", "entry ID is required"));
        }
        let spiffe = spiffe_id("spiffe_id", e.spiffe_id.as_ref())?;
        let parent = spiffe_id("parent_id", e.parent_id.as_ref())?;
        let selectors = selectors("selectors", &e.selectors)?;
        let federates_with = trust_domain_names(&e.federates_with)?;
        Ok(from_parts(e, spiffe, parent, selectors, federates_with))
    }
}

/// Parses and checks an entry given to the entry API (create, or a fully specified update),
/// as SPIRE validates registration entries: IDs in `td` with a path, the SPIFFE ID outside
/// SPIRE's reserved `/spire` paths, at least one selector, and sane TTLs, DNS names and
/// hint. `revision_number` and `created_at` are left at 0 for the store to set.
pub fn validated_entry(
    e: &types::Entry,
    td: &TrustDomain,
) -> Result<RegistrationEntry, ConvertError> {
    let spiffe = spiffe_id("spiffe_id", e.spiffe_id.as_ref())?;
    let parent = spiffe_id("parent_id", e.parent_id.as_ref())?;
    id::require_member_with_path(&spiffe, td).map_err(|err| ConvertError::new("spiffe_id", err))?;
    if id::is_reserved(&spiffe) {
        return Err(ConvertError::new(
            "spiffe_id",
            format!("{spiffe} is reserved for servers and agents (path under /spire)"),
        ));
    }
    id::require_member_with_path(&parent, td).map_err(|err| ConvertError::new("parent_id", err))?;
    if e.selectors.is_empty() {
        return Err(ConvertError::new(
            "selectors",
            "at least one selector is required",
        ));
    }
    let selectors = selectors("selectors", &e.selectors)?;
    if !e.id.is_empty() && !valid_entry_id(&e.id) {
        return Err(ConvertError::new(
            "id",
            format!("{:?} must be 1 to 255 characters of [A-Za-z0-9._-]", e.id),
        ));
    }
    let negative = |field| ConvertError::new(field, "must not be negative");
    if e.x509_svid_ttl < 0 {
        return Err(negative("x509_svid_ttl"));
    }
    if e.jwt_svid_ttl < 0 {
        return Err(negative("jwt_svid_ttl"));
    }
    if e.expires_at < 0 {
        return Err(negative("expires_at"));
    }
    if let Some(dns) = e.dns_names.iter().find(|d| !valid_dns_name(d)) {
        return Err(ConvertError::new(
            "dns_names",
            format!("{dns:?} is not a valid DNS name"),
        ));
    }
    if e.hint.len() > MAX_HINT_LEN {
        return Err(ConvertError::new(
            "hint",
            format!("longer than {MAX_HINT_LEN} characters"),
        ));
    }
    let federates_with = trust_domain_names(&e.federates_with)?;
    Ok(RegistrationEntry {
        revision_number: 0,
        created_at: 0,
        ..from_parts(e, spiffe, parent, selectors, federates_with)
    })
}

/// The entry `e` describes, with its parsed parts.
fn from_parts(
    e: &types::Entry,
    spiffe_id: SpiffeId,
    parent_id: SpiffeId,
    selectors: SelectorSet,
    federates_with: Vec<String>,
) -> RegistrationEntry {
    RegistrationEntry {
        x509_svid_ttl: e.x509_svid_ttl,
        jwt_svid_ttl: e.jwt_svid_ttl,
        dns_names: e.dns_names.clone(),
        federates_with,
        admin: e.admin,
        downstream: e.downstream,
        hint: e.hint.clone(),
        expires_at: e.expires_at,
        revision_number: e.revision_number,
        created_at: e.created_at,
        store_svid: e.store_svid,
        ..RegistrationEntry::new(e.id.clone(), spiffe_id, parent_id, selectors)
    }
}

impl From<&RegistrationEntry> for types::Entry {
    fn from(e: &RegistrationEntry) -> Self {
        entry_to_proto(e, None)
    }
}

/// The mask of every entry field.
pub fn full_entry_mask() -> types::EntryMask {
    types::EntryMask {
        spiffe_id: true,
        parent_id: true,
        selectors: true,
        x509_svid_ttl: true,
        federates_with: true,
        admin: true,
        downstream: true,
        expires_at: true,
        dns_names: true,
        revision_number: true,
        store_svid: true,
        jwt_svid_ttl: true,
        hint: true,
        created_at: true,
        additional_attributes: true,
    }
}

/// An entry → proto, keeping only the fields in `mask` (all when `mask` is `None`). The ID
/// is always set.
pub fn entry_to_proto(e: &RegistrationEntry, mask: Option<&types::EntryMask>) -> types::Entry {
    let all = full_entry_mask();
    let m = mask.unwrap_or(&all);
    types::Entry {
        id: e.id.clone(),
        spiffe_id: m.spiffe_id.then(|| (&e.spiffe_id).into()),
        parent_id: m.parent_id.then(|| (&e.parent_id).into()),
        selectors: if m.selectors {
            e.selectors.iter().map(types::Selector::from).collect()
        } else {
            vec![]
        },
        x509_svid_ttl: if m.x509_svid_ttl { e.x509_svid_ttl } else { 0 },
        federates_with: if m.federates_with {
            e.federates_with.clone()
        } else {
            vec![]
        },
        admin: m.admin && e.admin,
        downstream: m.downstream && e.downstream,
        expires_at: if m.expires_at { e.expires_at } else { 0 },
        dns_names: if m.dns_names {
            e.dns_names.clone()
        } else {
            vec![]
        },
        revision_number: if m.revision_number {
            e.revision_number
        } else {
            0
        },
        store_svid: m.store_svid && e.store_svid,
        jwt_svid_ttl: if m.jwt_svid_ttl { e.jwt_svid_ttl } else { 0 },
        hint: if m.hint {
            e.hint.clone()
        } else {
            String::new()
        },
        created_at: if m.created_at { e.created_at } else { 0 },
        additional_attributes: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn td() -> TrustDomain {
        id::parse_trust_domain("example.org").unwrap()
    }

    fn pid(path: &str) -> Option<types::Spiffeid> {
        Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: path.into(),
        })
    }

    fn valid() -> types::Entry {
        types::Entry {
            spiffe_id: pid("/workload"),
            parent_id: pid("/spire/agent/join_token/t"),
            selectors: vec![types::Selector {
                r#type: "unix".into(),
                value: "uid:1000".into(),
            }],
            ..Default::default()
        }
    }

    /// An entry as a server sends it: with an ID, a revision and a creation time.
    fn served() -> types::Entry {
        types::Entry {
            id: "e1".into(),
            spiffe_id: pid("/web"),
            federates_with: vec!["spiffe://other.org".into()],
            revision_number: 3,
            created_at: 7,
            ..valid()
        }
    }

    #[test]
    fn accepts_a_valid_entry() {
        let e = validated_entry(&valid(), &td()).unwrap();
        assert_eq!(e.spiffe_id.to_string(), "spiffe://example.org/workload");
        let back = entry_to_proto(&e, None);
        assert_eq!(back.spiffe_id, pid("/workload"));
    }

    #[test]
    fn refuses_bad_entries_naming_the_field() {
        type Mutation = Box<dyn Fn(&mut types::Entry)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|e| e.spiffe_id = None), "spiffe_id"),
            (Box::new(|e| e.spiffe_id = pid("/a//b")), "spiffe_id"),
            (Box::new(|e| e.spiffe_id = pid("/a/")), "spiffe_id"),
            (Box::new(|e| e.spiffe_id = pid("/a/../b")), "spiffe_id"),
            (Box::new(|e| e.spiffe_id = pid("")), "spiffe_id"),
            (
                Box::new(|e| e.spiffe_id = pid("/spire/agent/x")),
                "reserved",
            ),
            (
                Box::new(|e| {
                    e.spiffe_id = Some(types::Spiffeid {
                        trust_domain: "other.org".into(),
                        path: "/w".into(),
                    })
                }),
                "trust domain",
            ),
            (
                Box::new(|e| {
                    e.spiffe_id = Some(types::Spiffeid {
                        trust_domain: "Example.org".into(),
                        path: "/w".into(),
                    })
                }),
                "spiffe_id",
            ),
            (Box::new(|e| e.parent_id = None), "parent_id"),
            (Box::new(|e| e.selectors.clear()), "selectors"),
            (Box::new(|e| e.selectors[0].value.clear()), "selectors"),
            (
                Box::new(|e| e.selectors[0].r#type = "a:b".into()),
                "selectors",
            ),
            (Box::new(|e| e.x509_svid_ttl = -1), "x509_svid_ttl"),
            (
                Box::new(|e| e.dns_names = vec!["bad name".into()]),
                "dns_names",
            ),
            (Box::new(|e| e.id = "bad/id".into()), "id"),
            (
                Box::new(|e| e.federates_with = vec!["spiffe://Bad".into()]),
                "federates_with",
            ),
        ];
        for (mutate, needle) in cases {
            let mut e = valid();
            mutate(&mut e);
            let err = validated_entry(&e, &td()).unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn converts_a_served_entry() {
        let e = RegistrationEntry::try_from(&served()).unwrap();
        assert_eq!(e.spiffe_id.to_string(), "spiffe://example.org/web");
        assert_eq!(e.federates_with, vec!["other.org".to_owned()]);
        assert_eq!((e.revision_number, e.created_at), (3, 7));
        assert_eq!(e.selectors.len(), 1);
        assert_eq!(RegistrationEntry::try_from(&types::Entry::from(&e)), Ok(e));
    }

    #[test]
    fn malformed_served_entries_are_errors() {
        let mut p = served();
        p.spiffe_id = None;
        assert!(RegistrationEntry::try_from(&p).is_err());
        let mut p = served();
        p.selectors[0].r#type = String::new();
        assert!(RegistrationEntry::try_from(&p).is_err());
        let mut p = served();
        p.id = String::new();
        assert!(RegistrationEntry::try_from(&p).is_err());
    }
}
