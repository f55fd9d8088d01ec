//! `api watch --write` / `--config` end to end against the in-test Workload API server,
//! whose X.509 response the test replaces to stand for a rotation: files rewritten each
//! time with the right content and modes, the command started and re-run, a PID file's
//! process signalled, and `daemon_mode = false` writing once (JWT files too).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tonic_health::ServingStatus;

use super::certs::{Fixture, WORKLOAD_ID, fixture};
use super::e2e::{run_with, sock};
use super::fake_agent::{FakeAgent, JWKS, serve, token_for};

fn certs_in(path: &Path) -> Vec<Vec<u8>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap().to_vec())
        .collect()
}

fn key_in(path: &Path) -> Vec<u8> {
    PrivatePkcs8KeyDer::from_pem_file(path)
        .unwrap()
        .secret_pkcs8_der()
        .to_vec()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Waits until `path` has at least `n` lines.
async fn lines(path: &Path, n: usize) -> String {
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.lines().count() >= n
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} never reached {n} lines", path.display());
}

fn no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".tmp"), "left behind: {name}");
    }
}

#[tokio::test]
async fn write_keeps_spires_files_current_and_reruns_the_command_each_rotation() {
    let (first, second) = (fixture(), fixture());
    let (fake, rotate) = FakeAgent::rotating(first.response());
    let agent = serve(fake, ServingStatus::Serving).await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("certs");
    let log = dir.path().join("leaf-log");
    // The command copies the leaf it sees into a log, one base64 line per run.
    let script = format!(
        "sed -n 2p {} >> {}",
        out_dir.join("svid.0.pem").display(),
        log.display()
    );
    let cmd_args = format!("-c \"{script}\"");
    let svid = out_dir.join("svid.0.pem");
    let driver = {
        let log = log.clone();
        let svid = svid.clone();
        let second = second.response();
        let first_leaf = first.leaf.clone();
        let second_leaf = second_fixture_leaf(&second);
        async move {
            lines(&log, 1).await;
            assert_eq!(certs_in(&svid)[0], first_leaf);
            rotate.send(second).unwrap();
            lines(&log, 2).await;
            assert_eq!(certs_in(&svid)[0], second_leaf);
        }
    };
    let o = run_with(
        &[
            "api",
            "watch",
            "--socket-path",
            sock(&agent),
            "--write",
            out_dir.to_str().unwrap(),
            "--cmd",
            "/bin/sh",
            "--cmd-args",
            &cmd_args,
        ],
        driver,
    )
    .await;
    assert_eq!((o.code, o.err.as_str()), (0, ""), "{}", o.out);
    assert_eq!(
        o.out.matches("Received 1 svid after ").count(),
        2,
        "{}",
        o.out
    );
    assert_eq!(
        o.out
            .matches(&format!(
                "Writing key #0 to file {}.\n",
                out_dir.join("svid.0.key").display()
            ))
            .count(),
        2
    );
    // The command ran once per update, each time after that update's files were in place.
    let logged = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<&str> = logged.lines().collect();
    assert_eq!(logged.len(), 2);
    assert_ne!(logged[0], logged[1]);
    assert_eq!(
        certs_in(&svid),
        [second.leaf.clone(), second.intermediate.clone()]
    );
    assert_eq!(key_in(&out_dir.join("svid.0.key")), second.key);
    assert_eq!(
        certs_in(&out_dir.join("bundle.0.pem")),
        vec![second.root.clone()]
    );
    assert_eq!(
        certs_in(&out_dir.join("federated_bundle.0.0.pem")),
        vec![second.federated_root.clone()]
    );
    assert_eq!(mode(&out_dir.join("svid.0.key")), 0o600);
    assert_eq!(mode(&svid), 0o644);
    assert_eq!(
        mode(&out_dir),
        0o700,
        "the missing directory was created private"
    );
    no_temp_files(&out_dir);
}

/// The leaf in a response built from a fixture.
fn second_fixture_leaf(resp: &signet_proto::workload::X509svidResponse) -> Vec<u8> {
    let chain = crate::cli::x509::parse_certs(&resp.svids[0].x509_svid).unwrap();
    chain[0].der.clone()
}

#[tokio::test]
async fn a_spiffe_helper_config_writes_its_files_and_signals_the_pid_file() {
    let (first, second) = (fixture(), fixture());
    let (fake, rotate) = FakeAgent::rotating(first.response());
    let agent = serve(fake, ServingStatus::Serving).await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let (log, pid_file) = (dir.path().join("usr1-log"), dir.path().join("app.pid"));
    let script = format!(
        "trap 'echo usr1 >> {0}' USR1; echo start >> {0}; while :; do sleep 0.05; done",
        log.display()
    );
    let mut app = tokio::process::Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    lines(&log, 1).await;
    std::fs::write(&pid_file, app.id().unwrap().to_string()).unwrap();
    let conf = dir.path().join("helper.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
agent_address = "{}"
cert_dir = "{}"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
add_intermediates_to_bundle = true
include_federated_domains = true
renew_signal = "SIGUSR1"
pid_file_name = "{}"
cert_file_mode = 0640
"#,
            agent.socket.display(),
            certs.display(),
            pid_file.display()
        ),
    )
    .unwrap();
    let driver = {
        let log = log.clone();
        let second = second.response();
        async move {
            lines(&log, 2).await;
            rotate.send(second).unwrap();
            lines(&log, 3).await;
        }
    };
    let o = run_with(
        &["api", "watch", "--config", conf.to_str().unwrap()],
        driver,
    )
    .await;
    app.kill().await.unwrap();
    assert_eq!((o.code, o.err.as_str()), (0, ""), "{}", o.out);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "start\nusr1\nusr1\n"
    );
    assert!(o.out.contains(&format!(
        "Writing SVID to file {}.\n",
        certs.join("svid.pem").display()
    )));
    // The leaf alone; the intermediates moved to the bundle after the root, then the
    // federated domain's root.
    assert_eq!(certs_in(&certs.join("svid.pem")), vec![second.leaf.clone()]);
    assert_eq!(
        certs_in(&certs.join("svid_bundle.pem")),
        [
            second.root.clone(),
            second.intermediate.clone(),
            second.federated_root.clone()
        ]
    );
    assert_eq!(key_in(&certs.join("svid_key.pem")), second.key);
    assert_eq!(mode(&certs.join("svid.pem")), 0o640);
    assert_eq!(mode(&certs.join("svid_key.pem")), 0o600);
    no_temp_files(&certs);
}

#[tokio::test]
async fn daemon_mode_false_writes_x509_and_jwt_files_once_and_exits() {
    let f: Fixture = fixture();
    let agent = serve(FakeAgent::new(f.response()), ServingStatus::Serving).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("helper.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
agent_address = "{}"
cert_dir = "{}"
daemon_mode = false
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_bundle_file_name = "jwt_bundle.json"
jwt_svids = [{{jwt_audience = "aud1", jwt_extra_audiences = ["aud2"], jwt_svid_file_name = "jwt.token"}}]
"#,
            agent.socket.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let o = run_with(
        &["api", "watch", "--config", conf.to_str().unwrap()],
        std::future::pending(),
    )
    .await;
    assert_eq!((o.code, o.err.as_str()), (0, ""), "{}", o.out);
    assert!(!o.out.contains("Received"), "{}", o.out);
    assert_eq!(
        certs_in(&dir.path().join("svid.pem")),
        [f.leaf.clone(), f.intermediate.clone()]
    );
    assert_eq!(
        certs_in(&dir.path().join("svid_bundle.pem")),
        vec![f.root.clone()]
    );
    let token = std::fs::read_to_string(dir.path().join("jwt.token")).unwrap();
    assert_eq!(
        token,
        token_for(&["aud1".into(), "aud2".into()], WORKLOAD_ID)
    );
    let bundles: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("jwt_bundle.json")).unwrap())
            .unwrap();
    use base64::Engine as _;
    assert_eq!(
        bundles["example.org"].as_str().unwrap(),
        base64::engine::general_purpose::STANDARD.encode(JWKS)
    );
    assert_eq!(mode(&dir.path().join("jwt.token")), 0o600);
    assert_eq!(mode(&dir.path().join("jwt_bundle.json")), 0o600);
}

#[tokio::test]
async fn a_write_failure_is_reported_and_the_watch_goes_on() {
    let agent = serve(FakeAgent::new(fixture().response()), ServingStatus::Serving).await;
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    let o = run_with(
        &[
            "api",
            "watch",
            "--socket-path",
            sock(&agent),
            "--write",
            blocked.to_str().unwrap(),
        ],
        tokio::time::sleep(Duration::from_millis(500)),
    )
    .await;
    assert_eq!(o.code, 0);
    assert_eq!(o.out.matches("Received 1 svid after ").count(), 1);
    assert!(
        o.err.starts_with(&format!(
            "Unable to write the X.509 files: mkdir {}: ",
            blocked.display()
        )),
        "{}",
        o.err
    );
}
