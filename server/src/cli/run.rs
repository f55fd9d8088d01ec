//! `run` flags, turned into the server's [`RunArgs`].

use std::path::PathBuf;

use clap::Args;
use signet_common::config::CommonOverrides;

use crate::config::RunArgs;

/// `run` flags; each overrides the matching key of the config file.
#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("socket_path", |a| a.help("Path to bind the admin API socket to")),
    mut_arg("trust_domain", |a| a.help("The trust domain that this server belongs to")),
    mut_arg("data_dir", |a| a.help("Directory to store runtime data to")),
)]
pub struct RunFlags {
    /// Path to a server config file.
    #[arg(long, default_value = "conf/server/server.conf")]
    pub config: PathBuf,
    /// IP address or DNS name of the server.
    #[arg(long)]
    pub bind_address: Option<String>,
    /// The flags the agent has too.
    #[command(flatten)]
    pub common: CommonOverrides,
}

impl From<RunFlags> for RunArgs {
    fn from(f: RunFlags) -> Self {
        Self {
            common: CommonOverrides {
                config: f.config,
                ..f.common
            },
            bind_address: f.bind_address,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_args(args: &[&str]) -> RunArgs {
        let argv = ["signet-server", "run"]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(flags) => flags.into(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_to_spires_config_path() {
        let a = run_args(&[]);
        assert_eq!(a.config, PathBuf::from("conf/server/server.conf"));
        assert!(a.bind_address.is_none() && a.socket_path.is_none() && !a.expand_env);
    }

    #[test]
    fn flags_override_the_config() {
        let a = run_args(&[
            "--config",
            "s.conf",
            "--bind-address",
            "127.0.0.1",
            "--server-port",
            "9081",
            "--data-dir",
            "/d",
            "--log-level",
            "DEBUG",
            "--trust-domain",
            "example.org",
            "--socket-path",
            "/s.sock",
            "--expand-env",
        ]);
        assert_eq!(a.config, PathBuf::from("s.conf"));
        assert_eq!(a.bind_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(a.server_port, Some(9081));
        assert_eq!(a.data_dir, Some(PathBuf::from("/d")));
        assert_eq!(a.log_level.as_deref(), Some("DEBUG"));
        assert_eq!(a.trust_domain.as_deref(), Some("example.org"));
        assert_eq!(a.socket_path, Some(PathBuf::from("/s.sock")));
        assert!(a.expand_env);
    }
}
