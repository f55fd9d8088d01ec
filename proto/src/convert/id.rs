//! SPIFFE IDs, selectors and selector-match behaviours.

use signet_common::id::{self, SpiffeId};
use signet_common::selector::{MatchBehavior, Selector, SelectorSet};

use super::ConvertError;
use crate::types;

/// `SPIFFEID{trust_domain, path}` → `SpiffeId`; `field` names it in errors. The ID is
/// required.
pub fn spiffe_id(
    field: &'static str,
    id: Option<&types::Spiffeid>,
) -> Result<SpiffeId, ConvertError> {
    let id = id.ok_or_else(|| ConvertError::new(field, "SPIFFE ID is required"))?;
    if id.trust_domain.is_empty() {
        return Err(ConvertError::new(field, "trust domain is missing"));
    }
    id::from_parts(&id.trust_domain, &id.path).map_err(|e| ConvertError::new(field, e))
}

impl From<&SpiffeId> for types::Spiffeid {
    fn from(id: &SpiffeId) -> Self {
        Self {
            trust_domain: id.trust_domain_name().to_owned(),
            path: id.path().to_owned(),
        }
    }
}

/// Proto selectors → a set, refusing malformed ones; `field` names them in errors.
pub fn selectors(
    field: &'static str,
    sels: &[types::Selector],
) -> Result<SelectorSet, ConvertError> {
    sels.iter()
        .map(|s| {
            Selector::new(s.r#type.clone(), s.value.clone())
                .map_err(|e| ConvertError::new(field, e))
        })
        .collect()
}

impl From<&Selector> for types::Selector {
    fn from(s: &Selector) -> Self {
        Self {
            r#type: s.kind().to_owned(),
            value: s.value().to_owned(),
        }
    }
}

/// SPIRE's match behaviour enum → ours; an unknown value means exact, as in SPIRE.
pub fn match_behavior(value: i32) -> MatchBehavior {
    use types::selector_match::MatchBehavior as M;
    match M::try_from(value).unwrap_or(M::MatchExact) {
        M::MatchExact => MatchBehavior::Exact,
        M::MatchSubset => MatchBehavior::Subset,
        M::MatchSuperset => MatchBehavior::Superset,
        M::MatchAny => MatchBehavior::Any,
    }
}

/// Trust domain names (`federates_with`), each parsed strictly and kept by name.
pub(super) fn trust_domain_names(names: &[String]) -> Result<Vec<String>, ConvertError> {
    names
        .iter()
        .map(|t| {
            id::parse_trust_domain(t)
                .map(|td| td.to_string())
                .map_err(|e| ConvertError::new("federates_with", e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_partial_id_is_refused_naming_the_field() {
        let err = spiffe_id("parent_id", None).unwrap_err();
        assert_eq!(err.to_string(), "parent_id: SPIFFE ID is required");
        let no_td = types::Spiffeid {
            trust_domain: String::new(),
            path: "/w".into(),
        };
        let err = spiffe_id("id", Some(&no_td)).unwrap_err();
        assert_eq!(err.to_string(), "id: trust domain is missing");
    }

    #[test]
    fn ids_and_selectors_round_trip() {
        let id = id::parse_id("spiffe://example.org/w").unwrap();
        let proto = types::Spiffeid::from(&id);
        assert_eq!(spiffe_id("id", Some(&proto)).unwrap(), id);
        let sel: Selector = "unix:uid:1000".parse().unwrap();
        let set = selectors("selectors", &[types::Selector::from(&sel)]).unwrap();
        assert!(set.contains(&sel));
        let bad = types::Selector {
            r#type: String::new(),
            value: "x".into(),
        };
        let err = selectors("by_selectors", &[bad]).unwrap_err();
        assert_eq!(err.field, "by_selectors");
    }
}
