//! A stand-in for one node's kubelet, for the `k8s` workload attestor: HTTPS on 127.0.0.1
//! with a serving certificate from a CA of its own (names: the node, `localhost`,
//! 127.0.0.1), `GET /pods` answered with the real API server's PodList of the pods bound
//! to the node (so the JSON is what Kubernetes produces; tests fill in container statuses
//! through the pods' status subresource, as a kubelet would). Like a kubelet with
//! `--authentication-token-webhook`, it requires a bearer token the API server's
//! TokenReview authenticates (401 otherwise). Stopping it closes the port.
//!
//! Also the cgroup side of a pod: [`PodCgroup`] makes a kubelet-style cgroup v1 directory
//! (`/sys/fs/cgroup/pids/kubepods/besteffort/pod<uid>/<container id>`) a workload process
//! is moved into.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::kube::KubeCluster;

/// A running kubelet stand-in.
#[derive(Debug)]
pub struct KubeletStandIn {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The CA of its serving certificate (PEM), for `kubelet_ca_path`.
    pub ca_file: PathBuf,
    calls: Arc<AtomicU64>,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    client: kube::Client,
    node: String,
    calls: Arc<AtomicU64>,
    reviewed: Mutex<HashMap<String, bool>>,
}

impl KubeletStandIn {
    /// Serves node `node`'s pods of `kube`; the CA goes to `dir/kubelet-ca.crt`.
    pub async fn start(kube: &KubeCluster, node: &str, dir: &Path) -> Self {
        Self::start_with(kube.client().await, node, dir).await
    }

    /// [`KubeletStandIn::start`] with an API server client of any cluster.
    pub async fn start_with(client: kube::Client, node: &str, dir: &Path) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, format!("{node}-ca"));
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![
            node.to_owned(),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
        let ca_file = dir.join("kubelet-ca.crt");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            client,
            node: node.to_owned(),
            calls: Arc::clone(&calls),
            reviewed: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        shared.serve(tls).await;
                    }
                });
            }
        });
        Self {
            port,
            ca_file,
            calls,
            task: Mutex::new(Some(task)),
        }
    }

    /// How many `/pods` requests were answered with a pod list.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Stops listening: connections are refused from now on.
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

impl Drop for KubeletStandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(&self, mut s: S) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            if buf.len() > 64 * 1024 {
                return;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let (status, body) = self.answer(&head).await;
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.write_all(body.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    async fn answer(&self, head: &str) -> (&'static str, String) {
        let mut lines = head.split("\r\n");
        let request = lines.next().unwrap_or_default();
        let token = lines.find_map(|l| {
            let (k, v) = l.split_once(':')?;
            if !k.trim().eq_ignore_ascii_case("authorization") {
                return None;
            }
            v.trim().strip_prefix("Bearer ").map(str::to_owned)
        });
        let Some(token) = token else {
            return ("401 Unauthorized", "Unauthorized".into());
        };
        if !self.authenticated(&token).await {
            return ("401 Unauthorized", "Unauthorized".into());
        }
        if !request.starts_with("GET /pods ") && !request.starts_with("GET /pods/ ") {
            return ("404 Not Found", "404 page not found".into());
        }
        let req = http::Request::get(format!(
            "/api/v1/pods?fieldSelector=spec.nodeName%3D{}",
            self.node
        ))
        .body(Vec::new())
        .unwrap();
        match self.client.request_text(req).await {
            Ok(body) => {
                self.calls.fetch_add(1, Ordering::SeqCst);
                ("200 OK", body)
            }
            Err(e) => ("500 Internal Server Error", e.to_string()),
        }
    }

    /// TokenReview, remembered per token (as the kubelet's webhook authenticator caches).
    async fn authenticated(&self, token: &str) -> bool {
        if let Some(ok) = self.reviewed.lock().unwrap().get(token) {
            return *ok;
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let ok = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .ok()
            .and_then(|r| r.status)
            .and_then(|s| s.authenticated)
            .unwrap_or(false);
        self.reviewed.lock().unwrap().insert(token.to_owned(), ok);
        ok
    }
}

/// Where kubelets with the cgroupfs driver put pods on cgroup v1 (the `pids` hierarchy).
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup/pids";

/// A kubelet-style cgroup for one container of a pod (`kubepods/besteffort/pod<uid>/<cid>`),
/// removed (with the pod directory) on drop once its processes have exited.
#[derive(Debug)]
pub struct PodCgroup {
    pod_dir: PathBuf,
    dir: PathBuf,
    /// The 64-hex-digit container ID.
    pub container_id: String,
}

impl PodCgroup {
    /// Creates it; fails with what is missing when this machine cannot (not root, no cgroup
    /// v1 `pids` hierarchy).
    pub fn create(pod_uid: &str, container_id: &str) -> Self {
        let root = Path::new(CGROUP_ROOT);
        assert!(
            root.join("cgroup.procs").exists(),
            "this test needs a cgroup v1 `pids` hierarchy at {CGROUP_ROOT} (found none); \
             it moves workload processes into kubelet-style cgroups"
        );
        let pod_dir = root.join(format!("kubepods/besteffort/pod{pod_uid}"));
        let dir = pod_dir.join(container_id);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!(
                "cannot create the cgroup {} ({e}); this test must run as root on a machine \
                 with a writable cgroup v1 `pids` hierarchy",
                dir.display()
            );
        }
        Self {
            pod_dir,
            dir,
            container_id: container_id.to_owned(),
        }
    }

    /// Its `cgroup.procs` (write a PID to move that process in).
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// `containerd://<id>`, as the kubelet reports it.
    pub fn runtime_id(&self) -> String {
        format!("containerd://{}", self.container_id)
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir(&self.pod_dir);
    }
}

/// A random 64-hex-digit container ID.
pub fn container_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates (if missing) namespace `ns` and service account `sa`, and Pod `pod` of `sa`
/// bound to `node`, with one container `app` and `labels`; returns the pod's UID. The
/// kubelet's part — the container's status — is [`set_container`]'s.
pub async fn workload_pod(
    client: &kube::Client,
    ns: &str,
    sa: &str,
    node: &str,
    pod: &str,
    labels: &[(&str, &str)],
) -> String {
    use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
    let create = |r: Result<(), kube::Error>| match r {
        Ok(()) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("{e}"),
    };
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
    create(
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .map(drop),
    );
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": sa, "namespace": ns}}))
            .unwrap();
    create(
        Api::<ServiceAccount>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &account)
            .await
            .map(drop),
    );
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
        .collect();
    let object: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": pod, "namespace": ns, "labels": labels},
        "spec": {
            "serviceAccountName": sa,
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.example/app:1.0"}],
        },
    }))
    .unwrap();
    let created = Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    created.metadata.uid.unwrap()
}

/// Writes the status a kubelet reports for pod `pod`'s container `app`: running as
/// container `runtime_id` (`containerd://<id>`), or, with `None`, not started yet.
pub async fn set_container(client: &kube::Client, ns: &str, pod: &str, runtime_id: Option<&str>) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    let status = match runtime_id {
        Some(id) => serde_json::json!({
            "name": "app",
            "image": "registry.example/app:1.0",
            "imageID": "registry.example/app@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945",
            "containerID": id,
            "ready": true,
            "started": true,
            "restartCount": 0,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
        }),
        None => serde_json::json!({
            "name": "app",
            "image": "registry.example/app:1.0",
            "imageID": "",
            "ready": false,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
        }),
    };
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(
            pod,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "status": {"phase": "Running", "hostIP": "127.0.0.1", "containerStatuses": [status]}
            })),
        )
        .await
        .unwrap();
}
