//! Where jobs wait: apalis-sqlite in a file of its own (the embedded default) or apalis-redis.
//!
//! Both are set up against the traps seen running apalis 1.0 (`../shared/notes/dependencies.md`):
//! every queue is named explicitly, the SQLite file gets its migrations without `setup()` (which
//! turns `synchronous` off), Redis deduplicates by idempotency key only with a TTL set, and its
//! connection manager gets a response timeout a loaded Redis can meet.

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqlitePool, SqliteStorage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sportello_config::Settings;
use sportello_engine::domain::case::NoticeKind;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

use crate::liveness::Liveness;

/// The queue of notices to citizens, after the installation's namespace (`sportello-notices`).
pub const NOTICES: &str = "notices";
/// The queue of scheduled work (reminders, retention, publication), one job per period.
pub const SCHEDULED: &str = "scheduled";

/// What a queue carries. Its id and idempotency key come from what called for it (an event, a
/// period), so that pushing it twice queues it once.
pub trait Job:
    Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync + Unpin + 'static
{
    /// The queue's name after the installation's namespace.
    const QUEUE: &'static str;
    fn idempotency_key(&self) -> String;
    /// What `sportello jobs` shows of it: its kind and what it concerns.
    fn describe(&self) -> (String, String);

    /// The key's UUIDv5 as a ULID (the form both backends keep).
    fn task_id(&self) -> TaskId {
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, self.idempotency_key().as_bytes());
        TaskId::from_ulid(ulid::Ulid::from(id.as_u128()))
    }
}

/// How long Redis remembers an idempotency key: longer than any redelivery or second reactor
/// could come after the first push. After it, the notice's record on the case still makes a late
/// duplicate a no-op.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A worker on Redis beats this often; one silent for `MISSED_HEARTBEATS` beats (killed, or cut
/// off from the queue with a job in hand) has its jobs given to a live worker. apalis's defaults
/// (30 s × 10 on Redis) would leave such a job waiting five minutes.
const HEARTBEAT: Duration = Duration::from_secs(5);
const MISSED_HEARTBEATS: usize = 3;
/// On SQLite a worker's lock file tells that it is alive ([`Liveness`]); the heartbeat, a write
/// each time, is kept only for a worker without one.
const SQLITE_HEARTBEAT: Duration = Duration::from_secs(600);

/// A notice the reactor asks for. Its id and idempotency key come from `cause`, the event that
/// called for it, so pushing it twice queues it once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeJob {
    pub case_id: Uuid,
    pub cause: Uuid,
    pub kind: NoticeKind,
}

impl Job for NoticeJob {
    const QUEUE: &'static str = NOTICES;

    fn idempotency_key(&self) -> String {
        format!("notice:{}", self.cause)
    }

    fn describe(&self) -> (String, String) {
        (self.kind.name().to_owned(), self.case_id.to_string())
    }

    /// The event's id as a ULID: the same 128 bits.
    fn task_id(&self) -> TaskId {
        TaskId::from_ulid(ulid::Ulid::from(self.cause.as_u128()))
    }
}

fn unavailable(e: &dyn std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue is not available: {0}")]
    Unavailable(String),
    #[error("invalid job queue configuration: {0}")]
    Config(String),
}

/// Where the queue lives, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueLocation {
    Sqlite(PathBuf),
    Redis(String),
}

impl QueueLocation {
    /// `workers.queue_url`, or `jobs.db` beside an SQLite store (`data/jobs.db` beside a
    /// PostgreSQL one).
    pub fn from_settings(settings: &Settings) -> Result<Self, QueueError> {
        if let Some(url) = &settings.workers.queue_url {
            let url = url.expose();
            if let Some(path) = url.strip_prefix("sqlite://") {
                let path = PathBuf::from(path);
                let store = settings.data_url().expose().strip_prefix("sqlite://");
                if store.map(Path::new) == Some(path.as_path()) {
                    return Err(QueueError::Config(
                        "workers.queue_url must not be the event store's file".into(),
                    ));
                }
                return Ok(QueueLocation::Sqlite(path));
            }
            if url.starts_with("redis://") || url.starts_with("rediss://") {
                return Ok(QueueLocation::Redis(url.to_owned()));
            }
            return Err(QueueError::Config(
                "workers.queue_url must be sqlite://PATH or redis://HOST:PORT".into(),
            ));
        }
        match settings.data_url().expose().strip_prefix("sqlite://") {
            Some(store) => Ok(QueueLocation::Sqlite(
                Path::new(store)
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("jobs.db"),
            )),
            // One worker process beside a PostgreSQL store; several need Redis.
            None => Ok(QueueLocation::Sqlite(PathBuf::from("data/jobs.db"))),
        }
    }
}

/// Where the queues live, connected: the SQLite file (migrated) or Redis.
#[derive(Clone)]
pub enum Connection {
    Sqlite {
        /// For what must survive a power cut: the jobs pushed (a lost push is a lost notice).
        durable: SqlitePool,
        /// For the workers' own bookkeeping (taking a job, marking it done): losing the last of
        /// it in a power cut only runs a job again, and what a job records makes that a no-op.
        /// Sparing them a sync at every commit is most of what the SQLite queue costs.
        relaxed: SqlitePool,
        /// The workers' lock files, beside the file.
        liveness: Liveness,
    },
    Redis(redis::aio::ConnectionManager),
}

impl Connection {
    pub async fn open(location: &QueueLocation, settings: &Settings) -> Result<Self, QueueError> {
        match location {
            QueueLocation::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| unavailable(&e))?;
                }
                let durable = sqlite_pool(path, SqliteSynchronous::Full)
                    .await
                    .map_err(|e| unavailable(&e))?;
                migrate(path, &durable).await?;
                let relaxed = sqlite_pool(path, SqliteSynchronous::Normal)
                    .await
                    .map_err(|e| unavailable(&e))?;
                let liveness =
                    Liveness::beside(path, relaxed.clone()).map_err(|e| unavailable(&e))?;
                Ok(Connection::Sqlite {
                    durable,
                    relaxed,
                    liveness,
                })
            }
            QueueLocation::Redis(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| unavailable(&e))?;
                let timeout =
                    Duration::from_millis(settings.workers.redis_response_timeout_ms.max(100));
                let manager = client
                    .get_connection_manager_with_config(
                        redis::aio::ConnectionManagerConfig::new()
                            .set_response_timeout(Some(timeout))
                            .set_connection_timeout(Some(timeout)),
                    )
                    .await
                    .map_err(|e| unavailable(&e))?;
                Ok(Connection::Redis(manager))
            }
        }
    }
}

/// apalis-sqlite's migrations, one process at a time: sqlx takes no lock of its own on SQLite,
/// and two processes starting together (a worker and `sportello jobs`) would both apply them.
async fn migrate(path: &Path, pool: &SqlitePool) -> Result<(), QueueError> {
    let lock_path = path.with_extension("migrations.lock");
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| unavailable(&e))?
    .map_err(|e| unavailable(&e))?;
    let migrated = SqliteStorage::<()>::migrations().run(pool).await;
    drop(lock);
    migrated.map_err(|e| unavailable(&e))
}

/// A connected queue of jobs of one kind.
pub struct Queue<J: Job = NoticeJob> {
    name: String,
    /// For pushing, listing and re-queuing.
    pub backend: Backend<J>,
    /// For the job workers (on SQLite, on the relaxed connections).
    pub workers: Backend<J>,
    /// On SQLite, where the workers hold their lock files.
    pub liveness: Option<Liveness>,
}

// Not derived: a derive would ask `J: Clone` of the marker, not of the storage.
impl<J: Job> Clone for Queue<J> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            backend: self.backend.clone(),
            workers: self.workers.clone(),
            liveness: self.liveness.clone(),
        }
    }
}

pub enum Backend<J: Job> {
    Sqlite(SqliteStorage<J>),
    Redis(RedisStorage<J>),
}

impl<J: Job> Clone for Backend<J> {
    fn clone(&self) -> Self {
        match self {
            Backend::Sqlite(s) => Backend::Sqlite(s.clone()),
            Backend::Redis(s) => Backend::Redis(s.clone()),
        }
    }
}

impl<J: Job> Queue<J> {
    pub async fn connect(settings: &Settings) -> Result<Self, QueueError> {
        let location = QueueLocation::from_settings(settings)?;
        Self::connect_to(&location, settings).await
    }

    pub async fn connect_to(
        location: &QueueLocation,
        settings: &Settings,
    ) -> Result<Self, QueueError> {
        Ok(Self::on(
            &Connection::open(location, settings).await?,
            settings,
        ))
    }

    /// This queue on an open connection (queues share one).
    pub fn on(connection: &Connection, settings: &Settings) -> Self {
        let name = format!("{}-{}", settings.workers.namespace, J::QUEUE);
        let sqlite = |pool: &SqlitePool| {
            let config = apalis_sqlite::Config::default()
                .queue(&name)
                .heartbeat_interval(SQLITE_HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS)
                .batch_size(100);
            Backend::Sqlite(SqliteStorage::new(pool).with_config(config))
        };
        let (backend, workers, liveness) = match connection {
            Connection::Sqlite {
                durable,
                relaxed,
                liveness,
            } => (sqlite(durable), sqlite(relaxed), Some(liveness.clone())),
            Connection::Redis(manager) => {
                let config = apalis_redis::Config::default()
                    .queue(&name)
                    .heartbeat_interval(HEARTBEAT)
                    .missed_heartbeats(MISSED_HEARTBEATS)
                    .idempotency_ttl(Some(IDEMPOTENCY_TTL))
                    .batch_size(100);
                let backend =
                    Backend::Redis(RedisStorage::new(manager.clone()).with_config(config));
                (backend.clone(), backend, None)
            }
        };
        Queue {
            name,
            backend,
            workers,
            liveness,
        }
    }

    /// Queues the jobs; the call returns once the backend has stored every one. A job already
    /// queued (same idempotency key) is not queued again.
    pub async fn push(&self, jobs: Vec<J>, attempts: u64) -> Result<(), QueueError> {
        let tasks = jobs.into_iter().map(move |job| {
            TaskBuilder::new(job.clone())
                .task_id(job.task_id())
                .idempotency_key(job.idempotency_key())
                .max_attempts(attempts as usize)
                .build()
        });
        // One batch: one transaction on SQLite, one script call on Redis.
        let tasks = futures::stream::iter(tasks.collect::<Vec<_>>());
        match &self.backend {
            Backend::Sqlite(storage) => storage
                .clone()
                .push_all(tasks)
                .await
                .map_err(|e| unavailable(&e)),
            Backend::Redis(storage) => {
                storage
                    .clone()
                    .push_all(tasks)
                    .await
                    .map_err(|e| unavailable(&e))?;
                self.promote_due().await
            }
        }
    }

    /// Jobs waiting for a worker (not running, not scheduled for a later retry). Cheap on both
    /// backends: a partial index on SQLite, one `LLEN` on Redis.
    pub async fn waiting(&self) -> Result<u64, QueueError> {
        match &self.backend {
            Backend::Sqlite(storage) => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM Jobs \
                     WHERE job_type = ?1 AND status = 'Pending' AND lock_by IS NULL",
                )
                .bind(&self.name)
                .fetch_one(storage.pool())
                .await
                .map_err(|e| unavailable(&e))?;
                Ok(count as u64)
            }
            Backend::Redis(storage) => {
                let active = storage.get_config().active_jobs_list();
                redis::cmd("LLEN")
                    .arg(active)
                    .query_async(&mut storage.clone().get_connection().clone())
                    .await
                    .map_err(|e| unavailable(&e))
            }
        }
    }

    /// See [`DueJobs`]: after every push, so that a burst never piles up; a no-op on SQLite.
    pub async fn promote_due(&self) -> Result<(), QueueError> {
        match self.due_jobs() {
            Some(due) => due.promote().await,
            None => Ok(()),
        }
    }

    /// The due jobs of this queue, on Redis.
    pub fn due_jobs(&self) -> Option<DueJobs> {
        let Backend::Redis(storage) = &self.backend else {
            return None;
        };
        let config = storage.get_config();
        Some(DueJobs {
            conn: storage.clone().get_connection().clone(),
            scheduled: config.scheduled_jobs_set(),
            active: config.active_jobs_list(),
            signal: config.signal_list(),
        })
    }
}

/// The jobs of a Redis queue whose time has come, moved from apalis-redis's scheduled set to its
/// active list a thousand at a time. apalis-redis 1.0 schedules every job it is given (its push
/// sets a run time of at least now), and its fetch promotes all the due ones in one Lua `unpack`,
/// which fails past about 8,000 values: a backlog that large (a reactor catching up, a relay
/// down while many notices wait for a retry) would stop every worker of the queue for good.
/// Promoted after every push and every second by the workers.
#[derive(Clone)]
pub struct DueJobs {
    conn: redis::aio::ConnectionManager,
    scheduled: String,
    active: String,
    signal: String,
}

impl DueJobs {
    pub async fn promote(&self) -> Result<(), QueueError> {
        static PROMOTE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(
                r#"
                local moved = 0
                while true do
                    local due = redis.call("zrangebyscore", KEYS[1], 0, ARGV[1], "LIMIT", 0, 1000)
                    if #due == 0 then break end
                    redis.call("rpush", KEYS[2], unpack(due))
                    redis.call("zrem", KEYS[1], unpack(due))
                    moved = moved + #due
                end
                if moved > 0 then
                    redis.call("del", KEYS[3])
                    redis.call("lpush", KEYS[3], 1)
                end
                return moved
                "#,
            )
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _moved: u64 = PROMOTE
            .key(&self.scheduled)
            .key(&self.active)
            .key(&self.signal)
            .arg(now)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| unavailable(&e))?;
        Ok(())
    }
}

/// The queue's own SQLite file, in WAL mode; `synchronous` as [`Connection::Sqlite`] says.
async fn sqlite_pool(
    path: &Path,
    synchronous: SqliteSynchronous,
) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(Duration::from_secs(5));
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
}

/// One job as `sportello jobs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobInfo<J> {
    pub id: String,
    pub queue: String,
    pub status: String,
    pub attempts: usize,
    pub max_attempts: Option<usize>,
    /// Unix seconds.
    pub run_at: Option<u64>,
    pub done_at: Option<u64>,
    pub job: Option<J>,
}

fn info<J: Job>(queue: &str, task: &apalis::prelude::Task<Vec<u8>>) -> JobInfo<J> {
    JobInfo {
        id: task.task_id().map(|id| id.to_string()).unwrap_or_default(),
        queue: queue.to_owned(),
        status: task.status().to_string(),
        attempts: task.attempt(),
        max_attempts: task.max_attempts(),
        run_at: task.run_at(),
        done_at: task.done_at(),
        job: serde_json::from_slice(&task.args).ok(),
    }
}

/// Every status `sportello jobs list` can filter on, as apalis names them.
pub const STATUSES: [&str; 6] = ["Pending", "Queued", "Running", "Done", "Failed", "Killed"];

impl<J: Job> Queue<J> {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many jobs the queue holds by state, as the backend counts them (`pending`, `running`,
    /// `failed`, `killed`…; the names are apalis's, and differ a little between backends).
    pub async fn depth(&self) -> Result<Vec<(String, f64)>, QueueError> {
        use apalis_core::backend::Metrics;
        let stats = match &self.backend {
            Backend::Sqlite(s) => s.fetch_by_queue().await.map_err(|e| unavailable(&e))?,
            Backend::Redis(s) => s.fetch_by_queue().await.map_err(|e| unavailable(&e))?,
        };
        Ok(stats
            .into_iter()
            .filter_map(|stat| {
                let state = stat.title.strip_suffix("_JOBS")?.to_ascii_lowercase();
                let is_state = [
                    "pending", "active", "running", "failed", "killed", "dead", "done",
                ]
                .contains(&state.as_str());
                is_state.then(|| Some((state, stat.value.parse().ok()?)))?
            })
            .collect())
    }

    /// Up to `limit` jobs with this status (apalis lists one status at a time).
    pub async fn list(&self, status: &str, limit: u32) -> Result<Vec<JobInfo<J>>, QueueError> {
        use apalis_core::backend::{Filter, ListTasks};
        let parsed = apalis::prelude::Status::from_str(status).map_err(|_| {
            QueueError::Config(format!(
                "unknown status '{status}' (known: {})",
                STATUSES.join(", ")
            ))
        })?;
        let filter = Filter {
            status: Some(parsed.clone()),
            page: 1,
            page_size: Some(limit),
        };
        match &self.backend {
            Backend::Sqlite(s) => {
                let tasks = s.list_tasks(&filter).await.map_err(|e| unavailable(&e))?;
                Ok(tasks.iter().map(|t| info(&self.name, t)).collect())
            }
            // apalis-redis 1.0's `list_tasks` reads a key nothing writes (the queue's bare name,
            // not its `:active` list) and so finds nothing: read its hashes instead.
            Backend::Redis(s) => self
                .list_redis(s, &parsed.to_string(), limit)
                .await
                .map_err(|e| unavailable(&e)),
        }
    }

    /// Deletes every key of this queue from Redis (a benchmark's or a test's namespace).
    pub async fn delete_namespace(&self) -> Result<(), QueueError> {
        let Backend::Redis(storage) = &self.backend else {
            return Ok(());
        };
        let mut conn = storage.clone().get_connection().clone();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.name))
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await
                .map_err(|e| unavailable(&e))?;
            if !keys.is_empty() {
                let () = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| unavailable(&e))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// Every job apalis-redis keeps has its arguments in the data hash and its state in a
    /// metadata hash of its own; scanned, so memory stays bounded by `limit`.
    async fn list_redis(
        &self,
        storage: &RedisStorage<J>,
        status: &str,
        limit: u32,
    ) -> Result<Vec<JobInfo<J>>, redis::RedisError> {
        use redis::AsyncCommands;
        let config = storage.get_config().clone();
        let mut conn = storage.clone().get_connection().clone();
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                .arg(config.job_data_hash())
                .arg(cursor)
                .arg("COUNT")
                .arg(200)
                .query_async(&mut conn)
                .await?;
            for (id, data) in page {
                let meta: std::collections::HashMap<String, String> = conn
                    .hgetall(format!("{}:{id}", config.job_meta_hash()))
                    .await?;
                if meta.get("status").map(String::as_str) != Some(status) {
                    continue;
                }
                let number = |key: &str| meta.get(key).and_then(|v| v.parse().ok());
                found.push(JobInfo {
                    id,
                    queue: self.name.clone(),
                    status: status.to_owned(),
                    attempts: number("attempts").unwrap_or(0),
                    max_attempts: number("max_attempts"),
                    run_at: number("run_at").map(|n: usize| n as u64),
                    done_at: number("done_at").map(|n: usize| n as u64),
                    job: serde_json::from_slice(&data).ok(),
                });
                if found.len() >= limit as usize {
                    return Ok(found);
                }
            }
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    pub async fn find(&self, id: &str) -> Result<Option<JobInfo<J>>, QueueError> {
        use apalis_core::backend::FetchById;
        let id = ulid::Ulid::from_string(id)
            .map_err(|_| QueueError::Config(format!("'{id}' is not a job id")))?;
        let id = TaskId::from_ulid(id);
        let task = match &self.backend {
            Backend::Sqlite(s) => s
                .clone()
                .fetch_by_id(&id)
                .await
                .map_err(|e| unavailable(&e))?,
            Backend::Redis(s) => s
                .clone()
                .fetch_by_id(&id)
                .await
                .map_err(|e| unavailable(&e))?,
        };
        Ok(task.as_ref().map(|t| info(&self.name, t)))
    }

    /// Queues a dead job's work again as a new job (a fresh id and key: the old one stays as the
    /// record of what failed). What the job records (on the case, for the period) still keeps its
    /// effect single.
    pub async fn requeue(&self, job: &J, attempts: u64) -> Result<String, QueueError> {
        let retry = uuid::Uuid::now_v7();
        let id = TaskId::from_ulid(ulid::Ulid::from(retry.as_u128()));
        let task = TaskBuilder::new(job.clone())
            .task_id(id.clone())
            .idempotency_key(format!("{}:retry:{retry}", job.idempotency_key()))
            .max_attempts(attempts as usize)
            .build();
        match &self.backend {
            Backend::Sqlite(s) => s
                .clone()
                .push_task(task)
                .await
                .map_err(|e| unavailable(&e))?,
            Backend::Redis(s) => {
                s.clone()
                    .push_task(task)
                    .await
                    .map_err(|e| unavailable(&e))?;
                self.promote_due().await?
            }
        }
        Ok(id.to_string())
    }
}

/// What asking to retry a job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Queued again under this new id.
    Queued(String),
    /// Only a failed or dead job is queued again; this one is in that status.
    NotFailed(String),
    /// The job carries nothing this program can read.
    Unreadable,
    /// No queue holds it.
    Missing,
}

impl<J: Job> Queue<J> {
    /// Queues the work of the failed or dead job `id` again; `Missing` if this queue lacks it.
    pub async fn retry(&self, id: &str, attempts: u64) -> Result<Retried, QueueError> {
        let Some(job) = self.find(id).await? else {
            return Ok(Retried::Missing);
        };
        if !matches!(job.status.as_str(), "Failed" | "Killed") {
            return Ok(Retried::NotFailed(job.status));
        }
        match job.job {
            Some(work) => Ok(Retried::Queued(self.requeue(&work, attempts).await?)),
            None => Ok(Retried::Unreadable),
        }
    }
}

/// Every queue of the workers, on one backend.
#[derive(Clone)]
pub struct Queues {
    pub notices: Queue<NoticeJob>,
    pub scheduled: Queue<crate::schedule::ScheduledJob>,
}

impl Queues {
    pub async fn connect(settings: &Settings) -> Result<Self, QueueError> {
        let location = QueueLocation::from_settings(settings)?;
        let connection = Connection::open(&location, settings).await?;
        Ok(Self {
            notices: Queue::on(&connection, settings),
            scheduled: Queue::on(&connection, settings),
        })
    }

    /// Queues the work of the failed or dead job `id` again, whichever queue holds it.
    pub async fn retry(&self, id: &str, attempts: u64) -> Result<Retried, QueueError> {
        match self.notices.retry(id, attempts).await? {
            Retried::Missing => self.scheduled.retry(id, attempts).await,
            found => Ok(found),
        }
    }

    /// Each queue's depth by state: (queue, state, count).
    pub async fn depth(&self) -> Result<Vec<(&'static str, String, f64)>, QueueError> {
        let mut all = Vec::new();
        for (queue, depth) in [
            (NOTICES, self.notices.depth().await?),
            (SCHEDULED, self.scheduled.depth().await?),
        ] {
            all.extend(depth.into_iter().map(|(state, n)| (queue, state, n)));
        }
        Ok(all)
    }
}
