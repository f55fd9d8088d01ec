//! `entry create`.

use clap::Args;
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::types;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{AdminArgs, parse_id_proto, parse_selectors, parse_td_name, read_input};
use crate::cli::entry::data;
use crate::cli::entry::print::{batch_results, print_batch_results};
use crate::cli::env::Env;
use crate::cli::output::OutputFormat;

/// `entry create` flags.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// A custom ID for this registration entry (optional). If not set, a new entry ID will
    /// be generated.
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
    /// If set, this entry will be applied to matching nodes rather than workloads.
    #[arg(long)]
    pub node: bool,
    /// If set, the SPIFFE ID in this entry will be granted access to the server's
    /// management APIs.
    #[arg(long)]
    pub admin: bool,
    /// If set, the SVID issued from this entry must be stored through an SVIDStore plugin.
    #[arg(long)]
    pub store_svid: bool,
    /// If set, the entry describes a downstream SPIRE server.
    #[arg(long)]
    pub downstream: bool,
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

impl CreateArgs {
    /// The entry the flags describe (without `--data`), checked as SPIRE checks it.
    pub fn entry(&self) -> anyhow::Result<types::Entry> {
        if self.selector.is_empty() {
            anyhow::bail!("at least one selector is required");
        }
        if self.node && !self.federates_with.is_empty() {
            anyhow::bail!("node entries can not federate");
        }
        if self.parent_id.is_none() && !self.node {
            anyhow::bail!("a parent ID is required if the node flag is not set");
        }
        let Some(spiffe_id) = &self.spiffe_id else {
            anyhow::bail!("a SPIFFE ID is required");
        };
        let x509_svid_ttl = checked_ttl(self.x509_svid_ttl, "x509-SVID")?;
        let jwt_svid_ttl = checked_ttl(self.jwt_svid_ttl, "JWT-SVID")?;
        let spiffe_id = parse_id_proto(spiffe_id)?;
        let parent_id = match (&self.parent_id, self.node) {
            (_, true) => types::Spiffeid {
                trust_domain: spiffe_id.trust_domain.clone(),
                path: "/spire/server".to_owned(),
            },
            (Some(parent), false) => parse_id_proto(parent)?,
            (None, false) => anyhow::bail!("a parent ID is required if the node flag is not set"),
        };
        Ok(types::Entry {
            id: self.entry_id.clone().unwrap_or_default(),
            spiffe_id: Some(spiffe_id),
            parent_id: Some(parent_id),
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

/// A TTL flag as the API's `int32`, refusing negatives as SPIRE does.
pub(super) fn checked_ttl(ttl: i64, what: &str) -> anyhow::Result<i32> {
    if ttl < 0 {
        anyhow::bail!("a positive {what} TTL is required");
    }
    i32::try_from(ttl).map_err(|_| anyhow::anyhow!("invalid value for {what} TTL: {ttl}"))
}

/// `--federates-with` values as trust domain names.
pub(super) fn federated_tds(flags: &[String]) -> anyhow::Result<Vec<String>> {
    flags.iter().map(|td| parse_td_name(td)).collect()
}

pub(super) async fn run(args: &CreateArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let entries = match &args.data {
        Some(path) => data::parse_entries(&read_input(Some(path), env)?)?,
        None => vec![args.entry()?],
    };
    let resp = Admin::new(&args.common.socket.socket_path)
        .entry()
        .await?
        .batch_create_entry(BatchCreateEntryRequest {
            entries: entries.clone(),
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
        "create",
        args.common.output == OutputFormat::Json,
        env,
    )
}
