//! `k8s_psat` node attestation against a real kube-apiserver: signet-agent attests with a
//! TokenRequest token bound to its Pod object; the agent ID and SPIRE's selectors; tokens
//! the server must refuse, each with SPIRE's code and message and no node record left;
//! re-attestation after the agent SVID expired keeps the agent ID and the workloads' SVIDs;
//! entries created later reach a workload under the agent through the push path.
//!
//! Ignored in `cargo test --workspace` (they need the binaries `tests/interop/build.sh`
//! builds); `tests/interop/run.sh 80` runs them with `--ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use signet_agent::config::Config as AgentConfig;
use signet_agent::run::Agent;
use signet_common::clock::{Clock, SystemClock};
use signet_common::id::SpiffeId;
use signet_proto::spire::api::server::agent::v1 as agent_pb;
use signet_proto::spire::api::server::agent::v1::agent_client::AgentClient;
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::spire::api::server::entry::v1::entry_client::EntryClient;
use signet_proto::types;
use signet_tests::kube::{KubeCluster, PodFixture, attest_psat, psat_agent_config};
use signet_tests::{Options, TestServer, tls_channel};
use spiffe::WorkloadApiClient;
use tonic::Code;

const CLUSTER: &str = "c1";

async fn server(kube: &KubeCluster, ns: &str, server_lines: &[&str]) -> TestServer {
    TestServer::start(Options {
        server_lines: server_lines.iter().map(|l| (*l).to_owned()).collect(),
        plugins: vec![kube.psat_server_plugin(CLUSTER, &[&format!("{ns}:spire-agent")])],
        ..Options::default()
    })
    .await
}

/// signet-agent with k8s_psat (token at `token_path`), the bootstrap bundle from the
/// server, the change push as the only way entries arrive.
async fn agent_config(server: &TestServer, dir: &Path, token_path: &Path) -> AgentConfig {
    let bundle = dir.join("bootstrap.pem");
    std::fs::write(
        &bundle,
        signet_common::pem::certificates(&server.roots().await),
    )
    .unwrap();
    psat_agent_config(
        server.server().tcp_addr.port(),
        dir,
        CLUSTER,
        token_path,
        &bundle,
    )
}

fn proto_id(id: &SpiffeId) -> types::Spiffeid {
    types::Spiffeid {
        trust_domain: id.trust_domain_name().to_owned(),
        path: id.path().to_owned(),
    }
}

fn my_uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// Creates an entry `spiffe://example.org<path>` under `parent` with `selectors`.
async fn create_entry(
    server: &TestServer,
    parent: types::Spiffeid,
    path: &str,
    selectors: &[(&str, &str)],
) {
    let entry = types::Entry {
        spiffe_id: Some(types::Spiffeid {
            trust_domain: "example.org".into(),
            path: path.into(),
        }),
        parent_id: Some(parent),
        selectors: selectors
            .iter()
            .map(|(t, v)| types::Selector {
                r#type: (*t).into(),
                value: (*v).into(),
            })
            .collect(),
        ..Default::default()
    };
    let resp = EntryClient::new(server.admin().await)
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![entry],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.results[0].status.as_ref().map(|s| s.code),
        Some(0),
        "{resp:?}"
    );
}

async fn get_agent(server: &TestServer, id: &SpiffeId) -> Result<types::Agent, tonic::Status> {
    AgentClient::new(server.admin().await)
        .get_agent(agent_pb::GetAgentRequest {
            id: Some(proto_id(id)),
            output_mask: None,
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn agent_count(server: &TestServer) -> i32 {
    AgentClient::new(server.admin().await)
        .count_agents(agent_pb::CountAgentsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .count
}

/// The workload's SPIFFE IDs, as the `spiffe` crate reads them from the agent.
async fn workload_ids(socket: &Path) -> Vec<String> {
    let client = WorkloadApiClient::connect_to(format!("unix:{}", socket.display()))
        .await
        .unwrap();
    match client.fetch_x509_context().await {
        Ok(ctx) => {
            let mut ids: Vec<String> = ctx
                .svids()
                .iter()
                .map(|s| s.spiffe_id().to_string())
                .collect();
            ids.sort();
            ids
        }
        Err(_) => vec![],
    }
}

async fn wait_for_ids(socket: &Path, want: &[&str], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = workload_ids(socket).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "workload got {got:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn attest_raw(
    server: &TestServer,
    token: &str,
) -> Result<(signet_tests::Identity, bool), tonic::Status> {
    attest_psat(server, CLUSTER, token).await
}

#[tokio::test]
#[ignore = "needs kube-apiserver (tests/interop/build.sh); run by tests/interop/run.sh 80"]
async fn signet_agent_attests_with_a_pod_bound_token_and_gets_spires_agent_id_and_selectors() {
    let kube = KubeCluster::shared();
    let ns = "psat-ok";
    let objs = kube.agent_pod(&PodFixture {
        node_labels: &[("topology.kubernetes.io/zone", "zone-a"), ("unlisted", "x")],
        pod_labels: &[("app", "spire-agent"), ("pod-template-hash", "abc")],
        host_ip: Some("10.20.30.40"),
        ..PodFixture::new(ns, "spire-agent", "psat-ok-node", "spire-agent-x7k2p")
    });
    let server = server(kube, ns, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("spire-agent-token");
    kube.write_token(
        &token,
        ns,
        "spire-agent",
        "spire-agent-x7k2p",
        &["spire-server"],
    );

    let agent = Agent::start(
        agent_config(&server, dir.path(), &token).await,
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let want_id = format!(
        "spiffe://example.org/spire/agent/k8s_psat/{CLUSTER}/{}",
        objs.node_uid
    );
    assert_eq!(agent.agent_id.to_string(), want_id);

    let node = get_agent(&server, &agent.agent_id).await.unwrap();
    assert_eq!(node.attestation_type, "k8s_psat");
    assert!(node.can_reattest, "k8s_psat agents may attest again");
    let mut selectors: Vec<String> = node
        .selectors
        .iter()
        .map(|s| format!("{}:{}", s.r#type, s.value))
        .collect();
    selectors.sort();
    let mut want = vec![
        format!("k8s_psat:cluster:{CLUSTER}"),
        format!("k8s_psat:agent_ns:{ns}"),
        "k8s_psat:agent_sa:spire-agent".to_owned(),
        "k8s_psat:agent_pod_name:spire-agent-x7k2p".to_owned(),
        format!("k8s_psat:agent_pod_uid:{}", objs.pod_uid),
        "k8s_psat:agent_node_ip:10.20.30.40".to_owned(),
        "k8s_psat:agent_node_name:psat-ok-node".to_owned(),
        format!("k8s_psat:agent_node_uid:{}", objs.node_uid),
        "k8s_psat:agent_node_label:topology.kubernetes.io/zone:zone-a".to_owned(),
        "k8s_psat:agent_pod_label:app:spire-agent".to_owned(),
    ];
    want.sort();
    assert_eq!(selectors, want);

    // Entries created now reach the workload through the push (the poll is an hour away):
    // one parented to the agent, one under a node alias on the agent's k8s_psat selectors.
    let uid = format!("uid:{}", my_uid());
    create_entry(
        &server,
        proto_id(&agent.agent_id),
        "/direct",
        &[("unix", &uid)],
    )
    .await;
    wait_for_ids(
        &agent.socket_path,
        &["spiffe://example.org/direct"],
        Duration::from_secs(10),
    )
    .await;
    let alias = types::Spiffeid {
        trust_domain: "example.org".into(),
        path: "/k8s-nodes/psat-ok".into(),
    };
    create_entry(
        &server,
        types::Spiffeid {
            trust_domain: "example.org".into(),
            path: "/spire/server".into(),
        },
        &alias.path,
        &[
            ("k8s_psat", &format!("cluster:{CLUSTER}")),
            ("k8s_psat", &format!("agent_ns:{ns}")),
            ("k8s_psat", "agent_sa:spire-agent"),
        ],
    )
    .await;
    create_entry(&server, alias, "/via-alias", &[("unix", &uid)]).await;
    wait_for_ids(
        &agent.socket_path,
        &[
            "spiffe://example.org/direct",
            "spiffe://example.org/via-alias",
        ],
        Duration::from_secs(10),
    )
    .await;

    // It gets new SVIDs by attesting again, never with RenewAgent.
    let (identity, reattestable) = attest_raw(&server, &std::fs::read_to_string(&token).unwrap())
        .await
        .unwrap();
    assert!(reattestable);
    assert_eq!(
        identity.id.to_string(),
        want_id,
        "attesting again keeps the agent ID"
    );
    let channel = tls_channel(
        server.server().tcp_addr,
        &server.roots().await,
        Some(&identity),
    )
    .await
    .unwrap();
    let (_, csr) = signet_tests::key_and_csr(None);
    let err = AgentClient::new(channel)
        .renew_agent(agent_pb::RenewAgentRequest {
            params: Some(agent_pb::AgentX509svidParams { csr }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "agent must reattest instead of renew");
    assert_eq!(
        agent_count(&server).await,
        1,
        "one node, however often it attests"
    );
    agent.shutdown().await.unwrap();
}

/// An expired token signed with the cluster's own service account key, for a pod that
/// exists (the API server cannot mint one: TokenRequest needs at least 10 minutes).
fn expired_token(kube: &KubeCluster, ns: &str, pod: &str, pod_uid: &str, sa_uid: &str) -> String {
    let key = std::fs::read(&kube.info.sa_key).unwrap();
    let now = SystemClock.unix_now();
    let claims = serde_json::json!({
        "aud": ["spire-server"],
        "exp": now - 3600,
        "iat": now - 7200,
        "nbf": now - 7200,
        "iss": kube.info.issuer,
        "sub": format!("system:serviceaccount:{ns}:spire-agent"),
        "kubernetes.io": {
            "namespace": ns,
            "pod": {"name": pod, "uid": pod_uid},
            "serviceaccount": {"name": "spire-agent", "uid": sa_uid},
        },
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(&key).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
#[ignore = "needs kube-apiserver (tests/interop/build.sh); run by tests/interop/run.sh 80"]
async fn tokens_the_api_server_does_not_vouch_for_are_refused_in_spires_words_leaving_no_node() {
    let kube = KubeCluster::shared();
    let ns = "psat-refused";
    let ok = kube.agent_pod(&PodFixture::new(
        ns,
        "spire-agent",
        "psat-refused-node",
        "agent-ok",
    ));
    kube.agent_pod(&PodFixture::new(
        ns,
        "intruder",
        "psat-refused-node",
        "intruder-1",
    ));
    kube.agent_pod(&PodFixture::new(
        ns,
        "spire-agent",
        "psat-refused-node",
        "agent-gone",
    ));
    let server = server(kube, ns, &[]).await;
    let prefix = "failed to attest: nodeattestor(k8s_psat): ";
    let review = format!(
        "{prefix}unable to validate token with TokenReview API for cluster \"{CLUSTER}\": token review API response contains an error: "
    );

    let mut cases: Vec<(&str, String, Code, Vec<String>)> = vec![];
    cases.push((
        "wrong audience",
        kube.token(ns, "spire-agent", Some("agent-ok"), &["other-audience"], 600),
        Code::Internal,
        vec![
            review.clone(),
            "token audiences [\"other-audience\"] is invalid for the target audiences [\"spire-server\"]".into(),
        ],
    ));
    cases.push((
        "expired",
        expired_token(kube, ns, "agent-ok", &ok.pod_uid, &ok.sa_uid),
        Code::Internal,
        vec![review.clone(), "invalid bearer token".into()],
    ));
    cases.push((
        "service account not allowed",
        kube.token(ns, "intruder", Some("intruder-1"), &["spire-server"], 600),
        Code::PermissionDenied,
        vec![format!(
            "{prefix}\"{ns}:intruder\" is not an allowed service account for cluster \"{CLUSTER}\""
        )],
    ));
    // The API server answers for a deleted pod's token only once its 10 s success cache
    // for that token is gone; this token was never reviewed, so it is refused at once.
    let gone = kube.token(
        ns,
        "spire-agent",
        Some("agent-gone"),
        &["spire-server"],
        600,
    );
    kube.delete_pod(ns, "agent-gone");
    cases.push((
        "bound pod deleted",
        gone,
        Code::Internal,
        vec![
            review.clone(),
            "service account token has been invalidated".into(),
        ],
    ));
    let other = KubeCluster::start(Some("https://other-cluster.example"));
    other.agent_pod(&PodFixture::new(
        ns,
        "spire-agent",
        "other-node",
        "agent-ok",
    ));
    cases.push((
        "another cluster's issuer",
        other.token(ns, "spire-agent", Some("agent-ok"), &["spire-server"], 600),
        Code::Internal,
        vec![review.clone(), "invalid bearer token".into()],
    ));
    cases.push((
        "not a token",
        "garbage".into(),
        Code::Internal,
        vec![review.clone(), "invalid bearer token".into()],
    ));

    for (what, token, code, needles) in cases {
        let err = attest_raw(&server, &token).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {}", err.message());
        for n in needles {
            assert!(
                err.message().contains(&n),
                "{what}: {:?} lacks {n:?}",
                err.message()
            );
        }
    }
    assert_eq!(
        agent_count(&server).await,
        0,
        "no refused token left a node record"
    );

    // The valid token still works, so the refusals were about the tokens.
    let token = kube.token(ns, "spire-agent", Some("agent-ok"), &["spire-server"], 600);
    attest_raw(&server, &token).await.unwrap();
    assert_eq!(agent_count(&server).await, 1);
}

#[tokio::test]
#[ignore = "needs kube-apiserver (tests/interop/build.sh); run by tests/interop/run.sh 80"]
async fn an_agent_whose_svid_expired_while_down_attests_again_with_a_fresh_token_and_keeps_its_id()
{
    let kube = KubeCluster::shared();
    let ns = "psat-again";
    let pod = "spire-agent-r4nd0";
    let objs = kube.agent_pod(&PodFixture::new(ns, "spire-agent", "psat-again-node", pod));
    let server = server(kube, ns, &["agent_ttl = \"12s\""]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    kube.write_token(&token, ns, "spire-agent", pod, &["spire-server"]);
    let config = agent_config(&server, dir.path(), &token).await;

    let agent = Agent::start(config.clone(), Arc::new(SystemClock))
        .await
        .unwrap();
    let id = agent.agent_id.clone();
    assert!(id.to_string().ends_with(&objs.node_uid));
    let uid = format!("uid:{}", my_uid());
    create_entry(&server, proto_id(&id), "/workload", &[("unix", &uid)]).await;
    let want = ["spiffe://example.org/workload"];
    wait_for_ids(&agent.socket_path, &want, Duration::from_secs(10)).await;

    // While running, the agent replaces its 12 s SVID by attesting again (the token file is
    // read each time: a new token is there now).
    let first = agent.identity.current();
    kube.write_token(&token, ns, "spire-agent", pod, &["spire-server"]);
    let mut svids = agent.identity.subscribe();
    tokio::time::timeout(
        Duration::from_secs(20),
        svids.wait_for(|s| s.not_after > first.not_after),
    )
    .await
    .expect("the agent SVID was replaced before it expired")
    .unwrap();
    assert_eq!(agent.identity.current().id, id);
    let socket = agent.socket_path.clone();
    agent.shutdown().await.unwrap();

    // Down until its SVID has expired; the kubelet has rotated the token meanwhile.
    let stored = first
        .not_after
        .max(get_agent(&server, &id).await.unwrap().x509svid_expires_at);
    let now = SystemClock.unix_now();
    tokio::time::sleep(Duration::from_secs(
        u64::try_from(stored - now + 2).unwrap_or(0),
    ))
    .await;
    kube.write_token(&token, ns, "spire-agent", pod, &["spire-server"]);

    let agent = Agent::start(config, Arc::new(SystemClock)).await.unwrap();
    assert_eq!(agent.agent_id, id, "same agent ID after attesting again");
    assert!(agent.identity.current().not_after > stored);
    wait_for_ids(&socket, &want, Duration::from_secs(15)).await;
    assert_eq!(agent_count(&server).await, 1);
    agent.shutdown().await.unwrap();
}
