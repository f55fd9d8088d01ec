//! `agent` and `token` commands over a real gRPC channel, against the Agent API fake.

use signet_proto::types;

use super::fake_agent::FakeAgentServer;
use super::{Captured, parse};

const AGENT_1: &str = "spiffe://domain.test/spire/agent/join_token/t1";

fn agent(token: &str, serial: &str) -> types::Agent {
    types::Agent {
        id: Some(types::Spiffeid {
            trust_domain: "domain.test".into(),
            path: format!("/spire/agent/join_token/{token}"),
        }),
        attestation_type: "join_token".into(),
        x509svid_serial_number: serial.into(),
        x509svid_expires_at: 1_714_564_800,
        selectors: vec![types::Selector {
            r#type: "join_token".into(),
            value: token.into(),
        }],
        ..Default::default()
    }
}

async fn run(server: &FakeAgentServer, args: &[&str]) -> (anyhow::Result<()>, Captured) {
    let mut all = args.to_vec();
    all.extend(["--socket-path", server.socket.as_str()]);
    let mut io = Captured::default();
    let result = io.run(parse(&all)).await;
    (result, io)
}

#[tokio::test]
async fn list_show_ban_evict() {
    let server = FakeAgentServer::start(vec![agent("t1", "11"), agent("t2", "22")]).await;
    let (result, io) = run(&server, &["agent", "list", "--banned", "false"]).await;
    result.unwrap();
    let out = io.stdout();
    assert!(
        out.starts_with("Found 2 attested agents:\n\nSPIFFE ID         : "),
        "{out}"
    );
    assert!(out.contains("Serial number     : 22\n"));
    let filter = server
        .state
        .lock()
        .unwrap()
        .last_list_filter
        .clone()
        .unwrap();
    assert_eq!(filter.by_banned, Some(false));

    let (result, io) = run(&server, &["agent", "ban", "--spiffe-id", AGENT_1]).await;
    result.unwrap();
    assert_eq!(io.stdout(), "Agent banned successfully\n");

    let (result, io) = run(&server, &["agent", "show", "--spiffe-id", AGENT_1]).await;
    result.unwrap();
    assert_eq!(
        io.stdout(),
        format!(
            "Found an attested agent given its SPIFFE ID\n\n\
             SPIFFE ID         : {AGENT_1}\n\
             Attestation type  : join_token\n\
             Expiration time   : 2024-05-01 12:00:00 +0000 UTC\n\
             Banned            : true\n\
             Can re-attest     : false\n\n\
             Selectors         : join_token:t1\n"
        )
    );

    let (result, io) = run(&server, &["agent", "evict", "--spiffe-id", AGENT_1]).await;
    result.unwrap();
    assert_eq!(io.stdout(), "Agent evicted successfully\n");
    let (result, io) = run(&server, &["agent", "count"]).await;
    result.unwrap();
    assert_eq!(io.stdout(), "1 attested agent\n");

    let (result, _) = run(&server, &["agent", "show", "--spiffe-id", AGENT_1]).await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "rpc error: code = NotFound desc = agent not found"
    );
}

#[tokio::test]
async fn json_output_is_the_response_message() {
    let server = FakeAgentServer::start(vec![agent("t1", "11")]).await;
    let (result, io) = run(&server, &["agent", "list", "--output", "json"]).await;
    result.unwrap();
    assert_eq!(
        io.stdout(),
        concat!(
            r#"{"agents":[{"attestation_type":"join_token","banned":false,"can_reattest":false,"#,
            r#""id":{"path":"/spire/agent/join_token/t1","trust_domain":"domain.test"},"#,
            r#""selectors":[{"type":"join_token","value":"t1"}],"#,
            r#""x509svid_expires_at":"1714564800","x509svid_serial_number":"11"}],"#,
            r#""next_page_token":""}"#,
            "\n"
        )
    );
    let (result, io) = run(
        &server,
        &["agent", "evict", "--spiffe-id", AGENT_1, "--output", "json"],
    )
    .await;
    result.unwrap();
    assert_eq!(io.stdout(), "{}\n");
}

#[tokio::test]
async fn an_empty_list_says_so() {
    let server = FakeAgentServer::start(vec![]).await;
    let (result, io) = run(&server, &["agent", "list"]).await;
    result.unwrap();
    assert_eq!(io.stdout(), "No attested agents found\n");
}

#[tokio::test]
async fn token_generate_prints_the_token() {
    let server = FakeAgentServer::start(vec![]).await;
    let (result, io) = run(&server, &["token", "generate"]).await;
    result.unwrap();
    assert_eq!(
        io.stdout(),
        "Token: 8c2a3a3e-1d8f-4a0e-9d38-2b8f0f2b1c11\nWarning: Missing SPIFFE ID.\n"
    );

    let args = [
        "token",
        "generate",
        "--spiffe-id",
        "spiffe://domain.test/node",
        "--ttl",
        "60",
    ];
    let (result, io) = run(&server, &args).await;
    result.unwrap();
    assert_eq!(io.stdout(), "Token: 8c2a3a3e-1d8f-4a0e-9d38-2b8f0f2b1c11\n");
    let req = server
        .state
        .lock()
        .unwrap()
        .last_token_request
        .clone()
        .unwrap();
    assert_eq!(req.ttl, 60);
    assert_eq!(req.agent_id.unwrap().path, "/node");

    let mut json = args.to_vec();
    json.extend(["--output", "json"]);
    let (result, io) = run(&server, &json).await;
    result.unwrap();
    assert_eq!(
        io.stdout(),
        "{\"expires_at\":\"1700000060\",\"value\":\"8c2a3a3e-1d8f-4a0e-9d38-2b8f0f2b1c11\"}\n"
    );
}
