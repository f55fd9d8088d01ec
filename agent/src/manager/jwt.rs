//! JWT-SVID cache (SPIRE's `jwt_svid_cache_max_size`): one token per SPIFFE ID and audience
//! set, reused until its jittered half life; if renewing fails, the cached token is still
//! returned while it has not expired. Least recently used tokens go first when full, by
//! count or by bytes (keys and tokens together: a token carries its audience, which callers
//! choose); tokens signed by a tainted key are dropped.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use signet_common::clock::{from_unix_seconds, unix_seconds};
use signet_common::id::SpiffeId;
use signet_common::rotation::renew_at;

use crate::client::JwtSvid;

/// The most bytes of keys and tokens the cache holds, whatever `jwt_svid_cache_max_size`
/// says: with audiences of up to 32 x 2 KiB (the Workload API's limits) a token is ~90 KiB,
/// so this still holds ~90 of the largest, and thousands of ordinary ones.
pub const MAX_CACHE_BYTES: usize = 8 << 20;

/// Cache key: the SPIFFE ID and the sorted, de-duplicated audience.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwtKey {
    spiffe_id: String,
    audience: Vec<String>,
}

impl JwtKey {
    /// The key for `spiffe_id` and `audience` (order and repeats do not matter).
    pub fn new(spiffe_id: &SpiffeId, audience: &[String]) -> Self {
        let mut audience = audience.to_vec();
        audience.sort_unstable();
        audience.dedup();
        Self {
            spiffe_id: spiffe_id.to_string(),
            audience,
        }
    }

    /// What the key holds, in bytes.
    fn size(&self) -> usize {
        self.spiffe_id.len() + self.audience.iter().map(String::len).sum::<usize>()
    }
}

#[derive(Debug)]
struct Cached {
    svid: JwtSvid,
    renew_at: i64,
    used: u64,
    /// Key plus token, in bytes.
    size: usize,
}

/// The cache.
#[derive(Debug)]
pub struct JwtCache {
    max: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tokens: HashMap<JwtKey, Cached>,
    /// Every token's key by its `used` tick: the least recently used first.
    order: BTreeMap<u64, JwtKey>,
    tick: u64,
    /// The sum of the tokens' `size`.
    bytes: usize,
}

/// A cache lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Young enough to hand out.
    Fresh(JwtSvid),
    /// Past its half life but not expired: renew, and fall back on it if that fails.
    Stale(JwtSvid),
    /// Nothing usable.
    Missing,
}

impl JwtCache {
    /// A cache of at most `max` tokens and [`MAX_CACHE_BYTES`].
    pub fn new(max: usize) -> Self {
        Self::with_max_bytes(max, MAX_CACHE_BYTES)
    }

    /// A cache of at most `max` tokens and `max_bytes` bytes of keys and tokens.
    pub fn with_max_bytes(max: usize, max_bytes: usize) -> Self {
        Self {
            max: max.max(1),
            max_bytes,
            inner: Mutex::default(),
        }
    }

    /// The token for `key` at `now` (Unix seconds).
    pub fn get(&self, key: &JwtKey, now: i64) -> Lookup {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tick += 1;
        let tick = inner.tick;
        let Inner { tokens, order, .. } = &mut *inner;
        let Some(c) = tokens.get_mut(key) else {
            return Lookup::Missing;
        };
        order.remove(&c.used);
        order.insert(tick, key.clone());
        c.used = tick;
        if now < c.renew_at {
            Lookup::Fresh(c.svid.clone())
        } else if now < c.svid.expires_at {
            Lookup::Stale(c.svid.clone())
        } else {
            Lookup::Missing
        }
    }

    /// Caches `svid`, obtained at `now`, to be renewed at its half life moved by `jitter`.
    pub fn put(&self, key: JwtKey, svid: JwtSvid, now: i64, jitter: f64) {
        let renew = unix_seconds(renew_at(
            from_unix_seconds(now),
            from_unix_seconds(svid.expires_at),
            jitter,
        ));
        let size = key.size() + svid.token.len();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tick += 1;
        let used = inner.tick;
        let cached = Cached {
            svid,
            renew_at: renew,
            used,
            size,
        };
        inner.bytes += size;
        inner.order.insert(used, key.clone());
        if let Some(old) = inner.tokens.insert(key, cached) {
            inner.bytes -= old.size;
            inner.order.remove(&old.used);
        }
        while inner.tokens.len() > self.max || inner.bytes > self.max_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(gone) = inner.tokens.remove(&oldest) {
                inner.bytes -= gone.size;
            }
        }
    }

    /// Drops tokens whose header `kid` is among `tainted` key IDs, and expired tokens.
    pub fn prune(&self, tainted: &[String], now: i64) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tokens.retain(|_, c| {
            c.svid.expires_at > now
                && key_id(&c.svid.token).is_none_or(|kid| !tainted.contains(&kid))
        });
        inner.bytes = inner.tokens.values().map(|c| c.size).sum();
        let Inner { tokens, order, .. } = &mut *inner;
        order.retain(|_, key| tokens.contains_key(key));
    }

    /// How many tokens are cached.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .len()
    }

    /// How many bytes of keys and tokens are cached.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

/// The `kid` of a compact JWS's header.
fn key_id(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let json = URL_SAFE_NO_PAD.decode(header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
    value.get("kid")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use signet_common::id::parse_id;

    use super::*;

    fn token(kid: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#));
        format!("{header}.e30.sig")
    }

    fn svid(kid: &str, expires_at: i64) -> JwtSvid {
        JwtSvid {
            token: token(kid),
            expires_at,
        }
    }

    fn key(aud: &[&str]) -> JwtKey {
        let id = parse_id("spiffe://example.org/w").unwrap();
        JwtKey::new(
            &id,
            &aud.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn audience_order_and_repeats_do_not_matter() {
        assert_eq!(key(&["b", "a", "a"]), key(&["a", "b"]));
        assert_ne!(key(&["a"]), key(&["a", "b"]));
    }

    #[test]
    fn tokens_are_fresh_until_half_life_then_stale_until_expiry() {
        let c = JwtCache::new(10);
        c.put(key(&["a"]), svid("k", 1100), 1000, 0.0);
        assert!(matches!(c.get(&key(&["a"]), 1049), Lookup::Fresh(_)));
        assert!(matches!(c.get(&key(&["a"]), 1050), Lookup::Stale(_)));
        assert_eq!(c.get(&key(&["a"]), 1100), Lookup::Missing);
        assert_eq!(c.get(&key(&["b"]), 1000), Lookup::Missing);
    }

    #[test]
    fn least_recently_used_tokens_are_dropped_first() {
        let c = JwtCache::new(2);
        c.put(key(&["a"]), svid("k", 2000), 1000, 0.0);
        c.put(key(&["b"]), svid("k", 2000), 1000, 0.0);
        let _ = c.get(&key(&["a"]), 1000);
        c.put(key(&["c"]), svid("k", 2000), 1000, 0.0);
        assert_eq!(c.count(), 2);
        assert_eq!(c.get(&key(&["b"]), 1000), Lookup::Missing);
        assert!(matches!(c.get(&key(&["a"]), 1000), Lookup::Fresh(_)));
    }

    #[test]
    fn least_recently_used_tokens_are_dropped_when_over_the_byte_bound() {
        // Each token is ~1 KB of audience in its key plus its token.
        let big = |name: &str| key(&[&format!("{name}{}", "a".repeat(1000))]);
        let c = JwtCache::with_max_bytes(100, 3500);
        for name in ["a", "b", "c"] {
            c.put(big(name), svid("k", 2000), 1000, 0.0);
        }
        let _ = c.get(&big("a"), 1000);
        c.put(big("d"), svid("k", 2000), 1000, 0.0);
        assert_eq!(c.count(), 3);
        assert_eq!(c.get(&big("b"), 1000), Lookup::Missing);
        assert!(matches!(c.get(&big("a"), 1000), Lookup::Fresh(_)));
        assert!(matches!(c.get(&big("d"), 1000), Lookup::Fresh(_)));
        assert!(c.bytes() <= 3500, "{}", c.bytes());
        // Replacing a token does not count it twice.
        c.put(big("d"), svid("k", 2000), 1000, 0.0);
        assert_eq!(c.count(), 3);
    }

    #[test]
    fn tokens_of_tainted_keys_are_dropped() {
        let c = JwtCache::new(10);
        c.put(key(&["a"]), svid("bad", 2000), 1000, 0.0);
        c.put(key(&["b"]), svid("good", 2000), 1000, 0.0);
        c.prune(&["bad".to_owned()], 1000);
        assert_eq!(c.get(&key(&["a"]), 1000), Lookup::Missing);
        assert!(matches!(c.get(&key(&["b"]), 1000), Lookup::Fresh(_)));
        // The order of use stays right after a prune: filling up drops the oldest, b.
        for (i, aud) in ["c", "d", "e", "f", "g", "h", "i", "j", "k", "l"]
            .iter()
            .enumerate()
        {
            c.put(key(&[aud]), svid("good", 2000), 1000 + i as i64, 0.0);
        }
        assert_eq!(c.count(), 10);
        assert_eq!(c.get(&key(&["b"]), 1000), Lookup::Missing);
        assert!(matches!(c.get(&key(&["c"]), 1000), Lookup::Fresh(_)));
    }
}
