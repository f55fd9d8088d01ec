//! Printing entries and batch results as `spire-server entry` does.

use std::cmp::Ordering;
use std::io::{self, Write};

use serde_json::{Value, json};
use signet_proto::types;

use crate::cli::common::id_string;
use crate::cli::env::Env;
use crate::cli::output::{code_name, go_time, print_json};
use crate::cli::protojson;

/// Prints one entry in SPIRE's layout, followed by a blank line.
pub(crate) fn print_entry(out: &mut dyn Write, e: &types::Entry) -> io::Result<()> {
    let entry_id = if e.id.is_empty() { "(none)" } else { &e.id };
    writeln!(out, "Entry ID         : {entry_id}")?;
    writeln!(
        out,
        "SPIFFE ID        : {}",
        id_string(e.spiffe_id.as_ref())
    )?;
    writeln!(
        out,
        "Parent ID        : {}",
        id_string(e.parent_id.as_ref())
    )?;
    writeln!(out, "Revision         : {}", e.revision_number)?;
    if e.downstream {
        writeln!(out, "Downstream       : true")?;
    }
    writeln!(out, "X509-SVID TTL    : {}", ttl(e.x509_svid_ttl))?;
    writeln!(out, "JWT-SVID TTL     : {}", ttl(e.jwt_svid_ttl))?;
    if e.expires_at != 0 {
        writeln!(out, "Expiration time  : {}", go_time(e.expires_at))?;
    }
    for s in &e.selectors {
        writeln!(out, "Selector         : {}:{}", s.r#type, s.value)?;
    }
    for td in &e.federates_with {
        writeln!(out, "FederatesWith    : {td}")?;
    }
    for dns in &e.dns_names {
        writeln!(out, "DNS name         : {dns}")?;
    }
    if e.admin {
        writeln!(out, "Admin            : true")?;
    }
    if e.store_svid {
        writeln!(out, "StoreSvid        : true")?;
    }
    if !e.hint.is_empty() {
        writeln!(out, "Hint             : {}", e.hint)?;
    }
    writeln!(out)
}

fn ttl(seconds: i32) -> String {
    if seconds == 0 {
        "default".to_owned()
    } else {
        seconds.to_string()
    }
}

/// One result of a batch create or update: its status and the entry (for failures, the
/// entry that was sent, since the server returns none).
pub(crate) struct BatchResult {
    status: Option<types::Status>,
    entry: Option<types::Entry>,
}

impl BatchResult {
    fn code(&self) -> i32 {
        self.status.as_ref().map_or(0, |s| s.code)
    }
}

/// Pairs the server's results with the entries sent, filling in failed results' entries.
pub(crate) fn batch_results(
    results: impl IntoIterator<Item = (Option<types::Status>, Option<types::Entry>)>,
    sent: &[types::Entry],
) -> Vec<BatchResult> {
    results
        .into_iter()
        .enumerate()
        .map(|(i, (status, entry))| {
            let failed = status.as_ref().is_some_and(|s| s.code != 0);
            let entry = if failed { sent.get(i).cloned() } else { entry };
            BatchResult { status, entry }
        })
        .collect()
}

/// `{"results": [...]}` of a batch create or update.
pub(crate) fn batch_results_json(results: &[BatchResult]) -> Value {
    let items: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "status": protojson::status(r.status.as_ref()),
                "entry": protojson::entry(r.entry.as_ref()),
            })
        })
        .collect();
    json!({ "results": items })
}

/// Prints batch results as SPIRE does: successful entries on stdout, failures with their
/// status on stderr; fails when any item failed. `verb` is `create` or `update`.
pub(crate) fn print_batch_results(
    results: &[BatchResult],
    verb: &str,
    json: bool,
    env: &mut Env<'_>,
) -> anyhow::Result<()> {
    if json {
        print_json(env.stdout, batch_results_json(results))?;
        return Ok(());
    }
    let empty = types::Entry::default();
    for r in results.iter().filter(|r| r.code() == 0) {
        print_entry(env.stdout, r.entry.as_ref().unwrap_or(&empty))?;
    }
    let mut failed = 0;
    for r in results.iter().filter(|r| r.code() != 0) {
        failed += 1;
        let message = r.status.as_ref().map_or("", |s| s.message.as_str());
        writeln!(
            env.stderr,
            "Failed to {verb} the following entry (code: {}, msg: {message:?}):",
            code_name(r.code())
        )?;
        print_entry(env.stderr, r.entry.as_ref().unwrap_or(&empty))?;
    }
    if failed > 0 {
        anyhow::bail!("failed to {verb} one or more entries");
    }
    Ok(())
}

/// Sorts selectors within each entry, then the entries, as SPIRE's `entry show` does.
pub(crate) fn sort_entries(entries: &mut [types::Entry]) {
    for e in entries.iter_mut() {
        e.selectors.sort_by(compare_selector);
    }
    entries.sort_by(compare_entries);
}

fn compare_selector(a: &types::Selector, b: &types::Selector) -> Ordering {
    (&a.r#type, &a.value).cmp(&(&b.r#type, &b.value))
}

fn compare_entries(a: &types::Entry, b: &types::Entry) -> Ordering {
    let key = |id: &Option<types::Spiffeid>| {
        id.as_ref()
            .map(|id| (id.trust_domain.clone(), id.path.clone()))
            .unwrap_or_default()
    };
    key(&a.spiffe_id)
        .cmp(&key(&b.spiffe_id))
        .then_with(|| key(&a.parent_id).cmp(&key(&b.parent_id)))
        .then_with(|| a.x509_svid_ttl.cmp(&b.x509_svid_ttl))
        .then_with(|| a.jwt_svid_ttl.cmp(&b.jwt_svid_ttl))
        .then_with(|| a.selectors.len().cmp(&b.selectors.len()))
        .then_with(|| {
            a.selectors
                .iter()
                .zip(&b.selectors)
                .map(|(x, y)| compare_selector(x, y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}
