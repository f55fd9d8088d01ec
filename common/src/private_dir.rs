//! Private state directories: what both binaries keep their `data_dir` (and the datastore and
//! keys inside it) in. Created 0700; an existing one is checked the way SPIRE checks key
//! files: group- or other-writable is refused (anyone could replace what is in it), group- or
//! other-readable is tightened to 0700 with a loud warning, and everything below it loses its
//! group and other bits, so that a store written by an older release (0644 under 0755) stops
//! being readable by other local users.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of a private directory.
pub const DIR_MODE: u32 = 0o700;

/// Why a private directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    /// Creating, reading or changing the directory failed.
    #[error("{what} {path}: {error}")]
    Io {
        /// The step.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The directory is writable by group or other users.
    #[error(
        "{path} is mode {mode:04o}: other local users can write to it and so replace the keys \
         and records kept there; make it private (chmod 700 {path}) and check its contents"
    )]
    Writable {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path exists and is not a directory.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
}

/// Makes `path` a private directory (see the module docs). `what` names it in the warnings
/// (`data_dir`, `the datastore directory`).
pub fn ensure_private_dir(what: &str, path: &Path) -> Result<(), PrivateDirError> {
    let io = |what, error| PrivateDirError::Io {
        what,
        path: path.to_owned(),
        error,
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Parents get the usual modes (they may hold public things, such as the agent's
            // socket directory); only the leaf is private.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(|e| io("cannot create the parent of", e))?;
            }
            match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(io("cannot create", e));
                }
                _ => {}
            }
            // Whatever the umask took away or a racing creator chose.
            return fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| io("cannot set the mode of", e));
        }
        Err(e) => return Err(io("cannot read", e)),
        Ok(_) => {}
    }
    // Follows a symlink: the directory it names is what must be private.
    let meta = fs::metadata(path).map_err(|e| io("cannot read", e))?;
    if !meta.is_dir() {
        return Err(PrivateDirError::NotADirectory(path.to_owned()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(PrivateDirError::Writable {
            path: path.to_owned(),
            mode,
        });
    }
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            "The {what} is readable by other local users: setting it to 0700 (it holds keys and \
             records no one else may read)"
        );
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| io("cannot set the mode of", e))?;
    }
    tighten_below(path)
}

/// Removes group and other bits from everything under `dir` (not following symlinks).
fn tighten_below(dir: &Path) -> Result<(), PrivateDirError> {
    let io = |what, path: &Path, error| PrivateDirError::Io {
        what,
        path: path.to_owned(),
        error,
    };
    let mut stack = vec![dir.to_owned()];
    let mut tightened = 0usize;
    while let Some(d) = stack.pop() {
        for item in fs::read_dir(&d).map_err(|e| io("cannot list", &d, e))? {
            let item = item.map_err(|e| io("cannot list", &d, e))?;
            let path = item.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| io("cannot read", &path, e))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & !0o077))
                    .map_err(|e| io("cannot set the mode of", &path, e))?;
                tightened += 1;
            }
            if kind.is_dir() {
                stack.push(path);
            }
        }
    }
    if tightened > 0 {
        tracing::warn!(
            path = %dir.display(),
            files = tightened,
            "Removed group and other access from files under a private directory"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_directory_is_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private_dir("data_dir", &dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert!(root.path().join("a").is_dir());
    }

    #[test]
    fn an_existing_readable_tree_is_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        fs::create_dir_all(dir.join("datastore/sled")).unwrap();
        fs::write(dir.join("datastore/sled/db"), b"x").unwrap();
        for (p, m) in [
            ("", 0o755),
            ("datastore", 0o755),
            ("datastore/sled/db", 0o644),
        ] {
            fs::set_permissions(dir.join(p), fs::Permissions::from_mode(m)).unwrap();
        }
        ensure_private_dir("data_dir", &dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("datastore")), 0o700);
        assert_eq!(mode(&dir.join("datastore/sled/db")), 0o600);
    }

    #[test]
    fn a_writable_directory_is_refused_and_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir("data_dir", &dir)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mode 0777") && err.contains("chmod 700"),
            "{err}"
        );
        assert_eq!(mode(&dir), 0o777);
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            ensure_private_dir("data_dir", &file),
            Err(PrivateDirError::NotADirectory(_))
        ));
    }
}
