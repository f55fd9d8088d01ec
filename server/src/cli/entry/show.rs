//! `entry show` and `entry count`.

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use signet_proto::spire::api::server::entry::v1::{
    CountEntriesRequest, GetEntryRequest, ListEntriesRequest, count_entries_request,
    list_entries_request,
};
use signet_proto::types;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{AdminArgs, MatchMode, parse_id_proto, parse_selectors, parse_td_name};
use crate::cli::entry::print::{print_entry, sort_entries};
use crate::cli::env::Env;
use crate::cli::output::{OutputFormat, plural, print_json};
use crate::cli::protojson;

/// SPIRE's page size for `entry show`.
const PAGE_SIZE: i32 = 500;

/// The filters `entry show` and `entry count` share.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// The parent ID of the records to select.
    #[arg(long)]
    pub parent_id: Option<String>,
    /// The SPIFFE ID of the records to select.
    #[arg(long)]
    pub spiffe_id: Option<String>,
    /// Select only entries that describe downstream servers.
    #[arg(long)]
    pub downstream: bool,
    /// A colon-delimited type:value selector. Can be used more than once.
    #[arg(long)]
    pub selector: Vec<String>,
    /// SPIFFE ID of a trust domain an entry federates with. Can be used more than once.
    #[arg(long)]
    pub federates_with: Vec<String>,
    /// The match mode used when filtering by federates-with.
    #[arg(long, value_enum, default_value_t)]
    pub match_federates_with_on: MatchMode,
    /// The match mode used when filtering by selectors.
    #[arg(long, visible_alias = "match", value_enum, default_value_t)]
    pub match_selectors_on: MatchMode,
    /// The hint of the records to select.
    #[arg(long)]
    pub hint: Option<String>,
}

/// The filter fields, built once for both request types.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    pub by_spiffe_id: Option<types::Spiffeid>,
    pub by_parent_id: Option<types::Spiffeid>,
    pub by_selectors: Option<types::SelectorMatch>,
    pub by_federates_with: Option<types::FederatesWithMatch>,
    pub by_hint: Option<String>,
    pub by_downstream: Option<bool>,
}

impl FilterArgs {
    /// The request filter. `by_downstream` is sent only with `--downstream`: SPIRE always
    /// sends it, but its datastore reads `false` as "no filter", which this matches.
    pub fn filter(&self) -> anyhow::Result<Filter> {
        let mut f = Filter::default();
        if let Some(parent) = &self.parent_id {
            f.by_parent_id = Some(
                parse_id_proto(parent)
                    .with_context(|| format!("error parsing parent ID {parent:?}"))?,
            );
        }
        if let Some(id) = &self.spiffe_id {
            f.by_spiffe_id = Some(
                parse_id_proto(id).with_context(|| format!("error parsing SPIFFE ID {id:?}"))?,
            );
        }
        if !self.selector.is_empty() {
            f.by_selectors = Some(types::SelectorMatch {
                selectors: parse_selectors(&self.selector).context("error parsing selectors")?,
                r#match: self.match_selectors_on.selector_match(),
            });
        }
        if !self.federates_with.is_empty() {
            let tds = self
                .federates_with
                .iter()
                .map(|td| {
                    parse_td_name(td)
                        .with_context(|| format!("error parsing federated trust domain {td:?}"))
                })
                .collect::<anyhow::Result<_>>()?;
            f.by_federates_with = Some(types::FederatesWithMatch {
                trust_domains: tds,
                r#match: self.match_federates_with_on.federates_with_match(),
            });
        }
        f.by_hint = self.hint.clone();
        f.by_downstream = self.downstream.then_some(true);
        Ok(f)
    }
}

impl From<Filter> for list_entries_request::Filter {
    fn from(f: Filter) -> Self {
        Self {
            by_spiffe_id: f.by_spiffe_id,
            by_parent_id: f.by_parent_id,
            by_selectors: f.by_selectors,
            by_federates_with: f.by_federates_with,
            by_hint: f.by_hint,
            by_downstream: f.by_downstream,
        }
    }
}

impl From<Filter> for count_entries_request::Filter {
    fn from(f: Filter) -> Self {
        Self {
            by_spiffe_id: f.by_spiffe_id,
            by_parent_id: f.by_parent_id,
            by_selectors: f.by_selectors,
            by_federates_with: f.by_federates_with,
            by_hint: f.by_hint,
            by_downstream: f.by_downstream,
        }
    }
}

/// `entry show` flags.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The entry ID of the record to show (not combinable with other filters).
    #[arg(long)]
    pub entry_id: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// `entry count` flags.
#[derive(Debug, Clone, Args)]
pub struct CountArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub(super) async fn run_show(args: &ShowArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let f = &args.filter;
    if args.entry_id.is_some()
        && (f.parent_id.is_some() || f.spiffe_id.is_some() || !f.selector.is_empty())
    {
        anyhow::bail!("the --entry-id flag can't be combined with others");
    }
    let mut admin = Admin::new(&args.common.socket.socket_path);
    let mut entries = match &args.entry_id {
        Some(id) => {
            let req = GetEntryRequest {
                id: id.clone(),
                output_mask: None,
            };
            let entry = admin.entry().await?.get_entry(req).await;
            let entry = entry
                .map_err(RpcError)
                .with_context(|| format!("error fetching entry ID {id}"))?;
            vec![entry.into_inner()]
        }
        None => list_all(&mut admin, f.filter()?).await?,
    };
    sort_entries(&mut entries);
    if args.common.output == OutputFormat::Json {
        let items: Vec<_> = entries.iter().map(|e| protojson::entry(Some(e))).collect();
        print_json(env.stdout, json!({"entries": items, "next_page_token": ""}))?;
        return Ok(());
    }
    let n = entries.len();
    writeln!(env.stdout, "Found {n} {}", plural(n, "entry", "entries"))?;
    for e in &entries {
        print_entry(env.stdout, e)?;
    }
    Ok(())
}

async fn list_all(admin: &mut Admin, filter: Filter) -> anyhow::Result<Vec<types::Entry>> {
    let filter = list_entries_request::Filter::from(filter);
    let mut client = admin.entry().await?;
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let resp = client
            .list_entries(ListEntriesRequest {
                filter: Some(filter.clone()),
                output_mask: None,
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
            })
            .await
            .map_err(RpcError)
            .context("error fetching entries")?
            .into_inner();
        entries.extend(resp.entries);
        if resp.next_page_token.is_empty() || resp.next_page_token == page_token {
            return Ok(entries);
        }
        page_token = resp.next_page_token;
    }
}

pub(super) async fn run_count(args: &CountArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let filter = args.filter.filter()?;
    let resp = Admin::new(&args.common.socket.socket_path)
        .entry()
        .await?
        .count_entries(CountEntriesRequest {
            filter: Some(filter.into()),
        })
        .await
        .map_err(RpcError)?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        print_json(env.stdout, protojson::count(resp.count))?;
        return Ok(());
    }
    let n = usize::try_from(resp.count).unwrap_or(0);
    writeln!(
        env.stdout,
        "{} registration {}",
        resp.count,
        plural(n, "entry", "entries")
    )?;
    Ok(())
}
