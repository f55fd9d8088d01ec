//! Every error a client can cause answers with the right gRPC code and a message naming the
//! problem, and echoes at most 256 bytes of any input value (issue 9, "Error hygiene"),
//! through real clients over the real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use prost::Message;
use signet_common::uds::raw_client::RawClient;
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::SyncAuthorizedEntriesResponse;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::spire::api::server::svid::v1::{BatchNewX509svidRequest, NewX509svidParams};
use signet_proto::types;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::{JwtsvidRequest, ValidateJwtsvidRequest};
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

/// True when `message` echoes `value` (one repeated ASCII character) only as a prefix of at
/// most 256 bytes, marked as cut with `...`.
fn echoes_cut(message: &str, value: &str) -> bool {
    let max = signet_common::echo::MAX_ECHOED_VALUE;
    message.contains(&format!("{}...", &value[..max - 2])) && !message.contains(&value[..max + 1])
}

#[tokio::test]
async fn a_workload_error_echoes_at_most_256_bytes_of_a_1_mb_kid() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let b64 = |v: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let kid = "k".repeat(1 << 20);
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
    let claims = serde_json::json!({
        "sub": "spiffe://example.org/x", "aud": ["db"], "exp": 4_000_000_000u64,
    });
    let token = format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(&[1; 64])
    );
    let channel = signet_tests::uds_channel(&agent.socket_path).await;
    let mut client =
        SpiffeWorkloadApiClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("workload.spiffe.io", "true".parse().unwrap());
            Ok(r)
        });
    let status = client
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "db".into(),
            svid: token,
        })
        .await
        .expect_err("an unknown kid is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().len() < 1024, "{}", status.message().len());
    assert!(echoes_cut(status.message(), &kid), "{}", status.message());
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_error_echoes_at_most_256_bytes_of_a_long_entry_id() {
    let server = TestServer::start(Options::default()).await;
    let long_id = "e".repeat(300_000) + "!";
    let resp = EntryClient::new(server.admin().await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                id: long_id.clone(),
                spiffe_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/w".into(),
                }),
                parent_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/spire/server".into(),
                }),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: "uid:1".into(),
                }],
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let status = resp.results[0].status.clone().unwrap();
    assert_eq!(
        status.code,
        Code::InvalidArgument as i32,
        "{}",
        status.message.len()
    );
    assert!(status.message.len() < 1024, "{}", status.message.len());
    assert!(echoes_cut(&status.message, &long_id), "{}", status.message);
}
