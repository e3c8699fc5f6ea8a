//! The database the read models live in: on PostgreSQL the store's own database; on SQLite a
//! file beside the store's (SQLite has one writer per file, and the log's writer must not queue
//! behind a projection). Read models are derived: rebuilt from the log, never backed up.
//!
//! A batch of events is applied in one transaction that also moves the projection's checkpoint:
//! a crash at any point leaves rows and checkpoint agreeing, so no event is applied twice or
//! skipped. One runner per projection at a time: on PostgreSQL a session advisory lock (released by
//! the server if the runner dies); on SQLite a lease row renewed by every batch (taken over once it
//! expires).

use crate::model::{Projection, SqlType, SqlValue};
use rusqlite::OptionalExtension;
use rusqlite::types::{Value, ValueRef};
use sportello_engine::RecordedEvent;
use sportello_engine::vault::Vault;
use sqlx::{AssertSqlSafe, PgPool, Row};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    position   BIGINT  NOT NULL,
    status     TEXT    NOT NULL, -- building | live
    PRIMARY KEY (name, version)
);
-- One lease per projection version (its table name): a new version builds beside the old one.
CREATE TABLE IF NOT EXISTS projection_leases (
    name       TEXT   PRIMARY KEY,
    owner      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL -- unix milliseconds
);
-- Idempotency-Key of public requests: the fingerprint of the first body sent with each key.
CREATE TABLE IF NOT EXISTS api_idempotency (
    key         TEXT   PRIMARY KEY,
    fingerprint TEXT   NOT NULL,
    created_at  BIGINT NOT NULL -- unix milliseconds
);";
/// How long a SQLite runner's lease lasts without a renewal.
pub const LEASE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error("read-model database failed: {0}")]
    Database(String),
    #[error("another runner holds projection {0}")]
    LeaseLost(&'static str),
    #[error(transparent)]
    Store(#[from] sportello_engine::StoreError),
}

fn db(e: impl std::fmt::Display) -> ViewsError {
    ViewsError::Database(e.to_string())
}

#[derive(Clone)]
pub enum Views {
    Sqlite(Arc<Mutex<rusqlite::Connection>>, Option<Vault>),
    Postgres(PgPool, Option<Vault>),
}

/// Where the read models of the SQLite store at `store` live: `urp.db` → `urp.views.db`. They
/// are rebuilt from the log, so this file needs no backup.
pub fn sqlite_views_path(store: &Path) -> std::path::PathBuf {
    store.with_extension("views.db")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn sql_type(t: SqlType) -> &'static str {
    match t {
        SqlType::Text => "TEXT",
        SqlType::Integer => "BIGINT",
        SqlType::Real => "DOUBLE PRECISION",
    }
}

impl Views {
    /// The read models of the store at `url` (`sqlite://PATH` or `postgres://…`): on
    /// PostgreSQL the store's own database; on SQLite a file of their own beside the store's
    /// ([`sqlite_views_path`]), so that a projection's batch never holds the lock the log's
    /// writer needs.
    pub async fn open(url: &str) -> Result<Self, ViewsError> {
        let views = if let Some(path) = url.strip_prefix("sqlite://") {
            let path = sqlite_views_path(Path::new(path));
            let conn = tokio::task::spawn_blocking(move || -> rusqlite::Result<_> {
                let conn = rusqlite::Connection::open(path)?;
                sportello_engine::store::sqlite::wait_patiently_when_busy(&conn)?;
                // As the log's file: 16 KiB pages (only takes effect on a new file, so first).
                conn.pragma_update(None, "page_size", 16_384)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                // Deleted rows are zeroed in the file: the subject search holds personal texts
                // until an erasure removes them.
                conn.pragma_update(None, "secure_delete", "ON")?;
                // Read models are rebuilt from the log: NORMAL is enough and halves the fsyncs.
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                Ok(conn)
            })
            .await
            .map_err(db)?
            .map_err(db)?;
            Views::Sqlite(Arc::new(Mutex::new(conn)), None)
        } else {
            Views::Postgres(PgPool::connect(url).await.map_err(db)?, None)
        };
        views.execute_batch(SCHEMA.to_owned()).await?;
        Ok(views)
    }

    /// The same read models, able to unseal (for the subject search).
    pub fn with_vault(self, vault: Vault) -> Self {
        match self {
            Views::Sqlite(conn, _) => Views::Sqlite(conn, Some(vault)),
            Views::Postgres(pool, _) => Views::Postgres(pool, Some(vault)),
        }
    }

    pub fn vault(&self) -> Option<&Vault> {
        match self {
            Views::Sqlite(_, vault) | Views::Postgres(_, vault) => vault.as_ref(),
        }
    }

    /// Removes what deleted rows of `P` left in the files: on SQLite the WAL is copied back and
    /// truncated (freed pages are zeroed by `secure_delete`); on PostgreSQL the table is vacuumed.
    pub async fn scrub<P: Projection>(&self) -> Result<(), ViewsError> {
        match self {
            Views::Sqlite(conn, _) => {
                let conn = conn.clone();
                let done = tokio::task::spawn_blocking(move || {
                    sportello_engine::store::sqlite::truncate_wal(
                        &conn.lock().expect("views poisoned"),
                    )
                })
                .await
                .map_err(db)?
                .map_err(db)?;
                if done {
                    Ok(())
                } else {
                    Err(ViewsError::Database(
                        "the read models' WAL stayed busy".into(),
                    ))
                }
            }
            Views::Postgres(pool, _) => {
                sqlx::raw_sql(AssertSqlSafe(format!("VACUUM {}", P::table())))
                    .execute(pool)
                    .await
                    .map_err(db)?;
                Ok(())
            }
        }
    }

    async fn execute_batch(&self, sql: String) -> Result<(), ViewsError> {
        match self {
            Views::Sqlite(conn, _) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    conn.lock().expect("views poisoned").execute_batch(&sql)
                })
                .await
                .map_err(db)?
                .map_err(db)
            }
            Views::Postgres(pool, _) => {
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(pool)
                    .await
                    .map_err(db)?;
                Ok(())
            }
        }
    }

    /// Creates the projection's table, indexes and checkpoint if they do not exist.
    pub async fn ensure<P: Projection>(&self) -> Result<(), ViewsError> {
        self.create_table::<P>().await?;
        self.create_indexes::<P>().await
    }

    /// The secondary indexes: built once at the end of a rebuild, faster than maintained row by row.
    pub async fn create_indexes<P: Projection>(&self) -> Result<(), ViewsError> {
        let table = P::table();
        let mut sql = String::new();
        for c in P::columns().iter().skip(1).filter(|c| c.indexed) {
            sql.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS {table}_{0} ON {table} ({0});\n",
                c.name
            ));
        }
        for index in P::indexes() {
            let partial = index
                .partial
                .map(|w| format!(" WHERE {w}"))
                .unwrap_or_default();
            sql.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS {table}_{} ON {table} ({}){partial};\n",
                index.name, index.columns
            ));
        }
        self.execute_batch(sql).await
    }

    async fn create_table<P: Projection>(&self) -> Result<(), ViewsError> {
        let table = P::table();
        let columns: Vec<String> = P::columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let key = if i == 0 { " PRIMARY KEY" } else { "" };
                format!("{} {}{key}", c.name, sql_type(c.sql_type))
            })
            .collect();
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} ({});\n",
            columns.join(", ")
        );
        sql.push_str(&format!(
            "INSERT INTO projection_checkpoints (name, version, position, status) VALUES ('{}', {}, 0, 'building') \
             ON CONFLICT DO NOTHING;",
            P::NAME,
            P::VERSION
        ));
        self.execute_batch(sql).await
    }

    /// Drops the projection's rows and checkpoint, to build it again from the start; the
    /// indexes come back with [`Views::create_indexes`].
    pub async fn reset<P: Projection>(&self) -> Result<(), ViewsError> {
        self.execute_batch(format!(
            "DROP TABLE IF EXISTS {}; DELETE FROM projection_checkpoints WHERE name = '{}' AND version = {};",
            P::table(),
            P::NAME,
            P::VERSION
        ))
        .await?;
        self.create_table::<P>().await
    }

    pub async fn checkpoint<P: Projection>(&self) -> Result<u64, ViewsError> {
        Ok(self.status::<P>().await?.0)
    }

    /// Marks the projection's version as the one queries read.
    pub async fn mark_live<P: Projection>(&self) -> Result<(), ViewsError> {
        self.execute_batch(format!(
            "UPDATE projection_checkpoints SET status = 'live' WHERE name = '{}' AND version = {};",
            P::NAME,
            P::VERSION
        ))
        .await
    }

    /// Takes (or renews) the SQLite lease of a projection; always true on PostgreSQL, where the
    /// runner holds an advisory lock instead (see [`crate::runner`]).
    pub async fn take_lease<P: Projection>(&self, owner: &str) -> Result<bool, ViewsError> {
        let Views::Sqlite(conn, _) = self else {
            return Ok(true);
        };
        let (conn, owner) = (conn.clone(), owner.to_owned());
        tokio::task::spawn_blocking(move || {
            take_lease_sqlite(&conn.lock().expect("views poisoned"), &P::table(), &owner)
        })
        .await
        .map_err(db)?
    }

    /// Gives up a SQLite lease at once (a runner that stops cleanly), instead of letting it expire.
    pub async fn release_lease<P: Projection>(&self, owner: &str) -> Result<(), ViewsError> {
        let Views::Sqlite(conn, _) = self else {
            return Ok(());
        };
        let (conn, owner) = (conn.clone(), owner.to_owned());
        tokio::task::spawn_blocking(move || {
            conn.lock().expect("views poisoned").execute(
                "DELETE FROM projection_leases WHERE name = ?1 AND owner = ?2",
                rusqlite::params![P::table(), owner],
            )
        })
        .await
        .map_err(db)?
        .map_err(db)?;
        Ok(())
    }

    /// Applies `events` in one transaction with the checkpoint. Events at or below the checkpoint
    /// are skipped (they were applied before a crash). Returns the new checkpoint.
    pub async fn apply_batch<P: Projection>(
        &self,
        owner: &str,
        mut events: Vec<RecordedEvent>,
    ) -> Result<u64, ViewsError> {
        P::prepare(self, &mut events).await?;
        let scrub = P::scrub_after(&events);
        let applied = self.apply_prepared::<P>(owner, events).await?;
        // The erasure itself is applied; a scrub that cannot run now is retried by the next one
        // (and by the erasure request, which waits for it).
        if scrub && let Err(error) = self.scrub::<P>().await {
            tracing::warn!(projection = P::NAME, %error, "could not scrub after an erasure");
        }
        Ok(applied)
    }

    async fn apply_prepared<P: Projection>(
        &self,
        owner: &str,
        events: Vec<RecordedEvent>,
    ) -> Result<u64, ViewsError> {
        match self {
            Views::Sqlite(conn, _) => {
                let (conn, owner) = (conn.clone(), owner.to_owned());
                tokio::task::spawn_blocking(move || {
                    apply_sqlite::<P>(&mut conn.lock().expect("views poisoned"), &owner, &events)
                })
                .await
                .map_err(db)?
            }
            Views::Postgres(pool, _) => apply_postgres::<P>(pool, &events).await,
        }
    }

    /// Rows of the projection matching `filter` (SQL with `$1…` parameters), in `order`.
    pub async fn select<P: Projection>(
        &self,
        filter: &str,
        params: Vec<SqlValue>,
        order: &str,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<P::Row>, ViewsError> {
        let columns: Vec<&str> = P::columns().iter().map(|c| c.name).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {filter} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
            columns.join(", "),
            P::table()
        );
        let rows = self.fetch(sql, params, P::columns().len()).await?;
        Ok(rows.into_iter().filter_map(P::from_values).collect())
    }

    /// A page of rows matching `filter` in `order`, found in two steps: first the ids of the page
    /// (which an index holding the filtered and sorted columns and the id answers alone, without
    /// reading the rows it skips), then those rows.
    pub async fn select_page<P: Projection>(
        &self,
        filter: &str,
        params: Vec<SqlValue>,
        order: &str,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<P::Row>, ViewsError> {
        let columns: Vec<&str> = P::columns().iter().map(|c| c.name).collect();
        let table = P::table();
        let sql = format!(
            "SELECT {} FROM {table} WHERE id IN \
             (SELECT id FROM {table} WHERE {filter} ORDER BY {order} LIMIT {limit} OFFSET {offset}) \
             ORDER BY {order}",
            columns.join(", ")
        );
        let rows = self.fetch(sql, params, P::columns().len()).await?;
        Ok(rows.into_iter().filter_map(P::from_values).collect())
    }

    /// How many rows match `filter`, counting no further than `cap` rows and, on SQLite, for no
    /// longer than `budget` (a count over a million rows costs more than the page it describes).
    /// Returns the count and whether it is complete; an incomplete count is a lower bound.
    pub async fn count<P: Projection>(
        &self,
        filter: &str,
        params: Vec<SqlValue>,
        cap: u64,
        budget: Duration,
    ) -> Result<(u64, bool), ViewsError> {
        let sql = format!("SELECT 1 FROM {} WHERE {filter} LIMIT {cap}", P::table());
        match self {
            Views::Sqlite(conn, _) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || -> Result<_, ViewsError> {
                    let deadline = std::time::Instant::now() + budget;
                    let conn = conn.lock().expect("views poisoned");
                    let values: Vec<Value> = params.iter().map(to_sqlite).collect();
                    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
                    let mut rows = stmt
                        .query(rusqlite::params_from_iter(values.iter()))
                        .map_err(db)?;
                    let mut counted = 0u64;
                    while rows.next().map_err(db)?.is_some() {
                        counted += 1;
                        if counted % 256 == 0 && std::time::Instant::now() > deadline {
                            return Ok((counted, false));
                        }
                    }
                    Ok((counted, true))
                })
                .await
                .map_err(db)?
            }
            Views::Postgres(..) => {
                let sql = format!("SELECT count(*) FROM ({sql}) AS capped");
                let rows = self.fetch(sql, params, 1).await?;
                let counted = rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(SqlValue::as_int)
                    .unwrap_or(0) as u64;
                Ok((counted, true))
            }
        }
    }

    /// Runs a query and reads `width` columns of each row, typed as the database gives them.
    async fn fetch(
        &self,
        sql: String,
        params: Vec<SqlValue>,
        width: usize,
    ) -> Result<Vec<Vec<SqlValue>>, ViewsError> {
        match self {
            Views::Sqlite(conn, _) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || -> Result<_, ViewsError> {
                    let conn = conn.lock().expect("views poisoned");
                    let values: Vec<Value> = params.iter().map(to_sqlite).collect();
                    let mut stmt = conn.prepare_cached(&sql).map_err(db)?;
                    let mut rows = stmt
                        .query(rusqlite::params_from_iter(values.iter()))
                        .map_err(db)?;
                    let mut out = Vec::new();
                    while let Some(row) = rows.next().map_err(db)? {
                        out.push(read_sqlite_values(row, width)?);
                    }
                    Ok(out)
                })
                .await
                .map_err(db)?
            }
            Views::Postgres(pool, _) => {
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for p in &params {
                    q = match p {
                        SqlValue::Null => q.bind(None::<String>),
                        SqlValue::Int(i) => q.bind(*i),
                        SqlValue::Real(r) => q.bind(*r),
                        SqlValue::Text(t) => q.bind(t.clone()),
                    };
                }
                let rows = q.fetch_all(pool).await.map_err(db)?;
                rows.iter().map(|row| read_pg_values(row, width)).collect()
            }
        }
    }

    /// Moves the checkpoint to `head` (never back): every event up to it has been considered, even
    /// where none concerned the projection. Checked against the lease like a batch.
    pub async fn advance_checkpoint<P: Projection>(
        &self,
        owner: &str,
        head: u64,
    ) -> Result<(), ViewsError> {
        let update = "UPDATE projection_checkpoints SET position = $1 \
                      WHERE name = $2 AND version = $3 AND position < $1";
        match self {
            Views::Sqlite(conn, _) => {
                let (conn, owner) = (conn.clone(), owner.to_owned());
                tokio::task::spawn_blocking(move || -> Result<(), ViewsError> {
                    let mut conn = conn.lock().expect("views poisoned");
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(db)?;
                    if !take_lease_sqlite(&tx, &P::table(), &owner)? {
                        return Err(ViewsError::LeaseLost(P::NAME));
                    }
                    tx.execute(update, rusqlite::params![head as i64, P::NAME, P::VERSION])
                        .map_err(db)?;
                    tx.commit().map_err(db)
                })
                .await
                .map_err(db)?
            }
            Views::Postgres(pool, _) => {
                sqlx::query(update)
                    .bind(head as i64)
                    .bind(P::NAME)
                    .bind(P::VERSION as i64)
                    .execute(pool)
                    .await
                    .map_err(db)?;
                Ok(())
            }
        }
    }

    /// The checkpoint and status (`building` or `live`) of the projection's current version.
    pub async fn status<P: Projection>(&self) -> Result<(u64, String), ViewsError> {
        let sql =
            "SELECT position, status FROM projection_checkpoints WHERE name = $1 AND version = $2";
        let found: Option<(i64, String)> = match self {
            Views::Sqlite(conn, _) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || {
                    conn.lock()
                        .expect("views poisoned")
                        .query_row(sql, rusqlite::params![P::NAME, P::VERSION], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                })
                .await
                .map_err(db)?
                .map_err(db)?
            }
            Views::Postgres(pool, _) => sqlx::query_as(sql)
                .bind(P::NAME)
                .bind(P::VERSION as i64)
                .fetch_optional(pool)
                .await
                .map_err(db)?,
        };
        Ok(found.map_or((0, "building".into()), |(p, s)| (p as u64, s)))
    }

    /// Drops the tables of older versions of `P` once the current one is live, unless a runner
    /// (an older binary still serving during a deployment) holds them. Returns the versions dropped.
    pub async fn retire_older<P: Projection>(&self) -> Result<Vec<u32>, ViewsError> {
        let sql = "SELECT CAST(version AS BIGINT) FROM projection_checkpoints WHERE name = $1 AND version < $2";
        let older: Vec<i64> = match self {
            Views::Sqlite(conn, _) => {
                let conn = conn.clone();
                tokio::task::spawn_blocking(move || -> rusqlite::Result<Vec<i64>> {
                    let conn = conn.lock().expect("views poisoned");
                    let mut stmt = conn.prepare(sql)?;
                    let rows =
                        stmt.query_map(rusqlite::params![P::NAME, P::VERSION], |r| r.get(0))?;
                    rows.collect()
                })
                .await
                .map_err(db)?
                .map_err(db)?
            }
            Views::Postgres(pool, _) => sqlx::query_scalar(sql)
                .bind(P::NAME)
                .bind(P::VERSION as i64)
                .fetch_all(pool)
                .await
                .map_err(db)?,
        };
        let mut dropped = Vec::new();
        for version in older {
            let table = format!("rm_{}_v{version}", P::NAME);
            let drop_sql = format!(
                "DROP TABLE IF EXISTS {table};                  DELETE FROM projection_checkpoints WHERE name = '{}' AND version = {version};                  DELETE FROM projection_leases WHERE name = '{table}';",
                P::NAME
            );
            let free = match self {
                Views::Sqlite(conn, _) => {
                    // Free when no lease is live: take it under a retiring owner, then drop.
                    let (conn, table) = (conn.clone(), table.clone());
                    tokio::task::spawn_blocking(move || {
                        take_lease_sqlite(&conn.lock().expect("views poisoned"), &table, "retiring")
                    })
                    .await
                    .map_err(db)??
                }
                Views::Postgres(pool, _) => {
                    let mut conn = pool.acquire().await.map_err(db)?;
                    let locked: bool = sqlx::query_scalar(
                        "SELECT pg_try_advisory_lock(hashtext('sportello-projection:' || $1))",
                    )
                    .bind(&table)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db)?;
                    if locked {
                        sqlx::raw_sql(AssertSqlSafe(drop_sql.clone()))
                            .execute(&mut *conn)
                            .await
                            .map_err(db)?;
                        sqlx::query(
                            "SELECT pg_advisory_unlock(hashtext('sportello-projection:' || $1))",
                        )
                        .bind(&table)
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                        dropped.push(version as u32);
                    }
                    continue;
                }
            };
            if free {
                self.execute_batch(drop_sql).await?;
                dropped.push(version as u32);
            }
        }
        Ok(dropped)
    }

    /// Records the fingerprint of the first request made with an idempotency key; true when the
    /// key is new or was used with the same fingerprint, false when it came with another body.
    pub async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<bool, ViewsError> {
        let insert = "INSERT INTO api_idempotency (key, fingerprint, created_at) VALUES ($1, $2, $3) \
                      ON CONFLICT (key) DO NOTHING";
        let select = "SELECT fingerprint FROM api_idempotency WHERE key = $1";
        let stored: String = match self {
            Views::Sqlite(conn, _) => {
                let (conn, key, fingerprint) =
                    (conn.clone(), key.to_owned(), fingerprint.to_owned());
                tokio::task::spawn_blocking(move || -> rusqlite::Result<String> {
                    let conn = conn.lock().expect("views poisoned");
                    conn.execute(insert, rusqlite::params![key, fingerprint, now_ms()])?;
                    conn.query_row(select, [key], |r| r.get(0))
                })
                .await
                .map_err(db)?
                .map_err(db)?
            }
            Views::Postgres(pool, _) => {
                sqlx::query(insert)
                    .bind(key)
                    .bind(fingerprint)
                    .bind(now_ms())
                    .execute(pool)
                    .await
                    .map_err(db)?;
                sqlx::query_scalar(select)
                    .bind(key)
                    .fetch_one(pool)
                    .await
                    .map_err(db)?
            }
        };
        Ok(stored == fingerprint)
    }

    /// The n-th parameter of a filter given to [`Views::select`]: `$n` on both databases
    /// (SQLite numbers `$`-parameters in order of first appearance, so use them in order).
    pub fn param(n: usize) -> String {
        format!("${n}")
    }
}

fn take_lease_sqlite(
    conn: &rusqlite::Connection,
    name: &str,
    owner: &str,
) -> Result<bool, ViewsError> {
    let now = now_ms();
    let expires = now + LEASE.as_millis() as i64;
    let changed = conn
        .execute(
            "INSERT INTO projection_leases (name, owner, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE projection_leases.owner = excluded.owner OR projection_leases.expires_at < ?4",
            rusqlite::params![name, owner, expires, now],
        )
        .map_err(db)?;
    Ok(changed > 0)
}

fn to_sqlite(v: &SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Int(i) => Value::Integer(*i),
        SqlValue::Real(r) => Value::Real(*r),
        SqlValue::Text(t) => Value::Text(t.clone()),
    }
}

fn read_sqlite_row<P: Projection>(row: &rusqlite::Row<'_>) -> Result<Vec<SqlValue>, ViewsError> {
    read_sqlite_values(row, P::columns().len())
}

fn read_sqlite_values(row: &rusqlite::Row<'_>, width: usize) -> Result<Vec<SqlValue>, ViewsError> {
    (0..width)
        .map(|i| {
            Ok(match row.get_ref(i).map_err(db)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(v) => SqlValue::Int(v),
                ValueRef::Real(v) => SqlValue::Real(v),
                ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(_) => SqlValue::Null,
            })
        })
        .collect()
}

/// A PostgreSQL row read by the types the database reports (for queries with no projection's
/// column list, such as counts).
fn read_pg_values(row: &sqlx::postgres::PgRow, width: usize) -> Result<Vec<SqlValue>, ViewsError> {
    use sqlx::{Column as _, TypeInfo as _};
    (0..width)
        .map(|i| {
            let kind = row.columns()[i].type_info().name().to_owned();
            Ok(match kind.as_str() {
                "INT8" | "INT4" | "INT2" => row
                    .try_get::<Option<i64>, _>(i)
                    .map_err(db)?
                    .map_or(SqlValue::Null, SqlValue::Int),
                "FLOAT8" | "FLOAT4" => row
                    .try_get::<Option<f64>, _>(i)
                    .map_err(db)?
                    .map_or(SqlValue::Null, SqlValue::Real),
                _ => SqlValue::text(row.try_get::<Option<String>, _>(i).map_err(db)?),
            })
        })
        .collect()
}

fn read_pg_row<P: Projection>(row: &sqlx::postgres::PgRow) -> Result<Vec<SqlValue>, ViewsError> {
    P::columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(match c.sql_type {
                SqlType::Text => SqlValue::text(row.try_get::<Option<String>, _>(i).map_err(db)?),
                SqlType::Integer => row
                    .try_get::<Option<i64>, _>(i)
                    .map_err(db)?
                    .map_or(SqlValue::Null, SqlValue::Int),
                SqlType::Real => row
                    .try_get::<Option<f64>, _>(i)
                    .map_err(db)?
                    .map_or(SqlValue::Null, SqlValue::Real),
            })
        })
        .collect()
}

/// The events of a batch not yet applied: those past the checkpoint (a batch replayed after a
/// crash is skipped, whole or in part).
fn fresh_events(events: &[RecordedEvent], checkpoint: i64) -> Vec<RecordedEvent> {
    events
        .iter()
        .filter(|e| e.position as i64 > checkpoint)
        .cloned()
        .collect()
}

/// `INSERT … ON CONFLICT (id) DO UPDATE` for every column of `P`, with `param(n)` for the n-th value.
fn upsert_sql<P: Projection>(param: impl Fn(usize) -> String) -> String {
    let columns: Vec<&str> = P::columns().iter().map(|c| c.name).collect();
    let marks: Vec<String> = (1..=columns.len()).map(param).collect();
    let updates: Vec<String> = columns
        .iter()
        .skip(1)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
        P::table(),
        columns.join(", "),
        marks.join(", "),
        updates.join(", ")
    )
}

/// Folds the batch into the rows it touches, in memory.
fn fold_batch<P: Projection>(
    mut rows: HashMap<String, Option<P::Row>>,
    events: &[RecordedEvent],
) -> HashMap<String, Option<P::Row>> {
    for event in events {
        if let Some(key) = P::key(event) {
            let current = rows.remove(&key).flatten();
            rows.insert(key, P::apply(current, event));
        }
    }
    rows
}

fn apply_sqlite<P: Projection>(
    conn: &mut rusqlite::Connection,
    owner: &str,
    events: &[RecordedEvent],
) -> Result<u64, ViewsError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    if !take_lease_sqlite(&tx, &P::table(), owner)? {
        return Err(ViewsError::LeaseLost(P::NAME));
    }
    let checkpoint: i64 = tx
        .query_row(
            "SELECT position FROM projection_checkpoints WHERE name = ?1 AND version = ?2",
            rusqlite::params![P::NAME, P::VERSION],
            |r| r.get(0),
        )
        .map_err(db)?;
    let fresh = fresh_events(events, checkpoint);
    let Some(last) = fresh.last().map(|e| e.position) else {
        return Ok(checkpoint as u64);
    };
    let table = P::table();
    let columns: Vec<&str> = P::columns().iter().map(|c| c.name).collect();
    let mut rows: HashMap<String, Option<P::Row>> = HashMap::new();
    {
        let mut load = tx
            .prepare_cached(&format!(
                "SELECT {} FROM {table} WHERE id = ?1",
                columns.join(", ")
            ))
            .map_err(db)?;
        for key in fresh.iter().filter_map(P::key) {
            if rows.contains_key(&key) {
                continue;
            }
            let mut found = load.query([&key]).map_err(db)?;
            let row = match found.next().map_err(db)? {
                Some(r) => P::from_values(read_sqlite_row::<P>(r)?),
                None => None,
            };
            rows.insert(key, row);
        }
    }
    let rows = fold_batch::<P>(rows, &fresh);
    {
        let mut upsert = tx
            .prepare_cached(&upsert_sql::<P>(|i| format!("?{i}")))
            .map_err(db)?;
        let mut delete = tx
            .prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))
            .map_err(db)?;
        for (key, row) in &rows {
            match row {
                Some(row) => {
                    let values: Vec<Value> = P::to_values(row).iter().map(to_sqlite).collect();
                    upsert
                        .execute(rusqlite::params_from_iter(values))
                        .map_err(db)?;
                }
                None => {
                    delete.execute([key]).map_err(db)?;
                }
            }
        }
    }
    tx.execute(
        "UPDATE projection_checkpoints SET position = ?1 WHERE name = ?2 AND version = ?3",
        rusqlite::params![last as i64, P::NAME, P::VERSION],
    )
    .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(last)
}

async fn apply_postgres<P: Projection>(
    pool: &PgPool,
    events: &[RecordedEvent],
) -> Result<u64, ViewsError> {
    let mut tx = pool.begin().await.map_err(db)?;
    let checkpoint: i64 = sqlx::query_scalar(
        "SELECT position FROM projection_checkpoints WHERE name = $1 AND version = $2 FOR UPDATE",
    )
    .bind(P::NAME)
    .bind(P::VERSION as i64)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let fresh = fresh_events(events, checkpoint);
    let Some(last) = fresh.last().map(|e| e.position) else {
        return Ok(checkpoint as u64);
    };
    let table = P::table();
    let columns: Vec<&str> = P::columns().iter().map(|c| c.name).collect();
    let mut keys: Vec<String> = fresh.iter().filter_map(P::key).collect();
    keys.sort();
    keys.dedup();
    let mut rows: HashMap<String, Option<P::Row>> =
        keys.iter().map(|k| (k.clone(), None)).collect();
    for row in sqlx::query(AssertSqlSafe(format!(
        "SELECT {} FROM {table} WHERE id = ANY($1)",
        columns.join(", ")
    )))
    .persistent(false)
    .bind(&keys)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?
    {
        let values = read_pg_row::<P>(&row)?;
        if let Some(SqlValue::Text(id)) = values.first().cloned() {
            rows.insert(id, P::from_values(values));
        }
    }
    let rows = fold_batch::<P>(rows, &fresh);
    let upsert = upsert_sql::<P>(|i| format!("${i}"));
    for (key, row) in &rows {
        match row {
            Some(row) => {
                let mut q = sqlx::query(AssertSqlSafe(upsert.clone()));
                for (value, column) in P::to_values(row).into_iter().zip(P::columns()) {
                    q = match (value, column.sql_type) {
                        (SqlValue::Null, SqlType::Integer) => q.bind(None::<i64>),
                        (SqlValue::Null, SqlType::Real) => q.bind(None::<f64>),
                        (SqlValue::Null, SqlType::Text) => q.bind(None::<String>),
                        (SqlValue::Int(i), _) => q.bind(i),
                        (SqlValue::Real(r), _) => q.bind(r),
                        (SqlValue::Text(t), _) => q.bind(t),
                    };
                }
                q.execute(&mut *tx).await.map_err(db)?;
            }
            None => {
                sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE id = $1")))
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
    }
    sqlx::query("UPDATE projection_checkpoints SET position = $1 WHERE name = $2 AND version = $3")
        .bind(last as i64)
        .bind(P::NAME)
        .bind(P::VERSION as i64)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(last)
}
