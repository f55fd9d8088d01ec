use super::*;

fn args() -> RunArgs {
    RunArgs::default()
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.conf", &args())
}

const MINIMAL: &str = r#"
server {
    trust_domain = "example.org"
    data_dir = "/tmp/x"
}
plugins {
    DataStore "sled" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
"#;

#[test]
fn sample_config_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/server/server.conf");
    let c = Config::load(&RunArgs {
        common: CommonOverrides::with_config(path),
        ..args()
    })
    .unwrap();
    assert_eq!(c.trust_domain.as_str(), "example.org");
    assert_eq!(c.bind_port, 8081);
    assert!(c.join_token);
    assert_eq!(c.process.health.as_ref().map(|h| h.bind_port), Some(8080));
    assert!(matches!(c.key_manager, KeyManagerConfig::Disk { .. }));
}

#[test]
fn minimal_config_gets_spire_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.bind_address, "0.0.0.0");
    assert_eq!(c.bind_port, 8081);
    assert_eq!(c.socket_path, PathBuf::from(DEFAULT_SOCKET_PATH));
    assert_eq!(c.ca.ca_ttl, Duration::from_secs(86_400));
    assert_eq!(c.ca.default_x509_svid_ttl, Duration::from_secs(3600));
    assert_eq!(c.ca.default_jwt_svid_ttl, Duration::from_secs(300));
    assert_eq!(c.ca.agent_ttl, Duration::from_secs(3600));
    assert_eq!(c.ca.key_type, KeyType::EcP256);
    assert_eq!(
        c.datastore,
        DataStoreConfig::Sled {
            directory: "/tmp/x/datastore".into(),
            cache_capacity: 64 << 20,
        }
    );
    assert!(c.process.health.is_none());
}

#[test]
fn unknown_key_is_named_with_the_file() {
    let text = MINIMAL.replace("data_dir", "bogus_key = 1\n data_dir");
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("bogus_key") && err.contains("test.conf"),
        "{err}"
    );
}

#[test]
fn sled_cache_capacity_is_read_in_mib_and_bounded() {
    let with = |value: &str| {
        MINIMAL.replace(
            "DataStore \"sled\" {\n        plugin_data {}",
            &format!(
                "DataStore \"sled\" {{\n        plugin_data {{ cache_capacity_mb = {value} }}"
            ),
        )
    };
    let c = parse(&with("16")).unwrap();
    assert!(matches!(
        c.datastore,
        DataStoreConfig::Sled { cache_capacity, .. } if cache_capacity == 16 << 20
    ));
    let err = parse(&with("0")).unwrap_err().to_string();
    assert!(err.contains("cache_capacity_mb"), "{err}");
    for bad in ["-1", "\"big\"", "1048577"] {
        assert!(parse(&with(bad)).is_err(), "{bad}");
    }
}

#[test]
fn unknown_plugin_data_key_is_named() {
    let text = MINIMAL.replace(
        "DataStore \"sled\" {\n        plugin_data {}",
        "DataStore \"sled\" {\n        plugin_data {\n nope = \"x\"\n }",
    );
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("DataStore"), "{err}");
}

#[test]
fn bad_values_are_refused() {
    for (from, to, needle) in [
        (r#""example.org""#, r#""Bad Domain""#, "trust_domain"),
        ("data_dir", "ca_ttl = \"soon\"\n data_dir", "ca_ttl"),
        (
            "data_dir",
            "ca_key_type = \"rsa-1024\"\n data_dir",
            "ca_key_type",
        ),
        ("data_dir", "log_level = \"LOUD\"\n data_dir", "log_level"),
    ] {
        let err = parse(&MINIMAL.replace(from, to)).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn missing_plugins_are_refused() {
    let err = parse("server {\n trust_domain = \"example.org\"\n data_dir = \"/x\"\n}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("DataStore"), "{err}");
}

#[test]
fn flags_override_the_file() {
    let a = RunArgs {
        common: CommonOverrides {
            server_port: Some(9999),
            trust_domain: Some("other.org".into()),
            ..CommonOverrides::default()
        },
        ..args()
    };
    let c = Config::parse(MINIMAL, "t", &a).unwrap();
    assert_eq!((c.bind_port, c.trust_domain.as_str()), (9999, "other.org"));
}

#[test]
fn upstream_disk_is_parsed() {
    let text = MINIMAL.replace(
        "NodeAttestor",
        r#"UpstreamAuthority "disk" {
            plugin_data {
                cert_file_path = "/c.pem"
                key_file_path = "/k.pem"
            }
        }
        NodeAttestor"#,
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.ca.upstream.unwrap().cert_file_path,
        PathBuf::from("/c.pem")
    );
}

#[test]
fn expands_environment_variables() {
    let home = std::env::var("HOME").unwrap_or_default();
    assert_eq!(
        expand_env("a=$HOME b=${HOME} c=$ d"),
        format!("a={home} b={home} c=$ d")
    );
}

const ISTIO_CA: &str = r#"
istio_ca {
    token_issuer = "https://kubernetes.default.svc.cluster.local"
    token_audience = "istio-ca"
    jwks_path = "/etc/signet/k8s-jwks.json"
    max_validity = "24h"
    default_validity = "12h"
    server_dns_names = ["signet-server.signet.svc"]
}
"#;

#[test]
fn istio_ca_block_is_parsed() {
    let c = parse(&format!("{MINIMAL}{ISTIO_CA}")).unwrap();
    assert_eq!(
        c.istio_ca,
        Some(IstioCaConfig {
            token_issuer: "https://kubernetes.default.svc.cluster.local".into(),
            token_audience: "istio-ca".into(),
            jwks_path: "/etc/signet/k8s-jwks.json".into(),
            max_validity: Duration::from_secs(24 * 3600),
            default_validity: Duration::from_secs(12 * 3600),
            server_dns_names: vec!["signet-server.signet.svc".into()],
        })
    );
    assert!(parse(MINIMAL).unwrap().istio_ca.is_none());
}

#[test]
fn istio_ca_defaults() {
    let text = format!(
        "{MINIMAL}istio_ca {{\n token_issuer = \"https://k8s\"\n jwks_path = \"/j.json\"\n}}\n"
    );
    let c = parse(&text).unwrap().istio_ca.unwrap();
    assert_eq!(c.token_audience, "istio-ca");
    assert_eq!(c.max_validity, Duration::from_secs(24 * 3600));
    assert_eq!(c.default_validity, Duration::from_secs(24 * 3600));
    assert!(c.server_dns_names.is_empty());
}

#[test]
fn istio_ca_unknown_key_is_named_with_the_file() {
    let text = format!("{MINIMAL}{}", ISTIO_CA.replace("max_validity", "max_ttl"));
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        err.contains("max_ttl") && err.contains("test.conf"),
        "{err}"
    );
}

#[test]
fn istio_ca_bad_values_are_refused() {
    for (from, to, needle) in [
        (
            "token_issuer = \"https://kubernetes.default.svc.cluster.local\"",
            "",
            "istio_ca.token_issuer is required",
        ),
        (
            "jwks_path = \"/etc/signet/k8s-jwks.json\"",
            "",
            "istio_ca.jwks_path is required",
        ),
        ("\"istio-ca\"", "\"\"", "istio_ca.token_audience"),
        ("\"12h\"", "\"48h\"", "default_validity must not exceed"),
        ("\"24h\"", "\"forever\"", "istio_ca.max_validity"),
        ("\"12h\"", "\"0s\"", "istio_ca.default_validity"),
        ("signet-server.signet.svc", "bad name", "server_dns_names"),
    ] {
        let text = format!("{MINIMAL}{}", ISTIO_CA.replace(from, to));
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(needle) && err.contains("test.conf"),
            "{needle}: {err}"
        );
    }
}

#[test]
fn spire_one_line_syntax_parses_like_the_multi_line_form() {
    let one_line = r#"
server { trust_domain = "example.org" data_dir = "/tmp/x" }
plugins {
    NodeAttestor "join_token" { plugin_data {} }                      # nested block on one line
    KeyManager "disk" { plugin_data { keys_path = "/opt/spire/data/keys.json" } }
    DataStore "sled" { plugin_data { directory = "/opt/signet/data" } }
}
health_checks { listener_enabled = true, bind_address = "0.0.0.0" bind_port = "8080" }
"#;
    let multi = r#"
server {
    trust_domain = "example.org"
    data_dir = "/tmp/x"
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            keys_path = "/opt/spire/data/keys.json"
        }
    }
    DataStore "sled" {
        plugin_data {
            directory = "/opt/signet/data"
        }
    }
}
health_checks {
    listener_enabled = true
    bind_address = "0.0.0.0"
    bind_port = "8080"
}
"#;
    let (a, b) = (parse(one_line).unwrap(), parse(multi).unwrap());
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_eq!(
        a.key_manager,
        KeyManagerConfig::Disk {
            keys_path: "/opt/spire/data/keys.json".into()
        }
    );
    assert_eq!(a.process.health.map(|h| h.bind_port), Some(8080));
}

#[test]
fn malformed_files_name_file_line_and_column() {
    let err = parse("server {\n  trust_domain = \"example.org\"\n  data_dir = [1 2]\n}")
        .unwrap_err()
        .to_string();
    assert!(err.contains("test.conf:3:17"), "{err}");
}
