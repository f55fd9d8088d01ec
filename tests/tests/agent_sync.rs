//! The agent's sync manager against a real in-process server: SVIDs follow entries, changes
//! are pushed (not polled), SVIDs rotate before they expire, and the paged sync protocol.

use std::time::{Duration, Instant};

use signet_common::clock::{Clock, SystemClock};
use signet_tests::agent::{Setup, proto_id, svid_id, until};

#[tokio::test]
async fn svids_follow_entries_created_updated_and_deleted() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let ids = setup
        .create_entries(&agent.agent_id, &["/web", "/db"])
        .await;
    let (web, db) = (ids[0].clone(), ids[1].clone());
    let mut rx = agent.snapshot();
    let snap = until(&mut rx, Duration::from_secs(5), |s| {
        s.synced && s.svids.len() == 2
    })
    .await;
    assert_eq!(
        svid_id(&snap, &web).as_deref(),
        Some("spiffe://example.org/web")
    );
    assert_eq!(
        svid_id(&snap, &db).as_deref(),
        Some("spiffe://example.org/db")
    );
    let old = snap.svids[&web].chain.clone();

    setup.set_dns_names(&web, &["web.example.org"]).await;
    setup.delete_entry(&db).await;
    let snap = until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.len() == 1
            && s.svids
                .get(&web)
                .is_some_and(|v| v.entry.revision_number == 1)
    })
    .await;
    let svid = &snap.svids[&web];
    assert_ne!(svid.chain, old, "a new SVID for the new revision");
    let (_, cert) = x509_parser::parse_x509_certificate(&svid.chain[0]).expect("leaf parses");
    let dns: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(dns, ["web.example.org"]);
    assert!(
        !snap.entries.iter().any(|e| e.id == db),
        "deleted entry gone"
    );
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn new_entries_are_pushed_not_polled() {
    let setup = Setup::new(&[]).await;
    // With the safety-net poll pushed out to an hour, only the server's push can deliver
    // these entries; the timing itself is measured by `cargo bench --bench propagation`.
    let agent = setup
        .agent("experimental {\n sync_interval = \"1h\"\n }")
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(5), |s| s.synced).await;
    for i in 0..3 {
        let entry = setup
            .create_entry(&agent.agent_id, &format!("/pushed/{i}"))
            .await;
        until(&mut rx, Duration::from_secs(30), |s| {
            s.svids.contains_key(&entry)
        })
        .await;
    }
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn svids_and_the_agent_svid_rotate_before_they_expire() {
    // Workload SVIDs of 4 s (the entry's TTL) and an agent SVID of 6 s; the server's own
    // SVID keeps the default TTL (its rotator looks every 10 s).
    let setup = Setup::new(&["agent_ttl = \"6s\""]).await;
    let agent = setup.agent("").await;
    let entry = setup
        .create_entry_with_ttl(&agent.agent_id, "/short", 4)
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let first_agent_svid = agent.identity.current();

    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let now = SystemClock.unix_now();
        let snap = rx.borrow().clone();
        let svid = snap
            .svids
            .get(&entry)
            .unwrap_or_else(|| panic!("no SVID at {now}: a gap in rotation"));
        assert!(svid.not_after > now, "an expired SVID is served");
        seen.insert(svid.not_after);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "rotated several times: {seen:?}");
    let agent_svid = agent.identity.current();
    assert_ne!(
        agent_svid.not_after, first_agent_svid.not_after,
        "agent SVID renewed"
    );
    assert_eq!(agent_svid.id, first_agent_svid.id);
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn more_than_a_page_of_entries_syncs_with_the_paged_protocol() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("x509_svid_cache_max_size = 10").await;
    let paths: Vec<String> = (0..600).map(|i| format!("/many/{i:03}")).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let ids = setup.create_entries(&agent.agent_id, &refs).await;
    let mut rx = agent.snapshot();
    let snap = until(&mut rx, Duration::from_secs(20), |s| {
        s.entries.len() == 600 && s.svids.len() == 10
    })
    .await;
    assert_eq!(snap.svids.len(), 10, "the SVID cache is bounded");

    // A change to one entry among 600 comes through the revision diff.
    setup.set_dns_names(&ids[599], &["last.example.org"]).await;
    let snap = until(&mut rx, Duration::from_secs(10), |s| {
        s.entries
            .iter()
            .any(|e| e.id == ids[599] && e.revision_number == 1)
    })
    .await;
    assert_eq!(snap.entries.len(), 600);

    // A workload wanting an entry beyond the bound gets it minted on demand.
    let wanted = snap
        .entries
        .iter()
        .find(|e| e.id == ids[599])
        .unwrap()
        .clone();
    signet_agent::manager::Identities::want(agent.manager.as_ref(), &[wanted]);
    until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&ids[599])
    })
    .await;
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn federated_bundles_and_jwt_svids_come_from_the_server() {
    use base64::Engine;
    use signet_agent::manager::Identities;
    use signet_proto::spire::api::server::bundle::v1::BatchCreateFederatedBundleRequest;
    use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
    use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
    use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
    use signet_proto::types;

    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://other.org".try_into().unwrap(),
    )];
    let other_root = params.self_signed(&key).unwrap().der().to_vec();
    let resp = BundleClient::new(setup.server.admin().await)
        .batch_create_federated_bundle(BatchCreateFederatedBundleRequest {
            bundle: vec![types::Bundle {
                trust_domain: "other.org".into(),
                x509_authorities: vec![types::X509Certificate {
                    asn1: other_root.clone(),
                    tainted: false,
                }],
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.results[0].status.as_ref().map(|s| s.code),
        Some(0),
        "{resp:?}"
    );
    let resp = EntryClient::new(setup.server.admin().await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                spiffe_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/fed".into(),
                }),
                parent_id: Some(proto_id(&agent.agent_id)),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: "uid:1".into(),
                }],
                federates_with: vec!["other.org".into()],
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let entry_id = resp.results[0].entry.as_ref().unwrap().id.clone();

    let mut rx = agent.snapshot();
    let snap = until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&entry_id) && !s.federated.is_empty()
    })
    .await;
    let (td, bundle) = snap.federated.iter().next().unwrap();
    assert_eq!(td.as_str(), "other.org");
    assert_eq!(bundle.x509_authorities[0].der, other_root);
    assert!(
        !snap.bundle.jwt_authorities.is_empty(),
        "own JWT keys are synced"
    );

    let entry = snap
        .entries
        .iter()
        .find(|e| e.id == entry_id)
        .unwrap()
        .clone();
    let aud = vec!["svc-a".to_owned(), "svc-b".to_owned()];
    let jwt = agent.manager.jwt_svid(&entry, &aud).await.unwrap();
    let payload = jwt.token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "spiffe://example.org/fed");
    let reversed: Vec<String> = aud.iter().rev().cloned().collect();
    let again = agent.manager.jwt_svid(&entry, &reversed).await.unwrap();
    assert_eq!(again, jwt, "cached per audience set");
    agent.shutdown().await.unwrap();
}
