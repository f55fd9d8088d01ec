//! The real spire-controller-manager (v0.6.3, `tests/interop/build.sh`) as a child process
//! against a signet-server admin socket and a [`KubeCluster`], its log in a file.
//!
//! With the webhook on, its webhook client insists on in-cluster configuration
//! (`rest.InClusterConfig`: `KUBERNETES_SERVICE_HOST`/`_PORT` and the service account files
//! under `/var/run/secrets/kubernetes.io/serviceaccount/`). It gets exactly what the kubelet
//! gives a pod: those variables, and a token (the cluster's admin token) and the cluster CA
//! in that directory, in a private mount namespace (`unshare -m`, a tmpfs on `/run`) so the
//! host is not touched; needs root. Its other clients use `--kubeconfig`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test harness")]

use std::path::{Path, PathBuf};

use crate::k8s_node::interop_bin;
use crate::kube::KubeCluster;

/// How the controller is run.
#[derive(Debug, Clone, Copy)]
pub struct ControllerOptions<'a> {
    /// `clusterName`.
    pub cluster_name: &'a str,
    /// `entryIDPrefix`.
    pub entry_id_prefix: &'a str,
    /// The `reconcile` block as a YAML flow mapping (e.g. `{clusterSPIFFEIDs: true}`).
    pub reconcile: &'a str,
    /// The webhook on (`spire-controller-manager-webhook`), else `ENABLE_WEBHOOKS=false`.
    pub webhook: bool,
}

/// Starts the controller against the admin socket `socket`, its files in `dir`; returns
/// the child (killed on drop) and its log file.
pub fn start_controller(
    cluster: &KubeCluster,
    socket: &Path,
    dir: &Path,
    o: ControllerOptions<'_>,
) -> (tokio::process::Child, PathBuf) {
    let config = dir.join("controller-manager-config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"apiVersion: spire.spiffe.io/v1alpha1
kind: ControllerManagerConfig
metadata:
  name: config
clusterName: {cluster_name}
clusterDomain: cluster.local
trustDomain: example.org
spireServerSocketPath: {socket}
validatingWebhookConfigurationName: spire-controller-manager-webhook
ignoreNamespaces: [kube-system, kube-public, spire-system]
entryIDPrefix: {prefix}
reconcile: {reconcile}
metrics:
  bindAddress: "0"
health:
  healthProbeBindAddress: "0"
leaderElection:
  leaderElect: false
"#,
            cluster_name = o.cluster_name,
            socket = socket.display(),
            prefix = o.entry_id_prefix,
            reconcile = o.reconcile,
        ),
    )
    .unwrap();
    let log_path = dir.join("controller-manager.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = if o.webhook {
        // What the kubelet mounts into a pod: the token and the cluster's CA.
        let sa = dir.join("serviceaccount");
        std::fs::create_dir_all(&sa).unwrap();
        std::fs::write(sa.join("token"), &cluster.info.token).unwrap();
        std::fs::copy(&cluster.info.ca_file, sa.join("ca.crt")).unwrap();
        let port = cluster.info.server.rsplit(':').next().unwrap().to_owned();
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount && cp "$0"/token "$0"/ca.crt /run/secrets/kubernetes.io/serviceaccount/ && exec "$@""#,
            )
            .arg(&sa)
            .arg(interop_bin("spire-controller-manager"))
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", port);
        cmd
    } else {
        let mut cmd = tokio::process::Command::new(interop_bin("spire-controller-manager"));
        cmd.env("ENABLE_WEBHOOKS", "false");
        cmd
    };
    let child = cmd
        .arg("--config")
        .arg(&config)
        .arg("--kubeconfig")
        .arg(&cluster.info.kubeconfig)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, log_path)
}
