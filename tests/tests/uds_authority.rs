//! Both Unix sockets accept every `:authority` a gRPC client sends (none, a raw path, a
//! percent-encoded path, an abstract-socket name, ...) and answer exactly as for
//! `localhost`: the agent's Workload API / SDS socket and the server's admin socket, driven
//! by a raw HTTP/2 client over the real sockets. The server's TCP (TLS) listener still
//! refuses a malformed authority, as `h2` does.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use signet_common::uds::raw_client::{RawClient, RawResponse, authority_forms};
use signet_proto::spire::api::server::entry::v1::{CountEntriesRequest, CountEntriesResponse};
use signet_proto::workload::{ValidateJwtsvidRequest, X509svidRequest, X509svidResponse};
use signet_tests::agent::{Setup, until};
use tokio::net::{TcpStream, UnixStream};

const FETCH_X509: &str = "/SpiffeWorkloadAPI/FetchX509SVID";
const VALIDATE_JWT: &str = "/SpiffeWorkloadAPI/ValidateJWTSVID";
const SDS_FETCH: &str = "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets";
const HEADER: (&str, &str) = ("workload.spiffe.io", "true");

/// A serialized Envoy `DiscoveryRequest { resource_names: [name] }` (field 3).
fn sds_request(name: &str) -> Vec<u8> {
    let mut m = vec![0x1a, name.len() as u8];
    m.extend_from_slice(name.as_bytes());
    m
}

fn status(r: &RawResponse) -> (Option<i32>, Option<String>) {
    (r.grpc_status(), r.grpc_message())
}

#[tokio::test]
async fn the_workload_socket_answers_every_authority_form_alike() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let uid = std::fs::metadata("/proc/self").unwrap().uid();
    let entry = setup
        .create_entry_selector(&agent.agent_id, "/raw", &format!("uid:{uid}"))
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&entry)
    })
    .await;

    let socket = agent.socket_path.to_str().unwrap().to_owned();
    for authority in authority_forms(&socket) {
        let a = authority.as_deref();
        // A fresh connection per form, so that each one starts from an empty HPACK table.
        let mut client = RawClient::handshake(UnixStream::connect(&socket).await.unwrap())
            .await
            .unwrap();
        let svid = client
            .call(
                FETCH_X509,
                a,
                &[HEADER],
                &X509svidRequest {}.encode_to_vec(),
                true,
            )
            .await
            .unwrap();
        assert_eq!(svid.reset, None, "{a:?}");
        assert_eq!(svid.http_status().as_deref(), Some("200"), "{a:?}");
        let message = X509svidResponse::decode(svid.messages[0].as_slice()).unwrap();
        assert_eq!(message.svids[0].spiffe_id, "spiffe://example.org/raw");

        let no_header = client
            .call(
                FETCH_X509,
                a,
                &[],
                &X509svidRequest {}.encode_to_vec(),
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            status(&no_header),
            (Some(3), Some("security header missing from request".into())),
            "{a:?}"
        );

        let request = ValidateJwtsvidRequest {
            audience: "aud".into(),
            svid: String::new(),
        };
        let invalid = client
            .call(VALIDATE_JWT, a, &[HEADER], &request.encode_to_vec(), false)
            .await
            .unwrap();
        assert_eq!(
            status(&invalid),
            (Some(3), Some("svid must be specified".into())),
            "{a:?}"
        );

        let sds = client
            .call(SDS_FETCH, a, &[], &sds_request("default"), false)
            .await
            .unwrap();
        assert_eq!(sds.grpc_status(), Some(0), "{a:?}: {sds:?}");
        assert_eq!(sds.messages.len(), 1, "{a:?}");
    }
}

#[tokio::test]
async fn the_admin_socket_answers_every_authority_form_and_tcp_stays_strict() {
    let setup = Setup::new(&[]).await;
    let socket = setup.server.socket().to_str().unwrap().to_owned();
    let mut client = RawClient::handshake(UnixStream::connect(&socket).await.unwrap())
        .await
        .unwrap();
    for authority in authority_forms(&socket) {
        let count = client
            .call(
                "/spire.api.server.entry.v1.Entry/CountEntries",
                authority.as_deref(),
                &[],
                &CountEntriesRequest::default().encode_to_vec(),
                false,
            )
            .await
            .unwrap();
        assert_eq!(count.grpc_status(), Some(0), "{authority:?}: {count:?}");
        let message = CountEntriesResponse::decode(count.messages[0].as_slice()).unwrap();
        assert_eq!(message.count, 0);
    }

    // The agent API's TCP listener (TLS, ALPN h2): `localhost` works, a path is refused.
    let roots = setup.server.roots().await;
    let config = signet_tests::tls_client_config(&roots, None);
    let tcp = TcpStream::connect(setup.server.server().tcp_addr)
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("signet-server").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let mut client = RawClient::handshake(tls).await.unwrap();
    let bundle = "/spire.api.server.bundle.v1.Bundle/GetBundle";
    let ok = client
        .call(bundle, Some(b"localhost"), &[], &[], false)
        .await
        .unwrap();
    assert_eq!(ok.grpc_status(), Some(0), "{ok:?}");
    assert_eq!(ok.messages.len(), 1);
    for bad in [&b"/run/agent/api.sock"[..], b"run%2Fagent%2Fapi.sock"] {
        let refused = client
            .call(bundle, Some(bad), &[], &[], false)
            .await
            .unwrap();
        assert_eq!(refused.reset, Some(1), "PROTOCOL_ERROR for {bad:?}");
        assert!(refused.messages.is_empty());
    }
}
