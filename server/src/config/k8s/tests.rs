use std::path::Path;

use crate::config::{Config, ConfigError, RunArgs};
use crate::publish::{BundleFormat, WriteMode};

fn parse(plugins: &str) -> Result<Config, ConfigError> {
    let text = format!(
        r#"
server {{
    trust_domain = "example.org"
    data_dir = "/tmp/x"
}}
plugins {{
    DataStore "sled" {{
        plugin_data {{}}
    }}
    KeyManager "memory" {{
        plugin_data {{}}
    }}
    {plugins}
}}
"#
    );
    Config::parse(&text, "test.conf", &RunArgs::default())
}

fn err(plugins: &str) -> String {
    parse(plugins).unwrap_err().to_string()
}

#[test]
fn k8s_psat_takes_spires_keys_and_defaults() {
    let c = parse(
        r#"NodeAttestor "k8s_psat" {
        plugin_data {
            clusters = {
                "prod" = {
                    service_account_allow_list = ["spire:spire-agent", "spire:other"]
                    kube_config_file = "/etc/kube/config"
                    allowed_node_label_keys = ["zone"]
                    allowed_pod_label_keys = ["app"]
                }
                "dev" = {
                    service_account_allow_list = ["spire:spire-agent"]
                    audience = []
                    use_pod_uid_for_agent_id = true
                }
            }
        }
    }"#,
    )
    .unwrap();
    let clusters = c.k8s_psat.unwrap();
    let prod = &clusters["prod"];
    assert_eq!(prod.audience, ["spire-server"]);
    assert_eq!(
        prod.kube_config_file.as_deref(),
        Some(Path::new("/etc/kube/config"))
    );
    assert!(prod.service_account_allow_list.contains("spire:other"));
    assert!(prod.allowed_node_label_keys.contains("zone"));
    assert!(prod.allowed_pod_label_keys.contains("app"));
    assert!(!prod.use_pod_uid_for_agent_id);
    let dev = &clusters["dev"];
    assert!(dev.audience.is_empty(), "an explicit [] sends no audiences");
    assert_eq!(dev.kube_config_file, None);
    assert!(dev.use_pod_uid_for_agent_id);
    assert!(!c.join_token);
}

#[test]
fn k8s_psat_refusals() {
    let e = err(r#"NodeAttestor "k8s_psat" {
        plugin_data {
            clusters = { "c" = { audience = ["a"] } }
        }
    }"#);
    assert!(
        e.contains(r#"cluster "c" configuration must have at least one service account allowed"#),
        "{e}"
    );
    let e = err(r#"NodeAttestor "k8s_psat" {
        plugin_data {
            clusters = { "c" = { service_account_allow_list = ["a:b"], bogus = 1 } }
        }
    }"#);
    assert!(e.contains("bogus") && e.contains("k8s_psat"), "{e}");
    // No clusters: configured, and every attestation is refused.
    let c = parse("NodeAttestor \"k8s_psat\" {\n plugin_data {}\n }").unwrap();
    assert!(c.k8s_psat.unwrap().is_empty());
}

#[test]
fn k8s_configmap_publisher_per_cluster() {
    let c = parse(
        r#"BundlePublisher "k8s_configmap" {
        plugin_data {
            clusters = {
                "a" = {
                    configmap_name = "spire-bundle"
                    configmap_key = "bundle.crt"
                    namespace = "spire"
                    format = "pem"
                    kubeconfig_path = "/k/a"
                }
                "b" = {
                    configmap_name = "trust"
                    configmap_key = "bundle.json"
                    namespace = "istio-system"
                    format = "spiffe"
                    refresh_hint = "5m"
                }
            }
        }
    }"#,
    )
    .unwrap();
    let t = &c.bundle_publishers;
    assert_eq!(t.len(), 2);
    assert_eq!(
        (
            t[0].plugin,
            t[0].namespace.as_str(),
            t[0].name.as_str(),
            t[0].key.as_str()
        ),
        ("k8s_configmap", "spire", "spire-bundle", "bundle.crt")
    );
    assert_eq!(t[0].format, BundleFormat::Pem);
    assert_eq!(t[0].mode, WriteMode::Apply);
    assert_eq!(t[0].kubeconfig.as_deref(), Some(Path::new("/k/a")));
    assert_eq!(t[1].format, BundleFormat::Spiffe);
    assert_eq!(t[1].kubeconfig, None);
    assert_eq!(t[1].refresh_hint, Some(std::time::Duration::from_secs(300)));
}

#[test]
fn k8s_configmap_requires_spires_four_keys() {
    for (drop, needle) in [
        ("configmap_name", "missing configmap name in cluster \"a\""),
        ("configmap_key", "missing configmap key in cluster \"a\""),
        ("namespace", "missing namespace in cluster \"a\""),
        ("format", "missing bundle format in cluster \"a\""),
    ] {
        let mut keys = vec![
            ("configmap_name", "n"),
            ("configmap_key", "k"),
            ("namespace", "ns"),
            ("format", "pem"),
        ];
        keys.retain(|(k, _)| *k != drop);
        let body: Vec<String> = keys.iter().map(|(k, v)| format!("{k} = \"{v}\"")).collect();
        let e = err(&format!(
            "BundlePublisher \"k8s_configmap\" {{\n plugin_data {{\n clusters = {{ \"a\" = {{ {} }} }}\n }}\n }}",
            body.join(", ")
        ));
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let e = err(r#"BundlePublisher "k8s_configmap" {
        plugin_data {
            clusters = { "a" = { configmap_name = "n", configmap_key = "k", namespace = "ns", format = "der" } }
        }
    }"#);
    assert!(e.contains("unsupported bundle format \"der\""), "{e}");
}

#[test]
fn k8sbundle_notifier_defaults_and_clusters() {
    let c = parse("Notifier \"k8sbundle\" {\n plugin_data {}\n }").unwrap();
    let t = &c.bundle_publishers[0];
    assert_eq!(
        (
            t.plugin,
            t.namespace.as_str(),
            t.name.as_str(),
            t.key.as_str()
        ),
        ("k8sbundle", "spire", "spire-bundle", "bundle.crt")
    );
    assert_eq!(
        (t.format, t.mode),
        (BundleFormat::Pem, WriteMode::PatchExisting)
    );
    assert_eq!(t.kubeconfig, None);

    let c = parse(
        r#"Notifier "k8sbundle" {
        plugin_data {
            clusters = [
                { kube_config_file_path = "/k/1", namespace = "a" },
                { kube_config_file_path = "/k/2", config_map = "b", config_map_key = "ca.pem" },
            ]
        }
    }"#,
    )
    .unwrap();
    let t = &c.bundle_publishers;
    assert_eq!(t.len(), 2, "no root keys set: only the listed clusters");
    assert_eq!(
        (t[0].namespace.as_str(), t[0].name.as_str()),
        ("a", "spire-bundle")
    );
    assert_eq!((t[1].name.as_str(), t[1].key.as_str()), ("b", "ca.pem"));
    assert_eq!(t[1].kubeconfig.as_deref(), Some(Path::new("/k/2")));

    let e = err(r#"Notifier "k8sbundle" {
        plugin_data {
            clusters = [ { namespace = "a" } ]
        }
    }"#);
    assert!(
        e.contains("cluster configuration is missing kube_config_file_path"),
        "{e}"
    );
}
