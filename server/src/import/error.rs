//! Why an import failed. Every variant is one line naming the problem; nothing has been
//! written to the target when any of them except `Write` is returned.

use std::path::PathBuf;

/// Why `signet-server import spire` failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The SPIRE server.conf (or the target config) is unusable.
    #[error("{0}")]
    Config(String),
    /// SPIRE's datastore could not be opened or read.
    #[error("SPIRE datastore {what}: {error}")]
    Source {
        /// The file or database.
        what: String,
        /// What went wrong.
        error: String,
    },
    /// The datastore is of a schema version this importer does not read.
    #[error(
        "SPIRE datastore {what} has schema version {found} (SPIRE {code_version}): only schema version {expected} (SPIRE 1.8 to 1.13) can be imported; \
         upgrade or downgrade SPIRE to 1.13 first"
    )]
    SchemaVersion {
        /// The file or database.
        what: String,
        /// The version in its `migrations` table.
        found: i64,
        /// The SPIRE version that last migrated it.
        code_version: String,
        /// The version read here.
        expected: i64,
    },
    /// SPIRE's keys.json is missing or unusable.
    #[error("SPIRE key file {}: {error}", path.display())]
    Keys {
        /// The keys_path.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// A record in SPIRE's datastore cannot be carried over.
    #[error("SPIRE {what}: {error}")]
    Data {
        /// Which record.
        what: String,
        /// What is wrong with it.
        error: String,
    },
    /// The target store or key file already holds data and `--force` was not given.
    #[error("{0}; nothing was imported (pass --force to import over it)")]
    NotEmpty(String),
    /// The target store or key file cannot be opened or read.
    #[error("{what}: {error}")]
    Target {
        /// The store or file.
        what: String,
        /// What went wrong.
        error: String,
    },
    /// Writing to the target failed part-way.
    #[error("writing {what}: {error}")]
    Write {
        /// What was being written.
        what: String,
        /// What went wrong.
        error: String,
    },
}

impl ImportError {
    /// A record that cannot be carried over.
    pub(super) fn data(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Data {
            what: what.into(),
            error: error.to_string(),
        }
    }

    /// A target that cannot be opened or read.
    pub(super) fn target(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Target {
            what: what.into(),
            error: error.to_string(),
        }
    }

    /// A write that failed.
    pub(super) fn write(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Write {
            what: what.into(),
            error: error.to_string(),
        }
    }
}
