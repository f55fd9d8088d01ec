//! The command tree and its flags (clap derive). Long flags are kebab-case; each also has
//! SPIRE's camelCase name as an alias (`--socket-path` / `--socketPath` / `-socketPath`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use signet_common::config::CommonOverrides;

/// `signet-agent`: the Signet agent and a Workload API client.
#[derive(Debug, Parser)]
#[command(name = "signet-agent", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Runs the agent
    Run(RunFlags),
    /// Validates an agent configuration file
    Validate(RunFlags),
    /// Determines agent health status
    Healthcheck(HealthcheckFlags),
    /// Diagnoses mTLS for a workload: PASS/WARN/FAIL per check, with the fix
    Doctor(DoctorFlags),
    /// Talks to the Workload API on the agent's socket
    #[command(subcommand)]
    Api(ApiCommand),
}

/// `signet-agent run`: each flag overrides the matching key of the config file.
#[derive(Debug, Args)]
#[command(
    mut_arg("socket_path", |a| a.help("Path to bind the Workload API socket to")),
    mut_arg("trust_domain", |a| a.help("The trust domain this agent belongs to")),
)]
pub(crate) struct RunFlags {
    /// Path to an agent config file
    #[arg(long, value_name = "PATH", default_value = "conf/agent/agent.conf")]
    pub(crate) config: PathBuf,
    /// Join token to attest with
    #[arg(long, alias = "joinToken")]
    pub(crate) join_token: Option<String>,
    /// IP address or DNS name of the server
    #[arg(long, alias = "serverAddress")]
    pub(crate) server_address: Option<String>,
    /// Path to the server's CA bundle (PEM)
    #[arg(long, alias = "trustBundle")]
    pub(crate) trust_bundle: Option<PathBuf>,
    /// The flags the server has too.
    #[command(flatten)]
    pub(crate) common: CommonOverrides,
}

/// `signet-agent healthcheck`.
#[derive(Debug, Args)]
pub(crate) struct HealthcheckFlags {
    #[command(flatten)]
    pub(crate) socket: SocketFlag,
    /// Perform a less stringent health check
    #[arg(long)]
    pub(crate) shallow: bool,
    /// Print verbose information
    #[arg(long)]
    pub(crate) verbose: bool,
}

/// `signet-agent doctor`: at most one of `--pid`, `--uid`, `--spiffe-id` (none: the
/// caller itself).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("workload").multiple(false))]
pub(crate) struct DoctorFlags {
    /// Path to the agent config file (to find admin_socket_path and data_dir)
    #[arg(long, value_name = "PATH", default_value = "conf/agent/agent.conf")]
    pub(crate) config: PathBuf,
    /// Path to the agent's admin socket [default: admin_socket_path from --config]
    #[arg(long, alias = "adminSocketPath", value_name = "PATH")]
    pub(crate) admin_socket_path: Option<PathBuf>,
    /// The workload's process ID
    #[arg(long, group = "workload")]
    pub(crate) pid: Option<i32>,
    /// The workload's user ID
    #[arg(long, group = "workload")]
    pub(crate) uid: Option<u32>,
    /// The SPIFFE ID the workload should get
    #[arg(long, alias = "spiffeID", group = "workload")]
    pub(crate) spiffe_id: Option<String>,
    /// The SPIFFE ID of the peer the workload talks to (checks the workload can verify it)
    #[arg(long)]
    pub(crate) peer: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Output::Pretty)]
    pub(crate) output: Output,
}

/// The agent's Workload API socket.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct SocketFlag {
    /// Path to the agent's Workload API socket [default: $SPIFFE_ENDPOINT_SOCKET, else
    /// /tmp/spire-agent/public/api.sock]
    #[arg(long, alias = "socketPath", value_name = "PATH")]
    pub(crate) socket_path: Option<PathBuf>,
}

/// Output format of the `api` commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// SPIRE's human-readable text
    #[default]
    Pretty,
    /// The response as protojson (proto field names, bytes in base64)
    Json,
}

/// Flags every one-shot `api` command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct CallFlags {
    #[command(flatten)]
    pub(crate) socket: SocketFlag,
    /// Time to wait for a response (0 waits forever)
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_timeout)]
    pub(crate) timeout: Duration,
    /// Desired output format (`--format` is SPIRE's deprecated name)
    #[arg(long, alias = "format", value_enum, default_value_t = Output::Pretty)]
    pub(crate) output: Output,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ApiCommand {
    /// Fetches X509-SVIDs (the default) or JWT-SVIDs from the Workload API
    Fetch(FetchCommand),
    /// Validates an SVID through the Workload API
    #[command(subcommand)]
    Validate(ValidateCommand),
    /// Attaches to the Workload API and prints updates as they're received
    Watch(Box<WatchFlags>),
}

/// `api fetch` alone fetches X509-SVIDs, like `api fetch x509`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct FetchCommand {
    #[command(subcommand)]
    pub(crate) kind: Option<FetchKind>,
    #[command(flatten)]
    pub(crate) x509: FetchX509Flags,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FetchKind {
    /// Fetches X509 SVIDs from the Workload API
    X509(FetchX509Flags),
    /// Fetches a JWT SVID from the Workload API
    Jwt(FetchJwtFlags),
}

/// `api fetch x509`.
#[derive(Debug, Clone, Args)]
pub(crate) struct FetchX509Flags {
    #[command(flatten)]
    pub(crate) call: CallFlags,
    /// Write SVID data to the specified path (only with pretty output)
    #[arg(long, value_name = "DIR")]
    pub(crate) write: Option<PathBuf>,
    /// Suppress stdout
    #[arg(long)]
    pub(crate) silent: bool,
}

/// `api fetch jwt`.
#[derive(Debug, Clone, Args)]
pub(crate) struct FetchJwtFlags {
    #[command(flatten)]
    pub(crate) call: CallFlags,
    /// Audience values (comma separated; repeatable)
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) audience: Vec<String>,
    /// SPIFFE ID subject (optional)
    #[arg(long, alias = "spiffeID")]
    pub(crate) spiffe_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ValidateCommand {
    /// Validates a JWT SVID
    Jwt(ValidateJwtFlags),
}

/// `api validate jwt`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ValidateJwtFlags {
    #[command(flatten)]
    pub(crate) call: CallFlags,
    /// Expected audience value
    #[arg(long)]
    pub(crate) audience: String,
    /// JWT SVID
    #[arg(long)]
    pub(crate) svid: String,
}

/// `api watch`: prints every update; with `--write DIR` or `--config helper.conf` also keeps
/// files current and reloads a program after each X.509 update (spiffe-helper's job).
#[derive(Debug, Clone, Args)]
pub(crate) struct WatchFlags {
    #[command(flatten)]
    pub(crate) socket: SocketFlag,
    /// Keep SVID, key and bundle files current in DIR (spiffe-helper's `cert_dir`); without
    /// file names, the files `api fetch x509 --write` writes
    #[arg(long, value_name = "DIR")]
    pub(crate) write: Option<PathBuf>,
    /// Read a spiffe-helper configuration file (HCL, spiffe-helper's keys); flags override it
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) helper: HelperFlags,
}

/// spiffe-helper's settings as flags (each overrides the config file's key of that name).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct HelperFlags {
    /// File name of the X.509-SVID (leaf, then intermediates) in DIR
    #[arg(long, value_name = "NAME")]
    pub(crate) svid_file_name: Option<String>,
    /// File name of the SVID's private key (PKCS#8 PEM) in DIR
    #[arg(long, value_name = "NAME")]
    pub(crate) svid_key_file_name: Option<String>,
    /// File name of the trust bundle in DIR
    #[arg(long, value_name = "NAME")]
    pub(crate) svid_bundle_file_name: Option<String>,
    /// Put the intermediates into the bundle file instead of the SVID file
    #[arg(long)]
    pub(crate) add_intermediates_to_bundle: bool,
    /// Append the federated trust domains' authorities to the bundle file
    #[arg(long)]
    pub(crate) include_federated_domains: bool,
    /// Leave expired certificates out of the SVID and bundle files
    #[arg(long)]
    pub(crate) omit_expired: bool,
    /// Write the SVID with this hint instead of the first (default) one
    #[arg(long)]
    pub(crate) hint: Option<String>,
    /// Octal mode of certificate files [default: 0644]
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub(crate) cert_file_mode: Option<i64>,
    /// Octal mode of the key file [default: 0600]
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub(crate) key_file_mode: Option<i64>,
    /// File name, in DIR, of the JWT bundles (JSON: trust domain -> base64 JWKS)
    #[arg(long, value_name = "NAME")]
    pub(crate) jwt_bundle_file_name: Option<String>,
    /// Octal mode of the JWT bundle file [default: 0600]
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub(crate) jwt_bundle_file_mode: Option<i64>,
    /// A JWT-SVID to keep current: AUDIENCE[,EXTRA...]=NAME (file NAME in DIR); repeatable
    #[arg(long, value_name = "AUD=NAME")]
    pub(crate) jwt_svid: Vec<String>,
    /// Octal mode of JWT-SVID files [default: 0600]
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub(crate) jwt_svid_file_mode: Option<i64>,
    /// Program to start after the first X.509 update, and to signal (or restart, if it
    /// exited) after each later one
    #[arg(long, value_name = "PATH")]
    pub(crate) cmd: Option<String>,
    /// Arguments of --cmd, split at spaces ("double quotes" group, as in spiffe-helper)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub(crate) cmd_args: Option<String>,
    /// Signal sent to --cmd's process and to --pid-file-name's after each X.509 update
    #[arg(long, value_name = "SIGNAL")]
    pub(crate) renew_signal: Option<String>,
    /// File holding the PID of a process to signal after each X.509 update (re-read each time)
    #[arg(long, value_name = "PATH")]
    pub(crate) pid_file_name: Option<PathBuf>,
    /// false: write the files once and exit (spiffe-helper's `-daemon-mode=false`)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) daemon_mode: Option<bool>,
}

impl HelperFlags {
    /// Whether any flag was given.
    pub(crate) fn any(&self) -> bool {
        let Self {
            svid_file_name,
            svid_key_file_name,
            svid_bundle_file_name,
            add_intermediates_to_bundle,
            include_federated_domains,
            omit_expired,
            hint,
            cert_file_mode,
            key_file_mode,
            jwt_bundle_file_name,
            jwt_bundle_file_mode,
            jwt_svid,
            jwt_svid_file_mode,
            cmd,
            cmd_args,
            renew_signal,
            pid_file_name,
            daemon_mode,
        } = self;
        svid_file_name.is_some()
            || svid_key_file_name.is_some()
            || svid_bundle_file_name.is_some()
            || *add_intermediates_to_bundle
            || *include_federated_domains
            || *omit_expired
            || hint.is_some()
            || cert_file_mode.is_some()
            || key_file_mode.is_some()
            || jwt_bundle_file_name.is_some()
            || jwt_bundle_file_mode.is_some()
            || !jwt_svid.is_empty()
            || jwt_svid_file_mode.is_some()
            || cmd.is_some()
            || cmd_args.is_some()
            || renew_signal.is_some()
            || pid_file_name.is_some()
            || daemon_mode.is_some()
    }
}

/// An octal file mode (`0644`, `644`, `0o644`).
fn parse_mode(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    i64::from_str_radix(digits, 8).map_err(|_| format!("{s:?} is not an octal file mode"))
}

/// `5s`, `1m30s`, `500ms`; a bare `0` disables the timeout, as in SPIRE.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}
