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

fn failed<T: std::fmt::Debug>(r: Result<T, CaError>) -> String {
    match r {
        Err(CaError::Failed(m)) => m,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn prepare_and_activate_ahead_of_schedule() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let first = ca.active_x509_authority().unwrap();
    assert_eq!(
        ca.x509_authority_states().await,
        AuthorityStates {
            active: Some(first.clone()),
            prepared: None,
            old: None
        }
    );
    assert_eq!(
        invalid(ca.activate_x509_authority(&first.authority_id).await),
        "unexpected authority ID"
    );
    assert_eq!(
        invalid(ca.activate_x509_authority("").await),
        "no authority ID provided"
    );

    let prepared = ca.prepare_x509_authority().await.unwrap();
    assert_eq!(
        ca.x509_authority_states().await.prepared,
        Some(prepared.clone())
    );
    assert_eq!(fx.root_ders().await.len(), 2, "published at preparation");
    assert!(invalid(ca.activate_x509_authority("00ff").await).contains("unexpected authority ID"));
    assert_eq!(
        ca.activate_x509_authority(&prepared.authority_id)
            .await
            .unwrap(),
        prepared
    );
    assert_eq!(
        ca.x509_authority_states().await,
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

    let jwt = ca.prepare_jwt_authority().await.unwrap();
    assert_eq!(fx.bundle().await.jwt_authorities.len(), 2);
    ca.activate_jwt_authority(&jwt.authority_id).await.unwrap();
    assert_eq!(ca.active_jwt_authority().await, Some(jwt));
}

#[tokio::test]
async fn only_the_old_authority_can_be_tainted_then_revoked() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let first = ca.active_x509_authority().unwrap();
    let first_kid = ca.active_jwt_authority().await.unwrap();
    assert_eq!(
        invalid(ca.taint_x509_authority(&first.authority_id).await),
        "unable to taint current local authority"
    );
    let next = ca.prepare_x509_authority().await.unwrap();
    assert_eq!(
        invalid(ca.taint_x509_authority(&next.authority_id).await),
        "only Old local authorities can be tainted"
    );
    ca.activate_x509_authority(&next.authority_id)
        .await
        .unwrap();
    let kid = ca.prepare_jwt_authority().await.unwrap();
    ca.activate_jwt_authority(&kid.authority_id).await.unwrap();

    assert_eq!(
        invalid(ca.taint_x509_authority(&next.authority_id).await),
        "unable to taint current local authority"
    );
    assert_eq!(
        invalid(ca.taint_x509_authority("00ff").await),
        "unexpected authority ID"
    );
    assert_eq!(
        invalid(ca.revoke_x509_authority(&next.authority_id).await),
        "invalid authority ID: unable to use current authority"
    );
    assert_eq!(
        failed(ca.revoke_x509_authority(&first.authority_id).await),
        "failed to revoke X.509 authority: it is not possible to revoke an untainted root CA"
    );
    let seq = fx.bundle().await.sequence_number;
    assert_eq!(
        ca.taint_x509_authority(&first.authority_id).await.unwrap(),
        first
    );
    let b = fx.bundle().await;
    assert_eq!(b.sequence_number, seq + 1);
    assert_eq!(
        b.x509_authorities
            .iter()
            .map(|a| a.tainted)
            .collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(
        failed(ca.taint_x509_authority(&first.authority_id).await),
        "failed to taint X.509 authority: root CA is already tainted"
    );
    assert!(matches!(
        ca.taint_upstream_authority("abcd").await,
        Err(CaError::Refused(m)) if m == "upstream authority is not configured"
    ));

    // Rotation keeps the taint and never re-adds what was revoked.
    ca.rotate().await.unwrap();
    assert!(fx.bundle().await.x509_authorities[0].tainted);
    ca.revoke_x509_authority(&first.authority_id).await.unwrap();
    ca.rotate().await.unwrap();
    assert_eq!(fx.root_ders().await, [ca.active_x509_ca_der().unwrap()]);

    assert_eq!(
        failed(ca.revoke_jwt_authority(&first_kid.authority_id).await),
        "failed to revoke JWT authority: it is not possible to revoke an untainted key"
    );
    assert_eq!(
        invalid(ca.revoke_jwt_authority(&kid.authority_id).await),
        "invalid authority ID: unable to use current authority"
    );
    assert_eq!(
        invalid(ca.taint_jwt_authority(&kid.authority_id).await),
        "unable to taint current local authority"
    );
    ca.taint_jwt_authority(&first_kid.authority_id)
        .await
        .unwrap();
    assert!(
        fx.bundle()
            .await
            .jwt_authorities
            .iter()
            .any(|k| k.key_id == first_kid.authority_id && k.tainted)
    );
    ca.revoke_jwt_authority(&first_kid.authority_id)
        .await
        .unwrap();
    assert_eq!(fx.bundle().await.jwt_authorities.len(), 1);
}

#[tokio::test]
async fn old_authority_is_reported_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let fx = Fixture::with_keys(Arc::new(
        crate::keys::disk::DiskKeyManager::open(&path).unwrap(),
    ));
    let ca = fx.ca(config()).await;
    let first = ca.active_x509_authority().unwrap();
    fx.clock.set(from_unix_seconds(START + 20 * 3600));
    ca.rotate().await.unwrap();
    let states = ca.x509_authority_states().await;
    drop(ca);
    let keys: Arc<dyn KeyManager> =
        Arc::new(crate::keys::disk::DiskKeyManager::open(&path).unwrap());
    let ca = Ca::new(config(), fx.clock.clone(), keys, fx.store.clone())
        .await
        .unwrap();
    assert_eq!(ca.x509_authority_states().await, states);
    assert_eq!(states.old, Some(first.clone()));
    ca.taint_x509_authority(&first.authority_id).await.unwrap();
}
