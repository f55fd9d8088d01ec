//! The `unix` workload attestor (SPIRE's `unix` plugin): the caller's effective user and
//! group, its supplementary groups and, when configured, its binary's path and SHA-256.
//! Everything is read from `/proc/<pid>`; the caller must still be the same live process
//! afterwards, or the result is discarded.
//!
//! `/proc` is read in place (it never waits on a disk). What may wait, the name service
//! behind user and group names and hashing a binary, runs on the blocking pool, and only
//! when [`LOOKUP_TTL`]'s cache does not have it: a caller that connects again within that
//! time costs no thread hop and no name look-up. A digest is cached by the binary's device,
//! inode, size and change times, so a changed binary is hashed again.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};
use nix::unistd::{Gid, Group, Uid, User};
use signet_common::clock::Clock;
use signet_common::selector::Selector;

use crate::attestor::workload::ttl_cache::TtlCache;
use crate::attestor::workload::{AttestError, Peer, WorkloadAttestor};
use crate::config::UnixConfig;

/// How long a user or group name, or a binary's digest, is reused.
pub const LOOKUP_TTL: Duration = Duration::from_secs(10);
/// The most names and digests each cache holds.
const CACHE_CAPACITY: usize = 4096;

/// The unix attestor.
#[derive(Debug)]
pub struct UnixAttestor {
    config: UnixConfig,
    users: Arc<TtlCache<u32, Option<String>>>,
    groups: Arc<TtlCache<u32, Option<String>>>,
    digests: Arc<TtlCache<FileKey, String>>,
}

/// What identifies a binary's content for its cached digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

impl UnixAttestor {
    /// An attestor with this configuration; cached look-ups expire by `clock`.
    pub fn new(config: UnixConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            users: Arc::new(TtlCache::new(
                LOOKUP_TTL,
                CACHE_CAPACITY,
                Arc::clone(&clock),
            )),
            groups: Arc::new(TtlCache::new(
                LOOKUP_TTL,
                CACHE_CAPACITY,
                Arc::clone(&clock),
            )),
            digests: Arc::new(TtlCache::new(LOOKUP_TTL, CACHE_CAPACITY, clock)),
        }
    }

    /// The user's, group's and supplementary groups' names, from the cache or (on the
    /// blocking pool) the name service.
    async fn names(&self, status: &Status) -> Result<Names, AttestError> {
        if let Some(names) = self.cached_names(status) {
            return Ok(names);
        }
        let (users, groups) = (Arc::clone(&self.users), Arc::clone(&self.groups));
        let status = status.clone();
        blocking(move || {
            let user = user_name(status.uid);
            users.insert(status.uid, user.clone());
            let group = |gid: u32| {
                let name = group_name(gid);
                groups.insert(gid, name.clone());
                name
            };
            Ok(Names {
                group: group(status.gid),
                supplementary: status.groups.iter().map(|g| group(*g)).collect(),
                user,
            })
        })
        .await
    }

    fn cached_names(&self, status: &Status) -> Option<Names> {
        Some(Names {
            user: self.users.get(&status.uid)?,
            group: self.groups.get(&status.gid)?,
            supplementary: status
                .groups
                .iter()
                .map(|g| self.groups.get(g))
                .collect::<Option<_>>()?,
        })
    }

    /// The hex SHA-256 of the process' binary, from the cache or (on the blocking pool)
    /// read, refusing binaries over a positive `workload_size_limit`.
    async fn digest(&self, pid: i32, path: &std::path::Path) -> Result<String, AttestError> {
        let exe = proc_path(pid, "exe");
        let meta = std::fs::metadata(&exe).map_err(|e| io_error(pid, "exe", &e))?;
        let limit = self.config.workload_size_limit;
        let too_big = |size: u64| {
            AttestError::Failed(format!(
                "{}: workload binary is {size} bytes, larger than workload_size_limit {limit}",
                path.display()
            ))
        };
        if limit > 0 && meta.len() > limit.unsigned_abs() {
            return Err(too_big(meta.len()));
        }
        let key = FileKey::of(&meta);
        if let Some(digest) = self.digests.get(&key) {
            return Ok(digest);
        }
        let digests = Arc::clone(&self.digests);
        let shown = path.display().to_string();
        blocking(move || {
            let digest = sha256_file(&exe, limit)
                .map_err(|e| AttestError::Failed(format!("{shown}: {e}")))?;
            digests.insert(key, digest.clone());
            Ok(digest)
        })
        .await
    }
}

#[async_trait::async_trait]
impl WorkloadAttestor for UnixAttestor {
    fn name(&self) -> &'static str {
        "unix"
    }

    async fn attest(&self, peer: &Peer) -> Result<Vec<Selector>, AttestError> {
        let pid = peer.pid;
        let status = read_proc(pid, "status").and_then(|text| {
            parse_status(&text).map_err(|e| AttestError::Failed(format!("/proc/{pid}/status: {e}")))
        })?;
        let path = match self.config.discover_workload_path {
            true => Some(
                std::fs::read_link(proc_path(pid, "exe")).map_err(|e| io_error(pid, "exe", &e))?,
            ),
            false => None,
        };
        let names = self.names(&status).await?;
        let digest = match &path {
            Some(path) if self.config.workload_size_limit >= 0 => {
                Some(self.digest(pid, path).await?)
            }
            _ => None,
        };
        if !peer.is_alive() {
            return Err(AttestError::Gone(pid));
        }
        selector_values(&status, &names, path.as_deref(), digest)
            .into_iter()
            .map(|v| Selector::new("unix", v).map_err(|e| AttestError::Failed(e.to_string())))
            .collect()
    }
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AttestError> + Send + 'static,
) -> Result<T, AttestError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AttestError::Failed(format!("attestation task failed: {e}")))?
}

/// What `/proc/<pid>/status` says about the process' credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

/// The names of a [`Status`]'s user, group and supplementary groups (in its order), where
/// the name service has one.
#[derive(Debug)]
struct Names {
    user: Option<String>,
    group: Option<String>,
    supplementary: Vec<Option<String>>,
}

/// The selector values (without the `unix:` type).
fn selector_values(
    status: &Status,
    names: &Names,
    path: Option<&std::path::Path>,
    digest: Option<String>,
) -> Vec<String> {
    let mut out = vec![format!("uid:{}", status.uid)];
    if let Some(name) = &names.user {
        out.push(format!("user:{name}"));
    }
    out.push(format!("gid:{}", status.gid));
    if let Some(name) = &names.group {
        out.push(format!("group:{name}"));
    }
    for (gid, name) in status.groups.iter().zip(&names.supplementary) {
        out.push(format!("supplementary_gid:{gid}"));
        if let Some(name) = name {
            out.push(format!("supplementary_group:{name}"));
        }
    }
    if let Some(path) = path {
        out.push(format!("path:{}", path.display()));
    }
    if let Some(digest) = digest {
        out.push(format!("sha256:{digest}"));
    }
    out
}

fn proc_path(pid: i32, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{name}"))
}

fn read_proc(pid: i32, name: &str) -> Result<String, AttestError> {
    std::fs::read_to_string(proc_path(pid, name)).map_err(|e| io_error(pid, name, &e))
}

fn io_error(pid: i32, name: &str, e: &std::io::Error) -> AttestError {
    if matches!(e.kind(), ErrorKind::NotFound) || e.raw_os_error() == Some(nix::libc::ESRCH) {
        AttestError::Gone(pid)
    } else {
        AttestError::Failed(format!("/proc/{pid}/{name}: {e}"))
    }
}

/// Effective UID and GID (the second value of `Uid:`/`Gid:`, or the only one) and the
/// supplementary groups (`Groups:`).
fn parse_status(text: &str) -> Result<Status, String> {
    let mut uid = None;
    let mut gid = None;
    let mut groups = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "Uid" => uid = Some(effective(value).ok_or("no UIDs for process")?),
            "Gid" => gid = Some(effective(value).ok_or("no GIDs for process")?),
            "Groups" => {
                groups = value
                    .split_ascii_whitespace()
                    .map(|g| g.parse().map_err(|_| format!("bad group ID {g:?}")))
                    .collect::<Result<_, _>>()?;
            }
            _ => {}
        }
    }
    Ok(Status {
        uid: uid.ok_or("no Uid line")?,
        gid: gid.ok_or("no Gid line")?,
        groups,
    })
}

fn effective(value: &str) -> Option<u32> {
    let ids: Vec<&str> = value.split_ascii_whitespace().collect();
    ids.get(1).or(ids.first())?.parse().ok()
}

fn user_name(uid: u32) -> Option<String> {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn group_name(gid: u32) -> Option<String> {
    Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}

/// Lower-case hex SHA-256 of the file; `limit` > 0 refuses larger files.
fn sha256_file(path: &std::path::Path, limit: i64) -> Result<String, String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if limit > 0 && size > limit.unsigned_abs() {
        return Err(format!(
            "workload binary is {size} bytes, larger than workload_size_limit {limit}"
        ));
    }
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use signet_common::clock::{FakeClock, SystemClock};

    use super::*;
    use crate::attestor::workload::Attestors;

    fn me() -> Peer {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        Peer::of_socket(&a).unwrap()
    }

    fn values(selectors: &[Selector]) -> Vec<String> {
        selectors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn parses_effective_ids_and_groups() {
        let status = "Name:\tx\nUid:\t1000\t1001\t1002\t1003\nGid:\t50\t51\t52\t53\n\
                      Groups:\t4 24 27 \n";
        assert_eq!(
            parse_status(status).unwrap(),
            Status {
                uid: 1001,
                gid: 51,
                groups: vec![4, 24, 27]
            }
        );
        let single = "Uid:\t7\nGid:\t8\nGroups:\t\n";
        let s = parse_status(single).unwrap();
        assert_eq!((s.uid, s.gid, s.groups), (7, 8, vec![]));
        assert!(parse_status("Gid:\t1\n").is_err());
    }

    #[tokio::test]
    async fn attests_this_process() {
        let peer = me();
        let attestor = UnixAttestor::new(UnixConfig::default(), Arc::new(SystemClock));
        let got = values(&attestor.attest(&peer).await.unwrap());
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        assert!(got.contains(&format!("unix:uid:{uid}")), "{got:?}");
        assert!(got.contains(&format!("unix:gid:{gid}")), "{got:?}");
        if let Some(name) = user_name(uid) {
            assert!(got.contains(&format!("unix:user:{name}")), "{got:?}");
        }
        if let Some(name) = group_name(gid) {
            assert!(got.contains(&format!("unix:group:{name}")), "{got:?}");
        }
        for g in nix::unistd::getgroups().unwrap() {
            assert!(got.contains(&format!("unix:supplementary_gid:{g}")));
        }
        assert!(!got.iter().any(|s| s.starts_with("unix:path:")));
    }

    #[tokio::test]
    async fn discovers_path_and_hash_within_the_size_limit() {
        let peer = me();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let mut ctx = Context::new(&SHA256);
        ctx.update(&bytes);
        let hex: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();

        let with_limit = |workload_size_limit| {
            UnixAttestor::new(
                UnixConfig {
                    discover_workload_path: true,
                    workload_size_limit,
                },
                Arc::new(SystemClock),
            )
        };
        let got = values(&with_limit(0).attest(&peer).await.unwrap());
        assert!(got.contains(&format!("unix:path:{}", exe.display())));
        assert!(got.contains(&format!("unix:sha256:{hex}")));

        let never = values(&with_limit(-1).attest(&peer).await.unwrap());
        assert!(never.contains(&format!("unix:path:{}", exe.display())));
        assert!(!never.iter().any(|s| s.starts_with("unix:sha256:")));

        let err = with_limit(16).attest(&peer).await.unwrap_err();
        assert!(
            matches!(&err, AttestError::Failed(m) if m.contains("workload_size_limit")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reuses_names_and_digests_until_they_expire() {
        let peer = me();
        let clock = Arc::new(FakeClock::at_unix(1_000));
        let config = UnixConfig {
            discover_workload_path: true,
            workload_size_limit: 0,
        };
        let attestor = UnixAttestor::new(config, Arc::clone(&clock) as _);
        let first = values(&attestor.attest(&peer).await.unwrap());

        // Within the lifetime a call is served from the caches: plant values there.
        let uid = nix::unistd::geteuid().as_raw();
        attestor.users.insert(uid, Some("planted-user".into()));
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        attestor.digests.insert(FileKey::of(&exe), "planted".into());
        let cached = values(&attestor.attest(&peer).await.unwrap());
        assert!(
            cached.contains(&"unix:user:planted-user".to_owned()),
            "{cached:?}"
        );
        assert!(
            cached.contains(&"unix:sha256:planted".to_owned()),
            "{cached:?}"
        );

        // Once they expire, the name service and the binary are read again.
        clock.advance(LOOKUP_TTL);
        assert_eq!(values(&attestor.attest(&peer).await.unwrap()), first);
    }

    #[test]
    fn hashes_files() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"abc").unwrap();
        assert_eq!(
            sha256_file(f.path(), 0).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha256_file(f.path(), 2).is_err());
        assert!(sha256_file(f.path(), 3).is_ok());
    }

    #[tokio::test]
    async fn dead_caller_fails_attestation() {
        let peer = crate::peer::tests::dead_peer().await;
        let attestor = UnixAttestor::new(UnixConfig::default(), Arc::new(SystemClock));
        let err = attestor.attest(&peer).await.unwrap_err();
        assert!(
            matches!(err, AttestError::Gone(pid) if pid == peer.pid),
            "{err}"
        );

        let all = Attestors::new(vec![Arc::new(attestor)]);
        assert!(matches!(all.attest(&peer).await, Err(AttestError::Gone(_))));
    }

    #[derive(Debug)]
    struct Fixed(Result<&'static str, ()>);

    #[async_trait::async_trait]
    impl WorkloadAttestor for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        async fn attest(&self, _: &Peer) -> Result<Vec<Selector>, AttestError> {
            match self.0 {
                Ok(s) => Ok(vec![s.parse().unwrap()]),
                Err(()) => Err(AttestError::Failed("broken".into())),
            }
        }
    }

    #[tokio::test]
    async fn attestors_unite_successes_and_fail_only_if_all_fail() {
        let peer = me();
        let all = Attestors::new(vec![
            Arc::new(Fixed(Ok("a:1"))),
            Arc::new(Fixed(Err(()))),
            Arc::new(Fixed(Ok("b:2"))),
        ]);
        let got: Vec<String> = all
            .attest(&peer)
            .await
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["a:1", "b:2"]);

        let none = Attestors::new(vec![Arc::new(Fixed(Err(()))), Arc::new(Fixed(Err(())))]);
        assert!(matches!(
            none.attest(&peer).await,
            Err(AttestError::Failed(_))
        ));
        assert!(
            Attestors::new(vec![])
                .attest(&peer)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
