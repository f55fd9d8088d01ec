//! The `signet-agent` binary itself: exit codes and the one-line errors, with the endpoint
//! taken from the flag or from `SPIFFE_ENDPOINT_SOCKET`.

use std::process::{Command, Output};

fn signet_agent(args: &[&str], endpoint: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_signet-agent"));
    cmd.args(args).env_remove("SPIFFE_ENDPOINT_SOCKET");
    if let Some(e) = endpoint {
        cmd.env("SPIFFE_ENDPOINT_SOCKET", e);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run signet-agent: {e}"))
}

#[test]
fn missing_socket_fails_with_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let out = signet_agent(
        &["api", "fetch", "-socketPath", sock.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error \
             while dialing: dial unix {}: connect: no such file or directory\"\n",
            sock.display()
        )
    );
}

#[test]
fn endpoint_socket_variable_is_used_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("env.sock");
    let out = signet_agent(
        &["api", "validate", "jwt", "--audience", "a", "--svid", "t"],
        Some(&format!("unix:{}", sock.display())),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("unable to validate JWT SVID: rpc error: code = Unavailable"),
        "{err}"
    );
    assert!(
        err.contains(&format!("dial unix {}: connect", sock.display())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn healthcheck_of_a_missing_agent_is_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let out = signet_agent(
        &["healthcheck", "--socket-path", sock.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "Agent is unhealthy: unable to determine health\n"
    );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = signet_agent(&["api", "fetch", "jwt"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("--audience")
    );
    let out = signet_agent(&["api", "--help"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout).unwrap().contains("watch"));
}
