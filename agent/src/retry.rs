//! Retry pacing and randomness for rotation: an exponential backoff capped at 30 s, bounded
//! by the life the soonest-expiring SVID has left (so that once an SVID is in its last sixth
//! of life a renewal is tried every few seconds, then more often as expiry nears, and a
//! server that returns before expiry is used at once); a jitter drawn in [-1, 1] (passed to
//! the pure policies, never drawn inside them); and a sleep until an instant of the injected
//! clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_common::clock::Clock;

/// The longest pause between retries while the server is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The first pause before reopening the change push (doubling up to five times that, and
/// cut short when a sync succeeds again).
pub const WATCH_BACKOFF: Duration = Duration::from_secs(1);

/// The longest pause between renewal attempts once an SVID is in its last sixth of life.
pub const URGENT_RETRY: Duration = Duration::from_secs(2);

/// The shortest pause between retries, however close an expiry is.
pub const MIN_RETRY: Duration = Duration::from_millis(100);

/// Exponential backoff: 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`] (or a given cap).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Starting at `first`.
    pub fn new(first: Duration) -> Self {
        Self::capped(first, MAX_BACKOFF)
    }

    /// Starting at `first`, never longer than `max`.
    pub fn capped(first: Duration, max: Duration) -> Self {
        Self {
            next: first,
            first,
            max,
        }
    }

    /// The next pause (each one doubles, up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d.min(self.max)
    }

    /// Back to the first pause (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

/// When an SVID valid until `expires`, held since `start`, enters its last sixth of life.
pub fn urgent_from(start: SystemTime, expires: SystemTime) -> SystemTime {
    expires - expires.duration_since(start).unwrap_or_default() / 6
}

/// The longest the next renewal attempt may wait for an SVID that enters its last sixth of
/// life at `urgent_at` and expires at `expires`: until its last sixth begins; then a quarter
/// of the time it has left, at most [`URGENT_RETRY`]. `None` once it has expired.
pub fn retry_bound(
    urgent_at: SystemTime,
    expires: SystemTime,
    now: SystemTime,
) -> Option<Duration> {
    let left = expires.duration_since(now).ok().filter(|d| !d.is_zero())?;
    Some(match urgent_at.duration_since(now) {
        Ok(until_urgent) if !until_urgent.is_zero() => until_urgent,
        _ => (left / 4).min(URGENT_RETRY),
    })
}

/// The pause before retrying a failed sync: the backoff, never longer than `bound` (see
/// [`retry_bound`]), shortened by up to a quarter by `jitter` in [-1, 1] so that agents cut
/// off together do not retry together; never under [`MIN_RETRY`].
pub fn retry_delay(backoff: Duration, bound: Option<Duration>, jitter: f64) -> Duration {
    let d = bound.map_or(backoff, |b| backoff.min(b));
    let shrink = 0.25 * (jitter.clamp(-1.0, 1.0) + 1.0) / 2.0;
    d.mul_f64(1.0 - shrink).max(MIN_RETRY)
}

/// Where jitter comes from: random in production, fixed in tests.
pub type Jitter = fn() -> f64;

/// A uniformly random jitter in [-1, 1].
pub fn random_jitter() -> f64 {
    let mut buf = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(buf)) / f64::from(u32::MAX) * 2.0 - 1.0
}

/// Sleeps until the injected clock reads `at` or later, looking again at least every `step`
/// (so a clock that jumps, or a fake clock, is followed).
pub async fn sleep_until(clock: &Arc<dyn Clock>, at: SystemTime, step: Duration) {
    loop {
        let Ok(left) = at.duration_since(clock.now()) else {
            return;
        };
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(step)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let seq: Vec<_> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seq, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn a_capped_backoff_stops_at_its_cap() {
        let mut b = Backoff::capped(Duration::from_secs(1), Duration::from_secs(5));
        let seq: Vec<_> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(seq, [1, 2, 4, 5, 5]);
    }

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn retries_are_bounded_by_the_last_sixth_then_by_the_time_left() {
        // Held from 0 to 30 s: urgent from 25 s.
        let (start, expires) = (t(0), t(30_000));
        let urgent = urgent_from(start, expires);
        assert_eq!(urgent, t(25_000));
        // Before the last sixth: no later than its start.
        assert_eq!(
            retry_bound(urgent, expires, t(16_000)),
            Some(Duration::from_secs(9))
        );
        // In it: at most URGENT_RETRY, then a quarter of what is left.
        assert_eq!(
            retry_bound(urgent, expires, t(25_000)),
            Some(Duration::from_millis(1250))
        );
        // A long SVID's last sixth: every URGENT_RETRY.
        let hour = t(3_600_000);
        let long = urgent_from(t(0), hour);
        assert_eq!(retry_bound(long, hour, t(3_000_000)), Some(URGENT_RETRY));
        assert_eq!(
            retry_bound(urgent, expires, t(29_000)),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_bound(urgent, expires, t(30_000)), None);
    }

    #[test]
    fn the_delay_is_the_smaller_of_backoff_and_bound_jittered_down() {
        let sixteen = Duration::from_secs(16);
        assert_eq!(retry_delay(sixteen, None, -1.0), sixteen);
        assert_eq!(retry_delay(sixteen, None, 1.0), Duration::from_secs(12));
        assert_eq!(retry_delay(sixteen, Some(URGENT_RETRY), -1.0), URGENT_RETRY);
        assert_eq!(
            retry_delay(Duration::from_secs(1), Some(Duration::from_millis(10)), 0.0),
            MIN_RETRY
        );
        for j in [-1.0, -0.5, 0.0, 0.5, 1.0] {
            let d = retry_delay(sixteen, Some(URGENT_RETRY), j);
            assert!(
                d <= URGENT_RETRY && d >= URGENT_RETRY.mul_f64(0.75),
                "{d:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = random_jitter();
            assert!((-1.0..=1.0).contains(&j), "{j}");
        }
    }
}
