//! `token generate`.

use clap::{Args, Subcommand};
use signet_proto::spire::api::server::agent::v1::CreateJoinTokenRequest;

use crate::cli::client::{Admin, RpcError};
use crate::cli::common::{AdminArgs, parse_id_proto};
use crate::cli::env::Env;
use crate::cli::output::{OutputFormat, print_json};
use crate::cli::protojson;

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Generates a join token.
    Generate(GenerateArgs),
}

/// `token generate` flags.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub common: AdminArgs,
    /// Additional SPIFFE ID to assign the token owner (optional): the server creates an
    /// entry for it, parented by the agent that uses the token.
    #[arg(long)]
    pub spiffe_id: Option<String>,
    /// Token TTL in seconds.
    #[arg(long, default_value_t = 600, allow_negative_numbers = true)]
    pub ttl: i64,
}

impl GenerateArgs {
    /// The request the flags describe.
    pub fn request(&self) -> anyhow::Result<CreateJoinTokenRequest> {
        let agent_id = self.spiffe_id.as_deref().map(parse_id_proto).transpose()?;
        let ttl = i32::try_from(self.ttl)
            .map_err(|_| anyhow::anyhow!("invalid value for TTL: {}", self.ttl))?;
        Ok(CreateJoinTokenRequest {
            ttl,
            token: String::new(),
            agent_id,
        })
    }
}

/// Runs one `token` subcommand.
pub(crate) async fn execute(cmd: TokenCommand, env: &mut Env<'_>) -> anyhow::Result<()> {
    let TokenCommand::Generate(args) = cmd;
    let req = args.request()?;
    let token = Admin::new(&args.common.socket.socket_path)
        .agent()
        .await?
        .create_join_token(req)
        .await
        .map_err(RpcError)?
        .into_inner();
    if args.common.output == OutputFormat::Json {
        print_json(env.stdout, protojson::join_token(&token))?;
        return Ok(());
    }
    writeln!(env.stdout, "Token: {}", token.value)?;
    if args.spiffe_id.is_none() {
        writeln!(env.stdout, "Warning: Missing SPIFFE ID.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::AdminCommand;
    use crate::cli::tests::parse;

    fn request(args: &[&str]) -> anyhow::Result<CreateJoinTokenRequest> {
        let mut all = vec!["token", "generate"];
        all.extend(args);
        match parse(&all) {
            AdminCommand::Token(TokenCommand::Generate(a)) => a.request(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_to_ten_minutes_without_an_agent_id() {
        let req = request(&[]).unwrap();
        assert_eq!(req.ttl, 600);
        assert!(req.agent_id.is_none() && req.token.is_empty());
    }

    #[test]
    fn spiffe_id_becomes_the_agent_id() {
        let req = request(&["--spiffe-id", "spiffe://example.org/node", "--ttl", "60"]).unwrap();
        let id = req.agent_id.unwrap();
        assert_eq!(
            (id.trust_domain.as_str(), id.path.as_str()),
            ("example.org", "/node")
        );
        assert_eq!(req.ttl, 60);
        assert!(request(&["--spiffe-id", "spiffe://Bad/x"]).is_err());
    }
}
