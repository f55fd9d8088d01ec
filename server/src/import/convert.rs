//! SPIRE's rows turned into Signet's records, every field carried over, every value checked
//! as Signet's API would check it. Nothing is written here.

use std::collections::BTreeMap;
use std::time::SystemTime;

use prost::Message as _;
use signet_common::bundle::{Bundle, JwtKey, X509Authority};
use signet_common::entry::RegistrationEntry;
use signet_common::id::{TrustDomain, parse_id, parse_trust_domain};
use signet_common::node::AttestedNode;
use signet_common::selector::{Selector, SelectorSet};

use crate::ca::{AuthorityStatus, ImportedJournal, ImportedJwt, ImportedX509, Slot};
use crate::datastore::JoinToken;
use crate::import::error::ImportError;
use crate::import::proto;
use crate::import::source::{JournalRow, SpireRows};
use crate::keys::ManagedKey;

/// Registration entries, with their selectors, DNS names and federated trust domains.
pub(super) fn entries(rows: &SpireRows) -> Result<Vec<RegistrationEntry>, ImportError> {
    let bundle_td: BTreeMap<i64, &str> = rows
        .bundles
        .iter()
        .map(|(pk, td, _)| (*pk, td.as_str()))
        .collect();
    let mut selectors: BTreeMap<i64, SelectorSet> = BTreeMap::new();
    for (pk, kind, value) in &rows.selectors {
        let s = Selector::new(kind.as_str(), value.as_str())
            .map_err(|e| ImportError::data(format!("selector {kind}:{value}"), e))?;
        selectors.entry(*pk).or_default().insert(s);
    }
    let mut dns: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (pk, name) in &rows.dns_names {
        dns.entry(*pk).or_default().push(name.clone());
    }
    let mut federates: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (bundle_pk, entry_pk) in &rows.federates_with {
        let td = bundle_td.get(bundle_pk).ok_or_else(|| {
            ImportError::data(
                "federated_registration_entries",
                format!("bundle {bundle_pk} does not exist"),
            )
        })?;
        let td = parse_trust_domain(td).map_err(|e| ImportError::data("bundle", e))?;
        federates.entry(*entry_pk).or_default().push(td.to_string());
    }
    rows.entries
        .iter()
        .map(|r| {
            let what = || format!("registration entry {}", r.entry_id);
            let id = |s: &str, field: &str| {
                parse_id(s).map_err(|e| ImportError::data(what(), format!("{field}: {e}")))
            };
            let ttl = |v: i64, field: &str| {
                i32::try_from(v)
                    .map_err(|_| ImportError::data(what(), format!("{field} {v} out of range")))
            };
            let mut federates_with = federates.remove(&r.pk).unwrap_or_default();
            federates_with.sort();
            Ok(RegistrationEntry {
                id: r.entry_id.clone(),
                spiffe_id: id(&r.spiffe_id, "spiffe_id")?,
                parent_id: id(&r.parent_id, "parent_id")?,
                selectors: selectors.remove(&r.pk).unwrap_or_default(),
                x509_svid_ttl: ttl(r.ttl, "ttl")?,
                jwt_svid_ttl: ttl(r.jwt_svid_ttl, "jwt_svid_ttl")?,
                dns_names: dns.remove(&r.pk).unwrap_or_default(),
                federates_with,
                admin: r.admin,
                downstream: r.downstream,
                hint: r.hint.clone(),
                expires_at: r.expiry,
                revision_number: r.revision_number,
                created_at: r.created_at,
                store_svid: r.store_svid,
            })
        })
        .collect()
}

/// Attested agents, with their node selectors; serials turned from SPIRE's decimal into
/// Signet's lower-case hex, so the agents' current certificates keep authenticating.
pub(super) fn nodes(rows: &SpireRows) -> Result<Vec<AttestedNode>, ImportError> {
    let mut selectors: BTreeMap<&str, Vec<Selector>> = BTreeMap::new();
    for (id, kind, value) in &rows.node_selectors {
        let s = Selector::new(kind.as_str(), value.as_str())
            .map_err(|e| ImportError::data(format!("node selector of {id}"), e))?;
        let list = selectors.entry(id.as_str()).or_default();
        if !list.contains(&s) {
            list.push(s);
        }
    }
    rows.nodes
        .iter()
        .map(|n| {
            let what = || format!("agent {}", n.spiffe_id);
            let spiffe_id = parse_id(&n.spiffe_id).map_err(|e| ImportError::data(what(), e))?;
            let hex = |s: &str| decimal_to_hex(s).map_err(|e| ImportError::data(what(), e));
            Ok(AttestedNode {
                spiffe_id,
                attestation_type: n.data_type.clone(),
                serial: hex(&n.serial_number)?,
                expires_at: n.expires_at,
                new_serial: hex(&n.new_serial_number)?,
                new_expires_at: n.new_expires_at.unwrap_or(0),
                can_reattest: n.can_reattest,
                selectors: selectors.remove(n.spiffe_id.as_str()).unwrap_or_default(),
                agent_version: String::new(),
            })
        })
        .collect()
}

/// Join tokens, unexpired or not (the server prunes expired ones as SPIRE does).
pub(super) fn join_tokens(rows: &SpireRows) -> Vec<JoinToken> {
    rows.join_tokens
        .iter()
        .map(|(token, expiry)| JoinToken {
            token: token.clone(),
            expires_at: *expiry,
        })
        .collect()
}

/// The bundles: the server's own (first) and every federated one.
pub(super) fn bundles(
    rows: &SpireRows,
    own: &TrustDomain,
) -> Result<(Bundle, Vec<Bundle>), ImportError> {
    let mut own_bundle = None;
    let mut federated = Vec::new();
    for (_, td, data) in &rows.bundles {
        let what = || format!("bundle {td}");
        let trust_domain = parse_trust_domain(td).map_err(|e| ImportError::data(what(), e))?;
        let b = proto::Bundle::decode(data.as_slice())
            .map_err(|e| ImportError::data(what(), format!("undecodable data: {e}")))?;
        let bundle = Bundle {
            trust_domain: trust_domain.clone(),
            x509_authorities: b
                .root_cas
                .into_iter()
                .map(|c| X509Authority {
                    der: c.der_bytes,
                    tainted: c.tainted_key,
                })
                .collect(),
            jwt_authorities: b
                .jwt_signing_keys
                .into_iter()
                .map(|k| JwtKey {
                    public_key: k.pkix_bytes,
                    key_id: k.kid,
                    expires_at: k.not_after,
                    tainted: k.tainted_key,
                })
                .collect(),
            refresh_hint: b.refresh_hint,
            sequence_number: b.sequence_number,
        };
        if &trust_domain == own {
            own_bundle = Some(bundle);
        } else {
            federated.push(bundle);
        }
    }
    let own_bundle = own_bundle.ok_or_else(|| {
        ImportError::data(
            "bundles",
            format!("no bundle for the server's trust domain {own} (is server.trust_domain the one SPIRE ran with?)"),
        )
    })?;
    Ok((own_bundle, federated))
}

/// The journal row turned into Signet's journal, checked against the keys.
pub(super) fn journal(
    row: &JournalRow,
    own: &TrustDomain,
    bundle: &Bundle,
    keys: &[ManagedKey],
    now: SystemTime,
) -> Result<ImportedJournal, ImportError> {
    let entries = proto::Entries::decode(row.data.as_slice())
        .map_err(|e| ImportError::data("CA journal", format!("undecodable data: {e}")))?;
    let x509 = entries
        .x509_cas
        .into_iter()
        .map(|e| {
            Ok(ImportedX509 {
                slot: slot(&e.slot_id)?,
                status: status(e.status),
                cert: e.certificate,
                upstream_chain: e.upstream_chain,
                issued_at: e.issued_at,
                not_after: e.not_after,
            })
        })
        .collect::<Result<Vec<_>, ImportError>>()?;
    let jwt = entries
        .jwt_keys
        .into_iter()
        .map(|e| {
            Ok(ImportedJwt {
                slot: slot(&e.slot_id)?,
                status: status(e.status),
                kid: e.kid,
                public_key: e.public_key,
                issued_at: e.issued_at,
                not_after: e.not_after,
            })
        })
        .collect::<Result<Vec<_>, ImportError>>()?;
    let roots: Vec<Vec<u8>> = bundle
        .x509_authorities
        .iter()
        .map(|a| a.der.clone())
        .collect();
    crate::ca::import_journal(own, x509, jwt, &roots, keys, now)
        .map_err(|e| ImportError::data("CA journal", e))
}

fn slot(id: &str) -> Result<Slot, ImportError> {
    match id {
        "A" => Ok(Slot::A),
        "B" => Ok(Slot::B),
        other => Err(ImportError::data(
            "CA journal",
            format!("unknown slot {other:?}"),
        )),
    }
}

fn status(s: i32) -> AuthorityStatus {
    match s {
        proto::STATUS_PREPARED => AuthorityStatus::Prepared,
        proto::STATUS_ACTIVE => AuthorityStatus::Active,
        _ => AuthorityStatus::Old,
    }
}

/// SPIRE's decimal serial (`big.Int` text) as lower-case hex without leading zeros; "" stays
/// "" (a banned agent).
pub(super) fn decimal_to_hex(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 100 {
        return Err(format!("serial number {s:?} is not a decimal number"));
    }
    // Big-endian base-256 digits, multiplied by 10 and added to, digit by digit.
    let mut bytes: Vec<u8> = vec![0];
    for d in s.bytes().map(|b| b - b'0') {
        let mut carry = u32::from(d);
        for b in bytes.iter_mut().rev() {
            let v = u32::from(*b) * 10 + carry;
            *b = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    Ok(signet_common::x509::serial_hex(&bytes))
}
