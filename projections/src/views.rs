//! The database the read models live in: on PostgreSQL the store's own database; on SQLite a
//! file beside the store's (SQLite has one writer per file, and the log's writer must not queue
//! behind a projection). Read models are derived: rebuilt from the log, never backed up.
//!
//! A batch of events is applied in one transaction that also moves the projection's checkpoint:
//! a crash at any point leaves rows and checkpoint agreeing, so no event is applied twice or
//! skipped. One runner per projection at a time: on PostgreSQL a session advisory lock (released by
//! the server if the runner dies); on SQLite an exclusive lock on a file of the consumer's beside
//! the database (released by the system if the runner's process dies). Neither writes anything to
//! hold it: an idle server does not wear its disk renewing leases.

use crate::model::{ConsumerId, Filter, Projection, SqlType, SqlValue};
use crate::search::{INDEXED_PREFIX, Words};
use rusqlite::OptionalExtension;
use rusqlite::types::{Value, ValueRef};
use sportello_engine::RecordedEvent;
use sportello_engine::store::Transient;
use sportello_engine::vault::Vault;
use sqlx::{AssertSqlSafe, Connection, PgPool, Row};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sportello_engine::store::postgres::SCHEMA_LOCK;
use sportello_engine::store::sqlite::IdleConnections;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    position   BIGINT  NOT NULL,
    status     TEXT    NOT NULL, -- building | live
    PRIMARY KEY (name, version)
);
-- Runners held SQLite leases in a table here until they took lock files (nothing written to hold
-- them); a database that still has it keeps it, unused.
-- Idempotency-Key of public requests: the fingerprint of the first body sent with each key.
CREATE TABLE IF NOT EXISTS api_idempotency (
    key         TEXT   PRIMARY KEY,
    fingerprint TEXT   NOT NULL,
    created_at  BIGINT NOT NULL -- unix milliseconds
);
-- Staff signed in to the pages (sessions.rs); lost with the file, which only means signing in again.
CREATE TABLE IF NOT EXISTS staff_sessions (
    id_hash    TEXT   PRIMARY KEY, -- SHA-256 of the cookie's secret, never the secret itself
    user_id    TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    comune     TEXT   NOT NULL,
    csrf       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL, -- unix milliseconds, however active the session
    idle_until BIGINT NOT NULL  -- unix milliseconds, moved on by activity
);";

/// How much of the read models' file is read through a memory map (SQLite's `mmap_size`): all
/// of it, up to the bundled SQLite's limit (`SQLITE_MAX_MMAP_SIZE` in `.cargo/config.toml`).
const MMAP_BYTES: i64 = 64 << 30;

/// Below this many candidates found by the full-text index, a query starts from them (see
/// [`Views::text_match`]). Gathering a match costs about what walking six rows does (4 µs and
/// 0.7 µs at a million cases), and a walk finds a page of 50 among N rows after 50·N/M of them:
/// at a million rows the two plans cost the same near 3,000 matches, and gathering fewer is the
/// safer side.
const FEW_MATCHES: i64 = 2_000;

/// How often [`Views::refresh_statistics`] looks at the tables' sizes.
pub const STATISTICS_EVERY: Duration = Duration::from_secs(3600);

/// SQLite's steps between two looks at a count's deadline (about 10 µs of them).
const COUNT_CLOCK_STEPS: std::ffi::c_int = 1_000;

/// How many of a term's texts the index lists to estimate its share of them all.
const SAMPLE: i64 = 256;

/// The share of `rows` texts that a full-text query matches, from the first `n` of its matches
/// (at most [`SAMPLE`]), the last at rowid `last`: rowids follow insertion, so matches are spread
/// over them, and a query that ran out before SAMPLE matched exactly `n`.
fn share_of(n: i64, last: Option<i64>, rows: f64) -> f64 {
    match last {
        Some(last) if n >= SAMPLE => n as f64 / last.max(1) as f64,
        _ => n as f64 / rows,
    }
}

/// How a query finds the rows whose searched text has the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchPlan {
    /// Gather the matches from the full-text index first (SQLite; elsewhere as `Walk`).
    FromMatches,
    /// Test each row the query walks.
    Walk,
}

/// What the full-text index gave a search (SQLite).
enum Gathered {
    /// No index to ask (PostgreSQL, or a table still being built).
    Unindexed,
    /// As many candidates as the cap, or more.
    Many,
    /// The ids of the rows that match.
    Ids(Vec<String>),
}

/// How often a runner checks that its guard still holds (on PostgreSQL, that the lock's session
/// still answers), while it waits for events.
pub const LEASE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    /// A bug or damage: retrying will not mend it.
    #[error("read-model database failed: {0}")]
    Database(String),
    /// Busy, full, restarting or out of reach: the same request may succeed later.
    #[error("read-model database unavailable: {0}")]
    Unavailable(String),
    #[error("another runner holds projection {0}")]
    LeaseLost(&'static str),
    /// A query's parameter that the read model cannot answer (an unknown grouping, say).
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] sportello_engine::StoreError),
}

impl ViewsError {
    /// True when the same request may succeed later.
    pub fn is_transient(&self) -> bool {
        match self {
            ViewsError::Unavailable(_) | ViewsError::LeaseLost(_) => true,
            ViewsError::Store(e) => e.is_transient(),
            ViewsError::Database(_) | ViewsError::Invalid { .. } => false,
        }
    }
}

/// A database error, told apart by whether a retry may help.
fn db(e: impl Transient) -> ViewsError {
    if e.is_transient() {
        ViewsError::Unavailable(e.to_string())
    } else {
        ViewsError::Database(e.to_string())
    }
}

/// A failure outside the database (a blocking task that panicked).
fn failed(e: impl std::fmt::Display) -> ViewsError {
    ViewsError::Database(e.to_string())
}

#[derive(Clone)]
pub enum Views {
    Sqlite(Arc<SqliteViews>, Option<Vault>),
    Postgres(PgPool, Option<Vault>),
}

/// Batches shorter than this are decoded on the caller's thread: a live runner's batches are a
/// few events, and a hand-off to another thread would cost more than decoding them.
const INLINE_DECODE: usize = 64;

/// A batch decoded ahead of its transaction ([`Views::decode_batch`]).
pub struct DecodedBatch<P: Projection> {
    /// The events that concern a row, in log order.
    items: Vec<Decoded<P>>,
    /// The batch's last position, where the checkpoint goes (events that concern no row count).
    last: Option<u64>,
    /// Rows were erased: scrub the files after the batch ([`Projection::scrub_after`]).
    scrub: bool,
}

struct Decoded<P: Projection> {
    position: u64,
    key: String,
    decoded: P::Event,
}

impl<P: Projection> DecodedBatch<P> {
    /// The events not yet applied: those past the checkpoint (a batch replayed after a crash is
    /// skipped, whole or in part), with the checkpoint after them; `None` when there are none.
    fn fresh(self, checkpoint: i64) -> Option<(Vec<Decoded<P>>, u64)> {
        let last = self.last.filter(|&last| last as i64 > checkpoint)?;
        let mut items = self.items;
        debug_assert!(
            items.is_sorted_by_key(|d| d.position),
            "a batch in log order"
        );
        let applied = items.partition_point(|d| d.position as i64 <= checkpoint);
        items.drain(..applied);
        Some((items, last))
    }
}

/// Where the read models of the SQLite store at `store` live: `urp.db` → `urp.views.db`. They
/// are rebuilt from the log, so this file needs no backup.
pub fn sqlite_views_path(store: &Path) -> std::path::PathBuf {
    store.with_extension("views.db")
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn sql_type(t: SqlType) -> &'static str {
    match t {
        SqlType::Text => "TEXT",
        SqlType::Integer => "BIGINT",
        SqlType::Real => "DOUBLE PRECISION",
    }
}

/// Proof that this process is a consumer's only runner; dropping it lets another take over.
pub enum RunnerGuard {
    /// SQLite: the consumer's lock file, held locked.
    Lease {
        id: ConsumerId,
        owner: String,
        lock: RunnerLock,
    },
    /// PostgreSQL: a session advisory lock. Batches and checkpoints are written through the
    /// session that holds it, so a runner whose session ended (and so lost the lock to another
    /// runner) can commit nothing more.
    Advisory {
        id: ConsumerId,
        owner: String,
        session: tokio::sync::Mutex<sqlx::PgConnection>,
        /// The server process of that session (what `pg_terminate_backend` takes).
        pid: i32,
    },
}

impl RunnerGuard {
    pub fn owner(&self) -> &str {
        match self {
            RunnerGuard::Lease { owner, .. } | RunnerGuard::Advisory { owner, .. } => owner,
        }
    }

    pub fn id(&self) -> ConsumerId {
        match self {
            RunnerGuard::Lease { id, .. } | RunnerGuard::Advisory { id, .. } => *id,
        }
    }

    /// The PostgreSQL server process holding the lock, if this is a PostgreSQL guard.
    pub fn backend_pid(&self) -> Option<i32> {
        match self {
            RunnerGuard::Advisory { pid, .. } => Some(*pid),
            RunnerGuard::Lease { .. } => None,
        }
    }

    /// The SQLite lock file this guard holds (a PostgreSQL guard cannot write SQLite read models).
    fn lock(&self) -> Result<&RunnerLock, ViewsError> {
        match self {
            RunnerGuard::Lease { lock, .. } => Ok(lock),
            RunnerGuard::Advisory { id, .. } => Err(ViewsError::LeaseLost(id.name)),
        }
    }

    fn session(&self) -> Result<&tokio::sync::Mutex<sqlx::PgConnection>, ViewsError> {
        match self {
            RunnerGuard::Advisory { session, .. } => Ok(session),
            RunnerGuard::Lease { .. } => Err(ViewsError::Database(
                "a SQLite lease cannot write to PostgreSQL read models".into(),
            )),
        }
    }
}

/// An exclusive lock (`flock`) on `<read models' file>.locks/<consumer's table>`: held while the
/// runner runs, let go by the system when its process ends. Only [`Views::try_acquire`] makes one,
/// so a guard always stands for a lock actually held.
pub struct RunnerLock(std::fs::File);

/// Locks the runner file of `table` beside the SQLite database `conn` if nobody holds it. The lock
/// belongs to the open file, so two runners in one process exclude each other as two processes do.
fn lock_runner(conn: &rusqlite::Connection, table: &str) -> Result<Option<RunnerLock>, ViewsError> {
    let db = conn
        .path()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ViewsError::Database("read models in memory have no runner locks".into()))?;
    let dir = std::path::PathBuf::from(format!("{db}.locks"));
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(table))
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(RunnerLock(file))),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
    }
}

/// The key an advisory lock is taken on: one per consumer version, like the SQLite lock files.
const ADVISORY_KEY: &str = "hashtext('sportello-projection:' || $1)";

/// The read models' SQLite file: one connection writes (the runners, the sessions) and the
/// staff's queries read on connections of their own, each from the last commit, so that a query
/// waits neither for a runner's batch nor for another query.
pub struct SqliteViews {
    path: PathBuf,
    writer: Mutex<rusqlite::Connection>,
    readers: IdleConnections,
    /// When [`Views::refresh_statistics`] last looked.
    statistics: Mutex<Option<std::time::Instant>>,
    /// A permit per read connection: more queries at once than cores only queue at the cores.
    reading: Arc<tokio::sync::Semaphore>,
}

impl SqliteViews {
    fn new(path: PathBuf, writer: rusqlite::Connection) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            path,
            writer: Mutex::new(writer),
            readers: IdleConnections::default(),
            statistics: Mutex::new(None),
            reading: Arc::new(tokio::sync::Semaphore::new(cores.clamp(2, 8))),
        }
    }

    fn open_reader(&self) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        sportello_engine::store::sqlite::wait_patiently_when_busy(&conn)?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        Ok(conn)
    }
}

/// Runs `f` with the read models' write connection on a blocking thread (SQLite calls block).
pub(crate) async fn blocking<T, E>(
    views: &Arc<SqliteViews>,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, E> + Send + 'static,
) -> Result<T, ViewsError>
where
    T: Send + 'static,
    E: Into<ViewsError> + Send + 'static,
{
    let views = views.clone();
    tokio::task::spawn_blocking(move || {
        f(&mut views.writer.lock().expect("views poisoned")).map_err(Into::into)
    })
    .await
    .map_err(failed)?
}

/// Runs `f` on one of the read models' read connections on a blocking thread: it sees what was
/// committed before it began, and writes nothing.
pub(crate) async fn reading<T, E>(
    views: &Arc<SqliteViews>,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, E> + Send + 'static,
) -> Result<T, ViewsError>
where
    T: Send + 'static,
    E: Into<ViewsError> + Send + 'static,
{
    let permit = views
        .reading
        .clone()
        .acquire_owned()
        .await
        .map_err(failed)?;
    let views = views.clone();
    tokio::task::spawn_blocking(move || {
        // Held until the connection is back, even if the caller stopped waiting.
        let _permit = permit;
        views.readers.with(
            || Ok(views.open_reader()?),
            |conn| f(conn).map_err(Into::into),
        )
    })
    .await
    .map_err(failed)?
}

impl From<rusqlite::Error> for ViewsError {
    fn from(e: rusqlite::Error) -> Self {
        db(e)
    }
}

impl From<sqlx::Error> for ViewsError {
    fn from(e: sqlx::Error) -> Self {
        db(e)
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
            let opened = path.clone();
            let conn = tokio::task::spawn_blocking(move || -> rusqlite::Result<_> {
                let conn = rusqlite::Connection::open(opened)?;
                sportello_engine::store::sqlite::wait_patiently_when_busy(&conn)?;
                // 4 KiB pages (only takes effect on a new file, so first): a case opened touches
                // one page of each index, each a frame of the WAL; 16 KiB pages wrote four times
                // the bytes for the same queries (docs/benchmarks.md, "Bytes a case writes").
                conn.pragma_update(None, "page_size", 4_096)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                // Deleted rows are zeroed in the file: the subject search holds personal texts
                // until an erasure removes them.
                conn.pragma_update(None, "secure_delete", "ON")?;
                // Read models are rebuilt from the log: NORMAL is enough and halves the fsyncs.
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                // Queries read pages where the file is mapped instead of copying each one in:
                // a search reads hundreds of rows spread over the file.
                conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
                // A large sort (an index built at the end of a rebuild) may sort its runs on a
                // second thread.
                conn.pragma_update(None, "threads", 2)?;
                Ok(conn)
            })
            .await
            .map_err(failed)??;
            Views::Sqlite(Arc::new(SqliteViews::new(path, conn)), None)
        } else {
            Views::Postgres(sportello_engine::store::postgres::pool(url, 8).await?, None)
        };
        views.execute_batch(SCHEMA.to_owned()).await?;
        Ok(views)
    }

    /// The read models on a PostgreSQL replica, for queries only: nothing is created or written
    /// there (the primary's runners write, and the replica follows).
    pub async fn open_replica(url: &str) -> Result<Self, ViewsError> {
        Ok(Views::Postgres(
            sportello_engine::store::postgres::pool(url, 8).await?,
            None,
        ))
    }

    /// The same read models, able to unseal (for the subject search).
    pub fn with_vault(self, vault: Vault) -> Self {
        match self {
            Views::Sqlite(db, _) => Views::Sqlite(db, Some(vault)),
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
            Views::Sqlite(db, _) => {
                let done =
                    blocking(db, |c| sportello_engine::store::sqlite::truncate_wal(c)).await?;
                if done {
                    Ok(())
                } else {
                    Err(ViewsError::Unavailable(
                        "the read models' WAL stayed busy".into(),
                    ))
                }
            }
            Views::Postgres(pool, _) => {
                sqlx::raw_sql(AssertSqlSafe(format!("VACUUM {}", P::table())))
                    .execute(pool)
                    .await?;
                Ok(())
            }
        }
    }

    /// Runs schema statements (and the checkpoints' rows that go with them).
    async fn execute_batch(&self, sql: String) -> Result<(), ViewsError> {
        match self {
            Views::Sqlite(db, _) => blocking(db, move |c| c.execute_batch(&sql)).await,
            Views::Postgres(pool, _) => {
                pg_schema(pool, sql).await?;
                Ok(())
            }
        }
    }

    /// Creates the projection's table, indexes and checkpoint if they do not exist.
    pub async fn ensure<P: Projection>(&self) -> Result<(), ViewsError> {
        self.create_table::<P>().await?;
        self.create_indexes::<P>().await
    }

    /// The end of a bulk build: the secondary indexes, then the table's statistics for the
    /// planner (on PostgreSQL with the visibility map, which autovacuum brings a minute or more
    /// later; on SQLite nothing brings them). Without them the planner takes a table of a
    /// million rows for a small one and picks its indexes by rule of thumb (`docs/benchmarks.md`,
    /// "The staff's queries on PostgreSQL" and "The planner's statistics, SQLite").
    pub async fn finish_build<P: Projection>(&self) -> Result<(), ViewsError> {
        self.create_indexes::<P>().await?;
        let table = P::table();
        match self {
            Views::Sqlite(db, _) => {
                blocking(db, move |c| c.execute_batch(&format!("ANALYZE {table}"))).await
            }
            Views::Postgres(pool, _) => {
                sqlx::raw_sql(AssertSqlSafe(format!("VACUUM (ANALYZE) {table}")))
                    .execute(pool)
                    .await?;
                Ok(())
            }
        }
    }

    /// On SQLite, at most once every [`STATISTICS_EVERY`]: the planner's statistics of the
    /// tables that have none yet or have grown or shrunk tenfold since (`PRAGMA optimize`, in
    /// full, with the samples of each index that the staff's filters need). A read model
    /// built event by event from an empty table has none otherwise. PostgreSQL's autovacuum
    /// does the same there.
    pub async fn refresh_statistics(&self) -> Result<(), ViewsError> {
        let Views::Sqlite(db, _) = self else {
            return Ok(());
        };
        {
            let mut last = db.statistics.lock().expect("views poisoned");
            if last.is_some_and(|at| at.elapsed() < STATISTICS_EVERY) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        // 0x10000: every table, not only those this connection's queries used (it runs none);
        // without 0x10, no sampling limit, which would leave out the samples.
        blocking(db, |c| c.execute_batch("PRAGMA optimize(0x10002)")).await
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
        self.execute_batch(sql).await?;
        match P::SEARCHED {
            Some(column) => self.create_search_index::<P>(column).await,
            None => Ok(()),
        }
    }

    /// The full-text index of `column`: on SQLite an FTS5 table over the table's rows, kept by
    /// triggers and filled once; on PostgreSQL a trigram index, when the `pg_trgm` extension can
    /// be had (without it the search scans, and says so in the log).
    async fn create_search_index<P: Projection>(&self, column: &str) -> Result<(), ViewsError> {
        let (table, search) = (P::table(), P::id().search_table());
        match self {
            Views::Sqlite(db, _) => {
                // Only the words are kept (detail=none), split where `normalize` put spaces,
                // with lists of the words' beginnings too (prefix); an entry deleted is scrubbed
                // from the index's pages (secure-delete), so an erased text leaves no word behind.
                // Beside it, the texts by key: a walk tests a row's text in one lookup.
                let prefixes: Vec<String> = (1..=INDEXED_PREFIX).map(|n| n.to_string()).collect();
                let prefixes = prefixes.join(" ");
                let sql = format!(
                    "CREATE VIRTUAL TABLE {search} USING fts5({column}, content='{table}', \
                         detail='none', tokenize='ascii', prefix='{prefixes}');
                     INSERT INTO {search}({search}, rank) VALUES ('secure-delete', 1);
                     CREATE TRIGGER {search}_insert AFTER INSERT ON {table} BEGIN
                         INSERT INTO {search}(rowid, {column}) VALUES (new.rowid, new.{column});
                     END;
                     CREATE TRIGGER {search}_delete AFTER DELETE ON {table} BEGIN
                         INSERT INTO {search}({search}, rowid, {column}) VALUES ('delete', old.rowid, old.{column});
                     END;
                     CREATE TRIGGER {search}_update AFTER UPDATE OF {column} ON {table} BEGIN
                         INSERT INTO {search}({search}, rowid, {column}) VALUES ('delete', old.rowid, old.{column});
                         INSERT INTO {search}(rowid, {column}) VALUES (new.rowid, new.{column});
                     END;
                     INSERT INTO {search}({search}) VALUES ('rebuild');
                     CREATE INDEX IF NOT EXISTS {search}_keys ON {table} (id, {column});"
                );
                blocking(db, move |c| {
                    let tx =
                        c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    if !sqlite_table_exists(&tx, &search)? {
                        tx.execute_batch(&sql)?;
                    }
                    tx.commit()
                })
                .await
            }
            Views::Postgres(pool, _) => {
                if pg_schema(pool, "CREATE EXTENSION IF NOT EXISTS pg_trgm".into())
                    .await
                    .is_err()
                    && !pg_trigrams(pool).await?
                {
                    tracing::warn!(
                        table = %table,
                        "the pg_trgm extension cannot be created here: the text search scans the \
                         table (ask the database's owner for CREATE EXTENSION pg_trgm)"
                    );
                    return Ok(());
                }
                // Not named `{search}`: that name is SQLite's table, which resets drop.
                pg_schema(
                    pool,
                    format!(
                        "CREATE INDEX IF NOT EXISTS {search}_trigrams ON {table} \
                         USING gin ({column} gin_trgm_ops)"
                    ),
                )
                .await?;
                Ok(())
            }
        }
    }

    /// Adds to `filter` that the row of `P` whose id is in `key` has a searched text with every
    /// one of `words`, by the plan that suits them. On SQLite, when the full-text index finds
    /// fewer than [`FEW_MATCHES`] candidates, they are gathered and the query starts from them;
    /// words in more texts are tested on each row the query walks anyway, in its own order, which
    /// fills a page sooner than gathering every match. PostgreSQL's planner chooses for itself.
    pub async fn text_match<P: Projection>(
        &self,
        filter: &mut Filter,
        key: &str,
        words: &Words,
    ) -> Result<SearchPlan, ViewsError> {
        self.text_match_by::<P>(filter, key, words, None).await
    }

    /// [`Views::text_match`] by the plan given, or by its own choice; the rows are the same.
    /// Returns the plan taken.
    pub async fn text_match_by<P: Projection>(
        &self,
        filter: &mut Filter,
        key: &str,
        words: &Words,
        plan: Option<SearchPlan>,
    ) -> Result<SearchPlan, ViewsError> {
        let Some(column) = P::SEARCHED else {
            return Err(ViewsError::Database(format!(
                "{} has no searched text",
                P::table()
            )));
        };
        let cap = match plan {
            Some(SearchPlan::Walk) => 0,
            Some(SearchPlan::FromMatches) => i64::MAX,
            None => FEW_MATCHES,
        };
        let table = P::table();
        // SQLite's planner prefers the key's own index, which leaves the text in the row.
        let read_by = match self.gather_matches::<P>(column, words, cap).await? {
            Gathered::Ids(ids) => {
                // One parameter, so the page's and the count's statements stay the same from
                // one search to the next (and in the statement cache).
                let ids =
                    serde_json::to_string(&ids).map_err(|e| ViewsError::Database(e.to_string()))?;
                filter.and(
                    &format!("{key} IN (SELECT value FROM json_each(?))"),
                    SqlValue::Text(ids),
                );
                return Ok(SearchPlan::FromMatches);
            }
            Gathered::Many => format!("INDEXED BY {}_keys", P::id().search_table()),
            Gathered::Unindexed => String::new(),
        };
        let patterns = words.like_patterns();
        let likes = vec![format!("s.{column} LIKE ?"); patterns.len()].join(" AND ");
        filter.and_each(
            &format!("EXISTS (SELECT 1 FROM {table} s {read_by} WHERE s.id = {key} AND {likes})"),
            patterns.into_iter().map(SqlValue::Text).collect(),
        );
        Ok(SearchPlan::Walk)
    }

    /// On SQLite with a full-text index, the ids of the rows of `P` whose `column` has every
    /// word, when the index finds fewer than `cap` candidates. Each term's share of the texts is
    /// estimated from how far into the rowids the index goes to find [`SAMPLE`] of them (rowids
    /// follow insertion, so a word's texts are spread over them); a term in more than a quarter
    /// of them is left to the check of each candidate: the index would walk most of its list.
    async fn gather_matches<P: Projection>(
        &self,
        column: &'static str,
        words: &Words,
        cap: i64,
    ) -> Result<Gathered, ViewsError> {
        let Views::Sqlite(db, _) = self else {
            return Ok(Gathered::Unindexed);
        };
        let (table, search) = (P::table(), P::id().search_table());
        let words = words.clone();
        reading(db, move |c| {
            // One snapshot: a row erased meanwhile is not half seen.
            let c = c.transaction()?;
            if !sqlite_table_exists(&c, &search)? {
                return Ok(Gathered::Unindexed);
            }
            if cap == 0 {
                return Ok(Gathered::Many);
            }
            let rows: Option<i64> =
                c.query_row(&format!("SELECT max(rowid) FROM {table}"), [], |r| r.get(0))?;
            let rows = rows.unwrap_or(0).max(1) as f64;
            let mut probe = c.prepare_cached(&format!(
                "SELECT count(*), max(rowid) FROM \
                 (SELECT rowid FROM {search} WHERE {search} MATCH ?1 LIMIT {SAMPLE})"
            ))?;
            let mut shares = Vec::new();
            for term in words.terms() {
                let term = Words::fts_term(term);
                let (n, last): (i64, Option<i64>) =
                    probe.query_row([&term], |r| Ok((r.get(0)?, r.get(1)?)))?;
                shares.push((term, share_of(n, last, rows)));
            }
            // The rarest terms first, only as many as it takes to expect few candidates: the
            // index walks each term's whole list to intersect it, and the candidates are
            // checked for every term anyway (the words of a street come together, so a third
            // term rarely removes any).
            shares.sort_by(|a, b| a.1.total_cmp(&b.1));
            let mut query = Vec::new();
            let mut expected = rows;
            for (term, share) in shares {
                if !query.is_empty() && (share > 0.25 || expected <= (cap / 2) as f64) {
                    break;
                }
                query.push(term);
                expected *= share;
            }
            let query = query.join(" AND ");
            // The candidates' rowids (ascending), with the same estimate for the whole query
            // once SAMPLE of them are in: one pass over the index's lists, and their rows are
            // read only when they are few.
            let mut candidates = c.prepare_cached(&format!(
                "SELECT rowid FROM {search} WHERE {search} MATCH ?1 LIMIT ?2"
            ))?;
            let mut found = candidates.query(rusqlite::params![query, cap])?;
            let mut rowids = Vec::new();
            while let Some(row) = found.next()? {
                let rowid: i64 = row.get(0)?;
                rowids.push(rowid);
                let n = rowids.len() as i64;
                if n >= cap || (n == SAMPLE && share_of(n, Some(rowid), rows) * rows >= cap as f64)
                {
                    return Ok(Gathered::Many);
                }
            }
            let mut read = c.prepare_cached(&format!(
                "SELECT id, {column} FROM {table} WHERE rowid = ?1"
            ))?;
            let mut ids = Vec::new();
            for rowid in rowids {
                let row: Option<(String, String)> = read
                    .query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((id, text)) = row
                    && words.matches(&text)
                {
                    ids.push(id);
                }
            }
            Ok::<_, rusqlite::Error>(Gathered::Ids(ids))
        })
        .await
    }

    async fn create_table<P: Projection>(&self) -> Result<(), ViewsError> {
        let columns: Vec<String> = P::columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let key = if i == 0 { " PRIMARY KEY" } else { "" };
                format!("{} {}{key}", c.name, sql_type(c.sql_type))
            })
            .collect();
        let mut sql = format!(
            "CREATE TABLE IF NOT EXISTS {} ({});",
            P::table(),
            columns.join(", ")
        );
        if !P::TALLY_DIMENSIONS.is_empty() {
            let dimensions = P::TALLY_DIMENSIONS.join(", ");
            let typed: Vec<String> = P::TALLY_DIMENSIONS
                .iter()
                .map(|d| format!("{d} TEXT NOT NULL"))
                .collect();
            sql.push_str(&format!(
                "\nCREATE TABLE IF NOT EXISTS {} ({}, n BIGINT NOT NULL, PRIMARY KEY ({dimensions}));",
                P::tallies_table(),
                typed.join(", ")
            ));
        }
        self.execute_batch(sql).await?;
        self.ensure_checkpoint(P::id()).await
    }

    /// Creates the consumer's checkpoint at 0, `building`, if it has none.
    pub async fn ensure_checkpoint(&self, id: ConsumerId) -> Result<(), ViewsError> {
        self.execute_batch(format!(
            "INSERT INTO projection_checkpoints (name, version, position, status) VALUES ('{}', {}, 0, 'building') \
             ON CONFLICT DO NOTHING;",
            id.name, id.version
        ))
        .await
    }

    /// Sets the consumer's checkpoint back to 0, `building`: it starts again from the first event.
    pub async fn reset_checkpoint(&self, id: ConsumerId) -> Result<(), ViewsError> {
        self.execute_batch(format!(
            "DELETE FROM projection_checkpoints WHERE name = '{}' AND version = {};",
            id.name, id.version
        ))
        .await?;
        self.ensure_checkpoint(id).await
    }

    /// Drops the projection's rows and checkpoint, to build it again from the start; the
    /// indexes come back with [`Views::create_indexes`].
    pub async fn reset<P: Projection>(&self) -> Result<(), ViewsError> {
        self.execute_batch(P::id().drop_sql()).await?;
        self.reset_checkpoint(P::id()).await?;
        self.create_table::<P>().await
    }

    pub async fn checkpoint(&self, id: ConsumerId) -> Result<u64, ViewsError> {
        Ok(self.status(id).await?.0)
    }

    /// Marks the consumer's version as the one queries read.
    pub async fn mark_live(&self, id: ConsumerId) -> Result<(), ViewsError> {
        self.execute_batch(format!(
            "UPDATE projection_checkpoints SET status = 'live' WHERE name = '{}' AND version = {};",
            id.name, id.version
        ))
        .await
    }

    /// Takes the consumer's runner guard if nobody holds it: the SQLite lease, or on PostgreSQL
    /// the advisory lock on a session of its own (opened from `store_url`).
    pub async fn try_acquire(
        &self,
        store_url: &str,
        id: ConsumerId,
        owner: &str,
    ) -> Result<Option<RunnerGuard>, ViewsError> {
        match self {
            Views::Sqlite(db, _) => {
                let table = id.table();
                let lock = blocking(db, move |c| lock_runner(c, &table)).await?;
                Ok(lock.map(|lock| RunnerGuard::Lease {
                    id,
                    owner: owner.to_owned(),
                    lock,
                }))
            }
            Views::Postgres(..) => {
                let mut session = sqlx::PgConnection::connect(store_url).await?;
                let (locked, pid): (bool, i32) = sqlx::query_as(AssertSqlSafe(format!(
                    "SELECT pg_try_advisory_lock({ADVISORY_KEY}), pg_backend_pid()"
                )))
                .bind(id.table())
                .fetch_one(&mut session)
                .await?;
                Ok(locked.then(|| RunnerGuard::Advisory {
                    id,
                    owner: owner.to_owned(),
                    session: tokio::sync::Mutex::new(session),
                    pid,
                }))
            }
        }
    }

    /// Renews a guard: on PostgreSQL the lock's session must still answer; a SQLite lock file
    /// stays locked as long as the process holds it.
    pub async fn renew(&self, guard: &RunnerGuard) -> Result<bool, ViewsError> {
        match (self, guard) {
            (Views::Sqlite(..), RunnerGuard::Lease { .. }) => Ok(true),
            (_, RunnerGuard::Advisory { session, .. }) => {
                sqlx::query("SELECT 1")
                    .execute(&mut *session.lock().await)
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Lets another runner take over at once (a runner that stops cleanly); the guard is not to
    /// be used afterwards. On PostgreSQL the lock is let go on its session explicitly: closing a
    /// dropped session happens in the background, and a runner started just after would find
    /// the lock still held.
    pub async fn release(&self, guard: &RunnerGuard) -> Result<(), ViewsError> {
        match guard {
            RunnerGuard::Lease { lock, .. } => lock.0.unlock().map_err(failed)?,
            RunnerGuard::Advisory { id, session, .. } => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT pg_advisory_unlock({ADVISORY_KEY})"
                )))
                .bind(id.table())
                .execute(&mut *session.lock().await)
                .await?;
            }
        }
        Ok(())
    }

    /// Applies `events` in one transaction with the checkpoint, fenced by `guard`. Events at or
    /// below the checkpoint are skipped (they were applied before a crash). Returns the new
    /// checkpoint.
    pub async fn apply_batch<P: Projection>(
        &self,
        guard: &RunnerGuard,
        events: Vec<RecordedEvent>,
    ) -> Result<u64, ViewsError> {
        let batch = self.decode_batch::<P>(events).await?;
        self.apply_decoded(guard, batch).await
    }

    /// Prepares and decodes a batch for [`Views::apply_decoded`]: the work that needs no
    /// database, done while the batch before it is applied.
    pub async fn decode_batch<P: Projection>(
        &self,
        mut events: Vec<RecordedEvent>,
    ) -> Result<DecodedBatch<P>, ViewsError> {
        P::prepare(self, &mut events).await?;
        let scrub = P::scrub_after(&events);
        let last = events.last().map(|e| e.position);
        let small = events.len() < INLINE_DECODE;
        let decode = move || {
            events
                .into_iter()
                .filter_map(|event| {
                    let (key, decoded) = P::decode(&event)?;
                    Some(Decoded {
                        position: event.position,
                        key,
                        decoded,
                    })
                })
                .collect()
        };
        let items = if small {
            decode()
        } else {
            tokio::task::spawn_blocking(decode).await.map_err(failed)?
        };
        Ok(DecodedBatch { items, last, scrub })
    }

    /// Applies a decoded batch as [`Views::apply_batch`] does.
    pub async fn apply_decoded<P: Projection>(
        &self,
        guard: &RunnerGuard,
        batch: DecodedBatch<P>,
    ) -> Result<u64, ViewsError> {
        let scrub = batch.scrub;
        let applied = match self {
            Views::Sqlite(db, _) => {
                guard.lock()?;
                blocking(db, move |c| apply_sqlite::<P>(c, batch)).await?
            }
            Views::Postgres(..) => {
                let mut session = guard.session()?.lock().await;
                apply_postgres::<P>(&mut session, batch).await?
            }
        };
        // The erasure itself is applied; a scrub that cannot run now is retried by the next one
        // (and by the erasure request, which waits for it).
        if scrub && let Err(error) = self.scrub::<P>().await {
            tracing::warn!(projection = P::NAME, %error, "could not scrub after an erasure");
        }
        Ok(applied)
    }

    /// Rows of the projection matching `filter`, in `order`.
    pub async fn select<P: Projection>(
        &self,
        filter: &Filter,
        order: &str,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<P::Row>, ViewsError> {
        let columns: Vec<&str> = P::columns().iter().map(|c| c.name).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
            columns.join(", "),
            P::table(),
            filter.sql()
        );
        let rows = self
            .fetch(sql, filter.params().to_vec(), P::columns().len())
            .await?;
        Ok(rows.into_iter().filter_map(P::from_values).collect())
    }

    /// A page of rows matching `filter` in `order`, found in two steps: first the ids of the page
    /// (which an index holding the filtered and sorted columns and the id answers alone, without
    /// reading the rows it skips), then those rows.
    pub async fn select_page<P: Projection>(
        &self,
        filter: &Filter,
        order: &str,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<P::Row>, ViewsError> {
        let ids = format!(
            "SELECT id FROM {} WHERE {} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
            P::table(),
            filter.sql()
        );
        self.rows_by_id::<P>(&ids, order, filter.params().to_vec())
            .await
    }

    /// [`Views::select_page`] over the rows matching `filter` and one of the arms: `arm` (one `?`)
    /// with each of `values`. Each arm is walked in `order` (plain columns) by an index of its own
    /// and the walks are merged (SQLite's compound merge, PostgreSQL's Merge Append), so the page
    /// reads as many entries as it shows; one condition over all the values would read every
    /// matching entry and sort them.
    pub async fn select_page_merged<P: Projection>(
        &self,
        filter: &Filter,
        arm: &str,
        values: Vec<SqlValue>,
        order: &str,
        limit: u64,
        offset: u64,
    ) -> Result<Vec<P::Row>, ViewsError> {
        let table = P::table();
        let shared = filter.params().len();
        // The filter's parameters are numbered ($n) and shared by every arm; each arm's value
        // comes after them.
        let arms: Vec<String> = (1..=values.len())
            .map(|i| {
                let arm = arm.replace('?', &format!("${}", shared + i));
                format!(
                    "SELECT id, {order} FROM {table} WHERE {} AND {arm}",
                    filter.sql()
                )
            })
            .collect();
        let ids = format!(
            "SELECT id FROM ({} ORDER BY {order} LIMIT {limit} OFFSET {offset}) AS merged",
            arms.join(" UNION ALL ")
        );
        let mut params = filter.params().to_vec();
        params.extend(values);
        self.rows_by_id::<P>(&ids, order, params).await
    }

    /// The rows whose ids `ids` selects, in `order`.
    async fn rows_by_id<P: Projection>(
        &self,
        ids: &str,
        order: &str,
        params: Vec<SqlValue>,
    ) -> Result<Vec<P::Row>, ViewsError> {
        let columns: Vec<&str> = P::columns().iter().map(|c| c.name).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE id IN ({ids}) ORDER BY {order}",
            columns.join(", "),
            P::table()
        );
        let rows = self.fetch(sql, params, P::columns().len()).await?;
        Ok(rows.into_iter().filter_map(P::from_values).collect())
    }

    /// How many rows match `filter`, counting no further than `cap` rows and for no longer than
    /// `budget` (a count over a million rows costs more than the page it describes). Returns the
    /// count and whether it is complete; an incomplete count is a lower bound (on PostgreSQL, 0:
    /// the statement is cancelled whole).
    pub async fn count<P: Projection>(
        &self,
        filter: &Filter,
        cap: u64,
        budget: Duration,
    ) -> Result<(u64, bool), ViewsError> {
        let sql = format!(
            "SELECT 1 FROM {} WHERE {} LIMIT {cap}",
            P::table(),
            filter.sql()
        );
        let params = filter.params().to_vec();
        match self {
            Views::Sqlite(db, _) => {
                reading(db, move |conn| -> Result<_, ViewsError> {
                    // SQLite looks at the clock every thousand steps of its own, whether they
                    // find matches or walk between them; a clock read a row counted was 7% of
                    // the staff's queries' time.
                    let deadline = std::time::Instant::now() + budget;
                    conn.progress_handler(
                        COUNT_CLOCK_STEPS,
                        Some(move || std::time::Instant::now() > deadline),
                    )?;
                    let mut counted = 0u64;
                    let counting = (|| {
                        let mut stmt = conn.prepare_cached(&sql)?;
                        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                        while rows.next()?.is_some() {
                            counted += 1;
                        }
                        Ok::<_, rusqlite::Error>(())
                    })();
                    conn.progress_handler(0, None::<fn() -> bool>)?;
                    match counting {
                        Ok(()) => Ok((counted, true)),
                        Err(rusqlite::Error::SqliteFailure(e, _))
                            if e.code == rusqlite::ErrorCode::OperationInterrupted =>
                        {
                            Ok((counted, false))
                        }
                        Err(e) => Err(e.into()),
                    }
                })
                .await
            }
            Views::Postgres(pool, _) => {
                // The budget as a timeout on this statement alone: a count cut short says
                // nothing more than the page it describes.
                let mut tx = pool.begin().await?;
                sqlx::query(AssertSqlSafe(format!(
                    "SET LOCAL statement_timeout = {}",
                    budget.as_millis().max(1)
                )))
                .execute(&mut *tx)
                .await?;
                let sql = format!("SELECT count(*) FROM ({sql}) AS capped");
                match pg_query(sql, &params).fetch_one(&mut *tx).await {
                    Ok(row) => {
                        let counted: i64 = row.try_get(0)?;
                        tx.commit().await?;
                        Ok((counted as u64, true))
                    }
                    Err(sqlx::Error::Database(e))
                        if e.code().as_deref() == Some(QUERY_CANCELED) =>
                    {
                        Ok((0, false))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Runs a query and reads `width` columns of each row, typed as the database gives them.
    pub(crate) async fn fetch(
        &self,
        sql: String,
        params: Vec<SqlValue>,
        width: usize,
    ) -> Result<Vec<Vec<SqlValue>>, ViewsError> {
        match self {
            Views::Sqlite(db, _) => {
                reading(db, move |conn| -> Result<_, ViewsError> {
                    let mut stmt = conn.prepare_cached(&sql)?;
                    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                    let mut out = Vec::new();
                    while let Some(row) = rows.next()? {
                        out.push(read_sqlite_values(row, width)?);
                    }
                    Ok(out)
                })
                .await
            }
            Views::Postgres(pool, _) => {
                let rows = pg_query(sql, &params).fetch_all(pool).await?;
                rows.iter().map(|row| read_pg_values(row, width)).collect()
            }
        }
    }

    /// Moves the checkpoint to `head` (never back): every event up to it has been considered, even
    /// where none concerned the consumer. Fenced like a batch.
    pub async fn advance_checkpoint(
        &self,
        guard: &RunnerGuard,
        head: u64,
    ) -> Result<(), ViewsError> {
        let update = "UPDATE projection_checkpoints SET position = $1 \
                      WHERE name = $2 AND version = $3 AND position < $1";
        let id = guard.id();
        match self {
            Views::Sqlite(db, _) => {
                guard.lock()?;
                blocking(db, move |conn| -> Result<(), ViewsError> {
                    conn.execute(update, rusqlite::params![head as i64, id.name, id.version])?;
                    Ok(())
                })
                .await
            }
            Views::Postgres(..) => {
                sqlx::query(update)
                    .bind(head as i64)
                    .bind(id.name)
                    .bind(id.version as i64)
                    .execute(&mut *guard.session()?.lock().await)
                    .await?;
                Ok(())
            }
        }
    }

    /// The checkpoint and status (`building` or `live`) of the consumer's version.
    pub async fn status(&self, id: ConsumerId) -> Result<(u64, String), ViewsError> {
        Ok(self
            .recorded_status(id)
            .await?
            .unwrap_or((0, "building".into())))
    }

    /// The checkpoint and status, or `None` for a consumer no runner has started here.
    pub async fn recorded_status(
        &self,
        id: ConsumerId,
    ) -> Result<Option<(u64, String)>, ViewsError> {
        let sql =
            "SELECT position, status FROM projection_checkpoints WHERE name = $1 AND version = $2";
        let found: Option<(i64, String)> = match self {
            Views::Sqlite(db, _) => {
                reading(db, move |c| {
                    c.query_row(sql, rusqlite::params![id.name, id.version], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .await?
            }
            Views::Postgres(pool, _) => {
                sqlx::query_as(sql)
                    .bind(id.name)
                    .bind(id.version as i64)
                    .fetch_optional(pool)
                    .await?
            }
        };
        Ok(found.map(|(p, s)| (p as u64, s)))
    }

    /// Drops the tables of older versions of the consumer once the current one is live, unless a
    /// runner (an older binary still serving during a deployment) holds them. Returns the
    /// versions dropped.
    pub async fn retire_older(&self, id: ConsumerId) -> Result<Vec<u32>, ViewsError> {
        let sql = "SELECT CAST(version AS BIGINT) FROM projection_checkpoints WHERE name = $1 AND version < $2";
        let older: Vec<i64> = match self {
            Views::Sqlite(db, _) => {
                blocking(db, move |c| {
                    let mut stmt = c.prepare(sql)?;
                    let rows =
                        stmt.query_map(rusqlite::params![id.name, id.version], |r| r.get(0))?;
                    rows.collect::<rusqlite::Result<Vec<i64>>>()
                })
                .await?
            }
            Views::Postgres(pool, _) => {
                sqlx::query_scalar(sql)
                    .bind(id.name)
                    .bind(id.version as i64)
                    .fetch_all(pool)
                    .await?
            }
        };
        let mut dropped = Vec::new();
        for version in older {
            let old = ConsumerId {
                name: id.name,
                version: version as u32,
            };
            let table = old.table();
            let drop_sql = format!(
                "{} DELETE FROM projection_checkpoints WHERE name = '{}' AND version = {version};",
                old.drop_sql(),
                id.name
            );
            let free = match self {
                // Free when no runner holds its lock file: lock it, drop, let go.
                Views::Sqlite(db, _) => {
                    let table = table.clone();
                    blocking(db, move |c| lock_runner(c, &table)).await?
                }
                Views::Postgres(pool, _) => {
                    let mut conn = pool.acquire().await?;
                    let locked: bool = sqlx::query_scalar(AssertSqlSafe(format!(
                        "SELECT pg_try_advisory_lock({ADVISORY_KEY})"
                    )))
                    .bind(&table)
                    .fetch_one(&mut *conn)
                    .await?;
                    if locked {
                        sqlx::raw_sql(AssertSqlSafe(drop_sql.clone()))
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(AssertSqlSafe(format!(
                            "SELECT pg_advisory_unlock({ADVISORY_KEY})"
                        )))
                        .bind(&table)
                        .execute(&mut *conn)
                        .await?;
                        dropped.push(old.version);
                    }
                    continue;
                }
            };
            if let Some(lock) = free {
                self.execute_batch(drop_sql).await?;
                dropped.push(old.version);
                drop(lock);
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
            Views::Sqlite(db, _) => {
                let (key, fingerprint) = (key.to_owned(), fingerprint.to_owned());
                blocking(db, move |c| {
                    c.execute(insert, rusqlite::params![key, fingerprint, now_ms()])?;
                    c.query_row(select, [key], |r| r.get(0))
                })
                .await?
            }
            Views::Postgres(pool, _) => {
                sqlx::query(insert)
                    .bind(key)
                    .bind(fingerprint)
                    .bind(now_ms())
                    .execute(pool)
                    .await?;
                sqlx::query_scalar(select).bind(key).fetch_one(pool).await?
            }
        };
        Ok(stored == fingerprint)
    }
}

/// Bound as it is, without a copy.
impl rusqlite::ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(match self {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Int(i) => ValueRef::Integer(*i),
            SqlValue::Real(r) => ValueRef::Real(*r),
            SqlValue::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
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
    items: Vec<Decoded<P>>,
) -> HashMap<String, Option<P::Row>> {
    for Decoded { key, decoded, .. } in items {
        let current = rows.remove(&key).flatten();
        let next = P::apply(current, &key, decoded);
        rows.insert(key, next);
    }
    rows
}

/// PostgreSQL's code for a statement cancelled by `statement_timeout`.
const QUERY_CANCELED: &str = "57014";

/// `sql` with `params` bound in order, as PostgreSQL takes them.
fn pg_query(
    sql: String,
    params: &[SqlValue],
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for p in params {
        q = match p {
            SqlValue::Null => q.bind(None::<String>),
            SqlValue::Int(i) => q.bind(*i),
            SqlValue::Real(r) => q.bind(*r),
            SqlValue::Text(t) => q.bind(t.clone()),
        };
    }
    q
}

/// Counter changes: each row's counters moved by `sign`, added to `deltas`.
fn count_tallies<P: Projection>(
    rows: &HashMap<String, Option<P::Row>>,
    sign: i64,
    deltas: &mut HashMap<Vec<String>, i64>,
) {
    if P::TALLY_DIMENSIONS.is_empty() {
        return;
    }
    for row in rows.values().flatten() {
        for cell in P::tallies(row) {
            *deltas.entry(cell).or_default() += sign;
        }
    }
}

/// Net changes of counters: (a counter's dimension values, how much it moved).
type TallyChanges = Vec<(Vec<String>, i64)>;

/// Folds the batch into `rows` (as loaded) and returns them with the net change of the counters
/// (cells whose count did not move are left out).
fn fold_with_tallies<P: Projection>(
    rows: HashMap<String, Option<P::Row>>,
    items: Vec<Decoded<P>>,
) -> (HashMap<String, Option<P::Row>>, TallyChanges) {
    let mut deltas = HashMap::new();
    count_tallies::<P>(&rows, -1, &mut deltas);
    let rows = fold_batch::<P>(rows, items);
    count_tallies::<P>(&rows, 1, &mut deltas);
    (rows, deltas.into_iter().filter(|(_, n)| *n != 0).collect())
}

/// Adds a change to a counter; then deletes the counter if that brought it to zero (both with
/// `param(n)` for the n-th value: the dimensions, then the change).
fn tally_sql<P: Projection>(param: impl Fn(usize) -> String) -> (String, String) {
    let table = P::tallies_table();
    let dimensions = P::TALLY_DIMENSIONS;
    let marks: Vec<String> = (1..=dimensions.len() + 1).map(&param).collect();
    let same: Vec<String> = dimensions
        .iter()
        .enumerate()
        .map(|(i, d)| format!("{d} = {}", param(i + 1)))
        .collect();
    (
        format!(
            "INSERT INTO {table} ({}, n) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET n = {table}.n + excluded.n",
            dimensions.join(", "),
            marks.join(", "),
            dimensions.join(", ")
        ),
        format!("DELETE FROM {table} WHERE {} AND n = 0", same.join(" AND ")),
    )
}

fn sqlite_table_exists(conn: &rusqlite::Connection, name: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = ?1)")?
        .query_row([name], |r| r.get(0))
}

/// Runs schema statements on PostgreSQL, one node at a time: nodes started together create the
/// same tables, and `IF NOT EXISTS` does not hold against a concurrent creator (a duplicate key
/// in `pg_type`).
async fn pg_schema(pool: &sqlx::PgPool, sql: String) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(SCHEMA_LOCK).execute(&mut *tx).await?;
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    tx.commit().await
}

async fn pg_trigrams(pool: &sqlx::PgPool) -> Result<bool, ViewsError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')")
            .fetch_one(pool)
            .await?,
    )
}

/// Runs under the runner's lock file ([`RunnerGuard::Lease`]), which no other runner can hold.
fn apply_sqlite<P: Projection>(
    conn: &mut rusqlite::Connection,
    batch: DecodedBatch<P>,
) -> Result<u64, ViewsError> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let checkpoint: i64 = tx
        .query_row(
            "SELECT position FROM projection_checkpoints WHERE name = ?1 AND version = ?2",
            rusqlite::params![P::NAME, P::VERSION],
            |r| r.get(0),
        )
        .map_err(db)?;
    let Some((fresh, last)) = batch.fresh(checkpoint) else {
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
        for Decoded { key, .. } in &fresh {
            if rows.contains_key(key) {
                continue;
            }
            let mut found = load.query([key]).map_err(db)?;
            let row = match found.next().map_err(db)? {
                Some(r) => P::from_values(read_sqlite_row::<P>(r)?),
                None => None,
            };
            rows.insert(key.clone(), row);
        }
    }
    let (rows, tallies) = fold_with_tallies::<P>(rows, fresh);
    if !tallies.is_empty() {
        let (add, drop_zero) = tally_sql::<P>(|i| format!("?{i}"));
        let mut add = tx.prepare_cached(&add).map_err(db)?;
        let mut drop_zero = tx.prepare_cached(&drop_zero).map_err(db)?;
        for (cell, n) in &tallies {
            let mut values: Vec<Value> = cell.iter().map(|v| Value::Text(v.clone())).collect();
            values.push(Value::Integer(*n));
            add.execute(rusqlite::params_from_iter(&values))
                .map_err(db)?;
            if *n < 0 {
                drop_zero
                    .execute(rusqlite::params_from_iter(&values[..cell.len()]))
                    .map_err(db)?;
            }
        }
    }
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
                    upsert
                        .execute(rusqlite::params_from_iter(P::to_values(row)))
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

/// Runs on the session that holds the runner's advisory lock: if that session is gone, so is the
/// transaction, and nothing of a runner that lost its lock can commit.
async fn apply_postgres<P: Projection>(
    session: &mut sqlx::PgConnection,
    batch: DecodedBatch<P>,
) -> Result<u64, ViewsError> {
    let mut tx = session.begin().await?;
    let checkpoint: i64 = sqlx::query_scalar(
        "SELECT position FROM projection_checkpoints WHERE name = $1 AND version = $2 FOR UPDATE",
    )
    .bind(P::NAME)
    .bind(P::VERSION as i64)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let Some((fresh, last)) = batch.fresh(checkpoint) else {
        // End the transaction now: on a session of its own (not a pool's), a dropped one would
        // keep its locks until the session's next statement.
        tx.rollback().await?;
        return Ok(checkpoint as u64);
    };
    let table = P::table();
    let columns: Vec<&str> = P::columns().iter().map(|c| c.name).collect();
    let mut keys: Vec<String> = fresh.iter().map(|d| d.key.clone()).collect();
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
    let (rows, tallies) = fold_with_tallies::<P>(rows, fresh);
    if !tallies.is_empty() {
        let (add, drop_zero) = tally_sql::<P>(|i| format!("${i}"));
        for (cell, n) in &tallies {
            let mut q = sqlx::query(AssertSqlSafe(add.clone()));
            for value in cell {
                q = q.bind(value);
            }
            q.bind(n).execute(&mut *tx).await.map_err(db)?;
            if *n < 0 {
                let mut q = sqlx::query(AssertSqlSafe(drop_zero.clone()));
                for value in cell {
                    q = q.bind(value);
                }
                q.execute(&mut *tx).await.map_err(db)?;
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A staff query reads the last commit while a runner's batch is open on the write
    /// connection, instead of waiting for the batch to end.
    #[tokio::test]
    async fn a_query_reads_the_last_commit_while_a_batch_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("urp.db").display());
        let views = Views::open(&url).await.unwrap();
        views
            .execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);".into())
            .await
            .unwrap();
        let Views::Sqlite(db, _) = &views else {
            unreachable!("opened on SQLite")
        };
        let (opened, batch_open) = tokio::sync::oneshot::channel();
        let (end, ended) = std::sync::mpsc::channel::<()>();
        let db = db.clone();
        let batch = tokio::spawn(async move {
            blocking(&db, move |c| {
                let tx = c.transaction()?;
                tx.execute("INSERT INTO t VALUES (2)", [])?;
                opened.send(()).unwrap();
                ended.recv().unwrap();
                tx.commit()
            })
            .await
        });
        batch_open.await.unwrap();
        let count = || views.fetch("SELECT count(*) FROM t".into(), Vec::new(), 1);
        let during = tokio::time::timeout(Duration::from_secs(10), count())
            .await
            .expect("the query waited for the batch")
            .unwrap();
        assert_eq!(during, vec![vec![SqlValue::Int(1)]]);
        end.send(()).unwrap();
        batch.await.unwrap().unwrap();
        assert_eq!(count().await.unwrap(), vec![vec![SqlValue::Int(2)]]);
    }
}
