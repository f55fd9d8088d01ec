#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName};
use signet_common::clock::SystemClock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::testing::WebPki;
use super::*;

/// GETs `/` over TLS trusting only `ca`; returns the body and the leaf presented.
async fn get(addr: SocketAddr, ca: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    Ok((out, leaf))
}

async fn start(
    files: Arc<CertFiles>,
) -> (SocketAddr, watch::Sender<bool>, JoinSet<anyhow::Result<()>>) {
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let listener = bind("test listener", "127.0.0.1", 0).await.unwrap();
    let tls = server_config(files, Arc::new(SystemClock)).unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let addr = serve(&mut tasks, "test listener", listener, tls, app, shutdown).unwrap();
    (addr, stop, tasks)
}

#[tokio::test]
async fn serves_a_router_over_tls_with_a_certificate_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let pki = WebPki::new(dir.path(), "web", "localhost").unwrap();
    let files = CertFiles::load(&pki.cert_path, &pki.key_path).unwrap();
    let (addr, stop, mut tasks) = start(files).await;
    let (resp, _) = get(addr, &pki.ca_der).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("hello"), "{resp}");
    let other = WebPki::new(dir.path(), "other", "localhost").unwrap();
    let refused = get(addr, &other.ca_der).await.unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    stop.send(true).unwrap();
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
}

#[tokio::test]
async fn changed_files_are_served_after_a_reload_and_bad_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let pki = WebPki::new(dir.path(), "web", "localhost").unwrap();
    let files = CertFiles::load(&pki.cert_path, &pki.key_path).unwrap();
    let (addr, _stop, _tasks) = start(Arc::clone(&files)).await;
    let (_, first) = get(addr, &pki.ca_der).await.unwrap();
    assert!(!files.reload_if_changed().unwrap(), "nothing changed yet");

    pki.issue("localhost").unwrap();
    assert!(files.reload_if_changed().unwrap());
    let (resp, second) = get(addr, &pki.ca_der).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_ne!(first, second, "the new certificate is presented");

    // A key that does not match the certificate: refused, the previous pair kept.
    let stray = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&pki.key_path, stray.serialize_pem() + "\n").unwrap();
    let error = format!("{:#}", files.reload_if_changed().unwrap_err());
    assert!(error.contains("does not match"), "{error}");
    let (_, still) = get(addr, &pki.ca_der).await.unwrap();
    assert_eq!(still, second);
}

#[test]
fn missing_or_empty_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let error = format!("{:#}", CertFiles::load(&cert, &key).unwrap_err());
    assert!(error.contains("cert.pem"), "{error}");
    std::fs::write(&cert, "").unwrap();
    let error = format!("{:#}", CertFiles::load(&cert, &key).unwrap_err());
    assert!(error.contains("no certificate in"), "{error}");
}
