//! The CLI against the in-test Workload API server: fetch x509 (pretty, json, --write), fetch
//! jwt, validate jwt, watch, healthcheck, and the error lines.

use std::ffi::OsString;
use std::future::Future;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use signet_proto::workload::X509svidRequest;
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use tonic::Code;
use tonic_health::ServingStatus;

use super::certs::{FIXTURE_BODY, WORKLOAD_ID, fixture};
use super::fake_agent::{FakeAgent, JWKS, Running, serve, token_for};
use crate::cli::addr::Endpoint;
use crate::cli::{Env, Io, dispatch, parse};

pub(super) struct Outcome {
    pub(super) code: u8,
    pub(super) out: String,
    pub(super) err: String,
}

pub(super) async fn run_with(args: &[&str], interrupt: impl Future<Output = ()>) -> Outcome {
    let args = std::iter::once("signet-agent").chain(args.iter().copied());
    let cli = parse(args.map(OsString::from)).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
    };
    let code = dispatch(cli, &Env::default(), &mut io, interrupt).await;
    Outcome {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

async fn run(args: &[&str]) -> Outcome {
    run_with(args, std::future::pending()).await
}

async fn serving() -> Running {
    serve(FakeAgent::new(fixture().response()), ServingStatus::Serving).await
}

pub(super) fn sock(r: &Running) -> &str {
    r.socket.to_str().unwrap()
}

#[tokio::test]
async fn the_fake_rejects_calls_without_the_security_header() {
    let agent = serving().await;
    let channel = crate::cli::client::connect(&Endpoint::Unix(agent.socket.clone()))
        .await
        .unwrap();
    let status = SpiffeWorkloadApiClient::new(channel)
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "security header missing from request");
}

#[tokio::test]
async fn fetch_x509_prints_the_svid() {
    let agent = serving().await;
    let o = run(&["api", "fetch", "x509", "--socket-path", sock(&agent)]).await;
    assert_eq!((o.code, o.err.as_str()), (0, ""));
    let (first, body) = o.out.split_once('\n').unwrap();
    assert!(first.starts_with("Received 1 svid after "), "{first}");
    assert_eq!(body, FIXTURE_BODY);
}

#[tokio::test]
async fn fetch_json_is_the_protojson_of_the_response() {
    let f = fixture();
    let agent = serve(FakeAgent::new(f.response()), ServingStatus::Serving).await;
    let o = run(&[
        "api",
        "fetch",
        "-socketPath",
        sock(&agent),
        "-output",
        "json",
    ])
    .await;
    assert_eq!((o.code, o.err.as_str()), (0, ""));
    assert!(o.out.ends_with('\n') && o.out.lines().count() == 1);
    let v: serde_json::Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(v["svids"][0]["spiffe_id"], WORKLOAD_ID);
    assert_eq!(v["svids"][0]["hint"], "internal");
    let chain = STANDARD.encode([f.leaf.clone(), f.intermediate.clone()].concat());
    assert_eq!(v["svids"][0]["x509_svid"], chain.as_str());
    assert_eq!(
        v["svids"][0]["x509_svid_key"],
        STANDARD.encode(&f.key).as_str()
    );
    assert_eq!(v["svids"][0]["bundle"], STANDARD.encode(&f.root).as_str());
    assert_eq!(v["crl"], serde_json::json!([]));
    assert_eq!(
        v["federated_bundles"]["spiffe://other.org"],
        STANDARD.encode(&f.federated_root).as_str()
    );
}

#[tokio::test]
async fn fetch_write_silent_writes_files_and_only_announces_them() {
    let agent = serving().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let o = run(&[
        "api",
        "fetch",
        "--socket-path",
        sock(&agent),
        "--write",
        d,
        "--silent",
    ])
    .await;
    assert_eq!((o.code, o.err.as_str()), (0, ""));
    assert!(
        o.out
            .starts_with(&format!("Writing SVID #0 to file {d}/svid.0.pem.\n")),
        "{}",
        o.out
    );
    assert!(!o.out.contains("Received"));
    for name in [
        "svid.0.pem",
        "svid.0.key",
        "bundle.0.pem",
        "federated_bundle.0.0.pem",
    ] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
}

#[tokio::test]
async fn fetch_jwt_prints_tokens_and_bundles() {
    let agent = serving().await;
    let o = run(&[
        "api",
        "fetch",
        "jwt",
        "--audience",
        "a,b",
        "--audience",
        "c",
        "--socket-path",
        sock(&agent),
    ])
    .await;
    assert_eq!((o.code, o.err.as_str()), (0, ""));
    let token = token_for(&["a".into(), "b".into(), "c".into()], WORKLOAD_ID);
    assert_eq!(
        o.out,
        format!("token({WORKLOAD_ID}):\n\t{token}\nbundle(spiffe://example.org):\n\t{JWKS}\n")
    );
}

#[tokio::test]
async fn fetch_jwt_json_prints_both_messages_as_an_array() {
    let agent = serving().await;
    let o = run(&[
        "api",
        "fetch",
        "jwt",
        "-audience",
        "a",
        "-spiffeID",
        WORKLOAD_ID,
        "-socketPath",
        sock(&agent),
        "-output",
        "json",
    ])
    .await;
    assert_eq!((o.code, o.err.as_str()), (0, ""));
    let v: serde_json::Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(
        v[0]["svids"][0]["svid"],
        token_for(&["a".into()], WORKLOAD_ID).as_str()
    );
    assert_eq!(
        v[1]["bundles"]["spiffe://example.org"],
        STANDARD.encode(JWKS).as_str()
    );
}

#[tokio::test]
async fn validate_jwt_prints_the_id_and_claims() {
    let agent = serving().await;
    let token = token_for(&["aud1".into()], WORKLOAD_ID);
    let o = run(&[
        "api",
        "validate",
        "jwt",
        "--audience",
        "aud1",
        "--svid",
        &token,
        "--socket-path",
        sock(&agent),
    ])
    .await;
    assert_eq!((o.code, o.err.as_str()), (0, ""));
    assert_eq!(
        o.out,
        format!(
            "SVID is valid.\nSPIFFE ID : {WORKLOAD_ID}\n\
             Claims    : {{\"aud\":[\"aud1\"],\"exp\":1900000000,\"sub\":\"{WORKLOAD_ID}\"}}\n"
        )
    );
}

#[tokio::test]
async fn validate_jwt_reports_an_invalid_token() {
    let agent = serving().await;
    let o = run(&[
        "api",
        "validate",
        "jwt",
        "--audience",
        "aud1",
        "--svid",
        "forged",
        "--socket-path",
        sock(&agent),
    ])
    .await;
    assert_eq!(o.code, 1);
    assert!(o.out.is_empty());
    assert_eq!(o.err, "SVID is not valid: token has an invalid signature\n");
}

#[tokio::test]
async fn no_identity_is_reported_like_spire() {
    let mut x509 = fixture().response();
    x509.svids.clear();
    let agent = serve(FakeAgent::new(x509), ServingStatus::Serving).await;
    let want = "rpc error: code = PermissionDenied desc = no identity issued\n";
    let o = run(&["api", "fetch", "x509", "--socket-path", sock(&agent)]).await;
    assert_eq!((o.code, o.out.as_str(), o.err.as_str()), (1, "", want));
    let o = run(&[
        "api",
        "fetch",
        "jwt",
        "--audience",
        "a",
        "--socket-path",
        sock(&agent),
    ])
    .await;
    assert_eq!((o.code, o.out.as_str(), o.err.as_str()), (1, "", want));
    let o = run(&[
        "api",
        "validate",
        "jwt",
        "--audience",
        "a",
        "--svid",
        "t",
        "--socket-path",
        sock(&agent),
    ])
    .await;
    assert_eq!(o.code, 1);
    assert_eq!(o.err, format!("unable to validate JWT SVID: {want}"));
}

#[tokio::test]
async fn a_call_that_never_answers_times_out() {
    // A listener nobody accepts on: connect succeeds (backlog), the HTTP/2 handshake hangs.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.sock");
    let _listener = tokio::net::UnixListener::bind(&path).unwrap();
    let o = run(&[
        "api",
        "fetch",
        "--timeout",
        "200ms",
        "--socket-path",
        path.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "rpc error: code = DeadlineExceeded desc = context deadline exceeded\n"
    );
}

#[tokio::test]
async fn watch_prints_updates_until_interrupted() {
    let agent = serving().await;
    let interrupt = tokio::time::sleep(Duration::from_millis(500));
    let o = run_with(&["api", "watch", "--socket-path", sock(&agent)], interrupt).await;
    assert_eq!((o.code, o.err.as_str()), (0, ""));
    assert_eq!(o.out.matches("Received 1 svid after ").count(), 1);
    // go-spiffe keys federated bundles by trust domain name.
    assert!(
        o.out
            .contains("\n[other.org] CA #1 Valid After:\t2023-10-11 00:00:00 +0000 UTC\n")
    );
}

#[tokio::test]
async fn watch_reports_errors_and_keeps_trying() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.sock");
    let interrupt = tokio::time::sleep(Duration::from_millis(300));
    let o = run_with(
        &["api", "watch", "--socket-path", path.to_str().unwrap()],
        interrupt,
    )
    .await;
    assert_eq!(o.code, 0);
    assert!(o.out.is_empty());
    assert!(
        o.err.ends_with("connect: no such file or directory\"\n"),
        "{}",
        o.err
    );
}

#[tokio::test]
async fn healthcheck_reports_healthy_and_unhealthy() {
    let agent = serving().await;
    let o = run(&["healthcheck", "--socket-path", sock(&agent)]).await;
    assert_eq!(
        (o.code, o.out.as_str(), o.err.as_str()),
        (0, "Agent is healthy.\n", "")
    );

    let sick = serve(
        FakeAgent::new(fixture().response()),
        ServingStatus::NotServing,
    )
    .await;
    let o = run(&["healthcheck", "--socket-path", sock(&sick)]).await;
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Agent is unhealthy: agent returned status \"NOT_SERVING\"\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone.sock");
    let o = run(&[
        "healthcheck",
        "--verbose",
        "--socket-path",
        gone.to_str().unwrap(),
    ])
    .await;
    assert_eq!(o.code, 1);
    assert_eq!(o.out, "Checking agent health...\n");
    let lines: Vec<&str> = o.err.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("Failed to check health: rpc error: code = Unavailable"));
    assert_eq!(lines[1], "Agent is unhealthy: unable to determine health");
}
