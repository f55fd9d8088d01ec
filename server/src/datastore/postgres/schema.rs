//! The schema, as versioned migrations compiled into the binary. A server applies the ones
//! its database lacks at start (under an advisory lock, so servers starting together do not
//! race) and refuses a database whose schema is newer than it knows.

use crate::datastore::StoreError;
use crate::datastore::postgres::error::pg_error;
use crate::datastore::token_digest::{self, join_token_digest};

/// Migration `n` (1-based) brings the schema from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: the records.
    r#"
    CREATE TABLE registration_entries (
        id          TEXT COLLATE "C" PRIMARY KEY,
        spiffe_id   TEXT COLLATE "C" NOT NULL,
        parent_id   TEXT COLLATE "C" NOT NULL,
        similarity  BYTEA NOT NULL,
        expires_at  BIGINT NOT NULL,
        data        BYTEA NOT NULL,
        CONSTRAINT registration_entries_similar UNIQUE (similarity)
    );
    CREATE INDEX registration_entries_by_parent ON registration_entries (parent_id, id);
    CREATE INDEX registration_entries_by_spiffe_id ON registration_entries (spiffe_id, id);
    CREATE INDEX registration_entries_by_expiry ON registration_entries (expires_at)
        WHERE expires_at > 0;
    CREATE TABLE registration_entry_selectors (
        selector  TEXT COLLATE "C" NOT NULL,
        entry_id  TEXT COLLATE "C" NOT NULL
            REFERENCES registration_entries (id) ON DELETE CASCADE,
        PRIMARY KEY (selector, entry_id)
    );
    CREATE INDEX registration_entry_selectors_by_entry ON registration_entry_selectors (entry_id);
    CREATE TABLE attested_nodes (
        spiffe_id  TEXT COLLATE "C" PRIMARY KEY,
        data       BYTEA NOT NULL
    );
    CREATE TABLE join_tokens (
        token       TEXT COLLATE "C" PRIMARY KEY,
        expires_at  BIGINT NOT NULL
    );
    CREATE TABLE bundles (
        trust_domain  TEXT COLLATE "C" PRIMARY KEY,
        data          BYTEA NOT NULL
    );
    CREATE TABLE ca_journals (
        journal_key  TEXT COLLATE "C" PRIMARY KEY,
        data         BYTEA NOT NULL
    );
    "#,
    // 2: the change log, written by triggers in the transaction of each change (so nothing
    // that commits is missing from it, whoever wrote it). The transaction-scoped advisory
    // lock makes writers append in commit order: a reader that has seen `seq` will never
    // later find a smaller one. NOTIFY wakes the other servers at commit.
    r#"
    CREATE TABLE change_log (
        seq   BIGSERIAL PRIMARY KEY,
        kind  TEXT NOT NULL,
        key   TEXT COLLATE "C" NOT NULL,
        at    TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX change_log_by_time ON change_log (at);
    CREATE TABLE change_log_horizon (
        singleton       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        pruned_through  BIGINT NOT NULL
    );
    INSERT INTO change_log_horizon (pruned_through) VALUES (0);
    CREATE FUNCTION signet_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        k TEXT;
        n BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock(6001425932840140801);
        IF TG_OP = 'DELETE' THEN
            k := to_jsonb(OLD) ->> TG_ARGV[1];
        ELSE
            k := to_jsonb(NEW) ->> TG_ARGV[1];
        END IF;
        INSERT INTO change_log (kind, key) VALUES (TG_ARGV[0], k) RETURNING seq INTO n;
        PERFORM pg_notify('signet_changes', n::text);
        RETURN NULL;
    END $$;
    CREATE TRIGGER registration_entries_log AFTER INSERT OR UPDATE OR DELETE
        ON registration_entries FOR EACH ROW EXECUTE FUNCTION signet_log_change('entry', 'id');
    CREATE TRIGGER attested_nodes_log AFTER INSERT OR UPDATE OR DELETE
        ON attested_nodes FOR EACH ROW EXECUTE FUNCTION signet_log_change('node', 'spiffe_id');
    CREATE TRIGGER bundles_log AFTER INSERT OR UPDATE OR DELETE
        ON bundles FOR EACH ROW EXECUTE FUNCTION signet_log_change('bundle', 'trust_domain');
    "#,
    // 3: federation relationships created through the TrustDomain API.
    r#"
    CREATE TABLE federation_relationships (
        trust_domain  TEXT COLLATE "C" PRIMARY KEY,
        data          BYTEA NOT NULL
    );
    "#,
    // 4: join tokens are kept as keyed digests, never in the clear (the rows already there
    // are rewritten by `digest_clear_tokens` in the same transaction).
    r#"
    COMMENT ON COLUMN join_tokens.token IS 'keyed digest of the join token, never its value';
    "#,
];

/// The first version that keeps join tokens as digests.
const DIGESTED_TOKENS: i32 = 4;

/// The advisory lock the change-log trigger takes (`signet_log_change`); writers take it
/// first so that lock order is always the same.
pub(crate) const CHANGE_LOCK: i64 = 6_001_425_932_840_140_801;

/// The schema version this binary writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Any 64-bit constant: the advisory lock migrations hold.
const MIGRATION_LOCK: i64 = 0x5349_474e_4554_0001;

/// Brings the schema to [`VERSION`] (or, with `migrate` off, checks that it is there).
/// Returns the version found before.
pub(crate) async fn migrate(
    client: &mut deadpool_postgres::Client,
    migrate: bool,
) -> Result<i32, StoreError> {
    let tx = client.transaction().await.map_err(pg_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS signet_schema (
             singleton     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
             version       INTEGER NOT NULL,
             code_version  TEXT NOT NULL
         )",
    )
    .await
    .map_err(pg_error)?;
    let found = current(&tx).await?;
    if found > VERSION {
        return Err(StoreError::Schema(format!(
            "the database schema is version {found}, newer than this signet-server {} knows \
             (version {VERSION}): upgrade signet-server",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if found < VERSION && !migrate {
        return Err(StoreError::Schema(format!(
            "the database schema is version {found} and this signet-server needs version \
             {VERSION}, but disable_migration is set: migrate with a server that has it off"
        )));
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Schema(format!("migration to schema version {}: {e}", n + 1))
        })?;
    }
    if found < DIGESTED_TOKENS {
        digest_clear_tokens(&tx).await?;
    }
    if found < VERSION {
        tx.execute(
            "INSERT INTO signet_schema (version, code_version) VALUES ($1, $2)
             ON CONFLICT (singleton) DO UPDATE SET version = $1, code_version = $2",
            &[&VERSION, &env!("CARGO_PKG_VERSION")],
        )
        .await
        .map_err(pg_error)?;
    }
    tx.commit().await.map_err(pg_error)?;
    if found < VERSION {
        tracing::info!(from = found, to = VERSION, "Migrated the PostgreSQL schema");
    }
    Ok(found)
}

/// Rewrites the join tokens a pre-3 schema kept in the clear as their digests.
async fn digest_clear_tokens(tx: &deadpool_postgres::Transaction<'_>) -> Result<(), StoreError> {
    let rows = tx
        .query("SELECT token FROM join_tokens", &[])
        .await
        .map_err(pg_error)?;
    for row in rows {
        let token: String = row.get(0);
        if token.starts_with(token_digest::PREFIX) {
            continue;
        }
        tx.execute(
            "UPDATE join_tokens SET token = $1 WHERE token = $2",
            &[&join_token_digest(&token), &token],
        )
        .await
        .map_err(pg_error)?;
    }
    Ok(())
}

async fn current(client: &deadpool_postgres::Transaction<'_>) -> Result<i32, StoreError> {
    let row = client
        .query_opt("SELECT version FROM signet_schema", &[])
        .await
        .map_err(pg_error)?;
    Ok(row.map_or(0, |r| r.get(0)))
}
