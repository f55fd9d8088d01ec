//! What `api watch` does, decided from its flags and (with `--config`) a spiffe-helper
//! configuration file: which files to keep current, where, with which modes, and what to
//! run or signal after each X.509 update. Flags override the file's keys. The checks and
//! their wording are spiffe-helper's (`cmd/spiffe-helper/config`), plus early refusals of
//! values spiffe-helper would only trip over later (an unknown signal, a bad `cmd_args`).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::cli::addr::{self, DEFAULT_SOCKET_PATH, Endpoint};
use crate::cli::client::CliError;
use crate::cli::cmd_args;
use crate::cli::env::Env;
use crate::cli::flags::WatchFlags;
use crate::cli::helper_config::{self, HelperFile};
use crate::cli::write::{CERT_MODE, KEY_MODE, Modes};

const JWT_FILE_MODE: u32 = 0o600;

/// A watch that writes files (plain `api watch` only prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchPlan {
    pub(crate) endpoint: Endpoint,
    /// false: write everything once and exit.
    pub(crate) daemon: bool,
    pub(crate) x509: Option<X509Files>,
    pub(crate) jwt_bundle: Option<JwtBundleFile>,
    pub(crate) jwt_svids: Vec<JwtSvidFile>,
    /// Picks the SVID (X.509 and JWT) whose hint this is; empty: the first.
    pub(crate) hint: String,
    pub(crate) renew: Renew,
    /// Lines to print on stderr before starting (settings that have no effect).
    pub(crate) warnings: Vec<String>,
}

/// The X.509 files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct X509Files {
    pub(crate) dir: PathBuf,
    pub(crate) layout: Layout,
    pub(crate) modes: Modes,
}

/// Which files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `api fetch x509 --write`'s: every SVID, numbered.
    Spire,
    /// spiffe-helper's: one SVID in three named files.
    Helper(HelperNames),
}

/// spiffe-helper's three files and how they are filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HelperNames {
    pub(crate) svid: String,
    pub(crate) key: String,
    pub(crate) bundle: String,
    pub(crate) add_intermediates_to_bundle: bool,
    pub(crate) include_federated_domains: bool,
    pub(crate) omit_expired: bool,
}

/// `jwt_bundle_file_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtBundleFile {
    pub(crate) path: PathBuf,
    pub(crate) mode: u32,
}

/// One element of `jwt_svids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtSvidFile {
    /// The audience, then the extra audiences.
    pub(crate) audience: Vec<String>,
    pub(crate) path: PathBuf,
    pub(crate) mode: u32,
}

/// What happens after each X.509 update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Renew {
    /// Program and arguments: started after the first update, signalled after later ones
    /// while it runs, started again if it has exited.
    pub(crate) cmd: Option<(String, Vec<String>)>,
    pub(crate) signal: Option<Signal>,
    /// Re-read before each signal.
    pub(crate) pid_file: Option<PathBuf>,
}

impl WatchPlan {
    /// The plan for `flags`; `None` for a plain, printing watch.
    pub(crate) fn from_flags(flags: &WatchFlags, env: &Env) -> Result<Option<Self>, CliError> {
        let file = match &flags.config {
            Some(path) => Some(helper_config::load(path)?),
            None => None,
        };
        if file.is_none() && flags.write.is_none() {
            if flags.helper.any() {
                return Err(CliError::new(
                    "api watch: file and reload flags need --write DIR or --config FILE",
                ));
            }
            return Ok(None);
        }
        let merged = merge(file.unwrap_or_default(), flags);
        let endpoint = match &flags.socket.socket_path {
            Some(_) => crate::cli::client::endpoint(&flags.socket, env)?,
            None => agent_address(merged.agent_address.as_deref(), env)?,
        };
        plan(merged, flags.write.is_some(), endpoint).map(Some)
    }
}

/// The file's keys with the flags laid over them.
fn merge(mut f: HelperFile, flags: &WatchFlags) -> HelperFile {
    let h = &flags.helper;
    fn over<T: Clone>(slot: &mut Option<T>, flag: Option<&T>) {
        if let Some(v) = flag {
            *slot = Some(v.clone());
        }
    }
    over(&mut f.cert_dir, flags.write.as_ref());
    over(&mut f.svid_file_name, h.svid_file_name.as_ref());
    over(&mut f.svid_key_file_name, h.svid_key_file_name.as_ref());
    over(
        &mut f.svid_bundle_file_name,
        h.svid_bundle_file_name.as_ref(),
    );
    over(&mut f.hint, h.hint.as_ref());
    over(&mut f.cert_file_mode, h.cert_file_mode.as_ref());
    over(&mut f.key_file_mode, h.key_file_mode.as_ref());
    over(&mut f.jwt_bundle_file_name, h.jwt_bundle_file_name.as_ref());
    over(&mut f.jwt_bundle_file_mode, h.jwt_bundle_file_mode.as_ref());
    over(&mut f.jwt_svid_file_mode, h.jwt_svid_file_mode.as_ref());
    over(&mut f.cmd, h.cmd.as_ref());
    over(&mut f.cmd_args, h.cmd_args.as_ref());
    over(&mut f.renew_signal, h.renew_signal.as_ref());
    over(&mut f.pid_file_name, h.pid_file_name.as_ref());
    over(&mut f.daemon_mode, h.daemon_mode.as_ref());
    for (flag, slot) in [
        (
            h.add_intermediates_to_bundle,
            &mut f.add_intermediates_to_bundle,
        ),
        (
            h.include_federated_domains,
            &mut f.include_federated_domains,
        ),
        (h.omit_expired, &mut f.omit_expired),
    ] {
        if flag {
            *slot = Some(true);
        }
    }
    if !h.jwt_svid.is_empty() {
        let blocks = h.jwt_svid.iter().map(|spec| jwt_svid_flag(spec)).collect();
        f.jwt_svids = Some(blocks);
    }
    f
}

/// `AUDIENCE[,EXTRA...]=NAME`.
fn jwt_svid_flag(spec: &str) -> helper_config::JwtSvidBlock {
    let (audiences, name) = spec.rsplit_once('=').unwrap_or((spec, ""));
    let mut audiences = audiences.split(',').map(str::to_owned);
    helper_config::JwtSvidBlock {
        jwt_audience: audiences.next(),
        jwt_extra_audiences: Some(audiences.collect()),
        jwt_svid_file_name: Some(name.to_owned()),
    }
}

/// `agent_address`: a socket path (spiffe-helper dials `unix://` + it), or a
/// `unix:`/`tcp://` address; absent, `SPIFFE_ENDPOINT_SOCKET`, then SPIRE's default.
fn agent_address(value: Option<&str>, env: &Env) -> Result<Endpoint, CliError> {
    match value.filter(|v| !v.is_empty()) {
        None => match env
            .endpoint_socket
            .as_deref()
            .filter(|v| !v.trim().is_empty())
        {
            Some(_) => addr::resolve(None, env.endpoint_socket.as_deref()).map_err(CliError::new),
            None => Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET_PATH))),
        },
        Some(v) if v.starts_with("unix:") || v.contains("://") => addr::parse_endpoint(v)
            .map_err(|e| CliError::new(e.replace("SPIFFE_ENDPOINT_SOCKET", "agent_address"))),
        Some(v) => addr::resolve(Some(Path::new(v)), None).map_err(CliError::new),
    }
}

fn plan(f: HelperFile, write_flag: bool, endpoint: Endpoint) -> Result<WatchPlan, CliError> {
    let err = |m: &str| Err(CliError::new(m.to_owned()));
    let daemon = f.daemon_mode.unwrap_or(true);
    let mut warnings = Vec::new();

    let jwt_blocks = f.jwt_svids.clone().unwrap_or_default();
    for block in &jwt_blocks {
        if block.jwt_svid_file_name.as_deref().unwrap_or("").is_empty() {
            return err("'jwt_file_name' is required in 'jwt_svids'");
        }
        if block.jwt_audience.as_deref().unwrap_or("").is_empty() {
            return err("'jwt_audience' is required in 'jwt_svids'");
        }
    }
    if !daemon {
        if f.cmd.as_deref().is_some_and(|c| !c.is_empty()) {
            warnings.push("cmd is set but daemon_mode is false. cmd will be ignored.".to_owned());
        }
        if f.renew_signal.as_deref().is_some_and(|s| !s.is_empty()) {
            warnings.push(
                "renew_signal is set but daemon_mode is false. renew_signal will be ignored."
                    .to_owned(),
            );
        }
        if f.pid_file_name.is_some() {
            return err(
                "pid_file_name is set but daemon_mode is false. pid_file_name is only supported in daemon_mode",
            );
        }
    }
    let signal_name = f.renew_signal.clone().filter(|s| !s.is_empty());
    if f.pid_file_name.is_some() && signal_name.is_none() {
        return err("must specify renew_signal when using pid_file_name");
    }

    let names = [
        &f.svid_file_name,
        &f.svid_key_file_name,
        &f.svid_bundle_file_name,
    ]
    .map(|n| n.clone().filter(|n| !n.is_empty()));
    let given = names.iter().filter(|n| n.is_some()).count();
    if given != 0 && given != 3 {
        return err(
            "all or none of 'svid_file_name', 'svid_key_file_name', 'svid_bundle_file_name' must be specified",
        );
    }
    let dir = f.cert_dir.clone().unwrap_or_default();
    let modes = Modes {
        cert: mode("cert", f.cert_file_mode, CERT_MODE)?,
        key: mode("key", f.key_file_mode, KEY_MODE)?,
    };
    let x509 = match names {
        [Some(svid), Some(key), Some(bundle)] => Some(Layout::Helper(HelperNames {
            svid,
            key,
            bundle,
            add_intermediates_to_bundle: f.add_intermediates_to_bundle.unwrap_or(false),
            include_federated_domains: f.include_federated_domains.unwrap_or(false),
            omit_expired: f.omit_expired.unwrap_or(false),
        })),
        _ if write_flag => Some(Layout::Spire),
        _ => None,
    }
    .map(|layout| X509Files {
        dir: dir.clone(),
        layout,
        modes,
    });
    let jwt_bundle = match f.jwt_bundle_file_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => Some(JwtBundleFile {
            path: dir.join(name),
            mode: mode("jwt bundle", f.jwt_bundle_file_mode, JWT_FILE_MODE)?,
        }),
        None => None,
    };
    let svid_mode = mode("jwt svid", f.jwt_svid_file_mode, JWT_FILE_MODE)?;
    let jwt_svids: Vec<JwtSvidFile> = jwt_blocks
        .into_iter()
        .map(|b| JwtSvidFile {
            audience: b
                .jwt_audience
                .into_iter()
                .chain(b.jwt_extra_audiences.unwrap_or_default())
                .filter(|a| !a.is_empty())
                .collect(),
            path: dir.join(b.jwt_svid_file_name.unwrap_or_default()),
            mode: svid_mode,
        })
        .collect();
    if x509.is_none() && jwt_bundle.is_none() && jwt_svids.is_empty() {
        return err(
            "at least one of the sets ('svid_file_name', 'svid_key_file_name', 'svid_bundle_file_name'), 'jwt_svids', or 'jwt_bundle_file_name' must be fully specified",
        );
    }
    if let Some(h) = &f.health_checks
        && h.listener_enabled == Some(true)
    {
        return err(
            "health_checks.listener_enabled: signet-agent api watch has no HTTP health listener; \
             check the agent with `signet-agent healthcheck` instead",
        );
    }

    let signal = match signal_name {
        Some(name) => Some(parse_signal(&name)?),
        None => None,
    };
    let cmd = match f.cmd.filter(|c| !c.is_empty()) {
        Some(cmd) => {
            let args = cmd_args::split(f.cmd_args.as_deref().unwrap_or(""))
                .map_err(|e| CliError::new(format!("error parsing cmd arguments: {e}")))?;
            Some((cmd, args))
        }
        None => None,
    };
    let renew = if daemon {
        Renew {
            cmd,
            signal,
            pid_file: f.pid_file_name,
        }
    } else {
        Renew::default()
    };
    Ok(WatchPlan {
        endpoint,
        daemon,
        x509,
        jwt_bundle,
        jwt_svids,
        hint: f.hint.unwrap_or_default(),
        renew,
        warnings,
    })
}

/// A file mode: 0 or absent is the default; negative or beyond 07777 is refused.
fn mode(what: &str, value: Option<i64>, default: u32) -> Result<u32, CliError> {
    match value.unwrap_or(0) {
        0 => Ok(default),
        v if v < 0 => Err(CliError::new(format!("{what} file mode must be positive"))),
        v => u32::try_from(v)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| CliError::new(format!("{what} file mode {v:o} is not a file mode"))),
    }
}

/// `SIGUSR1`, `USR1` or `sigusr1`, as named by `kill -l`.
pub(crate) fn parse_signal(name: &str) -> Result<Signal, CliError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| CliError::new(format!("error getting signal: {name}")))
}
