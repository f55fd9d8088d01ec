//! `DataStore "sql"` on PostgreSQL, for several servers sharing one database: tokio-postgres
//! through a deadpool connection pool, TLS by rustls on aws-lc-rs, the schema created and
//! migrated by the server (see `schema`). Records are JSON in `data` columns, with the
//! columns that queries and constraints need beside them; every multi-row change is one
//! transaction, and the database's constraints (not a read-then-write) decide races: an
//! entry's similarity key is `UNIQUE`, a join token is taken by one `DELETE ... RETURNING`.
//!
//! Reads that may be stale (listings) go to `ro_connection_string` when one is set; reads
//! inside a write, and everything else, go to the primary.

use std::time::Duration;

use deadpool_postgres::Pool;
use signet_common::bundle::Bundle;
use signet_common::entry::RegistrationEntry;
use signet_common::id::{SpiffeId, TrustDomain};
use signet_common::node::AttestedNode;
use signet_common::selector::Selector;
use tokio_postgres::Row;

use crate::relationship::Relationship;

use crate::datastore::codec::{decode, encode, similarity_key};
use crate::datastore::token_digest::join_token_digest;
use crate::datastore::{Change, ChangeKind, Changes, DataStore, EntryScan, JoinToken, StoreError};
use error::{named, pg_error, pool_error, violates};

mod connect;
mod error;
mod federations;
mod listen;
mod schema;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use schema::VERSION as SCHEMA_VERSION;

/// SPIRE's `sql` plugin keys that Signet uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// `connection_string`: libpq key=value or URL form.
    pub connection_string: String,
    /// `ro_connection_string`: a read replica for listings, if any.
    pub ro_connection_string: Option<String>,
    /// `max_open_conns` (SPIRE's default: 100).
    pub max_open_conns: usize,
    /// `conn_max_lifetime`: connections older than this are closed rather than reused.
    pub conn_max_lifetime: Option<Duration>,
    /// `!disable_migration`: create and migrate the schema at start.
    pub migrate: bool,
}

impl PgOptions {
    /// Defaults for `connection_string`.
    pub fn new(connection_string: impl Into<String>) -> Self {
        Self {
            connection_string: connection_string.into(),
            ro_connection_string: None,
            max_open_conns: 100,
            conn_max_lifetime: None,
            migrate: true,
        }
    }
}

/// The PostgreSQL-backed `DataStore`.
pub struct PgStore {
    pool: Pool,
    ro: Option<Pool>,
    describe: String,
    signal: tokio::sync::watch::Receiver<u64>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.describe)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (failing with `Unavailable` naming the database if it cannot be reached
    /// within a few seconds) and brings the schema up to date.
    pub async fn connect(options: &PgOptions) -> Result<Self, StoreError> {
        let target = connect::parse(&options.connection_string, "connection_string")?;
        let pool = connect::pool(&target, options.max_open_conns, options.conn_max_lifetime)?;
        let describe = target.describe.clone();
        let at_start = |e: StoreError| match e {
            StoreError::Unavailable(msg) => {
                StoreError::Unavailable(format!("cannot connect to {describe}: {msg}"))
            }
            other => named(&describe, other),
        };
        let mut client = pool.get().await.map_err(pool_error).map_err(at_start)?;
        schema::migrate(&mut client, options.migrate)
            .await
            .map_err(at_start)?;
        drop(client);
        let ro = match &options.ro_connection_string {
            Some(s) => {
                let target = connect::parse(s, "ro_connection_string")?;
                Some(connect::pool(
                    &target,
                    options.max_open_conns,
                    options.conn_max_lifetime,
                )?)
            }
            None => None,
        };
        let signal = listen::spawn(target);
        Ok(Self {
            pool,
            ro,
            describe,
            signal,
        })
    }

    /// What the store is connected to (no credentials), for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// A PostgreSQL error as a `StoreError` naming this store's database.
    fn pg(&self, error: tokio_postgres::Error) -> StoreError {
        named(&self.describe, pg_error(error))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| named(&self.describe, pool_error(e)))
    }

    async fn ro_client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        match &self.ro {
            Some(ro) => ro
                .get()
                .await
                .map_err(|e| named(&self.describe, pool_error(e))),
            None => self.client().await,
        }
    }

    /// A transaction holding the change-log lock.
    async fn begin_write<'c>(
        &self,
        client: &'c mut deadpool_postgres::Client,
    ) -> Result<deadpool_postgres::Transaction<'c>, StoreError> {
        let tx = client.transaction().await.map_err(|e| self.pg(e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::CHANGE_LOCK])
            .await
            .map_err(|e| self.pg(e))?;
        Ok(tx)
    }

    async fn query(
        &self,
        ro: bool,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = if ro {
            self.ro_client().await?
        } else {
            self.client().await?
        };
        let statement = client.prepare_cached(sql).await.map_err(|e| self.pg(e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| self.pg(e))
    }

    /// Runs one writing statement in its own transaction, after taking the change-log lock
    /// (every writer takes it first, so writers never deadlock on it).
    async fn write(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.begin_write(&mut client).await?;
        let statement = tx.prepare_cached(sql).await.map_err(|e| self.pg(e))?;
        let rows = tx.query(&statement, params).await.map_err(|e| self.pg(e))?;
        tx.commit().await.map_err(|e| self.pg(e))?;
        Ok(rows)
    }

    async fn entries_where(
        &self,
        sql: &str,
        param: &str,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        decode_rows(&self.query(false, sql, &[&param]).await?, "entry")
    }

    /// The entry with the same similarity key as `entry`, read after a unique violation.
    async fn similar(
        &self,
        entry: &RegistrationEntry,
    ) -> Result<Option<RegistrationEntry>, StoreError> {
        let rows = self
            .query(
                false,
                "SELECT data FROM registration_entries WHERE similarity = $1",
                &[&similarity_key(entry)],
            )
            .await?;
        Ok(decode_rows(&rows, "entry")?.pop())
    }

    async fn write_entry(
        &self,
        entry: &RegistrationEntry,
        update: bool,
    ) -> Result<Option<RegistrationEntry>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.begin_write(&mut client).await?;
        let stored = if update {
            let row = tx
                .query_opt(
                    "SELECT data FROM registration_entries WHERE id = $1 FOR UPDATE",
                    &[&entry.id],
                )
                .await
                .map_err(|e| self.pg(e))?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(format!("entry {}", entry.id)));
            };
            Some(decode::<RegistrationEntry>("entry", row.get(0))?)
        } else {
            None
        };
        let entry = match &stored {
            Some(stored) => RegistrationEntry {
                revision_number: stored.revision_number.saturating_add(1),
                created_at: stored.created_at,
                ..entry.clone()
            },
            None => entry.clone(),
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &entry.id,
            &entry.spiffe_id.to_string(),
            &entry.parent_id.to_string(),
            &similarity_key(&entry),
            &entry.expires_at,
            &encode(&entry)?,
        ];
        let written = if update {
            tx.execute(
                "UPDATE registration_entries SET spiffe_id = $2, parent_id = $3, similarity = $4,
                 expires_at = $5, data = $6 WHERE id = $1",
                &params,
            )
            .await
        } else {
            tx.execute(
                "INSERT INTO registration_entries (id, spiffe_id, parent_id, similarity, expires_at, data)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &params,
            )
            .await
        };
        match written {
            Ok(_) => {}
            Err(e) if violates(&e, "registration_entries_pkey") => {
                return Err(StoreError::AlreadyExists(format!(
                    "entry {} already exists",
                    entry.id
                )));
            }
            Err(e) if violates(&e, "registration_entries_similar") => return Ok(None),
            Err(e) => return Err(self.pg(e)),
        }
        let selectors: Vec<String> = entry.selectors.iter().map(|s| s.to_string()).collect();
        if update {
            tx.execute(
                "DELETE FROM registration_entry_selectors WHERE entry_id = $1",
                &[&entry.id],
            )
            .await
            .map_err(|e| self.pg(e))?;
        }
        tx.execute(
            "INSERT INTO registration_entry_selectors (selector, entry_id)
             SELECT s, $2 FROM unnest($1::text[]) AS s",
            &[&selectors, &entry.id],
        )
        .await
        .map_err(|e| self.pg(e))?;
        tx.commit().await.map_err(|e| self.pg(e))?;
        Ok(Some(entry))
    }

    /// Creates or updates `entry`; a similar entry found by the database's unique constraint
    /// is returned as `SimilarEntry` (retried if it vanished before it could be read).
    async fn put_entry(
        &self,
        entry: RegistrationEntry,
        update: bool,
    ) -> Result<RegistrationEntry, StoreError> {
        loop {
            if let Some(written) = self.write_entry(&entry, update).await? {
                return Ok(written);
            }
            if let Some(similar) = self.similar(&entry).await?
                && similar.id != entry.id
            {
                return Err(StoreError::SimilarEntry(Box::new(similar)));
            }
        }
    }
}

fn decode_rows<T: serde::de::DeserializeOwned>(
    rows: &[Row],
    what: &str,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(|r| decode(what, r.get(0))).collect()
}

// === impl DataStore for PgStore ===

#[async_trait::async_trait]
impl DataStore for PgStore {
    async fn create_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        self.put_entry(entry, false).await
    }

    async fn update_entry(
        &self,
        entry: RegistrationEntry,
    ) -> Result<RegistrationEntry, StoreError> {
        self.put_entry(entry, true).await
    }

    async fn delete_entry(&self, id: &str) -> Result<RegistrationEntry, StoreError> {
        let rows = self
            .write(
                "DELETE FROM registration_entries WHERE id = $1 RETURNING data",
                &[&id],
            )
            .await?;
        decode_rows(&rows, "entry")?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("entry {id}")))
    }

    async fn entry(&self, id: &str) -> Result<Option<RegistrationEntry>, StoreError> {
        Ok(self
            .entries_where("SELECT data FROM registration_entries WHERE id = $1", id)
            .await?
            .pop())
    }

    async fn list_entries(&self) -> Result<Vec<RegistrationEntry>, StoreError> {
        let rows = self
            .query(
                true,
                "SELECT data FROM registration_entries ORDER BY id",
                &[],
            )
            .await?;
        decode_rows(&rows, "entry")
    }

    async fn entries_by_parent(
        &self,
        parent: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries_where(
            "SELECT data FROM registration_entries WHERE parent_id = $1 ORDER BY id",
            &parent.to_string(),
        )
        .await
    }

    async fn entries_by_spiffe_id(
        &self,
        id: &SpiffeId,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries_where(
            "SELECT data FROM registration_entries WHERE spiffe_id = $1 ORDER BY id",
            &id.to_string(),
        )
        .await
    }

    async fn entries_by_selector(
        &self,
        selector: &Selector,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        self.entries_where(
            "SELECT e.data FROM registration_entries e
             JOIN registration_entry_selectors s ON s.entry_id = e.id
             WHERE s.selector = $1 ORDER BY e.id",
            &selector.to_string(),
        )
        .await
    }

    async fn entries_page(
        &self,
        scan: EntryScan<'_>,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistrationEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match scan {
            EntryScan::All => {
                self.query(
                    true,
                    "SELECT data FROM registration_entries WHERE id > $1 ORDER BY id LIMIT $2",
                    &[&after, &limit],
                )
                .await?
            }
            EntryScan::Parent(parent) => {
                let sql = "SELECT data FROM registration_entries WHERE parent_id = $1 AND id > $2
                     ORDER BY id LIMIT $3";
                self.query(false, sql, &[&parent.to_string(), &after, &limit])
                    .await?
            }
            EntryScan::SpiffeId(id) => {
                let sql = "SELECT data FROM registration_entries WHERE spiffe_id = $1 AND id > $2
                     ORDER BY id LIMIT $3";
                self.query(false, sql, &[&id.to_string(), &after, &limit])
                    .await?
            }
            EntryScan::Selector(selector) => {
                let sql = "SELECT e.data FROM registration_entries e
                     JOIN registration_entry_selectors s ON s.entry_id = e.id
                     WHERE s.selector = $1 AND s.entry_id > $2 ORDER BY s.entry_id LIMIT $3";
                self.query(false, sql, &[&selector.to_string(), &after, &limit])
                    .await?
            }
        };
        decode_rows(&rows, "entry")
    }

    async fn count_entries(&self) -> Result<u64, StoreError> {
        let rows = self
            .query(true, "SELECT count(*) FROM registration_entries", &[])
            .await?;
        let count: i64 = match rows.first() {
            Some(row) => row.try_get(0).map_err(|e| self.pg(e))?,
            None => 0,
        };
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn prune_entries(&self, before: i64) -> Result<Vec<RegistrationEntry>, StoreError> {
        let rows = self
            .write(
                "DELETE FROM registration_entries WHERE expires_at > 0 AND expires_at < $1
                 RETURNING data",
                &[&before],
            )
            .await?;
        let mut pruned: Vec<RegistrationEntry> = decode_rows(&rows, "entry")?;
        pruned.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(pruned)
    }

    async fn put_node(&self, node: AttestedNode) -> Result<AttestedNode, StoreError> {
        self.write(
            "INSERT INTO attested_nodes (spiffe_id, data) VALUES ($1, $2)
             ON CONFLICT (spiffe_id) DO UPDATE SET data = EXCLUDED.data",
            &[&node.spiffe_id.to_string(), &encode(&node)?],
        )
        .await?;
        Ok(node)
    }

    async fn node(&self, id: &SpiffeId) -> Result<Option<AttestedNode>, StoreError> {
        let rows = self
            .query(
                false,
                "SELECT data FROM attested_nodes WHERE spiffe_id = $1",
                &[&id.to_string()],
            )
            .await?;
        Ok(decode_rows(&rows, "node")?.pop())
    }

    async fn list_nodes(&self) -> Result<Vec<AttestedNode>, StoreError> {
        let rows = self
            .query(
                true,
                "SELECT data FROM attested_nodes ORDER BY spiffe_id",
                &[],
            )
            .await?;
        decode_rows(&rows, "node")
    }

    async fn delete_node(&self, id: &SpiffeId) -> Result<AttestedNode, StoreError> {
        let rows = self
            .write(
                "DELETE FROM attested_nodes WHERE spiffe_id = $1 RETURNING data",
                &[&id.to_string()],
            )
            .await?;
        decode_rows(&rows, "node")?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("node {id}")))
    }

    async fn create_join_token(&self, token: JoinToken) -> Result<(), StoreError> {
        let client = self.client().await?;
        match client
            .execute(
                "INSERT INTO join_tokens (token, expires_at) VALUES ($1, $2)",
                &[&join_token_digest(&token.token), &token.expires_at],
            )
            .await
        {
            // Join tokens are not in the change log: no lock needed.
            Ok(_) => Ok(()),
            Err(e) if violates(&e, "join_tokens_pkey") => Err(StoreError::AlreadyExists(
                "join token already exists".into(),
            )),
            Err(e) => Err(self.pg(e)),
        }
    }

    async fn take_join_token(&self, token: &str) -> Result<Option<JoinToken>, StoreError> {
        // One DELETE: of several servers racing for a token, exactly one gets the row.
        let rows = self
            .query(
                false,
                "DELETE FROM join_tokens WHERE token = $1 RETURNING expires_at",
                &[&join_token_digest(token)],
            )
            .await?;
        Ok(rows.first().map(|r| JoinToken {
            token: token.to_owned(),
            expires_at: r.get(0),
        }))
    }

    async fn prune_join_tokens(&self, before: i64) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM join_tokens WHERE expires_at < $1", &[&before])
            .await
            .map_err(|e| self.pg(e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn bundle(&self, td: &TrustDomain) -> Result<Option<Bundle>, StoreError> {
        let rows = self
            .query(
                false,
                "SELECT data FROM bundles WHERE trust_domain = $1",
                &[&td.as_str()],
            )
            .await?;
        Ok(decode_rows(&rows, "bundle")?.pop())
    }

    async fn list_bundles(&self) -> Result<Vec<Bundle>, StoreError> {
        let rows = self
            .query(true, "SELECT data FROM bundles ORDER BY trust_domain", &[])
            .await?;
        decode_rows(&rows, "bundle")
    }

    async fn create_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        let key = bundle.trust_domain.as_str();
        let rows = self
            .write(
                "INSERT INTO bundles (trust_domain, data) VALUES ($1, $2)
                 ON CONFLICT (trust_domain) DO NOTHING RETURNING trust_domain",
                &[&key, &encode(&bundle)?],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::AlreadyExists(format!(
                "bundle for {key} already exists"
            )));
        }
        Ok(bundle)
    }

    async fn update_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        let key = bundle.trust_domain.as_str();
        let rows = self
            .write(
                "UPDATE bundles SET data = $2 WHERE trust_domain = $1 RETURNING trust_domain",
                &[&key, &encode(&bundle)?],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(format!("bundle for {key}")));
        }
        Ok(bundle)
    }

    async fn set_bundle(&self, bundle: Bundle) -> Result<Bundle, StoreError> {
        self.write(
            "INSERT INTO bundles (trust_domain, data) VALUES ($1, $2)
             ON CONFLICT (trust_domain) DO UPDATE SET data = EXCLUDED.data",
            &[&bundle.trust_domain.as_str(), &encode(&bundle)?],
        )
        .await?;
        Ok(bundle)
    }

    async fn update_bundle_with(
        &self,
        td: &TrustDomain,
        f: &mut (dyn for<'b> FnMut(&'b mut Bundle) -> bool + Send),
    ) -> Result<Bundle, StoreError> {
        loop {
            let mut client = self.client().await?;
            let tx = self.begin_write(&mut client).await?;
            let row = tx
                .query_opt(
                    "SELECT data FROM bundles WHERE trust_domain = $1 FOR UPDATE",
                    &[&td.as_str()],
                )
                .await
                .map_err(|e| self.pg(e))?;
            let mut bundle = match &row {
                Some(row) => decode("bundle", row.get(0))?,
                None => Bundle::new(td.clone()),
            };
            let before = bundle.clone();
            if !f(&mut bundle) {
                return Ok(before);
            }
            let data = encode(&bundle)?;
            if row.is_some() {
                tx.execute(
                    "UPDATE bundles SET data = $2 WHERE trust_domain = $1",
                    &[&td.as_str(), &data],
                )
                .await
                .map_err(|e| self.pg(e))?;
            } else {
                let created = tx
                    .execute(
                        "INSERT INTO bundles (trust_domain, data) VALUES ($1, $2)
                         ON CONFLICT (trust_domain) DO NOTHING",
                        &[&td.as_str(), &data],
                    )
                    .await
                    .map_err(|e| self.pg(e))?;
                if created == 0 {
                    // Another writer created it first: run `f` again on theirs.
                    continue;
                }
            }
            tx.commit().await.map_err(|e| self.pg(e))?;
            return Ok(bundle);
        }
    }

    async fn delete_bundle(&self, td: &TrustDomain) -> Result<Bundle, StoreError> {
        let rows = self
            .write(
                "DELETE FROM bundles WHERE trust_domain = $1 RETURNING data",
                &[&td.as_str()],
            )
            .await?;
        decode_rows(&rows, "bundle")?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("bundle for {td}")))
    }

    async fn create_federation(&self, rel: Relationship) -> Result<Relationship, StoreError> {
        self.create_federation_row(rel).await
    }

    async fn update_federation(&self, rel: Relationship) -> Result<Relationship, StoreError> {
        self.update_federation_row(rel).await
    }

    async fn delete_federation(&self, td: &TrustDomain) -> Result<Relationship, StoreError> {
        self.delete_federation_row(td).await
    }

    async fn federation(&self, td: &TrustDomain) -> Result<Option<Relationship>, StoreError> {
        self.federation_row(td).await
    }

    async fn list_federations(&self) -> Result<Vec<Relationship>, StoreError> {
        self.federation_rows().await
    }

    async fn ca_journal(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self
            .query(
                false,
                "SELECT data FROM ca_journals WHERE journal_key = $1",
                &[&key],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn set_ca_journal(&self, key: &str, data: &[u8]) -> Result<(), StoreError> {
        self.query(
            false,
            "INSERT INTO ca_journals (journal_key, data) VALUES ($1, $2)
             ON CONFLICT (journal_key) DO UPDATE SET data = EXCLUDED.data",
            &[&key, &data],
        )
        .await?;
        Ok(())
    }

    async fn change_position(&self) -> Result<Option<i64>, StoreError> {
        let rows = self
            .query(
                false,
                "SELECT GREATEST((SELECT MAX(seq) FROM change_log),
                                 (SELECT pruned_through FROM change_log_horizon), 0)",
                &[],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    async fn changes_after(&self, after: i64, limit: i64) -> Result<Changes, StoreError> {
        let client = self.client().await?;
        let horizon = client
            .prepare_cached("SELECT pruned_through FROM change_log_horizon")
            .await
            .map_err(|e| self.pg(e))?;
        let pruned: i64 = client
            .query_one(&horizon, &[])
            .await
            .map_err(|e| self.pg(e))?
            .get(0);
        if after < pruned {
            return Ok(Changes::Pruned);
        }
        let statement = client
            .prepare_cached(
                "SELECT seq, kind, key FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .await
            .map_err(|e| self.pg(e))?;
        let rows = client
            .query(&statement, &[&after, &limit])
            .await
            .map_err(|e| self.pg(e))?;
        rows.iter()
            .map(|r| {
                let kind = match r.get::<_, &str>(1) {
                    "entry" => ChangeKind::Entry,
                    "node" => ChangeKind::Node,
                    "bundle" => ChangeKind::Bundle,
                    other => {
                        return Err(StoreError::Corrupt(format!("change log kind {other:?}")));
                    }
                };
                Ok(Change {
                    seq: r.get(0),
                    kind,
                    key: r.get(2),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Changes::Rows)
    }

    fn change_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.signal.clone())
    }

    async fn prune_changes(&self, retention: Duration) -> Result<u64, StoreError> {
        let seconds = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = self.begin_write(&mut client).await?;
        let rows = tx
            .query(
                "DELETE FROM change_log WHERE at < now() - make_interval(secs => $1::double precision)
                 RETURNING seq",
                &[&(seconds as f64)],
            )
            .await
            .map_err(|e| self.pg(e))?;
        if let Some(max) = rows.iter().map(|r| r.get::<_, i64>(0)).max() {
            tx.execute(
                "UPDATE change_log_horizon SET pruned_through = GREATEST(pruned_through, $1)",
                &[&max],
            )
            .await
            .map_err(|e| self.pg(e))?;
        }
        tx.commit().await.map_err(|e| self.pg(e))?;
        Ok(rows.len() as u64)
    }
}
