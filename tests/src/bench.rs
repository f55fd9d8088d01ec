//! For the benchmarks (`tests/benches`, `harness = false`): their figures, one line each.

use std::time::Duration;

/// Prints `name`, how many samples, and their min, p50, p90, p99 and max (nearest rank).
#[allow(clippy::print_stdout, reason = "benchmark figures")]
pub fn print_latencies(name: &str, mut v: Vec<Duration>) {
    assert!(!v.is_empty(), "{name}: no samples");
    v.sort();
    let pct = |p: usize| v[(v.len() * p).div_ceil(100).saturating_sub(1)];
    println!(
        "{name:<48} n={:<4} min={:>9.1?} p50={:>9.1?} p90={:>9.1?} p99={:>9.1?} max={:>9.1?}",
        v.len(),
        v[0],
        pct(50),
        pct(90),
        pct(99),
        v[v.len() - 1]
    );
}
