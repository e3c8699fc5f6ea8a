//! How each backend under test is created, inspected behind the store's back, and removed.

use futures::future::BoxFuture;
use sportello_engine::EventLog;
use sportello_engine::store::postgres::{PostgresStore, test_database};
use sportello_engine::store::sqlite::SqliteStore;
use std::sync::{Arc, Mutex};

type Tamper = Arc<dyn Fn(u64) -> BoxFuture<'static, ()> + Send + Sync>;

/// A fresh, empty store and a way to alter its bytes directly (to prove `verify` notices).
pub struct Fixture {
    pub log: EventLog,
    /// Changes one byte of the stored payload of the event at a position, bypassing the store;
    /// `None` where the backend offers no way to (KurrentDB).
    pub tamper: Option<Tamper>,
    /// Positions are 1, 2, 3… (SQLite, PostgreSQL), not only increasing (KurrentDB).
    pub dense: bool,
    /// An event id stored in one stream is refused in another (SQLite, PostgreSQL: a unique
    /// index; KurrentDB has none).
    pub ids_unique_across_streams: bool,
    /// The same store opened again, as another process would (a second node, or the CLI beside
    /// `serve`).
    pub another_process: Arc<dyn Fn() -> BoxFuture<'static, EventLog> + Send + Sync>,
    pub cleanup: Cleanup,
}

#[derive(Clone, Default)]
pub struct Cleanup(Arc<Mutex<Option<BoxFuture<'static, ()>>>>);

impl Cleanup {
    pub async fn run(&self) {
        let job = self.0.lock().unwrap().take();
        if let Some(job) = job {
            job.await;
        }
    }
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).await.expect("open SQLite store");
    let tamper_path = path.clone();
    let reopen_path = path.clone();
    Fixture {
        log: EventLog::new(Arc::new(store)),
        another_process: Arc::new(move || {
            let path = reopen_path.clone();
            Box::pin(async move {
                let store = SqliteStore::open(&path)
                    .await
                    .expect("open SQLite store again");
                EventLog::new(Arc::new(store))
            })
        }),
        dense: true,
        ids_unique_across_streams: true,
        tamper: Some(Arc::new(move |position| {
            let path = tamper_path.clone();
            Box::pin(async move {
                let conn = rusqlite::Connection::open(&path).unwrap();
                let changed = conn
                    .execute(
                        "UPDATE events SET data = \
                         substr(data, 1, 2) || char(unicode(substr(data, 3, 1)) + 1) || substr(data, 4) \
                         WHERE position = ?1",
                        [position as i64],
                    )
                    .unwrap();
                assert_eq!(changed, 1, "no event at position {position} to tamper with");
            })
        })),
        cleanup: Cleanup(Arc::new(Mutex::new(Some(Box::pin(async move {
            drop(dir);
        }))))),
    }
}

pub async fn postgres() -> Fixture {
    let scratch = test_database("sportello_test").await;
    let url = scratch.url.clone();
    let store = PostgresStore::connect(&url)
        .await
        .expect("open PostgreSQL store");
    let pool = store.pool().clone();
    let reopen_url = url.clone();
    Fixture {
        log: EventLog::new(Arc::new(store)),
        another_process: Arc::new(move || {
            let url = reopen_url.clone();
            Box::pin(async move {
                let store = PostgresStore::connect(&url)
                    .await
                    .expect("open PostgreSQL store again");
                EventLog::new(Arc::new(store))
            })
        }),
        dense: true,
        ids_unique_across_streams: true,
        tamper: Some(Arc::new(move |position| {
            let pool = pool.clone();
            Box::pin(async move {
                let changed = sqlx::query(
                    "UPDATE events SET data = overlay(data placing \
                     chr(ascii(substr(data, 3, 1)) + 1) from 3 for 1) WHERE position = $1",
                )
                .bind(position as i64)
                .execute(&pool)
                .await
                .unwrap()
                .rows_affected();
                assert_eq!(changed, 1, "no event at position {position} to tamper with");
            })
        })),
        cleanup: Cleanup(Arc::new(Mutex::new(Some(Box::pin(async move {
            let _ = scratch.drop_database().await;
        }))))),
    }
}

/// A store on the KurrentDB server named by `SPORTELLO_TEST_KURRENTDB_URL`, its streams behind a
/// prefix of their own so that runs share the server without seeing each other (they are left on
/// it: the server is a scratch one). Fails, never skips, when the variable is unset or the server
/// does not answer.
#[cfg(feature = "kurrentdb")]
pub async fn kurrentdb() -> Fixture {
    use sportello_engine::store::kurrentdb::{KurrentStore, TEST_URL_VARIABLE};
    let url = std::env::var(TEST_URL_VARIABLE).unwrap_or_else(|_| {
        panic!(
            "{TEST_URL_VARIABLE} is not set: the KurrentDB cases need a server, e.g. \
             `docker run -d -p 2113:2113 docker.kurrent.io/kurrent-latest/kurrentdb:25.1 --insecure` \
             then {TEST_URL_VARIABLE}=kurrentdb://127.0.0.1:2113?tls=false"
        )
    });
    let prefix = format!("t{}_", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let connect = move |url: String, prefix: String| async move {
        let store = KurrentStore::connect_with_prefix(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("open the KurrentDB store at {TEST_URL_VARIABLE}: {e}"));
        EventLog::new(Arc::new(store))
    };
    Fixture {
        log: connect(url.clone(), prefix.clone()).await,
        another_process: Arc::new(move || Box::pin(connect(url.clone(), prefix.clone()))),
        tamper: None,
        dense: false,
        ids_unique_across_streams: false,
        cleanup: Cleanup::default(),
    }
}
