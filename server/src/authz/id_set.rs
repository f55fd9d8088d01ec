//! The entry IDs the index lists under one SPIFFE ID (as parent, or as the entries' own ID).
//! Most SPIFFE IDs name one entry, so one ID is held inline, with no allocation of its own;
//! more go into a hash set. The IDs are the index's shared `Arc<str>`s, never copies.

use std::collections::HashSet;
use std::sync::Arc;

#[derive(Debug)]
pub(super) enum IdSet {
    One(Arc<str>),
    Many(HashSet<Arc<str>>),
}

impl IdSet {
    pub(super) fn insert(&mut self, id: Arc<str>) {
        match self {
            IdSet::One(one) if *one == id => {}
            IdSet::One(one) => *self = IdSet::Many(HashSet::from([Arc::clone(one), id])),
            IdSet::Many(set) => {
                set.insert(id);
            }
        }
    }

    /// Removes `id`; returns whether the set is now empty (the caller drops it then).
    pub(super) fn remove(&mut self, id: &str) -> bool {
        match self {
            IdSet::One(one) => **one == *id,
            IdSet::Many(set) => {
                set.remove(id);
                if set.len() == 1
                    && let Some(last) = set.iter().next()
                {
                    *self = IdSet::One(Arc::clone(last));
                    return false;
                }
                set.is_empty()
            }
        }
    }

    /// The IDs, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        let (one, many) = match self {
            IdSet::One(id) => (Some(id), None),
            IdSet::Many(set) => (None, Some(set)),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(set: &IdSet) -> Vec<&str> {
        let mut ids: Vec<&str> = set.iter().map(|id| &**id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn holds_what_was_inserted_and_not_removed() {
        let mut set = IdSet::One("a".into());
        set.insert("a".into());
        assert!(matches!(set, IdSet::One(_)));
        assert_eq!(sorted(&set), ["a"]);
        set.insert("b".into());
        set.insert("c".into());
        assert_eq!(sorted(&set), ["a", "b", "c"]);
        assert!(!set.remove("x"));
        assert!(!set.remove("b"));
        assert_eq!(sorted(&set), ["a", "c"]);
        assert!(!set.remove("a"));
        assert!(matches!(set, IdSet::One(_)));
        assert_eq!(sorted(&set), ["c"]);
        assert!(!set.remove("a"));
        assert!(set.remove("c"));
    }
}
