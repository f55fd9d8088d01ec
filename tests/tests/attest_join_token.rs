//! Join-token node attestation over the real TLS endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use signet_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_tests::{Options, TestServer};
use tonic::Code;

#[tokio::test]
async fn a_join_token_attests_once_and_only_once() {
    let server = TestServer::start(Options::default()).await;
    let token = server.join_token(600).await;
    let agent = server
        .attest(&token)
        .await
        .expect("first attestation succeeds");
    assert_eq!(
        agent.id.to_string(),
        format!("spiffe://example.org/spire/agent/join_token/{token}")
    );
    let leaf =
        signet_common::x509::cert_info(&agent.chain[0]).expect("agent SVID carries its SPIFFE ID");
    assert_eq!(leaf.id, agent.id);

    let again = server
        .attest(&token)
        .await
        .expect_err("a used token is refused");
    assert_eq!(again.code(), Code::InvalidArgument);
    assert!(
        again
            .message()
            .contains("join token does not exist or has already been used"),
        "{}",
        again.message()
    );
}

#[tokio::test]
async fn an_unknown_token_is_refused() {
    let server = TestServer::start(Options::default()).await;
    let err = server
        .attest("no-such-token")
        .await
        .expect_err("unknown token");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let server = TestServer::start(Options::default()).await;
    let token = server.join_token(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let err = server.attest(&token).await.expect_err("expired token");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("join token expired"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn join_token_ttl_is_required() {
    let server = TestServer::start(Options::default()).await;
    let err = AgentClient::new(server.admin().await)
        .create_join_token(CreateJoinTokenRequest {
            ttl: 0,
            ..Default::default()
        })
        .await
        .expect_err("ttl 0");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn the_agent_api_presents_the_server_svid() {
    let server = TestServer::start(Options::default()).await;
    // tls() verifies the server presents spiffe://example.org/spire/server under the bundle.
    let channel = server.tls(None).await;
    assert!(channel.is_ok(), "{channel:?}");
}
