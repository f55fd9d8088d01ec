//! The trust bundle in a ConfigMap of a real kube-apiserver: `BundlePublisher
//! "k8s_configmap"` (server-side apply, creates and recreates the ConfigMap; `pem` byte for
//! byte what `signet-server bundle show` prints, `spiffe`, `jwks`) and `Notifier "k8sbundle"`
//! (patches a ConfigMap that exists, keeping its other keys); a CA rotation under a short
//! `ca_ttl` reaches the ConfigMap within seconds; an agent bootstraps from the published
//! bundle, as SPIRE's charts mount it at `trust_bundle_path`.
//!
//! Ignored in `cargo test --workspace` (they need the binaries `tests/interop/build.sh`
//! builds); `tests/interop/run.sh 80` runs them with `--ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use signet_agent::run::Agent;
use signet_common::bundle::{from_spiffe_json, parse_pem_certs};
use signet_common::clock::SystemClock;
use signet_common::id::parse_trust_domain;
use signet_tests::kube::{KubeCluster, PodFixture, attest_psat, psat_agent_config, yaml_to_json};
use signet_tests::{Options, TestServer};

/// `signet-server bundle show` (PEM) against `server`, run in-process: exactly its stdout.
async fn bundle_show(server: &TestServer) -> String {
    server.cli(&["bundle", "show"]).await.0.unwrap()
}

fn namespace(kube: &KubeCluster, ns: &str) {
    kube.apply(&serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
    }));
}

async fn configmaps(kube: &KubeCluster, ns: &str) -> kube::Api<ConfigMap> {
    kube::Api::namespaced(kube.client().await, ns)
}

/// Waits (at most `within`) until ConfigMap `name` holds `key` and `f` accepts its value.
async fn wait_for_key(
    api: &kube::Api<ConfigMap>,
    name: &str,
    key: &str,
    within: Duration,
    f: impl Fn(&str) -> bool,
) -> ConfigMap {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Some(cm)) = api.get_opt(name).await
            && cm
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .is_some_and(|v| f(v))
        {
            return cm;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ConfigMap {name} key {key} not as wanted within {within:?}: {:?}",
            api.get_opt(name).await.ok().flatten().and_then(|c| c.data)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn value(cm: &ConfigMap, key: &str) -> String {
    cm.data.as_ref().unwrap()[key].clone()
}

fn publisher(kube: &KubeCluster, ns: &str) -> String {
    let kc = kube.info.kubeconfig.display();
    format!(
        r#"BundlePublisher "k8s_configmap" {{
        plugin_data {{
            clusters = {{
                "pem" = {{
                    configmap_name = "spire-bundle"
                    configmap_key = "bundle.crt"
                    namespace = "{ns}"
                    format = "pem"
                    kubeconfig_path = "{kc}"
                }}
                "spiffe" = {{
                    configmap_name = "trust-bundle"
                    configmap_key = "bundle.spiffe"
                    namespace = "{ns}"
                    format = "spiffe"
                    kubeconfig_path = "{kc}"
                    refresh_hint = "2m"
                }}
                "jwks" = {{
                    configmap_name = "trust-bundle-jwks"
                    configmap_key = "bundle.jwks"
                    namespace = "{ns}"
                    format = "jwks"
                    kubeconfig_path = "{kc}"
                }}
            }}
        }}
    }}"#
    )
}

#[tokio::test]
#[ignore = "needs kube-apiserver (tests/interop/build.sh); run by tests/interop/run.sh 80"]
async fn k8s_configmap_creates_the_bundle_configmaps_and_recreates_a_deleted_one() {
    let kube = KubeCluster::shared();
    let ns = "publish";
    namespace(kube, ns);
    let server = TestServer::start(Options {
        plugins: vec![
            publisher(kube, ns),
            kube.psat_server_plugin("c1", &[&format!("{ns}:spire-agent")]),
        ],
        publish_interval: Some(Duration::from_secs(1)),
        ..Options::default()
    })
    .await;
    let shown = bundle_show(&server).await;
    assert!(
        shown.starts_with("-----BEGIN CERTIFICATE-----\n"),
        "{shown}"
    );
    let api = configmaps(kube, ns).await;

    let cm = wait_for_key(
        &api,
        "spire-bundle",
        "bundle.crt",
        Duration::from_secs(10),
        |_| true,
    )
    .await;
    assert_eq!(
        value(&cm, "bundle.crt"),
        shown,
        "PEM byte-identical to `bundle show`"
    );
    let managers: Vec<String> = cm
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["spire-bundlepublisher-k8s_configmap"]);

    let roots = server.roots().await;
    let cm = wait_for_key(
        &api,
        "trust-bundle",
        "bundle.spiffe",
        Duration::from_secs(10),
        |_| true,
    )
    .await;
    let td = parse_trust_domain("example.org").unwrap();
    let spiffe = from_spiffe_json(td, &value(&cm, "bundle.spiffe")).unwrap();
    let spiffe_roots: Vec<Vec<u8>> = spiffe
        .x509_authorities
        .iter()
        .map(|a| a.der.clone())
        .collect();
    assert_eq!(spiffe_roots, roots);
    assert_eq!(spiffe.refresh_hint, 120);
    assert!(
        !spiffe.jwt_authorities.is_empty(),
        "the JWT keys are in the SPIFFE bundle"
    );

    let cm = wait_for_key(
        &api,
        "trust-bundle-jwks",
        "bundle.jwks",
        Duration::from_secs(10),
        |_| true,
    )
    .await;
    let jwks: serde_json::Value = serde_json::from_str(&value(&cm, "bundle.jwks")).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(
        keys.iter().filter(|k| k.get("x5c").is_some()).count(),
        roots.len()
    );
    assert!(
        keys.iter().any(|k| k.get("kid").is_some()),
        "JWT keys carry their kid"
    );
    // The x5c certificates are the roots.
    let x5c: Vec<Vec<u8>> = keys
        .iter()
        .filter_map(|k| k["x5c"][0].as_str())
        .map(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).unwrap())
        .collect();
    assert_eq!(x5c, roots);

    // Deleted: created again by the next write.
    api.delete("spire-bundle", &Default::default())
        .await
        .unwrap();
    let cm = wait_for_key(
        &api,
        "spire-bundle",
        "bundle.crt",
        Duration::from_secs(10),
        |_| true,
    )
    .await;
    assert_eq!(value(&cm, "bundle.crt"), shown);
    // Edited by hand: restored.
    let patch = serde_json::json!({"data": {"bundle.crt": "tampered"}});
    api.patch(
        "spire-bundle",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    wait_for_key(
        &api,
        "spire-bundle",
        "bundle.crt",
        Duration::from_secs(10),
        |v| v == shown,
    )
    .await;

    // An agent pod bootstraps from the published bundle (SPIRE's charts mount the
    // ConfigMap at trust_bundle_path) and attests with k8s_psat.
    kube.agent_pod(&PodFixture::new(
        ns,
        "spire-agent",
        "publish-node",
        "spire-agent-1",
    ));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.crt");
    std::fs::write(&bundle, value(&cm, "bundle.crt")).unwrap();
    let token = dir.path().join("token");
    kube.write_token(
        &token,
        ns,
        "spire-agent",
        "spire-agent-1",
        &["spire-server"],
    );
    let config = psat_agent_config(
        server.server().tcp_addr.port(),
        dir.path(),
        "c1",
        &token,
        &bundle,
    );
    let agent = Agent::start(config, Arc::new(SystemClock)).await.unwrap();
    assert!(
        agent
            .agent_id
            .path()
            .starts_with("/spire/agent/k8s_psat/c1/")
    );
    agent.shutdown().await.unwrap();
}

#[tokio::test]
#[ignore = "needs kube-apiserver (tests/interop/build.sh); run by tests/interop/run.sh 80"]
async fn k8sbundle_patches_the_existing_configmap_and_creates_none() {
    let kube = KubeCluster::shared();
    let ns = "notify";
    namespace(kube, ns);
    kube.apply(&serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "spire-bundle", "namespace": ns, "labels": {"team": "x"}},
        "data": {"bundle.crt": "", "other": "kept"}
    }));
    let kc = kube.info.kubeconfig.display();
    let server = TestServer::start(Options {
        plugins: vec![format!(
            r#"Notifier "k8sbundle" {{
        plugin_data {{
            namespace = "{ns}"
            kube_config_file_path = "{kc}"
            clusters = [
                {{ namespace = "{ns}", config_map = "absent", kube_config_file_path = "{kc}" }},
            ]
        }}
    }}"#
        )],
        publish_interval: Some(Duration::from_secs(1)),
        ..Options::default()
    })
    .await;
    let shown = bundle_show(&server).await;
    let api = configmaps(kube, ns).await;
    let cm = wait_for_key(
        &api,
        "spire-bundle",
        "bundle.crt",
        Duration::from_secs(10),
        |v| v == shown,
    )
    .await;
    assert_eq!(value(&cm, "other"), "kept", "the other keys are left alone");
    assert_eq!(cm.metadata.labels.as_ref().unwrap()["team"], "x");
    // Its agents read the same PEM SPIRE's notifier writes.
    assert_eq!(
        parse_pem_certs(&value(&cm, "bundle.crt")).unwrap(),
        server.roots().await
    );
    // k8sbundle never creates a ConfigMap: the listed one that does not exist stays absent
    // (the server logs the failed update and keeps trying).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(api.get_opt("absent").await.unwrap().is_none());
}

#[tokio::test]
#[ignore = "needs kube-apiserver (tests/interop/build.sh); run by tests/interop/run.sh 80"]
async fn a_ca_rotation_reaches_the_configmap_within_seconds() {
    let kube = KubeCluster::shared();
    let ns = "rotate";
    namespace(kube, ns);
    // The default 30 s between unchanged writes: only the bundle-change push can be fast.
    let server = TestServer::start(Options {
        server_lines: vec![
            "ca_ttl = \"1m\"".into(),
            "default_x509_svid_ttl = \"10s\"".into(),
        ],
        plugins: vec![publisher(kube, ns)],
        ..Options::default()
    })
    .await;
    let api = configmaps(kube, ns).await;
    let first = server.roots().await;
    assert_eq!(first.len(), 1);
    wait_for_key(
        &api,
        "spire-bundle",
        "bundle.crt",
        Duration::from_secs(10),
        |v| parse_pem_certs(v).unwrap() == first,
    )
    .await;

    // The next CA is prepared (its root joins the bundle) at half the CA's life.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let grown = loop {
        let roots = server.roots().await;
        if roots.len() > first.len() {
            break roots;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the CA did not rotate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let changed_at = tokio::time::Instant::now();
    let cm = wait_for_key(
        &api,
        "spire-bundle",
        "bundle.crt",
        Duration::from_secs(5),
        |v| parse_pem_certs(v).unwrap() == grown,
    )
    .await;
    let took = changed_at.elapsed();
    assert_eq!(value(&cm, "bundle.crt"), bundle_show(&server).await);
    eprintln!("new root in the ConfigMap {took:?} after it entered the bundle");
}

#[tokio::test]
#[ignore = "needs kube-apiserver (tests/interop/build.sh); run by tests/interop/run.sh 80"]
async fn the_server_rbac_of_the_manifests_is_enough_to_attest_and_publish() {
    let kube = KubeCluster::shared();
    // conf/k8s/server.yaml's namespace, service account and RBAC, applied as written.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conf/k8s/server.yaml"
    ))
    .unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let rbac: Vec<serde_json::Value> = docs
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some(
                    "Namespace"
                        | "ServiceAccount"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "Role"
                        | "RoleBinding"
                )
            )
        })
        .map(yaml_to_json)
        .collect();
    assert_eq!(rbac.len(), 6);
    kube.apply(&serde_json::Value::Array(rbac));
    kube.apply(&serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "unprivileged", "namespace": "signet"}
    }));
    let dir = tempfile::tempdir().unwrap();
    let server_kc = dir.path().join("signet-server.kubeconfig");
    kube.service_account_kubeconfig("signet", "signet-server", &server_kc);
    let nobody_kc = dir.path().join("unprivileged.kubeconfig");
    kube.service_account_kubeconfig("signet", "unprivileged", &nobody_kc);
    let psat = |cluster: &str, kc: &std::path::Path| {
        format!(
            r#""{cluster}" = {{
                    service_account_allow_list = ["signet:signet-agent"]
                    kube_config_file = "{}"
                }}"#,
            kc.display()
        )
    };
    let server = TestServer::start(Options {
        plugins: vec![
            format!(
                "NodeAttestor \"k8s_psat\" {{\n plugin_data {{\n clusters = {{\n {}\n {}\n }}\n }}\n }}",
                psat("demo-cluster", &server_kc),
                psat("unprivileged", &nobody_kc)
            ),
            format!(
                r#"BundlePublisher "k8s_configmap" {{
        plugin_data {{
            clusters = {{
                "demo-cluster" = {{
                    configmap_name = "signet-bundle"
                    configmap_key = "bundle.crt"
                    namespace = "signet"
                    format = "pem"
                    kubeconfig_path = "{}"
                }}
            }}
        }}
    }}"#,
                server_kc.display()
            ),
        ],
        publish_interval: Some(Duration::from_secs(1)),
        ..Options::default()
    })
    .await;
    let shown = bundle_show(&server).await;
    let api = configmaps(kube, "signet").await;
    wait_for_key(
        &api,
        "signet-bundle",
        "bundle.crt",
        Duration::from_secs(10),
        |v| v == shown,
    )
    .await;

    kube.agent_pod(&PodFixture::new(
        "signet",
        "signet-agent",
        "rbac-node",
        "signet-agent-q2w3e",
    ));
    let token = kube.token(
        "signet",
        "signet-agent",
        Some("signet-agent-q2w3e"),
        &["spire-server"],
        600,
    );
    let (identity, _) = attest_psat(&server, "demo-cluster", &token).await.unwrap();
    assert!(
        identity
            .id
            .path()
            .starts_with("/spire/agent/k8s_psat/demo-cluster/")
    );
    // Without those roles the same check is refused by the API server, and says so.
    let err = attest_psat(&server, "unprivileged", &token)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert!(
        err.message().contains(
            "unable to query token review API: tokenreviews.authentication.k8s.io is forbidden"
        ),
        "{}",
        err.message()
    );
}
