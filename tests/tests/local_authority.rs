//! Forced rotation through the LocalAuthority API, driven with `signet-server localauthority`
//! (SPIRE's flag spelling), watched through a real agent: after `x509 taint` every workload
//! SVID chained to the old CA is replaced within seconds while a `spiffe`-crate watcher sees
//! no gap and a rustls mutual-TLS pair keeps handshaking; after `revoke` the old root is gone
//! from the Workload API and SDS bundles. The same with JWT: the tainted `kid` is no longer
//! served. Bad input (taint of the active authority, activate with a wrong ID) gets SPIRE's
//! code and changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
use futures::StreamExt;
use prost::Message;
use signet_tests::TestServer;
use signet_tests::agent::{Setup, until};
use spiffe::{TrustDomain, WorkloadApiClient};

fn uid() -> String {
    format!("uid:{}", nix::unistd::geteuid().as_raw())
}

/// Runs `signet-server <args> -socketPath <admin>` in-process, SPIRE's flag spelling
/// rewritten as `main` does; stdout, or the error line.
async fn cli(server: &TestServer, args: &[&str]) -> Result<String, String> {
    server.cli(args).await.0.map_err(|e| e.to_string())
}

async fn json(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["-output", "json"]);
    serde_json::from_str(&cli(server, &all).await.unwrap()).unwrap()
}

fn id_of(v: &serde_json::Value, field: &str) -> String {
    v[field]["authority_id"].as_str().unwrap().to_owned()
}

/// Hex SKI / AKI of a certificate.
fn key_ids(der: &[u8]) -> (String, String) {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (mut ski, mut aki) = (String::new(), String::new());
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = hex(k.0),
            ParsedExtension::AuthorityKeyIdentifier(k) => {
                aki = k
                    .key_identifier
                    .as_ref()
                    .map(|k| hex(k.0))
                    .unwrap_or_default();
            }
            _ => {}
        }
    }
    (ski, aki)
}

/// The issuers (AKI) of every SVID, and the bundle's root SKIs, from the Workload API.
async fn workload_view(client: &WorkloadApiClient) -> (Vec<String>, Vec<String>) {
    let svids = client.fetch_all_x509_svids().await.unwrap();
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let td = TrustDomain::new("example.org").unwrap();
    let roots = bundles
        .get(&td)
        .unwrap()
        .authorities()
        .iter()
        .map(|c| key_ids(c.as_bytes()).0)
        .collect();
    let issuers = svids
        .iter()
        .map(|s| key_ids(s.leaf().as_bytes()).1)
        .collect();
    (issuers, roots)
}

/// One mutual-TLS handshake between `/frontend` and `/backend` with what the Workload API
/// hands out right now.
async fn handshake(client: &WorkloadApiClient) -> Result<(), String> {
    let svids = client
        .fetch_all_x509_svids()
        .await
        .map_err(|e| e.to_string())?;
    let bundles = client
        .fetch_x509_bundles()
        .await
        .map_err(|e| e.to_string())?;
    let td = TrustDomain::new("example.org").unwrap();
    let roots: Vec<Vec<u8>> = bundles
        .get(&td)
        .ok_or("no bundle")?
        .authorities()
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let by_path = |p: &str| {
        svids
            .iter()
            .find(|s| s.spiffe_id().path() == p)
            .ok_or(format!("no {p}"))
    };
    let (frontend, backend) = (by_path("/frontend")?, by_path("/backend")?);
    signet_tests::mtls::handshake(frontend, backend, &roots)
        .await
        .map(|_| ())
}

/// The root SKIs of the SDS `ROOTCA` validation context (agent with
/// `disable_spiffe_cert_validation`, so the roots are inline PEM).
async fn sds_roots(socket: &std::path::Path) -> Vec<String> {
    let channel = signet_tests::uds_channel(socket).await;
    let resp = SecretDiscoveryServiceClient::new(channel)
        .fetch_secrets(DiscoveryRequest {
            resource_names: vec!["ROOTCA".into()],
            type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let secret = Secret::decode(resp.resources[0].value.as_slice()).unwrap();
    let Some(secret::Type::ValidationContext(vc)) = secret.r#type else {
        panic!("ROOTCA is a validation context")
    };
    let Some(Specifier::InlineBytes(pem)) = vc.trusted_ca.and_then(|d| d.specifier) else {
        panic!("trusted_ca inline")
    };
    signet_common::bundle::parse_pem_certs(std::str::from_utf8(&pem).unwrap())
        .unwrap()
        .iter()
        .map(|der| key_ids(der).0)
        .collect()
}

/// Polls `f` every 100 ms for at most `within`; returns how long it took.
async fn within<F, Fut>(within: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_prepare_activate_taint_revoke_replaces_svids_without_a_gap() {
    let setup = Setup::new(&[]).await;
    let agent = setup
        .agent("sds {\n disable_spiffe_cert_validation = true\n }")
        .await;
    let server = &setup.server;
    let a = setup
        .create_entry_selector(&agent.agent_id, "/frontend", &uid())
        .await;
    let b = setup
        .create_entry_selector(&agent.agent_id, "/backend", &uid())
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&a) && s.svids.contains_key(&b)
    })
    .await;
    let endpoint = format!("unix:{}", agent.socket_path.display());
    let client = WorkloadApiClient::connect_to(&endpoint).await.unwrap();

    let state = json(server, &["localauthority", "x509", "show"]).await;
    let old = id_of(&state, "active");
    assert!(
        state["prepared"].is_null() && state["old"].is_null(),
        "{state}"
    );
    let pretty = cli(server, &["localauthority", "x509", "show"])
        .await
        .unwrap();
    assert!(
        pretty.starts_with(&format!(
            "Active X.509 authority:\n  Authority ID: {old}\n  Expires at: "
        )) && pretty.contains("  Upstream authority ID: No upstream authority\n")
            && pretty.contains("Prepared X.509 authority:\n  No prepared X.509 authority found\n"),
        "{pretty}"
    );

    // A go-spiffe-style watcher: every update must carry both SVIDs, each verifying against
    // the bundle of the same update.
    let mut stream = client.stream_x509_contexts().await.unwrap();
    let issuers_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = issuers_seen.clone();
    let watcher = tokio::spawn(async move {
        while let Some(update) = stream.next().await {
            let ctx = update.expect("the watch never fails");
            let td = TrustDomain::new("example.org").unwrap();
            let roots: Vec<Vec<u8>> = ctx
                .bundle_set()
                .get(&td)
                .expect("own bundle in every update")
                .authorities()
                .iter()
                .map(|c| c.as_bytes().to_vec())
                .collect();
            assert_eq!(ctx.svids().len(), 2, "both SVIDs in every update");
            for svid in ctx.svids() {
                assert!(
                    signet_tests::mtls::signed_by(svid.leaf().as_bytes(), &roots),
                    "an SVID that does not verify against its update's bundle"
                );
                seen.lock().unwrap().push(key_ids(svid.leaf().as_bytes()).1);
            }
        }
    });
    // A mutual-TLS pair handshaking every 100 ms throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let pinger = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let client = WorkloadApiClient::connect_to(&endpoint).await.unwrap();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match handshake(&client).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("handshake failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let prepared = json(server, &["localauthority", "x509", "prepare"]).await;
    let new = id_of(&prepared, "prepared_authority");
    assert_ne!(new, old);
    within(
        Duration::from_secs(5),
        "the new root in the bundle",
        || async { workload_view(&client).await.1.contains(&new) },
    )
    .await;

    // Bad input: SPIRE's codes, nothing changes.
    let before = json(server, &["localauthority", "x509", "show"]).await;
    let err = cli(
        server,
        &["localauthority", "x509", "activate", "-authorityID", "00ff"],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "could not activate X.509 authority: rpc error: code = InvalidArgument desc = unexpected authority ID"
    );
    let err = cli(server, &["localauthority", "x509", "activate"])
        .await
        .unwrap_err();
    assert_eq!(err, "an authority ID is required");
    assert_eq!(
        json(server, &["localauthority", "x509", "show"]).await,
        before
    );

    let activated = json(
        server,
        &["localauthority", "x509", "activate", "-authorityID", &new],
    )
    .await;
    assert_eq!(id_of(&activated, "activated_authority"), new);
    let state = json(server, &["localauthority", "x509", "show"]).await;
    assert_eq!(
        (id_of(&state, "active"), id_of(&state, "old")),
        (new.clone(), old.clone())
    );

    let err = cli(
        server,
        &["localauthority", "x509", "taint", "-authorityID", &new],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "could not taint X.509 authority: rpc error: code = InvalidArgument desc = unable to taint current local authority"
    );
    assert_eq!(
        json(server, &["localauthority", "x509", "show"]).await,
        state
    );
    let (issuers, _) = workload_view(&client).await;
    assert!(
        issuers.iter().all(|i| *i == old),
        "activation alone re-mints nothing: {issuers:?}"
    );

    let tainted = cli(
        server,
        &["localauthority", "x509", "taint", "-authorityID", &old],
    )
    .await
    .unwrap();
    assert!(
        tainted.starts_with(&format!(
            "Tainted X.509 authority:\n  Authority ID: {old}\n"
        )),
        "{tainted}"
    );
    let took = within(Duration::from_secs(5), "every SVID re-minted", || async {
        let (issuers, _) = workload_view(&client).await;
        issuers.len() == 2 && issuers.iter().all(|i| *i == new)
    })
    .await;
    eprintln!("every SVID chained to the tainted CA replaced in {took:?}");

    let revoked = json(
        server,
        &["localauthority", "x509", "revoke", "-authorityID", &old],
    )
    .await;
    assert_eq!(id_of(&revoked, "revoked_authority"), old);
    within(
        Duration::from_secs(5),
        "old root gone from the Workload API",
        || async { workload_view(&client).await.1 == [new.clone()] },
    )
    .await;
    within(Duration::from_secs(5), "old root gone from SDS", || async {
        sds_roots(&agent.socket_path).await == [new.clone()]
    })
    .await;
    let err = cli(
        server,
        &["localauthority", "x509", "revoke", "-authorityID", &old],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "could not revoke X.509 authority: rpc error: code = Internal desc = failed to revoke X.509 authority: no root CA found with provided subject key ID"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    pinger.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} mutual-TLS handshakes, {failed} failed");
    assert_eq!(failed, 0, "the mTLS pair never stopped handshaking");
    assert!(ok >= 5, "only {ok} handshakes");
    assert!(!watcher.is_finished(), "the watch is still open");
    watcher.abort();
    let issuers = issuers_seen.lock().unwrap().clone();
    assert!(
        issuers.contains(&old) && issuers.contains(&new),
        "{issuers:?}"
    );
    agent.shutdown().await.unwrap();
}

fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&header).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_taint_drops_cached_tokens_and_revoke_removes_the_key() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    let server = &setup.server;
    let e = setup
        .create_entry_selector(&agent.agent_id, "/jwt", &uid())
        .await;
    let mut rx = agent.snapshot();
    until(&mut rx, Duration::from_secs(10), |s| {
        s.svids.contains_key(&e)
    })
    .await;
    let client = WorkloadApiClient::connect_to(format!("unix:{}", agent.socket_path.display()))
        .await
        .unwrap();
    let first = client.fetch_jwt_svid(["db"], None).await.unwrap();
    let old = id_of(
        &json(server, &["localauthority", "jwt", "show"]).await,
        "active",
    );
    assert_eq!(kid(first.token()), old);

    let new = id_of(
        &json(server, &["localauthority", "jwt", "prepare"]).await,
        "prepared_authority",
    );
    let err = cli(
        server,
        &["localauthority", "jwt", "taint", "-authorityID", &new],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "could not taint JWT authority: rpc error: code = InvalidArgument desc = only Old local authorities can be tainted"
    );
    let activated = cli(
        server,
        &["localauthority", "jwt", "activate", "-authorityID", &new],
    )
    .await
    .unwrap();
    assert!(
        activated.starts_with(&format!(
            "Activated JWT authority:\n  Authority ID: {new}\n"
        )),
        "{activated}"
    );
    assert!(!activated.contains("Upstream"), "{activated}");
    let cached = client.fetch_jwt_svid(["db"], None).await.unwrap();
    assert_eq!(
        kid(cached.token()),
        old,
        "activation alone keeps the cached token"
    );

    json(
        server,
        &["localauthority", "jwt", "taint", "-authorityID", &old],
    )
    .await;
    let took = within(
        Duration::from_secs(5),
        "tokens of the tainted kid dropped",
        || async { kid(client.fetch_jwt_svid(["db"], None).await.unwrap().token()) == new },
    )
    .await;
    eprintln!("tainted JWT-SVID replaced in {took:?}");
    let bundle_kids = || async {
        let set = client.fetch_jwt_bundles().await.unwrap();
        let td = TrustDomain::new("example.org").unwrap();
        set.get(&td)
            .unwrap()
            .jwt_authorities()
            .map(|a| a.key_id().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        bundle_kids().await.contains(&old),
        "tainted, not yet revoked"
    );

    json(
        server,
        &["localauthority", "jwt", "revoke", "-authorityID", &old],
    )
    .await;
    within(
        Duration::from_secs(5),
        "revoked kid gone from the JWT bundle",
        || async { bundle_kids().await == [new.clone()] },
    )
    .await;
    let err = client.validate_jwt_token("db", first.token()).await;
    assert!(
        err.is_err(),
        "a token of the revoked key no longer validates"
    );
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn upstream_rpcs_are_refused_without_an_upstream_authority() {
    let setup = Setup::new(&[]).await;
    let err = cli(
        &setup.server,
        &["upstreamauthority", "taint", "-subjectKeyID", "abcd"],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        "could not taint X.509 upstream authority: rpc error: code = FailedPrecondition desc = upstream authority is not configured"
    );
    let err = cli(&setup.server, &["upstreamauthority", "revoke"])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        "the Subject Key ID of the X.509 upstream authority is required"
    );
}
