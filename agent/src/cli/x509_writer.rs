//! The X.509 side of `api watch --write` / `--config`: each update's files written (every
//! file staged first, then renamed into place one after another), files of SVIDs that went
//! away removed (SPIRE's numbered layout), then the configured program told ([`Renewer`]).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cli::client::CliError;
use crate::cli::helper_files::helper_layout;
use crate::cli::renew::Renewer;
use crate::cli::watch_plan::{Layout, Renew, X509Files};
use crate::cli::write::{self, OutFile, spire_layout};
use crate::cli::x509::X509Context;

/// Mode of a directory the watch has to create.
const NEW_DIR_MODE: u32 = 0o700;

#[derive(Debug)]
pub(crate) struct X509Writer {
    files: X509Files,
    hint: String,
    renewer: Renewer,
    written: BTreeSet<PathBuf>,
}

impl X509Writer {
    pub(crate) fn new(files: X509Files, hint: String, renew: Renew) -> Self {
        Self {
            files,
            hint,
            renewer: Renewer::new(renew),
            written: BTreeSet::new(),
        }
    }

    /// The files of `ctx` (`now`: Unix seconds).
    fn layout(&self, ctx: &X509Context, now: i64) -> Result<Vec<OutFile>, CliError> {
        let dir = &self.files.dir;
        match &self.files.layout {
            Layout::Spire => Ok(spire_layout(dir, ctx, self.files.modes)),
            Layout::Helper(names) => {
                helper_layout(dir, ctx, names, &self.hint, self.files.modes, now)
            }
        }
    }

    /// Writes the files of `ctx`; returns their "Writing ... to file ..." lines.
    pub(crate) fn write(&mut self, ctx: &X509Context, now: i64) -> Result<Vec<String>, CliError> {
        let files = self.layout(ctx, now)?;
        ensure_dir(&self.files.dir)?;
        write::write_all(&files)?;
        let now_written: BTreeSet<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        for stale in self.written.difference(&now_written) {
            let _ = std::fs::remove_file(stale);
        }
        self.written = now_written;
        Ok(files.iter().map(OutFile::announcement).collect())
    }

    /// Tells the program; returns what went wrong, one line each.
    pub(crate) async fn renew(&mut self) -> Vec<String> {
        self.renewer.files_updated().await
    }
}

/// Creates `dir` (0700) if it does not exist.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), CliError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(NEW_DIR_MODE)))
        .map_err(|e| CliError::new(format!("mkdir {}: {e}", dir.display())))
}
