//! `localauthority x509|jwt show|prepare|activate|taint|revoke` and `upstreamauthority
//! taint|revoke`: forced rotation through the LocalAuthority API, printed as `spire-server`
//! 1.13 prints it.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use signet_proto::spire::api::server::localauthority::v1 as pb;
use signet_proto::spire::api::server::localauthority::v1::local_authority_client::LocalAuthorityClient;
use tonic::transport::Channel;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::AdminArgs;
use crate::cli::env::Env;
use crate::cli::output::{OutputFormat, go_time, print_json};

/// `localauthority` subcommands.
#[derive(Debug, Subcommand)]
pub enum LocalAuthorityCommand {
    /// Manages the local X.509 authorities.
    #[command(subcommand)]
    X509(AuthorityCommand),
    /// Manages the local JWT authorities.
    #[command(subcommand)]
    Jwt(AuthorityCommand),
}

/// What to do with one authority kind.
#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Shows the local authorities (active, prepared, old).
    Show(AdminArgs),
    /// Prepares a new authority: generates a key and publishes it in the bundle.
    Prepare(AdminArgs),
    /// Activates the prepared authority: it signs from now on.
    Activate(IdArgs),
    /// Marks the previously active authority as tainted.
    Taint(IdArgs),
    /// Removes the tainted, previously active authority from the bundle.
    Revoke(IdArgs),
}

/// `--authority-id` plus the admin flags.
#[derive(Debug, Clone, Args)]
pub struct IdArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The authority ID (X.509: hex subject key ID of the CA; JWT: the key ID).
    #[arg(long, default_value = "")]
    pub authority_id: String,
}

/// `upstreamauthority` subcommands.
#[derive(Debug, Subcommand)]
pub enum UpstreamAuthorityCommand {
    /// Marks the upstream X.509 authority that signed the old local authority as tainted.
    Taint(SubjectKeyArgs),
    /// Removes the tainted upstream X.509 authority from the bundle.
    Revoke(SubjectKeyArgs),
}

/// `--subject-key-id` plus the admin flags.
#[derive(Debug, Clone, Args)]
pub struct SubjectKeyArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// The subject key ID of the upstream authority's CA certificate.
    #[arg(long, default_value = "")]
    pub subject_key_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    X509,
    Jwt,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Self::X509 => "X.509",
            Self::Jwt => "JWT",
        }
    }
}

async fn client(args: &AdminArgs) -> anyhow::Result<LocalAuthorityClient<Channel>> {
    let channel = Admin::new(&args.socket.socket_path).channel().await?;
    Ok(LocalAuthorityClient::new(channel))
}

fn require_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty() {
        anyhow::bail!("an authority ID is required");
    }
    Ok(())
}

/// Runs one `localauthority` subcommand.
pub(crate) async fn execute(cmd: LocalAuthorityCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    let (kind, cmd) = match cmd {
        LocalAuthorityCommand::X509(c) => (Kind::X509, c),
        LocalAuthorityCommand::Jwt(c) => (Kind::Jwt, c),
    };
    let noun = kind.noun();
    match cmd {
        AuthorityCommand::Show(args) => {
            let mut c = client(&args).await?;
            let slots = match kind {
                Kind::X509 => c
                    .get_x509_authority_state(pb::GetX509AuthorityStateRequest {})
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        [r.active, r.prepared, r.old]
                    }),
                Kind::Jwt => c
                    .get_jwt_authority_state(pb::GetJwtAuthorityStateRequest {})
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        [r.active, r.prepared, r.old]
                    }),
            }
            .map_err(|e| anyhow::anyhow!("could not get {noun} authorities: {}", RpcError(e)))?;
            show(env, &args, kind, slots)
        }
        AuthorityCommand::Prepare(args) => {
            let mut c = client(&args).await?;
            let state = match kind {
                Kind::X509 => c
                    .prepare_x509_authority(pb::PrepareX509AuthorityRequest {})
                    .await
                    .map(|r| r.into_inner().prepared_authority),
                Kind::Jwt => c
                    .prepare_jwt_authority(pb::PrepareJwtAuthorityRequest {})
                    .await
                    .map(|r| r.into_inner().prepared_authority),
            }
            .map_err(|e| anyhow::anyhow!("could not prepare {noun} authority: {}", RpcError(e)))?;
            one(env, &args, kind, "Prepared", "prepared_authority", state)
        }
        AuthorityCommand::Activate(args) => {
            require_id(&args.authority_id)?;
            let mut c = client(&args.common).await?;
            let authority_id = args.authority_id.clone();
            let state = match kind {
                Kind::X509 => c
                    .activate_x509_authority(pb::ActivateX509AuthorityRequest { authority_id })
                    .await
                    .map(|r| r.into_inner().activated_authority),
                Kind::Jwt => c
                    .activate_jwt_authority(pb::ActivateJwtAuthorityRequest { authority_id })
                    .await
                    .map(|r| r.into_inner().activated_authority),
            }
            .map_err(|e| anyhow::anyhow!("could not activate {noun} authority: {}", RpcError(e)))?;
            one(
                env,
                &args.common,
                kind,
                "Activated",
                "activated_authority",
                state,
            )
        }
        AuthorityCommand::Taint(args) => {
            require_id(&args.authority_id)?;
            let mut c = client(&args.common).await?;
            let authority_id = args.authority_id.clone();
            let state = match kind {
                Kind::X509 => c
                    .taint_x509_authority(pb::TaintX509AuthorityRequest { authority_id })
                    .await
                    .map(|r| r.into_inner().tainted_authority),
                Kind::Jwt => c
                    .taint_jwt_authority(pb::TaintJwtAuthorityRequest { authority_id })
                    .await
                    .map(|r| r.into_inner().tainted_authority),
            }
            .map_err(|e| anyhow::anyhow!("could not taint {noun} authority: {}", RpcError(e)))?;
            one(
                env,
                &args.common,
                kind,
                "Tainted",
                "tainted_authority",
                state,
            )
        }
        AuthorityCommand::Revoke(args) => {
            require_id(&args.authority_id)?;
            let mut c = client(&args.common).await?;
            let authority_id = args.authority_id.clone();
            let state = match kind {
                Kind::X509 => c
                    .revoke_x509_authority(pb::RevokeX509AuthorityRequest { authority_id })
                    .await
                    .map(|r| r.into_inner().revoked_authority),
                Kind::Jwt => c
                    .revoke_jwt_authority(pb::RevokeJwtAuthorityRequest { authority_id })
                    .await
                    .map(|r| r.into_inner().revoked_authority),
            }
            .map_err(|e| anyhow::anyhow!("could not revoke {noun} authority: {}", RpcError(e)))?;
            one(
                env,
                &args.common,
                kind,
                "Revoked",
                "revoked_authority",
                state,
            )
        }
    }
}

/// Runs one `upstreamauthority` subcommand.
pub(crate) async fn execute_upstream(
    cmd: UpstreamAuthorityCommand,
    env: &mut Env<'_>,
) -> anyhow::Result<()> {
    let (verb, args) = match &cmd {
        UpstreamAuthorityCommand::Taint(a) => ("taint", a),
        UpstreamAuthorityCommand::Revoke(a) => ("revoke", a),
    };
    if args.subject_key_id.is_empty() {
        anyhow::bail!("the Subject Key ID of the X.509 upstream authority is required");
    }
    let mut c = client(&args.common).await?;
    let subject_key_id = args.subject_key_id.clone();
    let (title, id) = match cmd {
        UpstreamAuthorityCommand::Taint(_) => (
            "Tainted",
            c.taint_x509_upstream_authority(pb::TaintX509UpstreamAuthorityRequest {
                subject_key_id,
            })
            .await
            .map(|r| r.into_inner().upstream_authority_subject_key_id),
        ),
        UpstreamAuthorityCommand::Revoke(_) => (
            "Revoked",
            c.revoke_x509_upstream_authority(pb::RevokeX509UpstreamAuthorityRequest {
                subject_key_id,
            })
            .await
            .map(|r| r.into_inner().upstream_authority_subject_key_id),
        ),
    };
    let id = id.map_err(|e| {
        anyhow::anyhow!("could not {verb} X.509 upstream authority: {}", RpcError(e))
    })?;
    if args.common.output == OutputFormat::Json {
        print_json(
            env.stdout,
            json!({ "upstream_authority_subject_key_id": id }),
        )?;
        return Ok(());
    }
    writeln!(env.stdout, "{title} X.509 upstream authority:")?;
    writeln!(env.stdout, "  Subject Key ID: {id}")?;
    Ok(())
}

/// The protojson of an `AuthorityState` (int64 as a string), or null.
fn state_json(s: Option<&pb::AuthorityState>) -> Value {
    s.map_or(Value::Null, |s| {
        json!({
            "authority_id": s.authority_id,
            "expires_at": s.expires_at.to_string(),
            "upstream_authority_subject_key_id": s.upstream_authority_subject_key_id,
        })
    })
}

fn print_state(env: &mut Env<'_>, kind: Kind, s: &pb::AuthorityState) -> anyhow::Result<()> {
    writeln!(env.stdout, "  Authority ID: {}", s.authority_id)?;
    writeln!(env.stdout, "  Expires at: {}", go_time(s.expires_at))?;
    if kind == Kind::Jwt {
        return Ok(());
    }
    if s.upstream_authority_subject_key_id.is_empty() {
        writeln!(env.stdout, "  Upstream authority ID: No upstream authority")?;
    } else {
        writeln!(
            env.stdout,
            "  Upstream authority Subject Key ID: {}",
            s.upstream_authority_subject_key_id
        )?;
    }
    Ok(())
}

fn show(
    env: &mut Env<'_>,
    args: &AdminArgs,
    kind: Kind,
    [active, prepared, old]: [Option<pb::AuthorityState>; 3],
) -> anyhow::Result<()> {
    if args.output == OutputFormat::Json {
        print_json(
            env.stdout,
            json!({
                "active": state_json(active.as_ref()),
                "prepared": state_json(prepared.as_ref()),
                "old": state_json(old.as_ref()),
            }),
        )?;
        return Ok(());
    }
    let noun = kind.noun();
    for (i, (title, slot)) in [("Active", active), ("Prepared", prepared), ("Old", old)]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            writeln!(env.stdout)?;
        }
        writeln!(env.stdout, "{title} {noun} authority:")?;
        match slot {
            Some(s) => print_state(env, kind, &s)?,
            None => writeln!(
                env.stdout,
                "  No {} {noun} authority found",
                title.to_lowercase()
            )?,
        }
    }
    Ok(())
}

fn one(
    env: &mut Env<'_>,
    args: &AdminArgs,
    kind: Kind,
    title: &str,
    field: &str,
    state: Option<pb::AuthorityState>,
) -> anyhow::Result<()> {
    if args.output == OutputFormat::Json {
        print_json(env.stdout, json!({ field: state_json(state.as_ref()) }))?;
        return Ok(());
    }
    let noun = kind.noun();
    let Some(state) = state else {
        anyhow::bail!(
            "internal error: expected to have {} {noun} authority information",
            title.to_lowercase()
        );
    };
    writeln!(env.stdout, "{title} {noun} authority:")?;
    print_state(env, kind, &state)
}
