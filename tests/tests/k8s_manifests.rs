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

/// A server manifest: its account and RBAC, its config, Service and StatefulSet, and `more`.
fn has_server_kinds(docs: &[Yaml], more: &[&str]) {
    let kinds = kinds(docs);
    let server = [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "StatefulSet",
    ];
    for k in server.iter().chain(more) {
        assert!(
            kinds.iter().any(|have| have == k),
            "{k} missing from {kinds:?}"
        );
    }
}

#[test]
fn server_manifest_is_a_statefulset_whose_config_the_server_accepts() {
    let docs = load("k8s/server.yaml");
    has_server_kinds(&docs, &[]);
    let config = Config::parse(
        config_map_entry(&docs, "server.conf"),
        "k8s/server.yaml",
        &RunArgs::default(),
    )
    .unwrap();
    assert_eq!(config.bind_port, 8081);
    assert_eq!(config.trust_domain.as_str(), "example.org");
    assert!(
        !config.join_token,
        "agents attest with k8s_psat, not join tokens"
    );
    let psat = config.k8s_psat.as_ref().expect("k8s_psat is configured");
    let cluster = &psat["demo-cluster"];
    assert_eq!(cluster.audience, ["spire-server"]);
    assert_eq!(cluster.kube_config_file, None, "in-cluster credentials");
    assert!(
        cluster
            .service_account_allow_list
            .contains("signet:signet-agent")
    );
    let publisher = &config.bundle_publishers[0];
    assert_eq!(
        (
            publisher.plugin,
            publisher.namespace.as_str(),
            publisher.name.as_str(),
            publisher.key.as_str(),
            publisher.format
        ),
        (
            "k8s_configmap",
            "signet",
            "signet-bundle",
            "bundle.crt",
            signet_server::publish::BundleFormat::Pem
        )
    );
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

/// The rules of `kind`/`name` as (api group, resource, verb) triples.
fn rules(docs: &[Yaml], kind: &str, name: &str) -> Vec<(String, String, String)> {
    let role = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("{kind} {name}"));
    let mut out = vec![];
    for rule in role["rules"].as_vec().unwrap() {
        let strs = |k: &str| -> Vec<String> {
            rule[k]
                .as_vec()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        for g in strs("apiGroups") {
            for r in strs("resources") {
                for v in strs("verbs") {
                    out.push((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn binds(docs: &[Yaml], kind: &str, role: &str, sa: (&str, &str)) -> bool {
    docs.iter().any(|d| {
        d["kind"].as_str() == Some(kind)
            && d["roleRef"]["name"].as_str() == Some(role)
            && d["subjects"].as_vec().unwrap().iter().any(|s| {
                s["kind"].as_str() == Some("ServiceAccount")
                    && s["name"].as_str() == Some(sa.1)
                    && s["namespace"].as_str() == Some(sa.0)
            })
    })
}

#[test]
fn server_rbac_covers_token_review_pods_nodes_and_the_bundle_configmap() {
    for file in ["k8s/server.yaml", "k8s/server-ha.yaml"] {
        server_rbac_in(&load(file));
    }
}

fn server_rbac_in(docs: &[Yaml]) {
    let cluster = rules(docs, "ClusterRole", "signet-server");
    for want in [
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("", "pods", "get"),
        ("", "nodes", "get"),
    ] {
        let want = (want.0.to_owned(), want.1.to_owned(), want.2.to_owned());
        assert!(cluster.contains(&want), "{want:?} missing from {cluster:?}");
    }
    let ns = rules(docs, "Role", "signet-server-bundle");
    for verb in ["get", "patch", "create"] {
        let want = (String::new(), "configmaps".to_owned(), verb.to_owned());
        assert!(ns.contains(&want), "{want:?} missing from {ns:?}");
    }
    let sa = ("signet", "signet-server");
    assert!(binds(docs, "ClusterRoleBinding", "signet-server", sa));
    assert!(binds(docs, "RoleBinding", "signet-server-bundle", sa));
}

#[test]
fn agent_manifest_attests_with_the_projected_token_the_server_accepts() {
    let agent_docs = load("k8s/agent.yaml");
    let server_docs = load("k8s/server.yaml");
    let agent = signet_agent::config::Config::parse(
        config_map_entry(&agent_docs, "agent.conf"),
        "k8s/agent.yaml",
        &Default::default(),
    )
    .unwrap();
    let server = Config::parse(
        config_map_entry(&server_docs, "server.conf"),
        "k8s/server.yaml",
        &RunArgs::default(),
    )
    .unwrap();
    let signet_agent::config::NodeAttestorConfig::K8sPsat(psat) = &agent.node_attestor else {
        panic!("the agent attests with k8s_psat");
    };
    let ds = agent_docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("DaemonSet"))
        .unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let volumes = pod["volumes"].as_vec().unwrap();
    let mount = |volume: &str| {
        container["volumeMounts"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|m| m["name"].as_str() == Some(volume))
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("volume {volume} is mounted"))
            .to_owned()
    };
    // The projected token: where the agent reads it, for the audience the server checks.
    let projected = volumes
        .iter()
        .find(|v| !v["projected"].is_badvalue())
        .expect("a projected token volume");
    let token = &projected["projected"]["sources"][0]["serviceAccountToken"];
    let token_file = PathBuf::from(mount(projected["name"].as_str().unwrap()))
        .join(token["path"].as_str().unwrap());
    assert_eq!(psat.token_path, token_file);
    let cluster = &server.k8s_psat.as_ref().unwrap()[&psat.cluster];
    assert!(
        cluster
            .audience
            .iter()
            .any(|a| Some(a.as_str()) == token["audience"].as_str())
    );
    let account = format!(
        "{}:{}",
        ds["metadata"]["namespace"].as_str().unwrap(),
        pod["serviceAccountName"].as_str().unwrap()
    );
    assert!(
        cluster.service_account_allow_list.contains(&account),
        "{account}"
    );
    // No join-token Secret any more.
    assert!(
        volumes.iter().all(|v| v["secret"].is_badvalue()),
        "{volumes:?}"
    );
    assert!(!kinds(&agent_docs).iter().any(|k| k == "Secret"));
    // The bootstrap bundle is the ConfigMap the server publishes.
    let publisher = &server.bundle_publishers[0];
    let bundle = volumes
        .iter()
        .find(|v| v["configMap"]["name"].as_str() == Some(publisher.name.as_str()))
        .expect("the published bundle ConfigMap is mounted");
    let bundle_file = PathBuf::from(mount(bundle["name"].as_str().unwrap())).join(&publisher.key);
    assert_eq!(
        agent.trust_bundle,
        signet_agent::config::TrustBundleSource::Path(bundle_file)
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

fn find<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("a {kind}"))
}

#[test]
fn ha_server_manifest_runs_two_replicas_on_the_postgresql_named_by_its_secret() {
    let docs = load("k8s/server-ha.yaml");
    has_server_kinds(&docs, &["Secret", "PodDisruptionBudget"]);
    let sts = find(&docs, "StatefulSet");
    assert_eq!(sts["spec"]["replicas"].as_i64(), Some(2));
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--expand-env"), "{args:?}");
    // The connection string: from the Secret, through the container's environment, into
    // server.conf (as --expand-env does).
    let env = &container["env"][0];
    let var = env["name"].as_str().unwrap();
    let secret_ref = &env["valueFrom"]["secretKeyRef"];
    let secret = find(&docs, "Secret");
    assert_eq!(
        secret["metadata"]["name"].as_str(),
        secret_ref["name"].as_str()
    );
    let connection_string = secret["stringData"][secret_ref["key"].as_str().unwrap()]
        .as_str()
        .expect("the Secret holds the referenced key");
    let text = config_map_entry(&docs, "server.conf");
    let placeholder = format!("${{{var}}}");
    assert!(
        text.contains(&placeholder),
        "server.conf reads {placeholder}"
    );
    let config = Config::parse(
        &text.replace(&placeholder, connection_string),
        "k8s/server-ha.yaml",
        &RunArgs::default(),
    )
    .unwrap();
    let signet_server::config::DataStoreConfig::Sql {
        database_type,
        connection_string: configured,
        ..
    } = &config.datastore
    else {
        panic!("DataStore \"sql\": {:?}", config.datastore);
    };
    assert_eq!(
        (database_type.as_str(), configured.as_str()),
        ("postgres", connection_string)
    );
    // Each replica has its own data_dir volume (CA keys, server_id).
    let claims = sts["spec"]["volumeClaimTemplates"].as_vec().unwrap();
    let data_mount = container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| m["name"].as_str() == claims[0]["metadata"]["name"].as_str())
        .expect("the claimed volume is mounted");
    assert_eq!(
        PathBuf::from(data_mount["mountPath"].as_str().unwrap()),
        config.data_dir
    );
}

#[test]
fn agents_reach_both_ha_replicas_through_the_headless_service_they_already_name() {
    let ha = load("k8s/server-ha.yaml");
    let single = load("k8s/server.yaml");
    let agent = signet_agent::config::Config::parse(
        config_map_entry(&load("k8s/agent.yaml"), "agent.conf"),
        "k8s/agent.yaml",
        &Default::default(),
    )
    .unwrap();
    let service = find(&ha, "Service");
    assert_eq!(
        service["spec"]["clusterIP"].as_str(),
        Some("None"),
        "headless: the name resolves to every replica"
    );
    let name = format!(
        "{}.{}.svc",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"].as_str().unwrap()
    );
    assert_eq!(agent.server_address, name);
    assert_eq!(
        service["spec"]["selector"]["app"].as_str(),
        find(&ha, "StatefulSet")["spec"]["template"]["metadata"]["labels"]["app"].as_str()
    );
    // The same names and bundle ConfigMap as the single server: agent.yaml works with either.
    for kind in ["ServiceAccount", "ConfigMap", "Service", "StatefulSet"] {
        assert_eq!(
            find(&ha, kind)["metadata"]["name"].as_str(),
            find(&single, kind)["metadata"]["name"].as_str(),
            "{kind}"
        );
    }
    let parse = |docs: &[Yaml]| {
        let text = config_map_entry(docs, "server.conf")
            .replace("${SIGNET_DB_CONNECTION_STRING}", "host=db");
        Config::parse(&text, "k8s", &RunArgs::default()).unwrap()
    };
    let (ha_config, single_config) = (parse(&ha), parse(&single));
    assert_eq!(ha_config.bundle_publishers, single_config.bundle_publishers);
    assert_eq!(ha_config.k8s_psat, single_config.k8s_psat);
}

/// Needs kube-apiserver (run by `tests/interop/scenarios/80-k8s-rust.sh` with `--ignored`).
#[tokio::test]
#[ignore = "needs kube-apiserver from tests/interop/build.sh"]
async fn the_real_api_server_accepts_the_ha_manifest_as_written() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::Service;
    let kube = signet_tests::kube::KubeCluster::shared();
    let docs = load("k8s/server-ha.yaml");
    let all: Vec<serde_json::Value> = docs.iter().map(signet_tests::kube::yaml_to_json).collect();
    kube.apply(&serde_json::Value::Array(all));
    let client = kube.client().await;
    let sts = kube::Api::<StatefulSet>::namespaced(client.clone(), "signet")
        .get("signet-server")
        .await
        .unwrap();
    let spec = sts.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let service = kube::Api::<Service>::namespaced(client, "signet")
        .get("signet-server")
        .await
        .unwrap();
    assert_eq!(
        service.spec.unwrap().cluster_ip.as_deref(),
        Some("None"),
        "stored headless"
    );
}
