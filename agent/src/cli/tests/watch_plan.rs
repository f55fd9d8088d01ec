//! `api watch` planning: flags and spiffe-helper config files into what the watch writes,
//! with spiffe-helper's checks and messages.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::cli::addr::Endpoint;
use crate::cli::flags::{ApiCommand, Command, WatchFlags};
use crate::cli::watch_plan::{HelperNames, JwtBundleFile, JwtSvidFile, Layout, Renew, WatchPlan};
use crate::cli::write::Modes;
use crate::cli::{Env, parse};

fn flags(args: &[&str]) -> WatchFlags {
    let args = ["signet-agent", "api", "watch"]
        .into_iter()
        .chain(args.iter().copied());
    match parse(args.map(OsString::from)).unwrap().command {
        Command::Api(ApiCommand::Watch(f)) => *f,
        other => panic!("not watch: {other:?}"),
    }
}

fn plan(args: &[&str]) -> Result<Option<WatchPlan>, String> {
    WatchPlan::from_flags(&flags(args), &Env::default()).map_err(|e| e.0)
}

/// A helper.conf in a temp dir; returns the dir and the file's path.
fn conf(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("helper.conf");
    std::fs::write(&path, text).unwrap();
    let p = path.to_str().unwrap().to_owned();
    (dir, p)
}

fn conf_plan(text: &str, extra: &[&str]) -> Result<WatchPlan, String> {
    let (_dir, path) = conf(text);
    let mut args = vec!["--config", path.as_str()];
    args.extend_from_slice(extra);
    plan(&args).map(Option::unwrap)
}

#[test]
fn plain_watch_writes_nothing_and_file_flags_need_a_destination() {
    assert_eq!(plan(&[]).unwrap(), None);
    assert_eq!(plan(&["--socket-path", "/run/api.sock"]).unwrap(), None);
    assert_eq!(
        plan(&["--cmd", "nginx"]).unwrap_err(),
        "api watch: file and reload flags need --write DIR or --config FILE"
    );
}

#[test]
fn write_alone_is_spires_numbered_layout_with_default_modes() {
    let p = plan(&["--write", "/out", "--socket-path", "/run/api.sock"])
        .unwrap()
        .unwrap();
    assert_eq!(p.endpoint, Endpoint::Unix(PathBuf::from("/run/api.sock")));
    assert!(p.daemon);
    let x = p.x509.unwrap();
    assert_eq!(x.dir, PathBuf::from("/out"));
    assert_eq!(x.layout, Layout::Spire);
    assert_eq!(
        x.modes,
        Modes {
            cert: 0o644,
            key: 0o600
        }
    );
    assert_eq!(p.renew, Renew::default());
    assert!(p.jwt_bundle.is_none() && p.jwt_svids.is_empty());
}

#[test]
fn flags_give_spiffe_helpers_layout_and_reload() {
    let p = plan(&[
        "--write",
        "/certs",
        "--svid-file-name",
        "svid.pem",
        "--svid-key-file-name",
        "svid_key.pem",
        "--svid-bundle-file-name",
        "svid_bundle.pem",
        "--add-intermediates-to-bundle",
        "--include-federated-domains",
        "--cert-file-mode",
        "0640",
        "--key-file-mode",
        "400",
        "--cmd",
        "/bin/sh",
        "--cmd-args",
        "-c \"kill -HUP 1\"",
        "--renew-signal",
        "SIGHUP",
        "--jwt-svid",
        "aud1,aud2=jwt.token",
        "--jwt-bundle-file-name",
        "jwt_bundle.json",
    ])
    .unwrap()
    .unwrap();
    let x = p.x509.unwrap();
    assert_eq!(
        x.layout,
        Layout::Helper(HelperNames {
            svid: "svid.pem".into(),
            key: "svid_key.pem".into(),
            bundle: "svid_bundle.pem".into(),
            add_intermediates_to_bundle: true,
            include_federated_domains: true,
            omit_expired: false,
        })
    );
    assert_eq!(
        x.modes,
        Modes {
            cert: 0o640,
            key: 0o400
        }
    );
    assert_eq!(
        p.renew,
        Renew {
            cmd: Some(("/bin/sh".into(), vec!["-c".into(), "kill -HUP 1".into()])),
            signal: Some(Signal::SIGHUP),
            pid_file: None,
        }
    );
    assert_eq!(
        p.jwt_svids,
        [JwtSvidFile {
            audience: vec!["aud1".into(), "aud2".into()],
            path: PathBuf::from("/certs/jwt.token"),
            mode: 0o600,
        }]
    );
    assert_eq!(
        p.jwt_bundle,
        Some(JwtBundleFile {
            path: PathBuf::from("/certs/jwt_bundle.json"),
            mode: 0o600,
        })
    );
}

#[test]
fn spiffe_helpers_readme_config_is_planned_as_spiffe_helper_runs_it() {
    let p = conf_plan(
        r#"
agent_address = "/tmp/spire-agent/public/api.sock"
cmd = "ghostunnel"
cmd_args = "server --listen localhost:8002 --target localhost:8001 --keystore certs/svid_key.pem --cacert certs/svid_bundle.pem --allow-uri-san spiffe://example.org/Database"
cert_dir = "certs"
renew_signal = "SIGUSR1"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_svids = [{jwt_audience="your-audience",jwt_extra_audiences=["your-extra-audience-1", "your-extra-audience-2"], jwt_svid_file_name="jwt_svid.token"}]
jwt_bundle_file_name = "bundle.json"
cert_file_mode = 0444
key_file_mode = 0444
jwt_bundle_file_mode = 0444
jwt_svid_file_mode = 0444
"#,
        &[],
    )
    .unwrap();
    assert_eq!(
        p.endpoint,
        Endpoint::Unix(PathBuf::from("/tmp/spire-agent/public/api.sock"))
    );
    let x = p.x509.unwrap();
    assert_eq!(x.dir, PathBuf::from("certs"));
    assert_eq!(
        x.modes,
        Modes {
            cert: 0o444,
            key: 0o444
        }
    );
    let (cmd, args) = p.renew.cmd.unwrap();
    assert_eq!(cmd, "ghostunnel");
    assert_eq!(args.len(), 11);
    assert_eq!(args[0], "server");
    assert_eq!(p.renew.signal, Some(Signal::SIGUSR1));
    assert_eq!(
        p.jwt_svids[0].audience,
        [
            "your-audience",
            "your-extra-audience-1",
            "your-extra-audience-2"
        ]
    );
    assert_eq!(p.jwt_svids[0].path, Path::new("certs/jwt_svid.token"));
    assert_eq!(p.jwt_svids[0].mode, 0o444);
    assert_eq!(p.jwt_bundle.unwrap().mode, 0o444);
}

#[test]
fn flags_override_the_file() {
    let text = r#"
agent_address = "/a.sock"
cert_dir = "/from-file"
svid_file_name = "s.pem"
svid_key_file_name = "k.pem"
svid_bundle_file_name = "b.pem"
renew_signal = "SIGUSR1"
"#;
    let p = conf_plan(
        text,
        &[
            "--write",
            "/from-flag",
            "--renew-signal",
            "HUP",
            "--socket-path",
            "/b.sock",
        ],
    )
    .unwrap();
    assert_eq!(p.x509.unwrap().dir, PathBuf::from("/from-flag"));
    assert_eq!(p.renew.signal, Some(Signal::SIGHUP));
    assert_eq!(p.endpoint, Endpoint::Unix(PathBuf::from("/b.sock")));
    // -daemon-mode=false as spiffe-helper spells it.
    let p = conf_plan(text, &["-daemon-mode=false"]).unwrap();
    assert!(!p.daemon);
    assert_eq!(p.renew, Renew::default(), "no signal in one-shot mode");
    assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
}

#[test]
fn agent_address_falls_back_to_the_environment_then_spires_default() {
    let text = "cert_dir = \"c\"\njwt_bundle_file_name = \"b.json\"\n";
    let (_dir, path) = conf(text);
    let f = flags(&["--config", &path]);
    let env = Env {
        endpoint_socket: Some("unix:///run/spire/api.sock".into()),
    };
    let p = WatchPlan::from_flags(&f, &env).unwrap().unwrap();
    assert_eq!(
        p.endpoint,
        Endpoint::Unix(PathBuf::from("/run/spire/api.sock"))
    );
    let p = WatchPlan::from_flags(&f, &Env::default()).unwrap().unwrap();
    assert_eq!(
        p.endpoint,
        Endpoint::Unix(PathBuf::from("/tmp/spire-agent/public/api.sock"))
    );
    assert!(p.x509.is_none(), "no x509 names: JWT only");
    let p = conf_plan(
        "agent_address = \"unix:///x.sock\"\njwt_bundle_file_name = \"b\"",
        &[],
    )
    .unwrap();
    assert_eq!(p.endpoint, Endpoint::Unix(PathBuf::from("/x.sock")));
    let e = conf_plan(
        "agent_address = \"udp://x\"\njwt_bundle_file_name = \"b\"",
        &[],
    )
    .unwrap_err();
    assert!(e.starts_with("invalid agent_address"), "{e}");
}

#[test]
fn spiffe_helpers_checks_with_its_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "svid_file_name = \"s\"",
            "all or none of 'svid_file_name', 'svid_key_file_name', 'svid_bundle_file_name' must be specified",
        ),
        (
            "cert_dir = \"c\"",
            "at least one of the sets ('svid_file_name', 'svid_key_file_name', 'svid_bundle_file_name'), 'jwt_svids', or 'jwt_bundle_file_name' must be fully specified",
        ),
        (
            "jwt_svids = [{jwt_audience = \"a\"}]",
            "'jwt_file_name' is required in 'jwt_svids'",
        ),
        (
            "jwt_svids = [{jwt_svid_file_name = \"t\"}]",
            "'jwt_audience' is required in 'jwt_svids'",
        ),
        (
            "jwt_bundle_file_name = \"b\"\npid_file_name = \"/p\"",
            "must specify renew_signal when using pid_file_name",
        ),
        (
            "jwt_bundle_file_name = \"b\"\npid_file_name = \"/p\"\nrenew_signal = \"SIGUSR1\"\ndaemon_mode = false",
            "pid_file_name is set but daemon_mode is false. pid_file_name is only supported in daemon_mode",
        ),
        (
            "jwt_bundle_file_name = \"b\"\ncert_file_mode = -1",
            "cert file mode must be positive",
        ),
        (
            "jwt_bundle_file_name = \"b\"\nkey_file_mode = -1",
            "key file mode must be positive",
        ),
        (
            "jwt_bundle_file_name = \"b\"\nrenew_signal = \"SIGNOPE\"",
            "error getting signal: SIGNOPE",
        ),
        (
            "jwt_bundle_file_name = \"b\"\ncmd = \"x\"\ncmd_args = \"a\\\"b\"",
            "error parsing cmd arguments: column 2: bare \" in non-quoted-field",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(conf_plan(text, &[]).unwrap_err(), *want, "for {text:?}");
    }
    let e = conf_plan(
        "jwt_bundle_file_name = \"b\"\nhealth_checks { listener_enabled = true }",
        &[],
    )
    .unwrap_err();
    assert!(e.starts_with("health_checks.listener_enabled: "), "{e}");
    let e = plan(&["--config", "/nonexistent/helper.conf"]).unwrap_err();
    assert!(
        e.starts_with("cannot read config file /nonexistent/helper.conf"),
        "{e}"
    );
}
