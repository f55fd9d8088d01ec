//! The whole path: server → agent (attestation, sync, minting) → Workload API socket → the
//! real `spiffe` crate client, as a workload running as this test's uid.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::types;
use signet_tests::agent::{Setup, proto_id, until};
use spiffe::WorkloadApiClient;
use tokio_stream::StreamExt;

#[tokio::test]
async fn a_workload_gets_its_svids_from_the_agent_and_sees_them_rotate() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let resp = EntryClient::new(setup.server.admin().await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                spiffe_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/me".into(),
                }),
                parent_id: Some(proto_id(&agent.agent_id)),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: format!("uid:{uid}"),
                }],
                x509_svid_ttl: 4,
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let entry_id = resp.results[0].entry.as_ref().unwrap().id.clone();
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(5), |s| {
        s.svids.contains_key(&entry_id)
    })
    .await;

    let client = WorkloadApiClient::connect_to(format!("unix:{}", agent.socket_path.display()))
        .await
        .unwrap();
    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/me");

    let jwt = client.fetch_jwt_svid(["db"], None).await.unwrap();
    assert_eq!(jwt.spiffe_id().to_string(), "spiffe://example.org/me");
    let claims = client.validate_jwt_token("db", jwt.token()).await.unwrap();
    assert_eq!(claims.spiffe_id().to_string(), "spiffe://example.org/me");

    // The stream delivers each rotation of the 4 s SVID.
    let mut updates = client.stream_x509_svids().await.unwrap();
    let first = updates.next().await.unwrap().unwrap();
    let next = tokio::time::timeout(Duration::from_secs(6), updates.next())
        .await
        .expect("a rotation within 6 s")
        .unwrap()
        .unwrap();
    assert_eq!(next.spiffe_id(), first.spiffe_id());
    assert_ne!(
        next.leaf().as_bytes(),
        first.leaf().as_bytes(),
        "a new certificate"
    );
    agent.shutdown().await.unwrap();
}
