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

/// A message over the 4 MB receive limit answers `ResourceExhausted`, as grpc-go and SPIRE
/// answer it (tonic's own code is `OutOfRange`), on every listener: the agent's public socket
/// (Workload API and SDS), the server's admin socket and its TCP agent API.
#[tokio::test]
async fn an_oversized_message_is_resource_exhausted_on_every_listener() {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
    use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
    use signet_proto::spire::api::server::agent::v1::{AttestAgentRequest, attest_agent_request};

    let five_mb = "x".repeat(5 << 20);
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let expect = |what: &str, status: tonic::Status| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
        assert!(
            status.message().contains("message length too large"),
            "{what}: {status:?}"
        );
    };

    let channel = signet_tests::uds_channel(&agent.socket_path).await;
    let mut workload =
        SpiffeWorkloadApiClient::with_interceptor(channel.clone(), |mut r: tonic::Request<()>| {
            r.metadata_mut()
                .insert("workload.spiffe.io", "true".parse().unwrap());
            Ok(r)
        });
    let status = workload
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "db".into(),
            svid: five_mb.clone(),
        })
        .await
        .expect_err("5 MB is over the limit");
    expect("ValidateJWTSVID", status);

    let mut sds = SecretDiscoveryServiceClient::new(channel);
    let status = sds
        .fetch_secrets(DiscoveryRequest {
            resource_names: vec![five_mb.clone()],
            ..Default::default()
        })
        .await
        .expect_err("5 MB is over the limit");
    expect("FetchSecrets", status);
    // A stream whose request is over the limit ends with that status, not OK.
    let oversized = DiscoveryRequest {
        resource_names: vec![five_mb.clone()],
        ..Default::default()
    };
    let outbound = futures::stream::iter([oversized]).chain(futures::stream::pending());
    let status = match sds.stream_secrets(outbound).await {
        Ok(resp) => resp
            .into_inner()
            .message()
            .await
            .expect_err("5 MB is over the limit"),
        Err(status) => status,
    };
    expect("StreamSecrets", status);

    let status = EntryClient::new(setup.server.admin().await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                id: five_mb.clone(),
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .expect_err("5 MB is over the limit");
    expect("admin BatchCreateEntry", status);

    let request = AttestAgentRequest {
        step: Some(attest_agent_request::Step::Params(
            attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: five_mb.into_bytes(),
                }),
                params: None,
            },
        )),
    };
    let mut stream = AgentClient::new(setup.server.tls(None).await.unwrap())
        .attest_agent(futures::stream::iter([request]))
        .await
        .map(tonic::Response::into_inner);
    let status = match &mut stream {
        Ok(s) => s.message().await.expect_err("5 MB is over the limit"),
        Err(status) => status.clone(),
    };
    expect("TCP AttestAgent", status);
    agent.shutdown().await.unwrap();
}
