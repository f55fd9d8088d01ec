//! `entry delete`.

use clap::Args;
use serde_json::{Value, json};
use signet_proto::spire::api::server::entry::v1::{
    BatchDeleteEntryRequest, batch_delete_entry_response,
};

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{AdminArgs, read_input};
use crate::cli::entry::data;
use crate::cli::env::Env;
use crate::cli::output::{OutputFormat, code_name, print_json};
use crate::cli::protojson;

/// `entry delete` flags.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The registration entry ID of the record to delete.
    #[arg(long)]
    pub entry_id: Option<String>,
    /// Path to a file containing a JSON structure for batch deletion (optional). If set to
    /// '-', read from stdin.
    #[arg(long, value_name = "FILE")]
    pub file: Option<String>,
}

pub(super) async fn run(args: &DeleteArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let ids = match (&args.file, &args.entry_id) {
        (Some(path), _) => data::parse_delete_ids(&read_input(Some(path), env)?)?,
        (None, Some(id)) => vec![id.clone()],
        (None, None) => anyhow::bail!("an entry ID is required"),
    };
    let resp = Admin::new(&args.common.socket.socket_path)
        .entry()
        .await?
        .batch_delete_entry(BatchDeleteEntryRequest { ids })
        .await
        .map_err(RpcError)?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        let results: Vec<Value> = resp
            .results
            .iter()
            .map(|r| json!({"status": protojson::status(r.status.as_ref()), "id": r.id}))
            .collect();
        print_json(env.stdout, json!({ "results": results }))?;
        return Ok(());
    }
    print_pretty(&resp.results, env)
}

/// SPIRE's layout, down to the summary line without a trailing newline.
fn print_pretty(
    results: &[batch_delete_entry_response::Result],
    env: &mut Env<'_>,
) -> anyhow::Result<()> {
    let code = |r: &batch_delete_entry_response::Result| r.status.as_ref().map_or(0, |s| s.code);
    let (ok, failed): (Vec<_>, Vec<_>) = results.iter().partition(|r| code(r) == 0);
    for r in &ok {
        writeln!(env.stdout, "Deleted entry with ID: {}", r.id)?;
    }
    if !ok.is_empty() {
        write!(env.stdout, "\n\n")?;
    }
    for r in &failed {
        let message = r.status.as_ref().map_or("", |s| s.message.as_str());
        writeln!(
            env.stderr,
            "Failed to delete entry with ID {} (code: {}, msg: {message:?})",
            r.id,
            code_name(code(r))
        )?;
    }
    if failed.is_empty() {
        write!(env.stdout, "Deleted {} entries successfully", ok.len())?;
        return Ok(());
    }
    write!(env.stdout, "\n\n")?;
    if ok.is_empty() {
        write!(env.stdout, "Failed to delete {} entries", failed.len())?;
    } else {
        write!(
            env.stdout,
            "Deleted {} entries successfully, but failed to delete {} entries",
            ok.len(),
            failed.len()
        )?;
    }
    anyhow::bail!("failed to delete one or more entries")
}
