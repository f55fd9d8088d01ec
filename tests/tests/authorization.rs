//! The server signs only what an entry authorizes for the calling agent, and refuses banned
//! agents at once.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use signet_proto::spire::api::server::agent::v1::BanAgentRequest;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::entry::v1::{
    BatchCreateEntryRequest, GetAuthorizedEntriesRequest,
};
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::svid::v1::{
    BatchNewX509svidRequest, NewJwtsvidRequest, NewX509svidParams,
};
use signet_proto::types;
use signet_tests::{Identity, Options, TestServer, key_and_csr};
use tonic::Code;

fn id(path: &str) -> Option<types::Spiffeid> {
    Some(types::Spiffeid {
        trust_domain: "example.org".into(),
        path: path.into(),
    })
}

async fn create_entry(server: &TestServer, spiffe: &str, parent: &str, dns: &[&str]) -> String {
    let resp = EntryClient::new(server.admin().await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                spiffe_id: id(spiffe),
                parent_id: id(parent),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: "uid:1000".into(),
                }],
                dns_names: dns.iter().map(|d| (*d).to_owned()).collect(),
                x509_svid_ttl: 120,
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let result = &resp.results[0];
    assert_eq!(
        result.status.as_ref().unwrap().code,
        0,
        "{:?}",
        result.status
    );
    result.entry.as_ref().unwrap().id.clone()
}

async fn agent(server: &TestServer) -> Identity {
    let token = server.join_token(600).await;
    server.attest(&token).await.unwrap()
}

#[tokio::test]
async fn an_agent_gets_svids_only_for_its_entries_with_entry_fields() {
    let server = TestServer::start(Options::default()).await;
    let a = agent(&server).await;
    let b = agent(&server).await;
    let mine = create_entry(&server, "/web", a.id.path(), &["web.example.org"]).await;
    let theirs = create_entry(&server, "/db", b.id.path(), &[]).await;

    let channel = server.tls(Some(&a)).await.unwrap();
    let authorized = EntryClient::new(channel.clone())
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = authorized.entries.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, vec![mine.clone()]);

    // The CSR asks for another identity; the SVID carries the entry's, with its DNS name.
    let (_key, csr) = key_and_csr(Some("spiffe://example.org/evil"));
    let resp = SvidClient::new(channel.clone())
        .batch_new_x509svid(BatchNewX509svidRequest {
            params: vec![
                NewX509svidParams {
                    entry_id: mine.clone(),
                    csr: csr.clone(),
                },
                NewX509svidParams {
                    entry_id: theirs.clone(),
                    csr: csr.clone(),
                },
                NewX509svidParams {
                    entry_id: mine.clone(),
                    csr: b"not a csr".to_vec(),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let ok = &resp.results[0];
    assert_eq!(ok.status.as_ref().unwrap().code, 0);
    let leaf = &ok.svid.as_ref().unwrap().cert_chain[0];
    let info = signet_common::x509::cert_info(leaf).unwrap();
    assert_eq!(info.id.to_string(), "spiffe://example.org/web");
    assert!(
        info.not_after - info.not_before <= 130,
        "TTL comes from the entry"
    );
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(san.value.general_names.iter().any(|n| matches!(
        n,
        x509_parser::extensions::GeneralName::DNSName("web.example.org")
    )));

    assert_eq!(
        resp.results[1].status.as_ref().unwrap().code,
        Code::PermissionDenied as i32,
        "other agent's entry"
    );
    assert!(resp.results[1].svid.is_none());
    assert_eq!(
        resp.results[2].status.as_ref().unwrap().code,
        Code::InvalidArgument as i32,
        "malformed CSR"
    );

    let jwt = SvidClient::new(channel)
        .new_jwtsvid(NewJwtsvidRequest {
            entry_id: theirs,
            audience: vec!["aud".into()],
        })
        .await
        .expect_err("JWT for another agent's entry");
    assert_eq!(jwt.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_banned_agent_is_refused_on_its_next_call() {
    let server = TestServer::start(Options::default()).await;
    let a = agent(&server).await;
    let channel = server.tls(Some(&a)).await.unwrap();
    EntryClient::new(channel.clone())
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .unwrap();

    AgentClient::new(server.admin().await)
        .ban_agent(BanAgentRequest {
            id: id(a.id.path()),
        })
        .await
        .unwrap();

    let err = EntryClient::new(channel)
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .expect_err("banned");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("banned"), "{}", err.message());
}

#[tokio::test]
async fn anonymous_callers_cannot_use_agent_or_admin_rpcs() {
    let server = TestServer::start(Options::default()).await;
    let channel = server.tls(None).await.unwrap();
    let err = EntryClient::new(channel.clone())
        .get_authorized_entries(GetAuthorizedEntriesRequest::default())
        .await
        .expect_err("no agent SVID");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = AgentClient::new(channel)
        .create_join_token(
            signet_proto::spire::api::server::agent::v1::CreateJoinTokenRequest {
                ttl: 60,
                ..Default::default()
            },
        )
        .await
        .expect_err("admin only");
    assert_eq!(err.code(), Code::PermissionDenied);
}
