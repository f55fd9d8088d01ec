//! SPIRE's `postgres` datastore, read with tokio-postgres. Only SELECTs are sent.

use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

use crate::import::error::ImportError;
use crate::import::source::{Dialect, Source, Value};

/// A connection to SPIRE's PostgreSQL database.
pub(super) struct PostgresSource {
    describe: String,
    client: Client,
}

impl PostgresSource {
    /// Connects with SPIRE's `connection_string` (key=value or URL form). TLS is not
    /// offered: `sslmode=require` is refused by the connection with a clear error.
    pub(super) async fn connect(connection_string: &str) -> Result<Self, ImportError> {
        let config: tokio_postgres::Config =
            connection_string
                .parse()
                .map_err(|e: tokio_postgres::Error| ImportError::Source {
                    what: "connection_string".into(),
                    error: e.to_string(),
                })?;
        let describe = describe(&config);
        let fail = |error: String| ImportError::Source {
            what: describe.clone(),
            error,
        };
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { describe, client })
    }
}

/// `postgres database <db> on <host>` without user or password.
fn describe(config: &tokio_postgres::Config) -> String {
    let db = config.get_dbname().unwrap_or("(default)");
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    format!("postgres database {db:?} on {host}")
}

#[async_trait::async_trait]
impl Source for PostgresSource {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Value>>, String> {
        let rows = self
            .client
            .query(sql, &[])
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => db.message().to_owned(),
                None => e.to_string(),
            })?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| value(row, i).map_err(|e| e.to_string()))
                    .collect()
            })
            .collect()
    }
}

fn value(row: &tokio_postgres::Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    let ty = row.columns()[i].type_().clone();
    let v = if ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
    } else if ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Int(v.into()))
    } else if ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Int(v.into()))
    } else if ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map(|v| Value::Int(v.into()))
    } else if ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
    } else {
        row.try_get::<_, Option<String>>(i)?.map(Value::Text)
    };
    Ok(v.unwrap_or(Value::Null))
}
