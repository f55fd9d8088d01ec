//! spire-controller-manager's webhook (v0.6.3, real and unchanged, `ENABLE_WEBHOOKS` left
//! on) against signet-server and a real kube-apiserver: at start it reads signet-server's
//! bundle (`Bundle/GetBundle`), mints its serving certificate through `SVID/MintX509SVID`
//! (URI SAN `spiffe://<td>/spire-controller-manager-webhook`, DNS SAN
//! `<service>.<namespace>.svc` of the webhook's service), patches the `caBundle` of the
//! `spire-controller-manager-webhook` ValidatingWebhookConfiguration and serves TLS on :9443.
//! The test checks the patched `caBundle` is signet-server's X.509 bundle and that a TLS
//! handshake to :9443 presents a certificate that verifies against it for that DNS name.
//!
//! The webhook's own client insists on in-cluster configuration; the controller gets what
//! the kubelet gives a pod, in a private mount namespace (see `signet_tests::controller`).
//!
//! Ignored in `cargo test --workspace` (needs kube-apiserver, the controller from
//! `tests/interop/build.sh`, root and port 9443, which v0.6.3 always binds);
//! `tests/interop/run.sh 80` runs it with `--ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, PostParams};
use rustls::pki_types::{CertificateDer, ServerName};
use signet_tests::controller::{ControllerOptions, start_controller};
use signet_tests::kube::KubeCluster;
use signet_tests::{Options, TestServer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const WEBHOOK: &str = "spire-controller-manager-webhook";
const SERVICE_DNS: &str = "spire-controller-manager-webhook-service.spire-system.svc";
/// v0.6.3 ignores the config's `webhook.port`: controller-runtime's default.
const WEBHOOK_PORT: u16 = 9443;

fn webhook_config() -> ValidatingWebhookConfiguration {
    let hook = |name: &str, path: &str, resource: &str| {
        serde_json::json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            // Nothing here routes to the service; admission is not what is tested.
            "failurePolicy": "Ignore",
            "timeoutSeconds": 1,
            "clientConfig": {"service": {
                "name": "spire-controller-manager-webhook-service",
                "namespace": "spire-system",
                "path": path,
            }},
            "rules": [{
                "apiGroups": ["spire.spiffe.io"], "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"], "resources": [resource],
            }],
        })
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": WEBHOOK},
        "webhooks": [
            hook("vclusterspiffeid.kb.io", "/validate-spire-spiffe-io-v1alpha1-clusterspiffeid", "clusterspiffeids"),
            hook("vclusterfederatedtrustdomain.kb.io", "/validate-spire-spiffe-io-v1alpha1-clusterfederatedtrustdomain", "clusterfederatedtrustdomains"),
        ],
    }))
    .unwrap()
}

/// DER certificates of a PEM text.
fn ders(pem: &[u8]) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap().to_vec())
        .collect()
}

/// A TLS handshake to the webhook port, verifying its certificate against `roots` for the
/// service's DNS name; the presented chain.
async fn handshake(roots: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(CertificateDer::from(r.clone())).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", WEBHOOK_PORT))
        .await
        .map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from(SERVICE_DNS).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let chain = stream.get_ref().1.peer_certificates().unwrap_or_default();
    Ok(chain.iter().map(|c| c.to_vec()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs kube-apiserver, spire-controller-manager (tests/interop/build.sh), root and port 9443; run by tests/interop/run.sh 80"]
async fn the_controllers_webhook_serves_an_svid_minted_by_signet_and_its_ca_bundle_is_signets() {
    let cluster = KubeCluster::shared();
    cluster.install_controller_crds();
    let server = TestServer::start(Options::default()).await;
    let client = cluster.client().await;
    let hooks: Api<ValidatingWebhookConfiguration> = Api::all(client);
    hooks
        .create(&PostParams::default(), &webhook_config())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let options = ControllerOptions {
        cluster_name: "c1",
        entry_id_prefix: "scm-webhook",
        reconcile: "{clusterSPIFFEIDs: true}",
        webhook: true,
    };
    let (_controller, log_path) = start_controller(cluster, &server.socket(), dir.path(), options);
    let show_log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // The caBundle of every webhook becomes signet-server's X.509 bundle.
    let roots = server.roots().await;
    let mut patched = None;
    for _ in 0..60 {
        let current = hooks.get(WEBHOOK).await.unwrap();
        let bundles: Vec<Vec<u8>> = current
            .webhooks
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.client_config.ca_bundle.map(|b| b.0).unwrap_or_default())
            .collect();
        if bundles.iter().all(|b| !b.is_empty()) {
            patched = Some(bundles);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let patched = patched
        .unwrap_or_else(|| panic!("caBundle never patched; controller log:\n{}", show_log()));
    assert_eq!(patched.len(), 2);
    for bundle in &patched {
        assert_eq!(
            ders(bundle),
            roots,
            "caBundle is signet-server's X.509 bundle"
        );
    }

    // Its TLS port presents a certificate minted by signet-server for the service's name.
    let mut chain = Err(String::new());
    for _ in 0..60 {
        chain = handshake(&ders(&patched[0])).await;
        if chain.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let chain = chain.unwrap_or_else(|e| {
        panic!(
            "no verified TLS handshake on :{WEBHOOK_PORT}: {e}; controller log:\n{}",
            show_log()
        )
    });
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let san = leaf
        .subject_alternative_name()
        .unwrap()
        .expect("a SAN extension");
    let mut sans: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            other => format!("{other:?}"),
        })
        .collect();
    sans.sort();
    assert_eq!(
        sans,
        [
            format!("DNS:{SERVICE_DNS}"),
            "URI:spiffe://example.org/spire-controller-manager-webhook".to_owned(),
        ],
        "the webhook's X509-SVID"
    );
    let log = show_log();
    assert!(log.contains("Minted webhook certificate"), "{log}");
}
