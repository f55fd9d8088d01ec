//! Issue acceptance with the real `spiffe` crate against a real agent: `X509Source` and
//! `JwtSource`, five rotations seen by a watcher with no gap, entries created and deleted
//! while watching, and a rustls mutual-TLS handshake between two workloads using only what
//! the Workload API handed them.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use futures::StreamExt;
use signet_tests::agent::{Setup, until};
use spiffe::{JwtSource, TrustDomain, WorkloadApiClient, X509Source};

fn uid() -> String {
    format!("uid:{}", nix::unistd::geteuid().as_raw())
}

fn unix_now() -> i64 {
    signet_common::clock::Clock::unix_now(&signet_common::clock::SystemClock)
}

#[tokio::test]
async fn x509_source_and_jwt_source_work_against_the_agent() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let entry = setup
        .create_entry_selector(&agent.agent_id, "/source", &uid())
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let endpoint = format!("unix:{}", agent.socket_path.display());

    let x509 = X509Source::builder()
        .endpoint(&endpoint)
        .build()
        .await
        .unwrap();
    let svid = x509.svid().unwrap();
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/source");
    let td = TrustDomain::new("example.org").unwrap();
    let bundle = x509.bundle_set().unwrap().get(&td).expect("own bundle");
    let roots: Vec<Vec<u8>> = bundle
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let leaf = svid.leaf().as_bytes();
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let signed_by_root = roots.iter().any(|r| {
        let (_, root) = x509_parser::parse_x509_certificate(r).unwrap();
        signet_common::sigcheck::verify_cert(&cert, root.public_key()).is_ok()
    });
    assert!(
        signed_by_root,
        "the SVID chains to the bundle the source holds"
    );

    let jwt = JwtSource::builder()
        .endpoint(&endpoint)
        .build()
        .await
        .unwrap();
    let token = jwt.fetch_jwt_svid(["db"]).await.unwrap();
    assert_eq!(token.spiffe_id().to_string(), "spiffe://example.org/source");
    let client = WorkloadApiClient::connect_to(&endpoint).await.unwrap();
    let validated = client
        .validate_jwt_token("db", token.token())
        .await
        .unwrap();
    assert_eq!(
        validated.spiffe_id().to_string(),
        "spiffe://example.org/source"
    );
    assert!(
        client
            .validate_jwt_token("other", token.token())
            .await
            .is_err()
    );
    let bundles = jwt.bundle_set().unwrap();
    assert!(
        bundles.get(&td).is_some(),
        "JWT bundles parse and hold the own trust domain"
    );
    x509.shutdown().await;
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_watcher_receives_five_rotations_each_before_the_previous_svid_expires() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let entry = setup
        .create_entry_selector_ttl(&agent.agent_id, "/short", &uid(), 4)
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let client = WorkloadApiClient::connect_to(format!("unix:{}", agent.socket_path.display()))
        .await
        .unwrap();
    let mut stream = client.stream_x509_svids().await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let mut current = (
        first.leaf().as_bytes().to_vec(),
        expiry(first.leaf().as_bytes()),
    );
    let mut rotations = 0;
    while rotations < 5 {
        let next = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an update")
            .unwrap()
            .unwrap();
        let now = unix_now();
        let leaf = next.leaf().as_bytes().to_vec();
        if leaf == current.0 {
            continue;
        }
        assert!(
            now < current.1,
            "the new SVID arrived at {now}, after the previous one expired at {}",
            current.1
        );
        let exp = expiry(&leaf);
        assert!(exp > current.1, "a rotation moves the expiry forward");
        current = (leaf, exp);
        rotations += 1;
    }
    agent.shutdown().await.unwrap();
}

fn expiry(der: &[u8]) -> i64 {
    signet_common::x509::cert_info(der).unwrap().not_after
}

#[tokio::test]
async fn entries_created_and_deleted_while_watching_reach_the_workload() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let first = setup
        .create_entry_selector(&agent.agent_id, "/first", &uid())
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&first)
    })
    .await;
    let client = WorkloadApiClient::connect_to(format!("unix:{}", agent.socket_path.display()))
        .await
        .unwrap();
    let mut stream = client.stream_x509_contexts().await.unwrap();
    let ctx = stream.next().await.unwrap().unwrap();
    assert_eq!(ctx.svids().len(), 1);

    let second = setup
        .create_entry_selector(&agent.agent_id, "/second", &uid())
        .await;
    loop {
        let ctx = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("pushed")
            .unwrap()
            .unwrap();
        if ctx
            .svids()
            .iter()
            .any(|s| s.spiffe_id().path() == "/second")
        {
            break;
        }
    }
    setup.delete_entry(&second).await;
    setup.delete_entry(&first).await;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("an update or the end")
        {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without an error"),
        }
    };
    assert!(
        matches!(end, spiffe::WorkloadApiError::NoIdentityIssued),
        "{end:?}"
    );
    let again = client.fetch_x509_svid().await.unwrap_err();
    assert!(
        matches!(again, spiffe::WorkloadApiError::NoIdentityIssued),
        "{again:?}"
    );
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_workloads_complete_rustls_mtls_with_svids_from_the_workload_api() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let a = setup
        .create_entry_selector(&agent.agent_id, "/frontend", &uid())
        .await;
    let b = setup
        .create_entry_selector(&agent.agent_id, "/backend", &uid())
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&a) && s.svids.contains_key(&b)
    })
    .await;
    let client = WorkloadApiClient::connect_to(format!("unix:{}", agent.socket_path.display()))
        .await
        .unwrap();
    let svids = client.fetch_all_x509_svids().await.unwrap();
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let roots: Vec<Vec<u8>> = bundles
        .get(&td)
        .unwrap()
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let by_path = |p: &str| svids.iter().find(|s| s.spiffe_id().path() == p).unwrap();
    let (frontend, backend) = (by_path("/frontend"), by_path("/backend"));
    let (server_saw, client_saw) = signet_tests::mtls::handshake(frontend, backend, &roots)
        .await
        .expect("mutual TLS completes");
    assert_eq!(client_saw, "spiffe://example.org/backend");
    assert_eq!(server_saw, "spiffe://example.org/frontend");
    agent.shutdown().await.unwrap();
}
