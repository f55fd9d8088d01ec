//! SPIRE's `sqlite3` datastore, opened read-only: the import never changes SPIRE's file.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::import::error::ImportError;
use crate::import::source::{Dialect, Source, Value};

/// A SPIRE sqlite file.
pub(super) struct SqliteSource {
    path: PathBuf,
    conn: Connection,
}

impl SqliteSource {
    /// Opens `path` read-only; a missing file is an error, never created.
    pub(super) fn open(path: &Path) -> Result<Self, ImportError> {
        let fail = |error: String| ImportError::Source {
            what: path.display().to_string(),
            error,
        };
        if !path.is_file() {
            return Err(fail("no such file".into()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            conn,
        })
    }
}

#[async_trait::async_trait]
impl Source for SqliteSource {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Value>>, String> {
        // A local file read in well under a second: run inline.
        let mut stmt = self.conn.prepare(sql).map_err(|e| e.to_string())?;
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |row| {
                (0..n)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            ValueRef::Null => Value::Null,
                            ValueRef::Integer(v) => Value::Int(v),
                            // gorm keeps no floats in these tables; a real is truncated.
                            ValueRef::Real(v) => Value::Int(v as i64),
                            ValueRef::Text(t) => {
                                Value::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| e.to_string())
    }
}
