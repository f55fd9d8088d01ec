//! `doctor` inside the agent: the mTLS checklist for one workload, run where the answers
//! are (the agent SVID, the server connection, the workload attestors, the manager's entries,
//! SVIDs and bundles). Served on the admin socket ([`crate::endpoints::admin`]); the
//! `signet-agent doctor` command only renders the [`Report`].

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use signet_common::bundle::Bundle;
use signet_common::clock::Clock;
use signet_common::doctor::{Report, seconds};

use crate::attestor::workload::{Attestors, Peer};
use crate::client::ServerClient;
use crate::manager::Manager;
use crate::svid::AgentIdentity;

mod trust;
mod workload;

/// How long the server probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew up to this is normal (the `Date` header has whole seconds).
const SKEW_OK: i64 = 2;
/// Beyond this, SVIDs the server just issued (NotBefore back-dated 10 s) are not yet valid
/// here, or the other way round.
const SKEW_FAIL: i64 = 10;

/// Which workload to diagnose (at most one of `pid`, `uid`, `spiffe_id`; none: the caller
/// of the admin socket), and the SPIFFE ID of the peer it talks to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoctorRequest {
    /// A process ID, attested as the Workload API would attest it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// A user ID (selectors `unix:uid` and `unix:user` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// A SPIFFE ID the agent should hold an SVID for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<String>,
    /// The SPIFFE ID of the peer whose SVID the workload must verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// Everything the checks read.
#[derive(Debug, Clone)]
pub struct Doctor {
    /// The agent SVID and bundle roots.
    pub identity: Arc<AgentIdentity>,
    /// The client of the server API.
    pub client: Arc<ServerClient>,
    /// The manager: entries, workload SVIDs, bundles.
    pub manager: Arc<Manager>,
    /// The workload attestors.
    pub attestors: Arc<Attestors>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Where the server is (`host:port` each).
    pub servers: Vec<String>,
}

/// What the server probe saw.
struct Probe {
    bundle: Bundle,
    /// Server time minus local time, seconds (when the server sent a `Date`).
    skew: Option<i64>,
}

impl Doctor {
    /// Runs every check for `req`; `caller` is the admin socket's caller (the workload when
    /// `req` names none).
    pub async fn run(&self, req: &DoctorRequest, caller: Option<&Peer>) -> Report {
        let mut r = Report::default();
        self.agent_svid(&mut r);
        let probe = self.server(&mut r).await;
        clock_skew(&mut r, probe.as_ref());
        let snapshot = Arc::clone(&self.manager.subscribe().borrow());
        let agent_id = self.identity.current().id.to_string();
        let entries = workload::entries(&mut r, self, req, caller, &snapshot, &agent_id).await;
        workload::svids(&mut r, &self.manager, &entries, self.clock.unix_now());
        trust::bundle(
            &mut r,
            &snapshot,
            probe.as_ref().map(|p| &p.bundle),
            self.clock.unix_now(),
        );
        if let Some(peer) = &req.peer {
            trust::peer(&mut r, &snapshot, &entries, peer);
        }
        r
    }

    fn agent_svid(&self, r: &mut Report) {
        const NAME: &str = "agent attested";
        if let Some(reason) = self.identity.stopped().borrow().clone() {
            r.fail(
                NAME,
                format!("the server refused the agent: {reason}"),
                "attest the agent again with a new join token (signet-server token generate) and restart it",
            );
            return;
        }
        let svid = self.identity.current();
        let left = svid.not_after - self.clock.unix_now();
        if left <= 0 {
            r.fail(
                NAME,
                format!("agent SVID of {} expired {} ago", svid.id, seconds(-left)),
                "restore the connection to the server so the agent can renew, or attest it again with a new join token",
            );
        } else {
            r.pass(
                NAME,
                format!(
                    "attested as {}; agent SVID expires in {}",
                    svid.id,
                    seconds(left)
                ),
            );
        }
    }

    async fn server(&self, r: &mut Report) -> Option<Probe> {
        const NAME: &str = "server connection";
        let servers = self.servers.join(", ");
        let before = self.clock.unix_now();
        match self.client.probe(PROBE_TIMEOUT).await {
            Ok((bundle, server_time)) => {
                let after = self.clock.unix_now();
                let synced = self.manager.subscribe().borrow().synced;
                if synced {
                    r.pass(NAME, format!("reached {servers} over mTLS; entries synced"));
                } else {
                    r.warn(
                        NAME,
                        format!("reached {servers} over mTLS, but the first sync has not completed"),
                        "wait a few seconds and run doctor again; if it persists, read the agent log for sync errors",
                    );
                }
                Some(Probe {
                    bundle,
                    skew: server_time.map(|t| t - (before + after) / 2),
                })
            }
            Err(error) => {
                r.fail(
                    NAME,
                    format!("cannot reach the server at {servers}: {error}"),
                    "start signet-server, or correct agent.server_address / server_port and the network path to it",
                );
                None
            }
        }
    }
}

fn clock_skew(r: &mut Report, probe: Option<&Probe>) {
    const NAME: &str = "clock skew";
    let Some(skew) = probe.and_then(|p| p.skew) else {
        r.warn(
            NAME,
            "not measured: no answer with a Date header from the server",
            "fix the server connection first, then run doctor again",
        );
        return;
    };
    let how = match skew {
        0 => "in step with the server (to the second)".to_owned(),
        s if s > 0 => format!("{} behind the server", seconds(s)),
        s => format!("{} ahead of the server", seconds(-s)),
    };
    let fix =
        "synchronise this host's clock and the server's with NTP (chronyd or systemd-timesyncd)";
    match skew.abs() {
        s if s <= SKEW_OK => r.pass(NAME, how),
        s if s <= SKEW_FAIL => r.warn(NAME, how, fix),
        _ => r.fail(
            NAME,
            format!("{how}: newly issued SVIDs are outside their validity here or at the server"),
            fix,
        ),
    }
}
