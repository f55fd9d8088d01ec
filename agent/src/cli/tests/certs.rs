//! Fixed-validity test PKI built with rcgen: roots, intermediates and SPIFFE leaves.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, date_time_ymd,
};

/// A day as (year, month, day), midnight UTC.
pub(super) type Day = (i32, u8, u8);

/// A CA certificate and its key.
pub(super) struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub(super) der: Vec<u8>,
}

fn base(cn: &str, from: Day, to: Day) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(to.0, to.1, to.2);
    params
}

fn ca_params(
    td: &str,
    cn: &str,
    from: Day,
    to: Day,
    constraints: BasicConstraints,
) -> CertificateParams {
    let mut params = base(cn, from, to);
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
    params
}

/// A self-signed root for `td`.
pub(super) fn root(td: &str, cn: &str, from: Day, to: Day) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = ca_params(td, cn, from, to, BasicConstraints::Unconstrained);
    let der = params.self_signed(&key).unwrap().der().to_vec();
    Ca { params, key, der }
}

/// An intermediate CA signed by `parent`.
pub(super) fn intermediate(parent: &Ca, td: &str, cn: &str, from: Day, to: Day) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = ca_params(td, cn, from, to, BasicConstraints::Constrained(0));
    let issuer = Issuer::from_params(&parent.params, &parent.key);
    let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
    Ca { params, key, der }
}

/// An X509-SVID for `id` signed by `parent`: (certificate DER, PKCS#8 key DER).
pub(super) fn leaf(parent: &Ca, id: &str, from: Day, to: Day) -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = base("workload", from, to);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_params(&parent.params, &parent.key);
    let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
    (der, key.serialize_der())
}

/// The fixture most tests use: `spiffe://example.org/workload` (hint `internal`) under an
/// intermediate of example.org's root, plus a federated root for other.org. Dates differ
/// per certificate so the output shows which is which; all are valid today.
pub(super) struct Fixture {
    pub(super) leaf: Vec<u8>,
    pub(super) key: Vec<u8>,
    pub(super) intermediate: Vec<u8>,
    pub(super) root: Vec<u8>,
    pub(super) federated_root: Vec<u8>,
}

pub(super) const WORKLOAD_ID: &str = "spiffe://example.org/workload";

pub(super) fn fixture() -> Fixture {
    let root_ca = root("example.org", "example root", (2020, 1, 1), (2100, 1, 1));
    let int_ca = intermediate(
        &root_ca,
        "example.org",
        "example intermediate",
        (2021, 2, 3),
        (2099, 4, 5),
    );
    let (leaf, key) = leaf(&int_ca, WORKLOAD_ID, (2022, 6, 7), (2098, 8, 9));
    let federated = root("other.org", "other root", (2023, 10, 11), (2097, 12, 13));
    Fixture {
        leaf,
        key,
        intermediate: int_ca.der,
        root: root_ca.der,
        federated_root: federated.der,
    }
}

impl Fixture {
    /// The Workload API response carrying this fixture.
    pub(super) fn response(&self) -> signet_proto::workload::X509svidResponse {
        signet_proto::workload::X509svidResponse {
            svids: vec![signet_proto::workload::X509svid {
                spiffe_id: WORKLOAD_ID.into(),
                x509_svid: [self.leaf.clone(), self.intermediate.clone()]
                    .concat()
                    .into(),
                x509_svid_key: self.key.clone().into(),
                bundle: self.root.clone().into(),
                hint: "internal".into(),
            }],
            crl: vec![],
            federated_bundles: [("spiffe://other.org".to_owned(), self.federated_root.clone())]
                .into(),
        }
    }
}

/// The pretty block for [`Fixture::response`], without its first ("Received ...") line.
pub(super) const FIXTURE_BODY: &str = "
SPIFFE ID:\t\tspiffe://example.org/workload
Hint:\t\t\tinternal
SVID Valid After:\t2022-06-07 00:00:00 +0000 UTC
SVID Valid Until:\t2098-08-09 00:00:00 +0000 UTC
Intermediate #1 Valid After:\t2021-02-03 00:00:00 +0000 UTC
Intermediate #1 Valid Until:\t2099-04-05 00:00:00 +0000 UTC
CA #1 Valid After:\t2020-01-01 00:00:00 +0000 UTC
CA #1 Valid Until:\t2100-01-01 00:00:00 +0000 UTC
[spiffe://other.org] CA #1 Valid After:\t2023-10-11 00:00:00 +0000 UTC
[spiffe://other.org] CA #1 Valid Until:\t2097-12-13 00:00:00 +0000 UTC

";
