//! Certificate templates (SPIRE's `credtemplate` profile for CA certificates and X509-SVIDs),
//! CSR checks, and the small crypto helpers both need.

use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use signet_common::clock::unix_seconds;
use signet_common::id::TrustDomain;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::ca::error::CaError;
use crate::ca::params::{CaSubject, CsrPublicKey};

const OID_COUNTRY: &[u64] = &[2, 5, 4, 6];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];
const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];

/// Checks a PKCS#10 CSR's self-signature and returns its SubjectPublicKeyInfo.
pub(super) fn verify_csr(csr_der: &[u8]) -> Result<CsrPublicKey, CaError> {
    let (rest, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| CaError::MalformedCsr(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(CaError::MalformedCsr(
            "trailing bytes after the request".into(),
        ));
    }
    check_key_strength(&csr)?;
    signet_common::sigcheck::verify_csr(&csr)
        .map_err(|e| CaError::MalformedCsr(format!("signature does not verify: {e}")))?;
    Ok(CsrPublicKey {
        spki_der: csr.certification_request_info.subject_pki.raw.to_vec(),
    })
}

/// The smallest RSA modulus accepted in a CSR (NIST SP 800-57, and what Go's crypto refuses
/// below for new keys).
const MIN_RSA_BITS: usize = 2048;

/// Refuses a CSR whose RSA key is too short, before its signature is checked, so that the
/// caller learns the real reason.
fn check_key_strength(csr: &X509CertificationRequest<'_>) -> Result<(), CaError> {
    use x509_parser::public_key::PublicKey;
    if let Ok(PublicKey::RSA(rsa)) = csr.certification_request_info.subject_pki.parsed() {
        let bits = rsa.key_size();
        if bits < MIN_RSA_BITS {
            return Err(CaError::MalformedCsr(format!(
                "RSA key of {bits} bits is too weak: at least {MIN_RSA_BITS} bits are required"
            )));
        }
    }
    Ok(())
}

/// A random certificate serial in `[1, 2^128 - 1]`.
pub(super) fn random_serial() -> Result<u128, CaError> {
    loop {
        let mut b = [0u8; 16];
        aws_lc_rs::rand::fill(&mut b).map_err(|_| CaError::Signing("no randomness".into()))?;
        let serial = u128::from_be_bytes(b);
        if serial != 0 {
            return Ok(serial);
        }
    }
}

/// The rcgen form of a serial (big-endian, no leading zeros).
pub(super) fn serial_number(serial: u128) -> SerialNumber {
    let bytes = serial.to_be_bytes();
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    SerialNumber::from_slice(&bytes[first..])
}

/// SHA-1 of the subjectPublicKey bits (RFC 5280 method 1), for SKI and AKI.
pub(super) fn key_id(public_key_bits: &[u8]) -> Vec<u8> {
    use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
    digest(&SHA1_FOR_LEGACY_USE_ONLY, public_key_bits)
        .as_ref()
        .to_vec()
}

/// Lower-case hex.
pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An rcgen time at whole-second precision.
pub(super) fn to_offset(t: SystemTime) -> Result<::time::OffsetDateTime, CaError> {
    ::time::OffsetDateTime::from_unix_timestamp(unix_seconds(t))
        .map_err(|e| CaError::Signing(format!("time out of range: {e}")))
}

/// What a CA certificate (self-signed or under an upstream) is built from.
pub(super) struct CaTemplate<'a> {
    pub(super) trust_domain: &'a TrustDomain,
    pub(super) subject: &'a CaSubject,
    pub(super) serial: u128,
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    /// SKI of the CA key.
    pub(super) ski: Vec<u8>,
    /// Whether to write an AKI (from the issuer's key identifier).
    pub(super) with_aki: bool,
}

/// SPIRE's CA profile: URI SAN `spiffe://<td>`, the configured subject plus
/// `serialNumber`, keyCertSign + cRLSign, CA:true, SKI = SHA-1 of the key.
pub(super) fn ca_params(t: &CaTemplate<'_>) -> Result<CertificateParams, CaError> {
    let mut dn = DnBuilder::default();
    for c in &t.subject.country {
        dn.push(OID_COUNTRY, printable_or_utf8(c))?;
    }
    for o in &t.subject.organization {
        dn.push(OID_ORGANIZATION, printable_or_utf8(o))?;
    }
    if !t.subject.common_name.is_empty() {
        dn.push(OID_COMMON_NAME, printable_or_utf8(&t.subject.common_name))?;
    }
    dn.push(OID_SERIAL_NUMBER, printable_or_utf8(&t.serial.to_string()))?;

    let mut params = CertificateParams::default();
    params.distinguished_name = dn.0;
    params.subject_alt_names = vec![uri_san(&t.trust_domain.id_string())?];
    params.serial_number = Some(serial_number(t.serial));
    params.not_before = to_offset(t.not_before)?;
    params.not_after = to_offset(t.not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.key_identifier_method = KeyIdMethod::PreSpecified(t.ski.clone());
    params.use_authority_key_identifier_extension = t.with_aki;
    Ok(params)
}

/// What an X509-SVID is built from (already validated).
pub(super) struct SvidTemplate<'a> {
    pub(super) spiffe_id: &'a str,
    pub(super) dns_names: &'a [String],
    pub(super) serial: u128,
    pub(super) not_before: SystemTime,
    pub(super) not_after: SystemTime,
    pub(super) ski: Vec<u8>,
}

/// SPIRE's X509-SVID profile: one URI SAN, DNS SANs (the first also the CN), subject
/// `C=US, O=SPIRE`, digitalSignature + keyEncipherment + keyAgreement, serverAuth +
/// clientAuth, CA:false present, SKI, and AKI = the issuer's SKI.
pub(super) fn svid_params(t: &SvidTemplate<'_>) -> Result<CertificateParams, CaError> {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, printable_or_utf8("US"));
    dn.push(DnType::OrganizationName, printable_or_utf8("SPIRE"));
    if let Some(first) = t.dns_names.first() {
        dn.push(DnType::CommonName, printable_or_utf8(first));
    }
    let mut sans = vec![uri_san(t.spiffe_id)?];
    for name in t.dns_names {
        let ia5 = name
            .as_str()
            .try_into()
            .map_err(|_| CaError::InvalidRequest(format!("invalid DNS name {name:?}")))?;
        sans.push(SanType::DnsName(ia5));
    }

    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.serial_number = Some(serial_number(t.serial));
    params.not_before = to_offset(t.not_before)?;
    params.not_after = to_offset(t.not_after)?;
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
    params.key_identifier_method = KeyIdMethod::PreSpecified(t.ski.clone());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn uri_san(uri: &str) -> Result<SanType, CaError> {
    uri.try_into()
        .map(SanType::URI)
        .map_err(|_| CaError::InvalidRequest(format!("invalid URI SAN {uri:?}")))
}

fn printable_or_utf8(s: &str) -> DnValue {
    match rcgen::string::PrintableString::try_from(s) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(s.to_owned()),
    }
}

/// Parses a DER certificate, refusing trailing bytes.
pub(super) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".into()),
        Err(e) => Err(format!("invalid certificate: {e}")),
    }
}

/// The hex subject key ID of a certificate (SHA-1 of its key when it has no SKI extension):
/// an X.509 authority ID.
pub fn subject_key_id_hex(der: &[u8]) -> Option<String> {
    let cert = parse_cert(der).ok()?;
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    Some(hex(&ski.unwrap_or_else(|| {
        key_id(&cert.public_key().subject_public_key.data)
    })))
}

/// The hex authority key ID of a certificate, empty when it has none: for a CA under an
/// upstream authority, the ID of the upstream certificate that signed it.
pub(super) fn authority_key_id_hex(der: &[u8]) -> String {
    parse_cert(der)
        .ok()
        .and_then(|cert| {
            cert.extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::AuthorityKeyIdentifier(k) => {
                        k.key_identifier.as_ref().map(|id| hex(id.0))
                    }
                    _ => None,
                })
        })
        .unwrap_or_default()
}

/// The signer for certificates issued under the CA certificate `ca_der` with `key`: its
/// subject re-encoded attribute for attribute (so leaves name their issuer byte for byte),
/// its SKI as the AKI of what it signs (SHA-1 of its key when it has none), its key usages.
pub(super) fn issuer_for(ca_der: &[u8], key: KeyPair) -> Result<Issuer<'static, KeyPair>, String> {
    let cert = parse_cert(ca_der)?;
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap_or_else(|| key_id(&cert.public_key().subject_public_key.data));
    let mut params = CertificateParams::default();
    params.distinguished_name = dn_from_name(cert.subject())?;
    params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(Issuer::new(params, key))
}

/// rcgen's `DistinguishedName` keys attributes by type, so a second value of the same type
/// goes in under the equivalent custom type (same OID on the wire). A third is refused.
#[derive(Default)]
struct DnBuilder(DistinguishedName);

impl DnBuilder {
    fn push(&mut self, oid: &[u64], value: DnValue) -> Result<(), CaError> {
        let named = DnType::from_oid(oid);
        let custom = DnType::CustomDnType(oid.to_vec());
        for ty in [named, custom] {
            if self.0.get(&ty).is_none() {
                self.0.push(ty, value);
                return Ok(());
            }
        }
        Err(CaError::Signing(format!(
            "more than two subject attributes of type {oid:?}"
        )))
    }
}

fn dn_from_name(name: &X509Name<'_>) -> Result<DistinguishedName, String> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut dn = DnBuilder::default();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err("subject has an empty or multi-valued RDN".into());
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("subject attribute OID too large")?
            .collect();
        let data = attr.attr_value().data;
        let text =
            || std::str::from_utf8(data).map_err(|_| "subject attribute is not text".to_string());
        let bad = |e: rcgen::Error| format!("subject attribute: {e}");
        let value = match attr.attr_value().header.tag() {
            Tag::PrintableString => DnValue::PrintableString(text()?.try_into().map_err(bad)?),
            Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into().map_err(bad)?),
            Tag::T61String => DnValue::TeletexString(text()?.try_into().map_err(bad)?),
            Tag::BmpString => DnValue::BmpString(
                rcgen::string::BmpString::from_utf16be(data.to_vec()).map_err(bad)?,
            ),
            Tag::UniversalString => DnValue::UniversalString(
                rcgen::string::UniversalString::from_utf32be(data.to_vec()).map_err(bad)?,
            ),
            other => return Err(format!("unsupported subject string type {other}")),
        };
        dn.push(&oid, value).map_err(|e| e.to_string())?;
    }
    Ok(dn.0)
}
