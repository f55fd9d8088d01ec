//! PostgreSQL and pool errors as `StoreError`s: a database that cannot be reached is
//! `Unavailable` (the call changed nothing and may be retried), anything else `Backend`.
//! The messages do not say which database: the store prefixes its own description
//! (`named`), so that a caller told `Unavailable` learns which database is down.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::datastore::StoreError;

pub(crate) fn pg_error(error: tokio_postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) if is_unavailable_state(db.code()) => {
            StoreError::Unavailable(db.message().to_owned())
        }
        Some(db) => StoreError::Backend(db.message().to_owned()),
        // No server answer: the connection failed or closed.
        None if error.is_closed() || is_io(&error) => StoreError::Unavailable(with_causes(&error)),
        None => StoreError::Backend(with_causes(&error)),
    }
}

pub(crate) fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(e) => match pg_error(e) {
            StoreError::Backend(msg) => StoreError::Unavailable(msg),
            other => other,
        },
        PoolError::Timeout(_) => StoreError::Unavailable(
            "timed out waiting for a connection (database down or max_open_conns reached)".into(),
        ),
        other => StoreError::Unavailable(format!("connection pool: {other}")),
    }
}

/// `error` with its message prefixed by `describe` (which database: "PostgreSQL at
/// host:port/db", never a credential).
pub(crate) fn named(describe: &str, error: StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(msg) => StoreError::Unavailable(format!("{describe}: {msg}")),
        StoreError::Backend(msg) => StoreError::Backend(format!("{describe}: {msg}")),
        other => other,
    }
}

/// Whether `error` is a unique violation of `constraint`.
pub(crate) fn violates(error: &tokio_postgres::Error, constraint: &str) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(constraint)
    })
}

fn is_unavailable_state(code: &SqlState) -> bool {
    // Class 08 (connection exception), 57P01-57P03 (admin/crash shutdown, cannot connect
    // now), 53300 (too many connections).
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
}

/// `error: cause: cause ...` (tokio-postgres keeps the reason, such as "Connection refused",
/// in the source).
fn with_causes(error: &tokio_postgres::Error) -> String {
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

fn is_io(error: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}
