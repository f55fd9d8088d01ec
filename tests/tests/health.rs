//! Health: HTTP `/live` and `/ready` per `health_checks {}`, and gRPC health on the admin
//! socket (what `signet-server healthcheck` and SPIRE's CLI use).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use signet_tests::{Options, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn live_and_ready_answer_200_on_a_working_server() {
    let block = r#"health_checks {
    listener_enabled = true
    bind_address = "127.0.0.1"
    bind_port = "0"
    live_path = "/live"
    ready_path = "/ready"
}"#;
    let server = TestServer::start(Options {
        blocks: vec![block.into()],
        ..Options::default()
    })
    .await;
    let addr = server
        .server()
        .health_addr
        .expect("health listener enabled");
    let live = http_get(addr, "/live").await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let ready = http_get(addr, "/ready").await;
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.contains("\"ready\":true"),
        "{ready}"
    );
    let missing = http_get(addr, "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[tokio::test]
async fn grpc_health_serves_on_the_admin_socket() {
    let server = TestServer::start(Options::default()).await;
    let resp = HealthClient::new(server.admin().await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        resp.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
