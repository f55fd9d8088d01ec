//! Replacing files so that a reader never sees a half-written one: each file is written to a
//! temporary sibling created with its final mode (set explicitly, whatever the umask), synced,
//! then renamed over the old one. A [`FileSet`] stages several files first and renames them
//! one after another, so that a reader loading a certificate and its key sees the new pair as
//! soon as possible after each other.

use std::fs::{OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `data`, mode `mode`.
pub(crate) fn replace(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut set = FileSet::default();
    set.stage(path, data, mode)?;
    set.commit()
}

/// Files written to temporary names, renamed into place by [`FileSet::commit`]; dropping an
/// uncommitted set removes its temporary files.
#[derive(Debug, Default)]
pub(crate) struct FileSet {
    staged: Vec<(PathBuf, PathBuf)>,
}

impl FileSet {
    /// Writes `data` to a temporary sibling of `path`.
    pub(crate) fn stage(&mut self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        let tmp = temp_sibling(path);
        if let Err(e) = write_new(&tmp, data, mode) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.staged.push((tmp, path.to_path_buf()));
        Ok(())
    }

    /// Renames every staged file into place, in staging order.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        let staged = std::mem::take(&mut self.staged);
        let mut iter = staged.into_iter();
        while let Some((tmp, path)) = iter.next() {
            if let Err(e) = std::fs::rename(&tmp, &path) {
                let _ = std::fs::remove_file(&tmp);
                for (rest, _) in iter {
                    let _ = std::fs::remove_file(rest);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for FileSet {
    fn drop(&mut self) {
        for (tmp, _) in &self.staged {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o600)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(data)?;
    file.sync_all()
}

/// `.NAME.PID.tmp` beside `path` (hidden, so that directory globs skip it).
fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn replace_sets_the_mode_whatever_the_old_file_had() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svid_key.pem");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        replace(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        // Modes wider than the umask allows are set too (spiffe-helper's cert_file_mode).
        replace(&path, b"newer", 0o664).unwrap();
        assert_eq!(mode(&path), 0o664);
    }

    #[test]
    fn replace_is_a_rename_a_reader_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svid.pem");
        std::fs::write(&path, "first").unwrap();
        let old_inode = std::fs::metadata(&path).unwrap().ino();
        let mut reader = std::fs::File::open(&path).unwrap();
        replace(&path, b"second", 0o644).unwrap();
        let mut seen = String::new();
        io::Read::read_to_string(&mut reader, &mut seen).unwrap();
        assert_eq!(
            seen, "first",
            "an open reader still sees the whole old file"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), old_inode);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["svid.pem"], "no temporary file left behind");
    }

    #[test]
    fn a_set_renames_nothing_until_commit_and_cleans_up_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.key"));
        let mut set = FileSet::default();
        set.stage(&a, b"A", 0o644).unwrap();
        set.stage(&b, b"B", 0o600).unwrap();
        assert!(!a.exists() && !b.exists());
        set.commit().unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"A");
        assert_eq!((mode(&a), mode(&b)), (0o644, 0o600));

        let mut set = FileSet::default();
        set.stage(&a, b"A2", 0o644).unwrap();
        drop(set);
        assert_eq!(std::fs::read(&a).unwrap(), b"A");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_missing_directory_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("svid.pem");
        let err = replace(&path, b"x", 0o644).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
