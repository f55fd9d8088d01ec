//! The Kubernetes and Istio samples parse, hold what they claim, and their embedded Signet
//! configurations are accepted by the real config parsers.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::PathBuf;

use signet_server::config::Config;
use signet_server::config::RunArgs;
use yaml_rust2::{Yaml, YamlLoader};

fn conf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

fn load(rel: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(conf_dir().join(rel)).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn kinds(docs: &[Yaml]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            assert!(
                d["apiVersion"].as_str().is_some(),
                "every document has apiVersion: {d:?}"
            );
            assert!(
                d["metadata"]["name"].as_str().is_some(),
                "every document has a name: {d:?}"
            );
            d["kind"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn config_map_entry<'a>(docs: &'a [Yaml], key: &str) -> &'a str {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some("ConfigMap"))
        .and_then(|d| d["data"][key].as_str())
        .unwrap_or_else(|| panic!("ConfigMap with {key}"))
}

#[test]
fn server_manifest_is_a_statefulset_whose_config_the_server_accepts() {
    let docs = load("k8s/server.yaml");
    let kinds = kinds(&docs);
    for k in [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "StatefulSet",
    ] {
        assert!(
            kinds.iter().any(|have| have == k),
            "{k} missing from {kinds:?}"
        );
    }
    let config = Config::parse(
        config_map_entry(&docs, "server.conf"),
        "k8s/server.yaml",
        &RunArgs::default(),
    )
    .unwrap();
    assert_eq!(config.bind_port, 8081);
    assert_eq!(config.trust_domain.as_str(), "example.org");
    let sts = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("StatefulSet"))
        .unwrap();
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
            .as_str(),
        Some("/ready")
    );
}

#[test]
fn agent_manifest_is_a_daemonset_sharing_the_istio_socket_directory() {
    let docs = load("k8s/agent.yaml");
    let kinds = kinds(&docs);
    assert!(kinds.iter().any(|k| k == "DaemonSet"), "{kinds:?}");
    let agent_conf = config_map_entry(&docs, "agent.conf");
    let config =
        signet_agent::config::Config::parse(agent_conf, "k8s/agent.yaml", &Default::default())
            .unwrap();
    assert_eq!(
        config.socket_path,
        PathBuf::from("/run/secrets/workload-spiffe-uds/socket")
    );
    assert_eq!(
        (
            config.sds.default_svid_name.as_str(),
            config.sds.default_bundle_name.as_str()
        ),
        ("default", "ROOTCA")
    );
    let ds = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .unwrap();
    let volumes = ds["spec"]["template"]["spec"]["volumes"].as_vec().unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["hostPath"]["path"].as_str() == Some("/run/secrets/workload-spiffe-uds"))
    );
}

#[test]
fn istio_federation_agent_config_uses_the_names_istio_documents() {
    let text = std::fs::read_to_string(conf_dir().join("istio/agent-federation.conf")).unwrap();
    let config = signet_agent::config::Config::parse(
        &text,
        "istio/agent-federation.conf",
        &Default::default(),
    )
    .unwrap();
    assert_eq!(config.sds.default_bundle_name, "null");
    assert_eq!(config.sds.default_all_bundles_name, "ROOTCA");
}

#[test]
fn workload_and_istio_samples_parse() {
    let docs = load("k8s/workload.yaml");
    assert_eq!(kinds(&docs), ["Deployment"]);
    let annotations = &docs[0]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["inject.istio.io/templates"].as_str(),
        Some("sidecar,spire")
    );
    let operator = load("istio/istio-operator.yaml");
    assert_eq!(kinds(&operator), ["IstioOperator"]);
    let template = operator[0]["spec"]["values"]["sidecarInjectorWebhook"]["templates"]["spire"]
        .as_str()
        .unwrap();
    let template = YamlLoader::load_from_str(template).unwrap();
    let mounts = &template[0]["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(
        mounts["mountPath"].as_str(),
        Some("/run/secrets/workload-spiffe-uds")
    );
}
