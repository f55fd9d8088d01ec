//! What is read from SPIRE's SQL datastore, the same way from every backend: each backend
//! runs the same queries (timestamps turned into Unix seconds in its SQL dialect, booleans
//! into 0/1) and hands back rows of plain values. Tables and columns are those of SPIRE's
//! schema version 23 (`pkg/server/datastore/sqlstore/models.go`, gorm's snake-cased names).

use crate::import::error::ImportError;

/// The schema version this importer reads (SPIRE 1.8.0 to 1.13.x).
pub(super) const SCHEMA_VERSION: i64 = 23;

/// One column value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// How a backend spells what differs between SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A timestamp column: Unix seconds on PostgreSQL (rounded to the nearest second when
    /// `round`, as SPIRE reports entry creation times, else truncated); on SQLite the text
    /// go-sqlite3 wrote, converted by [`Row::time`] the same way (SQLite's own date functions
    /// keep only milliseconds).
    fn epoch(self, col: &str, round: bool) -> String {
        match (self, round) {
            (Self::Sqlite, _) => col.to_owned(),
            (Self::Postgres, true) => format!("CAST(ROUND(EXTRACT(EPOCH FROM {col})) AS BIGINT)"),
            (Self::Postgres, false) => format!("CAST(FLOOR(EXTRACT(EPOCH FROM {col})) AS BIGINT)"),
        }
    }

    /// Whether a table exists.
    fn has_table(self, table: &str) -> String {
        match self {
            Self::Sqlite => {
                format!("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
            }
            Self::Postgres => format!(
                "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '{table}'"
            ),
        }
    }
}

/// 0/1 of a boolean column (NULL is 0).
fn flag(col: &str) -> String {
    format!("CAST(CASE WHEN {col} THEN 1 ELSE 0 END AS BIGINT)")
}

/// A text column, NULL read as "".
fn text(col: &str) -> String {
    format!("COALESCE({col}, '')")
}

/// An integer column, NULL read as 0.
fn int(col: &str) -> String {
    format!("CAST(COALESCE({col}, 0) AS BIGINT)")
}

/// A SPIRE datastore opened for reading.
#[async_trait::async_trait]
pub(super) trait Source: Send {
    /// Its dialect.
    fn dialect(&self) -> Dialect;
    /// Names it in messages (the file, or the database without credentials).
    fn describe(&self) -> String;
    /// Runs a query; every row as values in column order.
    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Value>>, String>;
}

/// `registered_entries` row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EntryRow {
    pub(super) pk: i64,
    pub(super) created_at: i64,
    pub(super) entry_id: String,
    pub(super) spiffe_id: String,
    pub(super) parent_id: String,
    pub(super) ttl: i64,
    pub(super) admin: bool,
    pub(super) downstream: bool,
    pub(super) expiry: i64,
    pub(super) revision_number: i64,
    pub(super) store_svid: bool,
    pub(super) hint: String,
    pub(super) jwt_svid_ttl: i64,
}

/// `attested_node_entries` row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NodeRow {
    pub(super) spiffe_id: String,
    pub(super) data_type: String,
    pub(super) serial_number: String,
    pub(super) expires_at: i64,
    pub(super) new_serial_number: String,
    pub(super) new_expires_at: Option<i64>,
    pub(super) can_reattest: bool,
}

/// `federated_trust_domains` row (reported, not imported).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FederationRow {
    pub(super) trust_domain: String,
    pub(super) bundle_endpoint_url: String,
}

/// `ca_journals` row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct JournalRow {
    pub(super) data: Vec<u8>,
    pub(super) active_x509_authority_id: String,
    pub(super) active_jwt_authority_id: String,
}

/// Everything read from the datastore.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct SpireRows {
    /// `bundles`: (primary key, trust domain ID, protobuf `common.Bundle`).
    pub(super) bundles: Vec<(i64, String, Vec<u8>)>,
    pub(super) entries: Vec<EntryRow>,
    /// `selectors`: (entry primary key, type, value), in insertion order.
    pub(super) selectors: Vec<(i64, String, String)>,
    /// `dns_names`: (entry primary key, value), in insertion order.
    pub(super) dns_names: Vec<(i64, String)>,
    /// `federated_registration_entries`: (bundle primary key, entry primary key).
    pub(super) federates_with: Vec<(i64, i64)>,
    pub(super) nodes: Vec<NodeRow>,
    /// `node_resolver_map_entries`: (SPIFFE ID, type, value).
    pub(super) node_selectors: Vec<(String, String, String)>,
    /// `join_tokens`: (token, expiry in Unix seconds).
    pub(super) join_tokens: Vec<(String, i64)>,
    pub(super) federations: Vec<FederationRow>,
    pub(super) journals: Vec<JournalRow>,
}

/// Checks the schema version, then reads every table the import needs.
pub(super) async fn read_all(src: &mut dyn Source) -> Result<SpireRows, ImportError> {
    let what = src.describe();
    let d = src.dialect();
    let fail = |error: String| ImportError::Source {
        what: what.clone(),
        error,
    };
    if src
        .query(&d.has_table("migrations"))
        .await
        .map_err(fail)?
        .is_empty()
    {
        return Err(fail(
            "not a SPIRE datastore (it has no migrations table)".into(),
        ));
    }
    let migration = src
        .query(&format!(
            "SELECT {}, {} FROM migrations ORDER BY id DESC LIMIT 1",
            int("version"),
            text("code_version")
        ))
        .await
        .map_err(fail)?;
    let Some(row) = migration.into_iter().next() else {
        return Err(fail(
            "its migrations table is empty (SPIRE never finished setting it up)".into(),
        ));
    };
    let mut r = Row::new(row, "migrations");
    let (found, code_version) = (r.int()?, r.text()?);
    if found != SCHEMA_VERSION {
        return Err(ImportError::SchemaVersion {
            what,
            found,
            code_version,
            expected: SCHEMA_VERSION,
        });
    }
    let mut rows = SpireRows::default();
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT {}, trust_domain, data FROM bundles ORDER BY id",
            int("id")
        ),
        "bundles",
    )
    .await?
    {
        rows.bundles.push((r.int()?, r.text()?, r.blob()?));
    }
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT {}, {}, entry_id, spiffe_id, parent_id, {}, {}, {}, {}, {}, {}, {}, {} \
             FROM registered_entries ORDER BY id",
            int("id"),
            d.epoch("created_at", true),
            int("ttl"),
            flag("admin"),
            flag("downstream"),
            int("expiry"),
            int("revision_number"),
            flag("store_svid"),
            text("hint"),
            int("jwt_svid_ttl"),
        ),
        "registered_entries",
    )
    .await?
    {
        rows.entries.push(EntryRow {
            pk: r.int()?,
            created_at: r.time(true)?.unwrap_or(0),
            entry_id: r.text()?,
            spiffe_id: r.text()?,
            parent_id: r.text()?,
            ttl: r.int()?,
            admin: r.flag()?,
            downstream: r.flag()?,
            expiry: r.int()?,
            revision_number: r.int()?,
            store_svid: r.flag()?,
            hint: r.text()?,
            jwt_svid_ttl: r.int()?,
        });
    }
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT {}, type, value FROM selectors ORDER BY id",
            int("registered_entry_id")
        ),
        "selectors",
    )
    .await?
    {
        rows.selectors.push((r.int()?, r.text()?, r.text()?));
    }
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT {}, value FROM dns_names ORDER BY id",
            int("registered_entry_id")
        ),
        "dns_names",
    )
    .await?
    {
        rows.dns_names.push((r.int()?, r.text()?));
    }
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT {}, {} FROM federated_registration_entries ORDER BY bundle_id, registered_entry_id",
            int("bundle_id"),
            int("registered_entry_id")
        ),
        "federated_registration_entries",
    )
    .await?
    {
        rows.federates_with.push((r.int()?, r.int()?));
    }
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT spiffe_id, {}, {}, {}, {}, {}, {} FROM attested_node_entries ORDER BY id",
            text("data_type"),
            text("serial_number"),
            d.epoch("expires_at", false),
            text("new_serial_number"),
            d.epoch("new_expires_at", false),
            flag("can_reattest"),
        ),
        "attested_node_entries",
    )
    .await?
    {
        rows.nodes.push(NodeRow {
            spiffe_id: r.text()?,
            data_type: r.text()?,
            serial_number: r.text()?,
            expires_at: r.time(false)?.unwrap_or(0),
            new_serial_number: r.text()?,
            new_expires_at: r.time(false)?,
            can_reattest: r.flag()?,
        });
    }
    for mut r in q(
        src,
        &what,
        "SELECT spiffe_id, type, value FROM node_resolver_map_entries ORDER BY id".into(),
        "node_resolver_map_entries",
    )
    .await?
    {
        rows.node_selectors.push((r.text()?, r.text()?, r.text()?));
    }
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT token, {} FROM join_tokens ORDER BY id",
            int("expiry")
        ),
        "join_tokens",
    )
    .await?
    {
        rows.join_tokens.push((r.text()?, r.int()?));
    }
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT trust_domain, {} FROM federated_trust_domains ORDER BY id",
            text("bundle_endpoint_url")
        ),
        "federated_trust_domains",
    )
    .await?
    {
        rows.federations.push(FederationRow {
            trust_domain: r.text()?,
            bundle_endpoint_url: r.text()?,
        });
    }
    for mut r in q(
        src,
        &what,
        format!(
            "SELECT data, {}, {} FROM ca_journals ORDER BY id",
            text("active_x509_authority_id"),
            text("active_jwt_authority_id")
        ),
        "ca_journals",
    )
    .await?
    {
        rows.journals.push(JournalRow {
            data: r.blob()?,
            active_x509_authority_id: r.text()?,
            active_jwt_authority_id: r.text()?,
        });
    }
    Ok(rows)
}

/// Runs one table's query; rows with the table named in errors.
async fn q(
    src: &mut dyn Source,
    what: &str,
    sql: String,
    table: &'static str,
) -> Result<Vec<Row>, ImportError> {
    let out = src.query(&sql).await.map_err(|e| ImportError::Source {
        what: what.to_owned(),
        error: format!("reading {table}: {e}"),
    })?;
    Ok(out.into_iter().map(|v| Row::new(v, table)).collect())
}

/// Reads a row's values in order, with the table named in errors.
struct Row {
    values: std::vec::IntoIter<Value>,
    table: &'static str,
}

impl Row {
    fn new(values: Vec<Value>, table: &'static str) -> Self {
        Self {
            values: values.into_iter(),
            table,
        }
    }

    fn next(&mut self, want: &str) -> Result<Value, ImportError> {
        self.values
            .next()
            .ok_or_else(|| ImportError::data(self.table, format!("a row lacks its {want} column")))
    }

    fn bad(&self, want: &str, got: &Value) -> ImportError {
        let kind = match got {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
        };
        ImportError::data(self.table, format!("expected {want}, found {kind}"))
    }

    /// A timestamp: Unix seconds already, or go-sqlite3's text
    /// (`2006-01-02 15:04:05.999999999-07:00`), rounded to the nearest second or truncated.
    fn time(&mut self, round: bool) -> Result<Option<i64>, ImportError> {
        match self.next("timestamp")? {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(i)),
            Value::Text(t) => parse_time(&t, round).map(Some).ok_or_else(|| {
                ImportError::data(self.table, format!("unreadable timestamp {t:?}"))
            }),
            other => Err(self.bad("a timestamp", &other)),
        }
    }

    fn int(&mut self) -> Result<i64, ImportError> {
        match self.next("integer")? {
            Value::Int(i) => Ok(i),
            other => Err(self.bad("an integer", &other)),
        }
    }

    fn flag(&mut self) -> Result<bool, ImportError> {
        Ok(self.int()? != 0)
    }

    fn text(&mut self) -> Result<String, ImportError> {
        match self.next("text")? {
            Value::Text(s) => Ok(s),
            Value::Blob(b) => String::from_utf8(b).map_err(|_| {
                ImportError::data(self.table, "a text column holds bytes that are not UTF-8")
            }),
            Value::Null => Ok(String::new()),
            other => Err(self.bad("text", &other)),
        }
    }

    fn blob(&mut self) -> Result<Vec<u8>, ImportError> {
        match self.next("blob")? {
            Value::Blob(b) => Ok(b),
            Value::Text(s) => Ok(s.into_bytes()),
            Value::Null => Ok(Vec::new()),
            other => Err(self.bad("a blob", &other)),
        }
    }
}

/// Unix seconds of `YYYY-MM-DD[ T]HH:MM:SS[.fraction][Z|±HH:MM]` (no zone: UTC).
pub(super) fn parse_time(text: &str, round: bool) -> Option<i64> {
    let t = text.trim();
    let (date, rest) = (t.get(..10)?, t.get(11..)?);
    if !matches!(t.as_bytes().get(10), Some(b' ' | b'T')) {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, mo, d) = (
        num(date.get(..4)?)?,
        num(date.get(5..7)?)?,
        num(date.get(8..10)?)?,
    );
    let (h, mi, sec) = (
        num(rest.get(..2)?)?,
        num(rest.get(3..5)?)?,
        num(rest.get(6..8)?)?,
    );
    let mut rest = rest.get(8..)?;
    let mut round_up = false;
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        round_up = round && frac.as_bytes().first().is_some_and(|b| *b >= b'5');
        rest = &frac[end..];
    }
    let offset = match rest {
        "" | "Z" | "+00:00" => 0,
        z if z.len() == 6 && (z.starts_with('+') || z.starts_with('-')) => {
            let secs = num(z.get(1..3)?)? * 3600 + num(z.get(4..6)?)? * 60;
            if z.starts_with('-') { -secs } else { secs }
        }
        _ => return None,
    };
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    let at = date
        .with_hms(
            u8::try_from(h).ok()?,
            u8::try_from(mi).ok()?,
            u8::try_from(sec).ok()?,
        )
        .ok()?
        .assume_utc()
        .unix_timestamp();
    Some(at - offset + i64::from(round_up))
}
