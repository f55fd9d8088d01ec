//! `agent list|show|ban|evict|count`.

use std::io::{self, Write};

use clap::{Args, Subcommand};
use serde_json::json;
use signet_proto::spire::api::server::agent::v1::{
    BanAgentRequest, CountAgentsRequest, DeleteAgentRequest, GetAgentRequest, ListAgentsRequest,
    count_agents_request, list_agents_request,
};
use signet_proto::types;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{AdminArgs, MatchMode, parse_id_proto, parse_selectors};
use crate::cli::env::Env;
use crate::cli::output::{OutputFormat, go_time, plural, print_json};
use crate::cli::protojson;

/// SPIRE's page size for `agent list`.
const PAGE_SIZE: i32 = 1000;

/// `agent` subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Lists attested agents and their SPIFFE IDs.
    List(ListArgs),
    /// Shows the details of an attested agent given its SPIFFE ID.
    Show(IdArgs),
    /// Bans an attested agent given its SPIFFE ID.
    Ban(IdArgs),
    /// Evicts an attested agent given its SPIFFE ID.
    Evict(IdArgs),
    /// Counts attested agents.
    Count(ListArgs),
}

/// The filters of `agent list` and `agent count`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// A colon-delimited type:value selector. Can be used more than once.
    #[arg(long)]
    pub selector: Vec<String>,
    /// The match mode used when filtering by selectors.
    #[arg(long, visible_alias = "match", value_enum, default_value_t)]
    pub match_selectors_on: MatchMode,
    /// Filter by attestation type, like join_token or x509pop.
    #[arg(long)]
    pub attestation_type: Option<String>,
    /// 'true': agents that can re-attest, 'false': agents that can't; any other value: all.
    #[arg(long)]
    pub can_reattest: Option<String>,
    /// 'true': banned agents, 'false': agents not banned; any other value: all.
    #[arg(long)]
    pub banned: Option<String>,
    /// Filter by expiration time (format: "2006-01-02 15:04:05 -0700 -07").
    #[arg(long)]
    pub expires_before: Option<String>,
}

/// The filter fields both requests share.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    pub by_attestation_type: String,
    pub by_selector_match: Option<types::SelectorMatch>,
    pub by_banned: Option<bool>,
    pub by_can_reattest: Option<bool>,
    pub by_expires_before: String,
}

impl ListArgs {
    /// The request filter, checked as SPIRE checks it.
    pub fn filter(&self) -> anyhow::Result<Filter> {
        let mut f = Filter::default();
        if !self.selector.is_empty() {
            f.by_selector_match = Some(types::SelectorMatch {
                selectors: parse_selectors(&self.selector)?,
                r#match: self.match_selectors_on.selector_match(),
            });
        }
        if let Some(before) = &self.expires_before {
            if !valid_expiry_filter(before) {
                anyhow::bail!(
                    "date is not valid: {before:?} is not in the format \"2006-01-02 15:04:05 -0700 -07\""
                );
            }
            f.by_expires_before = before.clone();
        }
        f.by_attestation_type = self.attestation_type.clone().unwrap_or_default();
        f.by_can_reattest = tri_state(self.can_reattest.as_deref());
        f.by_banned = tri_state(self.banned.as_deref());
        Ok(f)
    }
}

/// SPIRE's three-way boolean flag: "true", "false", or anything else for "all".
fn tri_state(flag: Option<&str>) -> Option<bool> {
    match flag {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// Whether `s` has Go's layout `2006-01-02 15:04:05 -0700 -07`.
fn valid_expiry_filter(s: &str) -> bool {
    let parts: Vec<&str> = s.split(' ').collect();
    let [date, clock, offset, short] = parts.as_slice() else {
        return false;
    };
    let digits = |p: &str, lens: &[usize], sep: char| {
        let fields: Vec<&str> = p.split(sep).collect();
        fields.len() == lens.len()
            && fields
                .iter()
                .zip(lens)
                .all(|(f, n)| f.len() == *n && f.bytes().all(|b| b.is_ascii_digit()))
    };
    let signed = |p: &str, n: usize| {
        p.len() == n + 1
            && (p.starts_with('+') || p.starts_with('-'))
            && p.bytes().skip(1).all(|b| b.is_ascii_digit())
    };
    digits(date, &[4, 2, 2], '-')
        && digits(clock, &[2, 2, 2], ':')
        && signed(offset, 4)
        && signed(short, 2)
}

impl From<Filter> for list_agents_request::Filter {
    fn from(f: Filter) -> Self {
        Self {
            by_attestation_type: f.by_attestation_type,
            by_selector_match: f.by_selector_match,
            by_banned: f.by_banned,
            by_can_reattest: f.by_can_reattest,
            by_expires_before: f.by_expires_before,
        }
    }
}

impl From<Filter> for count_agents_request::Filter {
    fn from(f: Filter) -> Self {
        Self {
            by_attestation_type: f.by_attestation_type,
            by_selector_match: f.by_selector_match,
            by_banned: f.by_banned,
            by_can_reattest: f.by_can_reattest,
            by_expires_before: f.by_expires_before,
        }
    }
}

/// `--spiffe-id` of one agent.
#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The SPIFFE ID of the agent (agent identity).
    #[arg(long)]
    pub spiffe_id: Option<String>,
}

impl IdArgs {
    fn id(&self) -> anyhow::Result<types::Spiffeid> {
        let Some(id) = &self.spiffe_id else {
            anyhow::bail!("a SPIFFE ID is required");
        };
        parse_id_proto(id)
    }
}

/// Runs one `agent` subcommand.
pub(crate) async fn execute(cmd: AgentCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::List(args) => list(&args, env).await,
        AgentCommand::Count(args) => count(&args, env).await,
        AgentCommand::Show(args) => show(&args, env).await,
        AgentCommand::Ban(args) => ban_or_evict(&args, true, env).await,
        AgentCommand::Evict(args) => ban_or_evict(&args, false, env).await,
    }
}

async fn list(args: &ListArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let filter = list_agents_request::Filter::from(args.filter()?);
    let mut client = Admin::new(&args.common.socket.socket_path).agent().await?;
    let mut agents = Vec::new();
    let mut page_token = String::new();
    loop {
        let resp = client
            .list_agents(ListAgentsRequest {
                filter: Some(filter.clone()),
                output_mask: None,
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
            })
            .await
            .map_err(RpcError)?
            .into_inner();
        agents.extend(resp.agents);
        if resp.next_page_token.is_empty() || resp.next_page_token == page_token {
            break;
        }
        page_token = resp.next_page_token;
    }
    if args.common.output == OutputFormat::Json {
        let items: Vec<_> = agents.iter().map(protojson::agent).collect();
        print_json(env.stdout, json!({"agents": items, "next_page_token": ""}))?;
        return Ok(());
    }
    if agents.is_empty() {
        writeln!(env.stdout, "No attested agents found")?;
        return Ok(());
    }
    let n = agents.len();
    writeln!(
        env.stdout,
        "Found {n} attested {}:\n",
        plural(n, "agent", "agents")
    )?;
    for a in &agents {
        print_agent(env.stdout, a)?;
    }
    Ok(())
}

async fn count(args: &ListArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let filter = count_agents_request::Filter::from(args.filter()?);
    let resp = Admin::new(&args.common.socket.socket_path)
        .agent()
        .await?
        .count_agents(CountAgentsRequest {
            filter: Some(filter),
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
        "{} attested {}",
        resp.count,
        plural(n, "agent", "agents")
    )?;
    Ok(())
}

async fn show(args: &IdArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let id = args.id()?;
    let agent = Admin::new(&args.common.socket.socket_path)
        .agent()
        .await?
        .get_agent(GetAgentRequest {
            id: Some(id),
            output_mask: None,
        })
        .await
        .map_err(RpcError)?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        print_json(env.stdout, protojson::agent(&agent))?;
        return Ok(());
    }
    writeln!(env.stdout, "Found an attested agent given its SPIFFE ID\n")?;
    print_agent(env.stdout, &agent)?;
    for s in &agent.selectors {
        writeln!(env.stdout, "Selectors         : {}:{}", s.r#type, s.value)?;
    }
    Ok(())
}

async fn ban_or_evict(args: &IdArgs, ban: bool, env: &mut Env<'_>) -> anyhow::Result<()> {
    let id = args.id()?;
    let mut client = Admin::new(&args.common.socket.socket_path).agent().await?;
    let done = if ban {
        client.ban_agent(BanAgentRequest { id: Some(id) }).await
    } else {
        client
            .delete_agent(DeleteAgentRequest { id: Some(id) })
            .await
    };
    done.map_err(RpcError)?;
    if args.common.output == OutputFormat::Json {
        print_json(env.stdout, json!({}))?;
        return Ok(());
    }
    let what = if ban { "banned" } else { "evicted" };
    writeln!(env.stdout, "Agent {what} successfully")?;
    Ok(())
}

/// One agent in SPIRE's layout, followed by a blank line. Times are printed in UTC (SPIRE
/// uses the local zone, which is UTC in its containers).
pub(crate) fn print_agent(out: &mut dyn Write, a: &types::Agent) -> io::Result<()> {
    let id = super::common::id_string(a.id.as_ref());
    writeln!(out, "SPIFFE ID         : {id}")?;
    writeln!(out, "Attestation type  : {}", a.attestation_type)?;
    writeln!(
        out,
        "Expiration time   : {}",
        go_time(a.x509svid_expires_at)
    )?;
    if a.banned {
        writeln!(out, "Banned            : true")?;
    } else {
        writeln!(out, "Serial number     : {}", a.x509svid_serial_number)?;
    }
    writeln!(out, "Can re-attest     : {}", a.can_reattest)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::AdminCommand;
    use crate::cli::tests::parse;

    fn list_args(args: &[&str]) -> ListArgs {
        let mut all = vec!["agent", "list"];
        all.extend(args);
        match parse(&all) {
            AdminCommand::Agent(AgentCommand::List(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn list_flags_build_the_filter() {
        let f = list_args(&[
            "--selector",
            "x509pop:san:a",
            "--match",
            "exact",
            "--banned",
            "true",
            "--can-reattest",
            "false",
            "--attestation-type",
            "x509pop",
            "--expires-before",
            "2024-05-01 12:00:00 +0000 +00",
        ])
        .filter()
        .unwrap();
        assert_eq!(f.by_banned, Some(true));
        assert_eq!(f.by_can_reattest, Some(false));
        assert_eq!(f.by_attestation_type, "x509pop");
        assert_eq!(f.by_expires_before, "2024-05-01 12:00:00 +0000 +00");
        let m = f.by_selector_match.unwrap();
        assert_eq!(
            m.r#match,
            types::selector_match::MatchBehavior::MatchExact as i32
        );
        assert_eq!(m.selectors[0].value, "san:a");
    }

    #[test]
    fn other_tri_state_values_mean_all() {
        let f = list_args(&["--banned", "maybe"]).filter().unwrap();
        assert_eq!(f.by_banned, None);
        assert_eq!(f, Filter::default());
    }

    #[test]
    fn bad_expiry_filters_are_refused() {
        let err = list_args(&["--expires-before", "2024-05-01"])
            .filter()
            .unwrap_err();
        assert!(err.to_string().starts_with("date is not valid"));
    }

    #[test]
    fn agent_layout_matches_spire() {
        let agent = types::Agent {
            id: Some(types::Spiffeid {
                trust_domain: "domain.test".into(),
                path: "/spire/agent/join_token/abc".into(),
            }),
            attestation_type: "join_token".into(),
            x509svid_serial_number: "123456".into(),
            x509svid_expires_at: 1_714_564_800,
            ..Default::default()
        };
        let mut out = Vec::new();
        print_agent(&mut out, &agent).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SPIFFE ID         : spiffe://domain.test/spire/agent/join_token/abc\n\
             Attestation type  : join_token\n\
             Expiration time   : 2024-05-01 12:00:00 +0000 UTC\n\
             Serial number     : 123456\n\
             Can re-attest     : false\n\n"
        );
        let banned = types::Agent {
            banned: true,
            ..agent
        };
        let mut out = Vec::new();
        print_agent(&mut out, &banned).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("\nBanned            : true\n")
        );
    }
}
