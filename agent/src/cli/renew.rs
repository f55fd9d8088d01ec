//! Telling a program its files changed, after each X.509 update, as spiffe-helper does:
//! - `cmd`: started (stdin closed, stdout and stderr shared) after the first update; after a
//!   later one, sent `renew_signal` if it still runs (nothing if no signal is configured), or
//!   started again if it has exited. It is not restarted when it exits between updates, and
//!   it is left running when the watch ends.
//! - `pid_file_name`: the file is re-read before every signal, so the process may change; a
//!   missing or unreadable file, or a PID that cannot be signalled, is retried a few times
//!   (100 ms, doubling, about 6 s in all) and then reported; the next update tries again.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::cli::watch_plan::Renew;

const PID_FILE_ATTEMPTS: u32 = 6;
const PID_FILE_FIRST_RETRY: Duration = Duration::from_millis(100);

/// The state between updates: the process `cmd` started, if any.
#[derive(Debug)]
pub(crate) struct Renewer {
    spec: Renew,
    child: Option<Child>,
}

impl Renewer {
    pub(crate) fn new(spec: Renew) -> Self {
        Self { spec, child: None }
    }

    /// Runs after the files of an update were written; returns the lines to report.
    pub(crate) async fn files_updated(&mut self) -> Vec<String> {
        let mut report = Vec::new();
        if let Some((cmd, args)) = self.spec.cmd.clone() {
            report.extend(self.start_or_signal(&cmd, &args));
        }
        if let Some(path) = self.spec.pid_file.clone()
            && let Some(signal) = self.spec.signal
        {
            report.extend(signal_pid_file(&path, signal).await.err());
        }
        report
    }

    fn start_or_signal(&mut self, cmd: &str, args: &[String]) -> Option<String> {
        if let Some(child) = &mut self.child
            && let Ok(None) = child.try_wait()
        {
            // Still running: signal it (or, with no signal configured, leave it be). A child
            // that exited, or cannot be waited for, is started again below.
            let signal = self.spec.signal?;
            let pid = child.id().and_then(|p| i32::try_from(p).ok())?;
            return kill(Pid::from_raw(pid), signal).err().map(|e| {
                format!(
                    "Unable to signal process: error signaling process with signal {signal}: {e}"
                )
            });
        }
        self.child = None;
        let started = Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn();
        match started {
            Ok(child) => {
                self.child = Some(child);
                None
            }
            Err(e) => Some(format!(
                "Unable to signal process: error executing process {cmd:?}: {e}"
            )),
        }
    }
}

/// Reads the PID in `path` and sends it `signal`, retrying on failure.
async fn signal_pid_file(path: &Path, signal: Signal) -> Result<(), String> {
    let mut delay = PID_FILE_FIRST_RETRY;
    let mut attempt = 1;
    loop {
        match signal_once(path, signal) {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= PID_FILE_ATTEMPTS => {
                return Err(format!("Unable to signal PID file: {e}"));
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

fn signal_once(path: &Path, signal: Signal) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "failed to read pid file {:?}: {e}",
            path.display().to_string()
        )
    })?;
    let pid: i32 = text.trim().parse().map_err(|e| {
        format!(
            "failed to parse pid file {:?}: {e}",
            path.display().to_string()
        )
    })?;
    if pid <= 0 {
        return Err(format!(
            "failed to parse pid file {:?}: {pid} is not a process ID",
            path.display().to_string()
        ));
    }
    kill(Pid::from_raw(pid), signal)
        .map_err(|e| format!("error signaling process {pid} with signal {signal}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cmd: &str, args: &[&str], signal: Option<Signal>) -> Renew {
        Renew {
            cmd: Some((
                cmd.to_owned(),
                args.iter().map(|a| (*a).to_owned()).collect(),
            )),
            signal,
            pid_file: None,
        }
    }

    async fn wait_for(path: &Path, lines: usize) -> String {
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(path)
                && text.lines().count() >= lines
            {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{} never had {lines} lines", path.display());
    }

    #[tokio::test]
    async fn a_command_that_exits_is_started_again_on_the_next_update() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = format!("echo run >> {}", log.display());
        let mut r = Renewer::new(spec("/bin/sh", &["-c", &script], None));
        assert!(r.files_updated().await.is_empty());
        wait_for(&log, 1).await;
        // Let it exit, then the next update starts it again.
        r.child.as_mut().unwrap().wait().await.unwrap();
        assert!(r.files_updated().await.is_empty());
        assert_eq!(wait_for(&log, 2).await, "run\nrun\n");
    }

    #[tokio::test]
    async fn a_running_command_gets_the_signal_instead() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = format!(
            "trap 'echo hup >> {0}' HUP; echo start >> {0}; while :; do sleep 0.05; done",
            log.display()
        );
        let mut r = Renewer::new(spec("/bin/sh", &["-c", &script], Some(Signal::SIGHUP)));
        assert!(r.files_updated().await.is_empty());
        wait_for(&log, 1).await;
        assert!(r.files_updated().await.is_empty());
        assert_eq!(wait_for(&log, 2).await, "start\nhup\n");
        assert!(r.files_updated().await.is_empty());
        assert_eq!(wait_for(&log, 3).await, "start\nhup\nhup\n");
        let mut child = r.child.take().unwrap();
        child.kill().await.unwrap();
    }

    #[tokio::test]
    async fn a_running_command_without_a_signal_is_left_alone() {
        let mut r = Renewer::new(spec("/bin/sleep", &["5"], None));
        assert!(r.files_updated().await.is_empty());
        let pid = r.child.as_ref().unwrap().id();
        assert!(r.files_updated().await.is_empty());
        assert_eq!(r.child.as_ref().unwrap().id(), pid, "not restarted");
        r.child.take().unwrap().kill().await.unwrap();
    }

    #[tokio::test]
    async fn a_command_that_cannot_start_is_reported() {
        let mut r = Renewer::new(spec("/nonexistent/cmd", &[], None));
        let report = r.files_updated().await;
        assert_eq!(report.len(), 1);
        assert!(
            report[0].starts_with(
                "Unable to signal process: error executing process \"/nonexistent/cmd\": "
            ),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn the_pid_file_is_read_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let (log, pid_file) = (dir.path().join("log"), dir.path().join("app.pid"));
        let script = format!(
            "trap 'echo usr1 >> {0}' USR1; echo start >> {0}; while :; do sleep 0.05; done",
            log.display()
        );
        let mut app = Command::new("/bin/sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        wait_for(&log, 1).await;
        std::fs::write(&pid_file, format!("{}\n", app.id().unwrap())).unwrap();
        let mut r = Renewer::new(Renew {
            cmd: None,
            signal: Some(Signal::SIGUSR1),
            pid_file: Some(pid_file.clone()),
        });
        assert!(r.files_updated().await.is_empty());
        assert_eq!(wait_for(&log, 2).await, "start\nusr1\n");
        app.kill().await.unwrap();

        std::fs::write(&pid_file, "not a pid").unwrap();
        tokio::time::pause();
        let report = r.files_updated().await;
        assert_eq!(report.len(), 1);
        assert!(
            report[0].starts_with(&format!(
                "Unable to signal PID file: failed to parse pid file {:?}: ",
                pid_file.display().to_string()
            )),
            "{report:?}"
        );
        std::fs::remove_file(&pid_file).unwrap();
        let report = r.files_updated().await;
        assert!(report[0].contains("failed to read pid file"), "{report:?}");
    }
}
