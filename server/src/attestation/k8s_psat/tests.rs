//! What k8s_psat decides before and around the API server; the API server's own answers are
//! covered against a real kube-apiserver in `tests/tests/k8s_psat.rs`.

use super::*;
use crate::k8s::testing::{closed_server, kubeconfig, silent_server};

fn td() -> TrustDomain {
    id::parse_trust_domain("example.org").unwrap()
}

fn cluster(kube_config_file: Option<PathBuf>) -> PsatCluster {
    PsatCluster {
        service_account_allow_list: ["spire:spire-agent".to_owned()].into(),
        audience: PsatCluster::default_audience(),
        kube_config_file,
        allowed_node_label_keys: BTreeSet::new(),
        allowed_pod_label_keys: BTreeSet::new(),
        use_pod_uid_for_agent_id: false,
    }
}

fn attestor(kube_config_file: Option<PathBuf>) -> K8sPsatAttestor {
    K8sPsatAttestor::new(td(), [("c1".to_owned(), cluster(kube_config_file))].into())
}

async fn refusal(a: &K8sPsatAttestor, payload: &[u8]) -> (Refusal, String) {
    match a.attest(payload).await.unwrap_err() {
        e @ AttestError::Plugin { code, .. } => (code, e.to_string()),
        other => panic!("not a plugin error: {other:?}"),
    }
}

#[tokio::test]
async fn malformed_payloads_are_invalid_arguments_in_spires_words() {
    let a = attestor(None);
    let cases: [(&[u8], &str); 5] = [
        (b"", "missing attestation payload"),
        (b"{", "failed to unmarshal data payload: "),
        (br#"{"token":"t"}"#, "missing cluster in attestation data"),
        (br#"{"cluster":"c1"}"#, "missing token in attestation data"),
        (
            br#"{"cluster":"other","token":"t"}"#,
            "not configured for cluster \"other\"",
        ),
    ];
    for (payload, want) in cases {
        let (code, msg) = refusal(&a, payload).await;
        assert_eq!(code, Refusal::InvalidArgument, "{msg}");
        assert!(
            msg.starts_with(&format!("failed to attest: nodeattestor(k8s_psat): {want}")),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn no_clusters_refuses_every_cluster() {
    let a = K8sPsatAttestor::new(td(), BTreeMap::new());
    let (code, msg) = refusal(&a, br#"{"cluster":"c1","token":"t"}"#).await;
    assert_eq!(code, Refusal::InvalidArgument);
    assert!(msg.ends_with("not configured for cluster \"c1\""), "{msg}");
}

#[tokio::test]
async fn an_unreachable_api_server_is_an_internal_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = closed_server();
    let a = attestor(Some(kubeconfig(dir.path(), &server)));
    let (code, msg) = refusal(&a, br#"{"cluster":"c1","token":"t"}"#).await;
    assert_eq!(code, Refusal::Internal);
    assert!(
        msg.starts_with("failed to attest: nodeattestor(k8s_psat): unable to validate token with TokenReview API for cluster \"c1\": unable to query token review API: "),
        "{msg}"
    );
    assert!(msg.contains(&server), "{msg}");
}

#[tokio::test]
async fn an_api_server_that_never_answers_is_a_bounded_error() {
    let (server, hold) = silent_server().await;
    let dir = tempfile::tempdir().unwrap();
    let a = attestor(Some(kubeconfig(dir.path(), &server)))
        .with_call_timeout(Duration::from_millis(300));
    let (code, msg) = tokio::time::timeout(
        Duration::from_secs(10),
        refusal(&a, br#"{"cluster":"c1","token":"t"}"#),
    )
    .await
    .expect("attestation must end");
    assert_eq!(code, Refusal::Internal);
    assert!(
        msg.ends_with(&format!(
            "unable to query token review API: no answer from the API server {server}/ within 300ms"
        )),
        "{msg}"
    );
    hold.abort();
}

#[tokio::test]
async fn a_missing_kubeconfig_is_an_internal_error_naming_the_file() {
    let a = attestor(Some("/nonexistent/kubeconfig".into()));
    let (code, msg) = refusal(&a, br#"{"cluster":"c1","token":"t"}"#).await;
    assert_eq!(code, Refusal::Internal);
    assert!(
        msg.contains("unable to get clientset: unable to load kubeconfig /nonexistent/kubeconfig"),
        "{msg}"
    );
}

#[test]
fn usernames_parse_as_spire_parses_them() {
    assert_eq!(
        service_account("system:serviceaccount:spire:spire-agent"),
        Ok(("spire", "spire-agent"))
    );
    assert_eq!(service_account(""), Err("empty username".into()));
    assert_eq!(
        service_account("system:serviceaccount:spire"),
        Err("unexpected username format: system:serviceaccount:spire".into())
    );
    assert_eq!(
        service_account("system:serviceaccount::sa"),
        Err("missing namespace".into())
    );
    assert_eq!(
        service_account("system:serviceaccount:ns:"),
        Err("missing service account name".into())
    );
}

#[test]
fn pod_extras_need_exactly_one_non_empty_value() {
    let mut extra = BTreeMap::new();
    assert_eq!(
        one_extra(&extra, EXTRA_POD_NAME, "name"),
        Err("missing pod name".into())
    );
    extra.insert(EXTRA_POD_UID.to_owned(), vec!["a".into(), "b".into()]);
    assert_eq!(
        one_extra(&extra, EXTRA_POD_UID, "UID"),
        Err("expected 1 UID but got: 2".into())
    );
    extra.insert(EXTRA_POD_NAME.to_owned(), vec![String::new()]);
    assert_eq!(
        one_extra(&extra, EXTRA_POD_NAME, "name"),
        Err("pod name is empty".into())
    );
    extra.insert(EXTRA_POD_NAME.to_owned(), vec!["p".into()]);
    assert_eq!(one_extra(&extra, EXTRA_POD_NAME, "name"), Ok("p"));
}

#[test]
fn agent_id_paths_are_cleaned_like_gos_path_join() {
    assert_eq!(clean_path("c1/uid"), "c1/uid");
    assert_eq!(clean_path("c1/../uid"), "uid");
    assert_eq!(clean_path("c1//./pod/u"), "c1/pod/u");
}

#[test]
fn selectors_follow_spires_order_and_only_allowed_labels() {
    let mut c = cluster(None);
    c.allowed_node_label_keys = ["zone".to_owned()].into();
    c.allowed_pod_label_keys = ["app".to_owned()].into();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "uid": "pu", "labels": {"app": "agent", "secret": "x"}},
        "spec": {"nodeName": "n1", "containers": []},
        "status": {"hostIP": "10.1.2.3"}
    }))
    .unwrap();
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1", "uid": "nu", "labels": {"zone": "z1", "other": "y"}}
    }))
    .unwrap();
    let b = Bound {
        ns: "spire",
        sa: "spire-agent",
        pod_name: "p",
        pod_uid: "pu",
        node_uid: "nu",
    };
    let got: Vec<String> = selectors("c1", b, &pod, &node, &c)
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s.kind(), s.value()))
        .collect();
    assert_eq!(
        got,
        [
            "k8s_psat:cluster:c1",
            "k8s_psat:agent_ns:spire",
            "k8s_psat:agent_sa:spire-agent",
            "k8s_psat:agent_pod_name:p",
            "k8s_psat:agent_pod_uid:pu",
            "k8s_psat:agent_node_ip:10.1.2.3",
            "k8s_psat:agent_node_name:n1",
            "k8s_psat:agent_node_uid:nu",
            "k8s_psat:agent_node_label:zone:z1",
            "k8s_psat:agent_pod_label:app:agent",
        ]
    );
}
