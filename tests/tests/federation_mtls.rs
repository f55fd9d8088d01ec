//! Workloads of two federated trust domains do mutual TLS with what their own agents serve.
//! Two servers, `a.test` and `b.test`, each serving its bundle over `https_spiffe`, federate
//! both ways set up only with `signet-server federation create`; a workload under an agent of
//! each (entries federating with the other trust domain) handshakes with the other, each side
//! authorizing the other's exact SPIFFE ID against its own agent's bundles. `b.test` runs a
//! short `ca_ttl`: its CA rotates during the test, the new root reaches `a.test`'s workload
//! through the bundle endpoint refresh before it signs anything, and not one handshake fails.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use signet_tests::Options;
use signet_tests::agent::Setup;
use signet_tests::mtls::{handshake_across, signed_by};
use spiffe::{TrustDomain, WorkloadApiClient, X509Svid};

async fn setup(td: &str, lines: &[&str]) -> Setup {
    let mut options = Options::bundle_endpoint(td);
    options
        .server_lines
        .extend(lines.iter().map(|l| (*l).to_owned()));
    Setup::with_options(options).await
}

/// `signet-server federation create` on `on` for `other`'s trust domain, with `other`'s bundle
/// as the bootstrap bundle (SPIRE's flags).
async fn federate(on: &Setup, other: &Setup, other_td: &str) {
    let url = format!(
        "https://{}",
        other.server.server().bundle_endpoint_addr.unwrap()
    );
    let pem = on.dir.path().join(format!("{other_td}.pem"));
    std::fs::write(
        &pem,
        signet_common::pem::certificates(&other.server.roots().await),
    )
    .unwrap();
    let endpoint_id = format!("spiffe://{other_td}/spire/server");
    let (result, stderr) = on
        .server
        .cli(&[
            "federation",
            "create",
            "-trustDomain",
            other_td,
            "-bundleEndpointURL",
            &url,
            "-bundleEndpointProfile",
            "https_spiffe",
            "-endpointSpiffeID",
            &endpoint_id,
            "-trustDomainBundlePath",
            pem.to_str().unwrap(),
        ])
        .await;
    result.unwrap_or_else(|e| panic!("federation create {other_td}: {e:#} {stderr}"));
}

/// What one workload holds right now: its SVID, and every root its agent gave it (own and
/// federated trust domains), with those of `foreign` apart.
struct View {
    svid: X509Svid,
    roots: Vec<Vec<u8>>,
    foreign: Vec<Vec<u8>>,
}

async fn view(client: &WorkloadApiClient, foreign: &str) -> Result<View, String> {
    let ctx = client
        .fetch_x509_context()
        .await
        .map_err(|e| e.to_string())?;
    let svid = ctx.default_svid().ok_or("no SVID")?.as_ref().clone();
    let der = |b: &spiffe::X509Bundle| -> Vec<Vec<u8>> {
        b.authorities()
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect()
    };
    let roots = ctx.bundle_set().iter().flat_map(|(_, b)| der(b)).collect();
    let foreign = ctx
        .bundle_set()
        .get(&TrustDomain::new(foreign).unwrap())
        .map(|b| der(&b))
        .unwrap_or_default();
    Ok(View {
        svid,
        roots,
        foreign,
    })
}

async fn until_views(a: &WorkloadApiClient, b: &WorkloadApiClient) -> (View, View) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let (Ok(va), Ok(vb)) = (view(a, "b.test").await, view(b, "a.test").await)
            && !va.foreign.is_empty()
            && !vb.foreign.is_empty()
        {
            return (va, vb);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the workloads never got their SVIDs and each other's bundle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Both directions: `a` dials `b`, then `b` dials `a`.
async fn both_ways(va: &View, vb: &View) -> Result<(), String> {
    let (b_saw, a_saw) = handshake_across(&va.svid, &va.roots, &vb.svid, &vb.roots).await?;
    assert_eq!(b_saw, "spiffe://a.test/workload");
    assert_eq!(a_saw, "spiffe://b.test/workload");
    let (a_saw, b_saw) = handshake_across(&vb.svid, &vb.roots, &va.svid, &va.roots).await?;
    assert_eq!(a_saw, "spiffe://b.test/workload");
    assert_eq!(b_saw, "spiffe://a.test/workload");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_of_two_trust_domains_keep_mtls_through_a_ca_rotation_in_one() {
    let a = setup("a.test", &[]).await;
    // Prepared at 12 s, active at 20 s (SPIRE's thresholds: 1/2 and 1/6 of the lifetime left).
    let b = setup(
        "b.test",
        &["ca_ttl = \"24s\"", "default_x509_svid_ttl = \"4s\""],
    )
    .await;
    federate(&a, &b, "b.test").await;
    federate(&b, &a, "a.test").await;

    let uid = format!("uid:{}", nix::unistd::geteuid().as_raw());
    let a_agent = a.agent("").await;
    let b_agent = b.agent("").await;
    a.create_federated_entry(&a_agent.agent_id, "/workload", &uid, &["b.test"])
        .await;
    b.create_federated_entry(&b_agent.agent_id, "/workload", &uid, &["a.test"])
        .await;
    let client = |agent: &signet_agent::run::Agent| {
        let socket = format!("unix:{}", agent.socket_path.display());
        async move { WorkloadApiClient::connect_to(&socket).await.unwrap() }
    };
    let (a_client, b_client) = (client(&a_agent).await, client(&b_agent).await);

    let (va, vb) = until_views(&a_client, &b_client).await;
    let first_b_roots = b.server.roots().await;
    assert_eq!(
        va.foreign, first_b_roots,
        "a.test's workload holds b.test's bundle"
    );
    assert_eq!(vb.foreign, a.server.roots().await);
    both_ways(&va, &vb).await.unwrap();

    // Handshake every 200 ms until b.test's workload presents an SVID from the new CA, and
    // a few times after.
    let (mut ok, mut failed, mut after_rotation) = (0, 0, 0);
    let mut new_root_seen_by_a_before_use = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while after_rotation < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b.test's CA did not rotate within 60 s ({ok} handshakes)"
        );
        let (va, vb) = until_views(&a_client, &b_client).await;
        match both_ways(&va, &vb).await {
            Ok(()) => ok += 1,
            Err(e) => {
                eprintln!("handshake failed: {e}");
                failed += 1;
            }
        }
        let b_leaf = vb.svid.leaf().as_bytes();
        if !signed_by(b_leaf, &first_b_roots) {
            // The issuer of b.test's new SVIDs was already in a.test's workload's bundle.
            new_root_seen_by_a_before_use.get_or_insert(signed_by(b_leaf, &va.foreign));
            after_rotation += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("{ok} cross-trust-domain handshake rounds (both ways), {failed} failed");
    assert_eq!(
        failed, 0,
        "mTLS across the trust domains broke during the rotation"
    );
    assert_eq!(new_root_seen_by_a_before_use, Some(true));
}
