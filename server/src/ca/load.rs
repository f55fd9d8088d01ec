//! Resuming from the journal: which entries can be loaded into the slots, which are dropped.

use std::sync::Arc;
use std::time::SystemTime;

use crate::ca::authority::{self, Lifetime};
use crate::ca::error::CaError;
use crate::ca::journal::{Journal, Slot, Status};
use crate::ca::manager::{Manager, Slots, State};
use crate::ca::params::AuthorityState;
use crate::ca::template;

impl Manager {
    /// Fills the slots from `journal`: per slot letter, only the newest entry can be loaded,
    /// and only if it is ACTIVE or PREPARED and passes the checks of `authority`. Entries
    /// whose key is gone from the key manager, and live entries that fail the checks, are
    /// dropped. Returns whether the journal changed.
    pub(super) fn load(
        &self,
        st: &mut State,
        journal: Journal,
        now: SystemTime,
    ) -> Result<bool, CaError> {
        let before = journal.clone();
        let with_upstream = self.upstream.is_some();
        let mut x509 = Vec::new();
        let mut seen = [false; 2];
        for mut e in journal.x509.into_iter().rev() {
            let Some(key) = self.keys.key(&e.key_id)? else {
                tracing::warn!(authority_id = %e.authority_id, "Dropping journal entry: its key is gone");
                continue;
            };
            let first = !std::mem::replace(&mut seen[slot_index(e.slot)], true);
            if first && e.status != Status::Old {
                match authority::x509_from_entry(
                    &self.config.trust_domain,
                    with_upstream,
                    &e,
                    &key,
                    now,
                ) {
                    Ok(ca) => place(&mut st.x509, &mut e.status, ca),
                    Err(error) => {
                        tracing::warn!(authority_id = %e.authority_id, %error, "Dropping unusable X.509 CA");
                        continue;
                    }
                }
            } else if e.status != Status::Old {
                e.status = Status::Old;
            }
            if e.status == Status::Old && st.x509.old.is_none() {
                st.x509.old = Some(AuthorityState {
                    authority_id: e.authority_id.clone(),
                    expires_at: e.not_after,
                    upstream_authority_id: if with_upstream {
                        template::authority_key_id_hex(&e.cert)
                    } else {
                        String::new()
                    },
                });
            }
            x509.push(e);
        }
        let mut jwt = Vec::new();
        let mut seen = [false; 2];
        for mut e in journal.jwt.into_iter().rev() {
            let Some(key) = self.keys.key(&e.key_id)? else {
                tracing::warn!(authority_id = %e.kid, "Dropping journal entry: its key is gone");
                continue;
            };
            let first = !std::mem::replace(&mut seen[slot_index(e.slot)], true);
            if first && e.status != Status::Old {
                match authority::jwt_from_entry(&e, &key, now) {
                    Ok(k) => place(&mut st.jwt, &mut e.status, k),
                    Err(error) => {
                        tracing::warn!(authority_id = %e.kid, %error, "Dropping unusable JWT key");
                        continue;
                    }
                }
            } else if e.status != Status::Old {
                e.status = Status::Old;
            }
            if e.status == Status::Old && st.jwt.old.is_none() {
                st.jwt.old = Some(AuthorityState {
                    authority_id: e.kid.clone(),
                    expires_at: e.not_after,
                    upstream_authority_id: String::new(),
                });
            }
            jwt.push(e);
        }
        x509.reverse();
        jwt.reverse();
        st.journal = Journal {
            version: before.version,
            x509,
            jwt,
        };
        Ok(st.journal != before)
    }
}

fn slot_index(s: Slot) -> usize {
    match s {
        Slot::A => 0,
        Slot::B => 1,
    }
}

/// Puts a loaded authority in the slot its status names; a second ACTIVE or PREPARED one
/// (newest first, so the older) is demoted to OLD.
fn place<T: Lifetime>(slots: &mut Slots<T>, status: &mut Status, a: T) {
    let target = match status {
        Status::Active => &mut slots.current,
        Status::Prepared => &mut slots.next,
        Status::Old => return,
    };
    if target.is_none() {
        *target = Some(Arc::new(a));
    } else {
        *status = Status::Old;
    }
}
