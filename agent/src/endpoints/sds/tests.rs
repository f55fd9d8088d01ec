//! SDS driven by a client generated from `envoy-types`, behaving as Envoy does, over a real
//! Unix socket; and two proxies built only from what SDS returned completing mutual TLS.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    Secret, SpiffeCertValidatorConfig, secret,
};
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryServiceServer;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use signet_common::bundle::{Bundle, X509Authority};
use signet_common::entry::RegistrationEntry;
use signet_common::id::{TrustDomain, parse_id, parse_trust_domain};
use signet_common::selector::SelectorSet;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::{Channel, Endpoint, Server, Uri};

use super::*;
use crate::client::JwtSvid;
use crate::manager::{JwtError, WorkloadSvid};

// === fixtures ===

struct Ca {
    td: TrustDomain,
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl Ca {
    fn new(td: &str) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        p.subject_alt_names = vec![rcgen::SanType::URI(
            format!("spiffe://{td}").try_into().unwrap(),
        )];
        let cert = p.self_signed(&key).unwrap();
        Self {
            td: parse_trust_domain(td).unwrap(),
            key,
            cert,
        }
    }

    fn bundle(&self) -> Arc<Bundle> {
        let mut b = Bundle::new(self.td.clone());
        b.x509_authorities.push(X509Authority {
            der: self.cert.der().to_vec(),
            tainted: false,
        });
        Arc::new(b)
    }

    fn svid(&self, entry: Arc<RegistrationEntry>) -> Arc<WorkloadSvid> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.subject_alt_names = vec![rcgen::SanType::URI(
            entry.spiffe_id.to_string().try_into().unwrap(),
        )];
        let issuer = rcgen::Issuer::from_ca_cert_der(self.cert.der(), &self.key).unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        Arc::new(WorkloadSvid::new(
            entry,
            &[cert.der().to_vec()],
            key.serialize_der(),
            0,
            i64::MAX,
        ))
    }
}

fn entry(id: &str, spiffe: &str, federates_with: &[&str]) -> Arc<RegistrationEntry> {
    Arc::new(RegistrationEntry {
        federates_with: federates_with.iter().map(|s| (*s).to_owned()).collect(),
        ..RegistrationEntry::new(
            id,
            parse_id(spiffe).unwrap(),
            parse_id("spiffe://example.org/spire/agent/x").unwrap(),
            ["test:caller".parse().unwrap()].into_iter().collect(),
        )
    })
}

fn snapshot(
    ca: &Ca,
    svids: Vec<Arc<WorkloadSvid>>,
    federated: &[&Ca],
    revision: u64,
) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        trust_domain: ca.td.clone(),
        revision,
        synced: true,
        bundle: ca.bundle(),
        federated: federated
            .iter()
            .map(|f| (f.td.clone(), f.bundle()))
            .collect::<BTreeMap<_, _>>(),
        entries: svids.iter().map(|s| Arc::clone(&s.entry)).collect(),
        svids: svids
            .iter()
            .map(|s| (s.entry.id.clone(), Arc::clone(s)))
            .collect(),
    })
}

#[derive(Debug)]
struct NoJwt;

#[async_trait::async_trait]
impl Identities for NoJwt {
    async fn jwt_svid(&self, _: &RegistrationEntry, _: &[String]) -> Result<JwtSvid, JwtError> {
        Err(JwtError::Unavailable("not in this test".into()))
    }
    fn want(&self, _: &[Arc<RegistrationEntry>]) {}
}

#[derive(Debug)]
struct Fixed(SelectorSet);

#[async_trait::async_trait]
impl CallerSelectors for Fixed {
    async fn caller_selectors(&self, _: &tonic::Extensions) -> Result<SelectorSet, Status> {
        Ok(self.0.clone())
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    channel: Channel,
    publish: watch::Sender<Arc<Snapshot>>,
}

async fn serve(initial: Arc<Snapshot>, config: SdsConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sds.sock");
    let (publish, rx) = watch::channel(initial);
    let svc = SdsService::new(
        rx,
        Arc::new(NoJwt),
        Arc::new(Fixed(
            ["test:caller".parse().unwrap()].into_iter().collect(),
        )),
        config,
    );
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(SecretDiscoveryServiceServer::new(svc))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    let channel = Endpoint::try_from("http://sds-grpc")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(p).await?,
                ))
            }
        }))
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        channel,
        publish,
    }
}

fn request(names: &[&str], version: &str, nonce: &str, node: bool) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        node: node.then(|| Node {
            id: "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local".into(),
            cluster: "sleep.default".into(),
            ..Default::default()
        }),
        resource_names: names.iter().map(|s| (*s).to_owned()).collect(),
        type_url: SECRET_TYPE_URL.into(),
        response_nonce: nonce.into(),
        error_detail: None,
        ..Default::default()
    }
}

fn secrets(resp: &DiscoveryResponse) -> Vec<Secret> {
    resp.resources
        .iter()
        .map(|a| {
            assert_eq!(a.type_url, SECRET_TYPE_URL);
            Secret::decode(a.value.as_slice()).unwrap()
        })
        .collect()
}

fn cert_pem(s: &Secret) -> Vec<u8> {
    let Some(secret::Type::TlsCertificate(t)) = &s.r#type else {
        panic!("{} is not a TLS certificate", s.name)
    };
    match t
        .certificate_chain
        .as_ref()
        .and_then(|d| d.specifier.clone())
    {
        Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(b)) => b,
        other => panic!("chain not inline bytes: {other:?}"),
    }
}

async fn next(stream: &mut tonic::Streaming<DiscoveryResponse>) -> DiscoveryResponse {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a response")
        .unwrap()
        .unwrap()
}

async fn nothing(stream: &mut tonic::Streaming<DiscoveryResponse>) {
    let r = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(r.is_err(), "no response expected, got {r:?}");
}

// === tests ===

#[tokio::test]
async fn envoy_like_stream_gets_default_then_rootca_acks_rotation_and_no_resend_after_nack() {
    let ca = Ca::new("example.org");
    let web = entry("e1", "spiffe://example.org/web", &[]);
    let fx = serve(
        snapshot(&ca, vec![ca.svid(Arc::clone(&web))], &[], 1),
        SdsConfig::default(),
    )
    .await;
    let (tx, rx) = mpsc::channel(8);
    let mut client = SecretDiscoveryServiceClient::new(fx.channel.clone());
    tx.send(request(&["default"], "", "", true)).await.unwrap();
    let mut stream = client
        .stream_secrets(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    let r1 = next(&mut stream).await;
    let s1 = secrets(&r1);
    assert_eq!((s1.len(), s1[0].name.as_str()), (1, "default"));
    let first_cert = cert_pem(&s1[0]);

    // Same stream, Envoy adds ROOTCA (ACKing v1 at the same time).
    tx.send(request(
        &["default", "ROOTCA"],
        &r1.version_info,
        &r1.nonce,
        false,
    ))
    .await
    .unwrap();
    let r2 = next(&mut stream).await;
    assert_ne!(r2.version_info, r1.version_info);
    let names: Vec<_> = secrets(&r2).iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["default", "ROOTCA"]);
    let Some(secret::Type::ValidationContext(vc)) = &secrets(&r2)[1].r#type else {
        panic!("ROOTCA is a validation context")
    };
    let validator = vc
        .custom_validator_config
        .as_ref()
        .expect("SPIFFE validator by default");
    assert_eq!(validator.name, "envoy.tls.cert_validator.spiffe");
    let cfg = SpiffeCertValidatorConfig::decode(
        validator.typed_config.as_ref().unwrap().value.as_slice(),
    )
    .unwrap();
    assert_eq!(cfg.trust_domains[0].name, "example.org");

    // ACK: nothing more is sent.
    tx.send(request(
        &["default", "ROOTCA"],
        &r2.version_info,
        &r2.nonce,
        false,
    ))
    .await
    .unwrap();
    nothing(&mut stream).await;

    // The SVID rotates: a new version arrives with the new certificate.
    fx.publish
        .send(snapshot(&ca, vec![ca.svid(Arc::clone(&web))], &[], 2))
        .unwrap();
    let r3 = next(&mut stream).await;
    assert_ne!(cert_pem(&secrets(&r3)[0]), first_cert);

    // Envoy NACKs v3: it is not sent again, not even when the snapshot is republished as is.
    let mut nack = request(&["default", "ROOTCA"], &r2.version_info, &r3.nonce, false);
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "rejected".into(),
        details: vec![],
    });
    tx.send(nack).await.unwrap();
    nothing(&mut stream).await;
    let same = (*fx.publish.borrow()).as_ref().clone();
    fx.publish
        .send(Arc::new(Snapshot {
            revision: 3,
            ..same
        }))
        .unwrap();
    nothing(&mut stream).await;

    // A stale nonce is ignored.
    tx.send(request(&["default"], &r1.version_info, &r1.nonce, false))
        .await
        .unwrap();
    nothing(&mut stream).await;

    // A real change produces a new version.
    fx.publish
        .send(snapshot(&ca, vec![ca.svid(Arc::clone(&web))], &[], 4))
        .unwrap();
    let r4 = next(&mut stream).await;
    assert_ne!(r4.version_info, r3.version_info);

    // FetchSecrets returns the same content as the stream's latest response.
    let fetched = client
        .fetch_secrets(request(&["default", "ROOTCA"], "", "", true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.resources, r4.resources);
}

#[tokio::test]
async fn unknown_names_are_refused_naming_them() {
    let ca = Ca::new("example.org");
    let fx = serve(
        snapshot(
            &ca,
            vec![ca.svid(entry("e1", "spiffe://example.org/web", &[]))],
            &[],
            1,
        ),
        SdsConfig::default(),
    )
    .await;
    let mut client = SecretDiscoveryServiceClient::new(fx.channel.clone());
    let err = client
        .fetch_secrets(request(
            &["default", "spiffe://example.org/db"],
            "",
            "",
            true,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("spiffe://example.org/db"),
        "{}",
        err.message()
    );

    let (tx, rx) = mpsc::channel(2);
    tx.send(request(&["spiffe://other.org"], "", "", true))
        .await
        .unwrap();
    let mut stream = client
        .stream_secrets(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let err = stream.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("spiffe://other.org"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn disabled_spiffe_validation_serves_trusted_ca() {
    let ca = Ca::new("example.org");
    let config = SdsConfig {
        disable_spiffe_cert_validation: true,
        ..SdsConfig::default()
    };
    let fx = serve(
        snapshot(
            &ca,
            vec![ca.svid(entry("e1", "spiffe://example.org/web", &[]))],
            &[],
            1,
        ),
        config,
    )
    .await;
    let resp = SecretDiscoveryServiceClient::new(fx.channel.clone())
        .fetch_secrets(request(&["ROOTCA"], "", "", true))
        .await
        .unwrap()
        .into_inner();
    let Some(secret::Type::ValidationContext(vc)) = &secrets(&resp)[0].r#type else {
        panic!()
    };
    assert!(vc.custom_validator_config.is_none());
    let Some(envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(pem)) =
        vc.trusted_ca.as_ref().and_then(|d| d.specifier.clone())
    else {
        panic!("trusted_ca inline")
    };
    assert_eq!(
        signet_common::bundle::parse_pem_certs(std::str::from_utf8(&pem).unwrap()).unwrap(),
        vec![ca.cert.der().to_vec()]
    );
}

#[tokio::test]
async fn federated_bundles_and_all_bundles_resolve_by_name() {
    let ca = Ca::new("example.org");
    let fed = Ca::new("partner.org");
    let e = entry("e1", "spiffe://example.org/web", &["partner.org"]);
    let fx = serve(
        snapshot(&ca, vec![ca.svid(e)], &[&fed], 1),
        SdsConfig::default(),
    )
    .await;
    let resp = SecretDiscoveryServiceClient::new(fx.channel.clone())
        .fetch_secrets(request(
            &["spiffe://partner.org", "ALL", "spiffe://example.org/web"],
            "",
            "",
            true,
        ))
        .await
        .unwrap()
        .into_inner();
    let s = secrets(&resp);
    assert_eq!(
        s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["spiffe://partner.org", "ALL", "spiffe://example.org/web"]
    );
    let Some(secret::Type::ValidationContext(vc)) = &s[1].r#type else {
        panic!()
    };
    let cfg = SpiffeCertValidatorConfig::decode(
        vc.custom_validator_config
            .as_ref()
            .unwrap()
            .typed_config
            .as_ref()
            .unwrap()
            .value
            .as_slice(),
    )
    .unwrap();
    let tds: Vec<_> = cfg.trust_domains.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tds, ["example.org", "partner.org"]);
}

// === two proxies built only from SDS output ===

mod proxies {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use signet_common::tls::{Authorizer, ClientSvidVerifier, ServerSvidVerifier, TrustAnchors};

    use super::*;

    /// What Envoy would build from `default` (TlsCertificate) and a SPIFFE validator secret.
    pub(super) struct Proxy {
        pub(super) chain: Vec<CertificateDer<'static>>,
        pub(super) key: PrivateKeyDer<'static>,
        /// trust domain name → its roots, DER.
        pub(super) trust: BTreeMap<String, Vec<Vec<u8>>>,
    }

    fn inline(d: &Option<envoy_types::pb::envoy::config::core::v3::DataSource>) -> Vec<u8> {
        match d.as_ref().and_then(|d| d.specifier.clone()) {
            Some(
                envoy_types::pb::envoy::config::core::v3::data_source::Specifier::InlineBytes(b),
            ) => b,
            other => panic!("not inline bytes: {other:?}"),
        }
    }

    impl Proxy {
        pub(super) fn from_sds(resp: &DiscoveryResponse) -> Self {
            use rustls::pki_types::pem::PemObject;
            let s = secrets(resp);
            let Some(secret::Type::TlsCertificate(t)) = &s[0].r#type else {
                panic!("default first")
            };
            let chain = CertificateDer::pem_slice_iter(&inline(&t.certificate_chain))
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_slice(&inline(&t.private_key)).unwrap();
            let Some(secret::Type::ValidationContext(vc)) = &s[1].r#type else {
                panic!("validator second")
            };
            let cfg = SpiffeCertValidatorConfig::decode(
                vc.custom_validator_config
                    .as_ref()
                    .unwrap()
                    .typed_config
                    .as_ref()
                    .unwrap()
                    .value
                    .as_slice(),
            )
            .unwrap();
            let trust = cfg
                .trust_domains
                .iter()
                .map(|t| {
                    let pem = String::from_utf8(inline(&t.trust_bundle)).unwrap();
                    (
                        t.name.clone(),
                        signet_common::bundle::parse_pem_certs(&pem).unwrap(),
                    )
                })
                .collect();
            Self { chain, key, trust }
        }
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// Envoy's SPIFFE validator: the peer's trust domain picks the bundle to verify against.
    fn validator(trust: &BTreeMap<String, Vec<Vec<u8>>>) -> Arc<TrustAnchors> {
        Arc::new(TrustAnchors::per_trust_domain(trust, &provider()).unwrap())
    }

    /// Runs a handshake between `server` and `client` proxies; returns the peer SPIFFE IDs
    /// each side saw, or the error.
    pub(super) async fn mtls(server: &Proxy, client: &Proxy) -> Result<(String, String), String> {
        let sc = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(Arc::new(ClientSvidVerifier::with_trust(
                validator(&server.trust),
                Authorizer::new(|_| true),
                &provider(),
            )))
            .with_single_cert(server.chain.clone(), server.key.clone_key())
            .unwrap();
        let cc = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerSvidVerifier::with_trust(
                validator(&client.trust),
                Authorizer::new(|_| true),
                &provider(),
            )))
            .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
            .unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(sc));
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cc));
        let server_side = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut s = acceptor.accept(a).await.map_err(|e| e.to_string())?;
            let peer = s
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c[0].clone())
                .ok_or("no client cert")?;
            s.write_all(b"ok").await.map_err(|e| e.to_string())?;
            Ok::<_, String>(
                signet_common::x509::spiffe_id_of_cert(peer.as_ref())
                    .unwrap()
                    .to_string(),
            )
        });
        let client_side = async move {
            use tokio::io::AsyncReadExt;
            let mut c = connector
                .connect(ServerName::try_from("proxy").unwrap(), b)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 2];
            c.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            let peer = c
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c[0].clone())
                .ok_or("no server cert")?;
            Ok::<_, String>(
                signet_common::x509::spiffe_id_of_cert(peer.as_ref())
                    .unwrap()
                    .to_string(),
            )
        };
        let client_saw = client_side.await;
        let server_saw = server_side.await.map_err(|e| e.to_string())?;
        Ok((server_saw?, client_saw?))
    }
}

#[tokio::test]
async fn proxies_built_from_sds_complete_mtls_across_federated_domains_and_refuse_strangers() {
    let example = Ca::new("example.org");
    let partner = Ca::new("partner.org");
    let stranger = Ca::new("evil.org");
    let names = ["default", "ROOTCA"];
    let config = SdsConfig {
        default_bundle_name: "null".into(),
        default_all_bundles_name: "ROOTCA".into(),
        ..SdsConfig::default()
    };

    let mut proxies = vec![];
    for (ca, id, fed) in [
        (&example, "spiffe://example.org/web", &partner),
        (&partner, "spiffe://partner.org/api", &example),
        (&stranger, "spiffe://evil.org/mallory", &example),
    ] {
        let e = entry("e1", id, &[fed.td.as_str()]);
        let fx = serve(snapshot(ca, vec![ca.svid(e)], &[fed], 1), config.clone()).await;
        let resp = SecretDiscoveryServiceClient::new(fx.channel.clone())
            .fetch_secrets(request(&names, "", "", true))
            .await
            .unwrap()
            .into_inner();
        proxies.push(proxies::Proxy::from_sds(&resp));
    }
    let (web, api, mallory) = (&proxies[0], &proxies[1], &proxies[2]);

    let (server_saw, client_saw) = proxies::mtls(web, api)
        .await
        .expect("federated peers complete mutual TLS");
    assert_eq!(server_saw, "spiffe://partner.org/api");
    assert_eq!(client_saw, "spiffe://example.org/web");

    let refused = proxies::mtls(web, mallory).await;
    assert!(
        refused.is_err(),
        "a trust domain outside the validator is refused: {refused:?}"
    );
}

#[tokio::test]
async fn node_metadata_can_ask_for_trusted_ca_bundles() {
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    let ca = Ca::new("example.org");
    let fx = serve(
        snapshot(
            &ca,
            vec![ca.svid(entry("e1", "spiffe://example.org/web", &[]))],
            &[],
            1,
        ),
        SdsConfig::default(),
    )
    .await;
    let mut req = request(&["ROOTCA"], "", "", true);
    let metadata = Struct {
        fields: [(
            "disable_spiffe_cert_validation".to_owned(),
            Value {
                kind: Some(Kind::StringValue("true".into())),
            },
        )]
        .into_iter()
        .collect(),
    };
    req.node.as_mut().unwrap().metadata = Some(metadata);
    let resp = SecretDiscoveryServiceClient::new(fx.channel.clone())
        .fetch_secrets(req)
        .await
        .unwrap()
        .into_inner();
    let Some(secret::Type::ValidationContext(vc)) = &secrets(&resp)[0].r#type else {
        panic!()
    };
    assert!(
        vc.custom_validator_config.is_none() && vc.trusted_ca.is_some(),
        "{vc:?}"
    );
}
