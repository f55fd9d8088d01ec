//! An in-memory Bundle and SVID API on a Unix socket in a temp dir: a self-signed CA for
//! `domain.test` that signs CSRs, a fake JWT minter and a map of federated bundles.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, IsCa, Issuer, KeyPair,
};
use signet_proto::spire::api::server::bundle::v1::bundle_server::{Bundle, BundleServer};
use signet_proto::spire::api::server::bundle::v1::*;
use signet_proto::spire::api::server::svid::v1::svid_server::{Svid, SvidServer};
use signet_proto::spire::api::server::svid::v1::*;
use signet_proto::types;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

pub(crate) const TD: &str = "domain.test";
/// Every minted SVID expires at this fixed time (2100-01-01).
pub(crate) const EXPIRES_AT: i64 = 4_102_444_800;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
    federated: Mutex<BTreeMap<String, types::Bundle>>,
}

#[derive(Clone)]
struct FakeCa(Arc<Ca>);

/// A running fake; dropping it stops the server and removes the socket.
pub(crate) struct FakeCaServer {
    pub(crate) socket: String,
    pub(crate) ca_der: Vec<u8>,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl FakeCaServer {
    pub(crate) async fn start() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.subject_alt_names = vec![rcgen::SanType::URI(
            format!("spiffe://{TD}").try_into().unwrap(),
        )];
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let fake = FakeCa(Arc::new(Ca {
            issuer: Issuer::new(params, key),
            der: der.clone(),
            federated: Mutex::default(),
        }));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(BundleServer::new(fake.clone()))
                .add_service(SvidServer::new(fake))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        Self {
            socket: path.to_str().unwrap().to_owned(),
            ca_der: der,
            _dir: dir,
            _stop: stop,
        }
    }
}

fn ok() -> Option<types::Status> {
    Some(types::Status {
        code: 0,
        message: "OK".into(),
    })
}

fn not_in_fake<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the fake"))
}

#[tonic::async_trait]
impl Bundle for FakeCa {
    async fn count_bundles(
        &self,
        _: Request<CountBundlesRequest>,
    ) -> Result<Response<CountBundlesResponse>, Status> {
        let n = self.0.federated.lock().unwrap().len() + 1;
        Ok(Response::new(CountBundlesResponse {
            count: i32::try_from(n).unwrap(),
        }))
    }

    async fn get_bundle(
        &self,
        _: Request<GetBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        Ok(Response::new(types::Bundle {
            trust_domain: TD.into(),
            x509_authorities: vec![types::X509Certificate {
                asn1: self.0.der.clone(),
                tainted: false,
            }],
            sequence_number: 1,
            ..Default::default()
        }))
    }

    async fn append_bundle(
        &self,
        _: Request<AppendBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        not_in_fake()
    }

    async fn publish_jwt_authority(
        &self,
        _: Request<PublishJwtAuthorityRequest>,
    ) -> Result<Response<PublishJwtAuthorityResponse>, Status> {
        not_in_fake()
    }

    async fn publish_wit_authority(
        &self,
        _: Request<PublishWitAuthorityRequest>,
    ) -> Result<Response<PublishWitAuthorityResponse>, Status> {
        not_in_fake()
    }

    async fn list_federated_bundles(
        &self,
        _: Request<ListFederatedBundlesRequest>,
    ) -> Result<Response<ListFederatedBundlesResponse>, Status> {
        let bundles = self.0.federated.lock().unwrap().values().cloned().collect();
        Ok(Response::new(ListFederatedBundlesResponse {
            bundles,
            next_page_token: String::new(),
        }))
    }

    async fn get_federated_bundle(
        &self,
        req: Request<GetFederatedBundleRequest>,
    ) -> Result<Response<types::Bundle>, Status> {
        let td = req.into_inner().trust_domain;
        match self.0.federated.lock().unwrap().get(&td) {
            Some(b) => Ok(Response::new(b.clone())),
            None => Err(Status::not_found("bundle not found")),
        }
    }

    async fn batch_create_federated_bundle(
        &self,
        _: Request<BatchCreateFederatedBundleRequest>,
    ) -> Result<Response<BatchCreateFederatedBundleResponse>, Status> {
        not_in_fake()
    }

    async fn batch_update_federated_bundle(
        &self,
        _: Request<BatchUpdateFederatedBundleRequest>,
    ) -> Result<Response<BatchUpdateFederatedBundleResponse>, Status> {
        not_in_fake()
    }

    async fn batch_set_federated_bundle(
        &self,
        req: Request<BatchSetFederatedBundleRequest>,
    ) -> Result<Response<BatchSetFederatedBundleResponse>, Status> {
        let mut federated = self.0.federated.lock().unwrap();
        let mut results = Vec::new();
        for b in req.into_inner().bundle {
            federated.insert(b.trust_domain.clone(), b.clone());
            results.push(batch_set_federated_bundle_response::Result {
                status: ok(),
                bundle: Some(b),
            });
        }
        Ok(Response::new(BatchSetFederatedBundleResponse { results }))
    }

    async fn batch_delete_federated_bundle(
        &self,
        req: Request<BatchDeleteFederatedBundleRequest>,
    ) -> Result<Response<BatchDeleteFederatedBundleResponse>, Status> {
        let mut federated = self.0.federated.lock().unwrap();
        let mut results = Vec::new();
        for td in req.into_inner().trust_domains {
            let status = match federated.remove(&td) {
                Some(_) => ok(),
                None => Some(types::Status {
                    code: tonic::Code::NotFound as i32,
                    message: "no such bundle".into(),
                }),
            };
            results.push(batch_delete_federated_bundle_response::Result {
                status,
                trust_domain: td,
            });
        }
        Ok(Response::new(BatchDeleteFederatedBundleResponse {
            results,
        }))
    }
}

#[tonic::async_trait]
impl Svid for FakeCa {
    async fn mint_x509svid(
        &self,
        req: Request<MintX509svidRequest>,
    ) -> Result<Response<MintX509svidResponse>, Status> {
        let der = req.into_inner().csr;
        let mut csr = CertificateSigningRequestParams::from_der(&der.into())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        csr.params.not_after = time::OffsetDateTime::from_unix_timestamp(EXPIRES_AT).unwrap();
        let cert = csr.signed_by(&self.0.issuer).unwrap();
        Ok(Response::new(MintX509svidResponse {
            svid: Some(types::X509svid {
                cert_chain: vec![cert.der().to_vec()],
                id: None,
                expires_at: EXPIRES_AT,
                hint: String::new(),
            }),
        }))
    }

    async fn mint_jwtsvid(
        &self,
        req: Request<MintJwtsvidRequest>,
    ) -> Result<Response<MintJwtsvidResponse>, Status> {
        let req = req.into_inner();
        let id = req.id.unwrap_or_default();
        let claims = serde_json::json!({
            "sub": format!("spiffe://{}{}", id.trust_domain, id.path),
            "aud": req.audience,
            "exp": EXPIRES_AT,
        });
        let token = format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims.to_string()));
        Ok(Response::new(MintJwtsvidResponse {
            svid: Some(types::Jwtsvid {
                token,
                id: Some(id),
                expires_at: EXPIRES_AT,
                issued_at: 0,
                hint: String::new(),
            }),
        }))
    }

    async fn mint_witsvid(
        &self,
        _: Request<MintWitsvidRequest>,
    ) -> Result<Response<MintWitsvidResponse>, Status> {
        not_in_fake()
    }

    async fn batch_new_x509svid(
        &self,
        _: Request<BatchNewX509svidRequest>,
    ) -> Result<Response<BatchNewX509svidResponse>, Status> {
        not_in_fake()
    }

    async fn new_jwtsvid(
        &self,
        _: Request<NewJwtsvidRequest>,
    ) -> Result<Response<NewJwtsvidResponse>, Status> {
        not_in_fake()
    }

    async fn batch_new_witsvid(
        &self,
        _: Request<BatchNewWitsvidRequest>,
    ) -> Result<Response<BatchNewWitsvidResponse>, Status> {
        not_in_fake()
    }

    async fn new_downstream_x509ca(
        &self,
        _: Request<NewDownstreamX509caRequest>,
    ) -> Result<Response<NewDownstreamX509caResponse>, Status> {
        not_in_fake()
    }
}
