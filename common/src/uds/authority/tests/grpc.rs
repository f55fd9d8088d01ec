//! The layer in front of a real tonic server, driven by a raw HTTP/2 client that sends
//! each `:authority` form gRPC clients use on Unix sockets; the same requests over TCP,
//! where `h2` keeps its strictness.

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

use crate::uds::raw_client::{RawClient, authority_forms};
use crate::uds::{Access, bind, incoming, tonic_connect_info};

const CHECK: &str = "/grpc.health.v1.Health/Check";

/// A serialized `HealthCheckRequest { service }`.
fn check_request(service: &str) -> Vec<u8> {
    let mut m = vec![0x0a, service.len() as u8];
    m.extend_from_slice(service.as_bytes());
    m
}

fn health_router() -> tonic::transport::server::Router {
    let (_reporter, health) = tonic_health::server::health_reporter();
    Server::builder().add_service(health)
}

#[tokio::test]
async fn every_authority_form_gets_a_normal_answer_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let listener = bind(
        &path,
        Access {
            socket_mode: 0o700,
            new_parent_mode: None,
        },
    )
    .unwrap();
    tokio::spawn(health_router().serve_with_incoming(incoming(listener, tonic_connect_info)));
    let stream = UnixStream::connect(&path).await.unwrap();
    let mut client = RawClient::handshake(stream).await.unwrap();
    for authority in authority_forms(path.to_str().unwrap()) {
        let ok = client
            .call(CHECK, authority.as_deref(), &[], &check_request(""), false)
            .await
            .unwrap();
        assert_eq!(ok.reset, None, "{authority:?}");
        assert_eq!(ok.grpc_status(), Some(0), "{authority:?}: {ok:?}");
        assert_eq!(ok.messages, [vec![0x08, 0x01]], "SERVING");
        let unknown = client
            .call(
                CHECK,
                authority.as_deref(),
                &[],
                &check_request("nope"),
                false,
            )
            .await
            .unwrap();
        assert_eq!(unknown.grpc_status(), Some(5), "{authority:?}: NotFound");
        assert_eq!(
            unknown.grpc_message().as_deref(),
            Some("service not registered")
        );
    }
}

#[tokio::test]
async fn tcp_keeps_h2_strictness() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(health_router().serve_with_incoming(TcpListenerStream::new(listener)));
    let stream = TcpStream::connect(addr).await.unwrap();
    let mut client = RawClient::handshake(stream).await.unwrap();
    let ok = client
        .call(CHECK, Some(b"localhost"), &[], &check_request(""), false)
        .await
        .unwrap();
    assert_eq!(ok.grpc_status(), Some(0));
    for bad in [
        &b"/run/agent/api.sock"[..],
        b"run%2Fagent%2Fapi.sock",
        b"\0abstract",
    ] {
        let refused = client
            .call(CHECK, Some(bad), &[], &check_request(""), false)
            .await
            .unwrap();
        assert_eq!(refused.reset, Some(1), "PROTOCOL_ERROR for {bad:?}");
        assert_eq!(refused.grpc_status(), None);
    }
}
