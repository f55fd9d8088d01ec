//! Fuzz targets for every gRPC request the server and the agent accept: arbitrary bytes
//! decoded as each request type (and the conversions behind them), then calls to a live
//! in-process server (admin socket; agent API over TLS, with and without an agent SVID) and
//! a live agent (Workload API, with and without its security header; Envoy SDS) carrying raw
//! bytes, protobuf-shaped messages and mutations of valid requests.
//!
//! Each call must end in a gRPC status or a response, never `Unknown`, and never `Internal`
//! for a message that decodes as the method's request type (an undecodable message is
//! `Internal`, as in grpc-go and so SPIRE); nothing in the process may panic; and after
//! every batch and at the end, the server and the agent still answer known-good calls.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3 as disc;
use proptest::prelude::*;
use prost::Message;
use signet_common::fuzz;
use signet_common::id::parse_trust_domain;
use signet_proto::signet::sync::v1 as sync;
use signet_proto::spire::api::server::agent::v1 as agent;
use signet_proto::spire::api::server::bundle::v1 as bundle;
use signet_proto::spire::api::server::entry::v1 as entry;
use signet_proto::spire::api::server::localauthority::v1 as la;
use signet_proto::spire::api::server::svid::v1 as svid;
use signet_proto::spire::api::server::trustdomain::v1 as td;
use signet_proto::types;
use signet_proto::workload as wl;
use signet_tests::agent::{Setup, until};
use signet_tests::raw_grpc::{self, Outcome};
use signet_tests::{TestServer, key_and_csr, uds_channel};
use tokio::runtime::Runtime;
use tonic::Code;
use tonic::transport::Channel;

/// A method: its path and whether bytes decode as its request type.
#[derive(Clone, Copy)]
struct Method {
    path: &'static str,
    decodes: fn(&[u8]) -> bool,
}

impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path)
    }
}

fn decodes<T: Message + Default>(b: &[u8]) -> bool {
    T::decode(b).is_ok()
}

macro_rules! methods {
    ($($service:literal { $($method:literal => $req:ty),* $(,)? })*) => {
        vec![$($(Method {
            path: concat!("/", $service, "/", $method),
            decodes: decodes::<$req>,
        }),*),*]
    };
}

/// Every method the server serves, on both transports.
fn server_methods() -> Vec<Method> {
    methods! {
        "spire.api.server.agent.v1.Agent" {
            "CountAgents" => agent::CountAgentsRequest,
            "ListAgents" => agent::ListAgentsRequest,
            "GetAgent" => agent::GetAgentRequest,
            "DeleteAgent" => agent::DeleteAgentRequest,
            "BanAgent" => agent::BanAgentRequest,
            "AttestAgent" => agent::AttestAgentRequest,
            "RenewAgent" => agent::RenewAgentRequest,
            "CreateJoinToken" => agent::CreateJoinTokenRequest,
            "PostStatus" => agent::PostStatusRequest,
        }
        "spire.api.server.entry.v1.Entry" {
            "CountEntries" => entry::CountEntriesRequest,
            "ListEntries" => entry::ListEntriesRequest,
            "GetEntry" => entry::GetEntryRequest,
            "BatchCreateEntry" => entry::BatchCreateEntryRequest,
            "BatchUpdateEntry" => entry::BatchUpdateEntryRequest,
            "BatchDeleteEntry" => entry::BatchDeleteEntryRequest,
            "GetAuthorizedEntries" => entry::GetAuthorizedEntriesRequest,
            "SyncAuthorizedEntries" => entry::SyncAuthorizedEntriesRequest,
        }
        "spire.api.server.bundle.v1.Bundle" {
            "CountBundles" => bundle::CountBundlesRequest,
            "GetBundle" => bundle::GetBundleRequest,
            "AppendBundle" => bundle::AppendBundleRequest,
            "PublishJWTAuthority" => bundle::PublishJwtAuthorityRequest,
            "PublishWITAuthority" => bundle::PublishWitAuthorityRequest,
            "ListFederatedBundles" => bundle::ListFederatedBundlesRequest,
            "GetFederatedBundle" => bundle::GetFederatedBundleRequest,
            "BatchCreateFederatedBundle" => bundle::BatchCreateFederatedBundleRequest,
            "BatchUpdateFederatedBundle" => bundle::BatchUpdateFederatedBundleRequest,
            "BatchSetFederatedBundle" => bundle::BatchSetFederatedBundleRequest,
            "BatchDeleteFederatedBundle" => bundle::BatchDeleteFederatedBundleRequest,
        }
        "spire.api.server.svid.v1.SVID" {
            "MintX509SVID" => svid::MintX509svidRequest,
            "MintJWTSVID" => svid::MintJwtsvidRequest,
            "MintWITSVID" => svid::MintWitsvidRequest,
            "BatchNewX509SVID" => svid::BatchNewX509svidRequest,
            "NewJWTSVID" => svid::NewJwtsvidRequest,
            "BatchNewWITSVID" => svid::BatchNewWitsvidRequest,
            "NewDownstreamX509CA" => svid::NewDownstreamX509caRequest,
        }
        "spire.api.server.localauthority.v1.LocalAuthority" {
            "GetJWTAuthorityState" => la::GetJwtAuthorityStateRequest,
            "PrepareJWTAuthority" => la::PrepareJwtAuthorityRequest,
            "ActivateJWTAuthority" => la::ActivateJwtAuthorityRequest,
            "TaintJWTAuthority" => la::TaintJwtAuthorityRequest,
            "RevokeJWTAuthority" => la::RevokeJwtAuthorityRequest,
            "GetX509AuthorityState" => la::GetX509AuthorityStateRequest,
            "PrepareX509Authority" => la::PrepareX509AuthorityRequest,
            "ActivateX509Authority" => la::ActivateX509AuthorityRequest,
            "TaintX509Authority" => la::TaintX509AuthorityRequest,
            "TaintX509UpstreamAuthority" => la::TaintX509UpstreamAuthorityRequest,
            "RevokeX509Authority" => la::RevokeX509AuthorityRequest,
            "RevokeX509UpstreamAuthority" => la::RevokeX509UpstreamAuthorityRequest,
            "GetWITAuthorityState" => la::GetWitAuthorityStateRequest,
            "PrepareWITAuthority" => la::PrepareWitAuthorityRequest,
            "ActivateWITAuthority" => la::ActivateWitAuthorityRequest,
            "TaintWITAuthority" => la::TaintWitAuthorityRequest,
            "RevokeWITAuthority" => la::RevokeWitAuthorityRequest,
        }
        "spire.api.server.trustdomain.v1.TrustDomain" {
            "ListFederationRelationships" => td::ListFederationRelationshipsRequest,
            "GetFederationRelationship" => td::GetFederationRelationshipRequest,
            "BatchCreateFederationRelationship" => td::BatchCreateFederationRelationshipRequest,
            "BatchUpdateFederationRelationship" => td::BatchUpdateFederationRelationshipRequest,
            "BatchDeleteFederationRelationship" => td::BatchDeleteFederationRelationshipRequest,
            "RefreshBundle" => td::RefreshBundleRequest,
        }
        "signet.sync.v1.Sync" {
            "Watch" => sync::WatchRequest,
        }
        "istio.v1.auth.IstioCertificateService" {
            "CreateCertificate" => signet_proto::istio::v1::auth::IstioCertificateRequest,
        }
    }
}

/// Every method on the agent's public socket.
fn agent_methods() -> Vec<Method> {
    methods! {
        "SpiffeWorkloadAPI" {
            "FetchX509SVID" => wl::X509svidRequest,
            "FetchX509Bundles" => wl::X509BundlesRequest,
            "FetchJWTSVID" => wl::JwtsvidRequest,
            "FetchJWTBundles" => wl::JwtBundlesRequest,
            "ValidateJWTSVID" => wl::ValidateJwtsvidRequest,
            "FetchWITSVID" => wl::WitsvidRequest,
            "FetchWITBundles" => wl::WitBundlesRequest,
        }
        "envoy.service.secret.v3.SecretDiscoveryService" {
            "StreamSecrets" => disc::DiscoveryRequest,
            "FetchSecrets" => disc::DiscoveryRequest,
            "DeltaSecrets" => disc::DeltaDiscoveryRequest,
        }
    }
}

/// Counts panics in the server's and agent's tasks (tokio's threads; not the test threads,
/// where a failing target panics on purpose).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-"))
            {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spiffe_id(path: &str) -> Option<types::Spiffeid> {
    Some(types::Spiffeid {
        trust_domain: "example.org".into(),
        path: path.into(),
    })
}

fn unix_selector(value: &str) -> types::Selector {
    types::Selector {
        r#type: "unix".into(),
        value: value.into(),
    }
}

/// Valid requests, encoded, per method path: mutation seeds that get past decoding and
/// the first checks. Every method also has the empty message.
fn seeds(csr: &[u8], token: &str, jwt: &str, root: &[u8]) -> BTreeMap<&'static str, Vec<Vec<u8>>> {
    let entry = types::Entry {
        spiffe_id: spiffe_id("/fuzz"),
        parent_id: spiffe_id("/spire/agent/join_token/x"),
        selectors: vec![unix_selector("uid:4242")],
        x509_svid_ttl: 600,
        dns_names: vec!["a.example.org".into()],
        ..Default::default()
    };
    let proto_bundle = types::Bundle {
        trust_domain: "other.org".into(),
        x509_authorities: vec![types::X509Certificate {
            asn1: root.to_vec(),
            tainted: false,
        }],
        ..Default::default()
    };
    let attest = agent::AttestAgentRequest {
        step: Some(agent::attest_agent_request::Step::Params(
            agent::attest_agent_request::Params {
                data: Some(types::AttestationData {
                    r#type: "join_token".into(),
                    payload: token.as_bytes().to_vec(),
                }),
                params: Some(agent::AgentX509svidParams { csr: csr.to_vec() }),
            },
        )),
    };
    let sds = disc::DiscoveryRequest {
        resource_names: vec!["default".into(), "ROOTCA".into()],
        type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
        ..Default::default()
    };
    let mut m: BTreeMap<&'static str, Vec<Vec<u8>>> = BTreeMap::new();
    let mut put = |path: &'static str, msg: Vec<u8>| m.entry(path).or_default().push(msg);
    put(
        "/spire.api.server.agent.v1.Agent/AttestAgent",
        attest.encode_to_vec(),
    );
    put(
        "/spire.api.server.agent.v1.Agent/CreateJoinToken",
        agent::CreateJoinTokenRequest {
            ttl: 60,
            agent_id: spiffe_id("/node"),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.agent.v1.Agent/RenewAgent",
        agent::RenewAgentRequest {
            params: Some(agent::AgentX509svidParams { csr: csr.to_vec() }),
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.entry.v1.Entry/BatchCreateEntry",
        entry::BatchCreateEntryRequest {
            entries: vec![entry.clone()],
            output_mask: None,
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.entry.v1.Entry/BatchUpdateEntry",
        entry::BatchUpdateEntryRequest {
            entries: vec![entry],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.bundle.v1.Bundle/BatchSetFederatedBundle",
        bundle::BatchSetFederatedBundleRequest {
            bundle: vec![proto_bundle.clone()],
            output_mask: None,
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.bundle.v1.Bundle/AppendBundle",
        bundle::AppendBundleRequest {
            x509_authorities: proto_bundle.x509_authorities.clone(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.svid.v1.SVID/MintX509SVID",
        svid::MintX509svidRequest {
            csr: csr.to_vec(),
            ttl: 60,
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.svid.v1.SVID/MintJWTSVID",
        svid::MintJwtsvidRequest {
            id: spiffe_id("/w"),
            audience: vec!["aud".into()],
            ttl: 60,
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.svid.v1.SVID/BatchNewX509SVID",
        svid::BatchNewX509svidRequest {
            params: vec![svid::NewX509svidParams {
                entry_id: "x".into(),
                csr: csr.to_vec(),
            }],
        }
        .encode_to_vec(),
    );
    put(
        "/spire.api.server.trustdomain.v1.TrustDomain/BatchCreateFederationRelationship",
        td::BatchCreateFederationRelationshipRequest {
            federation_relationships: vec![types::FederationRelationship {
                trust_domain: "other.org".into(),
                bundle_endpoint_url: "https://127.0.0.1:1/".into(),
                trust_domain_bundle: Some(proto_bundle),
                ..Default::default()
            }],
            output_mask: None,
        }
        .encode_to_vec(),
    );
    put(
        "/SpiffeWorkloadAPI/FetchJWTSVID",
        wl::JwtsvidRequest {
            audience: vec!["aud".into()],
            spiffe_id: String::new(),
        }
        .encode_to_vec(),
    );
    put(
        "/SpiffeWorkloadAPI/ValidateJWTSVID",
        wl::ValidateJwtsvidRequest {
            audience: "aud".into(),
            svid: jwt.into(),
        }
        .encode_to_vec(),
    );
    put(
        "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
        sds.encode_to_vec(),
    );
    put(
        "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets",
        sds.encode_to_vec(),
    );
    m
}

/// Protobuf pieces for the byte mutations: field keys of small tags with every wire type,
/// long lengths, strings the handlers look at.
const PROTO_TOKENS: &[&[u8]] = &[
    &[0x0a, 0x00],
    &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x12, 0x01, 0x00],
    &[
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ],
    &[0x10, 0x80, 0x80, 0x80, 0x80, 0x10],
    &[0x1a, 0x02, 0x0a, 0x00],
    &[0x0b],
    &[0x0c],
    &[0x0f],
    b"spiffe://example.org/x",
    b"/spire/agent/x",
    b"unix",
    b"uid:0",
];

/// One call: a method, a payload and where (or how) to send it.
#[derive(Debug, Clone)]
struct Case {
    method: Method,
    payload: Vec<u8>,
    /// Server: 0 admin socket, 1 TLS with the agent SVID, 2 TLS without one. Agent: 0 with
    /// the Workload API security header, 1 without.
    route: u8,
    /// An `authorization: Bearer` token (the Istio CA's service-account token).
    bearer: Option<String>,
}

fn cases(
    methods: Vec<Method>,
    seeds: BTreeMap<&'static str, Vec<Vec<u8>>>,
    routes: u8,
) -> BoxedStrategy<Case> {
    (0..methods.len(), 0..routes)
        .prop_flat_map(move |(i, route)| {
            let method = methods[i];
            let mut own = seeds.get(method.path).cloned().unwrap_or_default();
            own.push(Vec::new());
            let payload = prop_oneof![
                1 => fuzz::raw_bytes(64),
                3 => fuzz::proto_message(),
                4 => fuzz::raw_or_mutated(own, PROTO_TOKENS, 64),
            ];
            payload.prop_map(move |payload| Case {
                method,
                payload,
                route,
                bearer: None,
            })
        })
        .boxed()
}

/// Tallies outcomes per method and code, and time per method, for the figures printed at
/// the end.
#[derive(Default)]
struct Tally(
    Mutex<BTreeMap<String, usize>>,
    Mutex<BTreeMap<String, Duration>>,
);

impl Tally {
    fn add(&self, method: &str, outcome: &Outcome, took: Duration) {
        *self
            .1
            .lock()
            .unwrap()
            .entry(method.rsplit('/').next().unwrap_or(method).to_owned())
            .or_default() += took;
        let key = match outcome {
            Outcome::Status(code, _) => format!("{code:?}"),
            other => format!("{other:?}"),
        };
        *self
            .0
            .lock()
            .unwrap()
            .entry(format!(
                "{} {key}",
                method.rsplit('/').next().unwrap_or(method)
            ))
            .or_default() += 1;
    }

    fn messages(&self) -> usize {
        let t = self.0.lock().unwrap();
        t.iter()
            .filter(|(k, _)| k.ends_with(" Message"))
            .map(|(_, n)| n)
            .sum()
    }

    fn print(&self, name: &str) {
        let t = self.0.lock().unwrap();
        let line: Vec<String> = t.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("fuzz {name} outcomes: {}", line.join(" "));
        let mut slow: Vec<(Duration, String)> = self
            .1
            .lock()
            .unwrap()
            .iter()
            .map(|(m, d)| (*d, m.clone()))
            .collect();
        slow.sort();
        let top: Vec<String> = slow
            .iter()
            .rev()
            .take(5)
            .map(|(d, m)| format!("{m}={d:?}"))
            .collect();
        println!("fuzz {name} slowest methods (total): {}", top.join(" "));
    }
}

/// The checks every outcome passes.
fn check(case: &Case, outcome: &Outcome) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{} answered {outcome:?}: {why}", case.method.path));
    match outcome {
        Outcome::Status(Code::Unknown, _) => fail("Unknown is never an answer to bad input"),
        Outcome::Status(Code::Internal, _) if (case.method.decodes)(&case.payload) => {
            fail("Internal for a message that decodes")
        }
        _ if PANICS.load(Ordering::SeqCst) > 0 => fail("a panic in the process"),
        _ => Ok(()),
    }
}

/// Bytes decoded as every request type the server and agent accept, and the messages that
/// decode run through the conversions the server applies to entries, bundles and IDs.
#[test]
fn request_decoding() {
    let (_, csr) = key_and_csr(Some("spiffe://example.org/w"));
    let methods: Vec<Method> = server_methods()
        .into_iter()
        .chain(agent_methods())
        .collect();
    let all_seeds: Vec<Vec<u8>> = seeds(&csr, "token", "a.b.c", &csr)
        .into_values()
        .flatten()
        .collect();
    let own = parse_trust_domain("example.org").unwrap();
    let input = prop_oneof![
        fuzz::raw_bytes(256),
        fuzz::proto_message(),
        fuzz::raw_or_mutated(all_seeds, PROTO_TOKENS, 128),
    ];
    fuzz::run("request_decoding", input, |bytes| {
        for m in &methods {
            let _ = (m.decodes)(&bytes);
        }
        if let Ok(e) = types::Entry::decode(&bytes[..]) {
            let _ = signet_proto::convert::validated_entry(&e, &own);
        }
        if let Ok(b) = types::Bundle::decode(&bytes[..]) {
            let _ = signet_common::bundle::Bundle::try_from(&b);
        }
        if let Ok(id) = types::Spiffeid::decode(&bytes[..]) {
            let _ = signet_proto::convert::spiffe_id("id", Some(&id));
        }
        Ok(())
    });
}

/// Request metadata for a call.
type Headers = Vec<(&'static str, String)>;

/// Runs the calls of `cases` against a live process: each sent where `route` says, its
/// outcome tallied and [`check`]ed; every 256 calls and at the end `alive` must pass, and
/// nothing in the process may have panicked. Returns how many calls got a response message.
fn fuzz_live(
    rt: &Runtime,
    name: &str,
    cases: BoxedStrategy<Case>,
    route: impl Fn(&Case) -> (Channel, Headers),
    alive: impl Fn() -> Result<(), String>,
) -> usize {
    let tally = Tally::default();
    let calls = AtomicUsize::new(0);
    fuzz::run(name, cases, |case| {
        let (channel, headers) = route(&case);
        let start = std::time::Instant::now();
        let outcome = rt.block_on(raw_grpc::call(
            channel,
            case.method.path,
            case.payload.clone(),
            &headers,
            Duration::from_millis(300),
        ));
        tally.add(case.method.path, &outcome, start.elapsed());
        check(&case, &outcome)?;
        if calls.fetch_add(1, Ordering::SeqCst) % 256 == 255 {
            alive()?;
        }
        Ok(())
    });
    tally.print(name);
    alive().unwrap();
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic in the process");
    let answered = tally.messages();
    assert!(
        answered > 0,
        "{name}: no call got past the checks to a response"
    );
    answered
}

/// The server's liveness check: gRPC health SERVING on the admin socket and a bundle with a
/// root from GetBundle.
async fn server_answers(server: &TestServer) -> Result<(), String> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.admin().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .map_err(|e| format!("health check: {e}"))?
        .into_inner()
        .status;
    if status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        return Err(format!("health status {status}"));
    }
    if server.roots().await.is_empty() {
        return Err("GetBundle: no roots".into());
    }
    Ok(())
}

/// Every server method over the admin socket and over TLS as an attested agent and as an
/// anonymous client.
#[test]
fn server_api() {
    count_panics();
    let rt = runtime();
    let (server, agent_tls, anon_tls, seeds) = rt.block_on(async {
        let server = TestServer::start(Default::default()).await;
        let id = server.attest(&server.join_token(600).await).await.unwrap();
        let agent_tls = server.tls(Some(&id)).await.unwrap();
        let anon_tls = server.tls(None).await.unwrap();
        let (_, csr) = key_and_csr(Some("spiffe://example.org/w"));
        let token = server.join_token(600).await;
        let root = server.roots().await.remove(0);
        (
            server,
            agent_tls,
            anon_tls,
            seeds(&csr, &token, "a.b.c", &root),
        )
    });
    let admin = rt.block_on(server.admin());
    let route = |case: &Case| -> (Channel, Headers) {
        let channel = match case.route {
            0 => admin.clone(),
            1 => agent_tls.clone(),
            _ => anon_tls.clone(),
        };
        (channel, Vec::new())
    };
    fuzz_live(
        &rt,
        "server_api",
        cases(server_methods(), seeds, 3),
        route,
        || rt.block_on(server_answers(&server)),
    );
}

/// The agent's liveness check: the Workload API streams its X.509 bundles, SDS answers
/// FetchSecrets for ROOTCA.
async fn agent_answers(socket: &std::path::Path) -> Result<(), String> {
    let bundles = raw_grpc::call(
        uds_channel(socket).await,
        "/SpiffeWorkloadAPI/FetchX509Bundles",
        Vec::new(),
        &[("workload.spiffe.io", "true".into())],
        Duration::from_secs(5),
    )
    .await;
    let sds = raw_grpc::call(
        uds_channel(socket).await,
        "/envoy.service.secret.v3.SecretDiscoveryService/FetchSecrets",
        disc::DiscoveryRequest {
            resource_names: vec!["ROOTCA".into()],
            ..Default::default()
        }
        .encode_to_vec(),
        &[],
        Duration::from_secs(5),
    )
    .await;
    match (bundles, sds) {
        (Outcome::Message, Outcome::Message) => Ok(()),
        other => Err(format!("agent no longer answers: {other:?}")),
    }
}

/// Every Workload API and SDS method on the agent's public socket, with and without the
/// security header, from a caller that has an entry (so valid requests reach the caches).
#[test]
fn agent_api() {
    count_panics();
    let rt = runtime();
    let (setup, agent, seeds) = rt.block_on(async {
        let setup = Setup::new(&[]).await;
        let agent = setup.agent("").await;
        let uid = std::fs::metadata("/proc/self").unwrap().uid();
        let entry_id = setup
            .create_entry_selector(&agent.agent_id, "/fuzz", &format!("uid:{uid}"))
            .await;
        let mut rx = agent.snapshot();
        until(&mut rx, Duration::from_secs(10), |s| {
            s.svids.contains_key(&entry_id)
        })
        .await;
        let client =
            spiffe::WorkloadApiClient::connect_to(format!("unix:{}", agent.socket_path.display()))
                .await
                .unwrap();
        let jwt = client.fetch_jwt_svid(["aud"], None).await.unwrap();
        let (_, csr) = key_and_csr(None);
        let root = setup.server.roots().await.remove(0);
        let seeds = seeds(&csr, "t", jwt.token(), &root);
        (setup, agent, seeds)
    });
    let socket = agent.socket_path.clone();
    rt.block_on(agent_answers(&socket)).unwrap();
    let channel = rt.block_on(uds_channel(&socket));
    let route = |case: &Case| -> (Channel, Headers) {
        let headers: Headers = if case.route == 0 {
            vec![("workload.spiffe.io", "true".into())]
        } else {
            Vec::new()
        };
        (channel.clone(), headers)
    };
    fuzz_live(
        &rt,
        "agent_api",
        cases(agent_methods(), seeds, 2),
        route,
        || rt.block_on(agent_answers(&socket)),
    );
    drop((agent, setup));
}

#[test]
fn method_tables_name_served_methods() {
    // A path typo would only ever answer Unimplemented and fuzz nothing: each method of the
    // tables answers something else to its empty message on the admin socket or agent socket.
    count_panics();
    let rt = runtime();
    rt.block_on(async {
        let server = TestServer::start(Default::default()).await;
        for m in server_methods() {
            if m.path.starts_with("/istio.") {
                continue; // served on TCP only, when istio_ca is configured
            }
            let out = raw_grpc::call(
                server.admin().await,
                m.path,
                Vec::new(),
                &[],
                Duration::from_millis(500),
            )
            .await;
            assert!(
                !matches!(&out, Outcome::Status(Code::Unimplemented, msg) if msg.is_empty()),
                "{}: {out:?}",
                m.path
            );
        }
    });
}

const ISTIO_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Service-account token claims of every shape: right and wrong subject, audience, issuer,
/// times and Kubernetes claims.
fn istio_claims(now: i64) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    (
        prop::sample::select(vec![
            json!("system:serviceaccount:default:httpbin"),
            json!("system:serviceaccount::"),
            json!("system:serviceaccount:a:b:c"),
            json!(""),
            json!(7),
        ]),
        prop::sample::select(vec![json!(["istio-ca"]), json!("istio-ca"), json!(["x"]), json!([])]),
        prop::sample::select(vec![json!(now + 3600), json!(now - 600), json!("x"), json!(1e308)]),
        prop::sample::select(vec![json!(ISTIO_ISSUER), json!("https://evil"), json!(null)]),
        prop::sample::select(vec![
            json!({"namespace": "default", "serviceaccount": {"name": "httpbin"}}),
            json!({"namespace": "other", "serviceaccount": {"name": "httpbin"}}),
            json!({"namespace": 1, "serviceaccount": []}),
            json!(null),
        ]),
    )
        .prop_map(move |(sub, aud, exp, iss, k8s)| {
            json!({"sub": sub, "aud": aud, "exp": exp, "iat": now, "nbf": now, "iss": iss, "kubernetes.io": k8s})
        })
}

/// The Istio CA's CreateCertificate over TLS: requests (mutated valid ones with a PEM CSR,
/// protobuf-shaped, raw) with service-account tokens really signed by the JWKS key over
/// claims of every shape, mutated valid tokens, raw text or none.
#[test]
fn istio_ca_api() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    count_panics();
    let rt = runtime();
    let jwks_dir = tempfile::tempdir().unwrap();
    let jwks = jwks_dir.path().join("jwks.json");
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let encoding = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k".into());
    std::fs::write(
        &jwks,
        serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap(),
    )
    .unwrap();
    let block = format!(
        "istio_ca {{\n token_issuer = \"{ISTIO_ISSUER}\"\n token_audience = \"istio-ca\"\n \
         jwks_path = \"{}\"\n server_dns_names = [\"signet.signet-system.svc\"]\n}}",
        jwks.display()
    );
    let (server, tls) = rt.block_on(async {
        let server = TestServer::start(signet_tests::Options {
            blocks: vec![block],
            ..Default::default()
        })
        .await;
        let tls = server.tls(None).await.unwrap();
        (server, tls)
    });
    let now = signet_common::clock::Clock::unix_now(&signet_common::clock::SystemClock);
    let sign = move |claims: &serde_json::Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k".into());
        jsonwebtoken::encode(&header, claims, &encoding).unwrap()
    };
    let valid_token = sign(&serde_json::json!({
        "sub": "system:serviceaccount:default:httpbin", "aud": ["istio-ca"], "exp": now + 3600,
        "iat": now, "nbf": now, "iss": ISTIO_ISSUER,
        "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "httpbin"}}
    }));
    let csr = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap()
    };
    let encode = |csr: String, validity_duration: i64| {
        signet_proto::istio::v1::auth::IstioCertificateRequest {
            csr,
            validity_duration,
            metadata: None,
        }
        .encode_to_vec()
    };
    let request = encode(csr.clone(), 3600);
    let pem_tokens: &[&[u8]] = &[
        b"-----BEGIN CERTIFICATE REQUEST-----\n",
        b"-----END",
        b"=",
        b"\n",
    ];
    let method = server_methods()
        .into_iter()
        .find(|m| m.path.ends_with("/CreateCertificate"))
        .unwrap();
    let jwt_tokens: &[&[u8]] = &[b".", b"=", b"eyJ", b"Bearer "];
    let token = prop_oneof![
        2 => Just(Some(valid_token.clone())),
        4 => istio_claims(now).prop_map(move |c| Some(sign(&c))),
        3 => fuzz::mutated(vec![valid_token.into_bytes()], jwt_tokens)
            .prop_map(|t| Some(String::from_utf8_lossy(&t).into_owned())),
        1 => any::<String>().prop_map(Some),
        1 => Just(None),
    ];
    let payload = prop_oneof![
        1 => fuzz::proto_message(),
        2 => fuzz::raw_or_mutated(vec![request], PROTO_TOKENS, 64),
        3 => (fuzz::text(vec![csr], pem_tokens), prop_oneof![Just(3600i64), any::<i64>()])
            .prop_map(move |(csr, ttl)| encode(csr, ttl)),
    ];
    let cases = (token, payload)
        .prop_map(move |(bearer, payload)| Case {
            method,
            payload,
            route: 0,
            bearer,
        })
        .boxed();
    let route = |case: &Case| -> (Channel, Headers) {
        let mut headers: Headers = vec![("clusterid", "Kubernetes".into())];
        if let Some(t) = &case.bearer {
            headers.push(("authorization", format!("Bearer {t}")));
        }
        (tls.clone(), headers)
    };
    fuzz_live(&rt, "istio_ca_api", cases, route, || {
        rt.block_on(server_answers(&server))
    });
}
