//! The workload's side of the checklist: which selectors it gets, which entries match (or
//! the nearest entry and the selectors it lacks), and the SVIDs the agent holds for them.

use std::sync::Arc;

use signet_common::doctor::{Report, seconds};
use signet_common::entry::RegistrationEntry;
use signet_common::selector::{Selector, SelectorSet};

use super::{Doctor, DoctorRequest};
use crate::attestor::workload::Peer;
use crate::manager::{Manager, Snapshot};
use crate::peer::start_time;

const SELECTORS: &str = "workload selectors";
const ENTRIES: &str = "matching entries";

/// Reports the workload's selectors and matching entries; returns the entries.
pub(super) async fn entries(
    r: &mut Report,
    doctor: &Doctor,
    req: &DoctorRequest,
    caller: Option<&Peer>,
    snapshot: &Snapshot,
    agent_id: &str,
) -> Vec<Arc<RegistrationEntry>> {
    if let Some(id) = &req.spiffe_id {
        return by_spiffe_id(r, snapshot, id, agent_id);
    }
    let (who, selectors) = match (req.pid, req.uid) {
        (Some(pid), _) => {
            let Some(started) = start_time(pid) else {
                r.fail(
                    SELECTORS,
                    format!("process {pid} does not exist"),
                    "pass the PID of the running workload (--pid), or its --uid or --spiffe-id",
                );
                return vec![];
            };
            let peer = Peer {
                pid,
                uid: 0,
                gid: 0,
                pidfd: None,
                start_time: Some(started),
            };
            match doctor.attestors.attest(&peer).await {
                Ok(s) => (format!("pid {pid}"), s),
                Err(error) => {
                    r.fail(
                        SELECTORS,
                        format!("attesting pid {pid} failed: {error}"),
                        "check the workload attestor configuration (and the kubelet, for k8s) and that the process still runs",
                    );
                    return vec![];
                }
            }
        }
        (None, Some(uid)) => (format!("uid {uid}"), uid_selectors(uid)),
        (None, None) => match caller {
            Some(peer) => match doctor.attestors.attest(peer).await {
                Ok(s) => (
                    format!("the caller (pid {}, uid {})", peer.pid, peer.uid),
                    s,
                ),
                Err(error) => {
                    r.fail(
                        SELECTORS,
                        format!("attesting the caller failed: {error}"),
                        "pass the workload with --pid, --uid or --spiffe-id",
                    );
                    return vec![];
                }
            },
            None => {
                r.fail(
                    SELECTORS,
                    "the caller's credentials could not be read",
                    "pass the workload with --pid, --uid or --spiffe-id",
                );
                return vec![];
            }
        },
    };
    if selectors.is_empty() {
        r.fail(
            SELECTORS,
            format!("{who} gets no selectors"),
            "configure a WorkloadAttestor plugin (unix or k8s) in the agent",
        );
        return vec![];
    }
    r.pass(SELECTORS, format!("{who} gets {}", list(selectors.iter())));
    matching(r, snapshot, &selectors, agent_id)
}

/// What a `--uid` stands for: `unix:uid` and, if the user exists, `unix:user`.
fn uid_selectors(uid: u32) -> SelectorSet {
    let mut set = SelectorSet::new();
    let mut add = |value: String| {
        if let Ok(s) = Selector::new("unix", value) {
            set.insert(s);
        }
    };
    add(format!("uid:{uid}"));
    if let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        add(format!("user:{}", user.name));
    }
    set
}

fn by_spiffe_id(
    r: &mut Report,
    snapshot: &Snapshot,
    id: &str,
    agent_id: &str,
) -> Vec<Arc<RegistrationEntry>> {
    let found: Vec<_> = snapshot
        .entries
        .iter()
        .filter(|e| e.spiffe_id.to_string() == id)
        .cloned()
        .collect();
    if found.is_empty() {
        r.fail(
            ENTRIES,
            format!("this agent is authorized for no entry with SPIFFE ID {id}"),
            format!(
                "create one: signet-server entry create -parentID {agent_id} -spiffeID {id} -selector <the workload's selector>"
            ),
        );
    } else {
        r.pass(ENTRIES, describe(&found));
    }
    found
}

fn matching(
    r: &mut Report,
    snapshot: &Snapshot,
    selectors: &SelectorSet,
    agent_id: &str,
) -> Vec<Arc<RegistrationEntry>> {
    let found = snapshot.entries_for(selectors);
    if !found.is_empty() {
        r.pass(ENTRIES, describe(&found));
        return found;
    }
    let create = |selector: &str| {
        format!(
            "signet-server entry create -parentID {agent_id} -spiffeID <id> -selector {selector}"
        )
    };
    match nearest(snapshot, selectors) {
        Some((entry, missing)) => {
            let example = missing
                .iter()
                .find_map(|m| counterpart(m, selectors))
                .or_else(|| selectors.iter().next())
                .map_or_else(String::new, ToString::to_string);
            r.fail(
                ENTRIES,
                format!(
                    "no entry matches; the nearest, {} ({}), needs {} which the workload lacks",
                    entry.id,
                    entry.spiffe_id,
                    list(missing.iter())
                ),
                format!(
                    "run the workload with {}, or register an entry for its own selectors: {}",
                    list(missing.iter()),
                    create(&example)
                ),
            );
        }
        None => {
            let example = selectors
                .iter()
                .next()
                .map_or_else(String::new, ToString::to_string);
            r.fail(
                ENTRIES,
                "this agent is authorized for no entries at all",
                format!(
                    "register the workload with this agent as parent: {}",
                    create(&example)
                ),
            );
        }
    }
    found
}

/// The authorized entry sharing most selectors with the workload (then lacking fewest),
/// and the selectors it needs that the workload does not have.
fn nearest<'a>(
    snapshot: &'a Snapshot,
    selectors: &SelectorSet,
) -> Option<(&'a Arc<RegistrationEntry>, Vec<Selector>)> {
    snapshot
        .entries
        .iter()
        .map(|e| {
            let missing: Vec<_> = e
                .selectors
                .iter()
                .filter(|s| !selectors.contains(s))
                .cloned()
                .collect();
            (e, missing)
        })
        .min_by_key(|(e, missing)| {
            let shared = e.selectors.len() - missing.len();
            (std::cmp::Reverse(shared), missing.len())
        })
}

/// The workload's selector of the same kind as `missing` (its `unix:uid:0` for a missing
/// `unix:uid:1234`).
fn counterpart<'a>(missing: &Selector, selectors: &'a SelectorSet) -> Option<&'a Selector> {
    let key = |s: &Selector| {
        let value = s.value();
        (
            s.kind().to_owned(),
            value.split_once(':').map_or(value, |(k, _)| k).to_owned(),
        )
    };
    let want = key(missing);
    selectors.iter().find(|s| key(s) == want)
}

/// Reports the SVID held for each entry: present, time to expiry, renewal on schedule.
pub(super) fn svids(
    r: &mut Report,
    manager: &Manager,
    entries: &[Arc<RegistrationEntry>],
    now: i64,
) {
    const SVID: &str = "SVID";
    const RENEWAL: &str = "SVID renewal";
    for e in entries {
        let Some(held) = manager.held_svid(&e.id) else {
            r.warn(
                SVID,
                format!("{}: no SVID minted yet", e.spiffe_id),
                "it is minted on the workload's first Workload API call; if this persists, read the agent log for errors minting this entry",
            );
            continue;
        };
        let left = held.svid.not_after - now;
        let renew_at = signet_common::clock::unix_seconds(held.renew_at);
        if left <= 0 {
            r.fail(
                SVID,
                format!(
                    "{}: X509-SVID expired {} ago (renewal due for {})",
                    e.spiffe_id,
                    seconds(-left),
                    seconds(now - renew_at)
                ),
                "restore the agent's connection to the server; it renews the SVID as soon as it reaches it",
            );
            continue;
        }
        r.pass(
            SVID,
            format!("{}: X509-SVID expires in {}", e.spiffe_id, seconds(left)),
        );
        // A renewal normally completes within seconds of falling due.
        if now > renew_at + 30 {
            r.warn(
                RENEWAL,
                format!(
                    "{}: renewal overdue for {}; the SVID expires in {}",
                    e.spiffe_id,
                    seconds(now - renew_at),
                    seconds(left)
                ),
                "restore the agent's connection to the server, and read the agent log for renewal errors",
            );
        } else {
            r.pass(
                RENEWAL,
                format!(
                    "{}: next renewal in {}",
                    e.spiffe_id,
                    seconds(renew_at - now)
                ),
            );
        }
    }
}

fn describe(entries: &[Arc<RegistrationEntry>]) -> String {
    let names: Vec<_> = entries
        .iter()
        .map(|e| format!("{} ({})", e.spiffe_id, e.id))
        .collect();
    format!(
        "{} entr{}: {}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" },
        names.join(", ")
    )
}

fn list<'a>(selectors: impl Iterator<Item = &'a Selector>) -> String {
    selectors
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
