//! Pretty output, verification and `--write`, on responses built from rcgen certificates.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use signet_proto::workload::{
    JwtBundlesResponse, Jwtsvid, JwtsvidResponse, ValidateJwtsvidResponse,
};

use super::certs::{self, FIXTURE_BODY, WORKLOAD_ID, fixture};
use crate::cli::api::jwt::{pretty_jwt, pretty_validate};
use crate::cli::{write, x509};

/// 2030-01-01, inside every fixture certificate's validity.
const NOW: i64 = 1_893_456_000;

fn printed(resp: &signet_proto::workload::X509svidResponse, elapsed: Duration) -> String {
    let ctx = x509::parse_response(resp).unwrap();
    let mut out = Vec::new();
    x509::print(&mut out, &ctx, elapsed).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn prints_an_svid_like_spire() {
    let got = printed(&fixture().response(), Duration::from_nanos(3_120_512));
    assert_eq!(
        got,
        format!("Received 1 svid after 3.120512ms\n{FIXTURE_BODY}")
    );
}

#[test]
fn counts_several_svids_and_repeats_federated_bundles_per_svid() {
    let f = fixture();
    let mut resp = f.response();
    let mut second = resp.svids[0].clone();
    second.spiffe_id = "spiffe://example.org/other".into();
    second.hint = String::new();
    resp.svids.push(second);
    let got = printed(&resp, Duration::from_secs(1));
    assert!(
        got.starts_with(
            "Received 2 svids after 1s\n\nSPIFFE ID:\t\tspiffe://example.org/workload\n"
        )
    );
    assert!(got.contains("\nSPIFFE ID:\t\tspiffe://example.org/other\nSVID Valid After:"));
    assert_eq!(
        got.matches("[spiffe://other.org] CA #1 Valid After:")
            .count(),
        2
    );
    assert!(got.ends_with("UTC\n\n"));
}

#[test]
fn a_chain_to_its_own_bundle_verifies() {
    let ctx = x509::parse_response(&fixture().response()).unwrap();
    x509::verify(&ctx, NOW).unwrap();
}

#[test]
fn a_chain_to_another_bundle_does_not_verify() {
    let f = fixture();
    let mut resp = f.response();
    resp.svids[0].bundle = f.federated_root.clone().into();
    let ctx = x509::parse_response(&resp).unwrap();
    let err = x509::verify(&ctx, NOW).unwrap_err();
    assert_eq!(
        err.0,
        "\"spiffe://example.org/workload\" SVID failed verification against bundle: x509svid: \
         could not verify leaf certificate: x509: certificate signed by unknown authority"
    );
}

#[test]
fn an_expired_svid_does_not_verify() {
    let ctx = x509::parse_response(&fixture().response()).unwrap();
    let after_leaf = 4_100_000_000; // 2099-12-03, past the leaf and the intermediate
    let err = x509::verify(&ctx, after_leaf).unwrap_err();
    assert!(
        err.0
            .contains("x509: certificate has expired or is not yet valid: current time 2099-12-03"),
        "{err}"
    );
}

#[test]
fn an_svid_from_another_trust_domain_does_not_verify() {
    let f = fixture();
    let other = certs::root("other.org", "r", (2020, 1, 1), (2100, 1, 1));
    let (leaf, key) = certs::leaf(&other, "spiffe://other.org/w", (2020, 1, 1), (2100, 1, 1));
    let mut resp = f.response();
    resp.svids[0].x509_svid = leaf.into();
    resp.svids[0].x509_svid_key = key.into();
    let ctx = x509::parse_response(&resp).unwrap();
    let err = x509::verify(&ctx, NOW).unwrap_err();
    assert!(
        err.0
            .ends_with("no X.509 bundle found for trust domain: \"other.org\""),
        "{err}"
    );
}

#[test]
fn malformed_responses_are_reported_like_spire() {
    let f = fixture();
    let mut resp = f.response();
    resp.svids.clear();
    assert_eq!(
        x509::parse_response(&resp).unwrap_err().0,
        "workload response contains no svids"
    );

    let mut resp = f.response();
    resp.svids[0].x509_svid_key = vec![1, 2, 3].into();
    let err = x509::parse_response(&resp).unwrap_err().0;
    assert!(
        err.starts_with("failed to parse svid entry 0 for spiffe id \"spiffe://example.org/workload\": failed to parse private key"),
        "{err}"
    );

    let mut resp = f.response();
    resp.svids[0].bundle.clear();
    let err = x509::parse_response(&resp).unwrap_err().0;
    assert!(err.ends_with(": no certificates in trust bundle"), "{err}");
}

#[test]
fn write_uses_spire_file_names_and_a_private_key_file() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let ctx = x509::parse_response(&f.response()).unwrap();
    let mut out = Vec::new();
    write::write_files(dir.path(), &ctx, &mut out).unwrap();

    let d = dir.path().display();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "Writing SVID #0 to file {d}/svid.0.pem.\n\
             Writing key #0 to file {d}/svid.0.key.\n\
             Writing bundle #0 to file {d}/bundle.0.pem.\n\
             Writing federated bundle #0 for trust domain spiffe://other.org to file {d}/federated_bundle.0.0.pem.\n"
        )
    );
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bundle.0.pem",
            "federated_bundle.0.0.pem",
            "svid.0.key",
            "svid.0.pem"
        ]
    );

    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("svid.0.key"), 0o600);
    // 0644 less whatever the umask takes away.
    assert_eq!(mode("svid.0.pem") | 0o044, 0o644);

    let certs_in = |name: &str| -> Vec<Vec<u8>> {
        CertificateDer::pem_file_iter(dir.path().join(name))
            .unwrap()
            .map(|c| c.unwrap().to_vec())
            .collect()
    };
    assert_eq!(
        certs_in("svid.0.pem"),
        [f.leaf.clone(), f.intermediate.clone()]
    );
    assert_eq!(certs_in("bundle.0.pem"), vec![f.root.clone()]);
    assert_eq!(
        certs_in("federated_bundle.0.0.pem"),
        vec![f.federated_root.clone()]
    );
    let key = std::fs::read_to_string(dir.path().join("svid.0.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(key.as_bytes()).unwrap();
    assert_eq!(key.secret_pkcs8_der(), f.key.as_slice());
}

#[test]
fn write_replaces_existing_files_and_tightens_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("svid.0.key");
    std::fs::write(&key_path, "old").unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ctx = x509::parse_response(&fixture().response()).unwrap();
    write::write_files(dir.path(), &ctx, &mut Vec::new()).unwrap();
    let meta = std::fs::metadata(&key_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&key_path)
            .unwrap()
            .contains("PRIVATE KEY")
    );
}

#[test]
fn write_into_a_missing_directory_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let ctx = x509::parse_response(&fixture().response()).unwrap();
    let err = write::write_files(&missing, &ctx, &mut Vec::new()).unwrap_err();
    assert!(
        err.0
            .starts_with(&format!("open {}/svid.0.pem: ", missing.display())),
        "{err}"
    );
    assert!(!err.0.contains('\n'));
}

#[test]
fn jwt_pretty_output_matches_spire() {
    let svids = JwtsvidResponse {
        svids: vec![Jwtsvid {
            spiffe_id: WORKLOAD_ID.into(),
            svid: "aaa.bbb.ccc".into(),
            hint: "h".into(),
        }],
    };
    let bundles = JwtBundlesResponse {
        bundles: [
            ("spiffe://z.org".to_owned(), b"{\"keys\":[]}".to_vec()),
            (
                "spiffe://example.org".to_owned(),
                b"{\"keys\":[1]}".to_vec(),
            ),
        ]
        .into(),
    };
    assert_eq!(
        pretty_jwt(&svids, &bundles),
        "token(spiffe://example.org/workload):\n\taaa.bbb.ccc\n\
         hint(spiffe://example.org/workload):\n\th\n\
         bundle(spiffe://example.org):\n\t{\"keys\":[1]}\n\
         bundle(spiffe://z.org):\n\t{\"keys\":[]}\n"
    );
}

#[test]
fn validate_pretty_output_matches_spire() {
    let resp = ValidateJwtsvidResponse {
        spiffe_id: WORKLOAD_ID.into(),
        claims: Some(prost_types::Struct {
            fields: [
                (
                    "sub".to_owned(),
                    prost_types::Value::from(WORKLOAD_ID.to_owned()),
                ),
                ("exp".to_owned(), prost_types::Value::from(1_900_000_000.0)),
            ]
            .into(),
        }),
    };
    assert_eq!(
        pretty_validate(&resp),
        "SVID is valid.\nSPIFFE ID : spiffe://example.org/workload\n\
         Claims    : {\"exp\":1900000000,\"sub\":\"spiffe://example.org/workload\"}\n"
    );
}
