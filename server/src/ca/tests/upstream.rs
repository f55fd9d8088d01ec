//! `UpstreamAuthority "disk"`: the server CA as an intermediate under files on disk.

use std::path::PathBuf;

use rcgen::{BasicConstraints, DnType, IsCa, Issuer, KeyUsagePurpose};
use signet_common::clock::from_unix_seconds;

use super::*;
use crate::ca::{CaError, UpstreamDisk};

const H: i64 = 3600;

/// A CA certificate valid until `START + until`, self-signed or signed by `parent`.
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

impl TestCa {
    fn new(cn: &str, parent: Option<&TestCa>, until: i64) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        // Two attributes of one type: the issuer name must still be reproduced exactly.
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "PKI");
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 11]), "Ops");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = ::time::OffsetDateTime::from_unix_timestamp(START - 24 * H).unwrap();
        params.not_after = ::time::OffsetDateTime::from_unix_timestamp(START + until).unwrap();
        let cert = match parent {
            None => params.self_signed(&key).unwrap(),
            Some(p) => {
                params.use_authority_key_identifier_extension = true;
                params
                    .signed_by(&key, &Issuer::from_params(&p.params, &p.key))
                    .unwrap()
            }
        };
        Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            params,
            key,
        }
    }
}

struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        Self {
            cert: p("upstream.crt"),
            key: p("upstream.key"),
            bundle: p("bundle.crt"),
            _dir: dir,
        }
    }

    fn write(&self, cert_pem: &str, key: &KeyPair, bundle_pem: Option<&str>) {
        std::fs::write(&self.cert, cert_pem).unwrap();
        std::fs::write(&self.key, key.serialize_pem()).unwrap();
        if let Some(b) = bundle_pem {
            std::fs::write(&self.bundle, b).unwrap();
        }
    }

    fn config(&self, with_bundle: bool) -> CaConfig {
        let mut cfg = config();
        cfg.upstream = Some(UpstreamDisk {
            cert_file_path: self.cert.clone(),
            key_file_path: self.key.clone(),
            bundle_file_path: with_bundle.then(|| self.bundle.clone()),
        });
        cfg
    }
}

async fn try_ca(fx: &Fixture, cfg: CaConfig) -> Result<Ca, CaError> {
    Ca::new(cfg, fx.clock.clone(), fx.keys.clone(), fx.store.clone()).await
}

#[tokio::test]
async fn self_signed_upstream_signs_the_server_ca() {
    let fx = Fixture::new();
    let files = Files::new();
    let root = TestCa::new("Upstream Root", None, 12 * H);
    files.write(&root.pem, &root.key, None);
    assert!(!files.bundle.exists());
    let ca = try_ca(&fx, files.config(false)).await.unwrap();

    assert_eq!(
        fx.root_ders().await,
        std::slice::from_ref(&root.der),
        "the bundle holds the upstream root"
    );
    let server_ca = ca.active_x509_ca_der().unwrap();
    assert_signed_by(&server_ca, &root.der);
    let cert = parse(&server_ca);
    assert_eq!(
        cert.validity().not_after.timestamp(),
        START + 12 * H,
        "capped at the upstream's NotAfter"
    );
    assert!(cert.basic_constraints().unwrap().unwrap().value.ca);

    let (key, pk) = workload_key();
    let svid = ca
        .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
        .unwrap();
    assert_eq!(svid.chain.len(), 2, "leaf and server CA, never the root");
    assert_eq!(svid.chain[1], server_ca);
    assert_signed_by(&svid.chain[0], &server_ca);
    spiffe::X509Svid::parse_from_der(&svid.chain.concat(), &key.serialize_der()).unwrap();
    assert_eq!(svid.expires_at, START + H);

    let r = ca
        .taint_x509_authority(&ca.active_x509_authority().unwrap().authority_id)
        .await;
    assert!(matches!(r, Err(CaError::Refused(m))
        if m == "local authority can't be tainted if there is an upstream authority"));

    // The upstream that signed the current CA cannot be tainted.
    let upstream_id = ca.active_x509_authority().unwrap().upstream_authority_id;
    assert_eq!(upstream_id.len(), 40, "hex SHA-1 AKI: {upstream_id}");
    let next = ca.prepare_x509_authority().await.unwrap();
    assert_eq!(next.upstream_authority_id, upstream_id);
    let r = ca
        .taint_upstream_authority(&upstream_id.to_uppercase())
        .await;
    assert!(matches!(r, Err(CaError::InvalidRequest(m))
        if m == "provided subject key id is not valid: unable to use upstream authority singing current authority"));
    let r = ca.revoke_upstream_authority("").await;
    assert!(matches!(r, Err(CaError::InvalidRequest(m))
        if m == "invalid subject key ID: no subject key ID provided"));
}

#[tokio::test]
async fn intermediate_upstream_chains_to_the_bundle_file_roots() {
    let fx = Fixture::new();
    let files = Files::new();
    let root = TestCa::new("Root", None, 100 * H);
    let mid = TestCa::new("Intermediate", Some(&root), 100 * H);
    files.write(&mid.pem, &mid.key, Some(&root.pem));
    let ca = try_ca(&fx, files.config(true)).await.unwrap();

    assert_eq!(fx.root_ders().await, std::slice::from_ref(&root.der));
    let server_ca = ca.active_x509_ca_der().unwrap();
    let (key, pk) = workload_key();
    let svid = ca
        .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
        .unwrap();
    assert_eq!(
        svid.chain,
        [svid.chain[0].clone(), server_ca.clone(), mid.der.clone()]
    );
    assert_signed_by(&svid.chain[0], &server_ca);
    assert_signed_by(&server_ca, &mid.der);
    assert_signed_by(&mid.der, &root.der);
    spiffe::X509Svid::parse_from_der(&svid.chain.concat(), &key.serialize_der()).unwrap();
    assert_eq!(
        parse(&server_ca).validity().not_after.timestamp(),
        START + 24 * H
    );

    // Restarting with the same keys resumes the same intermediate and chain.
    let again = try_ca(&fx, files.config(true)).await.unwrap();
    assert_eq!(again.active_x509_ca_der().unwrap(), server_ca);
    let (_, pk) = workload_key();
    let svid2 = again
        .sign_x509_svid(svid_params("spiffe://example.org/w", pk))
        .unwrap();
    assert_eq!(svid2.chain[1..], svid.chain[1..]);
}

#[tokio::test]
async fn unusable_upstream_files_are_refused() {
    let root = TestCa::new("Root", None, 100 * H);
    let other = TestCa::new("Other", None, 100 * H);
    let mid = TestCa::new("Intermediate", Some(&root), 100 * H);
    let cases: [(&str, &str, &KeyPair, Option<&str>); 5] = [
        ("key does not match", &root.pem, &other.key, None),
        ("not self-signed without a bundle", &mid.pem, &mid.key, None),
        (
            "does not chain to the roots",
            &mid.pem,
            &mid.key,
            Some(&other.pem),
        ),
        (
            "two certs without a bundle",
            &format!("{}{}", root.pem, other.pem),
            &root.key,
            None,
        ),
        ("no certificate", "", &root.key, None),
    ];
    for (what, cert, key, bundle) in cases {
        let fx = Fixture::new();
        let files = Files::new();
        files.write(cert, key, bundle);
        let r = try_ca(&fx, files.config(bundle.is_some())).await;
        assert!(matches!(r, Err(CaError::Upstream(_))), "{what}: {r:?}");
    }

    let fx = Fixture::new();
    let files = Files::new();
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.is_ca = IsCa::ExplicitNoCa;
    let key = KeyPair::generate().unwrap();
    let leaf = params.self_signed(&key).unwrap();
    files.write(&leaf.pem(), &key, None);
    assert!(
        matches!(
            try_ca(&fx, files.config(false)).await,
            Err(CaError::Upstream(_))
        ),
        "not a CA"
    );

    let expired = TestCa::new("Expired", None, -H);
    let files = Files::new();
    files.write(&expired.pem, &expired.key, None);
    assert!(
        matches!(
            try_ca(&fx, files.config(false)).await,
            Err(CaError::Upstream(_))
        ),
        "expired"
    );
}

#[tokio::test]
async fn upstream_files_are_reread_for_each_new_ca() {
    let fx = Fixture::new();
    let files = Files::new();
    let first = TestCa::new("First", None, 100 * H);
    files.write(&first.pem, &first.key, None);
    let ca = try_ca(&fx, files.config(false)).await.unwrap();

    let second = TestCa::new("Second", None, 100 * H);
    files.write(&second.pem, &second.key, None);
    fx.clock.set(from_unix_seconds(START + 12 * H));
    assert!(ca.rotate().await.unwrap());
    assert_eq!(
        fx.root_ders().await,
        [first.der.clone(), second.der.clone()],
        "new upstream root published"
    );
    fx.clock.set(from_unix_seconds(START + 20 * H));
    ca.rotate().await.unwrap();
    assert_signed_by(&ca.active_x509_ca_der().unwrap(), &second.der);

    // Broken files: the last good copy is used.
    std::fs::write(&files.cert, "garbage").unwrap();
    fx.clock.set(from_unix_seconds(START + 24 * H));
    ca.rotate().await.unwrap();
    fx.clock.set(from_unix_seconds(START + 32 * H));
    ca.rotate().await.unwrap();
    assert_eq!(
        ca.active_x509_authority().unwrap().expires_at,
        START + 48 * H
    );
    assert_signed_by(&ca.active_x509_ca_der().unwrap(), &second.der);
}

#[tokio::test]
async fn switching_to_an_upstream_replaces_a_self_signed_ca() {
    let dir = tempfile::tempdir().unwrap();
    let keys = crate::keys::disk::DiskKeyManager::open(&dir.path().join("k")).unwrap();
    let fx = Fixture::with_keys(Arc::new(keys));
    let self_signed = fx.ca(config()).await.active_x509_authority().unwrap();
    let files = Files::new();
    let root = TestCa::new("Root", None, 100 * H);
    files.write(&root.pem, &root.key, None);
    let ca = try_ca(&fx, files.config(false)).await.unwrap();
    assert_ne!(ca.active_x509_authority().unwrap(), self_signed);
    assert_signed_by(&ca.active_x509_ca_der().unwrap(), &root.der);
}
