//! The real `signet-server` and `signet-agent` binaries as child processes (for tests that
//! kill them with SIGKILL): where they are, a free port, a server config on a fixed port,
//! and waiting for a file (a socket) to appear.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{Options, TestServer};

/// `target/<profile>/<name>`, built by `cargo test --workspace` (or `cargo build --bins`);
/// or the path in `SIGNET_SERVER_BIN` for `signet-server` (`SIGNET_AGENT_BIN` for
/// `signet-agent`), to run another build (an older one, for before/after figures).
pub fn binary(name: &str) -> PathBuf {
    let var = format!("{}_BIN", name.to_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `bin args`, appending its output to `log`; killed if dropped.
pub fn spawn(bin: &str, args: &[&str], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(binary(bin))
        .args(args)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits (at most `within`) for `path` to exist.
pub async fn wait_for(path: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server process's directory: `server.conf` (the test server configuration, on `port`),
/// its data, its admin socket `api.sock` and its log.
pub struct ServerProc {
    /// The directory.
    pub dir: PathBuf,
    /// Its agent API port on 127.0.0.1.
    pub port: u16,
    /// The running process, if started.
    pub child: Option<Child>,
}

impl ServerProc {
    /// Writes the configuration under `dir` (created) for a server on a free port.
    pub fn new(dir: PathBuf, opts: &Options) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        std::fs::write(
            dir.join("server.conf"),
            TestServer::config_text(&dir, opts)
                .replace("bind_port = 0", &format!("bind_port = {port}")),
        )
        .unwrap();
        Self {
            dir,
            port,
            child: None,
        }
    }

    /// The admin socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// Starts the process and waits until its admin socket accepts connections (panicking
    /// with its log if it exits first).
    pub async fn start(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let conf = self.dir.join("server.conf");
        let log = self.dir.join("server.log");
        let mut child = spawn(
            "signet-server",
            &["run", "--config", conf.to_str().unwrap()],
            &log,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!(
                    "{} exited ({status}) before serving:\n{log}",
                    self.dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} never accepted connections",
                self.socket().display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child = Some(child);
    }

    /// SIGKILL, and reaped.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

/// Runs `bin args` to completion (at most a minute); its exit code, stdout and stderr.
pub async fn run(bin: &str, args: &[&str]) -> (i32, String, String) {
    let child = Command::new(binary(bin))
        .args(args)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .unwrap_or_else(|_| panic!("{bin} {args:?} did not finish within a minute"))
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}
