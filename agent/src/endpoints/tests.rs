//! The public socket end to end: a real socket in a TempDir, the real unix attestor on this
//! process, a hand-built snapshot with rcgen certificates, and real clients (the `spiffe`
//! crate, the generated tonic client, tonic-health).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use signet_common::bundle::{Bundle, JwtKey, X509Authority};
use signet_common::clock::{Clock, SystemClock};
use signet_common::entry::RegistrationEntry;
use signet_common::id::{TrustDomain, parse_id, parse_trust_domain};
use signet_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use signet_proto::workload::{
    JwtBundlesRequest, JwtsvidRequest, ValidateJwtsvidRequest, WitBundlesRequest,
    X509BundlesRequest, X509svidRequest, X509svidResponse,
};
use spiffe::WorkloadApiClient;
use tempfile::TempDir;
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request};

use super::*;
use crate::attestor::workload::unix::UnixAttestor;
use crate::attestor::workload::{Attestors, Peer, WorkloadAttestor};
use crate::client::JwtSvid;
use crate::config::UnixConfig;
use crate::manager::{Identities, JwtError, Snapshot, WorkloadSvid};

const TD: &str = "example.org";
const FEDERATED_TD: &str = "other.org";
const KID: &str = "jwt-key-1";
const FOREIGN_KID: &str = "foreign-key-1";

// === fixtures ===

/// A trust domain's CA and JWT key.
struct Authority {
    td: TrustDomain,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca_der: Vec<u8>,
    jwt_key: KeyPair,
    kid: &'static str,
}

impl Authority {
    fn new(td: &str, kid: &'static str) -> Self {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.subject_alt_names =
            vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        let ca_der = ca_params.self_signed(&ca_key).unwrap().der().to_vec();
        Self {
            td: parse_trust_domain(td).unwrap(),
            ca_params,
            ca_key,
            ca_der,
            jwt_key: KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            kid,
        }
    }

    fn bundle(&self) -> Bundle {
        let mut b = Bundle::new(self.td.clone());
        b.x509_authorities.push(X509Authority {
            der: self.ca_der.clone(),
            tainted: false,
        });
        b.jwt_authorities.push(JwtKey {
            public_key: rcgen::PublicKeyData::subject_public_key_info(&self.jwt_key),
            key_id: self.kid.into(),
            expires_at: 0,
            tainted: false,
        });
        b
    }

    /// An X509-SVID for `entry`, as go-spiffe and the spiffe crate demand it.
    fn svid(&self, entry: &Arc<RegistrationEntry>) -> WorkloadSvid {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.subject_alt_names = vec![SanType::URI(
            entry.spiffe_id.to_string().try_into().unwrap(),
        )];
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let leaf = params.signed_by(&key, &issuer).unwrap();
        WorkloadSvid::new(
            Arc::clone(entry),
            &[leaf.der().to_vec()],
            key.serialize_der(),
            0,
            i64::MAX,
        )
    }

    /// A JWT-SVID signed with this trust domain's key.
    fn jwt(&self, sub: &str, aud: serde_json::Value, exp: i64) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.into());
        header.typ = Some("JWT".into());
        let claims = serde_json::json!({
            "sub": sub, "aud": aud, "exp": exp, "iat": SystemClock.unix_now(), "x": "extra",
        });
        let key = EncodingKey::from_ec_der(&self.jwt_key.serialize_der());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

fn my_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn entry(id: &str, path: &str, selectors: &[String]) -> RegistrationEntry {
    RegistrationEntry::new(
        id,
        parse_id(&format!("spiffe://{TD}{path}")).unwrap(),
        parse_id(&format!("spiffe://{TD}/spire/agent/join_token/x")).unwrap(),
        selectors.iter().map(|s| s.parse().unwrap()).collect(),
    )
}

/// Entries for this process: `/first` (with a hint and federated with `other.org`) and
/// `/second`, whose IDs sort in that order.
fn my_entries() -> Vec<RegistrationEntry> {
    let me = vec![format!("unix:uid:{}", my_uid())];
    let mut first = entry("1-first", "/first", &me);
    first.hint = "internal".into();
    first.federates_with = vec![FEDERATED_TD.into()];
    vec![first, entry("2-second", "/second", &me)]
}

struct Pki {
    own: Authority,
    foreign: Authority,
}

impl Pki {
    fn new() -> Self {
        Self {
            own: Authority::new(TD, KID),
            foreign: Authority::new(FEDERATED_TD, FOREIGN_KID),
        }
    }

    /// A synced snapshot with `entries` and an SVID for each.
    fn snapshot(&self, revision: u64, entries: Vec<RegistrationEntry>) -> Snapshot {
        let mut snap = self.snapshot_without_svids(revision, entries);
        snap.svids = snap
            .entries
            .iter()
            .map(|e| (e.id.clone(), Arc::new(self.own.svid(e))))
            .collect();
        snap
    }

    fn snapshot_without_svids(&self, revision: u64, entries: Vec<RegistrationEntry>) -> Snapshot {
        let mut snap = Snapshot::empty(self.own.td.clone());
        snap.revision = revision;
        snap.synced = true;
        snap.bundle = Arc::new(self.own.bundle());
        snap.federated =
            BTreeMap::from([(self.foreign.td.clone(), Arc::new(self.foreign.bundle()))]);
        snap.entries = entries.into_iter().map(Arc::new).collect();
        snap
    }
}

/// Mints JWT-SVIDs with the trust domain's key; records what the stream asked to be wanted.
#[derive(Debug)]
struct FakeIdentities {
    jwt_key_der: Vec<u8>,
    wanted: Mutex<Vec<Vec<String>>>,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Identities for FakeIdentities {
    async fn jwt_svid(
        &self,
        entry: &RegistrationEntry,
        audience: &[String],
    ) -> Result<JwtSvid, JwtError> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(JwtError::Unavailable("server unreachable".into()));
        }
        let exp = SystemClock.unix_now() + 300;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(KID.into());
        header.typ = Some("JWT".into());
        let claims = serde_json::json!({
            "sub": entry.spiffe_id.to_string(), "aud": audience, "exp": exp,
            "iat": SystemClock.unix_now(),
        });
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ec_der(&self.jwt_key_der),
        )
        .map_err(|e| JwtError::Unavailable(e.to_string()))?;
        Ok(JwtSvid {
            token,
            expires_at: exp,
        })
    }

    fn want(&self, entries: &[Arc<RegistrationEntry>]) {
        self.wanted
            .lock()
            .unwrap()
            .push(entries.iter().map(|e| e.id.clone()).collect());
    }
}

/// The public socket served from a snapshot the test controls.
struct Harness {
    _dir: TempDir,
    path: PathBuf,
    pki: Pki,
    snapshot: watch::Sender<Arc<Snapshot>>,
    shutdown: watch::Sender<bool>,
    identities: Arc<FakeIdentities>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Harness {
    async fn start(initial: impl FnOnce(&Pki) -> Snapshot) -> Self {
        Self::start_with(
            initial,
            Arc::new(UnixAttestor::new(
                UnixConfig::default(),
                Arc::new(SystemClock),
            )),
        )
        .await
    }

    async fn start_with(
        initial: impl FnOnce(&Pki) -> Snapshot,
        attestor: Arc<dyn WorkloadAttestor>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("public").join("api.sock");
        let pki = Pki::new();
        let (snapshot, snapshot_rx) = watch::channel(Arc::new(initial(&pki)));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let identities = Arc::new(FakeIdentities {
            jwt_key_der: pki.own.jwt_key.serialize_der(),
            wanted: Mutex::new(vec![]),
            fail: false.into(),
        });
        let api = WorkloadApi {
            snapshot: snapshot_rx,
            identities: Arc::clone(&identities) as Arc<dyn Identities>,
            attestors: Arc::new(Attestors::new(vec![attestor])),
            clock: Arc::new(SystemClock),
        };
        let mut tasks = JoinSet::new();
        serve(&mut tasks, bind(&path).unwrap(), api, shutdown_rx);
        Self {
            _dir: dir,
            path,
            pki,
            snapshot,
            shutdown,
            identities,
            tasks,
        }
    }

    fn publish(&self, snap: Snapshot) {
        self.snapshot.send_replace(Arc::new(snap));
    }

    async fn spiffe(&self) -> WorkloadApiClient {
        WorkloadApiClient::connect_to(format!("unix:{}", self.path.display()))
            .await
            .unwrap()
    }

    async fn channel(&self) -> Channel {
        let path = self.path.clone();
        Endpoint::try_from("http://localhost")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
            }))
            .await
            .unwrap()
    }

    /// The generated client without the security header.
    async fn bare(&self) -> SpiffeWorkloadApiClient<Channel> {
        SpiffeWorkloadApiClient::new(self.channel().await)
    }

    /// The generated client with the security header.
    async fn raw(
        &self,
    ) -> SpiffeWorkloadApiClient<
        tonic::service::interceptor::InterceptedService<
            Channel,
            fn(Request<()>) -> Result<Request<()>, tonic::Status>,
        >,
    > {
        fn header(mut req: Request<()>) -> Result<Request<()>, tonic::Status> {
            req.metadata_mut()
                .insert(SECURITY_HEADER, "true".parse().unwrap());
            Ok(req)
        }
        SpiffeWorkloadApiClient::with_interceptor(self.channel().await, header as fn(_) -> _)
    }
}

async fn next<T>(stream: &mut tonic::Streaming<T>) -> Result<T, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("no stream message within 5s")
        .and_then(|m| m.ok_or_else(|| tonic::Status::unknown("stream ended with OK")))
}

async fn nothing_within<T: std::fmt::Debug>(stream: &mut tonic::Streaming<T>, ms: u64) {
    let got = tokio::time::timeout(Duration::from_millis(ms), stream.message()).await;
    assert!(got.is_err(), "unexpected stream item: {got:?}");
}

fn assert_status<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, message: &str) {
    let status = r.expect_err("expected an error status");
    assert_eq!(
        (status.code(), status.message()),
        (code, message),
        "{status:?}"
    );
}

// === tests ===

#[tokio::test]
async fn bind_creates_the_directory_and_a_world_connectable_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("api.sock");
    drop(bind(&path).unwrap());
    // A stale socket file is replaced.
    let _listener = bind(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o777);
}

#[tokio::test]
async fn spiffe_client_fetches_x509_svids_and_context() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let client = h.spiffe().await;

    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), format!("spiffe://{TD}/first"));
    assert_eq!(svid.hint(), Some("internal"));

    let all = client.fetch_all_x509_svids().await.unwrap();
    let ids: Vec<String> = all.iter().map(|s| s.spiffe_id().to_string()).collect();
    assert_eq!(
        ids,
        [
            format!("spiffe://{TD}/first"),
            format!("spiffe://{TD}/second")
        ]
    );

    let ctx = client.fetch_x509_context().await.unwrap();
    assert_eq!(ctx.svids().len(), 2);
    let own = ctx.bundle_set().get(&h.pki.own.td).unwrap();
    assert_eq!(own.authorities()[0].as_bytes(), h.pki.own.ca_der.as_slice());
    let fed = ctx.bundle_set().get(&h.pki.foreign.td).unwrap();
    assert_eq!(
        fed.authorities()[0].as_bytes(),
        h.pki.foreign.ca_der.as_slice()
    );

    let bundles = client.fetch_x509_bundles().await.unwrap();
    assert_eq!(bundles.len(), 2);

    let wanted = h.identities.wanted.lock().unwrap().clone();
    assert!(wanted.contains(&vec!["1-first".to_owned(), "2-second".to_owned()]));
}

#[tokio::test]
async fn x509_svid_response_carries_der_chain_pkcs8_key_and_keyed_bundles() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let snap = h.snapshot.borrow().clone();
    let mut stream = h
        .raw()
        .await
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let resp = next(&mut stream).await.unwrap();
    let first = &resp.svids[0];
    let held = &snap.svids["1-first"];
    assert_eq!(first.x509_svid, held.chain.concat());
    assert_eq!(first.x509_svid_key, held.key_pkcs8);
    assert_eq!(first.bundle, h.pki.own.ca_der);
    assert_eq!(first.hint, "internal");
    assert!(resp.crl.is_empty());
    let keys: Vec<&String> = resp.federated_bundles.keys().collect();
    assert_eq!(keys, [&format!("spiffe://{FEDERATED_TD}")]);
}

#[tokio::test]
async fn spiffe_client_fetches_jwt_bundles_and_validates_tokens() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let client = h.spiffe().await;

    let bundles = client.fetch_jwt_bundles().await.unwrap();
    let own = bundles.get(&h.pki.own.td).unwrap();
    assert!(own.find_jwt_authority(KID).is_some());
    let fed = bundles.get(&h.pki.foreign.td).unwrap();
    assert!(fed.find_jwt_authority(FOREIGN_KID).is_some());

    let svid = client
        .fetch_jwt_svid(["aud-1", "aud-2"], None)
        .await
        .unwrap();
    assert_eq!(svid.spiffe_id().to_string(), format!("spiffe://{TD}/first"));
    let second = parse_id(&format!("spiffe://{TD}/second")).unwrap();
    let svid2 = client
        .fetch_jwt_svid(["aud-1"], Some(&second))
        .await
        .unwrap();
    assert_eq!(svid2.spiffe_id(), &second);

    let valid = client
        .validate_jwt_token("aud-2", svid.token())
        .await
        .unwrap();
    assert_eq!(
        valid.spiffe_id().to_string(),
        format!("spiffe://{TD}/first")
    );
    let err = client
        .validate_jwt_token("nope", svid.token())
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");

    // A token of the federated trust domain validates against its bundle.
    let foreign_sub = format!("spiffe://{FEDERATED_TD}/client");
    let exp = SystemClock.unix_now() + 60;
    let foreign = h.pki.foreign.jwt(&foreign_sub, "aud-1".into(), exp);
    let valid = client.validate_jwt_token("aud-1", &foreign).await.unwrap();
    assert_eq!(valid.spiffe_id().to_string(), foreign_sub);
}

#[tokio::test]
async fn validate_jwt_svid_returns_claims_and_explains_failures() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let mut raw = h.raw().await;
    let now = SystemClock.unix_now();
    let sub = format!("spiffe://{TD}/first");
    let validate = |svid: String, audience: &str| ValidateJwtsvidRequest {
        audience: audience.into(),
        svid,
    };

    let token = h.pki.own.jwt(&sub, "aud-1".into(), now + 60);
    let resp = raw
        .validate_jwtsvid(validate(token, "aud-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.spiffe_id, sub);
    let claims = resp.claims.unwrap().fields;
    let aud = claims["aud"].kind.clone().unwrap();
    assert_eq!(
        aud,
        prost_types::value::Kind::ListValue(prost_types::ListValue {
            values: vec![prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("aud-1".into()))
            }]
        })
    );
    assert!(claims.contains_key("x") && claims.contains_key("iat"));

    // Foreign tokens keep only sub, aud and exp.
    let foreign_sub = format!("spiffe://{FEDERATED_TD}/client");
    let foreign = h
        .pki
        .foreign
        .jwt(&foreign_sub, serde_json::json!(["aud-1"]), now + 60);
    let resp = raw
        .validate_jwtsvid(validate(foreign, "aud-1"))
        .await
        .unwrap()
        .into_inner();
    let mut keys: Vec<String> = resp.claims.unwrap().fields.into_keys().collect();
    keys.sort();
    assert_eq!(keys, ["aud", "exp", "sub"]);

    let expired = h.pki.own.jwt(&sub, "aud-1".into(), now - 3600);
    assert_status(
        raw.validate_jwtsvid(validate(expired, "aud-1")).await,
        Code::InvalidArgument,
        "token has expired",
    );
    // Signed by the foreign key but claiming the own trust domain.
    let forged = h.pki.foreign.jwt(&sub, "aud-1".into(), now + 60);
    let err = raw
        .validate_jwtsvid(validate(forged, "aud-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("not found in trust domain"),
        "{err:?}"
    );
    // A trust domain the caller does not federate with.
    let unknown = h
        .pki
        .own
        .jwt("spiffe://unknown.org/x", "aud-1".into(), now + 60);
    assert_status(
        raw.validate_jwtsvid(validate(unknown, "aud-1")).await,
        Code::InvalidArgument,
        "no keys found for trust domain \"unknown.org\"",
    );
    assert_status(
        raw.validate_jwtsvid(validate("".into(), "aud-1")).await,
        Code::InvalidArgument,
        "svid must be specified",
    );
    assert_status(
        raw.validate_jwtsvid(validate("x".into(), "")).await,
        Code::InvalidArgument,
        "audience must be specified",
    );
}

#[tokio::test]
async fn fetch_jwt_svid_checks_audience_id_and_minting() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let mut raw = h.raw().await;
    let req = |aud: &[&str], id: &str| JwtsvidRequest {
        audience: aud.iter().map(|a| (*a).to_owned()).collect(),
        spiffe_id: id.into(),
    };

    let all = raw
        .fetch_jwtsvid(req(&["a"], ""))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = all.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("spiffe://{TD}/first"),
            format!("spiffe://{TD}/second")
        ]
    );
    assert_eq!(all.svids[0].hint, "internal");

    assert_status(
        raw.fetch_jwtsvid(req(&[], "")).await,
        Code::InvalidArgument,
        "audience must be specified",
    );
    let bad = raw
        .fetch_jwtsvid(req(&["a"], "spiffe://Bad/x"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_status(
        raw.fetch_jwtsvid(req(&["a"], &format!("spiffe://{TD}/not-mine")))
            .await,
        Code::PermissionDenied,
        "no identity issued",
    );
    h.identities
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = raw.fetch_jwtsvid(req(&["a"], "")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

#[tokio::test]
async fn calls_without_the_security_header_are_refused_but_health_is_not() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let mut bare = h.bare().await;
    let msg = "security header missing from request";
    assert_status(
        bare.fetch_x509svid(X509svidRequest {}).await,
        Code::InvalidArgument,
        msg,
    );
    assert_status(
        bare.fetch_jwt_bundles(JwtBundlesRequest {}).await,
        Code::InvalidArgument,
        msg,
    );
    let mut wrong = Request::new(X509BundlesRequest {});
    wrong
        .metadata_mut()
        .insert(SECURITY_HEADER, "yes".parse().unwrap());
    assert_status(
        bare.fetch_x509_bundles(wrong).await,
        Code::InvalidArgument,
        msg,
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(h.channel().await);
    for service in ["", "SpiffeWorkloadAPI"] {
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            resp.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
    }
}

#[tokio::test]
async fn callers_without_matching_entries_get_no_identity_issued() {
    let h = Harness::start(|pki| {
        pki.snapshot(
            1,
            vec![entry("e", "/someone-else", &["unix:uid:12345".into()])],
        )
    })
    .await;
    let err = h.spiffe().await.fetch_x509_svid().await.unwrap_err();
    assert!(
        matches!(err, spiffe::WorkloadApiError::NoIdentityIssued),
        "{err:?}"
    );

    let mut raw = h.raw().await;
    let denied = |r: Result<(), tonic::Status>| {
        assert_status(r, Code::PermissionDenied, "no identity issued")
    };
    let mut s = raw
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    denied(next(&mut s).await.map(|_| ()));
    let mut s = raw
        .fetch_x509_bundles(X509BundlesRequest {})
        .await
        .unwrap()
        .into_inner();
    denied(next(&mut s).await.map(|_| ()));
    let mut s = raw
        .fetch_jwt_bundles(JwtBundlesRequest {})
        .await
        .unwrap()
        .into_inner();
    denied(next(&mut s).await.map(|_| ()));
    denied(
        raw.fetch_jwtsvid(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        })
        .await
        .map(|_| ()),
    );
}

#[tokio::test]
async fn snapshot_changes_push_complete_responses_until_identities_go_away() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let mut raw = h.raw().await;
    let mut stream = raw
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = next(&mut stream).await.unwrap();
    assert_eq!(first.svids.len(), 2);

    // A change that does not affect this caller pushes nothing.
    let mut same = (**h.snapshot.borrow()).clone();
    same.revision = 2;
    h.publish(same);
    nothing_within(&mut stream, 300).await;

    // Rotation: new SVIDs, pushed as a complete response.
    h.publish(h.pki.snapshot(3, my_entries()));
    let rotated: X509svidResponse = next(&mut stream).await.unwrap();
    assert_eq!(rotated.svids.len(), 2);
    assert_ne!(rotated.svids[0].x509_svid, first.svids[0].x509_svid);

    // One identity left.
    h.publish(h.pki.snapshot(4, my_entries().split_off(1)));
    let one = next(&mut stream).await.unwrap();
    assert_eq!(one.svids.len(), 1);
    assert!(one.federated_bundles.is_empty());

    // None left: PermissionDenied, and the stream is over.
    h.publish(h.pki.snapshot(5, vec![]));
    assert_status(
        next(&mut stream).await,
        Code::PermissionDenied,
        "no identity issued",
    );
    assert!(stream.message().await.is_err() || stream.message().await.unwrap().is_none());
}

#[tokio::test]
async fn streams_wait_for_the_first_sync_and_for_svids() {
    let h = Harness::start(|pki| Snapshot::empty(pki.own.td.clone())).await;
    let mut raw = h.raw().await;
    let mut svids = raw
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bundles = raw
        .fetch_x509_bundles(X509BundlesRequest {})
        .await
        .unwrap()
        .into_inner();
    nothing_within(&mut svids, 200).await;
    nothing_within(&mut bundles, 10).await;

    // Synced, entries known, SVIDs not minted yet: the bundle stream answers, the SVID
    // stream asks for the SVIDs and keeps waiting.
    h.publish(h.pki.snapshot_without_svids(1, my_entries()));
    let b = next(&mut bundles).await.unwrap();
    assert_eq!(b.bundles[&format!("spiffe://{TD}")], h.pki.own.ca_der);
    assert_eq!(b.bundles.len(), 2);
    nothing_within(&mut svids, 300).await;
    assert!(
        h.identities
            .wanted
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.len() == 2)
    );

    h.publish(h.pki.snapshot(2, my_entries()));
    assert_eq!(next(&mut svids).await.unwrap().svids.len(), 2);
    // The bundles did not change: no new bundle response.
    nothing_within(&mut bundles, 200).await;

    // A bundle change is pushed.
    let mut snap = h.pki.snapshot(3, my_entries());
    let mut bundle = (*snap.bundle).clone();
    bundle.x509_authorities.push(X509Authority {
        der: h.pki.foreign.ca_der.clone(),
        tainted: false,
    });
    snap.bundle = Arc::new(bundle);
    h.publish(snap);
    let b = next(&mut bundles).await.unwrap();
    let own = &b.bundles[&format!("spiffe://{TD}")];
    assert_eq!(
        *own,
        [h.pki.own.ca_der.clone(), h.pki.foreign.ca_der.clone()].concat()
    );
}

#[tokio::test]
async fn spiffe_stream_sees_rotation() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let client = h.spiffe().await;
    let mut stream = Box::pin(client.stream_x509_svids().await.unwrap());
    let first = stream.next().await.unwrap().unwrap();
    h.publish(h.pki.snapshot(2, my_entries()));
    let second = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.spiffe_id(), second.spiffe_id());
    assert_ne!(first.leaf().as_bytes(), second.leaf().as_bytes());
}

#[tokio::test]
async fn wit_rpcs_are_unimplemented() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let err = h
        .raw()
        .await
        .fetch_wit_bundles(WitBundlesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_the_server() {
    let mut h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let mut raw = h.raw().await;
    let mut stream = raw
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    next(&mut stream).await.unwrap();
    h.shutdown.send_replace(true);
    let err = next(&mut stream).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // The client stays connected; the server still stops.
    let done = tokio::time::timeout(Duration::from_secs(10), h.tasks.join_next())
        .await
        .expect("server did not stop");
    done.unwrap().unwrap().unwrap();
    drop(raw);
}

#[tokio::test]
async fn streams_stop_when_the_client_goes_away() {
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let idle = Arc::strong_count(&h.identities);
    // Each open FetchX509SVID stream holds one reference to the identities.
    let stream_ended = || async {
        for _ in 0..100 {
            if Arc::strong_count(&h.identities) == idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("stream task still running after the client left");
    };

    let mut raw = h.raw().await;
    let mut stream = raw
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    next(&mut stream).await.unwrap();
    assert_eq!(Arc::strong_count(&h.identities), idle + 1);
    drop(stream);
    stream_ended().await;

    // The spiffe client's one-shot fetch cancels right after the first message.
    h.spiffe().await.fetch_x509_svid().await.unwrap();
    stream_ended().await;
}

// --- callers other than this process ---

/// Set in a re-executed test binary: fetch an X509-SVID from this socket and print the
/// outcome.
const CHILD_FETCH_ENV: &str = "SIGNET_TEST_WORKLOAD_FETCH";

/// Not a test of its own: the body of the child process in
/// [`another_uid_gets_no_identity_issued`]. Does nothing in a normal run.
#[test]
fn child_fetch_helper() {
    let Ok(path) = std::env::var(CHILD_FETCH_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt.block_on(async {
        let client = WorkloadApiClient::connect_to(format!("unix:{path}")).await?;
        client.fetch_x509_svid().await
    });
    let outcome = match outcome {
        Ok(svid) => format!("svid {}", svid.spiffe_id()),
        Err(spiffe::WorkloadApiError::NoIdentityIssued) => "no-identity-issued".into(),
        Err(e) => format!("error {e}"),
    };
    println!("CHILD-RESULT uid={} {outcome}", my_uid());
}

fn run_child_as(uid: u32, socket: &Path) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "endpoints::tests::child_fetch_helper",
            "--nocapture",
        ])
        .env(CHILD_FETCH_ENV, socket)
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD-RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "child printed no result: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

#[tokio::test]
async fn another_uid_gets_no_identity_issued() {
    if my_uid() != 0 {
        eprintln!("skipped: needs root to run a child as uid 65534");
        return;
    }
    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let path = h.path.clone();
    let other = tokio::task::spawn_blocking(move || run_child_as(65534, &path))
        .await
        .unwrap();
    assert_eq!(other, "uid=65534 no-identity-issued");
    // The same binary as this uid is served.
    let path = h.path.clone();
    let me = tokio::task::spawn_blocking(move || run_child_as(0, &path))
        .await
        .unwrap();
    assert_eq!(me, format!("uid=0 svid spiffe://{TD}/first"));
}

/// An attestor that always succeeds, as one would for a process that reused a dead
/// caller's PID.
#[derive(Debug)]
struct Matches(String);

#[async_trait::async_trait]
impl WorkloadAttestor for Matches {
    fn name(&self) -> &'static str {
        "unix"
    }
    async fn attest(
        &self,
        _: &Peer,
    ) -> Result<Vec<signet_common::selector::Selector>, crate::attestor::workload::AttestError>
    {
        Ok(vec![self.0.parse().unwrap()])
    }
}

fn with_peer<T>(msg: T, peer: &Peer) -> Request<T> {
    let mut req = Request::new(msg);
    req.extensions_mut().insert(peer.clone());
    req
}

#[tokio::test]
async fn a_caller_that_exits_before_attestation_gets_nothing() {
    use signet_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApi;

    let dead = crate::peer::tests::dead_peer().await;
    let pki = Pki::new();
    let dead_uid_entry = vec![entry("e", "/dead", &[format!("unix:uid:{}", dead.uid)])];
    let (_snap_tx, snapshot) = watch::channel(Arc::new(pki.snapshot(1, dead_uid_entry)));
    let (_stop_tx, stop) = watch::channel(false);
    let service = |attestor: Arc<dyn WorkloadAttestor>| {
        WorkloadService::new(
            WorkloadApi {
                snapshot: snapshot.clone(),
                identities: Arc::new(FakeIdentities {
                    jwt_key_der: pki.own.jwt_key.serialize_der(),
                    wanted: Mutex::new(vec![]),
                    fail: false.into(),
                }),
                attestors: Arc::new(Attestors::new(vec![attestor])),
                clock: Arc::new(SystemClock),
            },
            stop.clone(),
        )
    };

    // The real attestor finds the process gone.
    let unix = service(Arc::new(UnixAttestor::new(
        UnixConfig::default(),
        Arc::new(SystemClock),
    )));
    let err = unix
        .fetch_x509svid(with_peer(X509svidRequest {}, &dead))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::Unavailable,
            format!("workload attestation failed: process {} is gone", dead.pid).as_str()
        )
    );

    // Had its PID been reused by a process that attests fine, the pidfd still tells.
    let reused = service(Arc::new(Matches(format!("unix:uid:{}", dead.uid))));
    let err = reused
        .fetch_jwtsvid(with_peer(
            JwtsvidRequest {
                audience: vec!["a".into()],
                spiffe_id: String::new(),
            },
            &dead,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = reused
        .fetch_x509svid(Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

#[tokio::test]
async fn envoy_sds_is_served_on_the_same_socket_without_the_header() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
    use prost::Message;

    let h = Harness::start(|pki| pki.snapshot(1, my_entries())).await;
    let mut sds = SecretDiscoveryServiceClient::new(h.channel().await);
    let resp = sds
        .fetch_secrets(DiscoveryRequest {
            resource_names: vec!["default".into(), "ROOTCA".into()],
            type_url: sds::SECRET_TYPE_URL.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let secrets: Vec<Secret> = resp
        .resources
        .iter()
        .map(|a| Secret::decode(a.value.as_slice()).unwrap())
        .collect();
    assert_eq!(secrets.len(), 2);
    let default = secrets.iter().find(|s| s.name == "default").unwrap();
    assert!(matches!(
        default.r#type,
        Some(secret::Type::TlsCertificate(_))
    ));

    // SDS callers are attested like Workload API callers.
    let mut health = tonic_health::pb::health_client::HealthClient::new(h.channel().await);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "envoy.service.secret.v3.SecretDiscoveryService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}
