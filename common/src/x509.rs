//! Reading what Signet needs from X.509 certificates: the SPIFFE ID, serial and validity.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::id::{self, SpiffeId};

/// What Signet needs from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Its SPIFFE ID (the only URI SAN).
    pub id: SpiffeId,
    /// Serial, lower-case hex without leading zeros.
    pub serial: String,
    /// NotBefore, Unix seconds.
    pub not_before: i64,
    /// NotAfter, Unix seconds.
    pub not_after: i64,
}

/// Reads the SPIFFE ID, serial and validity of a DER certificate; `None` unless it parses
/// and has exactly one URI SAN that is a valid SPIFFE ID.
pub fn cert_info(der: &[u8]) -> Option<CertInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let uri = uris.next()?;
    if uris.next().is_some() {
        return None;
    }
    Some(CertInfo {
        id: id::parse_id(uri).ok()?,
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The SPIFFE ID of a DER certificate, if it has exactly one valid one.
pub fn spiffe_id_of_cert(der: &[u8]) -> Option<SpiffeId> {
    cert_info(der).map(|i| i.id)
}

/// Big-endian serial bytes → lower-case hex without leading zeros (SPIRE's form).
pub fn serial_hex(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

/// Splits a buffer of concatenated DER certificates (the Workload API's form).
pub fn split_der_chain(mut buf: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = vec![];
    while !buf.is_empty() {
        let (rest, _) = X509Certificate::from_der(buf).ok()?;
        let used = buf.len() - rest.len();
        out.push(buf[..used].to_vec());
        buf = rest;
    }
    Some(out)
}
