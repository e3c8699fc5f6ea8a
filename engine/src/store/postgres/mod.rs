//! The PostgreSQL backend, for deployments where several API nodes and workers share one log.
//!
//! ## Gap-safe global order
//! A sequence or identity column hands out positions when rows are *inserted*, not when they are
//! *committed*: transaction A takes position 10, B takes 11 and commits first, a reader sees 11,
//! moves its checkpoint past it, and never sees 10 when A commits later. That is how readers of
//! Marten-style stores skip events under concurrent writes.
//!
//! Here positions are handed out under a lock that is held until commit: the one row of
//! `event_log_head`. An append numbers its events from the head, inserts them and moves the head in
//! one transaction, so the next appender, blocked on that row until then, reads the new head only
//! after the previous transaction is durable and visible. Positions are therefore dense and
//! committed in increasing order: any snapshot a reader takes sees exactly positions `1..=head` of
//! that snapshot, and a reader that has read up to `p` can never later find a new event below `p`.
//!
//! The price is that commits are serialised across processes. Each process offsets it with group
//! commit: one writer task per process takes every append waiting in its queue into one transaction
//! (with the decisions made in memory, see `store::append`), so the lock is taken once per batch
//! rather than once per append. Reads are not affected: they never take the lock.
//!
//! ## One round trip an append
//! The writer remembers the head and the streams' heads it last wrote or looked up, plans a batch
//! from them and sends it as one statement that commits on its own (`append.sql`): it moves the
//! head only if the head is still the one remembered and every stream is at the version planned
//! from, and writes nothing otherwise. That is the usual case with one node: one round trip and
//! one commit a batch (two when a stream it does not remember must be looked up first: a new
//! stream is not). When it writes nothing (another node appended), the batch is planned again
//! in a transaction that takes the head's lock first and reads the heads under it (five round
//! trips), and what it read is remembered for the next batch.
//!
//! Followers are woken by `NOTIFY sportello_events` (sent inside the appending transaction, so
//! delivered on commit) and poll as a fallback.

use super::append::{
    AppendRequest, BatchContext, BatchPlan, answers_of, flatten_jobs, plan_batch, refused_ids,
    requests_of,
};
use super::types::truncate_to_micros;
use super::{
    AppendOutcome, EventStore, ExpectedVersion, Metadata, NewEvent, QueuedAppend, ReadAll,
    RecordedEvent, StoreError, StreamHead, StreamId,
};
use crate::store::Transient;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Row};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

const BACKEND: &str = "postgres";
/// The schema's versions, each applied once, in order, to a database below it.
const MIGRATIONS: [(i32, &str); 2] = [
    (1, include_str!("schema.sql")),
    (2, include_str!("append.sql")),
];
const NOTIFY_CHANNEL: &str = "sportello_events";
const COLUMNS: &str = "position, stream, version, event_id, event_type, schema_version, \
     occurred_at, recorded_at, data, actor, comune, channel, correlation_id, causation_id, hash";
const MAX_BATCH_APPENDS: usize = 1024;
const MAX_BATCH_EVENTS: usize = 20_000;

pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    writer: mpsc::UnboundedSender<WriteJob>,
    head: watch::Sender<u64>,
    /// Dropped with the store; stops the notification listener.
    _shutdown: oneshot::Sender<()>,
}

/// One atomic append: one request, or the parts of a multi-stream append.
struct WriteJob {
    requests: Vec<AppendRequest>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, StoreError>>,
}

/// How long a request waits for a connection before it is told the database is unavailable: a
/// citizen gets a 503 to retry in seconds rather than a page that hangs.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool on `url` that gives up waiting for a connection after [`ACQUIRE_TIMEOUT`].
pub async fn pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await
}

fn backend_error(e: sqlx::Error) -> StoreError {
    StoreError::classified(BACKEND, e)
}

impl PostgresStore {
    /// Connects, creating or upgrading the schema if needed.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(backend_error)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                let transient = e.is_transient();
                let detail = format!(
                    "cannot connect to {}: {e}",
                    sportello_config::SecretUrl::new(url)
                );
                if transient {
                    StoreError::Unavailable {
                        backend: BACKEND,
                        detail,
                    }
                } else {
                    StoreError::Backend {
                        backend: BACKEND,
                        detail,
                    }
                }
            })?;
        migrate(&pool).await?;
        let head: i64 = sqlx::query_scalar("SELECT position FROM event_log_head")
            .fetch_one(&pool)
            .await
            .map_err(backend_error)?;
        let (head_tx, _) = watch::channel(head as u64);
        let (writer_tx, writer_rx) = mpsc::unbounded_channel();
        let options = writer_options(options);
        let writer_conn = PgConnection::connect_with(&options)
            .await
            .map_err(backend_error)?;
        tokio::spawn(writer_loop(
            options,
            writer_conn,
            writer_rx,
            head_tx.clone(),
        ));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        tokio::spawn(listen_for_appends(
            pool.clone(),
            head_tx.clone(),
            shutdown_rx,
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                writer: writer_tx,
                head: head_tx,
                _shutdown: shutdown_tx,
            }),
        })
    }

    /// The read pool, for tests and tools that inspect the tables directly.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
}

/// `url` with its database name replaced by `database` (query parameters kept): for tools that
/// create a scratch database on the same server.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[start..].find('/') {
        Some(i) => &base[..start + i],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// Taken in the transaction that changes a schema (the log's, the keys', the read models'):
/// nodes that start together on a new database would otherwise create the same tables at once,
/// and `CREATE … IF NOT EXISTS` does not hold against a concurrent creator.
pub const SCHEMA_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('sportello-schema'))";

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(backend_error)?;
    // Several nodes may start at once: one migrates, the others wait and find it done.
    sqlx::query(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(backend_error)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS sportello_schema (version INTEGER PRIMARY KEY, \
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await
    .map_err(backend_error)?;
    let current: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM sportello_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend_error)?;
    for (version, sql) in MIGRATIONS {
        if current.unwrap_or(0) >= version {
            continue;
        }
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
        sqlx::query("INSERT INTO sportello_schema (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(backend_error)?;
    }
    tx.commit().await.map_err(backend_error)
}

/// The writer's session plans its prepared statements at every execution: a plan cached while
/// the tables were small would scan them sequentially forever, and a statement that is not
/// prepared costs a round trip more. The append statement's function keeps its own plans
/// (`append.sql` says why that is safe there).
fn writer_options(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("plan_cache_mode", "force_custom_plan")])
}

async fn writer_loop(
    options: PgConnectOptions,
    conn: PgConnection,
    mut jobs: mpsc::UnboundedReceiver<WriteJob>,
    head: watch::Sender<u64>,
) {
    let mut conn = Some(conn);
    let mut belief = Belief::default();
    while let Some(first) = jobs.recv().await {
        // Writers woken by the previous commit are usually about to send their next append: let
        // them run once, so the batch holds them instead of leaving them for the one after.
        tokio::task::yield_now().await;
        let mut events = job_events(&first);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_APPENDS && events < MAX_BATCH_EVENTS {
            match jobs.try_recv() {
                Ok(job) => {
                    events += job_events(&job);
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|j| (j.requests, j.reply)).unzip();
        let (requests, sizes) = flatten_jobs(jobs);
        tracing::trace!(appends = requests.len(), events, "writing a batch");
        if conn.is_none() {
            conn = PgConnection::connect_with(&options).await.ok();
        }
        let results = match conn.as_mut() {
            None => fail_all(&requests, "cannot reconnect to PostgreSQL"),
            Some(c) => match write_batch(c, &mut belief, &requests).await {
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
                    tracing::error!(error = %e, "postgres append batch failed");
                    // The connection may be broken mid-transaction: start afresh next time.
                    conn = None;
                    belief = Belief::default();
                    fail_all(&requests, e)
                }
            },
        };
        for (reply, answer) in replies.into_iter().zip(answers_of(results, &sizes)) {
            let _ = reply.send(answer);
        }
    }
}

fn fail_all(
    requests: &[AppendRequest],
    error: impl std::fmt::Display,
) -> Vec<Result<AppendOutcome, StoreError>> {
    let detail = format!(
        "{error} (the append may or may not have been committed; retrying it with the same event ids is safe)"
    );
    // The writer lost its connection or its transaction: a retry with the same ids, once the
    // server answers again, is the only way to know and is always safe.
    requests
        .iter()
        .map(|_| {
            Err(StoreError::Unavailable {
                backend: BACKEND,
                detail: detail.clone(),
            })
        })
        .collect()
}

/// What the writer believes of the log between its batches: the head it last saw and the heads
/// of the streams it last wrote or looked up. Only a belief: the append statement checks it (see
/// `append.sql`), so another node's appends cost a second attempt, never a wrong write.
#[derive(Default)]
struct Belief {
    head: Option<u64>,
    streams: HashMap<StreamId, StreamHead>,
}

/// Past this many remembered streams the writer forgets them all; a lookup brings back those it
/// needs.
const MAX_REMEMBERED_STREAMS: usize = 10_000;

impl Belief {
    fn remember(&mut self, head: u64, heads: impl IntoIterator<Item = StreamHead>) {
        self.head = Some(head);
        for h in heads {
            if self.streams.len() >= MAX_REMEMBERED_STREAMS {
                self.streams.clear();
            }
            self.streams.insert(h.stream.clone(), h);
        }
    }

    /// The remembered heads of `streams`; a stream not remembered is taken as new.
    fn heads_of(&self, streams: &[&StreamId]) -> HashMap<StreamId, StreamHead> {
        streams
            .iter()
            .filter_map(|s| self.streams.get(*s).map(|h| ((*s).clone(), h.clone())))
            .collect()
    }
}

/// Writes one batch, ids assumed new (see [`refused_ids`]): in one round trip when the writer's
/// belief holds, as it does with one node, otherwise in a transaction that reads what it needs
/// under the head's lock. A unique-index violation redoes the batch with every id looked up.
async fn write_batch(
    conn: &mut PgConnection,
    belief: &mut Belief,
    requests: &[AppendRequest],
) -> Result<BatchPlan, sqlx::Error> {
    let look_up_every_id = match write_believed(conn, belief, requests).await {
        Ok(Some(plan)) => return Ok(plan),
        Ok(None) => false,
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => true,
        Err(e) => return Err(e),
    };
    match write_locked(conn, belief, requests, look_up_every_id).await {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() && !look_up_every_id => {
            write_locked(conn, belief, requests, true).await
        }
        other => other,
    }
}

/// The batch planned from the writer's belief and written by one statement that commits on its
/// own; `None`, with nothing written, when the belief was wrong or the plan refuses an append (a
/// refusal is decided under the lock, where a retried append's stored events are looked up).
async fn write_believed(
    conn: &mut PgConnection,
    belief: &mut Belief,
    requests: &[AppendRequest],
) -> Result<Option<BatchPlan>, sqlx::Error> {
    let firsts = first_per_stream(requests);
    // Streams the writer knows nothing of are looked up, unless the append wants them new.
    let unknown: Vec<&str> = firsts
        .iter()
        .filter(|r| !belief.streams.contains_key(&r.stream))
        .filter(|r| {
            !matches!(
                r.expected,
                ExpectedVersion::NoStream | ExpectedVersion::Exact(0)
            )
        })
        .map(|r| r.stream.as_str())
        .collect();
    if belief.head.is_none() || !unknown.is_empty() {
        let (head, heads) = read_heads(conn, &unknown).await?;
        belief.remember(head, heads.into_values());
    }
    let Some(head_position) = belief.head else {
        return Ok(None);
    };
    let streams: Vec<&StreamId> = firsts.iter().map(|r| &r.stream).collect();
    let heads = belief.heads_of(&streams);
    let expected = expected_versions(&streams, &heads);
    let plan = plan_batch(
        requests,
        BatchContext {
            heads,
            existing: HashMap::new(),
            head_position,
            recorded_at: truncate_to_micros(Utc::now()),
        },
    );
    if plan.results.iter().any(Result::is_err) {
        return Ok(None);
    }
    let Some(last_position) = plan.last_position() else {
        return Ok(None);
    };
    if !append(conn, &plan, head_position, &expected).await? {
        return Ok(None);
    }
    belief.remember(last_position, plan.new_heads.iter().cloned());
    Ok(Some(plan))
}

/// The log's head and the heads of `streams`, read in one snapshot.
async fn read_heads(
    conn: &mut PgConnection,
    streams: &[&str],
) -> Result<(u64, HashMap<StreamId, StreamHead>), sqlx::Error> {
    // Prepared once; planned at each execution (see `writer_options`).
    let rows = sqlx::query(
        "SELECT NULL::TEXT COLLATE \"C\", position, NULL::BYTEA FROM event_log_head UNION ALL \
         SELECT stream, version, hash FROM event_streams WHERE stream = ANY($1)",
    )
    .bind(streams)
    .fetch_all(&mut *conn)
    .await?;
    let mut head = None;
    let mut heads = HashMap::new();
    for row in rows {
        if row.try_get::<Option<&str>, _>(0)?.is_none() {
            head = Some(row.try_get::<i64, _>(1)? as u64);
        } else {
            let h = stream_head(&row)?;
            heads.insert(h.stream.clone(), h);
        }
    }
    let head = head.ok_or_else(|| sqlx::Error::Protocol("the log has no head row".into()))?;
    Ok((head, heads))
}

/// A row of `stream, version, hash`.
fn stream_head(row: &PgRow) -> Result<StreamHead, sqlx::Error> {
    Ok(StreamHead {
        stream: StreamId::from_stored(row.try_get(0)?),
        version: row.try_get::<i64, _>(1)? as u64,
        hash: to_hash(&row.try_get::<Vec<u8>, _>(2)?),
    })
}

/// Writes one batch in a transaction that holds the head's row lock from its reads to its commit.
async fn write_locked(
    conn: &mut PgConnection,
    belief: &mut Belief,
    requests: &[AppendRequest],
    look_up_every_id: bool,
) -> Result<BatchPlan, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // The global write lock, held until commit: see the module documentation.
    let head_position: i64 = sqlx::query_scalar("SELECT position FROM event_log_head FOR UPDATE")
        .fetch_one(&mut *tx)
        .await?;
    let head_position = head_position as u64;

    let streams: Vec<&StreamId> = first_per_stream(requests)
        .iter()
        .map(|r| &r.stream)
        .collect();
    let names: Vec<&str> = streams.iter().map(|s| s.as_str()).collect();
    let (_, heads) = read_heads(&mut tx, &names).await?;
    let expected = expected_versions(&streams, &heads);

    let recorded_at = truncate_to_micros(Utc::now());
    let context = |existing| BatchContext {
        heads: heads.clone(),
        existing,
        head_position,
        recorded_at,
    };
    let mut plan = if look_up_every_id {
        let ids = requests
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.id))
            .collect();
        plan_batch(requests, context(stored_events(&mut tx, ids).await?))
    } else {
        let plan = plan_batch(requests, context(HashMap::new()));
        let existing = stored_events(&mut tx, refused_ids(requests, &plan)).await?;
        if existing.is_empty() {
            plan
        } else {
            plan_batch(requests, context(existing))
        }
    };
    let Some(last_position) = plan.last_position() else {
        tx.rollback().await?;
        belief.remember(head_position, heads.into_values());
        return Ok(plan);
    };
    if !append(&mut tx, &plan, head_position, &expected).await? {
        return Err(sqlx::Error::Protocol(
            "the append statement found the log changed under its own lock".into(),
        ));
    }
    if let Err(e) = tx.commit().await {
        plan.fail_all(BACKEND, &e);
        return Err(e);
    }
    belief.remember(
        last_position,
        heads.into_values().chain(plan.new_heads.iter().cloned()),
    );
    Ok(plan)
}

/// The first request of each of the batch's streams, in order.
fn first_per_stream(requests: &[AppendRequest]) -> Vec<&AppendRequest> {
    let mut seen = HashSet::new();
    requests.iter().filter(|r| seen.insert(&r.stream)).collect()
}

/// Each stream's version as the plan takes it, `None` for a stream it takes as new.
fn expected_versions<'a>(
    streams: &[&'a StreamId],
    heads: &HashMap<StreamId, StreamHead>,
) -> Vec<(&'a str, Option<i64>)> {
    streams
        .iter()
        .map(|s| (s.as_str(), heads.get(*s).map(|h| h.version as i64)))
        .collect()
}

/// Runs `append.sql`'s statement for `plan`: true if it wrote, false if the log was not as
/// `expected_head` and `expected` say (then nothing was written).
async fn append(
    conn: &mut PgConnection,
    plan: &BatchPlan,
    expected_head: u64,
    expected: &[(&str, Option<i64>)],
) -> Result<bool, sqlx::Error> {
    let (e, h) = (&plan.new_events, &plan.new_heads);
    let Some(new_head) = plan.last_position() else {
        return Ok(true);
    };
    let written: Option<i64> = sqlx::query_scalar(
        "SELECT * FROM sportello_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
    )
    .bind(expected_head as i64)
    .bind(new_head as i64)
    .bind(expected.iter().map(|(s, _)| *s).collect::<Vec<_>>())
    .bind(expected.iter().map(|(_, v)| *v).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.position as i64).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.stream.as_str()).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.stream.category()).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.version as i64).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.id).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind(
        e.iter()
            .map(|e| e.schema_version as i16)
            .collect::<Vec<_>>(),
    )
    .bind(e.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.recorded_at).collect::<Vec<_>>())
    .bind(e.iter().map(|e| e.data.as_str()).collect::<Vec<_>>())
    .bind(
        e.iter()
            .map(|e| e.metadata.actor.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        e.iter()
            .map(|e| e.metadata.comune.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        e.iter()
            .map(|e| e.metadata.channel.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        e.iter()
            .map(|e| e.metadata.correlation_id)
            .collect::<Vec<_>>(),
    )
    .bind(
        e.iter()
            .map(|e| e.metadata.causation_id)
            .collect::<Vec<_>>(),
    )
    .bind(e.iter().map(|e| e.hash.to_vec()).collect::<Vec<_>>())
    .bind(h.iter().map(|h| h.stream.as_str()).collect::<Vec<_>>())
    .bind(h.iter().map(|h| h.version as i64).collect::<Vec<_>>())
    .bind(h.iter().map(|h| h.hash.to_vec()).collect::<Vec<_>>())
    .bind(NOTIFY_CHANNEL)
    .fetch_optional(conn)
    .await?;
    Ok(written.is_some())
}

/// The stored events among `ids`.
async fn stored_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, RecordedEvent>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut existing = HashMap::new();
    for row in sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE event_id = ANY($1)"
    )))
    .persistent(false)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?
    {
        let event = decode_row(&row, 0).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        existing.insert(event.id, event);
    }
    Ok(existing)
}

async fn listen_for_appends(
    pool: PgPool,
    head: watch::Sender<u64>,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for appends; followers will poll");
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        if listener.listen(NOTIFY_CHANNEL).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                notification = listener.recv() => match notification {
                    Ok(n) => {
                        if let Ok(position) = n.payload().parse::<u64>() {
                            head.send_if_modified(|h| {
                                let moved = position > *h;
                                *h = (*h).max(position);
                                moved
                            });
                        }
                    }
                    Err(_) => break,
                }
            }
        }
    }
}

fn to_hash(bytes: &[u8]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    if bytes.len() == 32 {
        hash.copy_from_slice(bytes);
    }
    hash
}

/// Decodes an event whose [`COLUMNS`] start at column `at` of the row.
fn decode_row(row: &PgRow, at: usize) -> Result<RecordedEvent, StoreError> {
    let stream: String = row.try_get(at + 1).unwrap_or_else(|_| "?".into());
    let version = row.try_get::<i64, _>(at + 2).unwrap_or(0) as u64;
    let corrupt = |e: sqlx::Error| StoreError::Corrupt {
        stream: stream.clone(),
        version,
        detail: e.to_string(),
    };
    let hash: Vec<u8> = row.try_get(at + 14).map_err(corrupt)?;
    if hash.len() != 32 {
        return Err(StoreError::Corrupt {
            stream,
            version,
            detail: "the stored hash is not 32 bytes".into(),
        });
    }
    Ok(RecordedEvent {
        position: row.try_get::<i64, _>(at).map_err(corrupt)? as u64,
        stream: StreamId::from_stored(stream.clone()),
        version,
        id: row.try_get(at + 3).map_err(corrupt)?,
        event_type: row.try_get(at + 4).map_err(corrupt)?,
        schema_version: row.try_get::<i16, _>(at + 5).map_err(corrupt)? as u16,
        occurred_at: row.try_get::<DateTime<Utc>, _>(at + 6).map_err(corrupt)?,
        recorded_at: row.try_get::<DateTime<Utc>, _>(at + 7).map_err(corrupt)?,
        data: row.try_get(at + 8).map_err(corrupt)?,
        metadata: Metadata {
            actor: row.try_get(at + 9).map_err(corrupt)?,
            comune: row.try_get(at + 10).map_err(corrupt)?,
            channel: row.try_get(at + 11).map_err(corrupt)?,
            correlation_id: row.try_get(at + 12).map_err(corrupt)?,
            causation_id: row.try_get(at + 13).map_err(corrupt)?,
        },
        hash: to_hash(&hash),
    })
}

#[async_trait]
impl EventStore for PostgresStore {
    fn backend_name(&self) -> &'static str {
        BACKEND
    }

    fn queue_all(
        &self,
        appends: Vec<(StreamId, ExpectedVersion, Vec<NewEvent>)>,
    ) -> Result<QueuedAppend, StoreError> {
        let stopped = || StoreError::backend(BACKEND, "the writer task has stopped");
        let requests = requests_of(appends)?;
        let (reply, outcome) = oneshot::channel();
        // One queue, read in order by the one writer: the order of planning.
        self.inner
            .writer
            .send(WriteJob { requests, reply })
            .map_err(|_| stopped())?;
        Ok(Box::pin(
            async move { outcome.await.map_err(|_| stopped())? },
        ))
    }

    async fn read_stream_page(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM events WHERE stream = $1 AND version >= $2 \
             ORDER BY version LIMIT $3"
        )))
        .bind(stream.as_str())
        .bind(from_version as i64)
        .bind(max as i64)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(backend_error)?
        .iter()
        .map(|row| decode_row(row, 0))
        .collect()
    }

    async fn read_range(
        &self,
        query: &ReadAll,
        from: u64,
        until: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut filters = String::new();
        let mut n = 2;
        let mut next = || {
            n += 1;
            n
        };
        if !query.categories.is_empty() {
            filters.push_str(&format!(" AND category = ANY(${})", next()));
        }
        if !query.event_types.is_empty() {
            filters.push_str(&format!(" AND event_type = ANY(${})", next()));
        }
        if query.occurred_since.is_some() {
            filters.push_str(&format!(" AND occurred_at >= ${}", next()));
        }
        if query.occurred_until.is_some() {
            filters.push_str(&format!(" AND occurred_at < ${}", next()));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE position >= $1 AND position < $2{filters} \
             ORDER BY position"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(from as i64)
            .bind(until as i64);
        if !query.categories.is_empty() {
            q = q.bind(&query.categories);
        }
        if !query.event_types.is_empty() {
            q = q.bind(&query.event_types);
        }
        if let Some(t) = query.occurred_since {
            q = q.bind(t);
        }
        if let Some(t) = query.occurred_until {
            q = q.bind(t);
        }
        q.fetch_all(&self.inner.pool)
            .await
            .map_err(backend_error)?
            .iter()
            .map(|row| decode_row(row, 0))
            .collect()
    }

    async fn head(&self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT position FROM event_log_head")
            .fetch_one(&self.inner.pool)
            .await
            .map_err(backend_error)?;
        Ok(head as u64)
    }

    async fn streams_page(
        &self,
        after: Option<&StreamId>,
        max: usize,
    ) -> Result<Vec<StreamHead>, StoreError> {
        sqlx::query(
            "SELECT stream, version, hash FROM event_streams WHERE stream > $1 \
             ORDER BY stream LIMIT $2",
        )
        .bind(after.map_or("", |s| s.as_str()))
        .bind(max as i64)
        .fetch_all(&self.inner.pool)
        .await
        .map_err(backend_error)?
        .iter()
        .map(|row| stream_head(row).map_err(backend_error))
        .collect()
    }

    async fn wait_for_append(&self, position: u64, timeout: Duration) {
        let mut head = self.inner.head.subscribe();
        let _ = tokio::time::timeout(timeout, head.wait_for(|h| *h > position)).await;
    }
}

/// A database of its own, uniquely named, for a test or a benchmark on a shared server.
pub struct ScratchDatabase {
    /// Its URL: the server's with the database's name.
    pub url: String,
    pub name: String,
    server_url: String,
}

impl ScratchDatabase {
    /// Creates `<prefix>_<random>` on the server at `server_url`.
    pub async fn create(server_url: &str, prefix: &str) -> Result<Self, StoreError> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server_url)
            .await
            .map_err(backend_error)?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(backend_error)?;
        Ok(Self {
            url: with_database(server_url, &name),
            name,
            server_url: server_url.to_owned(),
        })
    }

    /// Drops it, ending whatever is still connected to it.
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let mut admin = PgConnection::connect(&self.server_url)
            .await
            .map_err(backend_error)?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .map_err(backend_error)?;
        Ok(())
    }
}

/// The server the tests use: `SPORTELLO_TEST_POSTGRES_URL`, or the local one with trust auth.
pub fn test_server_url() -> String {
    std::env::var("SPORTELLO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database on [`test_server_url`]; fails (never skips) with how to start the server
/// when it does not answer.
pub async fn test_database(prefix: &str) -> ScratchDatabase {
    let server = test_server_url();
    ScratchDatabase::create(&server, prefix)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {server} ({e}). Start it with `pg_ctlcluster \
                 --skip-systemctl-redirect $(ls /etc/postgresql) main start`, or point \
                 SPORTELLO_TEST_POSTGRES_URL at a server where this user may create databases."
            )
        })
}

/// Runs `test` with the URL of a fresh database on [`test_server_url`], dropped afterwards
/// whatever happens; fails (never skips) with how to start the server when it does not answer.
pub async fn with_scratch_database<F, Fut>(prefix: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use futures::FutureExt;
    let scratch = test_database(prefix).await;
    let outcome = std::panic::AssertUnwindSafe(test(scratch.url.clone()))
        .catch_unwind()
        .await;
    let dropped = scratch.drop_database().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    dropped.expect("drop the scratch database");
}

fn job_events(job: &WriteJob) -> usize {
    job.requests.iter().map(|r| r.events.len()).sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn with_database_swaps_only_the_database_name() {
        assert_eq!(
            super::with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "scratch"),
            "postgres://u:p@h:5432/scratch?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
