//! The embedded default backend: one SQLite file in WAL mode, driven through rusqlite.
//!
//! Writes go through the one write connection. Appends join a queue; a writer thread takes every
//! append waiting there, runs them in one `BEGIN IMMEDIATE` transaction and commits once with
//! `synchronous=FULL` (group commit): one writer's appends are each durable before they are
//! acknowledged, and concurrent writers share the fsync. An append that finds the queue empty and
//! the connection free commits on its caller's own thread instead (`block_in_place`), sparing a
//! lone writer the hand-off to the writer thread and back (+18% for ten events an append, measured
//! in `docs/benchmarks.md`); under concurrent writers that would cost a core each, so they stay
//! with the writer thread. Readers use a small pool of their own connections on blocking threads;
//! WAL lets them read while the writer commits.
//!
//! Why rusqlite and not sqlx: see `docs/adr/0001-sqlite-driver.md` (measured on this hardware).

use super::append::{
    AppendRequest, BatchContext, BatchPlan, answers_of, flatten_jobs, plan_batch, refused_ids,
    requests_of,
};
use super::types::{ReadAll, from_micros};
use super::{
    AppendOutcome, EventStore, ExpectedVersion, Metadata, NewEvent, QueuedAppend, RecordedEvent,
    StoreError, StreamHead, StreamId,
};
use async_trait::async_trait;
use chrono::Utc;
use rusqlite::config::DbConfig;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, mpsc};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

const BACKEND: &str = "sqlite";
const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 1;
const INSERT_EVENT: &str = include_str!("insert_event.sql");
const COLUMNS: &str = "position, stream, version, event_id, event_type, schema_version, \
     occurred_at, recorded_at, data, actor, comune, channel, correlation_id, causation_id, hash";
/// Appends one commit may carry; more wait for the next commit.
const MAX_BATCH_APPENDS: usize = 1024;
const MAX_BATCH_EVENTS: usize = 20_000;

pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: IdleConnections,
    /// Appends waiting for the write connection, in the order queued (the order of planning).
    queue: Mutex<VecDeque<WriteJob>>,
    /// Held by the writer thread, or by a lone caller (see [`Inner::write_alone`]).
    writer: Mutex<Writer>,
    /// Tells the writer thread that appends wait.
    wake: mpsc::Sender<()>,
    /// Head position after this process's last commit; wakes followers at once.
    head: watch::Sender<u64>,
}

struct Writer {
    conn: Connection,
    cache: WriterCache,
}

/// One atomic append: one request, or the parts of a multi-stream append.
struct WriteJob {
    requests: Vec<AppendRequest>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, StoreError>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, creating its folder too.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|e| StoreError::backend(BACKEND, e))?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::backend(BACKEND, format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // Switching a new file to WAL and migrating need the lock for a moment; when several
        // processes open the same new file at once, the losers wait and try again.
        let mut attempt = 0;
        let conn = loop {
            let opened = open_connection(&path, true).and_then(|mut conn| {
                migrate(&mut conn)?;
                Ok(conn)
            });
            match opened {
                Ok(conn) => break conn,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && attempt < 100 =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20 + 5 * attempt));
                }
                Err(e) => {
                    return Err(StoreError::backend(
                        BACKEND,
                        format!("cannot open {}: {e}", path.display()),
                    ));
                }
            }
        };
        let head = read_head(&conn).map_err(backend_error)?;
        let (head, _) = watch::channel(head);
        let (wake, woken) = mpsc::channel();
        let inner = Arc::new(Inner {
            path,
            readers: IdleConnections::default(),
            queue: Mutex::new(VecDeque::new()),
            writer: Mutex::new(Writer {
                conn,
                cache: WriterCache::default(),
            }),
            wake,
            head,
        });
        // The thread holds the store weakly: it ends when the store is dropped.
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("sportello-sqlite-writer".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    match weak.upgrade() {
                        Some(inner) => inner.drain(),
                        None => return,
                    }
                }
            })
            .map_err(|e| StoreError::backend(BACKEND, e))?;
        Ok(Self { inner })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner.readers.with(
                || open_connection(&inner.path, false).map_err(backend_error),
                |conn| f(conn),
            )
        })
        .await
        .map_err(|e| StoreError::backend(BACKEND, e))?
    }
}

/// Read connections kept open between uses: opening one costs a file open and a schema read.
#[derive(Default)]
pub struct IdleConnections(Mutex<Vec<Connection>>);

impl IdleConnections {
    /// Runs `f` on an idle connection, or on one `open` makes, and keeps it for the next use.
    pub fn with<T, E>(
        &self,
        open: impl FnOnce() -> Result<Connection, E>,
        f: impl FnOnce(&mut Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self.0.lock().expect("connection pool poisoned").pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => open()?,
        };
        let result = f(&mut conn);
        self.0.lock().expect("connection pool poisoned").push(conn);
        result
    }
}

/// Waits for another connection's write lock in small steps. SQLite's own busy timeout sleeps
/// 1, 2, 5, 10 … 100 ms between tries, so a request queued behind a short commit could wait tens
/// of milliseconds for a lock free after one; this retries every 100 µs for the first 10 ms,
/// then every millisecond, for 30 s in all.
pub fn wait_patiently_when_busy(conn: &Connection) -> rusqlite::Result<()> {
    fn retry(attempts: i32) -> bool {
        match attempts {
            0..100 => std::thread::sleep(Duration::from_micros(100)),
            100..30_100 => std::thread::sleep(Duration::from_millis(1)),
            _ => return false,
        }
        true
    }
    conn.busy_handler(Some(retry))
}

/// Copies the WAL back into the database file and truncates it, so that no old page version
/// (an erased key, an erased text) survives in it. Readers holding an old snapshot make SQLite
/// report "busy" instead: retries for up to five seconds. Returns true once it succeeded.
pub fn truncate_wal(conn: &Connection) -> rusqlite::Result<bool> {
    for _ in 0..500 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(false)
}

fn open_connection(path: &Path, writer: bool) -> rusqlite::Result<Connection> {
    let flags = if writer {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    wait_patiently_when_busy(&conn)?;
    conn.set_prepared_statement_cache_capacity(64);
    // Plans that never depend on bound values: otherwise SQLite (3.51 here) plans `LIMIT ?` for the
    // value bound, and every new binding makes a cached statement be prepared again (measured:
    // an eighth of the public intake's CPU went to re-preparing the stream read).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    if writer {
        // WAL: readers never block the writer. FULL: a commit is on disk before it is acknowledged.
        // Only takes effect on a new file. 16 KiB pages: a replay makes a quarter of the read
        // calls of 4 KiB pages (measured +15-20% on `bench read`, +8% on batched appends).
        conn.pragma_update(None, "page_size", 16_384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    tx.commit()
}

fn read_head(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|p| p as u64)
}

fn backend_error(e: rusqlite::Error) -> StoreError {
    StoreError::classified(BACKEND, e)
}

/// What the writer knows from its own commits: stream heads and the log's head position. Valid
/// while no other connection commits to the file, which `PRAGMA data_version` tells (it changes
/// only for commits made by other connections, e.g. another process).
#[derive(Default)]
struct WriterCache {
    data_version: i64,
    heads: HashMap<StreamId, StreamHead>,
    head_position: Option<u64>,
}

/// Stream heads kept at most; past this the cache starts again empty.
const MAX_CACHED_HEADS: usize = 100_000;

impl WriterCache {
    fn forget(&mut self) {
        self.heads.clear();
        self.head_position = None;
    }
}

impl Inner {
    /// An append that found the queue empty: written on this thread if the connection is free
    /// (with whatever joined the queue meanwhile); what is left waiting goes to the writer thread.
    fn write_alone(&self) {
        if let Some(mut writer) = self.try_writer()
            && let Some(batch) = self.next_batch()
        {
            writer.write(batch, &self.head);
        }
        self.wake_if_waiting();
    }

    /// The writer thread's work: every waiting append, a commit's worth at a time. If a lone
    /// caller holds the connection, it wakes the thread again when it lets go.
    fn drain(&self) {
        loop {
            let Some(mut writer) = self.try_writer() else {
                return;
            };
            while let Some(batch) = self.next_batch() {
                writer.write(batch, &self.head);
            }
            drop(writer);
            if self.queue.lock().expect("append queue poisoned").is_empty() {
                return;
            }
        }
    }

    /// Checked after letting go of the connection: an append queued while it was held, whose
    /// caller found it taken, is not left waiting.
    fn wake_if_waiting(&self) {
        if !self.queue.lock().expect("append queue poisoned").is_empty() {
            let _ = self.wake.send(());
        }
    }

    fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            Err(TryLockError::WouldBlock) => None,
            // A holder panicked mid-batch (its callers got no answer); the transaction it had
            // open rolled back and the connection stays usable.
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        }
    }

    /// The appends waiting, up to one commit's worth, in the order queued.
    fn next_batch(&self) -> Option<Vec<WriteJob>> {
        let mut queue = self.queue.lock().expect("append queue poisoned");
        let mut batch = Vec::new();
        let mut events = 0;
        while batch.len() < MAX_BATCH_APPENDS && events < MAX_BATCH_EVENTS {
            let Some(job) = queue.pop_front() else { break };
            events += job_events(&job);
            batch.push(job);
        }
        (!batch.is_empty()).then_some(batch)
    }
}

impl Writer {
    fn write(&mut self, batch: Vec<WriteJob>, head: &watch::Sender<u64>) {
        let events: usize = batch.iter().map(job_events).sum();
        let (jobs, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.requests, j.reply)).unzip();
        let (requests, sizes) = flatten_jobs(jobs);
        tracing::trace!(appends = requests.len(), events, "writing a batch");
        let results = match write_batch(&mut self.conn, &requests, &mut self.cache) {
            Ok(plan) => {
                if let Some(last) = plan.last_position() {
                    head.send_if_modified(|h| {
                        let moved = last > *h;
                        *h = (*h).max(last);
                        moved
                    });
                }
                plan.results
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite append batch failed");
                requests
                    .iter()
                    .map(|_| Err(backend_error_ref(&e)))
                    .collect()
            }
        };
        for (reply, answer) in replies.into_iter().zip(answers_of(results, &sizes)) {
            let _ = reply.send(answer);
        }
    }
}

/// Wakes the writer thread when dropped still holding the store.
struct WakeOnDrop(Option<Arc<Inner>>);

impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            let _ = inner.wake.send(());
        }
    }
}

fn job_events(job: &WriteJob) -> usize {
    job.requests.iter().map(|r| r.events.len()).sum()
}

fn backend_error_ref(e: &rusqlite::Error) -> StoreError {
    StoreError::classified(BACKEND, e)
}

/// Writes one batch in one transaction, ids assumed new (see [`refused_ids`]); a unique-index
/// violation redoes the batch with every id looked up.
fn write_batch(
    conn: &mut Connection,
    requests: &[AppendRequest],
    cache: &mut WriterCache,
) -> rusqlite::Result<BatchPlan> {
    let result = match try_write_batch(conn, requests, false, cache) {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            cache.forget();
            try_write_batch(conn, requests, true, cache)
        }
        other => other,
    };
    match &result {
        Ok(plan)
            if plan
                .results
                .iter()
                .all(|r| !r.as_ref().is_err_and(StoreError::is_infrastructure)) =>
        {
            if let Some(last) = plan.last_position() {
                cache.head_position = Some(last);
            }
            if cache.heads.len() + plan.new_heads.len() > MAX_CACHED_HEADS {
                cache.heads.clear();
            }
            for head in &plan.new_heads {
                cache.heads.insert(head.stream.clone(), head.clone());
            }
        }
        _ => cache.forget(),
    }
    result
}

fn try_write_batch(
    conn: &mut Connection,
    requests: &[AppendRequest],
    look_up_every_id: bool,
    cache: &mut WriterCache,
) -> rusqlite::Result<BatchPlan> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let data_version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    if data_version != cache.data_version {
        cache.forget();
        cache.data_version = data_version;
    }
    let mut heads = HashMap::new();
    {
        let mut head_of = tx.prepare_cached(
            "SELECT version, hash FROM events WHERE stream = ?1 ORDER BY version DESC LIMIT 1",
        )?;
        for request in requests {
            if heads.contains_key(&request.stream) {
                continue;
            }
            if let Some(known) = cache.heads.get(&request.stream) {
                heads.insert(request.stream.clone(), known.clone());
                continue;
            }
            let head = head_of
                .query_row([request.stream.as_str()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .optional()?;
            if let Some((version, hash)) = head {
                heads.insert(
                    request.stream.clone(),
                    StreamHead {
                        stream: request.stream.clone(),
                        version: version as u64,
                        hash: to_hash(&hash),
                    },
                );
            }
        }
    }
    let head_position = match cache.head_position {
        Some(known) => known,
        None => read_head(&tx)?,
    };
    let recorded_at = super::types::truncate_to_micros(Utc::now());
    let context = |existing| BatchContext {
        heads: heads.clone(),
        existing,
        head_position,
        recorded_at,
    };
    let all_ids = || requests.iter().flat_map(|r| r.events.iter().map(|e| e.id));
    let mut plan = if look_up_every_id {
        plan_batch(requests, context(stored_events(&tx, all_ids())?))
    } else {
        let plan = plan_batch(requests, context(HashMap::new()));
        let existing = stored_events(&tx, refused_ids(requests, &plan).into_iter())?;
        if existing.is_empty() {
            plan
        } else {
            plan_batch(requests, context(existing))
        }
    };
    if plan.new_events.is_empty() {
        return Ok(plan); // nothing to write: the transaction rolls back on drop
    }
    {
        let mut insert = tx.prepare_cached(INSERT_EVENT)?;
        for e in &plan.new_events {
            insert.execute(params![
                e.position as i64,
                e.stream.as_str(),
                e.stream.category(),
                e.version as i64,
                e.id.as_bytes().as_slice(),
                e.event_type,
                e.schema_version,
                e.occurred_at.timestamp_micros(),
                e.recorded_at.timestamp_micros(),
                e.data,
                e.metadata.actor,
                e.metadata.comune,
                e.metadata.channel,
                e.metadata
                    .correlation_id
                    .as_ref()
                    .map(|u| u.as_bytes().as_slice()),
                e.metadata
                    .causation_id
                    .as_ref()
                    .map(|u| u.as_bytes().as_slice()),
                e.hash.as_slice(),
            ])?;
        }
    }
    if let Err(e) = tx.commit() {
        plan.fail_all(BACKEND, &e);
    }
    Ok(plan)
}

/// The stored events among `ids`.
fn stored_events(
    tx: &rusqlite::Transaction<'_>,
    ids: impl Iterator<Item = Uuid>,
) -> rusqlite::Result<HashMap<Uuid, RecordedEvent>> {
    let mut by_id =
        tx.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE event_id = ?1"))?;
    let mut existing = HashMap::new();
    for id in ids {
        let mut rows = by_id.query([id.as_bytes().as_slice()])?;
        if let Some(row) = rows.next()? {
            // A stored event that no longer decodes still owns its id: refuse to reuse it.
            let stored = decode_row(row).unwrap_or_else(|_| unreadable_stored_event(id));
            existing.insert(id, stored);
        }
    }
    Ok(existing)
}

/// Stands for a stored event whose bytes no longer decode, so that reusing its id is refused.
fn unreadable_stored_event(id: Uuid) -> RecordedEvent {
    RecordedEvent {
        position: 0,
        stream: StreamId::from_stored("(unreadable)".into()),
        version: 0,
        id,
        event_type: String::new(),
        schema_version: 0,
        occurred_at: chrono::DateTime::<Utc>::MIN_UTC,
        recorded_at: chrono::DateTime::<Utc>::MIN_UTC,
        data: String::new(),
        metadata: Metadata::default(),
        hash: [0; 32],
    }
}

fn to_hash(bytes: &[u8]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    if bytes.len() == 32 {
        hash.copy_from_slice(bytes);
    }
    hash
}

/// Decodes a row selected with [`COLUMNS`]; bytes altered outside the store give `Corrupt`.
fn decode_row(row: &rusqlite::Row<'_>) -> Result<RecordedEvent, StoreError> {
    let version = row.get::<_, i64>(2).unwrap_or(0) as u64;
    let corrupt = |detail: String| StoreError::Corrupt {
        stream: text(row, 1).unwrap_or("?").to_owned(),
        version,
        detail,
    };
    let sql = |e: rusqlite::Error| corrupt(e.to_string());
    let uuid = |i: usize| -> Result<Option<Uuid>, StoreError> {
        match row.get_ref(i).map_err(sql)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(b) => Uuid::from_slice(b)
                .map(Some)
                .map_err(|e| corrupt(e.to_string())),
            _ => Err(corrupt(format!("column {i} is not a UUID"))),
        }
    };
    let optional_text = |i: usize| -> Result<Option<String>, StoreError> {
        match row.get_ref(i).map_err(sql)? {
            ValueRef::Null => Ok(None),
            _ => text(row, i).map(|t| Some(t.to_owned())).map_err(sql),
        }
    };
    let hash_bytes = match row.get_ref(14).map_err(sql)? {
        ValueRef::Blob(b) if b.len() == 32 => to_hash(b),
        _ => return Err(corrupt("the stored hash is not 32 bytes".into())),
    };
    Ok(RecordedEvent {
        position: row.get::<_, i64>(0).map_err(sql)? as u64,
        stream: StreamId::from_stored(text(row, 1).map_err(sql)?.to_owned()),
        version,
        id: uuid(3)?.ok_or_else(|| corrupt("the event id is missing".into()))?,
        event_type: text(row, 4).map_err(sql)?.to_owned(),
        schema_version: row.get::<_, u16>(5).map_err(sql)?,
        occurred_at: from_micros(row.get(6).map_err(sql)?),
        recorded_at: from_micros(row.get(7).map_err(sql)?),
        data: text(row, 8).map_err(sql)?.to_owned(),
        metadata: Metadata {
            actor: optional_text(9)?,
            comune: optional_text(10)?,
            channel: optional_text(11)?,
            correlation_id: uuid(12)?,
            causation_id: uuid(13)?,
        },
        hash: hash_bytes,
    })
}

fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    match row.get_ref(i)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        }),
        other => Err(rusqlite::Error::InvalidColumnType(
            i,
            format!("column {i}"),
            other.data_type(),
        )),
    }
}

fn collect_events(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    capacity: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut rows = stmt.query(params).map_err(backend_error)?;
    let mut events = Vec::with_capacity(capacity);
    while let Some(row) = rows.next().map_err(backend_error)? {
        events.push(decode_row(row)?);
    }
    Ok(events)
}

fn read_range_sql(query: &ReadAll) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE position >= ? AND position < ?");
    let mut values = Vec::new();
    let any_of = |sql: &mut String, column: &str, items: &[String]| {
        if !items.is_empty() {
            let marks = vec!["?"; items.len()].join(", ");
            sql.push_str(&format!(" AND {column} IN ({marks})"));
        }
    };
    any_of(&mut sql, "category", &query.categories);
    any_of(&mut sql, "event_type", &query.event_types);
    if query.occurred_since.is_some() {
        sql.push_str(" AND occurred_at >= ?");
    }
    if query.occurred_until.is_some() {
        sql.push_str(" AND occurred_at < ?");
    }
    sql.push_str(" ORDER BY position");
    values.extend(query.categories.iter().cloned().map(Value::Text));
    values.extend(query.event_types.iter().cloned().map(Value::Text));
    if let Some(t) = query.occurred_since {
        values.push(Value::Integer(t.timestamp_micros()));
    }
    if let Some(t) = query.occurred_until {
        values.push(Value::Integer(t.timestamp_micros()));
    }
    (sql, values)
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn queue_all(
        &self,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<QueuedAppend, StoreError> {
        let requests = requests_of(appends)?;
        let (reply, outcome) = oneshot::channel();
        // One queue, taken in order by whoever writes: the order of planning.
        let alone = {
            let mut queue = self.inner.queue.lock().expect("append queue poisoned");
            queue.push_back(WriteJob { requests, reply });
            queue.len() == 1
        };
        let on_this_thread = alone
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !on_this_thread {
            let _ = self.inner.wake.send(());
        }
        // Queued means written, awaited or not: if the future is dropped before it writes, the
        // writer thread is woken to do it.
        let mut unwritten = WakeOnDrop(on_this_thread.then(|| self.inner.clone()));
        Ok(Box::pin(async move {
            if let Some(inner) = unwritten.0.take() {
                tokio::task::block_in_place(|| inner.write_alone());
            }
            outcome.await.map_err(|_| {
                StoreError::backend(
                    BACKEND,
                    "the append was dropped unanswered (a writer panicked)",
                )
            })?
        }))
    }

    async fn read_stream_page(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let stream = stream.as_str().to_owned();
        self.with_reader(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM events WHERE stream = ?1 AND version >= ?2 \
                     ORDER BY version LIMIT ?3"
                ))
                .map_err(backend_error)?;
            collect_events(
                &mut stmt,
                params![stream, from_version as i64, max as i64],
                max,
            )
        })
        .await
    }

    async fn read_range(
        &self,
        query: &ReadAll,
        from: u64,
        until: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (sql, filter_values) = read_range_sql(query);
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(backend_error)?;
            let mut values = Vec::with_capacity(filter_values.len() + 2);
            values.push(Value::Integer(from as i64));
            values.push(Value::Integer(until as i64));
            values.extend(filter_values);
            let capacity = until.saturating_sub(from).min(4096) as usize;
            collect_events(&mut stmt, rusqlite::params_from_iter(values), capacity)
        })
        .await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        self.with_reader(|conn| read_head(conn).map_err(backend_error))
            .await
    }

    async fn streams_page(
        &self,
        after: Option<&StreamId>,
        max: usize,
    ) -> Result<Vec<StreamHead>, StoreError> {
        let after = after.map(|s| s.as_str().to_owned()).unwrap_or_default();
        self.with_reader(move |conn| {
            // The last event of each stream, through the (stream, version) index.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT stream, max(version), hash FROM events WHERE stream > ?1 \
                     GROUP BY stream ORDER BY stream LIMIT ?2",
                )
                .map_err(backend_error)?;
            let rows = stmt
                .query_map(params![after, max as i64], |r| {
                    Ok(StreamHead {
                        stream: StreamId::from_stored(r.get(0)?),
                        version: r.get::<_, i64>(1)? as u64,
                        hash: to_hash(&r.get::<_, Vec<u8>>(2)?),
                    })
                })
                .map_err(backend_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend_error)
        })
        .await
    }

    async fn wait_for_append(&self, position: u64, timeout: Duration) {
        let mut head = self.inner.head.subscribe();
        let _ = tokio::time::timeout(timeout, head.wait_for(|h| *h > position)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventLog;

    /// A queued append is written even if its future is dropped unpolled (it found the queue
    /// empty, so it would have committed on its caller's thread).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_queued_and_never_awaited_is_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("dropped.db"))
            .await
            .unwrap();
        let event = NewEvent::new("Noted", &serde_json::json!({"n": 1})).unwrap();
        let stream = StreamId::parse("case-dropped").unwrap();
        drop(
            store
                .queue_all(vec![(stream, ExpectedVersion::NoStream, vec![event])])
                .unwrap(),
        );
        store.wait_for_append(0, Duration::from_secs(10)).await;
        assert_eq!(
            store.head().await.unwrap(),
            1,
            "the dropped append was written"
        );
    }

    /// Two stores on one file stand for two processes: each one's writer must notice the other's
    /// commits (no stale stream head, no spurious conflict, an intact chain).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_on_one_file_see_each_others_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.db");
        let a = EventLog::new(Arc::new(SqliteStore::open(&path).await.unwrap()));
        let b = EventLog::new(Arc::new(SqliteStore::open(&path).await.unwrap()));
        let stream = StreamId::parse("case-shared").unwrap();
        for version in 0..40u64 {
            let writer = if version % 2 == 0 { &a } else { &b };
            let event = NewEvent::new("Noted", &serde_json::json!({ "v": version })).unwrap();
            let outcome = writer
                .append(stream.clone(), ExpectedVersion::Exact(version), vec![event])
                .await
                .unwrap();
            assert_eq!(
                (outcome.last_version, outcome.last_position),
                (version + 1, version + 1)
            );
        }
        let report = a.verify().await.unwrap();
        assert_eq!((report.events, report.first_break), (40, None));
    }
}
