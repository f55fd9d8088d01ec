//! The SPIFFE bundle endpoint (`federation { bundle_endpoint {} }`): served over
//! `https_spiffe` with the server's SVID and over `https_web` with certificates from files,
//! fetched by the federation client (the one signet-server uses towards foreign endpoints)
//! and by a bare TLS client that trusts only the test CA.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use signet_common::bundle::Bundle;
use signet_common::clock::SystemClock;
use signet_common::id::{parse_id, parse_trust_domain};
use signet_server::endpoints::https::testing::WebPki;
use signet_server::federation::fetch::{self, FetchContext, FetchError};
use signet_server::federation::{EndpointProfile, Relationship};
use signet_tests::{Options, TRUST_DOMAIN, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn endpoint_lines(profile: &str) -> Vec<String> {
    vec![format!(
        r#"federation {{
        bundle_endpoint {{
            address = "127.0.0.1"
            port = 0
            refresh_hint = "2m"
            {profile}
        }}
    }}"#
    )]
}

fn ctx(web_roots: RootCertStore) -> FetchContext {
    FetchContext {
        web_roots: Arc::new(web_roots),
        clock: Arc::new(SystemClock),
        timeout: fetch::FETCH_TIMEOUT,
    }
}

fn relationship(url: String, profile: EndpointProfile) -> Relationship {
    Relationship::new(
        &parse_trust_domain("other.test").unwrap(),
        parse_trust_domain(TRUST_DOMAIN).unwrap(),
        url,
        profile,
    )
    .unwrap()
}

fn own_bundle(roots: Vec<Vec<u8>>) -> Bundle {
    let mut b = Bundle::new(parse_trust_domain(TRUST_DOMAIN).unwrap());
    b.x509_authorities = roots
        .into_iter()
        .map(|der| signet_common::bundle::X509Authority {
            der,
            tainted: false,
        })
        .collect();
    b
}

#[tokio::test]
async fn https_spiffe_endpoint_serves_the_bundle_with_the_server_svid() {
    let server = TestServer::start(Options {
        server_lines: endpoint_lines(r#"profile "https_spiffe" {}"#),
        ..Options::default()
    })
    .await;
    let addr = server.server().bundle_endpoint_addr.expect("endpoint on");
    let roots = server.roots().await;
    let server_id = parse_id(&format!("spiffe://{TRUST_DOMAIN}/spire/server")).unwrap();
    let rel = relationship(
        format!("https://{addr}"),
        EndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: server_id,
        },
    );
    let bootstrap = own_bundle(roots.clone());
    let fetched = fetch::fetch(&ctx(RootCertStore::empty()), &rel, Some(&bootstrap))
        .await
        .unwrap();
    let fetched_roots: Vec<_> = fetched
        .x509_authorities
        .iter()
        .map(|a| a.der.clone())
        .collect();
    assert_eq!(fetched_roots, roots);
    assert_eq!(fetched.refresh_hint, 120);
    assert!(
        !fetched.jwt_authorities.is_empty(),
        "JWT keys are served too"
    );

    // The endpoint must present exactly the configured ID.
    let wrong = relationship(
        format!("https://{addr}"),
        EndpointProfile::HttpsSpiffe {
            endpoint_spiffe_id: parse_id(&format!("spiffe://{TRUST_DOMAIN}/not-the-server"))
                .unwrap(),
        },
    );
    let error = fetch::fetch(&ctx(RootCertStore::empty()), &wrong, Some(&bootstrap))
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::Transport { .. }), "{error}");
    assert!(error.to_string().contains("not-the-server"), "{error}");
    // And chain to the bundle the client holds.
    let stranger = own_bundle(vec![
        WebPki::new(server.dir.path(), "x", "localhost")
            .unwrap()
            .ca_der,
    ]);
    let error = fetch::fetch(&ctx(RootCertStore::empty()), &rel, Some(&stranger))
        .await
        .unwrap_err();
    assert!(matches!(error, FetchError::Transport { .. }), "{error}");
}

async fn raw_request(addr: std::net::SocketAddr, ca: &[u8], method: &str) -> String {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        format!("{method} /any/path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn https_web_endpoint_serves_the_bundle_with_a_certificate_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let pki = WebPki::new(dir.path(), "web", "localhost").unwrap();
    let profile = format!(
        r#"profile "https_web" {{
                serving_cert_file {{
                    cert_file_path = "{}"
                    key_file_path = "{}"
                }}
            }}"#,
        pki.cert_path.display(),
        pki.key_path.display()
    );
    let server = TestServer::start(Options {
        server_lines: endpoint_lines(&profile),
        ..Options::default()
    })
    .await;
    let addr = server.server().bundle_endpoint_addr.expect("endpoint on");
    let roots = server.roots().await;

    let mut web = RootCertStore::empty();
    web.add(CertificateDer::from(pki.ca_der.clone())).unwrap();
    let rel = relationship(
        format!("https://localhost:{}/", addr.port()),
        EndpointProfile::HttpsWeb,
    );
    let fetched = fetch::fetch(&ctx(web), &rel, None).await.unwrap();
    let fetched_roots: Vec<_> = fetched
        .x509_authorities
        .iter()
        .map(|a| a.der.clone())
        .collect();
    assert_eq!(fetched_roots, roots);

    // Untrusted by a client with other roots.
    let error = fetch::fetch(&ctx(RootCertStore::empty()), &rel, None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");

    // Any path answers GET with JSON; other methods get 405.
    let get = raw_request(addr, &pki.ca_der, "GET").await;
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    assert!(get.contains("content-type: application/json"), "{get}");
    let body: serde_json::Value =
        serde_json::from_str(get.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["spiffe_refresh_hint"], 120, "{get}");
    assert!(body["spiffe_sequence"].is_u64(), "{get}");
    let post = raw_request(addr, &pki.ca_der, "POST").await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
}

#[test]
fn bad_endpoint_configs_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    for (profile, expect) in [
        (
            r#"profile "https_web" {}"#,
            "exactly one of acme or serving_cert_file",
        ),
        (r#"profile "ftp" {}"#, "\"ftp\" is unknown"),
        (
            r#"profile "https_web" { serving_cert_file { key_file_path = "k" } }"#,
            "cert_file_path is required",
        ),
    ] {
        let text = TestServer::config_text(
            dir.path(),
            &Options {
                server_lines: endpoint_lines(profile),
                ..Options::default()
            },
        );
        let error = signet_server::config::Config::parse(&text, "t.conf", &Default::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expect), "{profile}: {error}");
    }
    let acme = TestServer::config_text(
        dir.path(),
        &Options {
            server_lines: endpoint_lines(
                r#"profile "https_web" { acme { domain_name = "example.org" } }"#,
            ),
            ..Options::default()
        },
    );
    let config =
        signet_server::config::Config::parse(&acme, "t.conf", &Default::default()).unwrap();
    let error = config.check_runnable("t.conf").unwrap_err().to_string();
    assert!(error.contains("ACME is not supported"), "{error}");
}
