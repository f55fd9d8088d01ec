//! The trust side of the checklist: the own bundle (present, unexpired, the server's), and
//! whether the workload receives the bundle that verifies its peer's SVID (the own trust
//! domain's, or a federated one).

use std::collections::BTreeSet;
use std::sync::Arc;

use signet_common::bundle::Bundle;
use signet_common::doctor::Report;
use signet_common::entry::RegistrationEntry;
use signet_common::id::parse_id;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::manager::Snapshot;

/// Reports the own trust bundle, compared with the server's when it answered.
pub(super) fn bundle(r: &mut Report, snapshot: &Snapshot, server: Option<&Bundle>, now: i64) {
    const NAME: &str = "trust bundle";
    let td = &snapshot.trust_domain;
    let roots = &snapshot.bundle.x509_authorities;
    if roots.is_empty() {
        r.fail(
            NAME,
            format!("the agent holds no X.509 roots for {td}"),
            "let the agent complete a sync with the server (see the server connection check)",
        );
        return;
    }
    let expired = roots.iter().filter(|a| not_after(&a.der) <= now).count();
    if expired == roots.len() {
        r.fail(
            NAME,
            format!("every X.509 root of {td} has expired"),
            "check the server's CA (signet-server doctor) and let the agent sync its new bundle",
        );
        return;
    }
    let held: BTreeSet<&[u8]> = roots.iter().map(|a| a.der.as_slice()).collect();
    let summary = format!(
        "{} X.509 root{} for {td} (sequence {})",
        roots.len(),
        if roots.len() == 1 { "" } else { "s" },
        snapshot.bundle.sequence_number
    );
    match server {
        Some(s) => {
            let theirs: BTreeSet<&[u8]> = s
                .x509_authorities
                .iter()
                .map(|a| a.der.as_slice())
                .collect();
            if theirs == held {
                r.pass(NAME, format!("{summary}, the same as the server's"));
            } else {
                r.warn(
                    NAME,
                    format!(
                        "{summary} differ from the server's {} (sequence {})",
                        theirs.len(),
                        s.sequence_number
                    ),
                    "wait one sync interval; if it persists, read the agent log for sync errors",
                );
            }
        }
        None => r.warn(
            NAME,
            format!("{summary}; not compared with the server's (unreachable)"),
            "fix the server connection, then run doctor again",
        ),
    }
    if expired > 0 {
        r.warn(
            NAME,
            format!("{expired} of the X.509 roots of {td} have expired"),
            "nothing to do unless it persists: the server drops expired roots from the bundle",
        );
    }
}

/// Reports whether the workload gets the bundle of `peer`'s trust domain.
pub(super) fn peer(
    r: &mut Report,
    snapshot: &Snapshot,
    entries: &[Arc<RegistrationEntry>],
    peer: &str,
) {
    const NAME: &str = "peer trust";
    let id = match parse_id(peer) {
        Ok(id) => id,
        Err(error) => {
            r.fail(
                NAME,
                format!("--peer: {error}"),
                "pass the peer's SPIFFE ID, such as spiffe://example.org/backend",
            );
            return;
        }
    };
    let td = id.trust_domain_name();
    if td == snapshot.trust_domain.as_str() {
        let n = snapshot.bundle.x509_authorities.len();
        if n == 0 {
            r.fail(
                NAME,
                format!("{peer} is in the own trust domain {td}, whose bundle the agent lacks"),
                "let the agent complete a sync with the server",
            );
        } else {
            r.pass(
                NAME,
                format!("{peer} is in the own trust domain {td}: the workload gets its bundle ({n} X.509 root{})", if n == 1 { "" } else { "s" }),
            );
        }
        return;
    }
    let federates = entries
        .iter()
        .any(|e| e.federates_with.iter().any(|f| f == td));
    let bundle = snapshot.federated.iter().find(|(k, _)| k.as_str() == td);
    let add_federates = format!(
        "add -federatesWith spiffe://{td} to the workload's entry (signet-server entry update)"
    );
    match (bundle, federates) {
        (Some((_, b)), true) => r.pass(
            NAME,
            format!(
                "{peer}: the workload gets the federated bundle of {td} ({} X.509 roots)",
                b.x509_authorities.len()
            ),
        ),
        (Some(_), false) => r.fail(
            NAME,
            format!("the agent holds the bundle of {td}, but the workload's entries do not federate with it"),
            add_federates,
        ),
        (None, true) => r.fail(
            NAME,
            format!("the workload's entries federate with {td}, but the server has no bundle for it"),
            format!("give the server {td}'s bundle: signet-server federation create (or bundle set -id spiffe://{td})"),
        ),
        (None, false) => r.fail(
            NAME,
            format!("no federated bundle for trust domain {td}: {peer}'s SVID cannot be verified"),
            format!(
                "federate with {td} (signet-server federation create, or bundle set -id spiffe://{td}) and {add_federates}"
            ),
        ),
    }
}

fn not_after(der: &[u8]) -> i64 {
    X509Certificate::from_der(der).map_or(i64::MIN, |(_, c)| c.validity().not_after.timestamp())
}
