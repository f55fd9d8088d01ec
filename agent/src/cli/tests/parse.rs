//! Flag parsing: kebab-case flags, SPIRE's spellings, defaults and `api fetch` = x509.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::flags::{ApiCommand, Cli, Command, FetchKind, Output, ValidateCommand};
use crate::cli::{Env, Io, parse};
use crate::config::RunArgs;

fn cli(args: &[&str]) -> Cli {
    let args = std::iter::once("signet-agent").chain(args.iter().copied());
    parse(args.map(OsString::from)).unwrap()
}

fn parse_err(args: &[&str]) -> clap::Error {
    let args = std::iter::once("signet-agent").chain(args.iter().copied());
    parse(args.map(OsString::from)).unwrap_err()
}

#[test]
fn run_flags_become_run_args() {
    let Command::Run(flags) = cli(&[
        "run",
        "--join-token",
        "tok",
        "--server-address",
        "10.0.0.1",
        "--server-port",
        "8081",
        "--socket-path",
        "/run/api.sock",
        "--trust-bundle",
        "/b.pem",
        "--trust-domain",
        "example.org",
        "--data-dir",
        "/data",
        "--log-level",
        "DEBUG",
        "--expand-env",
    ])
    .command
    else {
        panic!("not run")
    };
    let args = RunArgs::from(flags);
    assert_eq!(args.config, PathBuf::from("conf/agent/agent.conf"));
    assert_eq!(args.join_token.as_deref(), Some("tok"));
    assert_eq!(args.server_address.as_deref(), Some("10.0.0.1"));
    assert_eq!(args.server_port, Some(8081));
    assert_eq!(args.socket_path, Some(PathBuf::from("/run/api.sock")));
    assert_eq!(args.trust_bundle, Some(PathBuf::from("/b.pem")));
    assert_eq!(args.trust_domain.as_deref(), Some("example.org"));
    assert_eq!(args.data_dir, Some(PathBuf::from("/data")));
    assert_eq!(args.log_level.as_deref(), Some("DEBUG"));
    assert!(args.expand_env);
}

#[test]
fn run_accepts_spire_spelling() {
    let Command::Run(flags) = cli(&[
        "run",
        "-config",
        "a.conf",
        "-joinToken",
        "t",
        "-serverPort=9",
        "-expandEnv",
    ])
    .command
    else {
        panic!("not run")
    };
    let args = RunArgs::from(flags);
    assert_eq!(args.config, PathBuf::from("a.conf"));
    assert_eq!(args.join_token.as_deref(), Some("t"));
    assert_eq!(args.server_port, Some(9));
    assert!(args.expand_env);
    assert!(args.server_address.is_none());
}

#[test]
fn fetch_alone_is_fetch_x509() {
    let Command::Api(ApiCommand::Fetch(fetch)) = cli(&[
        "api",
        "fetch",
        "--socket-path",
        "/s",
        "--write",
        "/out",
        "--silent",
    ])
    .command
    else {
        panic!("not fetch")
    };
    assert!(fetch.kind.is_none());
    let x = fetch.x509;
    assert_eq!(x.call.socket.socket_path, Some(PathBuf::from("/s")));
    assert_eq!(x.call.timeout, Duration::from_secs(5));
    assert_eq!(x.call.output, Output::Pretty);
    assert_eq!(x.write, Some(PathBuf::from("/out")));
    assert!(x.silent);
}

#[test]
fn fetch_x509_with_spire_flags() {
    let Command::Api(ApiCommand::Fetch(fetch)) = cli(&[
        "api",
        "fetch",
        "x509",
        "-socketPath",
        "/s",
        "-timeout",
        "1s",
        "-output",
        "json",
    ])
    .command
    else {
        panic!("not fetch")
    };
    let Some(FetchKind::X509(x)) = fetch.kind else {
        panic!("not x509")
    };
    assert_eq!(x.call.socket.socket_path, Some(PathBuf::from("/s")));
    assert_eq!(x.call.timeout, Duration::from_secs(1));
    assert_eq!(x.call.output, Output::Json);
    assert!(x.write.is_none());
}

#[test]
fn fetch_jwt_audiences_are_comma_separated_and_repeatable() {
    let Command::Api(ApiCommand::Fetch(fetch)) = cli(&[
        "api",
        "fetch",
        "jwt",
        "--audience",
        "a,b",
        "--audience",
        "c",
        "--spiffe-id",
        "spiffe://td/w",
    ])
    .command
    else {
        panic!("not fetch")
    };
    let Some(FetchKind::Jwt(j)) = fetch.kind else {
        panic!("not jwt")
    };
    assert_eq!(j.audience, ["a", "b", "c"]);
    assert_eq!(j.spiffe_id.as_deref(), Some("spiffe://td/w"));
    assert!(j.call.socket.socket_path.is_none());
}

#[test]
fn fetch_jwt_needs_an_audience() {
    let e = parse_err(&["api", "fetch", "jwt"]);
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn validate_jwt_flags() {
    let Command::Api(ApiCommand::Validate(ValidateCommand::Jwt(v))) = cli(&[
        "api",
        "validate",
        "jwt",
        "-audience",
        "a",
        "-svid",
        "x.y.z",
        "--timeout",
        "0",
    ])
    .command
    else {
        panic!("not validate")
    };
    assert_eq!(v.audience, "a");
    assert_eq!(v.svid, "x.y.z");
    assert_eq!(v.call.timeout, Duration::ZERO);
}

#[test]
fn healthcheck_and_watch_flags() {
    let Command::Healthcheck(h) = cli(&["healthcheck", "--shallow", "--verbose"]).command else {
        panic!("not healthcheck")
    };
    assert!(h.shallow && h.verbose && h.socket.socket_path.is_none());
    let Command::Api(ApiCommand::Watch(w)) = cli(&["api", "watch", "-socketPath", "/w"]).command
    else {
        panic!("not watch")
    };
    assert_eq!(w.socket.socket_path, Some(PathBuf::from("/w")));
}

#[test]
fn rejects_bad_output_and_timeout() {
    let e = parse_err(&["api", "fetch", "--output", "yaml"]);
    assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    let e = parse_err(&["api", "fetch", "--timeout", "soon"]);
    assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
}

#[test]
fn usage_errors_go_to_stderr_with_exit_code_2() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = crate::cli::main(
        ["signet-agent", "api", "fetch", "--bogus"].map(OsString::from),
        &Env::default(),
        &mut Io {
            out: &mut out,
            err: &mut err,
        },
    );
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(String::from_utf8(err).unwrap().contains("--bogus"));
}

#[test]
fn missing_socket_is_one_line_on_stderr_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = crate::cli::main(
        ["signet-agent", "api", "fetch", "x509", "--socket-path"]
            .map(OsString::from)
            .into_iter()
            .chain([sock.clone().into_os_string()]),
        &Env::default(),
        &mut Io {
            out: &mut out,
            err: &mut err,
        },
    );
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert_eq!(
        String::from_utf8(err).unwrap(),
        format!(
            "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error \
             while dialing: dial unix {}: connect: no such file or directory\"\n",
            sock.display()
        )
    );
}

#[test]
fn endpoint_comes_from_the_environment_when_no_flag() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("env.sock");
    let env = Env {
        endpoint_socket: Some(format!("unix://{}", sock.display())),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = crate::cli::main(
        ["signet-agent", "api", "fetch"].map(OsString::from),
        &env,
        &mut Io {
            out: &mut out,
            err: &mut err,
        },
    );
    assert_eq!(code, 1);
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.contains(&format!("dial unix {}: connect", sock.display())),
        "{err}"
    );
}
