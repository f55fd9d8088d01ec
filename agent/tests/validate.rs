//! `signet-agent validate --config F` (the real binary) on SPIRE's own agent sample.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;

fn validate(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.conf");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signet-agent"))
        .args(["validate", "-config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const SPIRE_SAMPLE: &str = r#"
agent { data_dir = "./.data" log_level = "DEBUG" server_address = "127.0.0.1" server_port = "8081" socket_path ="/tmp/spire-agent/public/api.sock" trust_bundle_path = "./conf/agent/dummy_root_ca.crt" trust_domain = "example.org" }
plugins { NodeAttestor "join_token" { plugin_data {} } KeyManager "disk" { plugin_data { directory = "./.data" } } WorkloadAttestor "unix" { plugin_data {} } }
telemetry { Prometheus { port = 9988 } }
"#;

#[test]
fn spires_sample_is_valid_and_its_prometheus_sink_is_served() {
    let (ok, out, err) = validate(SPIRE_SAMPLE);
    assert!(ok, "{err}");
    assert_eq!(out, "SPIRE agent configuration file is valid.\n");
    assert!(!err.contains("telemetry"), "{err}");
    let statsd = SPIRE_SAMPLE.replace(
        "Prometheus { port = 9988 }",
        "Prometheus { port = 9988 } Statsd { address = \"localhost:8125\" }",
    );
    let (ok, _, err) = validate(&statsd);
    assert!(ok, "{err}");
    assert!(
        err.contains("warning: telemetry.Statsd has no effect"),
        "{err}"
    );
}

#[test]
fn refused_and_malformed_files_say_why() {
    for (from, to, needle) in [
        (
            "trust_domain",
            "authorized_delegates = [\"spiffe://example.org/d\"] trust_domain",
            "agent.authorized_delegates is not supported",
        ),
        (
            "trust_domain",
            "trust_domian",
            "agent.trust_domian: unknown key",
        ),
        ("server_port = \"8081\"", "server_port = [8081", ":2:"),
        (
            r#"WorkloadAttestor "unix" { plugin_data {} }"#,
            r#"WorkloadAttestor "unix" { plugin_data {} } SVIDStore "aws_secretsmanager" {}"#,
            "SVIDStore plugins are not supported",
        ),
    ] {
        let (ok, out, err) = validate(&SPIRE_SAMPLE.replacen(from, to, 1));
        assert!(!ok && out.is_empty(), "{needle}: {out}");
        assert!(
            err.starts_with("SPIRE agent configuration file is invalid: ") && err.contains(needle),
            "{needle}: {err}"
        );
    }
}
