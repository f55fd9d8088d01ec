//! Fuzz targets for configuration files: SPIRE's HCL1/JSON syntax (lexer, parser, JSON
//! flattening, serde deserializer) and the server's and agent's typed configs built from it.
//! Inputs: raw text, mutations of every file of `tests/config-corpus/` and `conf/`, and
//! generated HCL of the real keys with values of every type. A panic fails the target with
//! the minimal input; an error must name the file.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use std::path::Path;

use proptest::prelude::*;
use signet_common::config::{ConfigError, expand_env, hcl1};
use signet_common::fuzz;

/// HCL and JSON syntax: delimiters, heredocs, interpolation, numbers at the limits.
const HCL_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"=",
    b",",
    b"\"",
    b":",
    b"\n",
    b"#",
    b"//",
    b"/*",
    b"*/",
    b"<<EOF\n",
    b"\nEOF\n",
    b"<<-X\n",
    b"${",
    b"$${",
    b"\\",
    b"\\u",
    b"0x",
    b"1e999",
    b"-",
    b"99999999999999999999",
    b"true",
    b"null",
    b"plugins",
    b"server",
    b"agent",
    b"plugin_data",
    b"KeyManager \"disk\" ",
    b"\"\"",
    b"[]",
    b"{}",
];

fn corpus() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut dirs = vec![root.join("config-corpus"), root.join("../conf")];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|x| x.to_str()),
                Some("conf" | "json")
            ) {
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((path.display().to_string(), text));
            }
        }
    }
    files.sort();
    assert!(files.len() >= 20, "config corpus: {} files", files.len());
    files
}

/// Keys of the server and agent configs, and some that are not.
const KEYS: &[&str] = &[
    "bind_address",
    "bind_port",
    "trust_domain",
    "data_dir",
    "log_level",
    "ca_ttl",
    "default_x509_svid_ttl",
    "default_jwt_svid_ttl",
    "ca_subject",
    "ca_key_type",
    "jwt_issuer",
    "admin_ids",
    "socket_path",
    "server_address",
    "server_port",
    "trust_bundle_path",
    "join_token",
    "insecure_bootstrap",
    "federation",
    "bundle_endpoint",
    "address",
    "port",
    "profile",
    "health_checks",
    "listener_enabled",
    "telemetry",
    "Prometheus",
    "plugin_data",
    "directory",
    "keys_path",
    "x509_svid_cache_max_size",
    "sds",
    "experimental",
    "unknown_key",
    "a.b",
];

/// A value of any HCL type, nested up to 3 deep (blocks hold key = value items).
fn hcl_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ./:_-]{0,16}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0",
            "-1",
            "65535",
            "65536",
            "99999",
            "1.5",
            "1e3",
            "0x1F",
            "true",
            "false",
            "\"1s\"",
            "\"1h\"",
            "\"24h\"",
            "\"-5m\"",
            "\"0\"",
            "\"INFO\"",
            "\"DEBUG\"",
            "\"spiffe://example.org/admin\"",
            "\"${HOME}\"",
            "<<EOF\nheredoc\nEOF\n",
        ])
        .prop_map(str::to_owned),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|kvs| {
                let body: Vec<String> = kvs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{\n{}\n}}", body.join("\n"))
            }),
        ]
    })
}

/// Generated config files: `server`/`agent`/`plugins`/`telemetry` blocks holding real keys
/// with values of any type, plugin blocks with and without names.
fn generated_config() -> impl Strategy<Value = String> {
    let item =
        (prop::sample::select(KEYS), hcl_value()).prop_map(|(k, v)| format!("    {k} = {v}"));
    let block = (
        prop::sample::select(vec![
            "server",
            "agent",
            "telemetry",
            "health_checks",
            "plugins",
        ]),
        prop::collection::vec(item, 0..8),
    )
        .prop_map(|(name, items)| format!("{name} {{\n{}\n}}\n", items.join("\n")));
    let plugin = (
        prop::sample::select(vec![
            "KeyManager",
            "DataStore",
            "NodeAttestor",
            "WorkloadAttestor",
            "Bogus",
        ]),
        prop::sample::select(vec![
            "\"disk\"",
            "\"memory\"",
            "\"sled\"",
            "\"sql\"",
            "\"join_token\"",
            "\"unix\"",
            "",
        ]),
        hcl_value(),
    )
        .prop_map(|(kind, name, data)| {
            format!("plugins {{\n    {kind} {name} {{\n        plugin_data = {data}\n    }}\n}}\n")
        });
    prop::collection::vec(prop_oneof![3 => block, 1 => plugin], 0..5).prop_map(|b| b.concat())
}

fn inputs() -> BoxedStrategy<(String, bool)> {
    let seeds: Vec<String> = corpus().into_iter().map(|(_, text)| text).collect();
    (
        prop_oneof![
            2 => fuzz::text(seeds, HCL_TOKENS),
            1 => generated_config(),
        ],
        any::<bool>(),
    )
        .boxed()
}

/// Counts a config result by what went wrong (the error without the file and position).
fn tally<T>(outcomes: &fuzz::Outcomes, parsed: &Result<T, ConfigError>) {
    match parsed {
        Ok(_) => outcomes.add(&Ok::<(), String>(()), 0),
        Err(ConfigError::Parse { error, .. }) => {
            outcomes.add_error(&format!("syntax/type: {error}"), 3)
        }
        Err(ConfigError::Invalid { error, .. }) => {
            outcomes.add_error(&format!("invalid: {error}"), 3)
        }
        Err(e) => outcomes.add_error(&e.to_string(), 3),
    }
}

/// The HCL1/JSON reader alone, in both modes, and `${VAR}` expansion.
#[test]
fn hcl_syntax() {
    fuzz::run("hcl_syntax", inputs(), |(text, json)| {
        let _ = hcl1::parse(&text, json);
        let _ = hcl1::parse(&expand_env(&text), !json);
        Ok(())
    });
}

/// Fuzzes one typed config parser: `parse(text, path)` with `<name>.conf` or `<name>.json`
/// as the file name. An error must name the file, and some inputs must parse.
fn typed_config<T>(name: &str, parse: impl Fn(&str, &str) -> Result<T, ConfigError>) {
    let outcomes = fuzz::Outcomes::default();
    let (conf, json_path) = (format!("{name}.conf"), format!("{name}.json"));
    let target = format!("{name}_config");
    fuzz::run(&target, inputs(), |(text, json)| {
        let path = if json { &json_path } else { &conf };
        let parsed = parse(&text, path);
        tally(&outcomes, &parsed);
        if let Err(e) = parsed
            && !e.to_string().contains(path.as_str())
        {
            return Err(format!("error does not name the file: {e}"));
        }
        Ok(())
    });
    outcomes.print(&target);
    assert!(outcomes.ok() > 0, "no {name} config parsed");
}

/// The server's config, as `signet-server run -config` reads it (HCL or JSON by the name).
#[test]
fn server_config() {
    let args = signet_server::config::RunArgs::default();
    typed_config("server", |text, path| {
        signet_server::config::Config::parse(text, path, &args)
    });
}

/// The agent's config, as `signet-agent run -config` reads it.
#[test]
fn agent_config() {
    let args = signet_agent::config::RunArgs::default();
    typed_config("agent", |text, path| {
        signet_agent::config::Config::parse(text, path, &args)
    });
}
