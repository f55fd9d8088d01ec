//! `signet-server doctor`: the server's side of the mTLS checklist over the admin socket —
//! the X.509 CA and JWT key (active, prepared, expiry), the datastore, and, for an entry ID
//! or SPIFFE ID, which attested agents are authorized to serve it. PASS/WARN/FAIL lines with
//! the fix for each (or `--output json`); the command fails if any check FAILs.

use clap::Args;
use signet_common::clock::{Clock, SystemClock, from_unix_seconds, unix_seconds};
use signet_common::doctor::{Report, seconds};
use signet_common::rotation::ca_prepare_at;
use signet_proto::spire::api::server::agent::v1::CountAgentsRequest;
use signet_proto::spire::api::server::bundle::v1::GetBundleRequest;
use signet_proto::spire::api::server::entry::v1::CountEntriesRequest;
use signet_proto::spire::api::server::localauthority::v1 as la;
use signet_proto::spire::api::server::localauthority::v1::local_authority_client::LocalAuthorityClient;
use tonic::transport::Channel;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::SocketArgs;
use crate::cli::env::Env;
use crate::cli::output::OutputFormat;

mod authorized;

/// `doctor` flags.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("target").multiple(false))]
pub struct DoctorArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Also check which agents are authorized for this registration entry
    #[arg(long, group = "target")]
    pub entry_id: Option<String>,
    /// Also check which agents are authorized for the entries with this SPIFFE ID
    #[arg(long, group = "target")]
    pub spiffe_id: Option<String>,
    /// Output format.
    #[arg(long, value_enum, ignore_case = true, default_value_t)]
    pub output: OutputFormat,
}

/// Runs the checks and prints the report; an `Err` (after printing) if any check failed.
pub(crate) async fn execute(args: &DoctorArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let report = diagnose(args, &SystemClock).await;
    let text = match args.output {
        OutputFormat::Json => report.json(),
        OutputFormat::Pretty => report.human(),
    };
    write!(env.stdout, "{text}")?;
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.status == signet_common::doctor::Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("doctor: failed: {}", failed.join(", "))
    }
}

async fn diagnose(args: &DoctorArgs, clock: &dyn Clock) -> Report {
    let mut r = Report::default();
    let mut admin = Admin::new(&args.socket.socket_path);
    let channel = match admin.channel().await {
        Ok(c) => {
            r.pass(
                "server running",
                format!("admin socket {} answers", args.socket.socket_path.display()),
            );
            c
        }
        Err(e) => {
            r.fail(
                "server running",
                e.to_string(),
                "start signet-server, or pass its admin socket with --socket-path",
            );
            return r;
        }
    };
    let now = clock.unix_now();
    let lifetime = x509_lifetime(channel.clone()).await;
    authorities(&mut r, channel.clone(), now, lifetime).await;
    datastore(&mut r, &mut admin).await;
    if let Some(id) = &args.entry_id {
        authorized::for_entry_id(&mut r, &mut admin, id).await;
    }
    if let Some(id) = &args.spiffe_id {
        authorized::for_spiffe_id(&mut r, &mut admin, id).await;
    }
    r
}

/// `(NotBefore, NotAfter)` of each X.509 root in the bundle, by authority ID.
async fn x509_lifetime(channel: Channel) -> Vec<(String, i64, i64)> {
    let mut client =
        signet_proto::spire::api::server::bundle::v1::bundle_client::BundleClient::new(channel);
    let Ok(resp) = client.get_bundle(GetBundleRequest::default()).await else {
        return vec![];
    };
    resp.into_inner()
        .x509_authorities
        .iter()
        .filter_map(|a| {
            let id = crate::ca::subject_key_id_hex(&a.asn1)?;
            let info = x509_parser::parse_x509_certificate(&a.asn1).ok()?.1;
            Some((
                id,
                info.validity().not_before.timestamp(),
                info.validity().not_after.timestamp(),
            ))
        })
        .collect()
}

async fn authorities(r: &mut Report, channel: Channel, now: i64, roots: Vec<(String, i64, i64)>) {
    let mut client = LocalAuthorityClient::new(channel);
    let x509 = client
        .get_x509_authority_state(la::GetX509AuthorityStateRequest {})
        .await
        .map(|r| {
            let r = r.into_inner();
            [r.active, r.prepared]
        });
    // The X.509 CA's lifetime (from its root, when it is self-signed) sets when its
    // successor is due; the JWT key has the same TTL.
    let life = x509.as_ref().ok().and_then(|[active, _]| {
        let id = &active.as_ref()?.authority_id;
        roots
            .iter()
            .find(|(r, ..)| r == id)
            .map(|(_, nb, na)| na - nb)
    });
    authority(r, "X.509 CA", x509, now, life);
    let jwt = client
        .get_jwt_authority_state(la::GetJwtAuthorityStateRequest {})
        .await
        .map(|r| {
            let r = r.into_inner();
            [r.active, r.prepared]
        });
    authority(r, "JWT key", jwt, now, life);
}

fn authority(
    r: &mut Report,
    name: &str,
    state: Result<[Option<la::AuthorityState>; 2], tonic::Status>,
    now: i64,
    life: Option<i64>,
) {
    let [active, prepared] = match state {
        Ok(s) => s,
        Err(status) => {
            r.fail(
                name,
                format!("cannot read its state: {}", RpcError(status)),
                "read the server log: the CA manager did not answer",
            );
            return;
        }
    };
    let Some(active) = active else {
        r.fail(
            name,
            "no active authority",
            "read the server log for CA errors (KeyManager, UpstreamAuthority) and restart the server",
        );
        return;
    };
    let left = active.expires_at - now;
    if left <= 0 {
        r.fail(
            name,
            format!("the active authority {} expired {} ago", active.authority_id, seconds(-left)),
            "read the server log for rotation errors; `localauthority x509 prepare` then `activate` rotates by hand",
        );
        return;
    }
    let summary = format!(
        "active {} expires in {}",
        active.authority_id,
        seconds(left)
    );
    if let Some(p) = prepared {
        r.pass(
            name,
            format!("{summary}; successor {} prepared", p.authority_id),
        );
        return;
    }
    let due = life.map(|life| {
        let not_after = from_unix_seconds(active.expires_at);
        unix_seconds(ca_prepare_at(
            from_unix_seconds(active.expires_at - life),
            not_after,
        ))
    });
    match due {
        // The rotator looks every few seconds; a minute late is overdue.
        Some(due) if now > due + 60 => r.warn(
            name,
            format!("{summary}; no successor prepared though one was due {} ago", seconds(now - due)),
            "read the server log for CA preparation errors, or prepare one with `signet-server localauthority x509 prepare`",
        ),
        Some(due) => r.pass(name, format!("{summary}; successor due in {}", seconds(due - now))),
        None => r.pass(name, format!("{summary}; no successor prepared yet")),
    }
}

async fn datastore(r: &mut Report, admin: &mut Admin) {
    const NAME: &str = "datastore";
    let fix = "check the DataStore plugin configuration and that its database is reachable; the server log has the error";
    let entries = match admin.entry().await {
        Ok(mut c) => c
            .count_entries(CountEntriesRequest::default())
            .await
            .map(|r| r.into_inner().count),
        Err(e) => return r.fail(NAME, e.to_string(), fix),
    };
    let agents = match admin.agent().await {
        Ok(mut c) => c
            .count_agents(CountAgentsRequest::default())
            .await
            .map(|r| r.into_inner().count),
        Err(e) => return r.fail(NAME, e.to_string(), fix),
    };
    match (entries, agents) {
        (Ok(e), Ok(a)) => r.pass(
            NAME,
            format!(
                "answers: {e} entr{}, {a} attested agent{}",
                if e == 1 { "y" } else { "ies" },
                if a == 1 { "" } else { "s" }
            ),
        ),
        (Err(s), _) | (_, Err(s)) => r.fail(NAME, format!("query failed: {}", RpcError(s)), fix),
    }
}
