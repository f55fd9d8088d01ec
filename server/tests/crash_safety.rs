//! An entry acknowledged by `entry create` survives SIGKILL of the server.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use common::ServerProcess;

#[test]
fn an_acknowledged_entry_survives_kill_9() {
    let mut server = ServerProcess::start();
    let out = server.cli_ok(&[
        "entry",
        "create",
        "--parent-id",
        "spiffe://example.org/spire/agent/join_token/x",
        "--spiffe-id",
        "spiffe://example.org/survivor",
        "--selector",
        "unix:uid:1000",
        "--output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = json["results"][0]["entry"]["id"]
        .as_str()
        .expect("entry id in JSON output")
        .to_owned();
    server.kill9();

    server.spawn();
    let shown = server.cli_ok(&["entry", "show", "--entry-id", &id]);
    assert!(shown.contains("spiffe://example.org/survivor"), "{shown}");
    assert!(shown.contains(&id), "{shown}");
}

#[test]
fn the_same_ca_is_active_after_a_restart() {
    let mut server = ServerProcess::start();
    let before = server.cli_ok(&["bundle", "show"]);
    server.kill9();
    server.spawn();
    let after = server.cli_ok(&["bundle", "show"]);
    assert_eq!(
        before, after,
        "restart must resume the same CA, not mint a new root"
    );
}
