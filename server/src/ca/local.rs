//! Local-authority operations, as SPIRE's LocalAuthority API offers them
//! (`spire:pkg/server/api/localauthority/v1/service.go`): show the slots, prepare and
//! activate ahead of schedule, taint and then revoke the OLD authority (or, under an
//! upstream authority, the upstream root that signed it). Refusals carry SPIRE's wording:
//! `CaError::InvalidRequest` (InvalidArgument), `Refused` (FailedPrecondition),
//! `Initializing` (Unavailable) and `Failed` (Internal).
//!
//! As in SPIRE, each kind has two slots: the current one and the next one, which holds
//! either the PREPARED authority or, until one is prepared, the OLD one. So the OLD
//! authority can be tainted or revoked only while nothing is prepared.

use signet_common::bundle::Bundle;

use crate::ca::Ca;
use crate::ca::authority::Lifetime;
use crate::ca::error::CaError;
use crate::ca::journal::Status;
use crate::ca::manager::{Manager, Slots};
use crate::ca::params::{AuthorityState, AuthorityStates};
use crate::ca::template::subject_key_id_hex;

/// Which authority kind an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    X509,
    Jwt,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Self::X509 => "X.509 authority",
            Self::Jwt => "JWT authority",
        }
    }
}

/// Taint or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Taint,
    Revoke,
}

fn invalid(msg: impl Into<String>) -> CaError {
    CaError::InvalidRequest(msg.into())
}

/// The current authority and what the next slot holds (PREPARED, or else OLD).
struct View {
    current: Option<AuthorityState>,
    next: Option<(AuthorityState, Status)>,
}

impl View {
    fn of<T: Lifetime>(s: &Slots<T>) -> Self {
        let next = match (&s.next, &s.old) {
            (Some(n), _) => Some((n.state(), Status::Prepared)),
            (None, Some(old)) => Some((old.clone(), Status::Old)),
            (None, None) => None,
        };
        Self {
            current: s.current.as_ref().map(|c| c.state()),
            next,
        }
    }

    fn is_current(&self, id: &str) -> bool {
        self.current.as_ref().is_some_and(|c| c.authority_id == id)
    }

    fn next_id(&self) -> &str {
        self.next
            .as_ref()
            .map_or("", |(n, _)| n.authority_id.as_str())
    }

    fn next_status(&self) -> Option<Status> {
        self.next.as_ref().map(|(_, s)| *s)
    }

    /// The OLD authority with this ID, or SPIRE's reason for refusing to taint it.
    fn taintable(&self, id: &str) -> Result<AuthorityState, CaError> {
        if id.is_empty() {
            return Err(invalid("no authority ID provided"));
        }
        if self.is_current(id) {
            return Err(invalid("unable to taint current local authority"));
        }
        match &self.next {
            Some((n, Status::Old)) if n.authority_id == id => Ok(n.clone()),
            Some((n, _)) if n.authority_id == id => {
                Err(invalid("only Old local authorities can be tainted"))
            }
            _ => Err(invalid("unexpected authority ID")),
        }
    }
}

impl Ca {
    /// The X.509 slots.
    pub async fn x509_authority_states(&self) -> AuthorityStates {
        states(&self.inner.lock_state().await.x509)
    }

    /// The JWT slots.
    pub async fn jwt_authority_states(&self) -> AuthorityStates {
        states(&self.inner.lock_state().await.jwt)
    }

    /// The active JWT authority (`authority_id` is the `kid`).
    pub async fn active_jwt_authority(&self) -> Option<AuthorityState> {
        self.jwt_authority_states().await.active
    }

    /// Whether the X.509 CA is an intermediate under an upstream authority.
    pub fn has_upstream_authority(&self) -> bool {
        self.inner.upstream.is_some()
    }

    /// Mints a new X.509 CA into the next slot now (replacing a prepared or old one) and
    /// publishes its root.
    pub async fn prepare_x509_authority(&self) -> Result<AuthorityState, CaError> {
        self.inner.prepare_now(Kind::X509).await
    }

    /// Mints a new JWT key into the next slot now and publishes it.
    pub async fn prepare_jwt_authority(&self) -> Result<AuthorityState, CaError> {
        self.inner.prepare_now(Kind::Jwt).await
    }

    /// Activates the prepared X.509 CA, which must have this ID; returns the new active one.
    pub async fn activate_x509_authority(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        self.inner.activate_now(Kind::X509, authority_id).await
    }

    /// Activates the prepared JWT key, which must have this `kid`.
    pub async fn activate_jwt_authority(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        self.inner.activate_now(Kind::Jwt, authority_id).await
    }

    /// Marks the OLD X.509 CA's root tainted in the bundle. Refused with an upstream
    /// authority (its roots are the upstream's: taint those instead).
    pub async fn taint_x509_authority(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        self.inner.local_x509(authority_id, Op::Taint).await
    }

    /// Removes the OLD, already tainted, X.509 CA's root from the bundle.
    pub async fn revoke_x509_authority(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        self.inner.local_x509(authority_id, Op::Revoke).await
    }

    /// Marks the OLD JWT key tainted in the bundle.
    pub async fn taint_jwt_authority(&self, authority_id: &str) -> Result<AuthorityState, CaError> {
        self.inner.jwt_taint(authority_id).await
    }

    /// Removes a tainted JWT key (neither current nor prepared) from the bundle.
    pub async fn revoke_jwt_authority(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        self.inner.jwt_revoke(authority_id).await
    }

    /// Marks tainted the upstream root (by hex SKI) that signed the OLD X.509 CA; returns
    /// the normalized (lower-case) ID.
    pub async fn taint_upstream_authority(&self, subject_key_id: &str) -> Result<String, CaError> {
        self.inner.upstream_op(subject_key_id, Op::Taint).await
    }

    /// Removes the tainted upstream root (by hex SKI) that signed the OLD X.509 CA.
    pub async fn revoke_upstream_authority(&self, subject_key_id: &str) -> Result<String, CaError> {
        self.inner.upstream_op(subject_key_id, Op::Revoke).await
    }
}

fn states<T: Lifetime>(s: &Slots<T>) -> AuthorityStates {
    let view = View::of(s);
    let (prepared, old) = match view.next {
        Some((n, Status::Prepared)) => (Some(n), None),
        Some((n, _)) => (None, Some(n)),
        None => (None, None),
    };
    AuthorityStates {
        active: view.current,
        prepared,
        old,
    }
}

impl Manager {
    async fn prepare_now(&self, kind: Kind) -> Result<AuthorityState, CaError> {
        let mut st = self.lock_state().await;
        let now = self.clock.now();
        let initialized = match kind {
            Kind::X509 => st.x509.current.is_some(),
            Kind::Jwt => st.jwt.current.is_some(),
        };
        if !initialized {
            return Err(CaError::Initializing);
        }
        let state = match kind {
            Kind::X509 => self.prepare_x509(&mut st, now).await,
            Kind::Jwt => self.prepare_jwt(&mut st, now).await,
        }
        .map_err(|e| CaError::Failed(format!("failed to prepare {}: {e}", kind.noun())))?;
        self.sync_bundle(&st, now).await?;
        Ok(state)
    }

    async fn activate_now(
        &self,
        kind: Kind,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        let mut st = self.lock_state().await;
        let now = self.clock.now();
        let (view, usable) = match kind {
            Kind::X509 => (
                View::of(&st.x509),
                st.x509.next.as_ref().is_some_and(|n| n.usable_at(now)),
            ),
            Kind::Jwt => (
                View::of(&st.jwt),
                st.jwt.next.as_ref().is_some_and(|n| n.usable_at(now)),
            ),
        };
        if authority_id.is_empty() {
            return Err(invalid("no authority ID provided"));
        }
        if authority_id != view.next_id() {
            return Err(invalid("unexpected authority ID"));
        }
        if view.next_status() != Some(Status::Prepared) {
            return Err(CaError::Failed(
                "only Prepared authorities can be activated".into(),
            ));
        }
        if !usable {
            return Err(CaError::Failed("the prepared authority has expired".into()));
        }
        match kind {
            Kind::X509 => self.activate_x509(&mut st).await?,
            Kind::Jwt => self.activate_jwt(&mut st).await?,
        }
        self.publish_active(&st);
        Ok(match kind {
            Kind::X509 => View::of(&st.x509).current,
            Kind::Jwt => View::of(&st.jwt).current,
        }
        .unwrap_or_default())
    }

    async fn local_x509(&self, authority_id: &str, op: Op) -> Result<AuthorityState, CaError> {
        let st = self.lock_state().await;
        if self.upstream.is_some() {
            let verb = match op {
                Op::Taint => "tainted",
                Op::Revoke => "revoked",
            };
            return Err(CaError::Refused(format!(
                "local authority can't be {verb} if there is an upstream authority"
            )));
        }
        let view = View::of(&st.x509);
        let old = match op {
            Op::Taint => view.taintable(authority_id)?,
            Op::Revoke => revocable_x509(&view, authority_id)
                .map_err(|why| invalid(format!("invalid authority ID: {why}")))?,
        };
        self.apply_to_root(authority_id, op, Kind::X509.noun())
            .await?;
        drop(st);
        Ok(match op {
            Op::Taint => old,
            Op::Revoke => AuthorityState {
                authority_id: authority_id.to_owned(),
                ..AuthorityState::default()
            },
        })
    }

    async fn upstream_op(&self, subject_key_id: &str, op: Op) -> Result<String, CaError> {
        let st = self.lock_state().await;
        if self.upstream.is_none() {
            return Err(CaError::Refused(
                "upstream authority is not configured".into(),
            ));
        }
        let id = subject_key_id.to_lowercase();
        let view = View::of(&st.x509);
        if let Err(why) = upstream_signing_old(&view, &id) {
            let context = match op {
                Op::Taint => "provided subject key id is not valid",
                Op::Revoke => "invalid subject key ID",
            };
            return Err(invalid(format!("{context}: {why}")));
        }
        let noun = match op {
            Op::Taint => "upstream authority",
            Op::Revoke => "X.509 upstream authority",
        };
        self.apply_to_root(&id, op, noun).await?;
        drop(st);
        Ok(id)
    }

    async fn jwt_taint(&self, authority_id: &str) -> Result<AuthorityState, CaError> {
        let st = self.lock_state().await;
        let old = View::of(&st.jwt).taintable(authority_id)?;
        self.apply_to_jwt_key(authority_id, Op::Taint).await?;
        drop(st);
        Ok(AuthorityState {
            authority_id: old.authority_id,
            ..AuthorityState::default()
        })
    }

    async fn jwt_revoke(&self, authority_id: &str) -> Result<AuthorityState, CaError> {
        let st = self.lock_state().await;
        let view = View::of(&st.jwt);
        let why = if authority_id.is_empty() {
            Some("no authority ID provided")
        } else if authority_id == view.next_id() {
            (view.next_status() == Some(Status::Prepared)).then_some("unable to use a prepared key")
        } else if view.is_current(authority_id) {
            Some("unable to use current authority")
        } else {
            let bundle = self.store.bundle(&self.config.trust_domain).await?;
            let known =
                bundle.is_some_and(|b| b.jwt_authorities.iter().any(|k| k.key_id == authority_id));
            (!known).then_some("no JWT authority found with provided authority ID")
        };
        if let Some(why) = why {
            return Err(invalid(format!("invalid authority ID: {why}")));
        }
        self.apply_to_jwt_key(authority_id, Op::Revoke).await?;
        drop(st);
        Ok(AuthorityState {
            authority_id: authority_id.to_owned(),
            ..AuthorityState::default()
        })
    }

    /// Taints or removes the own-bundle root whose SKI is `id`, with the datastore's
    /// refusals as SPIRE words them.
    async fn apply_to_root(&self, id: &str, op: Op, noun: &str) -> Result<(), CaError> {
        let mut outcome = Ok(());
        self.update_bundle(&mut |b: &mut Bundle| {
            outcome = apply_root(b, id, op);
            outcome.is_ok()
        })
        .await?;
        let verb = match op {
            Op::Taint => "taint",
            Op::Revoke => "revoke",
        };
        outcome.map_err(|why| CaError::Failed(format!("failed to {verb} {noun}: {why}")))?;
        tracing::info!(authority_id = id, ?op, "Authority {verb}ed in the bundle");
        Ok(())
    }

    async fn apply_to_jwt_key(&self, kid: &str, op: Op) -> Result<(), CaError> {
        let mut outcome = Ok(());
        self.update_bundle(&mut |b: &mut Bundle| {
            outcome = apply_jwt(b, kid, op);
            outcome.is_ok()
        })
        .await?;
        let verb = match op {
            Op::Taint => "taint",
            Op::Revoke => "revoke",
        };
        outcome.map_err(|why| CaError::Failed(format!("failed to {verb} JWT authority: {why}")))?;
        tracing::info!(
            authority_id = kid,
            ?op,
            "JWT authority {verb}ed in the bundle"
        );
        Ok(())
    }
}

/// SPIRE's `validateLocalAuthorityID`.
fn revocable_x509(view: &View, id: &str) -> Result<AuthorityState, &'static str> {
    if id.is_empty() {
        return Err("no authority ID provided");
    }
    if view.is_current(id) {
        return Err("unable to use current authority");
    }
    match &view.next {
        Some((n, Status::Old)) if n.authority_id == id => Ok(n.clone()),
        _ => Err("only Old local authority can be revoked"),
    }
}

/// SPIRE's `validateUpstreamAuthoritySubjectKey`.
fn upstream_signing_old(view: &View, id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("no subject key ID provided");
    }
    if view
        .current
        .as_ref()
        .is_some_and(|c| c.upstream_authority_id == id)
    {
        return Err("unable to use upstream authority singing current authority");
    }
    match &view.next {
        Some((n, status)) if n.upstream_authority_id == id => {
            if *status == Status::Prepared {
                return Err("only upstream authorities signing an old authority can be used");
            }
            Ok(())
        }
        _ => Err("upstream authority didn't sign the old local authority"),
    }
}

fn apply_root(b: &mut Bundle, id: &str, op: Op) -> Result<(), &'static str> {
    let pos = b
        .x509_authorities
        .iter()
        .position(|a| subject_key_id_hex(&a.der).as_deref() == Some(id));
    let Some(pos) = pos else {
        return Err(match op {
            Op::Taint => "no ca found with provided subject key ID",
            Op::Revoke => "no root CA found with provided subject key ID",
        });
    };
    let root = &mut b.x509_authorities[pos];
    match (op, root.tainted) {
        (Op::Taint, true) => Err("root CA is already tainted"),
        (Op::Taint, false) => {
            root.tainted = true;
            Ok(())
        }
        (Op::Revoke, false) => Err("it is not possible to revoke an untainted root CA"),
        (Op::Revoke, true) => {
            b.x509_authorities.remove(pos);
            Ok(())
        }
    }
}

fn apply_jwt(b: &mut Bundle, kid: &str, op: Op) -> Result<(), &'static str> {
    let Some(pos) = b.jwt_authorities.iter().position(|k| k.key_id == kid) else {
        return Err("no JWT Key found with provided key ID");
    };
    let key = &mut b.jwt_authorities[pos];
    match (op, key.tainted) {
        (Op::Taint, true) => Err("key is already tainted"),
        (Op::Taint, false) => {
            key.tainted = true;
            Ok(())
        }
        (Op::Revoke, false) => Err("it is not possible to revoke an untainted key"),
        (Op::Revoke, true) => {
            b.jwt_authorities.remove(pos);
            Ok(())
        }
    }
}
