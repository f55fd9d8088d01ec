//! The server's Prometheus metrics, all in one place: typed handles the API, the push stream
//! and the rotator update, and the gauges read from state at each scrape. Names follow
//! SPIRE's telemetry keys where SPIRE has the concept (`server_ca_sign_x509_svid`,
//! `ca_manager_x509_ca_activate`, ...); the README has the table.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
pub use signet_common::metrics::GaugeGuard;
use signet_common::metrics::{RpcMetrics, latency_histogram};

use crate::ca::{AuthorityStates, CaError, SvidKind};

/// Labels of an issued (or refused) X509-SVID.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct X509Labels {
    /// `workload`, `agent` or `server`.
    kind: &'static str,
    /// `ok` or `error`.
    result: &'static str,
}

/// Labels of an issued (or refused) JWT-SVID.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Every server metric.
#[derive(Debug)]
pub struct ServerMetrics {
    /// gRPC calls on both transports.
    pub rpc: RpcMetrics,
    x509_svids: Family<X509Labels, Counter>,
    jwt_svids: Family<ResultLabel, Counter>,
    x509_ca_prepare: Counter,
    x509_ca_activate: Counter,
    jwt_key_prepare: Counter,
    jwt_key_activate: Counter,
    x509_ca_expiration: Gauge,
    x509_ca_expires_in: Gauge,
    x509_ca_prepared: Gauge,
    jwt_key_expiration: Gauge,
    jwt_key_expires_in: Gauge,
    jwt_key_prepared: Gauge,
    rotation_failures: Counter,
    agents_connected: Gauge,
    entries: Gauge,
    push_events: Counter,
    push_latency: Histogram,
    seen: Mutex<Seen>,
}

/// The authority IDs the last observation saw, to count prepares and activations however
/// they happen (rotator tick or forced through the LocalAuthority API).
#[derive(Debug, Default)]
struct Seen {
    x509: (Option<String>, Option<String>),
    jwt: (Option<String>, Option<String>),
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            rpc: RpcMetrics::default(),
            x509_svids: Family::default(),
            jwt_svids: Family::default(),
            x509_ca_prepare: Counter::default(),
            x509_ca_activate: Counter::default(),
            jwt_key_prepare: Counter::default(),
            jwt_key_activate: Counter::default(),
            x509_ca_expiration: Gauge::default(),
            x509_ca_expires_in: Gauge::default(),
            x509_ca_prepared: Gauge::default(),
            jwt_key_expiration: Gauge::default(),
            jwt_key_expires_in: Gauge::default(),
            jwt_key_prepared: Gauge::default(),
            rotation_failures: Counter::default(),
            agents_connected: Gauge::default(),
            entries: Gauge::default(),
            push_events: Counter::default(),
            push_latency: latency_histogram(),
            seen: Mutex::new(Seen::default()),
        }
    }
}

fn result<T, E>(r: &Result<T, E>) -> &'static str {
    if r.is_ok() { "ok" } else { "error" }
}

impl ServerMetrics {
    /// A registry with every metric, names prefixed with `prefix` (`MetricPrefix`).
    pub fn registry(&self, prefix: &str) -> Registry {
        let mut r = Registry::with_prefix(prefix);
        self.rpc.register(&mut r);
        r.register(
            "server_ca_sign_x509_svid",
            "X509-SVIDs signed, by kind (workload, agent, server) and result",
            self.x509_svids.clone(),
        );
        r.register(
            "server_ca_sign_jwt_svid",
            "JWT-SVIDs signed, by result",
            self.jwt_svids.clone(),
        );
        r.register(
            "ca_manager_x509_ca_prepare",
            "X.509 CAs prepared",
            self.x509_ca_prepare.clone(),
        );
        r.register(
            "ca_manager_x509_ca_activate",
            "X.509 CA rotations (a prepared CA became active)",
            self.x509_ca_activate.clone(),
        );
        r.register(
            "ca_manager_jwt_key_prepare",
            "JWT keys prepared",
            self.jwt_key_prepare.clone(),
        );
        r.register(
            "manager_jwt_key_activate",
            "JWT key rotations (a prepared key became active)",
            self.jwt_key_activate.clone(),
        );
        r.register(
            "ca_manager_rotation_failures",
            "CA rotator ticks that failed",
            self.rotation_failures.clone(),
        );
        r.register(
            "manager_x509_ca_rotate_expiration",
            "NotAfter of the active X.509 CA, Unix seconds",
            self.x509_ca_expiration.clone(),
        );
        r.register(
            "x509_ca_expires_in_seconds",
            "Seconds until the active X.509 CA expires",
            self.x509_ca_expires_in.clone(),
        );
        r.register(
            "x509_ca_prepared",
            "1 when a prepared X.509 CA is waiting to take over, else 0",
            self.x509_ca_prepared.clone(),
        );
        r.register(
            "jwt_key_expiration",
            "Expiry of the active JWT key, Unix seconds",
            self.jwt_key_expiration.clone(),
        );
        r.register(
            "jwt_key_expires_in_seconds",
            "Seconds until the active JWT key expires",
            self.jwt_key_expires_in.clone(),
        );
        r.register(
            "jwt_key_prepared",
            "1 when a prepared JWT key is waiting to take over, else 0",
            self.jwt_key_prepared.clone(),
        );
        r.register(
            "agents_connected",
            "Agents holding the change-push stream open",
            self.agents_connected.clone(),
        );
        r.register(
            "entry_entries_by_entryid_cache_count",
            "Registration entries in the authorization index",
            self.entries.clone(),
        );
        r.register(
            "push_events_sent",
            "Change events pushed to agents",
            self.push_events.clone(),
        );
        r.register(
            "push_delivery_latency_seconds",
            "From a change reaching the registry to its event being handed to the agent's stream",
            self.push_latency.clone(),
        );
        r
    }

    /// Records an X509-SVID signing.
    pub fn x509_signed<T>(&self, kind: SvidKind, r: &Result<T, CaError>) {
        let kind = match kind {
            SvidKind::Workload => "workload",
            SvidKind::Agent => "agent",
            SvidKind::Server => "server",
        };
        let labels = X509Labels {
            kind,
            result: result(r),
        };
        self.x509_svids.get_or_create(&labels).inc();
    }

    /// Records a JWT-SVID signing.
    pub fn jwt_signed<T>(&self, r: &Result<T, CaError>) {
        let labels = ResultLabel { result: result(r) };
        self.jwt_svids.get_or_create(&labels).inc();
    }

    /// X509-SVIDs signed so far with this kind and result (`ok`/`error`).
    pub fn x509_signed_count(&self, kind: &'static str, result: &'static str) -> u64 {
        self.x509_svids
            .get_or_create(&X509Labels { kind, result })
            .get()
    }

    /// Records a failed rotator tick.
    pub fn rotation_failed(&self) {
        self.rotation_failures.inc();
    }

    /// Holds `agents_connected` one higher while the guard lives.
    pub fn agent_connected(&self) -> GaugeGuard {
        GaugeGuard::hold(&self.agents_connected)
    }

    /// Records a pushed event; `since` is when the change was seen (none for the first).
    pub fn pushed(&self, since: Option<Duration>) {
        self.push_events.inc();
        if let Some(d) = since {
            self.push_latency.observe(d.as_secs_f64());
        }
    }

    /// Updates the CA gauges from the authorities' state at `now` (Unix seconds), counting
    /// every prepare and activation since the last observation.
    pub fn observe_ca(&self, x509: &AuthorityStates, jwt: &AuthorityStates, now: i64) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let x509_counters = (&self.x509_ca_prepare, &self.x509_ca_activate);
        count_changes(&mut seen.x509, x509, x509_counters);
        let jwt_counters = (&self.jwt_key_prepare, &self.jwt_key_activate);
        count_changes(&mut seen.jwt, jwt, jwt_counters);
        set_expiry(
            x509,
            now,
            (&self.x509_ca_expiration, &self.x509_ca_expires_in),
            &self.x509_ca_prepared,
        );
        set_expiry(
            jwt,
            now,
            (&self.jwt_key_expiration, &self.jwt_key_expires_in),
            &self.jwt_key_prepared,
        );
    }

    /// Sets the number of entries in the authorization index.
    pub fn set_entries(&self, n: usize) {
        self.entries.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// Counts a newly seen prepared authority and a newly seen active one (the first active
/// authority seen at start-up is not a rotation).
fn count_changes(
    seen: &mut (Option<String>, Option<String>),
    now: &AuthorityStates,
    (prepare, activate): (&Counter, &Counter),
) {
    let active = now.active.as_ref().map(|a| a.authority_id.clone());
    let prepared = now.prepared.as_ref().map(|a| a.authority_id.clone());
    if prepared.is_some() && prepared != seen.1 && prepared != seen.0 {
        prepare.inc();
    }
    if seen.0.is_some() && active.is_some() && active != seen.0 {
        activate.inc();
        if active != seen.1 {
            // Prepared and activated between two observations.
            prepare.inc();
        }
    }
    *seen = (active, prepared);
}

fn set_expiry(
    states: &AuthorityStates,
    now: i64,
    (expiration, expires_in): (&Gauge, &Gauge),
    prepared: &Gauge,
) {
    if let Some(active) = &states.active {
        expiration.set(active.expires_at);
        expires_in.set(active.expires_at.saturating_sub(now));
    }
    prepared.set(i64::from(states.prepared.is_some()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::AuthorityState;

    fn states(active: Option<&str>, prepared: Option<&str>) -> AuthorityStates {
        let a = |id: &str| AuthorityState {
            authority_id: id.to_owned(),
            expires_at: 1000,
            ..AuthorityState::default()
        };
        AuthorityStates {
            active: active.map(a),
            prepared: prepared.map(a),
            old: None,
        }
    }

    #[test]
    fn counts_prepares_and_activations_once_each() {
        let m = ServerMetrics::default();
        let none = states(None, None);
        m.observe_ca(&states(Some("a"), None), &none, 400);
        assert_eq!(
            m.x509_ca_activate.get(),
            0,
            "the first CA is not a rotation"
        );
        assert_eq!(m.x509_ca_expires_in.get(), 600);
        m.observe_ca(&states(Some("a"), Some("b")), &none, 500);
        m.observe_ca(&states(Some("a"), Some("b")), &none, 501);
        assert_eq!(m.x509_ca_prepare.get(), 1);
        assert_eq!(m.x509_ca_prepared.get(), 1);
        m.observe_ca(&states(Some("b"), None), &none, 600);
        assert_eq!(m.x509_ca_activate.get(), 1);
        assert_eq!(m.x509_ca_prepare.get(), 1);
        assert_eq!(m.x509_ca_prepared.get(), 0);
    }
}
