//! Server outages of 10-90 % of the workload SVID TTL, at random phases of the SVID's life,
//! seen by a real Workload API client (the `spiffe` crate) watching its X509-SVIDs: whenever
//! the server comes back before the SVID the workload holds expires, the workload never holds
//! an expired SVID. Prints each trial and the renewal delay after the server's return.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use signet_agent::retry::random_jitter;
use signet_agent::run::Agent;
use signet_common::clock::{Clock, SystemClock, from_unix_seconds};
use signet_tests::agent::{Proxy, Setup, until};
use spiffe::WorkloadApiClient;
use tokio_stream::StreamExt;

/// The workload SVID TTL, seconds.
const TTL: u64 = 10;
/// Agents cut off in parallel, each with its own server and proxy.
const LANES: usize = 6;
/// Outages per agent.
const TRIALS: usize = 3;
/// A return closer to expiry than this cannot be told apart from a return after it (one
/// TLS handshake and a sync take about this long on a loaded machine).
const MARGIN: Duration = Duration::from_millis(500);

/// What the workload received: when, and the SVID's NotAfter.
type Updates = Arc<Mutex<Vec<(SystemTime, SystemTime)>>>;

#[derive(Debug, Clone)]
struct Trial {
    fraction: f64,
    cut: SystemTime,
    back: SystemTime,
    held_expiry: SystemTime,
    end: SystemTime,
}

fn uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// Follows the workload's X509-SVID stream, reconnecting if it ends.
fn watch(socket: String, updates: Updates, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            let run = async {
                let client = WorkloadApiClient::connect_to(&socket).await.ok()?;
                let mut stream = client.stream_x509_svids().await.ok()?;
                while let Some(Ok(svid)) = stream.next().await {
                    let info = signet_common::x509::cert_info(svid.leaf().as_bytes()).unwrap();
                    updates
                        .lock()
                        .unwrap()
                        .push((SystemClock.now(), from_unix_seconds(info.not_after)));
                }
                Some(())
            };
            tokio::select! {
                _ = run => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// The NotAfter of the SVID held at `at`.
fn held_at(updates: &[(SystemTime, SystemTime)], at: SystemTime) -> Option<SystemTime> {
    updates
        .iter()
        .rev()
        .find(|(t, _)| *t <= at)
        .map(|(_, e)| *e)
}

/// How long, within `[from, to]`, the last SVID received was expired.
fn expired_within(
    updates: &[(SystemTime, SystemTime)],
    from: SystemTime,
    to: SystemTime,
) -> Duration {
    let mut total = Duration::ZERO;
    for (i, (got, expiry)) in updates.iter().enumerate() {
        let until = updates.get(i + 1).map_or(to, |(t, _)| *t).min(to);
        let start = (*got).max(*expiry).max(from);
        if let Ok(d) = until.duration_since(start) {
            total += d;
        }
    }
    total
}

/// The first SVID received after `at` that expires later than `expiry`.
fn renewed_after(
    updates: &[(SystemTime, SystemTime)],
    at: SystemTime,
    expiry: SystemTime,
) -> Option<SystemTime> {
    updates
        .iter()
        .find(|(t, e)| *t >= at && *e > expiry)
        .map(|(t, _)| *t)
}

async fn lane(lane: usize) -> (Vec<Trial>, Vec<(SystemTime, SystemTime)>) {
    let setup = Setup::new(&[]).await;
    let proxy = Proxy::start(setup.server.server().tcp_addr).await;
    let token = setup.server.join_token(600).await;
    let agent = Agent::start(
        setup.config_via(proxy.port, Some(&token), ""),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let entry = setup
        .create_entry_selector_ttl(
            &agent.agent_id,
            "/steady",
            &format!("uid:{}", uid()),
            TTL as i32,
        )
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let updates: Updates = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    watch(
        format!("unix:{}", agent.socket_path.display()),
        Arc::clone(&updates),
        stopped,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let ttl = Duration::from_secs(TTL);
    let mut trials = vec![];
    for k in 0..TRIALS {
        let fraction = 0.1 + 0.1 * ((lane * TRIALS + k) % 9) as f64;
        let phase = (random_jitter() + 1.0) / 2.0;
        tokio::time::sleep(ttl.mul_f64(phase)).await;
        let cut = SystemClock.now();
        let held_expiry = held_at(&updates.lock().unwrap(), cut).expect("an SVID before the cut");
        proxy.cut();
        tokio::time::sleep(ttl.mul_f64(fraction)).await;
        proxy.restore();
        let back = SystemClock.now();
        // Until the SVID is renewed (or a full TTL has passed), then a little more.
        for _ in 0..(TTL * 10) {
            if renewed_after(&updates.lock().unwrap(), back, held_expiry).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        trials.push(Trial {
            fraction,
            cut,
            back,
            held_expiry,
            end: SystemClock.now(),
        });
    }
    stop.send_replace(true);
    agent.shutdown().await.unwrap();
    let updates = updates.lock().unwrap().clone();
    (trials, updates)
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_expired_svid_when_the_server_returns_before_expiry() {
    let lanes: Vec<_> = (0..LANES).map(|l| tokio::spawn(lane(l))).collect();
    let mut before_expiry = 0;
    let mut expired_total = Duration::ZERO;
    let mut delays = vec![];
    for handle in lanes {
        let (trials, updates) = handle.await.unwrap();
        for t in trials {
            let left_at_return = secs_between(t.back, t.held_expiry);
            let expired = expired_within(&updates, t.cut, t.end);
            let renewed = renewed_after(&updates, t.back, t.held_expiry);
            let delay = renewed.map(|r| secs_between(t.back, r));
            let counted = t.back + MARGIN < t.held_expiry;
            println!(
                "outage {:>3.0}% of TTL, SVID had {left_at_return:>5.2} s left at the return: renewed {} after it, expired for {} ms{}",
                t.fraction * 100.0,
                delay.map_or("never".into(), |d| format!("{d:.2} s")),
                expired.as_millis(),
                if counted {
                    ""
                } else {
                    " (returned after or at expiry)"
                },
            );
            if counted {
                before_expiry += 1;
                expired_total += expired;
                delays.push(delay.unwrap_or(f64::INFINITY));
            }
        }
    }
    delays.sort_by(f64::total_cmp);
    let pct = |p: f64| delays[((delays.len() - 1) as f64 * p).round() as usize];
    println!(
        "{before_expiry} outages ended before expiry: expired SVID held {} ms in total; renewal after the return p50 {:.2} s, max {:.2} s",
        expired_total.as_millis(),
        pct(0.5),
        pct(1.0)
    );
    assert!(before_expiry >= LANES, "enough trials ended before expiry");
    assert_eq!(
        expired_total,
        Duration::ZERO,
        "a workload held an expired SVID although the server returned before it expired"
    );
}
