//! `signet-agent run`: the flags become [`RunArgs`] and the agent runs until signalled.

use crate::cli::env::Io;
use crate::cli::flags::RunFlags;
use crate::config::RunArgs;
use signet_common::config::CommonOverrides;

impl From<RunFlags> for RunArgs {
    fn from(f: RunFlags) -> Self {
        Self {
            common: CommonOverrides {
                config: f.config,
                ..f.common
            },
            join_token: f.join_token,
            server_address: f.server_address,
            trust_bundle: f.trust_bundle,
        }
    }
}

/// Runs the agent; any error is one line on stderr and exit code 1.
pub(crate) async fn execute(flags: RunFlags, io: &mut Io<'_>) -> u8 {
    match crate::run::run(flags.into()).await {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io.err, "{e:#}");
            1
        }
    }
}

/// `validate`: loads and checks the config as `run` would, starting nothing; prints SPIRE's
/// verdict line, after one `warning:` line per key that has no effect.
pub(crate) fn validate(flags: RunFlags, io: &mut Io<'_>) -> u8 {
    match crate::config::Config::load(&flags.into()) {
        Ok(config) => {
            for note in &config.process.no_effect {
                let _ = writeln!(io.err, "warning: {note}");
            }
            let _ = writeln!(io.out, "SPIRE agent configuration file is valid.");
            0
        }
        Err(e) => {
            let _ = writeln!(io.err, "SPIRE agent configuration file is invalid: {e}");
            1
        }
    }
}
