//! Local-authority operations: states, forced prepare/activate, taint and revoke.

use signet_common::clock::from_unix_seconds;

use super::*;
use crate::ca::{AuthorityStates, CaError};

fn invalid<T: std::fmt::Debug>(r: Result<T, CaError>) -> String {
    match r {
        Err(CaError::InvalidRequest(m)) => m,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

#[test]
fn prepare_and_activate_ahead_of_schedule() {
    let fx = Fixture::new();
    let ca = fx.ca(config());
    let first = ca.active_x509_authority().unwrap();
    assert_eq!(
        ca.x509_authority_states(),
        AuthorityStates {
            active: Some(first.clone()),
            prepared: None,
            old: None
        }
    );
    assert!(invalid(ca.activate_x509_authority(&first.authority_id)).contains("no prepared"));

    let prepared = ca.prepare_x509_authority().unwrap();
    assert_eq!(ca.x509_authority_states().prepared, Some(prepared.clone()));
    assert_eq!(fx.root_ders().len(), 2, "published at preparation");
    assert!(invalid(ca.activate_x509_authority("00ff")).contains("unexpected authority ID"));
    assert_eq!(
        ca.activate_x509_authority(&prepared.authority_id).unwrap(),
        prepared
    );
    assert_eq!(
        ca.x509_authority_states(),
        AuthorityStates {
            active: Some(prepared.clone()),
            prepared: None,
            old: Some(first)
        }
    );
    let (_, pk) = workload_key();
    let svid = ca
        .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
        .unwrap();
    assert_signed_by(&svid.chain[0], &ca.active_x509_ca_der().unwrap());

    let jwt = ca.prepare_jwt_authority().unwrap();
    assert_eq!(fx.bundle().jwt_authorities.len(), 2);
    ca.activate_jwt_authority(&jwt.authority_id).unwrap();
    assert_eq!(ca.active_jwt_authority(), Some(jwt));
}

#[test]
fn only_the_old_authority_can_be_tainted_then_revoked() {
    let fx = Fixture::new();
    let ca = fx.ca(config());
    let first = ca.active_x509_authority().unwrap();
    let first_kid = ca.active_jwt_authority().unwrap();
    assert!(invalid(ca.taint_x509_authority(&first.authority_id)).contains("no old"));
    let next = ca.prepare_x509_authority().unwrap();
    ca.activate_x509_authority(&next.authority_id).unwrap();
    let kid = ca.prepare_jwt_authority().unwrap();
    ca.activate_jwt_authority(&kid.authority_id).unwrap();

    assert!(invalid(ca.taint_x509_authority(&next.authority_id)).contains("only the old"));
    assert!(invalid(ca.revoke_x509_authority(&first.authority_id)).contains("only tainted"));
    let seq = fx.bundle().sequence_number;
    assert_eq!(ca.taint_x509_authority(&first.authority_id).unwrap(), first);
    let b = fx.bundle();
    assert_eq!(b.sequence_number, seq + 1);
    assert_eq!(
        b.x509_authorities
            .iter()
            .map(|a| a.tainted)
            .collect::<Vec<_>>(),
        [true, false]
    );
    assert!(invalid(ca.taint_x509_authority(&first.authority_id)).contains("already tainted"));

    // Rotation keeps the taint and never re-adds what was revoked.
    ca.rotate().unwrap();
    assert!(fx.bundle().x509_authorities[0].tainted);
    ca.revoke_x509_authority(&first.authority_id).unwrap();
    ca.rotate().unwrap();
    assert_eq!(fx.root_ders(), [ca.active_x509_ca_der().unwrap()]);

    ca.taint_jwt_authority(&first_kid.authority_id).unwrap();
    assert!(
        fx.bundle()
            .jwt_authorities
            .iter()
            .any(|k| k.key_id == first_kid.authority_id && k.tainted)
    );
    ca.revoke_jwt_authority(&first_kid.authority_id).unwrap();
    assert_eq!(fx.bundle().jwt_authorities.len(), 1);
}

#[test]
fn old_authority_is_reported_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let fx = Fixture::with_keys(Arc::new(
        crate::keys::disk::DiskKeyManager::open(&path).unwrap(),
    ));
    let ca = fx.ca(config());
    let first = ca.active_x509_authority().unwrap();
    fx.clock.set(from_unix_seconds(START + 20 * 3600));
    ca.rotate().unwrap();
    let states = ca.x509_authority_states();
    drop(ca);
    let keys: Arc<dyn KeyManager> =
        Arc::new(crate::keys::disk::DiskKeyManager::open(&path).unwrap());
    let ca = Ca::new(config(), fx.clock.clone(), keys, fx.store.clone()).unwrap();
    assert_eq!(ca.x509_authority_states(), states);
    assert_eq!(states.old, Some(first.clone()));
    ca.taint_x509_authority(&first.authority_id).unwrap();
}
