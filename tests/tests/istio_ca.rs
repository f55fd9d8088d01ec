//! Istio external CA: istio-agent's `CreateCertificate` call over the real TLS endpoint,
//! authenticated by a Kubernetes service-account token verified against a JWKS file.
//! The chain must verify against the trust bundle (webpki and openssl), carry only the
//! token's identity, and end with the root; bad tokens get `Unauthenticated` and nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value, json};
use signet_common::clock::{Clock, SystemClock};
use signet_proto::istio::v1::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use signet_proto::istio::v1::auth::{IstioCertificateRequest, IstioCertificateResponse};
use signet_tests::{Options, TestServer};
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The server certificate's DNS name, as istio-agent checks it (`CA_ADDR` host).
const CA_HOST: &str = "signet.signet-system.svc";

struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl Key {
    /// RS256, as Kubernetes signs service-account tokens.
    fn rs256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let encoding = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.into());
        Self {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A projected token for `default/httpbin`, audience `istio-ca`, valid for an hour from
/// `iat` (Unix seconds).
fn claims(iat: i64) -> Value {
    json!({
        "aud": ["istio-ca"],
        "exp": iat + 3600,
        "iat": iat,
        "nbf": iat,
        "iss": ISSUER,
        "sub": "system:serviceaccount:default:httpbin",
        "kubernetes.io": {
            "namespace": "default",
            "pod": {"name": "httpbin-5b8c", "uid": "8f0e6c1a-3d2b-4b8e-9a7c-1e2f3a4b5c6d"},
            "serviceaccount": {"name": "httpbin", "uid": "1a2b3c4d-5e6f-4a8b-9c0d-e1f2a3b4c5d6"}
        }
    })
}

struct Fixture {
    server: TestServer,
    key: Key,
    _jwks_dir: TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let jwks_dir = tempfile::tempdir().unwrap();
        let jwks = jwks_dir.path().join("k8s-jwks.json");
        let key = Key::rs256("k8s-sa-key");
        let set = JwkSet {
            keys: vec![key.jwk.clone()],
        };
        std::fs::write(&jwks, serde_json::to_string(&set).unwrap()).unwrap();
        let block = format!(
            r#"istio_ca {{
    token_issuer = "{ISSUER}"
    token_audience = "istio-ca"
    jwks_path = "{}"
    max_validity = "24h"
    default_validity = "1h"
    server_dns_names = ["{CA_HOST}"]
}}"#,
            jwks.display()
        );
        let server = TestServer::start(Options {
            blocks: vec![block],
            ..Options::default()
        })
        .await;
        Self {
            server,
            key,
            _jwks_dir: jwks_dir,
        }
    }
}

fn now() -> i64 {
    SystemClock.unix_now()
}

/// An RSA-2048 CSR (istio-agent's default) asking for some other identity.
fn csr_pem() -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://example.org/ns/kube-system/sa/admin"
            .try_into()
            .unwrap(),
    )];
    params.serialize_request(&key).unwrap().pem().unwrap()
}

/// What istio-agent sends: bearer token, `ClusterID`, CSR, TTL and `CertSigner`.
async fn create(
    channel: Channel,
    token: Option<&str>,
    validity: i64,
) -> Result<IstioCertificateResponse, Status> {
    let metadata = prost_types::Struct {
        fields: [(
            "CertSigner".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue(String::new())),
            },
        )]
        .into(),
    };
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr: csr_pem(),
        validity_duration: validity,
        metadata: Some(metadata),
    });
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req.metadata_mut()
        .insert("clusterid", "Kubernetes".parse().unwrap());
    IstioCertificateServiceClient::new(channel)
        .create_certificate(req)
        .await
        .map(tonic::Response::into_inner)
}

/// A TLS channel that checks the server the way istio-agent (Go `crypto/tls`) does: chain
/// to the trust bundle's roots and `host` in a DNS SAN.
async fn hostname_checked_channel(
    server: &TestServer,
    host: &'static str,
) -> Result<Channel, tonic::transport::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for der in server.roots().await {
        roots.add(CertificateDer::from(der)).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = server.server().tcp_addr;
    Endpoint::try_from(format!("http://{addr}"))
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                let tls = connector
                    .connect(ServerName::try_from(host).unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

fn pem_ders(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().to_vec())
        .collect()
}

fn uri_sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let mut out = vec![];
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::URI(u) = name {
                    out.push((*u).to_owned());
                }
            }
        }
    }
    out
}

fn openssl_verify(dir: &Path, roots_pem: &str, leaf_pem: &str) {
    let roots = dir.join("roots.pem");
    let leaf = dir.join("leaf.pem");
    std::fs::write(&roots, roots_pem).unwrap();
    std::fs::write(&leaf, leaf_pem).unwrap();
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&roots)
        .arg(&leaf)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn istio_agent_gets_a_chain_for_its_service_account() {
    let fx = Fixture::start().await;
    let token = fx.key.sign(&claims(now()));
    assert!(
        hostname_checked_channel(&fx.server, "other.example")
            .await
            .is_err(),
        "the server certificate names only the configured host"
    );
    let channel = hostname_checked_channel(&fx.server, CA_HOST).await.unwrap();
    let resp = create(channel, Some(&token), 7200).await.unwrap();

    // Leaf first, root LAST, one PEM certificate per non-root element, each ending "\n".
    assert!(resp.cert_chain.len() > 1, "{:?}", resp.cert_chain);
    assert!(resp.cert_chain.iter().all(|c| c.ends_with('\n')));
    let (root_pem, non_root) = resp.cert_chain.split_last().unwrap();
    assert!(non_root.iter().all(|c| pem_ders(c).len() == 1));
    assert_eq!(pem_ders(root_pem), fx.server.roots().await);

    let leaf_der = pem_ders(&non_root[0]).remove(0);
    assert_eq!(
        uri_sans(&leaf_der),
        ["spiffe://example.org/ns/default/sa/httpbin"]
    );
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let lifetime = leaf.validity().not_after.timestamp() - now();
    assert!((7100..=7200).contains(&lifetime), "{lifetime}");

    // webpki path validation against the bundle.
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_ders(root_pem) {
        roots.add(CertificateDer::from(der)).unwrap();
    }
    let intermediates: Vec<CertificateDer<'_>> = non_root[1..]
        .iter()
        .flat_map(|c| pem_ders(c))
        .map(CertificateDer::from)
        .collect();
    let leaf_cert = CertificateDer::from(leaf_der.clone());
    let parsed = rustls::server::ParsedCertificate::try_from(&leaf_cert).unwrap();
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &intermediates,
        UnixTime::now(),
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .all,
    )
    .unwrap();
    // And openssl, with everything but the root as the leaf file.
    openssl_verify(fx.server.dir.path(), root_pem, &non_root.concat());
}

#[tokio::test]
async fn also_served_to_spiffe_verifying_clients_with_default_validity() {
    let fx = Fixture::start().await;
    let token = fx.key.sign(&claims(now()));
    let resp = create(fx.server.tls(None).await.unwrap(), Some(&token), 0)
        .await
        .unwrap();
    let leaf_der = pem_ders(&resp.cert_chain[0]).remove(0);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let lifetime = leaf.validity().not_after.timestamp() - now();
    assert!((3500..=3600).contains(&lifetime), "{lifetime}");
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_and_get_nothing() {
    let fx = Fixture::start().await;
    let channel = fx.server.tls(None).await.unwrap();
    let now = now();

    let other = Key::rs256(&fx.key.kid);
    let forged = other.sign(&claims(now));
    let mut wrong_aud = claims(now);
    wrong_aud["aud"] = json!(["https://kubernetes.default.svc"]);
    let wrong_aud = fx.key.sign(&wrong_aud);
    let expired = fx.key.sign(&claims(now - 7200));

    for (token, needle) in [
        (Some(forged.as_str()), "token signature is invalid"),
        (Some(wrong_aud.as_str()), "token audience"),
        (Some(expired.as_str()), "token has expired"),
        (None, "no authorization header"),
    ] {
        let status = create(channel.clone(), token, 3600).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(status.message().contains(needle), "{needle}: {status:?}");
    }
}

#[tokio::test]
async fn not_served_without_the_istio_ca_block() {
    let server = TestServer::start(Options::default()).await;
    let status = create(server.tls(None).await.unwrap(), Some("x"), 0)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}
