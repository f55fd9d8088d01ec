//! Drives the real `signet-server` binary: a server process in a temp dir, and CLI calls.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_signet-server");

pub(crate) struct ServerProcess {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) child: Option<Child>,
}

impl ServerProcess {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Self { dir, child: None };
        s.spawn();
        s
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    pub(crate) fn config(&self) -> PathBuf {
        let path = self.dir.path().join("server.conf");
        if !path.exists() {
            let d = self.dir.path().display();
            std::fs::write(
                &path,
                format!(
                    r#"
server {{
    bind_address = "127.0.0.1"
    bind_port = 0
    socket_path = "{d}/api.sock"
    trust_domain = "example.org"
    data_dir = "{d}/data"
}}
plugins {{
    DataStore "sled" {{
        plugin_data {{}}
    }}
    KeyManager "disk" {{
        plugin_data {{}}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
}}
"#
                ),
            )
            .unwrap();
        }
        path
    }

    pub(crate) fn spawn(&mut self) {
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(self.config())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.cli(&["healthcheck"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server did not become healthy");
    }

    /// SIGKILL, no clean shutdown.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        cli_at(&self.socket(), args)
    }

    pub(crate) fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "signet-server {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

pub(crate) fn cli_at(socket: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--socket-path").arg(socket);
    cmd.output().unwrap()
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
