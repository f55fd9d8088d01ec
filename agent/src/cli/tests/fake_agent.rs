//! A tiny Workload API server for the CLI to talk to: fixed responses, SPIRE's header check,
//! and gRPC health, served on a Unix socket in a temporary directory.

use std::path::PathBuf;
use std::pin::Pin;

use futures::{Stream, StreamExt as _, stream};
use signet_proto::workload::spiffe_workload_api_server::{
    SpiffeWorkloadApi, SpiffeWorkloadApiServer,
};
use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse,
    WitsvidRequest, WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svidRequest,
    X509svidResponse,
};
use tempfile::TempDir;
use tokio::net::UnixListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;

pub(super) const JWKS: &str = r#"{"keys":[{"kty":"EC","kid":"k1"}]}"#;

type Messages<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What the fake serves. An empty `x509.svids` means "no identity issued".
#[derive(Clone)]
pub(super) struct FakeAgent {
    pub(super) x509: X509svidResponse,
    /// When set, `FetchX509SVID` streams this channel's value and every later one instead.
    pub(super) updates: Option<watch::Receiver<X509svidResponse>>,
}

/// When the fake's tokens expire (Unix seconds).
const TOKEN_EXP: i64 = 4_000_000_000;

/// The token the fake mints: shaped like a JWT (unsigned) whose claims name the audiences
/// and subject, so tests can see them.
pub(super) fn token_for(audience: &[String], subject: &str) -> String {
    use base64::Engine as _;
    let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let claims = serde_json::json!({"aud": audience, "sub": subject, "exp": TOKEN_EXP});
    format!(
        "{}.{}.sig",
        b64(r#"{"alg":"none"}"#.to_owned()),
        b64(claims.to_string())
    )
}

/// SPIRE's check (`pkg/agent/endpoints/middleware.go`): exactly one value, `true`.
fn check_header<T>(req: &Request<T>) -> Result<(), Status> {
    let values: Vec<_> = req
        .metadata()
        .get_all("workload.spiffe.io")
        .iter()
        .collect();
    match values.as_slice() {
        [v] if *v == "true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

fn open_stream<T: Send + 'static>(first: T) -> Messages<T> {
    Box::pin(stream::iter([Ok(first)]).chain(stream::pending()))
}

impl FakeAgent {
    pub(super) fn new(x509: X509svidResponse) -> Self {
        Self {
            x509,
            updates: None,
        }
    }

    /// A fake whose X.509 responses the returned sender sets, starting with `first`.
    pub(super) fn rotating(first: X509svidResponse) -> (Self, watch::Sender<X509svidResponse>) {
        let (tx, rx) = watch::channel(first.clone());
        (
            Self {
                x509: first,
                updates: Some(rx),
            },
            tx,
        )
    }

    fn identity(&self) -> Result<&signet_proto::workload::X509svid, Status> {
        self.x509
            .svids
            .first()
            .ok_or_else(|| Status::permission_denied("no identity issued"))
    }
}

#[async_trait::async_trait]
impl SpiffeWorkloadApi for FakeAgent {
    type FetchX509SVIDStream = Messages<X509svidResponse>;
    type FetchX509BundlesStream = Messages<X509BundlesResponse>;
    type FetchJWTBundlesStream = Messages<JwtBundlesResponse>;
    type FetchWITSVIDStream = Messages<WitsvidResponse>;
    type FetchWITBundlesStream = Messages<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        req: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        check_header(&req)?;
        self.identity()?;
        if let Some(rx) = &self.updates {
            let updates = WatchStream::new(rx.clone()).map(Ok);
            return Ok(Response::new(Box::pin(updates.chain(stream::pending()))));
        }
        Ok(Response::new(open_stream(self.x509.clone())))
    }

    async fn fetch_x509_bundles(
        &self,
        _: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn fetch_jwtsvid(
        &self,
        req: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        check_header(&req)?;
        let id = self.identity()?.spiffe_id.clone();
        let req = req.into_inner();
        if req.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if !req.spiffe_id.is_empty() && req.spiffe_id != id {
            return Err(Status::permission_denied("no identity issued"));
        }
        Ok(Response::new(JwtsvidResponse {
            svids: vec![Jwtsvid {
                svid: token_for(&req.audience, &id),
                spiffe_id: id,
                hint: String::new(),
            }],
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        req: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        check_header(&req)?;
        self.identity()?;
        let bundles = [("spiffe://example.org".to_owned(), JWKS.as_bytes().to_vec())].into();
        Ok(Response::new(open_stream(JwtBundlesResponse { bundles })))
    }

    async fn validate_jwtsvid(
        &self,
        req: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        check_header(&req)?;
        let id = self.identity()?.spiffe_id.clone();
        let req = req.into_inner();
        if req.svid != token_for(std::slice::from_ref(&req.audience), &id) {
            return Err(Status::invalid_argument("token has an invalid signature"));
        }
        let claims = prost_types::Struct {
            fields: [
                (
                    "aud".to_owned(),
                    prost_types::Value::from(vec![prost_types::Value::from(req.audience.clone())]),
                ),
                ("exp".to_owned(), prost_types::Value::from(1_900_000_000.0)),
                ("sub".to_owned(), prost_types::Value::from(id.clone())),
            ]
            .into(),
        };
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: id,
            claims: Some(claims),
        }))
    }

    async fn fetch_witsvid(
        &self,
        _: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn fetch_wit_bundles(
        &self,
        _: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

/// A running fake; dropping it stops the server and removes the socket.
pub(super) struct Running {
    pub(super) socket: PathBuf,
    _dir: TempDir,
    _stop: oneshot::Sender<()>,
}

/// Serves `agent` (and gRPC health reporting `health`) on a fresh socket.
pub(super) async fn serve(agent: FakeAgent, health: ServingStatus) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("api.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", health).await;
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(SpiffeWorkloadApiServer::new(agent))
            .add_service(health_service)
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        socket,
        _dir: dir,
        _stop: stop,
    }
}
