//! A journal built from another server's authorities (`signet-server import spire`): the
//! imported CAs and JWT keys go into the same A/B slots under the same key IDs, so the
//! server started on the result resumes them instead of minting new ones.

use std::time::SystemTime;

use signet_common::id::TrustDomain;

use crate::ca::authority::{self, jwt_key_id, x509_key_id};
use crate::ca::error::CaError;
use crate::ca::journal::{Journal, JwtEntry, Slot, Status, X509Entry};
use crate::ca::template::{hex, key_id};
use crate::keys::ManagedKey;

/// An X.509 CA taken from another server's journal.
#[derive(Debug, Clone)]
pub struct ImportedX509 {
    /// Its slot; its key is `x509-CA-<slot>`.
    pub slot: Slot,
    /// Where it is in its life.
    pub status: Status,
    /// The CA certificate, DER.
    pub cert: Vec<u8>,
    /// Upstream intermediates that follow it in SVID chains (empty when self-signed).
    pub upstream_chain: Vec<Vec<u8>>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// A JWT signing key taken from another server's journal.
#[derive(Debug, Clone)]
pub struct ImportedJwt {
    /// Its slot; its key is `JWT-Signer-<slot>`.
    pub slot: Slot,
    /// Where it is in its life.
    pub status: Status,
    /// The `kid` its tokens carry.
    pub kid: String,
    /// The public key, SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub not_after: i64,
}

/// The journal to store, and what it will resume.
#[derive(Debug, Clone)]
pub struct ImportedJournal {
    /// The journal bytes, for `DataStore::set_ca_journal` under `CaConfig::journal_key`.
    pub bytes: Vec<u8>,
    /// Authority ID (hex SKI) of the active X.509 CA.
    pub x509_authority_id: String,
    /// `kid` of the active JWT key.
    pub jwt_kid: String,
    /// X.509 CAs journaled (all statuses).
    pub x509_count: usize,
    /// JWT keys journaled (all statuses).
    pub jwt_count: usize,
}

/// The authority ID (lower-case hex SKI, RFC 5280 method 1) of a PKCS#8 key, as the journal
/// of the server holding it names its X.509 CA; `None` if Signet cannot use the key.
pub fn authority_id_of_key(key: &ManagedKey) -> Option<String> {
    let pair = authority::key_pair(key).ok()?;
    Some(hex(&key_id(pair.public_key_raw())))
}

/// Builds the journal for `trust_domain` from imported authorities (oldest first). Every
/// PREPARED or ACTIVE one is checked against its key in `keys` exactly as a restart checks
/// its own journal (key matches, unexpired at `now`, certificate for the trust domain);
/// an ACTIVE X.509 CA and an ACTIVE JWT key are required. `upstream_roots` are the roots an
/// upstream-signed CA chains to (ignored for self-signed CAs).
pub fn import_journal(
    trust_domain: &TrustDomain,
    x509: Vec<ImportedX509>,
    jwt: Vec<ImportedJwt>,
    upstream_roots: &[Vec<u8>],
    keys: &[ManagedKey],
    now: SystemTime,
) -> Result<ImportedJournal, CaError> {
    let key = |id: &str| keys.iter().find(|k| k.id == id);
    let mut journal = Journal::default();
    let mut active_x509 = None;
    for a in x509 {
        let key_id = x509_key_id(a.slot);
        let self_signed = is_self_signed(&a.cert)?;
        let mut entry = X509Entry {
            slot: a.slot,
            key_id,
            status: a.status,
            authority_id: String::new(),
            cert: a.cert,
            upstream_chain: a.upstream_chain,
            upstream_roots: if self_signed {
                vec![]
            } else {
                upstream_roots.to_vec()
            },
            issued_at: a.issued_at,
            not_after: a.not_after,
        };
        entry.authority_id = cert_authority_id(&entry.cert)?;
        if entry.status != Status::Old {
            let what = format!("X.509 CA {} (slot {})", entry.authority_id, a.slot.letter());
            let k = key(&entry.key_id).ok_or_else(|| {
                CaError::InvalidRequest(format!("{what}: key {} is missing", entry.key_id))
            })?;
            let ca = authority::x509_from_entry(trust_domain, !self_signed, &entry, k, now)
                .map_err(|e| CaError::InvalidRequest(format!("{what}: {e}")))?;
            if entry.status == Status::Active {
                active_x509 = Some(ca.authority_id);
            }
        }
        journal.push_x509(entry);
    }
    let mut active_jwt = None;
    for a in jwt {
        let entry = JwtEntry {
            slot: a.slot,
            key_id: jwt_key_id(a.slot),
            status: a.status,
            kid: a.kid,
            public_key: a.public_key,
            issued_at: a.issued_at,
            not_after: a.not_after,
        };
        if entry.status != Status::Old {
            let what = format!("JWT key {} (slot {})", entry.kid, a.slot.letter());
            let k = key(&entry.key_id).ok_or_else(|| {
                CaError::InvalidRequest(format!("{what}: key {} is missing", entry.key_id))
            })?;
            authority::jwt_from_entry(&entry, k, now)
                .map_err(|e| CaError::InvalidRequest(format!("{what}: {e}")))?;
            if entry.status == Status::Active {
                active_jwt = Some(entry.kid.clone());
            }
        }
        journal.push_jwt(entry);
    }
    let x509_authority_id = active_x509
        .ok_or_else(|| CaError::InvalidRequest("no active X.509 CA to import".into()))?;
    let jwt_kid =
        active_jwt.ok_or_else(|| CaError::InvalidRequest("no active JWT key to import".into()))?;
    Ok(ImportedJournal {
        bytes: journal.encode()?,
        x509_authority_id,
        jwt_kid,
        x509_count: journal.x509.len(),
        jwt_count: journal.jwt.len(),
    })
}

fn is_self_signed(der: &[u8]) -> Result<bool, CaError> {
    let cert = crate::ca::template::parse_cert(der).map_err(CaError::InvalidRequest)?;
    Ok(cert.subject().as_raw() == cert.issuer().as_raw())
}

fn cert_authority_id(der: &[u8]) -> Result<String, CaError> {
    use x509_parser::extensions::ParsedExtension;
    let cert = crate::ca::template::parse_cert(der).map_err(CaError::InvalidRequest)?;
    let ski = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap_or_else(|| key_id(&cert.public_key().subject_public_key.data));
    Ok(hex(&ski))
}
