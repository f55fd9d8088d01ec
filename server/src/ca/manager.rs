//! A/B slots for the X.509 CA and the JWT key, the journal that makes them survive restarts,
//! rotation on the injected clock, and SVID signing with the active authorities.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use signet_common::bundle::{Bundle, JwtKey, X509Authority};
use signet_common::clock::{Clock, unix_seconds};
use signet_common::entry::valid_dns_name;
use signet_common::id::{TrustDomain, require_member_with_path};
use signet_common::rotation::{BACKDATE, ca_activate_at, ca_prepare_at};

use crate::ca::authority::{self, JwtAuthority, Lifetime, X509Ca};
use crate::ca::error::CaError;
use crate::ca::journal::{Journal, Slot, Status};
use crate::ca::jwt::Claims;
use crate::ca::params::{
    AuthorityState, CaConfig, JwtSvid, JwtSvidParams, SvidKind, X509Svid, X509SvidParams,
};
use crate::ca::template::{self, SvidTemplate};
use crate::ca::upstream::UpstreamSource;
use crate::datastore::DataStore;
use crate::keys::KeyManager;
use tokio::sync::{Mutex, MutexGuard};

/// Roots and JWT keys stay in the bundle this long after they expire.
const BUNDLE_PRUNE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// One authority kind's slots: `current` is ACTIVE, `next` PREPARED; `old` is the last
/// authority `current` replaced, kept for reporting.
#[derive(Debug)]
pub(super) struct Slots<T> {
    pub(super) current: Option<Arc<T>>,
    pub(super) next: Option<Arc<T>>,
    pub(super) old: Option<AuthorityState>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            current: None,
            next: None,
            old: None,
        }
    }
}

impl<T: Lifetime> Slots<T> {
    /// The slot the next authority goes into.
    fn next_slot(&self) -> Slot {
        self.current.as_ref().map_or(Slot::A, |c| c.slot().other())
    }

    /// Whether a next authority must be minted now: none is usable and the current one is
    /// missing, expired, or past its preparation threshold.
    fn needs_prepare(&self, now: SystemTime) -> bool {
        if self.next.as_ref().is_some_and(|n| n.usable_at(now)) {
            return false;
        }
        self.current
            .as_ref()
            .is_none_or(|c| !c.usable_at(now) || now >= ca_prepare_at(c.issued_at(), c.not_after()))
    }

    /// Whether the prepared authority must become active now.
    fn needs_activate(&self, now: SystemTime) -> bool {
        if !self.next.as_ref().is_some_and(|n| n.usable_at(now)) {
            return false;
        }
        self.current.as_ref().is_none_or(|c| {
            !c.usable_at(now) || now >= ca_activate_at(c.issued_at(), c.not_after())
        })
    }

    /// When a tick next has something to do for this kind.
    fn next_event(&self, now: SystemTime) -> SystemTime {
        match (&self.current, &self.next) {
            (None, _) => now,
            (Some(c), None) => ca_prepare_at(c.issued_at(), c.not_after()),
            (Some(c), Some(_)) => ca_activate_at(c.issued_at(), c.not_after()),
        }
    }

    /// Makes `next` current; returns the IDs of the demoted and promoted authorities.
    fn activate(&mut self) -> Option<(Option<String>, String)> {
        let next = self.next.take()?;
        let demoted = self.current.take().map(|c| c.state());
        let promoted = next.state().authority_id;
        let demoted_id = demoted.as_ref().map(|d| d.authority_id.clone());
        if demoted.is_some() {
            self.old = demoted;
        }
        self.current = Some(next);
        Some((demoted_id, promoted))
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) x509: Slots<X509Ca>,
    pub(super) jwt: Slots<JwtAuthority>,
    pub(super) journal: Journal,
}

/// What signers use; swapped after each rotation so signing never waits on I/O.
#[derive(Debug, Default, Clone)]
struct Active {
    x509: Option<Arc<X509Ca>>,
    jwt: Option<Arc<JwtAuthority>>,
}

#[derive(Debug)]
pub(super) struct Manager {
    pub(super) config: CaConfig,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) keys: Arc<dyn KeyManager>,
    pub(super) store: Arc<dyn DataStore>,
    pub(super) upstream: Option<UpstreamSource>,
    state: Mutex<State>,
    active: RwLock<Active>,
}

impl Manager {
    pub(super) async fn new(
        config: CaConfig,
        clock: Arc<dyn Clock>,
        keys: Arc<dyn KeyManager>,
        store: Arc<dyn DataStore>,
    ) -> Result<Self, CaError> {
        let upstream = config.upstream.clone().map(UpstreamSource::new);
        let m = Self {
            config,
            clock,
            keys,
            store,
            upstream,
            state: Mutex::new(State::default()),
            active: RwLock::new(Active::default()),
        };
        {
            let mut st = m.lock_state().await;
            let now = m.clock.now();
            let journal = match m.store.ca_journal(&m.config.journal_key).await? {
                Some(bytes) => Journal::decode(&bytes)?,
                None => Journal::default(),
            };
            let loaded = m.load(&mut st, journal, now)?;
            if loaded {
                m.persist(&st).await?;
            }
            m.tick(&mut st, now).await?;
        }
        Ok(m)
    }

    pub(super) async fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().await
    }

    pub(super) async fn rotate(&self) -> Result<bool, CaError> {
        let mut st = self.lock_state().await;
        self.tick(&mut st, self.clock.now()).await
    }

    /// One rotator step: prepare what needs preparing, publish current and next authorities,
    /// activate, prune the bundle. Returns whether the stored bundle changed.
    async fn tick(&self, st: &mut State, now: SystemTime) -> Result<bool, CaError> {
        if st.x509.needs_prepare(now) {
            self.prepare_x509(st, now).await?;
        }
        if st.jwt.needs_prepare(now) {
            self.prepare_jwt(st, now).await?;
        }
        let changed = self.sync_bundle(st, now).await?;
        if st.x509.needs_activate(now) {
            self.activate_x509(st).await?;
        }
        if st.jwt.needs_activate(now) {
            self.activate_jwt(st).await?;
        }
        self.publish_active(st);
        Ok(changed)
    }

    /// Mints a new X.509 CA into the next slot (replacing any prepared one) and journals it.
    /// The caller publishes it in the bundle.
    pub(super) async fn prepare_x509(
        &self,
        st: &mut State,
        now: SystemTime,
    ) -> Result<AuthorityState, CaError> {
        let slot = st.x509.next_slot();
        let (ca, entry) = authority::mint_x509(
            &self.config,
            self.keys.as_ref(),
            self.upstream.as_ref(),
            slot,
            now,
        )?;
        tracing::info!(authority_id = %ca.authority_id, slot = slot.letter(), "X.509 CA prepared");
        let state = ca.state();
        st.journal.push_x509(entry);
        st.x509.next = Some(Arc::new(ca));
        self.persist(st).await?;
        Ok(state)
    }

    /// Mints a new JWT key into the next slot (replacing any prepared one) and journals it.
    pub(super) async fn prepare_jwt(
        &self,
        st: &mut State,
        now: SystemTime,
    ) -> Result<AuthorityState, CaError> {
        let slot = st.jwt.next_slot();
        let (key, entry) = authority::mint_jwt(&self.config, self.keys.as_ref(), slot, now)?;
        tracing::info!(authority_id = %key.kid, slot = slot.letter(), "JWT key prepared");
        let state = key.state();
        st.journal.push_jwt(entry);
        st.jwt.next = Some(Arc::new(key));
        self.persist(st).await?;
        Ok(state)
    }

    /// Makes the prepared X.509 CA active (the active one becomes OLD) and journals it.
    pub(super) async fn activate_x509(&self, st: &mut State) -> Result<(), CaError> {
        if let Some((old, new)) = st.x509.activate() {
            if let Some(old) = old {
                st.journal.set_x509_status(&old, Status::Old);
            }
            st.journal.set_x509_status(&new, Status::Active);
            tracing::info!(authority_id = %new, "X.509 CA activated");
            self.persist(st).await?;
        }
        Ok(())
    }

    /// Makes the prepared JWT key active (the active one becomes OLD) and journals it.
    pub(super) async fn activate_jwt(&self, st: &mut State) -> Result<(), CaError> {
        if let Some((old, new)) = st.jwt.activate() {
            if let Some(old) = old {
                st.journal.set_jwt_status(&old, Status::Old);
            }
            st.journal.set_jwt_status(&new, Status::Active);
            tracing::info!(authority_id = %new, "JWT key activated");
            self.persist(st).await?;
        }
        Ok(())
    }

    pub(super) fn publish_active(&self, st: &State) {
        let active = Active {
            x509: st.x509.current.clone(),
            jwt: st.jwt.current.clone(),
        };
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = active;
    }

    fn active(&self) -> Active {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) async fn persist(&self, st: &State) -> Result<(), CaError> {
        Ok(self
            .store
            .set_ca_journal(&self.config.journal_key, &st.journal.encode()?)
            .await?)
    }

    /// Adds the current and next roots and JWT keys to the own bundle (idempotent) and prunes
    /// what expired more than a day ago, bumping the sequence number on any change.
    pub(super) async fn sync_bundle(&self, st: &State, now: SystemTime) -> Result<bool, CaError> {
        let mut roots: Vec<X509Authority> = Vec::new();
        for ca in st.x509.current.iter().chain(st.x509.next.iter()) {
            roots.extend(ca.bundle_roots());
        }
        let jwt: Vec<JwtKey> = st
            .jwt
            .current
            .iter()
            .chain(st.jwt.next.iter())
            .map(|k| k.bundle_key())
            .collect();
        let cutoff = unix_seconds(now.checked_sub(BUNDLE_PRUNE_GRACE).unwrap_or(now));
        self.update_bundle(&mut |b: &mut Bundle| {
            let added = b.merge(&roots, &jwt);
            let pruned = prune(b, cutoff);
            added | pruned
        })
        .await
    }

    /// Applies `f` to the own bundle, bumping the sequence number when it reports a change.
    pub(super) async fn update_bundle(
        &self,
        f: &mut (dyn for<'b> FnMut(&'b mut Bundle) -> bool + Send),
    ) -> Result<bool, CaError> {
        let mut changed = false;
        self.store
            .update_bundle_with(&self.config.trust_domain, &mut |b| {
                changed = f(b);
                if changed {
                    b.sequence_number += 1;
                }
                changed
            })
            .await?;
        Ok(changed)
    }

    pub(super) fn sign_x509_svid(&self, p: X509SvidParams) -> Result<X509Svid, CaError> {
        require_member_with_path(&p.spiffe_id, &self.config.trust_domain)
            .map_err(|e| CaError::InvalidRequest(e.to_string()))?;
        if let Some(bad) = p.dns_names.iter().find(|d| !valid_dns_name(d)) {
            return Err(CaError::InvalidRequest(format!("invalid DNS name {bad:?}")));
        }
        let ca = self.active().x509.ok_or(CaError::NotReady("x509"))?;
        let now = self.clock.now();
        let ttl = if p.ttl.is_zero() {
            self.default_x509_ttl(p.kind)
        } else {
            p.ttl
        };
        let not_after = now
            .checked_add(ttl)
            .map_or(ca.not_after, |t| t.min(ca.not_after));
        if not_after <= now {
            return Err(CaError::NotReady("x509"));
        }
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(&p.public_key.spki_der)
            .map_err(|e| CaError::InvalidRequest(format!("unsupported public key: {e}")))?;
        let serial = template::random_serial()?;
        let params = template::svid_params(&SvidTemplate {
            spiffe_id: &p.spiffe_id.to_string(),
            dns_names: &p.dns_names,
            serial,
            not_before: now.checked_sub(BACKDATE).unwrap_or(now),
            not_after,
            ski: template::key_id(rcgen::PublicKeyData::der_bytes(&public_key)),
        })?;
        let leaf = params
            .signed_by(&public_key, &ca.issuer)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let mut chain = Vec::with_capacity(1 + ca.chain_tail.len());
        chain.push(leaf.der().to_vec());
        chain.extend(ca.chain_tail.iter().cloned());
        Ok(X509Svid {
            chain,
            serial: format!("{serial:x}"),
            expires_at: unix_seconds(not_after),
        })
    }

    fn default_x509_ttl(&self, kind: SvidKind) -> Duration {
        match kind {
            SvidKind::Workload | SvidKind::Server => self.config.default_x509_svid_ttl,
            SvidKind::Agent => self.config.agent_ttl,
        }
    }

    pub(super) fn sign_jwt_svid(&self, p: JwtSvidParams) -> Result<JwtSvid, CaError> {
        require_member_with_path(&p.spiffe_id, &self.config.trust_domain)
            .map_err(|e| CaError::InvalidRequest(e.to_string()))?;
        let audience: Vec<String> = p.audience.into_iter().filter(|a| !a.is_empty()).collect();
        if audience.is_empty() {
            return Err(CaError::InvalidRequest(
                "at least one audience is required".into(),
            ));
        }
        let key = self.active().jwt.ok_or(CaError::NotReady("jwt"))?;
        let iat = self.clock.unix_now();
        let ttl = if p.ttl.is_zero() {
            self.config.default_jwt_svid_ttl
        } else {
            p.ttl
        };
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let exp = iat.saturating_add(ttl).min(unix_seconds(key.not_after));
        if exp <= iat {
            return Err(CaError::NotReady("jwt"));
        }
        let claims = Claims {
            aud: &audience,
            exp,
            iat,
            iss: self.config.jwt_issuer.as_deref().filter(|i| !i.is_empty()),
            sub: &p.spiffe_id.to_string(),
        };
        Ok(JwtSvid {
            token: key.signer.sign(&claims)?,
            expires_at: exp,
            issued_at: iat,
        })
    }

    pub(super) fn trust_domain(&self) -> &TrustDomain {
        &self.config.trust_domain
    }

    pub(super) fn active_x509(&self) -> Option<AuthorityState> {
        self.active().x509.map(|ca| ca.state())
    }

    pub(super) fn active_x509_ca_der(&self) -> Option<Vec<u8>> {
        self.active().x509.map(|ca| ca.cert_der.clone())
    }

    pub(super) async fn next_event(&self) -> Option<SystemTime> {
        let st = self.lock_state().await;
        let now = self.clock.now();
        Some(st.x509.next_event(now).min(st.jwt.next_event(now)))
    }
}

/// Drops roots and JWT keys that expired before `cutoff` (Unix seconds), but never the last
/// of either kind. Returns whether anything was dropped.
fn prune(b: &mut Bundle, cutoff: i64) -> bool {
    let root_expired = |a: &X509Authority| {
        template::parse_cert(&a.der).is_ok_and(|c| c.validity().not_after.timestamp() < cutoff)
    };
    let key_expired = |k: &JwtKey| k.expires_at != 0 && k.expires_at < cutoff;
    let mut changed = false;
    if b.x509_authorities.iter().any(|a| !root_expired(a))
        && b.x509_authorities.iter().any(root_expired)
    {
        b.x509_authorities.retain(|a| !root_expired(a));
        changed = true;
    }
    if b.jwt_authorities.iter().any(|k| !key_expired(k))
        && b.jwt_authorities.iter().any(key_expired)
    {
        b.jwt_authorities.retain(|k| !key_expired(k));
        changed = true;
    }
    changed
}
