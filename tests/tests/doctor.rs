//! `signet-agent doctor` and `signet-server doctor` against real servers and agents: each
//! broken set-up FAILs the right check with the right fix, a healthy one passes everything,
//! `--output json` parses and the exit code is 0 exactly when nothing FAILs. The agent
//! command is the real binary talking to the agent's admin socket.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use signet_common::clock::{Clock, SystemClock};
use signet_tests::agent::{Setup, until};
use signet_tests::procs::run;

fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// `admin_socket_path` for the agent of `setup`.
fn admin_socket(setup: &Setup) -> PathBuf {
    setup.dir.path().join("admin").join("api.sock")
}

fn admin_line(setup: &Setup) -> String {
    format!("admin_socket_path = \"{}\"", admin_socket(setup).display())
}

/// Runs `signet-agent doctor --output json <args>` against `setup`'s agent; the exit code
/// and the parsed report.
async fn agent_doctor(setup: &Setup, args: &[&str]) -> (i32, Value) {
    let socket = admin_socket(setup);
    let mut all = vec![
        "doctor",
        "--admin-socket-path",
        socket.to_str().unwrap(),
        "--output",
        "json",
    ];
    all.extend_from_slice(args);
    json_run("signet-agent", &all).await
}

async fn json_run(bin: &str, args: &[&str]) -> (i32, Value) {
    let (code, out, err) = run(bin, args).await;
    let report: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("{bin} {args:?}: not JSON ({e}): {out}\nstderr: {err}"));
    (code, report)
}

/// The check named `name` (the first, if several).
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_owned()
}

/// `POST /v1/doctor` with `body` by hand; the whole HTTP response.
async fn raw_post(socket: &std::path::Path, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket).await.unwrap();
    let req = format!(
        "POST /v1/doctor HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Asserts the check `name` came out `status` with a message and a fix containing these.
fn assert_check(report: &Value, name: &str, status: &str, message: &str, fix: &str) {
    let c = check(report, name);
    assert_eq!(c["status"], status, "{report:#}");
    assert!(text(c, "message").contains(message), "{message:?} in {c}");
    assert!(text(c, "fix").contains(fix), "{fix:?} in {c}");
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (text(c, "name"), text(c, "status")))
        .collect()
}

#[tokio::test]
async fn a_healthy_agent_passes_every_check_and_a_foreign_peer_fails_trust() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent(&admin_line(&setup)).await;
    let entry = setup
        .create_entry_selector(&agent.agent_id, "/web", &format!("uid:{}", uid()))
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&entry)
    })
    .await;

    // The admin socket is for root alone.
    let socket = admin_socket(&setup);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    // The caller itself (no --pid): selectors from its peer credentials.
    let (code, report) = agent_doctor(&setup, &["--peer", "spiffe://example.org/backend"]).await;
    let all = statuses(&report);
    assert!(
        all.iter().all(|(_, s)| s == "PASS"),
        "everything passes: {report:#}"
    );
    assert_eq!(code, 0);
    assert_eq!(report["ok"], true);
    for name in [
        "agent attested",
        "server connection",
        "clock skew",
        "workload selectors",
        "matching entries",
        "SVID",
        "SVID renewal",
        "trust bundle",
        "peer trust",
    ] {
        check(&report, name);
    }
    assert!(
        text(check(&report, "workload selectors"), "message")
            .contains(&format!("unix:uid:{}", uid()))
    );
    assert!(text(check(&report, "matching entries"), "message").contains(&entry));
    assert!(
        text(check(&report, "agent attested"), "message").contains(&agent.agent_id.to_string())
    );

    // The same through --pid (this test process) and --spiffe-id, in human form.
    let pid = std::process::id().to_string();
    let (code, out, _) = run(
        "signet-agent",
        &[
            "doctor",
            "--admin-socket-path",
            socket.to_str().unwrap(),
            "--pid",
            &pid,
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("PASS  agent attested"),
        "{out}"
    );
    assert!(out.contains(" 0 failed"), "{out}");
    let (code, report) = agent_doctor(&setup, &["--spiffe-id", "spiffe://example.org/web"]).await;
    assert_eq!(code, 0, "{report:#}");

    // A malformed request is refused with the reason; the agent keeps serving.
    let reply = raw_post(&socket, r#"{"pid":"one"}"#).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("invalid doctor request"), "{reply}");

    // A peer from a trust domain the agent has no bundle for.
    let (code, report) = agent_doctor(&setup, &["--peer", "spiffe://other.org/db"]).await;
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    assert_eq!(report["fail"], 1);
    assert_check(
        &report,
        "peer trust",
        "FAIL",
        "no federated bundle for trust domain other.org",
        "-federatesWith spiffe://other.org",
    );

    agent.shutdown().await.unwrap();
    assert!(!socket.exists(), "the admin socket is removed on shutdown");
}

#[tokio::test]
async fn no_entry_for_the_caller_names_the_missing_selector() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent(&admin_line(&setup)).await;
    let other = uid() + 1234;
    let entry = setup
        .create_entry_selector(&agent.agent_id, "/web", &format!("uid:{other}"))
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.entries.iter().any(|e| e.id == entry)
    })
    .await;

    let (code, report) = agent_doctor(&setup, &[]).await;
    assert_eq!(code, 1);
    let entries = check(&report, "matching entries");
    assert_eq!(entries["status"], "FAIL", "{report:#}");
    let message = text(entries, "message");
    assert!(
        message.contains(&entry),
        "names the nearest entry: {message}"
    );
    assert!(
        message.contains(&format!("needs unix:uid:{other}")),
        "{message}"
    );
    let fix = text(entries, "fix");
    assert!(fix.contains(&format!("unix:uid:{other}")), "{fix}");
    assert!(
        fix.contains(&format!("-selector unix:uid:{}", uid())),
        "suggests the caller's own uid: {fix}"
    );
    assert!(fix.contains(&agent.agent_id.to_string()), "{fix}");
    // Everything else is fine.
    assert_eq!(report["fail"], 1, "{report:#}");

    // --uid of the entry's user matches it.
    let (code, report) = agent_doctor(&setup, &["--uid", &other.to_string()]).await;
    assert_eq!(
        check(&report, "matching entries")["status"],
        "PASS",
        "{report:#}"
    );
    assert_eq!(code, 0, "{report:#}");
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stopped_server_and_an_expired_svid_fail_with_their_fixes() {
    let mut setup = Setup::new(&[]).await;
    let agent = setup.agent(&admin_line(&setup)).await;
    let entry = setup
        .create_entry_selector_ttl(&agent.agent_id, "/short", &format!("uid:{}", uid()), 4)
        .await;
    let mut rx = agent.snapshot();
    let snap = until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&entry)
    })
    .await;
    let first_expiry = snap.svids[&entry].not_after;

    setup.server.stop().await;
    let (code, report) = agent_doctor(&setup, &["--spiffe-id", "spiffe://example.org/short"]).await;
    assert_eq!(code, 1);
    assert_check(
        &report,
        "server connection",
        "FAIL",
        "cannot reach the server",
        "start signet-server",
    );
    assert_eq!(check(&report, "clock skew")["status"], "WARN");

    // Renewal cannot happen: wait until the SVID the agent holds has expired.
    let held = agent
        .manager
        .held_svid(&entry)
        .unwrap()
        .svid
        .not_after
        .max(first_expiry);
    while SystemClock.unix_now() <= held {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, report) = agent_doctor(&setup, &["--spiffe-id", "spiffe://example.org/short"]).await;
    assert_eq!(code, 1);
    assert_check(
        &report,
        "SVID",
        "FAIL",
        "spiffe://example.org/short: X509-SVID expired",
        "restore the agent's connection to the server",
    );
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_agent_that_never_attested_is_reported_from_its_data_dir() {
    let setup = Setup::new(&[]).await;
    let port = setup.server.server().tcp_addr.port();
    let conf = setup.dir.path().join("agent.conf");
    let lines = format!("{}\n    join_token = \"not-a-token\"", admin_line(&setup));
    std::fs::write(&conf, setup.config_text(port, &lines)).unwrap();
    let conf = conf.to_str().unwrap();

    // The server refuses the token: the agent exits.
    let (code, _, err) = run("signet-agent", &["run", "--config", conf]).await;
    assert_ne!(code, 0, "{err}");

    let (code, report) = json_run(
        "signet-agent",
        &["doctor", "--config", conf, "--output", "json"],
    )
    .await;
    assert_eq!(code, 1);
    assert_check(
        &report,
        "agent running",
        "FAIL",
        &admin_socket(&setup).display().to_string(),
        "start signet-agent",
    );
    assert_check(
        &report,
        "agent attested",
        "FAIL",
        "the agent is not attested",
        "join token",
    );

    // Without admin_socket_path the command says so.
    std::fs::write(
        setup.dir.path().join("plain.conf"),
        setup.config_text(port, ""),
    )
    .unwrap();
    let plain = setup.dir.path().join("plain.conf");
    let (code, out, _) = run(
        "signet-agent",
        &["doctor", "--config", plain.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        out.starts_with("FAIL  agent running  agent.admin_socket_path is not set"),
        "{out}"
    );
    assert!(out.contains("fix: set agent.admin_socket_path"), "{out}");
}

#[tokio::test]
async fn server_doctor_checks_the_ca_the_datastore_and_who_may_serve_an_entry() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let served = setup.create_entry(&agent.agent_id, "/served").await;
    let nobody = signet_common::id::parse_id("spiffe://example.org/nobody").unwrap();
    let orphan = setup.create_entry(&nobody, "/orphan").await;

    let (result, _) = setup.server.cli(&["doctor", "--entry-id", &served]).await;
    let out = result.unwrap();
    for line in [
        "PASS  server running",
        "PASS  X.509 CA",
        "PASS  JWT key",
        "PASS  datastore",
        "PASS  authorized agents",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(
        out.contains(&format!("{} (its parent)", agent.agent_id)),
        "{out}"
    );
    assert!(out.contains("successor due in"), "{out}");

    let (result, _) = setup
        .server
        .cli(&["doctor", "--spiffe-id", "spiffe://example.org/orphan"])
        .await;
    let err = result.unwrap_err().to_string();
    assert_eq!(err, "doctor: failed: authorized agents");

    let socket = setup.server.socket();
    let (code, report) = json_run(
        "signet-server",
        &[
            "doctor",
            "--socket-path",
            socket.to_str().unwrap(),
            "--entry-id",
            &orphan,
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(report["fail"], 1, "{report:#}");
    assert_check(
        &report,
        "authorized agents",
        "FAIL",
        "no attested agent is authorized",
        "token generate -spiffeID spiffe://example.org/nobody",
    );

    // A stopped server: one FAIL naming the socket.
    let mut setup = setup;
    agent.shutdown().await.unwrap();
    setup.server.stop().await;
    let (code, report) = json_run(
        "signet-server",
        &[
            "doctor",
            "--socket-path",
            socket.to_str().unwrap(),
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(check(&report, "server running")["status"], "FAIL");
    assert!(text(check(&report, "server running"), "fix").contains("start signet-server"));
}
