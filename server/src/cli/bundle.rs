//! `bundle show|list|set|delete|count`.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use signet_proto::spire::api::server::bundle::v1::{
    BatchDeleteFederatedBundleRequest, BatchSetFederatedBundleRequest, CountBundlesRequest,
    GetBundleRequest, GetFederatedBundleRequest, ListFederatedBundlesRequest,
    batch_delete_federated_bundle_request::Mode,
};
use signet_proto::types;

use crate::cli::bundle_format;
use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{AdminArgs, parse_td_name, read_input};
use crate::cli::env::Env;
use crate::cli::output::{OutputFormat, plural, print_json};
use crate::cli::protojson;

/// `bundle` subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Prints the server CA bundle.
    Show(ShowArgs),
    /// Lists federated bundle data.
    List(ListArgs),
    /// Creates or updates federated bundle data.
    Set(SetArgs),
    /// Deletes federated bundle data.
    Delete(DeleteArgs),
    /// Counts bundles.
    Count(CountArgs),
}

/// A bundle's on-disk format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum BundleFormat {
    /// The X.509 roots as PEM certificates.
    #[default]
    Pem,
    /// A SPIFFE bundle document (JWKS).
    Spiffe,
}

/// `bundle show` flags.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The format to show the bundle in (pretty output only).
    #[arg(long, value_enum, ignore_case = true, default_value_t)]
    pub format: BundleFormat,
}

/// `bundle list` flags.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// SPIFFE ID of the trust domain (only that bundle is shown).
    #[arg(long)]
    pub id: Option<String>,
    /// The format to list federated bundles in (pretty output only).
    #[arg(long, value_enum, ignore_case = true, default_value_t)]
    pub format: BundleFormat,
}

/// `bundle set` flags.
#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// SPIFFE ID of the trust domain.
    #[arg(long)]
    pub id: Option<String>,
    /// Path to the bundle data (standard input when absent).
    #[arg(long)]
    pub path: Option<String>,
    /// The format of the bundle data.
    #[arg(long, value_enum, ignore_case = true, default_value_t)]
    pub format: BundleFormat,
}

/// `bundle delete` mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum DeleteMode {
    /// Refuse when entries federate with the trust domain.
    #[default]
    Restrict,
    /// Delete the entries that federate with it too.
    Delete,
    /// Remove the trust domain from those entries' federates-with.
    Dissociate,
}

/// `bundle delete` flags.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// SPIFFE ID of the trust domain.
    #[arg(long)]
    pub id: Option<String>,
    /// Deletion mode.
    #[arg(long, value_enum, default_value_t)]
    pub mode: DeleteMode,
}

/// `bundle count` flags.
#[derive(Debug, Clone, Args)]
pub struct CountArgs {
    #[command(flatten)]
    pub common: AdminArgs,
}

/// Runs one `bundle` subcommand.
pub(crate) async fn execute(cmd: BundleCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    match cmd {
        BundleCommand::Show(args) => show(&args, env).await,
        BundleCommand::List(args) => list(&args, env).await,
        BundleCommand::Set(args) => set(&args, env).await,
        BundleCommand::Delete(args) => delete(&args, env).await,
        BundleCommand::Count(args) => count(&args, env).await,
    }
}

async fn show(args: &ShowArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let bundle = Admin::new(&args.common.socket.socket_path)
        .bundle()
        .await?
        .get_bundle(GetBundleRequest { output_mask: None })
        .await
        .map_err(RpcError)?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        print_json(env.stdout, protojson::bundle(Some(&bundle)))?;
        return Ok(());
    }
    print_bundle(env.stdout, &bundle, args.format, false)
}

async fn list(args: &ListArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let td = args.id.as_deref().map(parse_td_name).transpose()?;
    let mut client = Admin::new(&args.common.socket.socket_path).bundle().await?;
    let json = args.common.output == OutputFormat::Json;
    if let Some(td) = td {
        let bundle = client
            .get_federated_bundle(GetFederatedBundleRequest {
                trust_domain: td,
                output_mask: None,
            })
            .await
            .map_err(RpcError)?
            .into_inner();
        if json {
            print_json(env.stdout, protojson::bundle(Some(&bundle)))?;
            return Ok(());
        }
        return print_bundle(env.stdout, &bundle, args.format, false);
    }
    let mut bundles = Vec::new();
    let mut page_token = String::new();
    loop {
        let resp = client
            .list_federated_bundles(ListFederatedBundlesRequest {
                output_mask: None,
                page_size: 0,
                page_token: page_token.clone(),
            })
            .await
            .map_err(RpcError)?
            .into_inner();
        bundles.extend(resp.bundles);
        if resp.next_page_token.is_empty() || resp.next_page_token == page_token {
            break;
        }
        page_token = resp.next_page_token;
    }
    if json {
        let items: Vec<Value> = bundles.iter().map(|b| protojson::bundle(Some(b))).collect();
        print_json(env.stdout, json!({"bundles": items, "next_page_token": ""}))?;
        return Ok(());
    }
    for (i, bundle) in bundles.iter().enumerate() {
        if i != 0 {
            writeln!(env.stdout)?;
        }
        print_bundle(env.stdout, bundle, args.format, true)?;
    }
    Ok(())
}

/// Prints one bundle in `format`, under SPIRE's banner naming its trust domain if `header`.
fn print_bundle(
    out: &mut dyn Write,
    bundle: &types::Bundle,
    format: BundleFormat,
    header: bool,
) -> anyhow::Result<()> {
    if header {
        let stars = "*".repeat(40);
        write!(out, "{stars}\n* {}\n{stars}\n", bundle.trust_domain)?;
    }
    match format {
        BundleFormat::Pem => write!(out, "{}", bundle_format::to_pem(bundle)?)?,
        BundleFormat::Spiffe => writeln!(out, "{}", bundle_format::to_spiffe_json(bundle)?)?,
    }
    Ok(())
}

impl SetArgs {
    /// The bundle to send, read from `--path` or standard input.
    pub fn bundle(&self, env: &mut Env<'_>) -> anyhow::Result<types::Bundle> {
        let Some(id) = &self.id else {
            anyhow::bail!("id flag is required");
        };
        let td = parse_td_name(id)?;
        let data = read_input(self.path.as_deref(), env).context("unable to load bundle data")?;
        match self.format {
            BundleFormat::Pem => {
                bundle_format::from_pem(&td, &data).context("unable to parse bundle data")
            }
            BundleFormat::Spiffe => bundle_format::from_spiffe_json(&td, &data)
                .context("unable to parse to spiffe bundle"),
        }
    }
}

async fn set(args: &SetArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let bundle = args.bundle(env)?;
    let resp = Admin::new(&args.common.socket.socket_path)
        .bundle()
        .await?
        .batch_set_federated_bundle(BatchSetFederatedBundleRequest {
            bundle: vec![bundle],
            output_mask: None,
        })
        .await
        .map_err(RpcError)
        .context("failed to set federated bundle")?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        let results: Vec<Value> = resp
            .results
            .iter()
            .map(|r| {
                json!({
                    "status": protojson::status(r.status.as_ref()),
                    "bundle": protojson::bundle(r.bundle.as_ref()),
                })
            })
            .collect();
        print_json(env.stdout, json!({ "results": results }))?;
        return Ok(());
    }
    let first = resp
        .results
        .first()
        .context("the server returned no result")?;
    match &first.status {
        Some(s) if s.code != 0 => anyhow::bail!("failed to set federated bundle: {}", s.message),
        _ => writeln!(env.stdout, "bundle set.")?,
    }
    Ok(())
}

async fn delete(args: &DeleteArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let Some(id) = &args.id else {
        anyhow::bail!("id is required");
    };
    let td = parse_td_name(id)?;
    let mode = match args.mode {
        DeleteMode::Restrict => Mode::Restrict,
        DeleteMode::Delete => Mode::Delete,
        DeleteMode::Dissociate => Mode::Dissociate,
    };
    let resp = Admin::new(&args.common.socket.socket_path)
        .bundle()
        .await?
        .batch_delete_federated_bundle(BatchDeleteFederatedBundleRequest {
            trust_domains: vec![td],
            mode: mode as i32,
        })
        .await
        .map_err(RpcError)
        .context("failed to delete federated bundle")?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        let results: Vec<Value> = resp
            .results
            .iter()
            .map(|r| {
                json!({
                    "status": protojson::status(r.status.as_ref()),
                    "trust_domain": r.trust_domain,
                })
            })
            .collect();
        print_json(env.stdout, json!({ "results": results }))?;
        return Ok(());
    }
    let first = resp
        .results
        .first()
        .context("the server returned no result")?;
    match &first.status {
        Some(s) if s.code != 0 => anyhow::bail!(
            "failed to delete federated bundle {:?}: {}",
            first.trust_domain,
            s.message
        ),
        _ => writeln!(env.stdout, "bundle deleted.")?,
    }
    Ok(())
}

async fn count(args: &CountArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let resp = Admin::new(&args.common.socket.socket_path)
        .bundle()
        .await?
        .count_bundles(CountBundlesRequest {})
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
        "{} {}",
        resp.count,
        plural(n, "bundle", "bundles")
    )?;
    Ok(())
}
