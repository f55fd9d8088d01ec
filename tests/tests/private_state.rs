//! The server's and the agent's state is private (issue 9.1): another local user (uid 65534,
//! run with `setpriv` as CI runs as root) can read no file under either `data_dir`, and even
//! a copy of the store file (what a backup or a looser mode would leak) holds no join token
//! that attests.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use signet_tests::agent::Setup;
use signet_tests::{Options, TestServer};
use tonic::Code;

const NOBODY: &str = "65534";

/// Every regular file under `dir` (as root sees them).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for item in std::fs::read_dir(&d).unwrap() {
            let path = item.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                out.push(path);
            }
        }
    }
    out
}

/// The files of `files` that uid 65534 can open for reading.
fn readable_by_nobody(files: &[PathBuf]) -> Vec<String> {
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "sh",
            "-c",
            r#"for f in "$@"; do if head -c1 "$f" >/dev/null 2>&1; then echo "$f"; fi; done"#,
            "sh",
        ])
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "setpriv: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Lets other users walk down to `dir` (as an operator's `/var/lib` would), so that only the
/// modes Signet chose keep them out.
fn open_to_the_world(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// UUID-shaped strings (what `grep` for tokens finds) and 64-hex-digit strings (digests) in
/// `bytes`.
fn token_like_strings(bytes: &[u8]) -> Vec<String> {
    let text: String = bytes
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { ' ' })
        .collect();
    let mut found = Vec::new();
    for word in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-')) {
        let uuid = word.len() == 36 && word.matches('-').count() == 4;
        let hex = word.len() == 64 && !word.contains('-');
        if uuid || hex {
            found.push(word.to_owned());
        }
    }
    found
}

#[tokio::test]
async fn no_other_user_reads_the_server_or_agent_state() {
    let setup = Setup::new(&[]).await;
    let agent = setup.agent("").await;
    open_to_the_world(setup.server.dir.path());
    open_to_the_world(setup.dir.path());
    let server_data = setup.server.dir.path().join("data");
    let agent_data = setup.data_dir();
    for (name, dir) in [("server", &server_data), ("agent", &agent_data)] {
        let files = files_under(dir);
        assert!(files.len() >= 2, "{name} data_dir has its state: {files:?}");
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{name} data_dir {}", dir.display());
        let readable = readable_by_nobody(&files);
        assert!(
            readable.is_empty(),
            "uid {NOBODY} can read {name} files: {readable:?}"
        );
    }
    agent.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_copied_store_holds_no_token_that_attests() {
    let server = TestServer::start(Options::default()).await;
    let tokens = [server.join_token(600).await, server.join_token(600).await];
    // What an attacker who got a copy of the store file has.
    let mut leaked = Vec::new();
    for f in files_under(&server.dir.path().join("data/datastore")) {
        let bytes = std::fs::read(&f).unwrap();
        for t in &tokens {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "{} holds the join token {t} in the clear",
                f.display()
            );
        }
        leaked.extend(token_like_strings(&bytes));
    }
    leaked.sort();
    leaked.dedup();
    for candidate in &leaked {
        let err = server
            .attest(candidate)
            .await
            .expect_err("a string from the store file attests");
        assert_eq!(err.code(), Code::InvalidArgument, "{candidate}: {err}");
    }
    // The tokens were live all along: their owner attests with them.
    for t in &tokens {
        server.attest(t).await.expect("the real token attests");
    }
    eprintln!(
        "{} token-like strings from the store file tried, none attested",
        leaked.len()
    );
}

#[tokio::test]
async fn a_group_or_world_writable_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let text = TestServer::config_text(dir.path(), &Options::default());
    let config = signet_server::config::Config::parse(
        &text,
        "test.conf",
        &signet_server::config::RunArgs::default(),
    )
    .unwrap();
    let err = signet_server::run::Server::start(
        config,
        std::sync::Arc::new(signet_common::clock::SystemClock),
    )
    .await
    .expect_err("a world-writable data_dir is refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("data_dir") && msg.contains("0777") && msg.contains("chmod 700"),
        "{msg}"
    );
}
