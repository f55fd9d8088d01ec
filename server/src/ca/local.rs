//! Local-authority operations, as SPIRE's LocalAuthority API offers them: show the slots,
//! prepare and activate ahead of schedule, taint and then revoke an OLD authority.
//! Precondition failures are `CaError::InvalidRequest` with SPIRE's wording.

use signet_common::bundle::Bundle;

use crate::ca::Ca;
use crate::ca::authority::Lifetime;
use crate::ca::error::CaError;
use crate::ca::manager::{Manager, Slots, State};
use crate::ca::params::{AuthorityState, AuthorityStates};
use crate::ca::template::{hex, key_id, parse_cert};

/// Which authority kind an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    X509,
    Jwt,
}

fn states<T: Lifetime>(s: &Slots<T>) -> AuthorityStates {
    AuthorityStates {
        active: s.current.as_ref().map(|a| a.state()),
        prepared: s.next.as_ref().map(|a| a.state()),
        old: s.old.clone(),
    }
}

fn invalid(msg: &str) -> CaError {
    CaError::InvalidRequest(msg.to_owned())
}

/// The X.509 authority ID of a root: the hex SKI (SHA-1 of the key if it has none).
fn root_authority_id(der: &[u8]) -> Option<String> {
    let cert = parse_cert(der).ok()?;
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    Some(hex(&ski.unwrap_or_else(|| {
        key_id(&cert.public_key().subject_public_key.data)
    })))
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

    /// Mints a new X.509 CA into the next slot now (replacing a prepared one) and publishes
    /// its root.
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
    /// authority (its roots are the upstream's).
    pub async fn taint_x509_authority(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        self.inner
            .taint_or_revoke(Kind::X509, authority_id, false)
            .await
    }

    /// Marks the OLD JWT key tainted in the bundle.
    pub async fn taint_jwt_authority(&self, authority_id: &str) -> Result<AuthorityState, CaError> {
        self.inner
            .taint_or_revoke(Kind::Jwt, authority_id, false)
            .await
    }

    /// Removes the OLD, already tainted, X.509 CA's root from the bundle.
    pub async fn revoke_x509_authority(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        self.inner
            .taint_or_revoke(Kind::X509, authority_id, true)
            .await
    }

    /// Removes the OLD, already tainted, JWT key from the bundle.
    pub async fn revoke_jwt_authority(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, CaError> {
        self.inner
            .taint_or_revoke(Kind::Jwt, authority_id, true)
            .await
    }
}

impl Manager {
    async fn prepare_now(&self, kind: Kind) -> Result<AuthorityState, CaError> {
        let mut st = self.lock_state().await;
        let now = self.clock.now();
        let state = match kind {
            Kind::X509 => self.prepare_x509(&mut st, now).await?,
            Kind::Jwt => self.prepare_jwt(&mut st, now).await?,
        };
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
        let prepared = match kind {
            Kind::X509 => st.x509.next.as_ref().map(|a| (a.state(), a.usable_at(now))),
            Kind::Jwt => st.jwt.next.as_ref().map(|a| (a.state(), a.usable_at(now))),
        };
        let Some((prepared, usable)) = prepared else {
            return Err(invalid("no prepared authority"));
        };
        if prepared.authority_id != authority_id {
            return Err(invalid("unexpected authority ID"));
        }
        if !usable {
            return Err(invalid("the prepared authority has expired"));
        }
        match kind {
            Kind::X509 => self.activate_x509(&mut st).await?,
            Kind::Jwt => self.activate_jwt(&mut st).await?,
        }
        self.publish_active(&st);
        Ok(prepared)
    }

    async fn taint_or_revoke(
        &self,
        kind: Kind,
        authority_id: &str,
        revoke: bool,
    ) -> Result<AuthorityState, CaError> {
        let st = self.lock_state().await;
        if kind == Kind::X509 && self.upstream.is_some() {
            return Err(invalid(
                "local authority can't be tainted if there is an upstream authority",
            ));
        }
        let old = old_of(&st, kind).ok_or_else(|| invalid("no old authority"))?;
        if old.authority_id != authority_id {
            return Err(invalid("only the old authority can be tainted or revoked"));
        }
        let mut outcome = Err(invalid("the authority is not in the bundle"));
        self.update_bundle(&mut |b: &mut Bundle| {
            outcome = apply(b, kind, authority_id, revoke);
            outcome.is_ok()
        })
        .await?;
        outcome?;
        tracing::info!(authority_id, revoke, "Local authority tainted or revoked");
        Ok(old)
    }
}

fn old_of(st: &State, kind: Kind) -> Option<AuthorityState> {
    match kind {
        Kind::X509 => st.x509.old.clone(),
        Kind::Jwt => st.jwt.old.clone(),
    }
}

/// Taints (or, when `revoke`, removes a tainted) bundle entry for `id`.
fn apply(b: &mut Bundle, kind: Kind, id: &str, revoke: bool) -> Result<(), CaError> {
    let pos = match kind {
        Kind::X509 => b
            .x509_authorities
            .iter()
            .position(|a| root_authority_id(&a.der).as_deref() == Some(id)),
        Kind::Jwt => b.jwt_authorities.iter().position(|k| k.key_id == id),
    }
    .ok_or_else(|| invalid("the authority is not in the bundle"))?;
    let tainted = match kind {
        Kind::X509 => &mut b.x509_authorities[pos].tainted,
        Kind::Jwt => &mut b.jwt_authorities[pos].tainted,
    };
    match (revoke, *tainted) {
        (false, true) => Err(invalid("the authority is already tainted")),
        (false, false) => {
            *tainted = true;
            Ok(())
        }
        (true, false) => Err(invalid("only tainted authorities can be revoked")),
        (true, true) => {
            match kind {
                Kind::X509 => drop(b.x509_authorities.remove(pos)),
                Kind::Jwt => drop(b.jwt_authorities.remove(pos)),
            }
            Ok(())
        }
    }
}
