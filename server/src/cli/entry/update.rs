//! `entry update`. As in SPIRE 1.13, an update replaces every editable field of the entry
//! with what the flags say (unset flags mean zero values), so `--entry-id`, `--parent-id`,
//! `--spiffe-id` and at least one `--selector` are required.

use clap::Args;
use signet_proto::spire::api::server::entry::v1::BatchUpdateEntryRequest;
use signet_proto::types;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{AdminArgs, parse_id_proto, parse_selectors, read_input};
use crate::cli::entry::create::{checked_ttl, federated_tds};
use crate::cli::entry::data;
use crate::cli::entry::print::{batch_results, print_batch_results};
use crate::cli::env::Env;
use crate::cli::output::OutputFormat;

/// `entry update` flags.
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The registration entry ID of the record to update.
    #[arg(long)]
    pub entry_id: Option<String>,
    /// The SPIFFE ID of this record's parent.
    #[arg(long)]
    pub parent_id: Option<String>,
    /// The SPIFFE ID that this record represents.
    #[arg(long)]
    pub spiffe_id: Option<String>,
    /// The lifetime, in seconds, for X509-SVIDs issued based on this registration entry.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub x509_svid_ttl: i64,
    /// The lifetime, in seconds, for JWT-SVIDs issued based on this registration entry.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub jwt_svid_ttl: i64,
    /// Path to a file containing registration JSON (optional). If set to '-', read the
    /// JSON from stdin. Other flags are then ignored.
    #[arg(long, value_name = "FILE")]
    pub data: Option<String>,
    /// A colon-delimited type:value selector. Can be used more than once.
    #[arg(long)]
    pub selector: Vec<String>,
    /// SPIFFE ID of a trust domain to federate with. Can be used more than once.
    #[arg(long)]
    pub federates_with: Vec<String>,
    /// If set, the SPIFFE ID in this entry will be granted access to the server's
    /// management APIs.
    #[arg(long)]
    pub admin: bool,
    /// If set, the entry describes a downstream SPIRE server.
    #[arg(long)]
    pub downstream: bool,
    /// If set, the SVID issued from this entry must be stored through an SVIDStore plugin.
    #[arg(long)]
    pub store_svid: bool,
    /// An expiry, from epoch in seconds, for the resulting registration entry to be pruned.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub entry_expiry: i64,
    /// A DNS name that will be included in SVIDs issued based on this entry. Can be used
    /// more than once.
    #[arg(long)]
    pub dns: Vec<String>,
    /// The entry hint, used to disambiguate entries with the same SPIFFE ID.
    #[arg(long)]
    pub hint: Option<String>,
}

impl UpdateArgs {
    /// The replacement entry the flags describe (without `--data`).
    pub fn entry(&self) -> anyhow::Result<types::Entry> {
        let Some(entry_id) = &self.entry_id else {
            anyhow::bail!("entry ID is required");
        };
        if self.selector.is_empty() {
            anyhow::bail!("at least one selector is required");
        }
        let Some(parent_id) = &self.parent_id else {
            anyhow::bail!("a parent ID is required");
        };
        let Some(spiffe_id) = &self.spiffe_id else {
            anyhow::bail!("a SPIFFE ID is required");
        };
        let x509_svid_ttl = checked_ttl(self.x509_svid_ttl, "x509-SVID")?;
        let jwt_svid_ttl = checked_ttl(self.jwt_svid_ttl, "JWT-SVID")?;
        Ok(types::Entry {
            id: entry_id.clone(),
            parent_id: Some(parse_id_proto(parent_id)?),
            spiffe_id: Some(parse_id_proto(spiffe_id)?),
            selectors: parse_selectors(&self.selector)?,
            x509_svid_ttl,
            federates_with: federated_tds(&self.federates_with)?,
            admin: self.admin,
            downstream: self.downstream,
            expires_at: self.entry_expiry,
            dns_names: self.dns.clone(),
            store_svid: self.store_svid,
            jwt_svid_ttl,
            hint: self.hint.clone().unwrap_or_default(),
            ..Default::default()
        })
    }
}

/// The input mask SPIRE's update implies: it sends none, which the server reads as "every
/// field". Spelled out here so the request means the same to any server.
pub(super) fn replace_all_mask() -> types::EntryMask {
    types::EntryMask {
        revision_number: false,
        created_at: false,
        additional_attributes: false,
        ..signet_proto::convert::full_entry_mask()
    }
}

pub(super) async fn run(args: &UpdateArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let entries = match &args.data {
        Some(path) => data::parse_entries(&read_input(Some(path), env)?)?,
        None => vec![args.entry()?],
    };
    let resp = Admin::new(&args.common.socket.socket_path)
        .entry()
        .await?
        .batch_update_entry(BatchUpdateEntryRequest {
            entries: entries.clone(),
            input_mask: Some(replace_all_mask()),
            output_mask: None,
        })
        .await
        .map_err(RpcError)?
        .into_inner();
    let results = batch_results(
        resp.results.into_iter().map(|r| (r.status, r.entry)),
        &entries,
    );
    print_batch_results(
        &results,
        "update",
        args.common.output == OutputFormat::Json,
        env,
    )
}
