//! `signet-server validate --config F` (the real binary): SPIRE's verdict lines, warnings for
//! keys without effect, and one line naming what to do for SPIRE's SQL store.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::process::Command;

fn validate(text: &str, flag: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.conf");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signet-server"))
        .args(["validate", flag])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const SLED: &str = r#"
server { trust_domain = "example.org" data_dir = "/tmp/signet-validate" experimental { cache_reload_interval = "5s" } }
plugins { DataStore "sled" { plugin_data {} } KeyManager "memory" { plugin_data = {} } NodeAttestor "join_token" { plugin_data {} } }
"#;

#[test]
fn a_valid_file_prints_spires_line_and_notes_keys_without_effect() {
    for flag in ["--config", "-config"] {
        let (ok, out, err) = validate(SLED, flag);
        assert!(ok, "{err}");
        assert_eq!(out, "SPIRE server configuration file is valid.\n");
        assert!(
            err.contains("warning: server.experimental.cache_reload_interval has no effect"),
            "{err}"
        );
    }
}

#[test]
fn spires_sql_store_is_served_on_postgres_and_refused_with_what_to_do_otherwise() {
    let postgres = SLED.replace(
        r#"DataStore "sled" { plugin_data {} }"#,
        r#"DataStore "sql" { plugin_data { database_type = "postgres" connection_string = "dbname=spire" max_open_conns = 10 conn_max_lifetime = "1h" } }"#,
    );
    let (ok, out, err) = validate(&postgres, "--config");
    assert!(ok, "{err}");
    assert_eq!(out, "SPIRE server configuration file is valid.\n");
    for db in ["sqlite3", "mysql"] {
        let text = SLED.replace(
            r#"DataStore "sled" { plugin_data {} }"#,
            &format!(
                r#"DataStore "sql" {{ plugin_data {{ database_type = "{db}" connection_string = "x" }} }}"#
            ),
        );
        let (ok, out, err) = validate(&text, "--config");
        assert!(!ok && out.is_empty(), "{db}: {out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("SPIRE server configuration file is invalid: ")
                && err.contains(&format!("database_type \"{db}\""))
                && err.contains("signet-server import spire --config")
                && err.contains("DataStore \"sled\""),
            "{err}"
        );
    }
}

#[test]
fn unknown_and_refused_keys_are_named() {
    for (from, to, needle) in [
        (
            "trust_domain",
            "bogus = 1 trust_domain",
            "server.bogus: unknown key",
        ),
        (
            "trust_domain",
            "audit_log_enabled = true trust_domain",
            "server.audit_log_enabled is not supported",
        ),
        (
            "cache_reload_interval",
            "auth_opa_policy_engine { local {} } cache_reload_interval",
            "server.experimental.auth_opa_policy_engine is not supported",
        ),
        (
            r#"NodeAttestor "join_token" { plugin_data {} }"#,
            r#"NodeAttestor "join_token" { plugin_cmd = "/bin/x" }"#,
            "plugin_cmd: external plugins are not supported",
        ),
        (
            r#"NodeAttestor "join_token" { plugin_data {} }"#,
            r#"Notifier "gcs_bundle" { plugin_data {} }"#,
            "Notifier plugins are not supported",
        ),
    ] {
        let (ok, _, err) = validate(&SLED.replacen(from, to, 1), "--config");
        assert!(!ok && err.contains(needle), "{needle}: {err}");
    }
}
