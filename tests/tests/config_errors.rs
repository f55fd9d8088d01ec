//! Every refused configuration names the file, the key and what was expected, through the
//! real `signet-server run` and `signet-agent run` processes: each bad file makes the process
//! exit non-zero before it serves anything, with one stderr line holding the file's path, the
//! dotted key and the expectation (and what was found). A `ca_ttl` that cannot hold the
//! configured SVID TTLs (SPIRE's `min(ca_ttl/6, 7d)`) is refused naming both values.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use signet_tests::procs::binary;

/// Runs `bin run --config <file>`; returns its exit status and stderr. A process still
/// running after a minute has accepted the file: it is killed and the case fails.
fn run(bin: &str, config: &Path) -> (std::process::ExitStatus, String) {
    let dir = config.parent().unwrap();
    let stderr = dir.join("stderr");
    let mut child = Command::new(binary(bin))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{bin} accepted {}:\n{}",
                config.display(),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&stderr).unwrap())
}

/// Writes `text` (with `DIR` replaced by a fresh directory) to `DIR/<name>`, runs `bin` on
/// it and checks the refusal names the file, `key` and each of `expected`.
fn refused(bin: &str, name: &str, text: &str, key: &str, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text.replace("DIR", dir.path().to_str().unwrap())).unwrap();
    let (status, stderr) = run(bin, &path);
    assert!(!status.success(), "{bin} exited {status} on:\n{text}");
    let file = path.display().to_string();
    for needle in [file.as_str(), key].iter().chain(expected) {
        assert!(
            stderr.contains(needle),
            "{bin} on {key}: stderr lacks {needle:?}:\n{stderr}"
        );
    }
    // The reason is on the same line as the file and the key.
    let line = stderr
        .lines()
        .find(|l| l.contains(&file) && l.contains(key))
        .unwrap_or_else(|| panic!("no line names both {file} and {key}:\n{stderr}"));
    assert!(
        expected.iter().all(|e| line.contains(e)),
        "{line} lacks one of {expected:?}"
    );
}

/// `<block> { <lines> <extra> }`, each plugin with an empty `plugin_data {}`, then `rest`.
fn conf(block: &str, lines: &[&str], extra: &str, plugins: &[&str], rest: &str) -> String {
    let mut text = format!("{block} {{\n");
    for line in lines.iter().chain([&extra]) {
        text.push_str(&format!("    {line}\n"));
    }
    text.push_str("}\nplugins {\n");
    for plugin in plugins {
        text.push_str(&format!(
            "    {plugin} {{\n        plugin_data {{}}\n    }}\n"
        ));
    }
    format!("{text}}}\n{rest}\n")
}

fn server_conf(extra: &str, rest: &str) -> String {
    let lines = [
        r#"bind_address = "127.0.0.1""#,
        "bind_port = 0",
        r#"socket_path = "DIR/api.sock""#,
        r#"trust_domain = "example.org""#,
        r#"data_dir = "DIR/data""#,
    ];
    let plugins = [
        r#"DataStore "sled""#,
        r#"KeyManager "memory""#,
        r#"NodeAttestor "join_token""#,
    ];
    conf("server", &lines, extra, &plugins, rest)
}

fn agent_conf(extra: &str, rest: &str) -> String {
    let lines = [
        r#"data_dir = "DIR/agent""#,
        r#"server_address = "127.0.0.1""#,
        "server_port = 1",
        r#"socket_path = "DIR/agent.sock""#,
        r#"trust_domain = "example.org""#,
        "insecure_bootstrap = true",
        r#"join_token = "unused""#,
    ];
    let plugins = [
        r#"KeyManager "memory""#,
        r#"NodeAttestor "join_token""#,
        r#"WorkloadAttestor "unix""#,
    ];
    conf("agent", &lines, extra, &plugins, rest)
}

/// A `server {}` holding `extra` is refused, naming `key` and `expected`.
fn server(extra: &str, key: &str, expected: &[&str]) {
    let text = server_conf(extra, "");
    refused("signet-server", "server.conf", &text, key, expected);
}

/// An `agent {}` holding `extra` is refused, naming `key` and `expected`.
fn agent(extra: &str, key: &str, expected: &[&str]) {
    let text = agent_conf(extra, "");
    refused("signet-agent", "agent.conf", &text, key, expected);
}

#[test]
fn the_four_reported_server_examples_name_the_key_and_the_expectation() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "bind_port = 99999",
            "server.bind_port",
            &["expected a port number (0 to 65535)", "got 99999"],
        ),
        (
            r#"admin_ids = "x""#,
            "server.admin_ids",
            &["expected a list", "got a string"],
        ),
        (
            r#"ca_subject = "x""#,
            "server.ca_subject",
            &["expected a block", "got a string"],
        ),
        (
            r#"log_level = ["INFO"]"#,
            "server.log_level",
            &["expected a string", "got a list"],
        ),
    ];
    for (extra, key, expected) in cases {
        server(extra, key, expected);
    }
}

#[test]
fn a_ca_ttl_that_cannot_hold_the_svid_ttls_is_refused_naming_both() {
    // The X509-SVID default (1h) does not fit in 1s / 6.
    server(
        r#"ca_ttl = "1s""#,
        "server.ca_ttl",
        &["1s", "default_x509_svid_ttl 1h", "min(ca_ttl/6, 7d)"],
    );
    // 1h holds at most 10m.
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "ca_ttl = \"1h\"\n    default_x509_svid_ttl = \"20m\"",
            "server.ca_ttl",
            &[
                "1h",
                "default_x509_svid_ttl 20m",
                "10m",
                "set ca_ttl to 2h or more",
            ],
        ),
        (
            "ca_ttl = \"1h\"\n    default_x509_svid_ttl = \"5m\"\n    agent_ttl = \"11m\"",
            "server.ca_ttl",
            &["1h", "agent_ttl 11m", "10m"],
        ),
    ];
    for (extra, key, expected) in cases {
        server(extra, key, expected);
    }
    // A JWT-SVID TTL the file sets is held to the same rule.
    server(
        "ca_ttl = \"1m\"\n    default_x509_svid_ttl = \"10s\"\n    default_jwt_svid_ttl = \"5m\"",
        "server.ca_ttl",
        &["1m", "default_jwt_svid_ttl 5m", "10s"],
    );
}

#[test]
fn server_durations_paths_and_enums_name_the_key() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            r#"default_x509_svid_ttl = "soon""#,
            "server.default_x509_svid_ttl",
            &["expected a duration", r#"got "soon""#],
        ),
        (
            r#"agent_ttl = "0s""#,
            "server.agent_ttl",
            &["must be greater than zero"],
        ),
        (
            r#"socket_path = ["DIR/a.sock"]"#,
            "server.socket_path",
            &["expected a string", "got a list"],
        ),
        (
            r#"log_file = { path = "x" }"#,
            "server.log_file",
            &["expected a string", "got a block"],
        ),
        (
            r#"ca_key_type = "rsa-1024""#,
            "server.ca_key_type",
            &[r#"expected "ec-p256" or "ec-p384""#, r#"got "rsa-1024""#],
        ),
        (
            r#"log_format = "xml""#,
            "server.log_format",
            &[r#"expected "text" or "json""#, r#"got "xml""#],
        ),
        (
            r#"log_level = "LOUD""#,
            "server.log_level",
            &["expected one of DEBUG, INFO, WARN, ERROR", r#"got "LOUD""#],
        ),
        (
            r#"admin_ids = ["spiffe://example.org/admin", "not an id"]"#,
            "server.admin_ids[1]",
            &[],
        ),
        (
            r#"audit_log_enabled = "maybe""#,
            "server.audit_log_enabled",
            &["expected a bool", r#"got "maybe""#],
        ),
    ];
    for (extra, key, expected) in cases {
        server(extra, key, expected);
    }
}

#[test]
fn server_nested_blocks_and_plugin_data_name_the_full_key() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "ca_subject {\n country = \"US\"\n }",
            "server.ca_subject.country",
            &["expected a list", "got a string"],
        ),
        (
            "federation {\n bundle_endpoint {\n port = 70000\n }\n }",
            "server.federation.bundle_endpoint.port",
            &["expected a port number", "got 70000"],
        ),
        (
            "experimental {\n events_based_cache = [true]\n }",
            "server.experimental.events_based_cache",
            &["expected a bool", "got a list"],
        ),
    ];
    for (extra, key, expected) in cases {
        server(extra, key, expected);
    }
    refused(
        "signet-server",
        "server.conf",
        &server_conf(
            "",
            "health_checks {\n listener_enabled = true\n bind_port = \"eighty\"\n}",
        ),
        "health_checks.bind_port",
        &["expected an integer", r#"got "eighty""#],
    );
    refused(
        "signet-server",
        "server.conf",
        &server_conf("", "").replace(
            "KeyManager \"memory\" {\n        plugin_data {}",
            "KeyManager \"disk\" {\n        plugin_data { keys_path = [\"a\"] }",
        ),
        "keys_path",
        &["KeyManager", "expected a string", "got a list"],
    );
    // JSON reads the same way and names the same key.
    refused(
        "signet-server",
        "server.json",
        r#"{"server": {"trust_domain": "example.org", "data_dir": "DIR/data", "bind_port": 99999},
            "plugins": {"DataStore": {"sled": {}}, "KeyManager": {"memory": {}}}}"#,
        "server.bind_port",
        &["expected a port number", "got 99999"],
    );
}

#[test]
fn agent_keys_of_each_type_name_the_key_and_the_expectation() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "server_port = 99999",
            "agent.server_port",
            &["expected a port number (0 to 65535)", "got 99999"],
        ),
        (
            r#"log_level = ["INFO"]"#,
            "agent.log_level",
            &["expected a string", "got a list"],
        ),
        (
            r#"server_addresses = "10.0.0.1:8081""#,
            "agent.server_addresses",
            &["expected a list", "got a string"],
        ),
        (
            r#"server_addresses = ["10.0.0.1:8081", "nohost"]"#,
            "agent.server_addresses[1]",
            &[r#"expected "host:port""#, r#"got "nohost""#],
        ),
        (
            r#"sds = "x""#,
            "agent.sds",
            &["expected a block", "got a string"],
        ),
        (
            "experimental {\n sync_interval = \"often\"\n }",
            "agent.experimental.sync_interval",
            &["expected a duration", r#"got "often""#],
        ),
        (
            "x509_svid_cache_max_size = -1",
            "agent.x509_svid_cache_max_size",
            &["expected a number greater than zero", "got -1"],
        ),
        (
            r#"trust_bundle_format = "der""#,
            "agent.trust_bundle_format",
            &[r#"expected "pem""#, r#"got "der""#],
        ),
        (
            r#"workload_x509_svid_key_type = "rsa-2048""#,
            "agent.workload_x509_svid_key_type",
            &[r#"expected "ec-p256" or "ec-p384""#, r#"got "rsa-2048""#],
        ),
        (
            r#"data_dir = ["DIR"]"#,
            "agent.data_dir",
            &["expected a string", "got a list"],
        ),
    ];
    for (extra, key, expected) in cases {
        agent(extra, key, expected);
    }
    refused(
        "signet-agent",
        "agent.conf",
        &agent_conf("", "").replace(
            "WorkloadAttestor \"unix\" {\n        plugin_data {}",
            "WorkloadAttestor \"unix\" {\n        plugin_data { discover_workload_path = \"maybe\" }",
        ),
        "discover_workload_path",
        &["WorkloadAttestor", "expected a bool", r#"got "maybe""#],
    );
    refused(
        "signet-agent",
        "agent.conf",
        &agent_conf("", "telemetry {\n Prometheus {\n port = 123456\n }\n}"),
        "telemetry.Prometheus.port",
        &["expected a port number", "got 123456"],
    );
}
