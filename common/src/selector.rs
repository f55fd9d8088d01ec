//! Selectors (`type:value`) and the subset matching that decides which entries apply.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector had no `:` separating type and value.
    #[error("selector {0:?} must be formatted as type:value")]
    MissingSeparator(String),
    /// The type part was empty.
    #[error("selector type is empty")]
    EmptyType,
    /// The type part contained a `:`.
    #[error("selector type {0:?} must not contain ':'")]
    ColonInType(String),
    /// The value part was empty.
    #[error("selector value is empty")]
    EmptyValue,
}

/// One selector: a type (the attestor, such as `unix`) and a value (such as `uid:1000`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Selector {
    kind: String,
    value: String,
}

impl Selector {
    /// A selector, checked as SPIRE checks them: non-empty type without `:`, non-empty value.
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Result<Self, SelectorError> {
        let (kind, value) = (kind.into(), value.into());
        if kind.is_empty() {
            return Err(SelectorError::EmptyType);
        }
        if kind.contains(':') {
            return Err(SelectorError::ColonInType(kind));
        }
        if value.is_empty() {
            return Err(SelectorError::EmptyValue);
        }
        Ok(Self { kind, value })
    }

    /// The selector type (the attestor name).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The selector value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    /// Parses `type:value`; the value may itself contain `:` (`unix:uid:1000`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| SelectorError::MissingSeparator(s.to_owned()))?;
        Self::new(kind, value)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// A sorted, de-duplicated set of selectors, kept as a sorted `Vec`: one allocation, and
/// subset tests by binary search over the larger side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "Vec<Selector>")]
pub struct SelectorSet(Vec<Selector>);

impl SelectorSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether every selector of `self` is in `other`.
    pub fn is_subset_of(&self, other: &SelectorSet) -> bool {
        if self.0.len() > other.0.len() {
            return false;
        }
        // Both sorted: each next selector can only be after the previous one's place.
        let mut rest = other.0.as_slice();
        self.0.iter().all(|s| match rest.binary_search(s) {
            Ok(at) => {
                rest = &rest[at + 1..];
                true
            }
            Err(_) => false,
        })
    }

    /// Whether the sets share at least one selector.
    pub fn intersects(&self, other: &SelectorSet) -> bool {
        let (small, large) = match self.0.len() <= other.0.len() {
            true => (&self.0, &other.0),
            false => (&other.0, &self.0),
        };
        small.iter().any(|s| large.binary_search(s).is_ok())
    }

    /// Adds a selector.
    pub fn insert(&mut self, s: Selector) {
        if let Err(at) = self.0.binary_search(&s) {
            self.0.insert(at, s);
        }
    }

    /// Whether the set contains `s`.
    pub fn contains(&self, s: &Selector) -> bool {
        self.0.binary_search(s).is_ok()
    }

    /// The selectors in order.
    pub fn iter(&self) -> impl Iterator<Item = &Selector> {
        self.0.iter()
    }

    /// How many selectors there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<Selector>> for SelectorSet {
    fn from(mut v: Vec<Selector>) -> Self {
        v.sort_unstable();
        v.dedup();
        v.shrink_to_fit();
        Self(v)
    }
}

impl FromIterator<Selector> for SelectorSet {
    fn from_iter<I: IntoIterator<Item = Selector>>(iter: I) -> Self {
        Self::from(iter.into_iter().collect::<Vec<_>>())
    }
}

/// How a selector filter compares an entry's selectors with the requested ones (SPIRE's
/// `SelectorMatch.MatchBehavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchBehavior {
    /// The sets are equal.
    Exact,
    /// The entry's selectors are a subset of the requested ones.
    Subset,
    /// The entry's selectors are a superset of the requested ones.
    Superset,
    /// The sets share at least one selector.
    Any,
}

impl MatchBehavior {
    /// Whether `candidate` matches `requested` under this behaviour.
    pub fn matches(self, candidate: &SelectorSet, requested: &SelectorSet) -> bool {
        match self {
            Self::Exact => candidate == requested,
            Self::Subset => candidate.is_subset_of(requested),
            Self::Superset => requested.is_subset_of(candidate),
            Self::Any => candidate.intersects(requested),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> SelectorSet {
        items.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn parses_type_and_value_with_colons() {
        let s: Selector = "unix:uid:1000".parse().unwrap();
        assert_eq!((s.kind(), s.value()), ("unix", "uid:1000"));
        assert_eq!(s.to_string(), "unix:uid:1000");
    }

    #[test]
    fn rejects_malformed_selectors() {
        assert!(matches!(
            "unix".parse::<Selector>(),
            Err(SelectorError::MissingSeparator(_))
        ));
        assert_eq!(":x".parse::<Selector>(), Err(SelectorError::EmptyType));
        assert_eq!("unix:".parse::<Selector>(), Err(SelectorError::EmptyValue));
    }

    #[test]
    fn match_behaviours_follow_spire() {
        let entry = set(&["unix:uid:1", "unix:gid:2"]);
        assert!(MatchBehavior::Exact.matches(&entry, &set(&["unix:gid:2", "unix:uid:1"])));
        assert!(MatchBehavior::Subset.matches(&entry, &set(&["unix:uid:1", "unix:gid:2", "x:y"])));
        assert!(!MatchBehavior::Subset.matches(&entry, &set(&["unix:uid:1"])));
        assert!(MatchBehavior::Superset.matches(&entry, &set(&["unix:uid:1"])));
        assert!(MatchBehavior::Any.matches(&entry, &set(&["unix:gid:2", "x:y"])));
        assert!(!MatchBehavior::Any.matches(&entry, &set(&["x:y"])));
    }

    #[test]
    fn a_set_is_sorted_and_deduplicated_however_it_is_made() {
        let a = set(&["b:2", "a:1", "b:2", "c:3"]);
        let mut b = SelectorSet::new();
        for s in ["c:3", "a:1", "b:2", "a:1"] {
            b.insert(s.parse().unwrap());
        }
        let c: SelectorSet = serde_json::from_str(r#"[{"kind":"c","value":"3"},{"kind":"a","value":"1"},{"kind":"b","value":"2"},{"kind":"c","value":"3"}]"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        let shown: Vec<String> = a.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["a:1", "b:2", "c:3"]);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&c).unwrap()
        );
    }

    /// Subset, intersection and membership agree with a plain scan on every pair of subsets
    /// of five selectors.
    #[test]
    fn set_relations_agree_with_a_scan() {
        let all: Vec<Selector> = ["a:1", "a:2", "b:1", "c:x", "d:y"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let subset = |mask: u32| -> Vec<Selector> {
            (0..all.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| all[i].clone())
                .collect()
        };
        for m in 0..32u32 {
            let (xv, x) = (subset(m), SelectorSet::from_iter(subset(m)));
            for n in 0..32u32 {
                let (yv, y) = (subset(n), SelectorSet::from_iter(subset(n)));
                assert_eq!(
                    x.is_subset_of(&y),
                    xv.iter().all(|s| yv.contains(s)),
                    "{m} {n}"
                );
                assert_eq!(
                    x.intersects(&y),
                    xv.iter().any(|s| yv.contains(s)),
                    "{m} {n}"
                );
            }
            for s in &all {
                assert_eq!(x.contains(s), xv.contains(s));
            }
        }
    }
}
