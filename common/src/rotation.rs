//! Rotation policy as pure functions of `now`. Jitter is an argument, never drawn inside,
//! so that every decision is deterministic under test.

use std::time::{Duration, SystemTime};

const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest an SVID can be guaranteed by any CA (SPIRE caps `ca_ttl / 6` there).
pub const SEVEN_DAYS: Duration = Duration::from_secs(7 * 24 * 3600);

/// Certificates are back-dated by this much to absorb clock skew (as SPIRE does).
pub const BACKDATE: Duration = Duration::from_secs(10);

fn lifetime(not_before: SystemTime, not_after: SystemTime) -> Duration {
    not_after.duration_since(not_before).unwrap_or_default()
}

/// When the next CA should be prepared: `not_after - min(lifetime / 2, 30d)`.
pub fn ca_prepare_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    not_after - (lifetime(not_before, not_after) / 2).min(THIRTY_DAYS)
}

/// When the prepared CA should become active: `not_after - min(lifetime / 6, 7d)`.
pub fn ca_activate_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    not_after - (lifetime(not_before, not_after) / 6).min(SEVEN_DAYS)
}

/// The longest SVID TTL a CA of `ca_ttl` can guarantee: `min(ca_ttl / 6, 7d)`.
pub fn max_svid_ttl_for_ca_ttl(ca_ttl: Duration) -> Duration {
    (ca_ttl / 6).min(SEVEN_DAYS)
}

/// When an SVID valid over `[not_before, not_after]` should be renewed: at half its life,
/// moved by `jitter` in `[-1.0, 1.0]` times a tenth of its life (so within ±10 %).
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let life = lifetime(not_before, not_after);
    let half = life / 2;
    let spread = life.mul_f64(0.1 * jitter.clamp(-1.0, 1.0).abs());
    if jitter < 0.0 {
        not_before + half - spread
    } else {
        not_before + half + spread
    }
}

/// Whether an SVID valid over `[not_before, not_after]` should be renewed at `now`.
pub fn should_rotate(
    now: SystemTime,
    not_before: SystemTime,
    not_after: SystemTime,
    jitter: f64,
) -> bool {
    now >= renew_at(not_before, not_after, jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn default_ca_prepares_at_half_and_activates_at_five_sixths() {
        let (nb, na) = (t(0), t(24 * 3600));
        assert_eq!(ca_prepare_at(nb, na), t(12 * 3600));
        assert_eq!(ca_activate_at(nb, na), t(20 * 3600));
    }

    #[test]
    fn long_ca_thresholds_are_capped() {
        let (nb, na) = (t(0), t(365 * 24 * 3600));
        assert_eq!(ca_prepare_at(nb, na), na - THIRTY_DAYS);
        assert_eq!(ca_activate_at(nb, na), na - SEVEN_DAYS);
    }

    #[test]
    fn renewal_is_at_half_life_within_ten_percent() {
        let (nb, na) = (t(0), t(1000));
        assert_eq!(renew_at(nb, na, 0.0), t(500));
        assert_eq!(renew_at(nb, na, 1.0), t(600));
        assert_eq!(renew_at(nb, na, -1.0), t(400));
        assert!(!should_rotate(t(499), nb, na, 0.0));
        assert!(should_rotate(t(500), nb, na, 0.0));
    }

    #[test]
    fn max_svid_ttl_is_a_sixth_of_the_ca() {
        assert_eq!(
            max_svid_ttl_for_ca_ttl(Duration::from_secs(24 * 3600)),
            Duration::from_secs(4 * 3600)
        );
    }
}
