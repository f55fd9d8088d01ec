//! Throwaway PostgreSQL clusters for tests: `initdb` into a temp dir, `pg_ctl start` on a
//! Unix socket in that dir (no TCP), stopped and removed on drop. Run as root (where initdb
//! refuses to), the cluster's processes run as the `postgres` user (or `nobody`).
//!
//! PostgreSQL is found through `SIGNET_PG_BIN`, then `pg_config --bindir`, then the newest
//! `/usr/lib/postgresql/*/bin`. If it is not installed, `start` panics saying so: tests that
//! need PostgreSQL fail rather than skip (`.ci/run` installs it).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use tempfile::TempDir;

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    run_as: Option<(u32, u32)>,
    databases: AtomicU32,
    /// Also listening on 127.0.0.1 with `ssl = on` (see `start_tls`).
    tls: bool,
}

impl PgCluster {
    /// initdb + start; panics with the reason (and the server log) if either fails.
    pub fn start() -> Self {
        Self::init(None)
    }

    /// As `start`, and also listening on 127.0.0.1 (port `port()`) with `ssl = on`, serving
    /// `cert_pem` (its chain) and `key_pem`. TLS is never used on the Unix socket.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::init(Some((cert_pem, key_pem)))
    }

    fn init(tls: Option<(&str, &str)>) -> Self {
        let bin = pg_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("signet-pg")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let run_as = run_as();
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), uid, gid);
        }
        // The socket file is .s.PGSQL.<port>: a random port keeps clusters apart in logs.
        // With TCP, a port the kernel just handed out (and that was released again).
        let port = match tls {
            None => 20_000 + (std::process::id() % 20_000) as u16,
            Some(_) => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("a free port: {e}")),
        };
        let cluster = Self {
            bin,
            dir,
            port,
            run_as,
            databases: AtomicU32::new(0),
            tls: tls.is_some(),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data_dir(),
                "-A",
                "trust",
                "-U",
                "signet",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        if let Some((cert, key)) = tls {
            let data = PathBuf::from(cluster.data_dir());
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).unwrap_or_else(|e| panic!("{name}: {e}"));
                std::fs::set_permissions(
                    &path,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap_or_else(|e| panic!("chmod {name}: {e}"));
                if let Some((uid, gid)) = cluster.run_as {
                    chown(&path, uid, gid);
                }
            }
        }
        cluster.pg_ctl("start");
        cluster
    }

    /// The port (of the Unix socket's name, and of 127.0.0.1 with `start_tls`).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The directory holding the server's socket.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The connection string of database `db` (which must exist; see `create_database`).
    pub fn connection_string(&self, db: &str) -> String {
        format!(
            "host={} port={} user=signet dbname={db}",
            self.socket_dir().display(),
            self.port
        )
    }

    /// Creates a new empty database and returns its connection string.
    pub async fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("signet_{n}");
        let (client, connection) =
            tokio_postgres::connect(&self.connection_string("postgres"), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to the test cluster: {e}"));
        let task = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE: {e}"));
        drop(client);
        let _ = task.await;
        self.connection_string(&name)
    }

    /// `pg_ctl restart -m fast`, waiting until it accepts connections again.
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// `pg_ctl stop -m fast`.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir(), "-m", "fast", "-w", "stop"],
        );
    }

    /// `pg_ctl start` after `stop`.
    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    fn pg_ctl(&self, action: &str) {
        let listen = if self.tls {
            "-c listen_addresses=127.0.0.1 -c ssl=on"
        } else {
            "-c listen_addresses=''"
        };
        let options = format!(
            "-k {} -p {} {listen} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.socket_dir().display(),
            self.port
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let data = self.data_dir();
        let mut args = vec!["-D", &data, "-o", &options, "-l", &log, "-w"];
        if action == "restart" {
            args.extend(["-m", "fast"]);
        }
        args.push(action);
        let ok = self.command("pg_ctl").args(&args).status();
        if !ok.as_ref().is_ok_and(|s| s.success()) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("pg_ctl {action} failed ({ok:?}); server log:\n{log}");
        }
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .current_dir(self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.bin.join(tool).display()));
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data_dir(), "-m", "immediate", "-w", "stop"])
            .status();
    }
}

/// Where PostgreSQL's server binaries are.
fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SIGNET_PG_BIN") {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no initdb in SIGNET_PG_BIN, pg_config --bindir or \
             /usr/lib/postgresql/*/bin): install the postgresql package; tests that need it \
             are not skipped"
        )
    })
}

/// initdb refuses to run as root: then run the cluster as `postgres` (or `nobody`).
fn run_as() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    ["postgres", "nobody"].iter().find_map(|name| {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
    })
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}
