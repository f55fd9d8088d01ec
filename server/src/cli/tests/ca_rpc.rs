//! `bundle`, `x509 mint` and `jwt mint` over a real gRPC channel, against the fake CA.

use std::os::unix::fs::PermissionsExt as _;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::fake_ca::{FakeCaServer, TD};
use super::{Captured, parse};
use crate::cli::output::pem_block;

async fn run(server: &FakeCaServer, args: &[&str], stdin: &str) -> (anyhow::Result<()>, Captured) {
    let mut all = args.to_vec();
    all.extend(["--socket-path", server.socket.as_str()]);
    let mut io = Captured::with_stdin(stdin);
    let result = io.run(parse(&all)).await;
    (result, io)
}

#[tokio::test]
async fn bundle_show_prints_the_roots() {
    let server = FakeCaServer::start().await;
    let (result, io) = run(&server, &["bundle", "show"], "").await;
    result.unwrap();
    assert_eq!(io.stdout(), pem_block("CERTIFICATE", &server.ca_der));

    let (result, io) = run(&server, &["bundle", "show", "--format", "spiffe"], "").await;
    result.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&io.stdout()).unwrap();
    assert_eq!(doc["keys"][0]["use"], "x509-svid");
    assert_eq!(doc["spiffe_sequence"], 1);

    let (result, io) = run(&server, &["bundle", "show", "--output", "json"], "").await;
    result.unwrap();
    let v: serde_json::Value = serde_json::from_str(&io.stdout()).unwrap();
    assert_eq!(v["trust_domain"], TD);
    assert_eq!(v["sequence_number"], "1");
}

#[tokio::test]
async fn federated_bundles_set_list_count_delete() {
    let server = FakeCaServer::start().await;
    let pem = pem_block("CERTIFICATE", &server.ca_der);
    let set = ["bundle", "set", "--id", "spiffe://federated.test"];
    let (result, io) = run(&server, &set, &pem).await;
    result.unwrap();
    assert_eq!(io.stdout(), "bundle set.\n");

    let (result, io) = run(&server, &["bundle", "list"], "").await;
    result.unwrap();
    let stars = "*".repeat(40);
    assert_eq!(
        io.stdout(),
        format!("{stars}\n* federated.test\n{stars}\n{pem}")
    );

    let one = ["bundle", "list", "--id", "spiffe://federated.test"];
    let (result, io) = run(&server, &one, "").await;
    result.unwrap();
    assert_eq!(io.stdout(), pem);

    let (result, io) = run(&server, &["bundle", "count"], "").await;
    result.unwrap();
    assert_eq!(io.stdout(), "2 bundles\n");

    let delete = ["bundle", "delete", "--id", "spiffe://federated.test"];
    let (result, io) = run(&server, &delete, "").await;
    result.unwrap();
    assert_eq!(io.stdout(), "bundle deleted.\n");
    let (result, _) = run(&server, &delete, "").await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "failed to delete federated bundle \"federated.test\": no such bundle"
    );
}

#[tokio::test]
async fn bundle_set_refuses_bad_input_before_dialing() {
    let server = FakeCaServer::start().await;
    let (result, _) = run(
        &server,
        &["bundle", "set", "--id", "spiffe://f.test"],
        "junk",
    )
    .await;
    assert_eq!(
        format!("{:#}", result.unwrap_err()),
        "unable to parse bundle data: no PEM blocks"
    );
    let (result, _) = run(&server, &["bundle", "set"], "").await;
    assert_eq!(result.unwrap_err().to_string(), "id flag is required");
}

fn uri_sans(der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn x509_mint_writes_svid_key_and_bundle() {
    let server = FakeCaServer::start().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let args = [
        "x509",
        "mint",
        "--spiffe-id",
        "spiffe://domain.test/w",
        "--write",
        dir,
    ];
    let (result, io) = run(&server, &args, "").await;
    result.unwrap();
    assert_eq!(
        io.stdout(),
        format!(
            "X509-SVID written to {dir}/svid.pem\nPrivate key written to {dir}/key.pem\n\
             Root CAs written to {dir}/bundle.pem\n"
        )
    );
    let mode = |name: &str| {
        let meta = std::fs::metadata(out.path().join(name)).unwrap();
        meta.permissions().mode() & 0o777
    };
    assert_eq!(
        (mode("svid.pem"), mode("key.pem"), mode("bundle.pem")),
        (0o644, 0o600, 0o644)
    );
    let bundle = std::fs::read_to_string(out.path().join("bundle.pem")).unwrap();
    assert_eq!(bundle, pem_block("CERTIFICATE", &server.ca_der));
    let svid = std::fs::read(out.path().join("svid.pem")).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&svid)
        .map(|c: rustls_pki_types::CertificateDer<'_>| c.to_vec())
        .unwrap();
    assert_eq!(uri_sans(&der), ["spiffe://domain.test/w"]);
}

#[tokio::test]
async fn x509_mint_prints_pem_sections_or_json() {
    let server = FakeCaServer::start().await;
    let args = [
        "x509",
        "mint",
        "--spiffe-id",
        "spiffe://domain.test/w",
        "--ttl",
        "1h",
    ];
    let (result, io) = run(&server, &args, "").await;
    result.unwrap();
    let out = io.stdout();
    assert!(
        out.starts_with("X509-SVID:\n-----BEGIN CERTIFICATE-----\n"),
        "{out}"
    );
    assert!(
        out.contains("-----END CERTIFICATE-----\n\nPrivate key:\n-----BEGIN PRIVATE KEY-----\n")
    );
    assert!(out.ends_with(&format!(
        "Root CAs:\n{}\n",
        pem_block("CERTIFICATE", &server.ca_der)
    )));
    assert!(
        io.stderr().is_empty(),
        "no capping warning: {}",
        io.stderr()
    );

    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let (result, io) = run(&server, &json_args, "").await;
    result.unwrap();
    let text = io.stdout();
    assert!(text.starts_with("{\"x509_svid\":[\""), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["private_key"].is_string() && v["root_cas"].is_array());
}

#[tokio::test]
async fn jwt_mint_prints_or_writes_the_token() {
    let server = FakeCaServer::start().await;
    let args = [
        "jwt",
        "mint",
        "--spiffe-id",
        "spiffe://domain.test/w",
        "--audience",
        "a",
    ];
    let (result, io) = run(&server, &args, "").await;
    result.unwrap();
    let token = io.stdout();
    assert!(
        token.starts_with("e30.") && token.ends_with(".c2ln\n"),
        "{token}"
    );

    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("token");
    let mut write = args.to_vec();
    write.extend(["--write", path.to_str().unwrap()]);
    let (result, io) = run(&server, &write, "").await;
    result.unwrap();
    assert_eq!(
        io.stdout(),
        format!("JWT-SVID written to {}\n", path.display())
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token.trim_end());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let (result, _) = run(
        &server,
        &["jwt", "mint", "--spiffe-id", "spiffe://domain.test/w"],
        "",
    )
    .await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "at least one audience must be specified"
    );
}
