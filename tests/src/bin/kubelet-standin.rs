//! `kubelet-standin --kubeconfig FILE --node NAME --dir DIR`: the tests' kubelet stand-in
//! ([`signet_tests::kubelet::KubeletStandIn`]) as a process, for interop scenarios that run
//! SPIRE's agent against it: serves NAME's pods of the cluster FILE points at on HTTPS,
//! writes its CA to `DIR/kubelet-ca.crt` and then its port to `DIR/kubelet.port`; runs
//! until SIGTERM or SIGINT.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test tool")]

use std::path::PathBuf;

use clap::Parser;
use signet_tests::kubelet::KubeletStandIn;

#[derive(Parser)]
struct Args {
    /// An admin kubeconfig of the cluster.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The node whose pods are served.
    #[arg(long)]
    node: String,
    /// Where the CA and the port are written.
    #[arg(long)]
    dir: PathBuf,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let file = kube::config::Kubeconfig::read_from(&args.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    std::fs::create_dir_all(&args.dir).unwrap();
    let kubelet = KubeletStandIn::start_with(client, &args.node, &args.dir).await;
    let tmp = args.dir.join("kubelet.port.tmp");
    std::fs::write(&tmp, kubelet.port.to_string()).unwrap();
    std::fs::rename(&tmp, args.dir.join("kubelet.port")).unwrap();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    kubelet.stop();
}
