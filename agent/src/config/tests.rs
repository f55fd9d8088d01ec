use super::*;
use signet_common::telemetry::LogFormat;

fn args() -> RunArgs {
    RunArgs::default()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.conf", &args())
}

const MINIMAL: &str = r#"
agent {
    trust_domain = "example.org"
    server_address = "127.0.0.1"
    server_port = 8081
    insecure_bootstrap = true
}
plugins {
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {}
    }
}
"#;

#[test]
fn sample_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/agent/agent.conf");
    let c = Config::load(&RunArgs {
        common: CommonOverrides::with_config(path),
        ..args()
    })
    .unwrap();
    assert_eq!(c.trust_domain.as_str(), "example.org");
    assert_eq!(c.server_addr(), "127.0.0.1:8081");
    assert_eq!(c.socket_path, PathBuf::from(DEFAULT_SOCKET_PATH));
    assert_eq!(c.trust_bundle, TrustBundleSource::InsecureBootstrap);
    assert_eq!(
        c.key_manager,
        KeyManagerConfig::Disk {
            directory: "./.data/agent".into()
        },
        "keys default to data_dir"
    );
    assert_eq!(c.sds, SdsConfig::default());
    assert!(c.process.health.is_none());
}

#[test]
fn sample_config_matches_the_sample_server() {
    let server = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conf/server/server.conf"
    ))
    .unwrap();
    let agent = Config::load(&RunArgs {
        common: CommonOverrides::with_config(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../conf/agent/agent.conf"
        )),
        ..args()
    })
    .unwrap();
    assert!(server.contains(&format!("trust_domain = \"{}\"", agent.trust_domain)));
    assert!(server.contains(&format!("bind_port = \"{}\"", agent.server_port)));
    assert!(server.contains(&format!("bind_address = \"{}\"", agent.server_address)));
}

#[test]
fn minimal_config_gets_spire_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("."));
    assert_eq!(c.socket_path, PathBuf::from(DEFAULT_SOCKET_PATH));
    assert_eq!(c.process.log_level, "info");
    assert_eq!(c.process.log_format, LogFormat::Text);
    assert_eq!(c.workload_key_type, WorkloadKeyType::EcP256);
    assert_eq!(c.x509_svid_cache_max_size, 1000);
    assert_eq!(c.jwt_svid_cache_max_size, 1000);
    assert_eq!(c.sync_interval, Duration::from_secs(5));
    assert_eq!(c.join_token, None);
    assert_eq!(c.key_manager, KeyManagerConfig::Memory);
    assert_eq!(c.unix_attestor, Some(UnixConfig::default()));
    assert_eq!(c.k8s_attestor, None);
    assert_eq!(c.sds.default_bundle_name, "ROOTCA");
}

#[test]
fn every_documented_key_is_accepted() {
    let text = r#"
agent {
    data_dir = "/var/lib/agent"
    log_level = "DEBUG"
    log_format = "json"
    server_address = "spire-server"
    server_port = "8443"
    socket_path = "/run/agent.sock"
    trust_domain = "example.org"
    trust_bundle_path = "/etc/bundle.pem"
    join_token = "abc"
    workload_x509_svid_key_type = "ec-p384"
    x509_svid_cache_max_size = 7
    jwt_svid_cache_max_size = 9
    sds {
        default_svid_name = "s"
        default_bundle_name = "b"
        default_all_bundles_name = "a"
        disable_spiffe_cert_validation = true
    }
    experimental {
        sync_interval = "2s"
    }
}
plugins {
    KeyManager "disk" {
        plugin_data {
            directory = "/var/lib/agent/keys"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
            workload_size_limit = -1
        }
    }
}
health_checks {
    listener_enabled = true
    bind_port = "8088"
}
telemetry {
    Prometheus {
        port = 9988
    }
}
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.server_addr(), "spire-server:8443");
    assert_eq!(c.process.log_level, "debug");
    assert_eq!(c.process.log_format, LogFormat::Json);
    assert_eq!(
        c.trust_bundle,
        TrustBundleSource::Path("/etc/bundle.pem".into())
    );
    assert_eq!(c.join_token.as_deref(), Some("abc"));
    assert_eq!(c.workload_key_type, WorkloadKeyType::EcP384);
    assert_eq!(
        (c.x509_svid_cache_max_size, c.jwt_svid_cache_max_size),
        (7, 9)
    );
    assert_eq!(c.sync_interval, Duration::from_secs(2));
    assert!(c.sds.disable_spiffe_cert_validation && c.sds.default_svid_name == "s");
    assert_eq!(
        c.key_manager,
        KeyManagerConfig::Disk {
            directory: "/var/lib/agent/keys".into()
        }
    );
    assert_eq!(
        c.unix_attestor,
        Some(UnixConfig {
            discover_workload_path: true,
            workload_size_limit: -1
        })
    );
    let h = c.process.health.unwrap();
    assert_eq!((h.bind_address.as_str(), h.bind_port), ("localhost", 8088));
}

#[test]
fn unknown_key_is_named_with_the_file() {
    let text = MINIMAL.replace("server_address", "bogus_key = 1\n server_address");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("bogus_key") && err.contains("test.conf"),
        "{err}"
    );
}

#[test]
fn unknown_nested_keys_are_named() {
    let text = MINIMAL.replace(
        "insecure_bootstrap = true",
        "insecure_bootstrap = true\n sds {\n nonsense = 1\n }",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("nonsense") && err.contains("test.conf"),
        "{err}"
    );

    let text = MINIMAL.replace(
        "WorkloadAttestor \"unix\" {\n        plugin_data {}",
        "WorkloadAttestor \"unix\" {\n        plugin_data {\n nope = \"x\"\n }",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("WorkloadAttestor") && err.contains("test.conf"),
        "{err}"
    );
}

#[test]
fn exactly_one_trust_bundle_source_is_required() {
    let none = MINIMAL.replace("insecure_bootstrap = true", "");
    let err = parse(&none).unwrap_err().to_string();
    assert!(err.contains("trust_bundle_path"), "{err}");

    let both = MINIMAL.replace(
        "insecure_bootstrap = true",
        "insecure_bootstrap = true\n trust_bundle_path = \"/b.pem\"",
    );
    let err = parse(&both).unwrap_err().to_string();
    assert!(err.contains("mutually exclusive"), "{err}");

    let off = MINIMAL.replace(
        "insecure_bootstrap = true",
        "insecure_bootstrap = false\n trust_bundle_path = \"/b.pem\"",
    );
    assert_eq!(
        parse(&off).unwrap().trust_bundle,
        TrustBundleSource::Path("/b.pem".into())
    );
}

#[test]
fn bad_values_are_refused() {
    for (from, to, needle) in [
        (r#""example.org""#, r#""Bad Domain""#, "trust_domain"),
        (
            "server_port = 8081",
            "server_port = \"http\"",
            "server_port",
        ),
        ("server_port = 8081", "", "server_port"),
        (
            "server_address = \"127.0.0.1\"",
            "",
            "server_address is required",
        ),
        (
            "insecure_bootstrap",
            "workload_x509_svid_key_type = \"rsa-1024\"\n insecure_bootstrap",
            "workload_x509_svid_key_type",
        ),
        (
            "insecure_bootstrap",
            "x509_svid_cache_max_size = 0\n insecure_bootstrap",
            "x509_svid_cache_max_size",
        ),
        (
            "insecure_bootstrap",
            "log_level = \"LOUD\"\n insecure_bootstrap",
            "log_level",
        ),
        (
            "insecure_bootstrap",
            "experimental {\n sync_interval = \"often\"\n }\n insecure_bootstrap",
            "sync_interval",
        ),
    ] {
        let err = parse(&MINIMAL.replace(from, to)).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("test.conf"),
            "{needle}: {err}"
        );
    }
}

#[test]
fn admin_socket_path_is_kept_apart_from_the_public_socket() {
    let with = |lines: &str| {
        MINIMAL.replace(
            "insecure_bootstrap",
            &format!("{lines}\n insecure_bootstrap"),
        )
    };
    let c = parse(&with(
        "socket_path = \"/run/signet/public/api.sock\"\n admin_socket_path = \"/run/signet/admin/api.sock\"",
    ))
    .unwrap();
    assert_eq!(
        c.admin_socket_path,
        Some(PathBuf::from("/run/signet/admin/api.sock"))
    );
    assert_eq!(parse(MINIMAL).unwrap().admin_socket_path, None);
    for admin in [
        "/run/signet/public/admin.sock",
        "/run/signet/public/admin/api.sock",
    ] {
        let err = parse(&with(&format!(
            "socket_path = \"/run/signet/public/api.sock\"\n admin_socket_path = \"{admin}\""
        )))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("admin_socket_path") && err.contains("directory of its own"),
            "{err}"
        );
    }
}

#[test]
fn plugins_are_checked() {
    let no_km = MINIMAL.replace("KeyManager \"memory\"", "Unused \"memory\"");
    assert!(
        parse(&no_km)
            .unwrap_err()
            .to_string()
            .contains("unknown plugin type")
    );
    let bad_name = MINIMAL.replace("NodeAttestor \"join_token\"", "NodeAttestor \"x509pop\"");
    assert!(
        parse(&bad_name)
            .unwrap_err()
            .to_string()
            .contains("unknown plugin name")
    );
    let no_wl = MINIMAL.replace(
        "WorkloadAttestor \"unix\" {\n        plugin_data {}\n    }",
        "",
    );
    assert!(
        parse(&no_wl)
            .unwrap_err()
            .to_string()
            .contains("WorkloadAttestor")
    );
}

#[test]
fn flags_override_the_file() {
    let a = RunArgs {
        common: CommonOverrides {
            server_port: Some(9999),
            trust_domain: Some("other.org".into()),
            socket_path: Some("/s.sock".into()),
            data_dir: Some("/d".into()),
            log_level: Some("warn".into()),
            ..CommonOverrides::default()
        },
        server_address: Some("10.0.0.1".into()),
        join_token: Some("tok".into()),
        trust_bundle: Some("/flag.pem".into()),
    };
    let c = Config::parse(MINIMAL, "t", &a).unwrap();
    assert_eq!(c.server_addr(), "10.0.0.1:9999");
    assert_eq!(c.trust_domain.as_str(), "other.org");
    assert_eq!(c.join_token.as_deref(), Some("tok"));
    assert_eq!(c.socket_path, PathBuf::from("/s.sock"));
    assert_eq!(c.data_dir, PathBuf::from("/d"));
    assert_eq!(c.process.log_level, "warn");
    assert_eq!(
        c.trust_bundle,
        TrustBundleSource::Path("/flag.pem".into()),
        "the flag replaces insecure_bootstrap from the file"
    );
}

#[test]
fn join_token_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-file\n").unwrap();
    let text = MINIMAL.replace(
        "insecure_bootstrap",
        &format!(
            "join_token_file = \"{}\"\n insecure_bootstrap",
            file.display()
        ),
    );
    assert_eq!(
        parse(&text).unwrap().join_token.as_deref(),
        Some("from-file")
    );
}

#[test]
fn ipv6_server_addresses_are_bracketed() {
    let text = MINIMAL.replace("127.0.0.1", "::1");
    assert_eq!(parse(&text).unwrap().server_addr(), "[::1]:8081");
}

#[test]
fn more_servers_are_tried_after_server_address() {
    let text = MINIMAL.replace(
        "server_port = 8081",
        "server_port = 8081\n    server_addresses = [\"b.example:8081\", \"[::1]:9\"]",
    );
    assert_eq!(
        parse(&text).unwrap().server_addrs(),
        ["127.0.0.1:8081", "b.example:8081", "[::1]:9"]
    );
    assert_eq!(parse(MINIMAL).unwrap().server_addrs(), ["127.0.0.1:8081"]);
    for bad in ["b.example", "b.example:0", ":8081", "::1:8081", "b:port"] {
        let text = MINIMAL.replace(
            "server_port = 8081",
            &format!("server_port = 8081\n    server_addresses = [\"{bad}\"]"),
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("agent.server_addresses") && err.contains("host:port"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn expands_environment_variables() {
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(
        expand_env("a=$HOME b=${HOME} c=$ d"),
        format!("a={home} b={home} c=$ d")
    );
}

#[test]
fn k8s_psat_node_attestor_with_spires_default_token_path() {
    let psat = |data: &str| {
        MINIMAL.replace(
            "NodeAttestor \"join_token\" {\n        plugin_data {}",
            &format!("NodeAttestor \"k8s_psat\" {{\n        plugin_data {{\n{data}\n}}"),
        )
    };
    let c = parse(&psat("cluster = \"prod\"")).unwrap();
    assert_eq!(
        c.node_attestor,
        NodeAttestorConfig::K8sPsat(K8sPsatConfig {
            cluster: "prod".into(),
            token_path: "/var/run/secrets/tokens/spire-agent".into(),
        })
    );
    let c = parse(&psat("cluster = \"prod\"\ntoken_path = \"/t/token\"")).unwrap();
    let NodeAttestorConfig::K8sPsat(p) = c.node_attestor else {
        panic!("not k8s_psat")
    };
    assert_eq!(p.token_path, PathBuf::from("/t/token"));
    let err = parse(&psat("token_path = \"/t\"")).unwrap_err().to_string();
    assert!(err.contains("missing required cluster block"), "{err}");
    let err = parse(&psat("cluster = \"c\"\nbogus = 1"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bogus"), "{err}");
    assert_eq!(
        parse(MINIMAL).unwrap().node_attestor,
        NodeAttestorConfig::JoinToken
    );
}

#[test]
fn workload_api_connection_limits_default_and_parse() {
    assert_eq!(parse(MINIMAL).unwrap().conn_limits, ConnLimits::default());
    let text = MINIMAL.replace(
        "insecure_bootstrap = true",
        r#"insecure_bootstrap = true
    workload_api_max_conns_per_uid = 10
    workload_api_max_streams_per_conn = 3
    workload_api_idle_timeout = "30s""#,
    );
    assert_eq!(
        parse(&text).unwrap().conn_limits,
        ConnLimits {
            max_conns_per_uid: 10,
            max_streams_per_conn: 3,
            idle_timeout: Duration::from_secs(30),
        }
    );
    for (line, says) in [
        (
            "workload_api_max_conns_per_uid = 0",
            "agent.workload_api_max_conns_per_uid: expected a number greater than zero, got 0",
        ),
        (
            "workload_api_max_streams_per_conn = 5000000000",
            "agent.workload_api_max_streams_per_conn: expected at most 4294967295, got 5000000000",
        ),
        (
            r#"workload_api_idle_timeout = "soon""#,
            "agent.workload_api_idle_timeout: expected a duration",
        ),
    ] {
        let text = MINIMAL.replace(
            "insecure_bootstrap = true",
            &format!("insecure_bootstrap = true\n    {line}"),
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(says), "{line}: {err}");
    }
}
