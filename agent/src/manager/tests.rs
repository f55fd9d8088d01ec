//! The manager against an in-process fake server (a real rcgen CA, entries in memory, a push
//! stream), on paused tokio time with a clock that follows it: renewals, outages and the
//! push are exercised without sleeping.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::stream::BoxStream;
use signet_common::bundle::{Bundle, X509Authority};
use signet_common::clock::Clock;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{TrustDomain, parse_id, parse_trust_domain};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::*;
use crate::client::{ClientError, Known};

// === Test clock: wall time that moves with (paused) tokio time ===

#[derive(Debug)]
struct TokioClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            base: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            start: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }
}

// === Fake server ===

#[derive(Debug)]
struct FakeServer {
    clock: Arc<dyn Clock>,
    ca_key: rcgen::KeyPair,
    ca_params: rcgen::CertificateParams,
    ca_der: Vec<u8>,
    state: Mutex<FakeState>,
    push: watch::Sender<u64>,
    generation: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct FakeState {
    entries: BTreeMap<String, Arc<RegistrationEntry>>,
    ttl: Duration,
    down: bool,
    banned: bool,
    minted: Vec<String>,
    jwt_calls: usize,
    syncs: usize,
}

impl FakeServer {
    fn new(clock: Arc<dyn Clock>, ttl: Duration) -> Arc<Self> {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca_params.not_before = time::OffsetDateTime::UNIX_EPOCH;
        ca_params.not_after = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(36500);
        let ca_der = ca_params.self_signed(&ca_key).unwrap().der().to_vec();
        Arc::new(Self {
            clock,
            ca_key,
            ca_params,
            ca_der,
            state: Mutex::new(FakeState {
                ttl,
                ..FakeState::default()
            }),
            push: watch::Sender::new(0),
            generation: watch::Sender::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    fn put_entry(&self, id: &str, revision: i64) {
        let e = entry(id, revision);
        self.state().entries.insert(id.into(), Arc::new(e));
        self.push.send_modify(|n| *n += 1);
    }

    fn remove_entry(&self, id: &str) {
        self.state().entries.remove(id);
        self.push.send_modify(|n| *n += 1);
    }

    fn set_down(&self, down: bool) {
        self.state().down = down;
        // A stopped server closes every push stream; the agent reconnects.
        self.generation.send_modify(|n| *n += 1);
    }

    fn check(&self) -> Result<(), ClientError> {
        let s = self.state();
        if s.banned {
            return Err(ClientError::Status(tonic::Status::permission_denied(
                "agent spiffe://example.org/spire/agent/join_token/t is banned",
            )));
        }
        if s.down {
            return Err(ClientError::Status(tonic::Status::unavailable(
                "connection refused",
            )));
        }
        Ok(())
    }

    fn sign(&self, entry: &RegistrationEntry, csr: &[u8]) -> Vec<u8> {
        let csr = rcgen::CertificateSigningRequestParams::from_der(&csr.to_vec().into()).unwrap();
        let now = self.clock.unix_now();
        let ttl = i64::try_from(self.state().ttl.as_secs()).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = vec![rcgen::SanType::URI(
            entry.spiffe_id.to_string().try_into().unwrap(),
        )];
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
        p.not_before = time::OffsetDateTime::from_unix_timestamp(now - 10).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(now + ttl).unwrap();
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        p.signed_by(&csr.public_key, &issuer)
            .unwrap()
            .der()
            .to_vec()
    }
}

#[async_trait::async_trait]
impl ServerApi for FakeServer {
    async fn authorized_entries(
        &self,
        _known: &Known,
    ) -> Result<Vec<Arc<RegistrationEntry>>, ClientError> {
        self.check()?;
        let mut s = self.state();
        s.syncs += 1;
        Ok(s.entries.values().cloned().collect())
    }

    async fn bundle(&self) -> Result<Bundle, ClientError> {
        self.check()?;
        let mut b = Bundle::new(td());
        b.x509_authorities.push(X509Authority {
            der: self.ca_der.clone(),
            tainted: false,
        });
        Ok(b)
    }

    async fn federated_bundle(&self, td: &TrustDomain) -> Result<Bundle, ClientError> {
        self.check()?;
        Ok(Bundle::new(td.clone()))
    }

    async fn new_x509_svids(
        &self,
        params: Vec<(String, Vec<u8>)>,
    ) -> Result<api::X509Results, ClientError> {
        self.check()?;
        Ok(params
            .into_iter()
            .map(|(id, csr)| {
                let entry = self.state().entries.get(&id).cloned();
                match entry {
                    Some(e) => {
                        self.state().minted.push(id);
                        Ok(vec![self.sign(&e, &csr)])
                    }
                    None => Err(ClientError::Status(tonic::Status::permission_denied(
                        "entry not found or not authorized",
                    ))),
                }
            })
            .collect())
    }

    async fn new_jwt_svid(
        &self,
        entry_id: &str,
        _audience: &[String],
    ) -> Result<JwtSvid, ClientError> {
        self.check()?;
        let mut s = self.state();
        s.jwt_calls += 1;
        Ok(JwtSvid {
            token: format!("jwt-{entry_id}-{}", s.jwt_calls),
            expires_at: self.clock.unix_now() + 300,
        })
    }

    async fn watch(&self) -> Result<BoxStream<'static, Result<(), ClientError>>, ClientError> {
        self.check()?;
        let mut push = self.push.subscribe();
        let mut generation = self.generation.subscribe();
        push.borrow_and_update();
        generation.borrow_and_update();
        // An event at once, one per push, and the end when the server "stops".
        let stream = futures::stream::unfold(
            (push, generation, true),
            |(mut push, mut generation, first)| async move {
                if !first {
                    tokio::select! {
                        r = push.changed() => r.ok()?,
                        _ = generation.changed() => return None,
                    }
                }
                Some((Ok(()), (push, generation, false)))
            },
        );
        Ok(Box::pin(stream))
    }
}

// === Fixtures ===

fn td() -> TrustDomain {
    parse_trust_domain("example.org").unwrap()
}

fn entry(id: &str, revision: i64) -> RegistrationEntry {
    RegistrationEntry {
        revision_number: revision,
        created_at: 1,
        ..RegistrationEntry::new(
            id,
            parse_id(&format!("spiffe://example.org/w/{id}")).unwrap(),
            parse_id("spiffe://example.org/spire/agent/join_token/t").unwrap(),
            ["unix:uid:1000".parse().unwrap()].into_iter().collect(),
        )
    }
}

struct Fixture {
    clock: Arc<TokioClock>,
    server: Arc<FakeServer>,
    manager: Arc<Manager>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

fn start(ttl: Duration, max: usize, sync_interval: Duration) -> Fixture {
    let clock = TokioClock::new();
    let server = FakeServer::new(clock.clone(), ttl);
    let config = ManagerConfig {
        persist_to: None,
        trust_domain: td(),
        key_type: WorkloadKeyType::EcP256,
        x509_svid_cache_max_size: max,
        jwt_svid_cache_max_size: 10,
        sync_interval,
        jitter: || 0.0,
    };
    let manager = Manager::new(config, server.clone(), clock.clone(), None);
    let (stop, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    manager.spawn(&mut tasks, rx);
    Fixture {
        snapshots: manager.subscribe(),
        clock,
        server,
        manager,
        stop,
        tasks,
    }
}

impl Fixture {
    /// Waits (in virtual time, at most `within`) for a snapshot satisfying `f`.
    async fn until(&mut self, within: Duration, f: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
        let got = tokio::time::timeout(within, self.snapshots.wait_for(|s| f(s)))
            .await
            .unwrap_or_else(|_| panic!("no such snapshot within {within:?}"))
            .unwrap();
        Arc::clone(&got)
    }

    fn svid(&self, id: &str) -> Option<Arc<WorkloadSvid>> {
        self.snapshots.borrow().svids.get(id).cloned()
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while let Some(r) = self.tasks.join_next().await {
            r.unwrap().unwrap();
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const SEC: Duration = Duration::from_secs(1);

// === Tests ===

#[tokio::test(start_paused = true)]
async fn mints_svids_for_authorized_entries_and_publishes_a_synced_snapshot() {
    let mut f = start(HOUR, 1000, 5 * SEC);
    f.server.put_entry("a", 0);
    f.server.put_entry("b", 0);
    let snap = f.until(SEC, |s| s.synced && s.svids.len() == 2).await;
    assert_eq!(snap.entries.len(), 2);
    assert_eq!(snap.bundle.x509_authorities.len(), 1);
    let a = &snap.svids["a"];
    let leaf = signet_common::x509::cert_info(&a.chain[0]).unwrap();
    assert_eq!(leaf.id.to_string(), "spiffe://example.org/w/a");
    assert!(crate::svid::storage::key_matches(&a.chain[0], &a.key_pkcs8));
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn many_entries_are_minted_once_each_over_several_batches_in_flight() {
    let n = 2 * reconcile::BATCH + reconcile::BATCH / 2;
    let mut f = start(HOUR, 2 * n, 5 * SEC);
    for i in 0..n {
        f.server.put_entry(&format!("e{i:04}"), 0);
    }
    // held_since drops an SVID whose SPIFFE ID is not its entry's: all n held means every
    // batch's results were matched with that batch's entries.
    let snap = f.until(60 * SEC, |s| s.synced && s.svids.len() == n).await;
    for (id, svid) in &snap.svids {
        assert_eq!(&svid.entry.id, id);
    }
    let mut minted = f.server.state().minted.clone();
    minted.sort();
    minted.dedup();
    assert_eq!(minted.len(), n);
    assert_eq!(f.server.state().minted.len(), n, "each entry minted once");
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reissues_on_revision_change_and_drops_removed_entries() {
    let mut f = start(HOUR, 1000, 5 * SEC);
    f.server.put_entry("a", 0);
    f.server.put_entry("b", 0);
    f.until(SEC, |s| s.svids.len() == 2).await;
    let before = f.svid("a").unwrap();

    f.server.put_entry("a", 1);
    f.server.remove_entry("b");
    let snap = f
        .until(SEC, |s| {
            s.svids.len() == 1 && s.svids["a"].entry.revision_number == 1
        })
        .await;
    assert_ne!(
        snap.svids["a"].chain, before.chain,
        "a new SVID for the new revision"
    );
    assert!(!snap.entries.iter().any(|e| e.id == "b"));
    let minted = f.server.state().minted.clone();
    let count = |id: &str| minted.iter().filter(|m| *m == id).count();
    assert_eq!((count("a"), count("b")), (2, 1), "{minted:?}");
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_push_is_acted_on_at_once_not_at_the_next_poll() {
    let mut f = start(HOUR, 1000, HOUR);
    f.until(SEC, |s| s.synced).await;
    let t0 = tokio::time::Instant::now();
    f.server.put_entry("new", 0);
    f.until(HOUR, |s| s.svids.contains_key("new")).await;
    assert!(
        t0.elapsed() < SEC,
        "took {:?} of virtual time with a 1 h poll interval",
        t0.elapsed()
    );
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn svids_are_renewed_at_half_life_before_expiry() {
    let ttl = Duration::from_secs(100);
    let mut f = start(ttl, 1000, HOUR);
    f.server.put_entry("a", 0);
    let first = f.until(SEC, |s| s.svids.contains_key("a")).await.svids["a"].clone();
    // NotBefore is backdated 10 s: life 110 s, half life at NotBefore + 55 s.
    let renewed = f
        .until(ttl, |s| {
            s.svids.get("a").is_some_and(|v| v.chain != first.chain)
        })
        .await;
    let now = f.clock.unix_now();
    assert!(now < first.not_after, "renewed before expiry");
    assert!(now >= first.not_before + 55, "not before half life: {now}");
    assert!(renewed.svids["a"].not_after > first.not_after);
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_valid_svids_and_renewal_resumes_when_the_server_returns() {
    let ttl = Duration::from_secs(100);
    let mut f = start(ttl, 1000, 5 * SEC);
    f.server.put_entry("a", 0);
    let first = f.until(SEC, |s| s.svids.contains_key("a")).await.svids["a"].clone();

    f.server.set_down(true);
    // Past half life (renewal fails), still before expiry: the SVID is still served.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert_eq!(f.svid("a").unwrap().chain, first.chain);

    f.server.set_down(false);
    let renewed = f
        .until(Duration::from_secs(25), |s| {
            s.svids.get("a").is_some_and(|v| v.chain != first.chain)
        })
        .await;
    assert!(f.clock.unix_now() < first.not_after);
    assert!(renewed.svids["a"].not_after > first.not_after);
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_svid_is_no_longer_served_during_an_outage() {
    let ttl = Duration::from_secs(100);
    let mut f = start(ttl, 1000, 5 * SEC);
    f.server.put_entry("a", 0);
    let first = f.until(SEC, |s| s.svids.contains_key("a")).await.svids["a"].clone();
    f.server.set_down(true);
    let snap = f.until(2 * ttl, |s| s.svids.is_empty()).await;
    assert!(f.clock.unix_now() >= first.not_after);
    assert_eq!(
        snap.entries.len(),
        1,
        "entries stay; only the expired SVID goes"
    );
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_bounded_cache_mints_wanted_entries_on_demand_and_never_evicts_them() {
    let mut f = start(HOUR, 2, 5 * SEC);
    for id in ["e0", "e1", "e2", "e3"] {
        f.server.put_entry(id, 0);
    }
    let snap = f.until(SEC, |s| s.synced && s.svids.len() == 2).await;
    assert_eq!(snap.svids.keys().collect::<Vec<_>>(), ["e0", "e1"]);

    let e3 = snap.entries.iter().find(|e| e.id == "e3").unwrap().clone();
    let e2 = snap.entries.iter().find(|e| e.id == "e2").unwrap().clone();
    f.manager.want(&[e3]);
    let snap = f.until(SEC, |s| s.svids.contains_key("e3")).await;
    assert_eq!(snap.svids.len(), 2, "one unwanted SVID was evicted");
    f.manager.want(&[e2]);
    let snap = f
        .until(SEC, |s| {
            s.svids.keys().map(String::as_str).collect::<Vec<_>>() == ["e2", "e3"]
        })
        .await;
    assert_eq!(snap.svids.len(), 2);
    // A later full sync keeps the in-use ones.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        f.snapshots.borrow().svids.keys().collect::<Vec<_>>(),
        ["e2", "e3"]
    );
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn jwt_svids_are_cached_per_id_and_audience_until_half_life() {
    let mut f = start(HOUR, 1000, 5 * SEC);
    f.server.put_entry("a", 0);
    let snap = f.until(SEC, |s| s.synced).await;
    let e = snap.entries[0].clone();
    let aud = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let t1 = f.manager.jwt_svid(&e, &aud(&["x", "y"])).await.unwrap();
    let t2 = f.manager.jwt_svid(&e, &aud(&["y", "x"])).await.unwrap();
    assert_eq!(t1, t2, "same audience set, same token");
    let t3 = f.manager.jwt_svid(&e, &aud(&["z"])).await.unwrap();
    assert_ne!(t1, t3);
    tokio::time::sleep(Duration::from_secs(151)).await;
    let t4 = f.manager.jwt_svid(&e, &aud(&["x", "y"])).await.unwrap();
    assert_ne!(t1, t4, "renewed after half of its 300 s life");

    f.server.set_down(true);
    tokio::time::sleep(Duration::from_secs(151)).await;
    let t5 = f.manager.jwt_svid(&e, &aud(&["x", "y"])).await.unwrap();
    assert_eq!(
        t4, t5,
        "the cached token while the server is away and it is valid"
    );
    tokio::time::sleep(Duration::from_secs(150)).await;
    assert!(f.manager.jwt_svid(&e, &aud(&["x", "y"])).await.is_err());
    f.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_ban_stops_the_manager() {
    let mut f = start(HOUR, 1000, 5 * SEC);
    f.server.put_entry("a", 0);
    f.until(SEC, |s| s.svids.len() == 1).await;
    f.server.state().banned = true;
    f.server.push.send_modify(|n| *n += 1);
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(r) = f.tasks.join_next().await {
            r.unwrap().unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "both loops end on their own");
}

#[test]
fn cache_plan_prefers_in_use_then_recently_wanted_entries() {
    let mut c = cache::Cache::new(td(), 2);
    c.set_entries(
        ["a", "b", "c", "d"]
            .iter()
            .map(|id| Arc::new(entry(id, 0)))
            .collect(),
    );
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let ids = |p: &cache::Plan| p.mint.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&c.plan(t)), ["a", "b"]);
    c.want(["d".to_owned()], t - IN_USE_FOR - SEC);
    c.want(["c".to_owned()], t);
    // c in use; d wanted long ago still beats never-wanted a and b.
    assert_eq!(ids(&c.plan(t)), ["c", "d"]);
    assert!(!c.want(["zz".to_owned()], t), "unknown entries are ignored");
}

// === Finding a caller's entries ===

/// The selectors of `pool` whose bits are set in `bits`.
fn subset(pool: &[&str], bits: u32) -> signet_common::selector::SelectorSet {
    pool.iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, s)| s.parse().unwrap())
        .collect()
}

#[test]
fn the_selector_index_finds_exactly_what_a_scan_of_every_entry_finds() {
    let pool = [
        "unix:uid:1000",
        "unix:uid:1001",
        "unix:gid:1000",
        "unix:user:alice",
        "k8s:ns:default",
        "k8s:sa:web",
        "k8s:pod-label:app:web",
    ];
    let set = |bits: u32| subset(&pool, bits);
    // Every subset of the pool as one entry's selectors (the empty one included), some twice.
    let mut entries: Vec<Arc<RegistrationEntry>> = (0..1u32 << pool.len())
        .chain([3, 5, 96])
        .enumerate()
        .map(|(n, bits)| {
            Arc::new(RegistrationEntry::new(
                format!("e{n:04}"),
                parse_id(&format!("spiffe://example.org/w/{n}")).unwrap(),
                parse_id("spiffe://example.org/spire/agent/join_token/t").unwrap(),
                set(bits),
            ))
        })
        .collect();
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    let authorized: snapshot::Authorized = entries.clone().into();
    for bits in 0..1u32 << pool.len() {
        let caller = set(bits);
        let scanned: Vec<_> = entries
            .iter()
            .filter(|e| e.matches(&caller))
            .cloned()
            .collect();
        assert_eq!(authorized.matching(&caller), scanned, "caller {bits:#b}");
    }
    assert_eq!(&authorized[..], &entries[..]);
}

/// A request for one SPIFFE ID gets exactly what the full look-up gives, filtered by that ID,
/// hints' winners included: entries share IDs and hints, with creation times that make a
/// hint's oldest entry sometimes one of another ID.
#[test]
fn a_look_up_by_spiffe_id_gives_the_full_look_up_filtered_by_that_id() {
    let pool = ["unix:uid:1", "unix:gid:2", "k8s:ns:a", "k8s:sa:b"];
    let set = |bits: u32| subset(&pool, bits);
    let ids = ["/a", "/b", "/c"].map(|p| parse_id(&format!("spiffe://example.org{p}")).unwrap());
    let hints = ["", "", "x", "y"];
    let mut entries: Vec<Arc<RegistrationEntry>> = (0..64u32)
        .map(|n| {
            let mut e = RegistrationEntry::new(
                format!("e{n:03}"),
                ids[n as usize % 3].clone(),
                parse_id("spiffe://example.org/spire/agent/join_token/t").unwrap(),
                set(n % 16),
            );
            e.hint = hints[(n as usize / 3) % 4].to_owned();
            e.created_at = i64::from((n * 7) % 5);
            Arc::new(e)
        })
        .collect();
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    let mut snap = Snapshot::empty(parse_trust_domain("example.org").unwrap());
    snap.entries = entries.into();
    for bits in 0..16u32 {
        let caller = set(bits);
        let all = snap.entries_for(&caller);
        for id in &ids {
            let want: Vec<_> = all.iter().filter(|e| e.spiffe_id == *id).cloned().collect();
            assert_eq!(
                snap.entries_for_id(&caller, id),
                want,
                "caller {bits:#b} {id}"
            );
        }
    }
}
