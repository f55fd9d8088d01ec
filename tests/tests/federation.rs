//! Federation relationships between two in-process servers in `a.test` and `b.test`, each
//! serving its bundle over `https_spiffe`, set up only with `signet-server federation create`
//! (run in-process, SPIRE's flags), then listed, shown, refreshed, refused on bad input and
//! deleted; the bundles each fetched from the other are checked against the other's own.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use signet_proto::spire::api::server::bundle::v1::GetFederatedBundleRequest;
use signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient;
use signet_tests::{Options, TestServer};

/// `signet-server <args>` against `server`: (ok, stdout, stderr plus the error).
async fn cli(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    match server.cli(args).await {
        (Ok(out), err) => (true, out, err),
        (Err(e), err) => (false, String::new(), format!("{err}Error: {e:#}\n")),
    }
}

async fn server(td: &str) -> TestServer {
    TestServer::start(Options::bundle_endpoint(td)).await
}

fn pem_file(server: &TestServer, roots: &[Vec<u8>], name: &str) -> String {
    let path = server.dir.path().join(name);
    std::fs::write(&path, signet_common::pem::certificates(roots)).unwrap();
    path.display().to_string()
}

/// The X.509 roots `server` holds for `td`, if any.
async fn federated_roots(server: &TestServer, td: &str) -> Option<Vec<Vec<u8>>> {
    BundleClient::new(server.admin().await)
        .get_federated_bundle(GetFederatedBundleRequest {
            trust_domain: td.into(),
            output_mask: None,
        })
        .await
        .ok()
        .map(|b| {
            b.into_inner()
                .x509_authorities
                .into_iter()
                .map(|a| a.asn1)
                .collect()
        })
}

async fn wait_roots(server: &TestServer, td: &str, want: &[Vec<u8>]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if federated_roots(server, td).await.as_deref() == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{td}'s bundle never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create_args<'a>(td: &'a str, url: &'a str, id: &'a str, bundle: &'a str) -> Vec<&'a str> {
    vec![
        "federation",
        "create",
        "-trustDomain",
        td,
        "-bundleEndpointURL",
        url,
        "-bundleEndpointProfile",
        "https_spiffe",
        "-endpointSpiffeID",
        id,
        "-trustDomainBundlePath",
        bundle,
    ]
}

#[tokio::test]
async fn two_servers_federate_both_ways_through_the_cli() {
    let a = server("a.test").await;
    let b = server("b.test").await;
    let (a_roots, b_roots) = (a.roots().await, b.roots().await);
    let a_url = format!("https://{}", a.server().bundle_endpoint_addr.unwrap());
    let b_url = format!("https://{}", b.server().bundle_endpoint_addr.unwrap());

    let b_pem = pem_file(&a, &b_roots, "b.pem");
    let (ok, out, err) = cli(
        &a,
        &create_args("b.test", &b_url, "spiffe://b.test/spire/server", &b_pem),
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        format!(
            "\nTrust domain              : b.test\nBundle endpoint URL       : {b_url}\nBundle endpoint profile   : https_spiffe\nEndpoint SPIFFE ID        : spiffe://b.test/spire/server\n"
        )
    );
    let a_pem = pem_file(&b, &a_roots, "a.pem");
    let (ok, _, err) = cli(
        &b,
        &create_args("a.test", &a_url, "spiffe://a.test/spire/server", &a_pem),
    )
    .await;
    assert!(ok, "{err}");
    wait_roots(&a, "b.test", &b_roots).await;
    wait_roots(&b, "a.test", &a_roots).await;

    let (ok, out, _) = cli(&a, &["federation", "list"]).await;
    assert!(ok);
    assert!(
        out.starts_with("Found 1 federation relationship\n\nTrust domain              : b.test\n"),
        "{out}"
    );
    let (ok, out, _) = cli(&a, &["federation", "show", "-trustDomain", "b.test"]).await;
    assert!(ok);
    assert!(
        out.starts_with("Found a federation relationship with trust domain b.test:\n\n"),
        "{out}"
    );
    let (ok, out, _) = cli(&a, &["federation", "list", "-output", "json"]).await;
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rel = &json["federation_relationships"][0];
    assert_eq!(rel["trust_domain"], "b.test");
    assert_eq!(rel["bundle_endpoint_url"], b_url.as_str());
    assert_eq!(
        rel["https_spiffe"]["endpoint_spiffe_id"],
        "spiffe://b.test/spire/server"
    );
    assert_eq!(rel["trust_domain_bundle"]["trust_domain"], "b.test");
    let (ok, out, err) = cli(&a, &["federation", "refresh", "-id", "b.test"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "Bundle refreshed\n");

    // Bad input: clear errors, nothing changes.
    let before = cli(&a, &["federation", "list", "-output", "json"]).await.1;
    for (args, expect) in [
        (
            create_args("a.test", &b_url, "spiffe://b.test/spire/server", &b_pem),
            "own trust domain",
        ),
        (
            create_args("b.test", &b_url, "spiffe://b.test/spire/server", &b_pem),
            "already exists",
        ),
        (
            create_args("c.test", "http://127.0.0.1:1", "spiffe://c.test/x", &b_pem),
            "scheme must be https",
        ),
        (
            create_args("c.test", "not a url", "spiffe://c.test/x", &b_pem),
            "invalid bundle endpoint URL",
        ),
    ] {
        let (ok, _, err) = cli(&a, &args).await;
        assert!(!ok, "{args:?} was accepted");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let (ok, _, err) = cli(
        &a,
        &[
            "federation",
            "create",
            "-trustDomain",
            "c.test",
            "-bundleEndpointURL",
            "https://x.test",
            "-bundleEndpointProfile",
            "https_spiffe",
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("endpoint SPIFFE ID is required"), "{err}");
    let (ok, _, err) = cli(&a, &["federation", "delete", "-id", "nope.test"]).await;
    assert!(!ok);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(
        cli(&a, &["federation", "list", "-output", "json"]).await.1,
        before
    );

    // An endpoint serving another trust domain's bundle, or presenting the wrong SPIFFE ID:
    // refresh fails naming the reason; the stored bundle stays as it was.
    let (ok, _, err) = cli(
        &a,
        &create_args("c.test", &b_url, "spiffe://b.test/spire/server", &b_pem),
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&a, &["federation", "refresh", "-id", "c.test"]).await;
    assert!(!ok);
    assert!(
        err.contains("for trust domain \\\"b.test\\\", not \\\"c.test\\\"")
            || err.contains("not \"c.test\""),
        "{err}"
    );
    let (ok, _, err) = cli(
        &a,
        &[
            "federation",
            "update",
            "-trustDomain",
            "b.test",
            "-bundleEndpointURL",
            &b_url,
            "-bundleEndpointProfile",
            "https_spiffe",
            "-endpointSpiffeID",
            "spiffe://b.test/not-the-server",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&a, &["federation", "refresh", "-id", "b.test"]).await;
    assert!(!ok);
    assert!(err.contains("not-the-server"), "{err}");
    assert_eq!(federated_roots(&a, "b.test").await.unwrap(), b_roots);

    let (ok, out, err) = cli(&a, &["federation", "delete", "-id", "c.test"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "federation relationship deleted.\n");
    let (ok, _, err) = cli(&a, &["federation", "refresh", "-id", "c.test"]).await;
    assert!(!ok);
    assert!(
        err.contains("there is no federation relationship with trust domain"),
        "{err}"
    );
}
