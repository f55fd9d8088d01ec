//! `federation create|update|list|show|delete|refresh`: SPIRE's commands over the
//! TrustDomain API, with SPIRE's flags, JSON data file and output.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::{Value, json};
use signet_proto::spire::api::server::trustdomain::v1::{
    BatchCreateFederationRelationshipRequest, BatchDeleteFederationRelationshipRequest,
    BatchUpdateFederationRelationshipRequest, GetFederationRelationshipRequest,
    ListFederationRelationshipsRequest, RefreshBundleRequest,
};
use signet_proto::types::{self, federation_relationship::BundleEndpointProfile as Profile};

use crate::cli::bundle::BundleFormat;
use crate::cli::bundle_format;
use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{AdminArgs, read_input};
use crate::cli::env::Env;
use crate::cli::output::{OutputFormat, code_name, plural, print_json};
use crate::cli::protojson;

/// `federation` subcommands.
#[derive(Debug, Subcommand)]
pub enum FederationCommand {
    /// Creates a dynamic federation relationship with a foreign trust domain.
    Create(WriteArgs),
    /// Updates a dynamic federation relationship with a foreign trust domain.
    Update(WriteArgs),
    /// Lists federation relationships.
    List(ListArgs),
    /// Shows a dynamic federation relationship.
    Show(ShowArgs),
    /// Deletes a dynamic federation relationship.
    Delete(IdArgs),
    /// Refreshes the bundle from the specified federated trust domain.
    Refresh(IdArgs),
}

/// `federation create|update` flags.
#[derive(Debug, Clone, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Path to a file of federation relationships in JSON (`-` for standard input).
    #[arg(long)]
    pub data: Option<String>,
    /// Name of the trust domain to federate with (e.g., example.org).
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// URL of the SPIFFE bundle endpoint that provides the trust bundle (HTTPS).
    #[arg(long = "bundle-endpoint-url")]
    pub bundle_endpoint_url: Option<String>,
    /// Endpoint profile type (`https_web` or `https_spiffe`).
    #[arg(long)]
    pub bundle_endpoint_profile: Option<String>,
    /// SPIFFE ID of the bundle endpoint server (`https_spiffe` only).
    #[arg(long = "endpoint-spiffe-id")]
    pub endpoint_spiffe_id: Option<String>,
    /// Path to the trust domain bundle data (optional).
    #[arg(long)]
    pub trust_domain_bundle_path: Option<String>,
    /// The format of the bundle data.
    #[arg(long, value_enum, ignore_case = true, default_value_t)]
    pub trust_domain_bundle_format: BundleFormat,
}

/// `federation list` flags.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: AdminArgs,
}

/// `federation show` flags.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The trust domain name of the federation relationship to show.
    #[arg(long)]
    pub trust_domain: Option<String>,
}

/// `federation delete|refresh` flags.
#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Name of the trust domain.
    #[arg(long)]
    pub id: Option<String>,
}

/// Runs one `federation` subcommand.
pub(crate) async fn execute(cmd: FederationCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    match cmd {
        FederationCommand::Create(args) => write(&args, false, env).await,
        FederationCommand::Update(args) => write(&args, true, env).await,
        FederationCommand::List(args) => list(&args, env).await,
        FederationCommand::Show(args) => show(&args, env).await,
        FederationCommand::Delete(args) => delete(&args, env).await,
        FederationCommand::Refresh(args) => refresh(&args, env).await,
    }
}

/// One relationship of a `--data` file (SPIRE's field names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RelationshipData {
    #[serde(default)]
    trust_domain: String,
    #[serde(default, rename = "bundleEndpointURL")]
    bundle_endpoint_url: String,
    #[serde(default)]
    bundle_endpoint_profile: String,
    #[serde(default, rename = "endpointSPIFFEID")]
    endpoint_spiffe_id: String,
    #[serde(default)]
    trust_domain_bundle: Option<Value>,
    #[serde(default)]
    trust_domain_bundle_format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataFile {
    #[serde(default)]
    federation_relationships: Vec<RelationshipData>,
}

/// The bundle's raw text and format, from a file or the data file.
enum BundleSource {
    None,
    Path(String),
    Inline(Value),
}

fn to_proto(
    d: &RelationshipData,
    bundle: BundleSource,
    format: BundleFormat,
) -> anyhow::Result<types::FederationRelationship> {
    if d.trust_domain.is_empty() {
        anyhow::bail!("trust domain is required");
    }
    if d.bundle_endpoint_url.is_empty() {
        anyhow::bail!("bundle endpoint URL is required");
    }
    let mut bundle_td = d.trust_domain.clone();
    let profile = match d.bundle_endpoint_profile.as_str() {
        "https_web" => Profile::HttpsWeb(types::HttpsWebProfile {}),
        "https_spiffe" => {
            if d.endpoint_spiffe_id.is_empty() {
                anyhow::bail!(
                    "endpoint SPIFFE ID is required if 'https_spiffe' endpoint profile is set"
                );
            }
            let id = signet_common::id::parse_id(&d.endpoint_spiffe_id)
                .context("cannot parse bundle endpoint SPIFFE ID")?;
            bundle_td = id.trust_domain_name().to_owned();
            Profile::HttpsSpiffe(types::HttpsspiffeProfile {
                endpoint_spiffe_id: d.endpoint_spiffe_id.clone(),
            })
        }
        other => anyhow::bail!("unknown bundle endpoint profile type: {other:?}"),
    };
    let parse = |bytes: &[u8]| match format {
        BundleFormat::Pem => bundle_format::from_pem(&bundle_td, bytes),
        BundleFormat::Spiffe => bundle_format::from_spiffe_json(&bundle_td, bytes),
    };
    let trust_domain_bundle = match bundle {
        BundleSource::None => None,
        BundleSource::Path(path) => {
            let bytes = std::fs::read(&path).context("cannot read bundle file")?;
            Some(parse(&bytes).context("cannot parse bundle file")?)
        }
        BundleSource::Inline(raw) => {
            let bytes = match (format, raw) {
                (BundleFormat::Pem, Value::String(pem)) => pem.into_bytes(),
                (BundleFormat::Pem, _) => {
                    anyhow::bail!(
                        "cannot parse bundle raw message: a PEM bundle must be a JSON string"
                    )
                }
                (BundleFormat::Spiffe, raw) => raw.to_string().into_bytes(),
            };
            Some(parse(&bytes).context("cannot parse bundle raw message")?)
        }
    };
    Ok(types::FederationRelationship {
        trust_domain: d.trust_domain.clone(),
        bundle_endpoint_url: d.bundle_endpoint_url.clone(),
        bundle_endpoint_profile: Some(profile),
        trust_domain_bundle,
    })
}

impl WriteArgs {
    fn flags_set(&self) -> bool {
        self.trust_domain.is_some()
            || self.bundle_endpoint_url.is_some()
            || self.bundle_endpoint_profile.is_some()
            || self.endpoint_spiffe_id.is_some()
            || self.trust_domain_bundle_path.is_some()
            || self.trust_domain_bundle_format != BundleFormat::Pem
    }

    /// The relationships to send: from `--data`, or from the flags.
    fn relationships(
        &self,
        env: &mut Env<'_>,
    ) -> anyhow::Result<Vec<types::FederationRelationship>> {
        if let Some(path) = &self.data {
            if self.flags_set() {
                anyhow::bail!(
                    "cannot use other flags to specify relationship fields when 'data' flag is set"
                );
            }
            let bytes = read_input(Some(path), env)?;
            let file: DataFile = serde_json::from_slice(&bytes).context("failed to parse JSON")?;
            return file
                .federation_relationships
                .into_iter()
                .enumerate()
                .map(|(i, mut d)| {
                    let format = match d.trust_domain_bundle_format.as_deref() {
                        None | Some("pem") => BundleFormat::Pem,
                        Some("spiffe") => BundleFormat::Spiffe,
                        Some(other) => anyhow::bail!(
                            "could not parse item {i}: bundle format {other:?} is unsupported"
                        ),
                    };
                    let bundle = d
                        .trust_domain_bundle
                        .take()
                        .map_or(BundleSource::None, BundleSource::Inline);
                    to_proto(&d, bundle, format)
                        .with_context(|| format!("could not parse item {i}"))
                })
                .collect();
        }
        let d = RelationshipData {
            trust_domain: self.trust_domain.clone().unwrap_or_default(),
            bundle_endpoint_url: self.bundle_endpoint_url.clone().unwrap_or_default(),
            bundle_endpoint_profile: self.bundle_endpoint_profile.clone().unwrap_or_default(),
            endpoint_spiffe_id: self.endpoint_spiffe_id.clone().unwrap_or_default(),
            ..RelationshipData::default()
        };
        let bundle = self
            .trust_domain_bundle_path
            .clone()
            .map_or(BundleSource::None, BundleSource::Path);
        Ok(vec![to_proto(&d, bundle, self.trust_domain_bundle_format)?])
    }
}

/// `FederationRelationship` or null, as protojson.
fn relationship_json(fr: Option<&types::FederationRelationship>) -> Value {
    let Some(fr) = fr else { return Value::Null };
    let mut obj = json!({
        "trust_domain": fr.trust_domain,
        "bundle_endpoint_url": fr.bundle_endpoint_url,
        "trust_domain_bundle": protojson::bundle(fr.trust_domain_bundle.as_ref()),
    });
    match &fr.bundle_endpoint_profile {
        Some(Profile::HttpsWeb(_)) => obj["https_web"] = json!({}),
        Some(Profile::HttpsSpiffe(p)) => {
            obj["https_spiffe"] = json!({"endpoint_spiffe_id": p.endpoint_spiffe_id});
        }
        None => {}
    }
    obj
}

/// SPIRE's layout of one relationship.
fn print_relationship(
    out: &mut dyn Write,
    fr: &types::FederationRelationship,
) -> std::io::Result<()> {
    writeln!(out, "Trust domain              : {}", fr.trust_domain)?;
    writeln!(
        out,
        "Bundle endpoint URL       : {}",
        fr.bundle_endpoint_url
    )?;
    match &fr.bundle_endpoint_profile {
        Some(Profile::HttpsWeb(_)) => writeln!(out, "Bundle endpoint profile   : https_web")?,
        Some(Profile::HttpsSpiffe(p)) => {
            writeln!(out, "Bundle endpoint profile   : https_spiffe")?;
            writeln!(out, "Endpoint SPIFFE ID        : {}", p.endpoint_spiffe_id)?;
        }
        None => {}
    }
    Ok(())
}

async fn write(args: &WriteArgs, update: bool, env: &mut Env<'_>) -> anyhow::Result<()> {
    let rels = args.relationships(env)?;
    let mut client = Admin::new(&args.common.socket.socket_path)
        .trust_domain()
        .await?;
    let results: Vec<(Option<types::Status>, Option<types::FederationRelationship>)> = if update {
        client
            .batch_update_federation_relationship(BatchUpdateFederationRelationshipRequest {
                federation_relationships: rels.clone(),
                input_mask: None,
                output_mask: None,
            })
            .await
            .map_err(RpcError)
            .context("request failed")?
            .into_inner()
            .results
            .into_iter()
            .map(|r| (r.status, r.federation_relationship))
            .collect()
    } else {
        client
            .batch_create_federation_relationship(BatchCreateFederationRelationshipRequest {
                federation_relationships: rels.clone(),
                output_mask: None,
            })
            .await
            .map_err(RpcError)
            .context("request failed")?
            .into_inner()
            .results
            .into_iter()
            .map(|r| (r.status, r.federation_relationship))
            .collect()
    };
    if args.common.output == OutputFormat::Json {
        let items: Vec<Value> = results
            .iter()
            .map(|(status, fr)| {
                json!({
                    "status": protojson::status(status.as_ref()),
                    "federation_relationship": relationship_json(fr.as_ref()),
                })
            })
            .collect();
        print_json(env.stdout, json!({ "results": items }))?;
        return Ok(());
    }
    let (verb, noun) = if update {
        ("update", "updated")
    } else {
        ("create", "created")
    };
    let mut failed = Vec::new();
    for (i, (status, fr)) in results.iter().enumerate() {
        match (status, fr) {
            (Some(s), _) if s.code != 0 => failed.push((i, s)),
            (_, Some(fr)) => {
                writeln!(env.stdout)?;
                print_relationship(env.stdout, fr)?;
            }
            (_, None) => {}
        }
    }
    for (i, s) in &failed {
        writeln!(env.stdout)?;
        writeln!(
            env.stderr,
            "Failed to {verb} the following federation relationship (code: {}, msg: {:?}):",
            code_name(s.code),
            s.message
        )?;
        if let Some(fr) = rels.get(*i) {
            print_relationship(env.stderr, fr)?;
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("failed to {verb} one or more federation relationships");
    }
    let _ = noun;
    Ok(())
}

async fn list(args: &ListArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let mut client = Admin::new(&args.common.socket.socket_path)
        .trust_domain()
        .await?;
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let resp = client
            .list_federation_relationships(ListFederationRelationshipsRequest {
                output_mask: None,
                page_size: 0,
                page_token: page_token.clone(),
                include_static: false,
            })
            .await
            .map_err(RpcError)
            .context("error listing federation relationship")?
            .into_inner();
        all.extend(resp.federation_relationships);
        if resp.next_page_token.is_empty() || resp.next_page_token == page_token {
            break;
        }
        page_token = resp.next_page_token;
    }
    if args.common.output == OutputFormat::Json {
        let items: Vec<Value> = all.iter().map(|fr| relationship_json(Some(fr))).collect();
        print_json(
            env.stdout,
            json!({"federation_relationships": items, "next_page_token": ""}),
        )?;
        return Ok(());
    }
    writeln!(
        env.stdout,
        "Found {} {}",
        all.len(),
        plural(
            all.len(),
            "federation relationship",
            "federation relationships"
        )
    )?;
    for fr in &all {
        writeln!(env.stdout)?;
        print_relationship(env.stdout, fr)?;
    }
    Ok(())
}

async fn show(args: &ShowArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let Some(td) = args.trust_domain.clone().filter(|t| !t.is_empty()) else {
        anyhow::bail!("a trust domain name is required");
    };
    let fr = Admin::new(&args.common.socket.socket_path)
        .trust_domain()
        .await?
        .get_federation_relationship(GetFederationRelationshipRequest {
            trust_domain: td.clone(),
            include_static: false,
            output_mask: None,
        })
        .await
        .map_err(RpcError)
        .context("error showing federation relationship")?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        print_json(env.stdout, relationship_json(Some(&fr)))?;
        return Ok(());
    }
    write!(
        env.stdout,
        "Found a federation relationship with trust domain {td}:\n\n"
    )?;
    print_relationship(env.stdout, &fr)?;
    Ok(())
}

async fn delete(args: &IdArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let Some(id) = args.id.clone().filter(|t| !t.is_empty()) else {
        anyhow::bail!("id is required");
    };
    let resp = Admin::new(&args.common.socket.socket_path)
        .trust_domain()
        .await?
        .batch_delete_federation_relationship(BatchDeleteFederationRelationshipRequest {
            trust_domains: vec![id],
        })
        .await
        .map_err(RpcError)
        .context("failed to delete federation relationship")?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        let items: Vec<Value> = resp
            .results
            .iter()
            .map(|r| json!({"status": protojson::status(r.status.as_ref()), "trust_domain": r.trust_domain}))
            .collect();
        print_json(env.stdout, json!({ "results": items }))?;
        return Ok(());
    }
    let first = resp
        .results
        .first()
        .context("the server returned no result")?;
    match &first.status {
        Some(s) if s.code != 0 => anyhow::bail!(
            "failed to delete federation relationship {:?}: {}",
            first.trust_domain,
            s.message
        ),
        _ => writeln!(env.stdout, "federation relationship deleted.")?,
    }
    Ok(())
}

async fn refresh(args: &IdArgs, env: &mut Env<'_>) -> anyhow::Result<()> {
    let Some(id) = args.id.clone().filter(|t| !t.is_empty()) else {
        anyhow::bail!("id is required");
    };
    let result = Admin::new(&args.common.socket.socket_path)
        .trust_domain()
        .await?
        .refresh_bundle(RefreshBundleRequest {
            trust_domain: id.clone(),
        })
        .await;
    match result {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::NotFound => {
            anyhow::bail!("there is no federation relationship with trust domain {id:?}")
        }
        Err(s) => return Err(RpcError(s)).context("failed to refresh bundle"),
    }
    if args.common.output == OutputFormat::Json {
        print_json(env.stdout, json!({"code": 0, "message": "OK"}))?;
        return Ok(());
    }
    writeln!(env.stdout, "Bundle refreshed")?;
    Ok(())
}
