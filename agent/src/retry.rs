//! Retry pacing and randomness for rotation: an exponential backoff capped at 30 s, a jitter
//! drawn in [-1, 1] (passed to the pure rotation policy, never drawn inside it), and a sleep
//! until an instant of the injected clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use signet_common::clock::Clock;

/// The longest pause between retries while the server is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Exponential backoff: 1 s, 2 s, 4 s, ... up to [`MAX_BACKOFF`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    first: Duration,
}

impl Backoff {
    /// Starting at `first`.
    pub fn new(first: Duration) -> Self {
        Self { next: first, first }
    }

    /// The next pause (each one doubles, up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        d.min(MAX_BACKOFF)
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
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = random_jitter();
            assert!((-1.0..=1.0).contains(&j), "{j}");
        }
    }
}
