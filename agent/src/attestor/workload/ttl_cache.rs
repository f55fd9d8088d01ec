//! A small cache whose values live for a fixed time, for what the unix attestor would
//! otherwise look up on every call (user and group names, binaries' digests). Bounded: when
//! full it drops what has expired, and everything if nothing has, so no caller can grow it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use signet_common::clock::Clock;

/// Values by key, each for `ttl` after it was stored.
#[derive(Debug)]
pub(super) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, SystemTime)>>,
    ttl: Duration,
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    /// At most `capacity` values, each kept for `ttl` by `clock`.
    pub(super) fn new(ttl: Duration, capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            capacity,
            clock,
        }
    }

    /// The value stored for `key`, unless it has expired.
    pub(super) fn get(&self, key: &K) -> Option<V> {
        let now = self.clock.now();
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(_, expires)| now < *expires)
            .map(|(value, _)| value.clone())
    }

    /// Stores `value` for `key` from now on.
    pub(super) fn insert(&self, key: K, value: V) {
        let now = self.clock.now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, expires)| now < *expires);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + self.ttl));
    }
}

#[cfg(test)]
mod tests {
    use signet_common::clock::FakeClock;

    use super::*;

    #[test]
    fn values_expire_and_the_cache_stays_bounded() {
        let clock = Arc::new(FakeClock::at_unix(1_000));
        let cache = TtlCache::new(Duration::from_secs(10), 2, Arc::clone(&clock) as _);
        cache.insert(1, "a");
        clock.advance(Duration::from_secs(9));
        assert_eq!(cache.get(&1), Some("a"));
        assert_eq!(cache.get(&2), None);
        clock.advance(Duration::from_secs(1));
        assert_eq!(cache.get(&1), None, "expired at its ttl");

        cache.insert(2, "b");
        cache.insert(3, "c");
        // Full: the expired 1 goes, 2 and 3 stay.
        assert_eq!((cache.get(&2), cache.get(&3)), (Some("b"), Some("c")));
        cache.insert(4, "d");
        // Full of live values: all go but the new one.
        assert_eq!((cache.get(&2), cache.get(&3)), (None, None));
        assert_eq!(cache.get(&4), Some("d"));
        cache.insert(4, "e");
        assert_eq!(cache.get(&4), Some("e"));
    }
}
