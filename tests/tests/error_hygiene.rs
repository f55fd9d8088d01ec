//! Every error a client can cause answers with the right gRPC code and a message naming the
//! problem (issue 9, "Error hygiene"), through real clients over the real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use prost::Message;
use signet_common::uds::raw_client::RawClient;
use signet_proto::spire::api::server::entry::v1::SyncAuthorizedEntriesResponse;
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::svid::v1::{BatchNewX509svidRequest, NewX509svidParams};
use signet_proto::workload::JwtsvidRequest;
use signet_tests::agent::{Setup, until};
use signet_tests::{Options, TestServer};
use tokio::net::UnixStream;
use tokio_stream::StreamExt;
use tonic::Code;

/// A PKCS#10 request for an RSA-1024 key (`openssl req -newkey rsa:1024`), URI SAN
/// `spiffe://example.org/weak`.
const RSA_1024_CSR: &[u8] = include_bytes!("../fixtures/rsa1024.csr.der");

#[tokio::test]
async fn an_rsa_1024_csr_is_refused_as_a_too_weak_key() {
    let setup = Setup::new(&[]).await;
    let token = setup.server.join_token(600).await;
    let agent = setup.server.attest(&token).await.unwrap();
    let entry = setup.create_entry(&agent.id, "/weak").await;
    let channel = setup.server.tls(Some(&agent)).await.unwrap();
    let resp = SvidClient::new(channel)
        .batch_new_x509svid(BatchNewX509svidRequest {
            params: vec![NewX509svidParams {
                entry_id: entry,
                csr: RSA_1024_CSR.to_vec(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let status = resp.results[0].status.clone().unwrap();
    assert_eq!(status.code, Code::InvalidArgument as i32, "{status:?}");
    assert!(
        status.message.contains("RSA key of 1024 bits is too weak"),
        "{status:?}"
    );
    assert!(resp.results[0].svid.is_none());
}

/// Field 1 of `SyncAuthorizedEntriesRequest` is `repeated string ids`; a varint there cannot
/// be decoded.
#[derive(Clone, PartialEq, Message)]
struct Undecodable {
    #[prost(uint64, tag = "1")]
    ids: u64,
}

#[tokio::test]
async fn a_sync_stream_whose_first_message_is_undecodable_fails() {
    let server = TestServer::start(Options::default()).await;
    let token = server.join_token(600).await;
    let agent = server.attest(&token).await.unwrap();
    let channel = server.tls(Some(&agent)).await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Undecodable, SyncAuthorizedEntriesResponse>::default();
    let path = http::uri::PathAndQuery::from_static(
        "/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries",
    );
    let first = Undecodable { ids: 7 };
    // The request side stays open, as an agent's does.
    let outbound = futures::stream::iter([first]).chain(futures::stream::pending());
    let result = async {
        let mut stream = grpc
            .streaming(tonic::Request::new(outbound), path, codec)
            .await?
            .into_inner();
        let mut messages = 0;
        while let Some(m) = stream.message().await? {
            messages += m.entries.len() + 1;
        }
        Ok::<usize, tonic::Status>(messages)
    };
    let result = tokio::time::timeout(Duration::from_secs(10), result)
        .await
        .expect("the stream ends");
    let status = result.expect_err("an undecodable first message fails the stream");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");
}

#[tokio::test]
async fn fetch_jwt_svid_with_an_empty_audience_value_is_invalid_argument() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let entry = setup
        .create_entry_selector(&agent.agent_id, "/jwt", &format!("uid:{uid}"))
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let socket = agent.socket_path.to_str().unwrap().to_owned();
    let mut client = RawClient::handshake(UnixStream::connect(&socket).await.unwrap())
        .await
        .unwrap();
    for audience in [vec![String::new()], vec!["db".into(), String::new()]] {
        let request = JwtsvidRequest {
            audience: audience.clone(),
            spiffe_id: String::new(),
        };
        let resp = client
            .call(
                "/SpiffeWorkloadAPI/FetchJWTSVID",
                None,
                &[("workload.spiffe.io", "true")],
                &request.encode_to_vec(),
                true,
            )
            .await
            .unwrap();
        assert_eq!(
            resp.grpc_status(),
            Some(Code::InvalidArgument as i32),
            "{audience:?}: {:?}",
            resp.grpc_message()
        );
        assert_eq!(
            resp.grpc_message().as_deref(),
            Some("audience values must not be empty"),
            "{audience:?}"
        );
    }
    agent.shutdown().await.unwrap();
}
