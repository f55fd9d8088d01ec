//! Crash-safe private files: what both binaries use for keys and SVIDs on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A failed step of [`write_private_atomically`].
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {error}")]
pub struct WriteError {
    /// The step (`writing`, `replacing`, ...).
    pub what: &'static str,
    /// The target file.
    pub path: String,
    /// Why.
    #[source]
    pub error: std::io::Error,
}

/// Writes `data` to a mode-0600 temp file beside `path` (never readable by others, not even
/// briefly), fsyncs it, renames it over `path` and fsyncs the directory, so that a crash
/// leaves either the old file or the new one, never a half-written one.
pub fn write_private_atomically(path: &Path, data: &[u8]) -> Result<(), WriteError> {
    write_private_atomically_with(path, |w| w.write_all(data))
}

/// As [`write_private_atomically`], the content written by `write` through a buffer (so a
/// large document is streamed to the file rather than built in memory first).
pub fn write_private_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let fail = |what, error| WriteError {
        what,
        path: path.display().to_string(),
        error,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail("creating a temp file for", e))?;
        let mut buffered = BufWriter::new(f);
        write(&mut buffered)
            .and_then(|()| buffered.flush())
            .map_err(|e| fail("writing", e))?;
        let f = buffered
            .into_inner()
            .map_err(|e| fail("writing", e.into_error()))?;
        f.sync_all().map_err(|e| fail("syncing", e))?;
        fs::rename(&tmp, path).map_err(|e| fail("replacing", e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("syncing the directory of", e))
    })();
    if result.is_err() {
        // Best effort: the temp file may not exist or may already have been renamed.
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn writes_a_private_file_and_replaces_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private_atomically(&path, b"one").unwrap();
        write_private_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn a_failed_write_names_the_step_and_the_file() {
        let err = write_private_atomically(Path::new("/nonexistent-dir/x"), b"").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x"), "{err}");
    }
}
