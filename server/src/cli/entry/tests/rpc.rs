//! The `entry` commands over a real gRPC channel, against the in-memory fake.

use crate::cli::tests::fake_entry::FakeEntryServer;
use crate::cli::tests::{Captured, parse};

async fn run(server: &FakeEntryServer, args: &[&str]) -> (anyhow::Result<()>, Captured) {
    run_with_stdin(server, args, "").await
}

async fn run_with_stdin(
    server: &FakeEntryServer,
    args: &[&str],
    stdin: &str,
) -> (anyhow::Result<()>, Captured) {
    let mut all = args.to_vec();
    all.extend(["--socket-path", server.socket.as_str()]);
    let mut io = Captured::with_stdin(stdin);
    let result = io.run(parse(&all)).await;
    (result, io)
}

const CHILD: &[&str] = &[
    "entry",
    "create",
    "--spiffe-id",
    "spiffe://domain.test/child1",
    "--parent-id",
    "spiffe://domain.test/parent",
    "--selector",
    "s1:v1",
    "--federates-with",
    "spiffe://federated1.test",
    "--admin",
];

#[tokio::test]
async fn create_then_show_prints_spires_layout() {
    let server = FakeEntryServer::start().await;
    let (result, io) = run(&server, CHILD).await;
    result.unwrap();
    let created = "Entry ID         : entry-1\n\
                   SPIFFE ID        : spiffe://domain.test/child1\n\
                   Parent ID        : spiffe://domain.test/parent\n\
                   Revision         : 0\n\
                   X509-SVID TTL    : default\n\
                   JWT-SVID TTL     : default\n\
                   Selector         : s1:v1\n\
                   FederatesWith    : federated1.test\n\
                   Admin            : true\n\n";
    assert_eq!(io.stdout(), created);

    let (result, io) = run(
        &server,
        &[
            "entry",
            "show",
            "--spiffe-id",
            "spiffe://domain.test/child1",
        ],
    )
    .await;
    result.unwrap();
    assert_eq!(io.stdout(), format!("Found 1 entry\n{created}"));
    let state = server.state.lock().unwrap();
    let filter = state.last_list_filter.clone().unwrap();
    assert_eq!(filter.by_spiffe_id.unwrap().path, "/child1");
    assert_eq!(filter.by_downstream, None);
}

#[tokio::test]
async fn a_duplicate_is_reported_per_item() {
    let server = FakeEntryServer::start().await;
    run(&server, CHILD).await.0.unwrap();
    let (result, io) = run(&server, CHILD).await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "failed to create one or more entries"
    );
    assert!(io.stdout().is_empty());
    assert!(
        io.stderr().starts_with(
            "Failed to create the following entry (code: AlreadyExists, msg: \"similar entry already exists\"):\n\
             Entry ID         : (none)\n\
             SPIFFE ID        : spiffe://domain.test/child1\n"
        ),
        "{}",
        io.stderr()
    );
}

#[tokio::test]
async fn data_from_stdin_and_paged_show() {
    let server = FakeEntryServer::start().await;
    let data = r#"{"entries": [
        {"selectors": [{"type": "unix", "value": "uid:3"}], "spiffe_id": "spiffe://domain.test/c",
         "parent_id": "spiffe://domain.test/p"},
        {"selectors": [{"type": "unix", "value": "uid:1"}], "spiffe_id": "spiffe://domain.test/a",
         "parent_id": "spiffe://domain.test/p"},
        {"selectors": [{"type": "unix", "value": "uid:2"}], "spiffe_id": "spiffe://domain.test/b",
         "parent_id": "spiffe://domain.test/p", "downstream": true}
    ]}"#;
    let (result, _) = run_with_stdin(&server, &["entry", "create", "--data", "-"], data).await;
    result.unwrap();
    let (result, io) = run(&server, &["entry", "show"]).await;
    result.unwrap();
    let out = io.stdout();
    assert!(out.starts_with("Found 3 entries\n"), "{out}");
    let ids: Vec<&str> = out.lines().filter(|l| l.starts_with("SPIFFE ID")).collect();
    assert_eq!(
        ids,
        [
            "SPIFFE ID        : spiffe://domain.test/a",
            "SPIFFE ID        : spiffe://domain.test/b",
            "SPIFFE ID        : spiffe://domain.test/c",
        ]
    );
    assert!(out.contains("Downstream       : true\n"));

    let (result, io) = run(&server, &["entry", "count", "--output", "json"]).await;
    result.unwrap();
    assert_eq!(io.stdout(), "{\"count\":3}\n");
    let (result, io) = run(&server, &["entry", "count"]).await;
    result.unwrap();
    assert_eq!(io.stdout(), "3 registration entries\n");
}

#[tokio::test]
async fn update_replaces_and_bumps_the_revision() {
    let server = FakeEntryServer::start().await;
    run(&server, CHILD).await.0.unwrap();
    let args = [
        "entry",
        "update",
        "--entry-id",
        "entry-1",
        "--spiffe-id",
        "spiffe://domain.test/child1",
        "--parent-id",
        "spiffe://domain.test/parent",
        "--selector",
        "s1:v1",
        "--x509-svid-ttl",
        "456",
    ];
    let (result, io) = run(&server, &args).await;
    result.unwrap();
    let out = io.stdout();
    assert!(out.contains("Revision         : 1\n") && out.contains("X509-SVID TTL    : 456\n"));
    assert!(
        !out.contains("Admin") && !out.contains("FederatesWith"),
        "{out}"
    );
    let mask = server.state.lock().unwrap().last_update_mask.unwrap();
    assert!(mask.admin && mask.federates_with && mask.selectors);
}

#[tokio::test]
async fn show_by_entry_id_and_a_missing_one() {
    let server = FakeEntryServer::start().await;
    run(&server, CHILD).await.0.unwrap();
    let (result, io) = run(
        &server,
        &["entry", "show", "--entry-id", "entry-1", "--output", "json"],
    )
    .await;
    result.unwrap();
    let v: serde_json::Value = serde_json::from_str(&io.stdout()).unwrap();
    assert_eq!(v["entries"][0]["spiffe_id"]["path"], "/child1");
    assert_eq!(v["entries"][0]["federates_with"][0], "federated1.test");
    assert_eq!(v["next_page_token"], "");

    let (result, _) = run(&server, &["entry", "show", "--entry-id", "nope"]).await;
    assert_eq!(
        format!("{:#}", result.unwrap_err()),
        "error fetching entry ID nope: rpc error: code = NotFound desc = entry not found"
    );
}

#[tokio::test]
async fn delete_prints_spires_summary() {
    let server = FakeEntryServer::start().await;
    run(&server, CHILD).await.0.unwrap();
    let (result, io) = run(&server, &["entry", "delete", "--entry-id", "entry-1"]).await;
    result.unwrap();
    assert_eq!(
        io.stdout(),
        "Deleted entry with ID: entry-1\n\n\nDeleted 1 entries successfully"
    );
    assert!(server.entry_ids().is_empty());

    let (result, io) = run(&server, &["entry", "delete", "--entry-id", "entry-1"]).await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "failed to delete one or more entries"
    );
    assert_eq!(
        io.stderr(),
        "Failed to delete entry with ID entry-1 (code: NotFound, msg: \"entry not found\")\n"
    );
    assert_eq!(io.stdout(), "\n\nFailed to delete 1 entries");
}
