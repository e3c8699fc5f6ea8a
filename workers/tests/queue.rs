//! The queue on both backends: a job pushed twice (a crash before the checkpoint moved, a second
//! reactor) is queued once. On Redis this holds only with an idempotency TTL set, which apalis
//! leaves off by default (`../shared/notes/dependencies.md`): this is the test that would catch it.

use sportello_config::{SecretUrl, Settings};
use sportello_engine::domain::case::NoticeKind;
use sportello_workers::queue::{Backend, NoticeJob, Queue, QueueLocation};
use uuid::Uuid;

fn settings(namespace: &str) -> Settings {
    let mut settings = Settings::load_from(std::path::Path::new("/nonexistent"), None, Vec::new())
        .expect("the default configuration loads");
    settings.workers.namespace = namespace.to_owned();
    settings
}

fn jobs(n: u128) -> Vec<NoticeJob> {
    (0..n)
        .map(|i| NoticeJob {
            case_id: Uuid::from_u128(1000 + i),
            cause: Uuid::from_u128(2000 + i),
            kind: NoticeKind::Receipt,
        })
        .collect()
}

async fn pushed_twice_is_queued_once(queue: &Queue) {
    queue.push(jobs(5), 3).await.unwrap();
    queue.push(jobs(5), 3).await.unwrap();
    queue.push(jobs(7), 3).await.unwrap();
    let pending = queue.list("Pending", 100).await.unwrap();
    assert_eq!(pending.len(), 7, "{pending:?}");
    let found = queue
        .find(&pending[0].id)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(found.id, pending[0].id);
    assert!(jobs(7).contains(found.job.as_ref().unwrap()));
    // A re-queued job is a new job with the same notice.
    let again = queue.requeue(found.job.as_ref().unwrap(), 3).await.unwrap();
    assert_ne!(again, found.id);
    assert_eq!(queue.list("Pending", 100).await.unwrap().len(), 8);
    assert_eq!(queue.waiting().await.unwrap(), 8);
}

#[tokio::test]
async fn sqlite_queues_a_job_pushed_twice_once() {
    let dir = tempfile::tempdir().unwrap();
    let location = QueueLocation::Sqlite(dir.path().join("jobs.db"));
    let queue = Queue::connect_to(&location, &settings("sportello"))
        .await
        .unwrap();
    pushed_twice_is_queued_once(&queue).await;
}

/// Runs `test` on a Redis queue of a namespace of its own, whose keys are deleted afterwards.
async fn on_redis<F, Fut>(test: F)
where
    F: FnOnce(Queue, redis::aio::MultiplexedConnection) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let url = std::env::var("SPORTELLO_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let namespace = format!("sportello-test-{}", Uuid::new_v4().simple());
    let location = QueueLocation::Redis(url.clone());
    let queue = Queue::connect_to(&location, &settings(&namespace))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis does not answer at {url} ({e}): start it with `redis-server --daemonize yes`"
            )
        });
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let result = tokio::spawn(test(queue, conn.clone())).await;
    // SCAN, not KEYS: a Redis shared with a large namespace (a benchmark's) answers KEYS too
    // slowly for the connection's response timeout.
    let mut keys: Vec<String> = Vec::new();
    let mut scan =
        redis::AsyncCommands::scan_match::<_, String>(&mut conn, format!("{namespace}*"))
            .await
            .unwrap();
    while let Some(key) = scan.next_item().await {
        keys.push(key.unwrap());
    }
    drop(scan);
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    result.unwrap();
}

#[tokio::test]
async fn redis_queues_a_job_pushed_twice_once() {
    on_redis(|queue, _| async move { pushed_twice_is_queued_once(&queue).await }).await;
}

/// apalis-redis 1.0 puts every pushed job in its scheduled set, and its fetch moves all the due
/// ones with one Lua `unpack`, which fails past about 8,000 values, for good. A backlog of
/// 10,000 (a reactor catching up) must reach the active list without waiting for that fetch.
#[tokio::test]
async fn a_redis_backlog_larger_than_luas_unpack_reaches_the_active_list() {
    on_redis(|queue, mut conn| async move {
        for chunk in 0..10 {
            let batch: Vec<NoticeJob> = (0..1000u128)
                .map(|i| NoticeJob {
                    case_id: Uuid::from_u128(100_000 + chunk * 1000 + i),
                    cause: Uuid::from_u128(200_000 + chunk * 1000 + i),
                    kind: NoticeKind::Receipt,
                })
                .collect();
            queue.push(batch, 3).await.unwrap();
        }
        let Backend::Redis(storage) = &queue.backend else {
            panic!("a Redis queue")
        };
        let config = storage.get_config().clone();
        let scheduled: u64 = redis::cmd("ZCARD")
            .arg(config.scheduled_jobs_set())
            .query_async(&mut conn)
            .await
            .unwrap();
        let active: u64 = redis::cmd("LLEN")
            .arg(config.active_jobs_list())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((scheduled, active), (0, 10_000));
    })
    .await;
}

#[test]
fn the_queue_is_never_the_event_stores_file() {
    let mut settings = settings("sportello");
    settings.store.url = SecretUrl::new("sqlite://data/sportello.db");
    assert_eq!(
        QueueLocation::from_settings(&settings).unwrap(),
        QueueLocation::Sqlite("data/jobs.db".into())
    );
    settings.workers.queue_url = Some(SecretUrl::new("sqlite://data/sportello.db"));
    assert!(QueueLocation::from_settings(&settings).is_err());
    settings.workers.queue_url = Some(SecretUrl::new("amqp://127.0.0.1"));
    assert!(QueueLocation::from_settings(&settings).is_err());
}

/// On SQLite a worker's lock file tells that it is alive: the job of a worker whose lock is let go
/// (its process killed) goes back to the queue at the next sweep, the job of a worker holding its
/// lock stays with it, and a worker with no file at all is left to apalis's heartbeat.
#[tokio::test]
async fn sqlite_gives_back_the_jobs_of_a_worker_gone_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let location = QueueLocation::Sqlite(dir.path().join("jobs.db"));
    let queue: Queue = Queue::connect_to(&location, &settings("sportello"))
        .await
        .unwrap();
    let Backend::Sqlite(storage) = &queue.backend else {
        unreachable!("an SQLite location")
    };
    let pool = storage.pool();
    let liveness = queue
        .liveness
        .clone()
        .expect("SQLite workers have lock files");
    queue.push(jobs(3), 3).await.unwrap();
    let live = liveness.hold("live").unwrap();
    let gone = liveness.hold("gone").unwrap();
    let pending = queue.list("Pending", 10).await.unwrap();
    for (job, worker) in pending.iter().zip(["live", "gone", "no-file"]) {
        sqlx::query(
            "INSERT INTO Workers (id, worker_type, storage_name, last_seen) \
             VALUES (?1, 'sportello-notices', 'SqliteStorage', strftime('%s', 'now'))",
        )
        .bind(worker)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE Jobs SET status = 'Running', lock_by = ?1, \
             lock_at = strftime('%s', 'now') WHERE id = ?2",
        )
        .bind(worker)
        .bind(&job.id)
        .execute(pool)
        .await
        .unwrap();
    }
    // The three jobs, in the order of the workers above.
    let state = |n: usize| {
        let id = pending[n].id.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>, i64)>(
                "SELECT status, lock_by, attempts FROM Jobs WHERE id = ?1",
            )
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
        }
    };

    assert_eq!(
        liveness.sweep().await.unwrap(),
        0,
        "both workers hold their locks"
    );
    drop(gone);
    assert_eq!(liveness.sweep().await.unwrap(), 1);
    assert_eq!(state(0).await, ("Running".into(), Some("live".into()), 0));
    assert_eq!(state(1).await, ("Pending".into(), None, 1));
    assert_eq!(
        state(2).await,
        ("Running".into(), Some("no-file".into()), 0)
    );
    assert!(
        !dir.path().join("jobs.db.workers/gone").exists(),
        "the file of a worker gone is removed"
    );
    assert!(dir.path().join("jobs.db.workers/live").exists());
    assert_eq!(liveness.sweep().await.unwrap(), 0, "given back once");
    assert_eq!(queue.waiting().await.unwrap(), 1);
    drop(live);
}
