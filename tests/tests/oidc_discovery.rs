//! Built-in OIDC discovery (`server.oidc_discovery {}`): the discovery document and `/keys`
//! over HTTPS with a certificate from files, fetched by a TLS client that trusts only the test
//! CA; a JWT-SVID minted by the server verifies with the served key (`jsonwebtoken`); the
//! certificate files are re-read when they change; bad configurations are refused by name.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use signet_proto::spire::api::server::svid::v1::MintJwtsvidRequest;
use signet_proto::spire::api::server::svid::v1::svid_client::SvidClient;
use signet_proto::types;
use signet_server::endpoints::https::testing::WebPki;
use signet_tests::{Options, TRUST_DOMAIN, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn lines(issuer: Option<&str>, port: u16, pki: &WebPki) -> Vec<String> {
    let mut out = vec![format!(
        r#"oidc_discovery {{
        address = "127.0.0.1"
        port = {port}
        serving_cert_file {{
            cert_file_path = "{}"
            key_file_path = "{}"
            file_sync_interval = "200ms"
        }}
    }}"#,
        pki.cert_path.display(),
        pki.key_path.display()
    )];
    if let Some(issuer) = issuer {
        out.push(format!("jwt_issuer = \"{issuer}\""));
    }
    out
}

/// `GET path` over HTTPS trusting only `ca`; the response, and the server's leaf (DER).
async fn get(addr: SocketAddr, ca: &[u8], path: &str) -> Result<(String, Vec<u8>), String> {
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
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    Ok((out, leaf))
}

fn json_body(resp: &str) -> serde_json::Value {
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("content-type: application/json"), "{resp}");
    serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

#[tokio::test]
async fn discovery_and_keys_verify_a_jwt_svid_and_the_certificate_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let pki = WebPki::new(dir.path(), "oidc", "127.0.0.1").unwrap();
    let port = free_port();
    let issuer = format!("https://127.0.0.1:{port}");
    let server = TestServer::start(Options {
        server_lines: lines(Some(&issuer), port, &pki),
        ..Options::default()
    })
    .await;
    let addr = server.server().oidc_discovery_addr.expect("listener on");

    let (resp, first_leaf) = get(addr, &pki.ca_der, "/.well-known/openid-configuration")
        .await
        .unwrap();
    let doc = json_body(&resp);
    assert_eq!(doc["issuer"], issuer.as_str());
    assert_eq!(doc["jwks_uri"], format!("{issuer}/keys"));
    assert!(
        doc["id_token_signing_alg_values_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "ES256"),
        "{doc}"
    );
    assert_eq!(doc["response_types_supported"][0], "id_token");

    // A JWT-SVID from the server verifies with the JWK whose kid its header names.
    let minted = SvidClient::new(server.admin().await)
        .mint_jwtsvid(MintJwtsvidRequest {
            id: Some(types::Spiffeid {
                trust_domain: TRUST_DOMAIN.into(),
                path: "/rp-test".into(),
            }),
            audience: vec!["rp".into()],
            ttl: 60,
        })
        .await
        .unwrap()
        .into_inner();
    let token = minted.svid.unwrap().token;
    let (resp, _) = get(addr, &pki.ca_der, "/keys").await.unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(json_body(&resp)).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the kid is served");
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["rp"]);
    validation.set_issuer(&[issuer.as_str()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], format!("spiffe://{TRUST_DOMAIN}/rp-test"));

    // New certificate files: served within a few sync intervals, no restart.
    pki.issue("127.0.0.1").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, leaf) = get(addr, &pki.ca_der, "/keys").await.unwrap();
        if leaf != first_leaf {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "certificate never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A client that trusts another CA is refused.
    let other = WebPki::new(dir.path(), "other", "127.0.0.1").unwrap();
    assert!(get(addr, &other.ca_der, "/keys").await.is_err());
}

#[tokio::test]
async fn bad_oidc_discovery_configs_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = WebPki::new(dir.path(), "oidc", "127.0.0.1").unwrap();
    for (issuer, want) in [
        (None, "server.oidc_discovery needs server.jwt_issuer"),
        (Some("http://plain.example"), "must be an https URL"),
    ] {
        let opts = Options {
            server_lines: lines(issuer, 0, &pki),
            ..Options::default()
        };
        let err = signet_server::config::Config::parse(
            &TestServer::config_text(dir.path(), &opts),
            "server.conf",
            &signet_server::config::RunArgs::default(),
        )
        .expect_err(want);
        assert!(err.to_string().contains(want), "{err}");
    }

    // A key file that is not there stops start-up, naming it.
    let missing = dir.path().join("missing.key");
    let mut text = TestServer::config_text(
        dir.path(),
        &Options {
            server_lines: lines(Some("https://127.0.0.1:1"), 0, &pki),
            ..Options::default()
        },
    );
    text = text.replace(
        &pki.key_path.display().to_string(),
        &missing.display().to_string(),
    );
    let config = signet_server::config::Config::parse(
        &text,
        "server.conf",
        &signet_server::config::RunArgs::default(),
    )
    .unwrap();
    let err =
        signet_server::run::Server::start(config, Arc::new(signet_common::clock::SystemClock))
            .await
            .expect_err("no key file");
    let msg = format!("{err:#}");
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
}
