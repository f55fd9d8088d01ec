//! The k8s attestor: container lookup and polling against scripted pod lists, and the
//! kubelet client against a real TLS server on 127.0.0.1 (CA and name checks, bearer token,
//! status errors). Moving real processes into kubelet-style cgroups needs root and is done
//! by the tests crate (`tests/tests/k8s_workload.rs`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::{KubeletAuth, KubeletConfig, KubeletVerification, SecureKubelet};

const CID: &str = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961";
const CID2: &str = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6";
const UID: &str = "2c48913c-b29f-11e7-9350-020968147796";
const UID2: &str = "7c48913c-b29f-11e7-9350-020968147796";

fn me() -> Peer {
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    Peer::of_socket(&a).unwrap()
}

fn pod(uid: &str, ns: &str, sa: &str, containers: &[(&str, &str)]) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": format!("p-{ns}"), "namespace": ns, "uid": uid, "labels": {"app": "a"}},
        "spec": {"serviceAccountName": sa, "nodeName": "node-1"},
        "status": {"containerStatuses": containers.iter().map(|(name, cid)| serde_json::json!({
            "name": name, "image": "img:1", "imageID": "img@sha256:1",
            "containerID": if cid.is_empty() { String::new() } else { format!("containerd://{cid}") },
        })).collect::<Vec<_>>()}
    })
}

fn body(items: &[serde_json::Value]) -> String {
    serde_json::json!({"kind": "PodList", "apiVersion": "v1", "items": items}).to_string()
}

/// Pod lists handed out in order (the last one repeats), or errors.
#[derive(Debug)]
struct Script(Mutex<VecDeque<Result<String, String>>>);

impl Script {
    fn new(items: Vec<Result<String, String>>) -> Arc<Self> {
        Arc::new(Self(Mutex::new(items.into())))
    }
}

impl Source for Script {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<PodList, String>> + Send + '_>> {
        Box::pin(async move {
            let next = {
                let mut q = self.0.lock().unwrap();
                if q.len() > 1 {
                    q.pop_front().unwrap()
                } else {
                    q.front().unwrap().clone()
                }
            };
            PodList::parse(next?.as_bytes())
        })
    }
}

fn config(max_poll_attempts: u32, disable_container_selectors: bool) -> K8sConfig {
    K8sConfig {
        kubelet: KubeletConfig::ReadOnly { port: 1 },
        max_poll_attempts,
        poll_retry_interval: Duration::from_millis(500),
        disable_container_selectors,
        verbose_container_locator_logs: false,
        namespace_labels: None,
    }
}

fn attestor(script: Arc<Script>, max: u32, disable: bool) -> K8sAttestor {
    K8sAttestor::with_source(config(max, disable), script)
}

fn has(values: &[String], want: &str) -> bool {
    values.iter().any(|v| v == want)
}

#[tokio::test(start_paused = true)]
async fn finds_the_container_in_the_known_pod_or_in_any() {
    let list = body(&[
        pod(UID, "ns1", "sa1", &[("app", CID)]),
        pod(UID2, "ns2", "sa2", &[("app", CID2)]),
    ]);
    let a = attestor(Script::new(vec![Ok(list)]), 3, false);
    let peer = me();
    let v = a.find(&peer, Some(UID), CID).await.unwrap().0;
    assert!(has(&v, "ns:ns1") && has(&v, "sa:sa1") && has(&v, "container-name:app"));
    assert!(has(&v, &format!("pod-uid:{UID}")));
    // Without a pod UID (cgroup v2 seen from another namespace) every pod is searched.
    let (v, ns) = a.find(&peer, None, CID2).await.unwrap();
    assert!(has(&v, "ns:ns2") && has(&v, "sa:sa2"));
    assert_eq!(ns, "ns2", "the pod's namespace, for its ns-label selectors");
    // The known pod is the only one looked at.
    let err = a.find(&peer, Some(UID), CID2).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "workloadattestor(k8s): no selectors found after max poll attempts"
    );
    assert!(matches!(err, AttestError::Failed(_)));
    assert_eq!(a.kubelet_calls(), 3, "a burst of lookups shares lists");
}

#[tokio::test(start_paused = true)]
async fn two_pods_with_the_same_container_are_refused() {
    let list = body(&[
        pod(UID, "ns1", "sa1", &[("app", CID)]),
        pod(UID2, "ns2", "sa2", &[("app", CID)]),
    ]);
    let a = attestor(Script::new(vec![Ok(list)]), 3, false);
    let err = a.find(&me(), None, CID).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "workloadattestor(k8s): two pods found with same container Id"
    );
}

#[tokio::test(start_paused = true)]
async fn a_container_not_listed_yet_is_polled_for() {
    let without = body(&[pod(UID, "ns1", "sa1", &[("app", "")])]);
    let with = body(&[pod(UID, "ns1", "sa1", &[("app", CID)])]);
    let a = attestor(
        Script::new(vec![Ok(without.clone()), Ok(without), Ok(with)]),
        60,
        false,
    );
    let started = tokio::time::Instant::now();
    let v = a.find(&me(), Some(UID), CID).await.unwrap().0;
    assert!(has(&v, "container-name:app"));
    assert_eq!(a.kubelet_calls(), 3);
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test(start_paused = true)]
async fn disabled_container_selectors_need_only_the_pod() {
    let without = body(&[pod(UID, "ns1", "sa1", &[("app", "")])]);
    let a = attestor(Script::new(vec![Ok(without.clone())]), 2, true);
    let v = a.find(&me(), Some(UID), CID).await.unwrap().0;
    assert!(has(&v, "ns:ns1"));
    assert!(!v.iter().any(|s| s.starts_with("container-")));
    // Without a known pod the container must still be found.
    assert!(a.find(&me(), None, CID).await.is_err());
    let with = body(&[pod(UID, "ns1", "sa1", &[("app", CID)])]);
    let a = attestor(Script::new(vec![Ok(with)]), 2, true);
    let v = a.find(&me(), None, CID).await.unwrap().0;
    assert!(!v.iter().any(|s| s.starts_with("container-")));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_kubelet_fails_at_once() {
    let a = attestor(
        Script::new(vec![Err("unable to perform request: refused".into())]),
        60,
        false,
    );
    let err = a.find(&me(), Some(UID), CID).await.unwrap_err();
    assert!(
        matches!(&err, AttestError::Unavailable(m) if m == "workloadattestor(k8s): unable to perform request: refused"),
        "{err}"
    );
    assert_eq!(a.kubelet_calls(), 1);
}

#[tokio::test]
async fn a_process_in_no_container_gets_no_selectors_and_no_kubelet_call() {
    let a = attestor(
        Script::new(vec![Err("must not be called".into())]),
        1,
        false,
    );
    assert_eq!(a.attest(&me()).await.unwrap(), vec![]);
    assert_eq!(a.kubelet_calls(), 0);
    let dead = crate::peer::tests::dead_peer().await;
    assert!(matches!(a.attest(&dead).await, Err(AttestError::Gone(_))));
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_attestations_costs_one_kubelet_call() {
    let list = body(&[pod(UID, "ns1", "sa1", &[("app", CID)])]);
    let a = Arc::new(attestor(Script::new(vec![Ok(list)]), 60, false));
    let peer = me();
    let all = futures::future::join_all((0..100).map(|_| a.find(&peer, Some(UID), CID))).await;
    assert!(all.iter().all(Result::is_ok));
    assert_eq!(a.kubelet_calls(), 1);
}

// === the kubelet client ===

struct Pki {
    ca_pem: String,
    leaf: (Vec<u8>, Vec<u8>),
}

fn pki(names: &[&str]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let leaf = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        leaf: (leaf.der().to_vec(), key.serialize_der()),
    }
}

/// A one-file kubelet: answers every connection's request with `/pods` if the bearer token
/// is `token`, else 401. Returns the port.
async fn kubelet(pki: Option<&Pki>, token: &'static str, body: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = pki.map(|p| {
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![p.leaf.0.clone().into()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(p.leaf.1.clone()).into(),
        )
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(tcp).await {
                            answer(tls, token, &body).await;
                        }
                    }
                    None => answer(tcp, token, &body).await,
                }
            });
        }
    });
    port
}

async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    token: &str,
    body: &str,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_lowercase();
    let authorized =
        token.is_empty() || head.contains(&format!("authorization: bearer {token}\r\n"));
    let (status, body) = if !head.starts_with("get /pods ") {
        ("404 Not Found", "404 page not found".to_owned())
    } else if authorized {
        ("200 OK", body.to_owned())
    } else {
        ("401 Unauthorized", "Unauthorized".to_owned())
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

fn secure(
    dir: &tempfile::TempDir,
    port: u16,
    node: Option<&str>,
    verification: Option<&str>,
    token: &str,
) -> KubeletConfig {
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, format!("{token}\n")).unwrap();
    let verification = match verification {
        None => KubeletVerification::Skip,
        Some(pem) => {
            let p = dir.path().join("ca.crt");
            std::fs::write(&p, pem).unwrap();
            KubeletVerification::Ca(p)
        }
    };
    KubeletConfig::Secure(SecureKubelet {
        port,
        node_name: node.map(str::to_owned),
        verification,
        auth: KubeletAuth::Token(token_path),
        reload_interval: Duration::from_secs(60),
    })
}

#[tokio::test]
async fn the_secure_port_checks_the_ca_and_the_node_name_and_sends_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let list = body(&[pod(UID, "ns1", "sa1", &[("app", CID)])]);
    let good = pki(&["localhost"]);
    let port = kubelet(Some(&good), "sekret", list.clone()).await;

    // Node name known: chain and name checked.
    let k = Kubelet::new(&secure(
        &dir,
        port,
        Some("localhost"),
        Some(&good.ca_pem),
        "sekret",
    ))
    .unwrap();
    assert_eq!(k.url(), format!("https://localhost:{port}/pods"));
    assert_eq!(
        PodList::parse(&k.pods().await.unwrap()).unwrap().pods.len(),
        1
    );
    // Dialed at 127.0.0.1 (no node name): the chain alone, as SPIRE does.
    let k = Kubelet::new(&secure(&dir, port, None, Some(&good.ca_pem), "sekret")).unwrap();
    assert_eq!(k.url(), format!("https://127.0.0.1:{port}/pods"));
    assert!(k.pods().await.is_ok());

    // A node name the certificate does not carry.
    let other = pki(&["other-node"]);
    let port2 = kubelet(Some(&other), "sekret", list.clone()).await;
    let k = Kubelet::new(&secure(
        &dir,
        port2,
        Some("localhost"),
        Some(&other.ca_pem),
        "sekret",
    ))
    .unwrap();
    let err = k.pods().await.unwrap_err();
    assert!(
        err.starts_with("unable to perform request: Get \"https://localhost:"),
        "{err}"
    );
    assert!(err.contains("certificate"), "{err}");
    // Another CA.
    let k = Kubelet::new(&secure(&dir, port, None, Some(&other.ca_pem), "sekret")).unwrap();
    assert!(k.pods().await.unwrap_err().contains("certificate"));
    // Verification skipped.
    let k = Kubelet::new(&secure(&dir, port2, Some("localhost"), None, "sekret")).unwrap();
    assert!(k.pods().await.is_ok());

    // A wrong token: SPIRE's status error with the body.
    let k = Kubelet::new(&secure(&dir, port, None, Some(&good.ca_pem), "wrong")).unwrap();
    assert_eq!(
        k.pods().await.unwrap_err(),
        "unexpected status code on pods response: 401 Unauthorized"
    );
    // Nothing listening.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = free.local_addr().unwrap().port();
    drop(free);
    let k = Kubelet::new(&secure(&dir, dead, None, None, "x")).unwrap();
    let err = k.pods().await.unwrap_err();
    assert!(err.contains("Connection refused"), "{err}");
}

#[tokio::test]
async fn credentials_are_read_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |auth, verification| {
        KubeletConfig::Secure(SecureKubelet {
            port: 1,
            node_name: None,
            verification,
            auth,
            reload_interval: Duration::from_secs(60),
        })
    };
    let missing = dir.path().join("missing");
    let err = Kubelet::new(&cfg(
        KubeletAuth::Token(missing.clone()),
        KubeletVerification::Skip,
    ))
    .unwrap_err();
    assert!(err.starts_with("unable to load token: "), "{err}");
    let err = Kubelet::new(&cfg(
        KubeletAuth::Anonymous,
        KubeletVerification::Ca(missing.clone()),
    ))
    .unwrap_err();
    assert!(err.starts_with("unable to load kubelet CA: "), "{err}");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not pem").unwrap();
    let err = Kubelet::new(&cfg(
        KubeletAuth::Anonymous,
        KubeletVerification::Ca(junk.clone()),
    ))
    .unwrap_err();
    assert!(err.starts_with("unable to parse kubelet CA: "), "{err}");
    let err = Kubelet::new(&cfg(
        KubeletAuth::Certificate {
            cert: junk.clone(),
            key: missing,
        },
        KubeletVerification::Skip,
    ))
    .unwrap_err();
    assert!(err.starts_with("unable to load private key: "), "{err}");
    let err = K8sAttestor::new(K8sConfig {
        kubelet: cfg(
            KubeletAuth::Token(dir.path().join("nope")),
            KubeletVerification::Skip,
        ),
        ..config(1, false)
    })
    .unwrap_err();
    assert!(
        err.starts_with("workloadattestor(k8s): unable to load token: "),
        "{err}"
    );
}

#[tokio::test]
async fn the_read_only_port_needs_no_credentials() {
    let list = body(&[pod(UID, "ns1", "sa1", &[("app", CID)])]);
    let port = kubelet(None, "", list).await;
    let k = Kubelet::new(&KubeletConfig::ReadOnly { port }).unwrap();
    assert_eq!(k.url(), format!("http://127.0.0.1:{port}/pods"));
    assert_eq!(
        PodList::parse(&k.pods().await.unwrap()).unwrap().pods.len(),
        1
    );
}
