//! The SPIFFE Workload API (`SpiffeWorkloadAPI`): every RPC attests its caller, then serves
//! from the manager's snapshot. Streams send a complete response at once and again whenever
//! what they serve changes; they end with PermissionDenied when the caller has no identity
//! (any more), never with OK.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::try_join_all;
use signet_common::bundle::{Bundle, to_jwks};
use signet_common::entry::RegistrationEntry;
use signet_common::id::{TrustDomain, parse_id};
use signet_common::selector::SelectorSet;
use signet_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;
use signet_proto::workload::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, WitBundlesRequest, WitBundlesResponse,
    WitsvidRequest, WitsvidResponse, X509BundlesRequest, X509BundlesResponse, X509svid,
    X509svidRequest, X509svidResponse,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{Instrument, Span};

use signet_common::clock::Clock;

use crate::attestor::workload::{Attestors, Peer};
use crate::endpoints::caller::CallerAttestor;
use crate::endpoints::error::ApiError;
use crate::endpoints::jwt;
use crate::manager::{Identities, Snapshot, WorkloadSvid};

/// How long a stream waits for its first response before saying so in the log.
const WAIT_LOG_AFTER: Duration = Duration::from_secs(1);
/// How long a unary call waits for the manager's first sync before giving up.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// Responses buffered per stream before the sender waits for the client.
const STREAM_BUFFER: usize = 2;

/// The most audience values one FetchJWTSVID may ask for.
pub const MAX_AUDIENCES: usize = 32;

/// The longest audience value FetchJWTSVID accepts, in bytes.
pub const MAX_AUDIENCE_BYTES: usize = 2048;

type Stream<T> = ReceiverStream<Result<T, Status>>;

/// What the public socket serves from.
#[derive(Debug, Clone)]
pub struct WorkloadApi {
    /// The manager's current snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// JWT-SVIDs and SVID demand.
    pub identities: Arc<dyn Identities>,
    /// Workload attestors.
    pub attestors: Arc<Attestors>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

/// The `SpiffeWorkloadAPI` service.
#[derive(Debug, Clone)]
pub struct WorkloadService {
    api: WorkloadApi,
    attestor: CallerAttestor,
    shutdown: watch::Receiver<bool>,
}

/// An attested caller.
#[derive(Debug)]
struct Caller {
    selectors: SelectorSet,
}

/// What one snapshot means for a stream.
enum Step<K> {
    /// Nothing to send yet (not synced, or SVIDs still being minted).
    Wait,
    /// The complete response made of this (sent unless identical to the previous one).
    Send(K),
    /// End the stream with this error.
    Fail(ApiError),
}

/// What an X509-SVID response is made of, shared with the snapshot: a stream keeps this
/// between updates instead of a copy of every chain, key and bundle it sent. Equal exactly
/// when the responses built from both are equal.
#[derive(Debug)]
struct X509Served {
    bundle: Arc<Bundle>,
    entries: Vec<Arc<RegistrationEntry>>,
    svids: Vec<Arc<WorkloadSvid>>,
    federated: BTreeMap<TrustDomain, Arc<Bundle>>,
}

impl PartialEq for X509Served {
    fn eq(&self, other: &Self) -> bool {
        same_x509(&self.bundle, &other.bundle)
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.hint == b.hint)
            && self.svids.len() == other.svids.len()
            && self.svids.iter().zip(&other.svids).all(|(a, b)| {
                Arc::ptr_eq(a, b)
                    || (a.entry.spiffe_id == b.entry.spiffe_id
                        && a.chain_der == b.chain_der
                        && a.key_pkcs8 == b.key_pkcs8)
            })
            && self.federated.len() == other.federated.len()
            && self
                .federated
                .iter()
                .zip(&other.federated)
                .all(|((ta, a), (tb, b))| ta == tb && same_x509(a, b))
    }
}

/// Whether two bundles have the same X.509 roots (what an X509-SVID response carries).
fn same_x509(a: &Arc<Bundle>, b: &Arc<Bundle>) -> bool {
    Arc::ptr_eq(a, b)
        || a.x509_authorities
            .iter()
            .map(|x| &x.der)
            .eq(b.x509_authorities.iter().map(|x| &x.der))
}

impl WorkloadService {
    /// Serves from `api`; open streams end (Unavailable) when `shutdown` turns true.
    pub fn new(api: WorkloadApi, shutdown: watch::Receiver<bool>) -> Self {
        let attestor = CallerAttestor::new(Arc::clone(&api.attestors));
        Self {
            api,
            attestor,
            shutdown,
        }
    }

    /// Attests the caller, then makes sure it is still the process that connected.
    async fn attest(&self, peer: &Peer) -> Result<Caller, ApiError> {
        let selectors = self.attestor.attest(peer).await?;
        Ok(Caller { selectors })
    }

    /// The current snapshot once the manager has synced with the server (waiting at most
    /// [`SYNC_WAIT`] for the first sync).
    async fn synced_snapshot(&self) -> Result<Arc<Snapshot>, ApiError> {
        let mut snapshot = self.api.snapshot.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            synced = tokio::time::timeout(SYNC_WAIT, snapshot.wait_for(|s| s.synced)) => {
                match synced {
                    Ok(Ok(s)) => Ok(Arc::clone(&s)),
                    Ok(Err(_)) => Err(shutting_down()),
                    Err(_) => Err(ApiError::Unavailable("agent has not synced yet".into())),
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => Err(shutting_down()),
        }
    }

    /// Starts a stream task feeding the client the responses `build` makes of `step`'s.
    fn stream<K, T, F, B>(&self, step: F, build: B, on_wait: fn()) -> Stream<T>
    where
        K: PartialEq + Send + 'static,
        T: Send + 'static,
        F: FnMut(&Snapshot) -> Step<K> + Send + 'static,
        B: Fn(&K) -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let feed = feed(
            self.api.snapshot.clone(),
            self.shutdown.clone(),
            tx,
            step,
            build,
            on_wait,
        );
        tokio::spawn(feed.instrument(Span::current()));
        ReceiverStream::new(rx)
    }

    async fn x509_svid(&self, peer: Peer) -> Result<Stream<X509svidResponse>, ApiError> {
        let caller = self.attest(&peer).await?;
        let identities = Arc::clone(&self.api.identities);
        let step = move |snap: &Snapshot| {
            if !snap.synced {
                return Step::Wait;
            }
            let entries = snap.entries_for(&caller.selectors);
            if entries.is_empty() {
                return Step::Fail(ApiError::NoIdentity);
            }
            // Every update renews the claim: the manager keeps SVIDs of entries wanted within
            // its in-use window out of eviction from the bounded cache.
            identities.want(&entries);
            match snap.svids_for(&entries) {
                Some(svids) => Step::Send(X509Served {
                    bundle: Arc::clone(&snap.bundle),
                    federated: snap.federated_for(&entries),
                    entries,
                    svids,
                }),
                None => Step::Wait,
            }
        };
        Ok(self.stream(step, x509_svid_response, || {
            tracing::info!("Waiting for SVID to get cached")
        }))
    }

    async fn x509_bundles(&self, peer: Peer) -> Result<Stream<X509BundlesResponse>, ApiError> {
        let caller = self.attest(&peer).await?;
        let step = move |snap: &Snapshot| {
            bundles_step(snap, &caller, |bundles| X509BundlesResponse {
                crl: vec![],
                bundles: bundle_map(bundles, Bundle::x509_der_concat),
            })
        };
        Ok(self.stream(step, Clone::clone, log_waiting_for_sync))
    }

    async fn jwt_bundles(&self, peer: Peer) -> Result<Stream<JwtBundlesResponse>, ApiError> {
        let caller = self.attest(&peer).await?;
        let step = move |snap: &Snapshot| {
            bundles_step(snap, &caller, |bundles| JwtBundlesResponse {
                bundles: bundle_map(bundles, |b| to_jwks(b).into_bytes()),
            })
        };
        Ok(self.stream(step, Clone::clone, log_waiting_for_sync))
    }

    async fn jwt_svid(&self, peer: Peer, req: JwtsvidRequest) -> Result<JwtsvidResponse, ApiError> {
        if req.audience.is_empty() {
            return Err(ApiError::InvalidArgument(
                "audience must be specified".into(),
            ));
        }
        if req.audience.iter().any(String::is_empty) {
            return Err(ApiError::InvalidArgument(
                "audience values must not be empty".into(),
            ));
        }
        check_audience_size(&req.audience)?;
        let only = match req.spiffe_id.as_str() {
            "" => None,
            // SPIRE's text: "invalid requested SPIFFE ID: <why>".
            id => Some(parse_id(id).map_err(|e| {
                let why = match e {
                    signet_common::id::IdError::Invalid { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                ApiError::InvalidArgument(format!("invalid requested SPIFFE ID: {why}"))
            })?),
        };
        let caller = self.attest(&peer).await?;
        let snap = self.synced_snapshot().await?;
        let entries = match &only {
            Some(id) => snap.entries_for_id(&caller.selectors, id),
            None => snap.entries_for(&caller.selectors),
        };
        if entries.is_empty() {
            return Err(ApiError::NoIdentity);
        }
        let svids = try_join_all(entries.iter().map(|e| self.mint_jwt(e, &req.audience))).await?;
        Ok(JwtsvidResponse { svids })
    }

    async fn mint_jwt(
        &self,
        entry: &RegistrationEntry,
        audience: &[String],
    ) -> Result<Jwtsvid, ApiError> {
        let svid = self
            .api
            .identities
            .jwt_svid(entry, audience)
            .await
            .map_err(|e| {
                ApiError::Unavailable(format!("could not fetch {} JWT-SVID: {e}", entry.spiffe_id))
            })?;
        Ok(Jwtsvid {
            spiffe_id: entry.spiffe_id.to_string(),
            svid: svid.token,
            hint: entry.hint.clone(),
        })
    }

    async fn validate_jwt(
        &self,
        peer: Peer,
        req: ValidateJwtsvidRequest,
    ) -> Result<ValidateJwtsvidResponse, ApiError> {
        if req.audience.is_empty() {
            return Err(ApiError::InvalidArgument(
                "audience must be specified".into(),
            ));
        }
        if req.svid.is_empty() {
            return Err(ApiError::InvalidArgument("svid must be specified".into()));
        }
        let caller = self.attest(&peer).await?;
        let snap = self.synced_snapshot().await?;
        let entries = snap.entries_for(&caller.selectors);
        let bundles = workload_bundles(&snap, &entries);
        let now = self.api.clock.unix_now();
        let valid = jwt::validate(&req.svid, &req.audience, &bundles, now)
            .map_err(ApiError::InvalidArgument)?;
        let foreign = !valid.spiffe_id.is_member_of(&snap.trust_domain);
        Ok(ValidateJwtsvidResponse {
            spiffe_id: valid.spiffe_id.to_string(),
            claims: Some(jwt::claims_struct(valid.claims, foreign)),
        })
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadService {
    type FetchX509SVIDStream = Stream<X509svidResponse>;
    type FetchX509BundlesStream = Stream<X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream<JwtBundlesResponse>;
    type FetchWITSVIDStream = Stream<WitsvidResponse>;
    type FetchWITBundlesStream = Stream<WitBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        req: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let peer = peer_of(&req)?;
        call("FetchX509SVID", &peer, self.x509_svid(peer.clone())).await
    }

    async fn fetch_x509_bundles(
        &self,
        req: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        let peer = peer_of(&req)?;
        call("FetchX509Bundles", &peer, self.x509_bundles(peer.clone())).await
    }

    async fn fetch_jwtsvid(
        &self,
        req: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let peer = peer_of(&req)?;
        let fut = self.jwt_svid(peer.clone(), req.into_inner());
        call("FetchJWTSVID", &peer, fut).await
    }

    async fn fetch_jwt_bundles(
        &self,
        req: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        let peer = peer_of(&req)?;
        call("FetchJWTBundles", &peer, self.jwt_bundles(peer.clone())).await
    }

    async fn validate_jwtsvid(
        &self,
        req: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        let peer = peer_of(&req)?;
        let fut = self.validate_jwt(peer.clone(), req.into_inner());
        call("ValidateJWTSVID", &peer, fut).await
    }

    async fn fetch_witsvid(
        &self,
        _: Request<WitsvidRequest>,
    ) -> Result<Response<Self::FetchWITSVIDStream>, Status> {
        Err(ApiError::Unimplemented("WIT-SVIDs are not supported".into()).into())
    }

    async fn fetch_wit_bundles(
        &self,
        _: Request<WitBundlesRequest>,
    ) -> Result<Response<Self::FetchWITBundlesStream>, Status> {
        Err(ApiError::Unimplemented("WIT-SVIDs are not supported".into()).into())
    }
}

/// At most [`MAX_AUDIENCES`] audience values of at most [`MAX_AUDIENCE_BYTES`] each: every
/// distinct audience set is a token minted, signed and cached for the caller.
fn check_audience_size(audience: &[String]) -> Result<(), ApiError> {
    if audience.len() > MAX_AUDIENCES {
        return Err(ApiError::InvalidArgument(format!(
            "too many audience values: {} (at most {MAX_AUDIENCES})",
            audience.len()
        )));
    }
    if let Some(long) = audience.iter().find(|a| a.len() > MAX_AUDIENCE_BYTES) {
        return Err(ApiError::InvalidArgument(format!(
            "audience value too long: {} bytes (at most {MAX_AUDIENCE_BYTES})",
            long.len()
        )));
    }
    Ok(())
}

fn peer_of<T>(req: &Request<T>) -> Result<Peer, Status> {
    req.extensions()
        .get::<Peer>()
        .cloned()
        .ok_or_else(|| ApiError::NoPeer.into())
}

/// Runs one RPC in its span, converting its error (and logging it) inside the span.
async fn call<T>(
    method: &'static str,
    peer: &Peer,
    fut: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response<T>, Status> {
    let span = tracing::info_span!("workload_api", method, pid = peer.pid, uid = peer.uid);
    async move { fut.await.map(Response::new).map_err(Status::from) }
        .instrument(span)
        .await
}

fn shutting_down() -> ApiError {
    ApiError::ShuttingDown
}

fn log_waiting_for_sync() {
    tracing::info!("Waiting for the first sync with the server");
}

/// Drives one stream: evaluates `step` on the current snapshot and on every change, sends
/// the response `build` makes of each result that differs from the previous one, and ends
/// on a failure, when the client goes away, or on shutdown.
async fn feed<K, T, F, B>(
    mut snapshot: watch::Receiver<Arc<Snapshot>>,
    mut shutdown: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<T, Status>>,
    mut step: F,
    build: B,
    on_wait: fn(),
) where
    K: PartialEq,
    F: FnMut(&Snapshot) -> Step<K>,
    B: Fn(&K) -> T,
{
    let mut last: Option<K> = None;
    let mut log_wait_at: Option<Instant> = None;
    let mut wait_logged = false;
    loop {
        let snap = Arc::clone(&*snapshot.borrow_and_update());
        match step(&snap) {
            Step::Send(served) => {
                log_wait_at = None;
                wait_logged = false;
                if last.as_ref() != Some(&served) {
                    if tx.send(Ok(build(&served))).await.is_err() {
                        return;
                    }
                    last = Some(served);
                }
            }
            Step::Fail(err) => {
                let _ = tx.send(Err(err.into())).await;
                return;
            }
            Step::Wait if !wait_logged => {
                log_wait_at.get_or_insert_with(|| Instant::now() + WAIT_LOG_AFTER);
            }
            Step::Wait => {}
        }
        let stop = tokio::select! {
            changed = snapshot.changed() => changed.is_err(),
            () = tx.closed() => return,
            stop = shutdown.wait_for(|stop| *stop) => {
                drop(stop);
                true
            }
            () = sleep_until(log_wait_at) => {
                on_wait();
                wait_logged = true;
                log_wait_at = None;
                false
            }
        };
        if stop {
            let _ = tx.send(Err(shutting_down().into())).await;
            return;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The step of the two bundle streams: the own bundle and the caller's federated ones,
/// once synced, for callers with an identity.
fn bundles_step<T>(
    snap: &Snapshot,
    caller: &Caller,
    build: impl FnOnce(Vec<Arc<Bundle>>) -> T,
) -> Step<T> {
    if !snap.synced {
        return Step::Wait;
    }
    let entries = snap.entries_for(&caller.selectors);
    if entries.is_empty() {
        return Step::Fail(ApiError::NoIdentity);
    }
    Step::Send(build(workload_bundles(snap, &entries)))
}

/// The own trust domain's bundle first, then the federated bundles `entries` refer to.
fn workload_bundles(snap: &Snapshot, entries: &[Arc<RegistrationEntry>]) -> Vec<Arc<Bundle>> {
    let mut out = vec![Arc::clone(&snap.bundle)];
    out.extend(snap.federated_for(entries).into_values());
    out
}

/// Bundles keyed by trust domain ID (`spiffe://<td>`).
fn bundle_map(
    bundles: Vec<Arc<Bundle>>,
    encode: impl Fn(&Bundle) -> Vec<u8>,
) -> HashMap<String, Vec<u8>> {
    bundles
        .iter()
        .map(|b| (b.trust_domain.id_string(), encode(b)))
        .collect()
}

fn x509_svid_response(served: &X509Served) -> X509svidResponse {
    let bundle = Bytes::from(served.bundle.x509_der_concat());
    let svids = served
        .entries
        .iter()
        .zip(&served.svids)
        .map(|(entry, svid)| X509svid {
            spiffe_id: svid.entry.spiffe_id.to_string(),
            x509_svid: svid.chain_der.clone(),
            x509_svid_key: svid.key_pkcs8.clone(),
            bundle: bundle.clone(),
            hint: entry.hint.clone(),
        })
        .collect();
    let federated_bundles = served
        .federated
        .iter()
        .map(|(td, b)| (td.id_string(), b.x509_der_concat()))
        .collect();
    X509svidResponse {
        svids,
        crl: vec![],
        federated_bundles,
    }
}
