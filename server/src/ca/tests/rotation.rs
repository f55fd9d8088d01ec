//! Rotation, bundle publication and pruning, restarts, several servers on one store.

use std::time::Duration;

use signet_common::clock::{Clock, from_unix_seconds};

use super::*;
use crate::ca::JwtSvidParams;
use crate::ca::journal::{Journal, Status};
use crate::keys::disk::DiskKeyManager;

fn at(clock: &FakeClock, secs_after_start: i64) {
    clock.set(from_unix_seconds(START + secs_after_start));
}

const H: i64 = 3600;

async fn journal(fx: &Fixture, key: &str) -> Journal {
    Journal::decode(&fx.store.ca_journal(key).await.unwrap().unwrap()).unwrap()
}

fn jwt_kid(ca: &Ca) -> String {
    let p = JwtSvidParams {
        spiffe_id: id("spiffe://example.org/w"),
        audience: vec!["a".into()],
        ttl: Duration::ZERO,
    };
    let token = ca.sign_jwt_svid(p).unwrap().token;
    jsonwebtoken::decode_header(&token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn prepares_at_half_life_and_activates_with_a_sixth_left() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let first = ca.active_x509_authority().unwrap();
    let first_der = ca.active_x509_ca_der().unwrap();
    let seq0 = fx.bundle().await.sequence_number;
    assert_eq!(
        (
            fx.root_ders().await.len(),
            fx.bundle().await.jwt_authorities.len()
        ),
        (1, 1)
    );
    assert_eq!(
        ca.next_event().await,
        Some(from_unix_seconds(START + 12 * H))
    );

    at(&fx.clock, 12 * H - 1);
    assert!(!ca.rotate().await.unwrap());
    assert_eq!(fx.bundle().await.sequence_number, seq0);

    at(&fx.clock, 12 * H);
    assert!(
        ca.rotate().await.unwrap(),
        "the next root and JWT key are published at preparation"
    );
    let b = fx.bundle().await;
    assert_eq!((b.x509_authorities.len(), b.jwt_authorities.len()), (2, 2));
    assert_eq!(b.sequence_number, seq0 + 1);
    assert_eq!(
        ca.active_x509_authority().unwrap(),
        first,
        "still the first CA"
    );
    assert_eq!(
        ca.next_event().await,
        Some(from_unix_seconds(START + 20 * H))
    );
    let j = journal(&fx, "server-1").await;
    assert_eq!(
        j.x509.iter().map(|e| e.status).collect::<Vec<_>>(),
        [Status::Active, Status::Prepared]
    );

    at(&fx.clock, 19 * H);
    let (_, pk) = workload_key();
    let mut p = svid_params("spiffe://example.org/w", pk);
    p.ttl = 10 * HOUR;
    assert_eq!(
        ca.sign_x509_svid(p).unwrap().expires_at,
        START + 24 * H,
        "capped at the old CA"
    );

    at(&fx.clock, 20 * H - 1);
    assert!(!ca.rotate().await.unwrap());
    assert_eq!(ca.active_x509_authority().unwrap(), first);

    at(&fx.clock, 20 * H);
    assert!(
        !ca.rotate().await.unwrap(),
        "activation does not change the bundle"
    );
    let second = ca.active_x509_authority().unwrap();
    assert_ne!(second, first);
    assert_eq!(second.expires_at, START + 36 * H);
    let second_der = ca.active_x509_ca_der().unwrap();
    assert_eq!(
        fx.root_ders().await,
        [first_der, second_der.clone()],
        "both roots across the switch"
    );
    let j = journal(&fx, "server-1").await;
    assert_eq!(
        j.x509.iter().map(|e| e.status).collect::<Vec<_>>(),
        [Status::Old, Status::Active]
    );
    assert_eq!(
        j.jwt.iter().map(|e| e.status).collect::<Vec<_>>(),
        [Status::Old, Status::Active]
    );
    assert_eq!(j.x509[1].key_id, "x509-CA-B");

    let (_, pk) = workload_key();
    let svid = ca
        .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
        .unwrap();
    assert_signed_by(&svid.chain[0], &second_der);
    assert_eq!(
        ca.next_event().await,
        Some(from_unix_seconds(START + 24 * H))
    );
}

#[tokio::test]
async fn expired_authorities_leave_the_bundle_a_day_after_expiry() {
    let fx = Fixture::new();
    let ca = fx.ca(config()).await;
    let first = fx.root_ders().await[0].clone();
    let first_kid = fx.bundle().await.jwt_authorities[0].key_id.clone();
    let mut seq = fx.bundle().await.sequence_number;
    for hour in 1..=60 {
        at(&fx.clock, hour * H);
        let changed = ca.rotate().await.unwrap();
        let b = fx.bundle().await;
        assert_eq!(b.sequence_number, seq + u64::from(changed), "hour {hour}");
        seq = b.sequence_number;
        let has_first = b.x509_authorities.iter().any(|a| a.der == first);
        let has_first_kid = b.jwt_authorities.iter().any(|k| k.key_id == first_kid);
        assert_eq!(
            has_first,
            hour <= 48,
            "hour {hour}: first root expired at 24h"
        );
        assert_eq!(has_first_kid, hour <= 48, "hour {hour}");
        // Every SVID chains to a root in the bundle and ends before its CA does.
        let (_, pk) = workload_key();
        let svid = ca
            .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
            .unwrap();
        let ca_der = ca.active_x509_ca_der().unwrap();
        assert!(b.x509_authorities.iter().any(|a| a.der == ca_der));
        assert!(svid.expires_at <= parse(&ca_der).validity().not_after.timestamp());
    }
    // One CA every 12h after the first: 24h of history (2 expired-but-kept ones at most) + live.
    assert!(fx.bundle().await.x509_authorities.len() <= 5);
}

#[tokio::test]
async fn restart_with_disk_keys_resumes_the_same_authorities() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let fx = Fixture::with_keys(Arc::new(DiskKeyManager::open(&path).unwrap()));
    let ca = fx.ca(config()).await;
    let x509 = ca.active_x509_authority().unwrap();
    let kid = jwt_kid(&ca);
    let seq = fx.bundle().await.sequence_number;
    drop(ca);

    let keys: Arc<dyn KeyManager> = Arc::new(DiskKeyManager::open(&path).unwrap());
    let restart = async |fx: &Fixture| {
        Ca::new(config(), fx.clock.clone(), keys.clone(), fx.store.clone())
            .await
            .unwrap()
    };
    let ca = restart(&fx).await;
    assert_eq!(
        ca.active_x509_authority().unwrap(),
        x509,
        "same SKI after restart"
    );
    assert_eq!(jwt_kid(&ca), kid);
    assert_eq!(
        fx.bundle().await.sequence_number,
        seq,
        "nothing new published"
    );

    // A prepared authority survives a restart too, and is activated on time.
    at(&fx.clock, 12 * H);
    assert!(ca.rotate().await.unwrap());
    let prepared = journal(&fx, "server-1").await.x509[1].authority_id.clone();
    drop(ca);
    let ca = restart(&fx).await;
    assert_eq!(fx.root_ders().await.len(), 2, "no third CA minted");
    assert_eq!(ca.active_x509_authority().unwrap(), x509);
    at(&fx.clock, 20 * H);
    ca.rotate().await.unwrap();
    assert_eq!(ca.active_x509_authority().unwrap().authority_id, prepared);
    // The server keeps signing with a CA that verifies under a bundle root.
    let (_, pk) = workload_key();
    let svid = ca
        .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
        .unwrap();
    assert_signed_by(&svid.chain[0], &ca.active_x509_ca_der().unwrap());
}

#[tokio::test]
async fn restart_without_the_keys_starts_new_authorities() {
    let fx = Fixture::new();
    let first = fx.ca(config()).await.active_x509_authority().unwrap();
    let keys: Arc<dyn KeyManager> = Arc::new(MemoryKeyManager::new());
    let ca = Ca::new(config(), fx.clock.clone(), keys, fx.store.clone())
        .await
        .unwrap();
    let second = ca.active_x509_authority().unwrap();
    assert_ne!(first, second);
    let j = journal(&fx, "server-1").await;
    assert_eq!(j.x509.len(), 1, "entries whose key is gone are dropped");
    assert_eq!(j.x509[0].authority_id, second.authority_id);
    assert_eq!(j.jwt.len(), 1);
    assert_eq!(
        fx.root_ders().await.len(),
        2,
        "the old root stays until it expires"
    );
}

#[tokio::test]
async fn restart_after_the_ca_expired_mints_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let fx = Fixture::with_keys(Arc::new(DiskKeyManager::open(&path).unwrap()));
    let first = fx.ca(config()).await.active_x509_authority().unwrap();
    at(&fx.clock, 25 * H);
    let keys: Arc<dyn KeyManager> = Arc::new(DiskKeyManager::open(&path).unwrap());
    let ca = Ca::new(config(), fx.clock.clone(), keys, fx.store.clone())
        .await
        .unwrap();
    let second = ca.active_x509_authority().unwrap();
    assert_ne!(first, second);
    assert_eq!(second.expires_at, fx.clock.unix_now() + 24 * H);
}

#[tokio::test]
async fn servers_sharing_a_store_each_publish_their_own_root() {
    let fx = Fixture::new();
    let one = fx.ca(config()).await;
    let mut cfg = config();
    cfg.journal_key = "server-2".into();
    let two = Ca::new(
        cfg,
        fx.clock.clone(),
        Arc::new(MemoryKeyManager::new()),
        fx.store.clone(),
    )
    .await
    .unwrap();
    assert_ne!(one.active_x509_authority(), two.active_x509_authority());
    let b = fx.bundle().await;
    assert_eq!((b.x509_authorities.len(), b.jwt_authorities.len()), (2, 2));
    for ca in [&one, &two] {
        let (_, pk) = workload_key();
        let svid = ca
            .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
            .unwrap();
        assert_signed_by(&svid.chain[0], &ca.active_x509_ca_der().unwrap());
    }
    // Neither server prunes the other's live authorities.
    at(&fx.clock, 12 * H);
    one.rotate().await.unwrap();
    two.rotate().await.unwrap();
    assert_eq!(fx.bundle().await.x509_authorities.len(), 4);
}
